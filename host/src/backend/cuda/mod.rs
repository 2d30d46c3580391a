//! The CUDA backend: the kernels of `kernels-gpu`, compiled to PTX by `host/build.rs`,
//! loaded and launched with cust on device 0.
//!
//! Launch geometry, entry names and parameter structs come from [`super::launch`], the
//! one place that computes them for every backend, and the forward and backward sequences
//! from the launch pipeline (`backend/pipeline.rs`), written once for every device
//! backend. This folder holds what is CUDA's own, one module per concept: device, context,
//! stream and module loading (`context.rs`), device memory (`memory.rs`, a grow-only
//! cache of one region per buffer name behind the backend's mutex: a call whose sizes fit
//! what an earlier call allocated allocates nothing on the device), entry points and
//! launches (`module.rs`), the pipeline's device (`device.rs`), errors (`error.rs`),
//! event timing (`timing.rs`) and the raw driver calls (`driver.rs`).
//!
//! Errors: every driver error carries the driver's numeric code with its
//! `cuGetErrorName`/`cuGetErrorString` text (`driver::describe`); cust's `Display` for
//! its error type is never used (it can panic). A backend that cannot start because there
//! is no driver or no device returns [`Error::BackendUnavailable`]; every other startup
//! failure is an [`Error::Backend`]. After a fault that destroys the context (an illegal
//! address, say), every later call reports `context lost after: <the first error>`.
//!
//! Nothing of this folder has run on a GPU where it was written (no device there); it is
//! type-checked and linted in CI, and run against a stand-in driver library that answers
//! with error codes (tests/stand_in_driver.rs). `cargo test --features cuda` on a machine
//! with an NVIDIA driver runs it against the reference (tests/backend_agreement.rs).

mod context;
mod device;
mod driver;
mod error;
mod memory;
mod module;
mod timing;

use std::sync::Mutex;
use std::time::Duration;

use cust::context::CurrentContext;

use self::context::State;
use self::error::{NAME, backend_error, cuda_err, driver_err};
use super::flops::MarginKernel;
use super::launch::KernelChoice;
use super::pipeline::DeviceBackend;
use crate::error::{Error, Result};
use crate::types::validate_inputs;
pub use module::KERNELS_PTX;
pub use timing::Problem;

/// The margin kernels on a CUDA device through the driver API (cust).
pub struct CudaBackend {
    state: Mutex<State>,
    device_name: String,
    jit_info_log: String,
    choice: KernelChoice,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device_name)
            .finish_non_exhaustive()
    }
}

impl CudaBackend {
    /// The backend on device 0. Errors (never panics): [`Error::BackendUnavailable`] when
    /// there is no driver or no device, [`Error::Backend`] for every other failure (the
    /// driver cannot JIT-compile the PTX, a driver mismatch, ...), with the driver's code.
    pub fn new() -> Result<Self> {
        Self::on_device(0)
    }

    /// The backend on the device with this ordinal.
    pub fn on_device(ordinal: u32) -> Result<Self> {
        let opened = State::open(ordinal)?;
        Ok(CudaBackend {
            state: Mutex::new(opened.state),
            device_name: opened.device_name,
            jit_info_log: opened.jit_info_log,
            choice: KernelChoice::default(),
        })
    }

    /// The backend launching `choice`'s kernel variant and split-K policy (default:
    /// [`KernelChoice::default`]).
    pub fn with_kernels(mut self, choice: KernelChoice) -> Self {
        self.choice = choice;
        self
    }

    /// The kernel variant and split-K policy this backend launches.
    pub fn kernels(&self) -> KernelChoice {
        self.choice
    }

    /// What the driver's JIT said while compiling the PTX (with `CU_JIT_LOG_VERBOSE`:
    /// registers and spills per kernel), empty if it said nothing.
    pub fn jit_info_log(&self) -> &str {
        &self.jit_info_log
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Times `iters` back-to-back launches of `kernel` on `problem` with CUDA events
    /// recorded on the stream around them (not counting uploads and the launches that
    /// prepare its inputs: the row norms and, for the gradients, one training forward).
    pub fn time_kernel(
        &self,
        kernel: MarginKernel,
        problem: &Problem,
        iters: u64,
    ) -> Result<Duration> {
        validate_inputs(problem.x.view(), problem.w.view(), &problem.labels)?;
        let n = problem.x.nrows();
        let c = problem.w.nrows();
        if problem.g.dim() != (n, c) {
            return Err(Error::Shape(format!(
                "g is {}x{} but the layer output is {n}x{c}",
                problem.g.nrows(),
                problem.g.ncols()
            )));
        }
        let choice = self.choice;
        self.with_device(|state| timing::time_kernel(state, choice, kernel, problem, iters))
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        // Device memory, stream and module are released by their destructors, which need
        // the context current on this thread. Nothing useful can be done with an error here.
        if let Ok(state) = self.state.get_mut() {
            let _ = CurrentContext::set_current(&state.context);
        }
    }
}

/// Forward and backward check the inputs as `layer::forward_on` does (the trait is
/// public, and a label >= C would index outside a device buffer), then run the launch
/// pipeline on the locked state.
impl DeviceBackend for CudaBackend {
    /// Locks the state, makes its context current on the calling thread (CUDA contexts
    /// are per thread, and callers may come from any thread) and runs `body` on it.
    ///
    /// Before `body`, waits for the stream: a call that failed between a launch and its
    /// synchronisation may have left kernels running on buffers this call may free or
    /// overwrite. On an idle stream the wait returns at once.
    ///
    /// When the context is lost (a kernel fault is sticky: every later driver call returns
    /// it), fails with "context lost after: <first error>" without touching the device.
    /// After any error, `cuCtxSynchronize` tells whether the context survived it.
    fn with_device<T>(&self, body: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| backend_error("state lock poisoned by an earlier panic".into()))?;
        let state = &mut *guard;
        if let Some(first) = &state.lost {
            return Err(backend_error(format!("context lost after: {first}")));
        }
        let result = CurrentContext::set_current(&state.context)
            .map_err(cuda_err("making the context current"))
            .and_then(|()| {
                driver::stream_synchronize(
                    state.stream.as_inner().cast(),
                    "waiting for earlier work on the stream",
                )
                .map_err(driver_err)
            })
            .and_then(|()| body(state));
        if let Err(Error::Backend { message, .. }) = &result
            && let Err(probe) = driver::context_synchronize()
        {
            state.lost = Some(format!("{message} (the context is unusable: {probe})"));
        }
        result
    }

    fn choice(&self) -> KernelChoice {
        self.choice
    }

    const NAME: &'static str = NAME;
    type Device<'a> = State;
}
