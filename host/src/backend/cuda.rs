//! The CUDA backend: the kernels of `kernels-gpu`, compiled to PTX by `host/build.rs`,
//! loaded and launched with cust on device 0.
//!
//! Launch geometry, entry names and parameter structs come from [`super::launch`], the
//! one place that computes them for every backend; this file only moves data, checks
//! buffer lengths against the parameters the kernel will trust, and launches.
//!
//! Device memory is a grow-only cache (one region per kernel argument, behind the
//! backend's mutex): a call whose sizes fit what an earlier call allocated allocates
//! nothing on the device.
//!
//! Errors: every driver error carries the driver's numeric code with its
//! `cuGetErrorName`/`cuGetErrorString` text (`driver::describe`); cust's `Display` for
//! its error type is never used (it can panic). A backend that cannot start because there
//! is no driver or no device returns [`Error::BackendUnavailable`]; every other startup
//! failure is an [`Error::Backend`]. After a fault that destroys the context (an illegal
//! address, say), every later call reports `context lost after: <the first error>`.
//!
//! Nothing of this file has run on a GPU where it was written (no device there); it is
//! type-checked and linted in CI, and run against a stand-in driver library that answers
//! with error codes (tests/stand_in_driver.rs). `cargo test --features cuda` on a machine
//! with an NVIDIA driver runs it against the reference (tests/backend_agreement.rs).

mod driver;

use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::Mutex;
use std::time::Duration;

use cust::context::{Context, CurrentContext};
use cust::device::Device;
use cust::error::CudaError;
use cust::event::{Event, EventFlags};
use cust::memory::bytemuck::Zeroable;
use cust::memory::{CopyDestination, DeviceBuffer, DeviceCopy, DeviceSlice};
use cust::stream::{Stream, StreamFlags};
use kernels_gpu::params::{ForwardParams, GradParams, RowNormsParams};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Backend;
use super::abi;
use super::flops::MarginKernel;
use super::launch::{
    InputGradLaunch, KernelChoice, KernelLaunch, LaunchPlan, forward_launch, input_grad_launch,
    needs_row_norms, row_norms_plan, row_project_plan, row_scale_plan, weight_grad_launch,
};
use crate::error::{Error, Result};
use crate::layer::{Grads, RowCache};
use crate::margin::{Margin, Mode};
use ptxsim::ParamDecl;

/// The kernels' PTX (with `.loc` line info), built by `host/build.rs` exactly as
/// `lsoftmax ptx` builds it.
pub const KERNELS_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));

/// Dynamic shared memory a kernel may use without opting in through
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
const DEFAULT_DYNAMIC_SHARED_LIMIT: u32 = 48 * 1024;

const NAME: &str = "cuda";

fn backend_error(message: String) -> Error {
    Error::Backend {
        backend: NAME,
        message,
    }
}

/// Maps a cust error to [`Error::Backend`], saying which call failed, with the driver's
/// code and name (never cust's `Display`, which can panic). cust reports codes outside its
/// table as 999, so a 999 from these calls may stand for a newer code.
fn cuda_err(what: &'static str) -> impl FnOnce(CudaError) -> Error {
    move |e| {
        let code = e as u32 as driver::Code;
        let note = if code == 999 {
            " (as reported through cust, which maps codes it does not know to 999)"
        } else {
            ""
        };
        backend_error(format!("{what}: {}{note}", driver::describe(code)))
    }
}

/// A driver error of a running backend as [`Error::Backend`].
fn driver_err(e: driver::DriverError) -> Error {
    backend_error(e.to_string())
}

/// The backend cannot start: no driver or no device ([`Error::BackendUnavailable`]).
fn unavailable(message: String) -> Error {
    Error::BackendUnavailable {
        backend: NAME,
        message,
    }
}

/// Classifies a startup error of `cuInit`/`cuDeviceGetCount`: no device and no driver
/// (the toolkit's stub library answering) make the backend unavailable; anything else
/// (a driver/kernel-module mismatch, an unknown error, ...) is a failure.
fn startup_err(e: driver::DriverError) -> Error {
    match e.code {
        driver::ERROR_NO_DEVICE => {
            let visible = match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(v) => format!(" (CUDA_VISIBLE_DEVICES={v:?} may hide devices)"),
                Err(_) => String::new(),
            };
            unavailable(format!("no CUDA device: {e}{visible}"))
        }
        driver::ERROR_STUB_LIBRARY => unavailable(format!(
            "no NVIDIA driver: {e} (this libcuda is the toolkit's stub, a link target only)"
        )),
        _ => driver_err(e),
    }
}

/// The ABI view (`{u64 device address, u64 element count}`) of a device region.
fn view<T: DeviceCopy>(slice: &DeviceSlice<T>) -> abi::View {
    abi::View {
        addr: slice.as_device_ptr().as_raw(),
        len: slice.len() as u64,
    }
}

/// [`view`], or a view of no memory (null, 0) for an argument the launch does not read
/// (the row norms outside L-Softmax training).
fn view_opt<T: DeviceCopy>(slice: Option<&DeviceSlice<T>>) -> abi::View {
    slice.map_or(abi::View::EMPTY, view)
}

/// One grow-only device allocation.
struct Slot<T: DeviceCopy> {
    buf: Option<DeviceBuffer<T>>,
}

impl<T: DeviceCopy> Default for Slot<T> {
    fn default() -> Self {
        Slot { buf: None }
    }
}

impl<T: DeviceCopy + Zeroable> Slot<T> {
    /// The first `len` elements of this slot's allocation, reallocating (zeroed) only if
    /// it is smaller than `len`.
    fn region(&mut self, len: usize, what: &'static str) -> Result<DeviceSlice<T>> {
        let big_enough = self.buf.as_ref().is_some_and(|b| b.len() >= len);
        if !big_enough {
            // Free first so the old and the new allocation never coexist.
            self.buf = None;
            self.buf = Some(DeviceBuffer::zeroed(len).map_err(|e| {
                backend_error(format!(
                    "allocating {len} elements of {} bytes for {what}: {}",
                    std::mem::size_of::<T>(),
                    driver::describe(e as u32 as driver::Code)
                ))
            })?);
        }
        match &self.buf {
            Some(b) => Ok(b.index(..len)),
            None => Err(backend_error(format!("no device buffer for {what}"))),
        }
    }

    /// [`Self::region`] filled from `host`.
    fn upload(&mut self, host: &[T], what: &'static str) -> Result<DeviceSlice<T>> {
        let mut region = self.region(host.len(), what)?;
        region
            .copy_from(host)
            .map_err(cuda_err("copying an input to the device"))?;
        Ok(region)
    }
}

/// Every device region the kernels read or write.
#[derive(Default)]
struct Buffers {
    x: Slot<f32>,
    w: Slot<f32>,
    labels: Slot<u32>,
    x_norms: Slot<f64>,
    w_norms: Slot<f64>,
    out: Slot<f32>,
    p: Slot<f32>,
    alpha_scale: Slot<f32>,
    gamma_scale: Slot<f32>,
    g: Slot<f32>,
    dx: Slot<f32>,
    dw: Slot<f32>,
    /// The normalised margins' operands `X̃`, `Ŵ` and their gradients `dX̃`, `dŴ`.
    x_scaled: Slot<f32>,
    w_scaled: Slot<f32>,
    dx_scaled: Slot<f32>,
    dw_scaled: Slot<f32>,
    /// Split-K partial sums of the input gradient.
    partial: Slot<f32>,
    /// Host staging of the labels as the kernels' `u32`.
    labels_host: Vec<u32>,
}

/// A kernel entry point looked up once ([`function`]), with the dynamic shared memory it
/// has been opted in to.
struct CachedFunction {
    kernel: &'static str,
    raw: driver::Handle,
    shared_limit: u32,
}

// SAFETY: a function handle may be used from any thread on which its context is current;
// the backend serialises every use behind its mutex and sets the context first.
unsafe impl Send for CachedFunction {}

/// The CUDA state, used by one call at a time. Fields drop in declaration order: device
/// memory, then the stream, the function handles and the module, then the context they
/// live in.
struct State {
    buffers: Buffers,
    stream: Stream,
    functions: Vec<CachedFunction>,
    /// Declared `.param` lists of the embedded PTX's entries, which every launch's packed
    /// arguments are checked against ([`abi::pack`]).
    signatures: HashMap<String, Vec<ParamDecl>>,
    module: driver::LoadedModule,
    context: Context,
    /// The first error after which the context was unusable (a sticky fault); every later
    /// call fails with it instead of running.
    lost: Option<String>,
}

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
        // The entries' parameter lists first: a PTX whose declarations do not parse is a
        // build problem, reported before touching the driver.
        let signatures = ptxsim::entry_params(KERNELS_PTX)
            .map_err(|e| backend_error(format!("the embedded PTX's .entry parameters: {e}")))?;
        driver::init().map_err(startup_err)?;
        let count = driver::device_count().map_err(startup_err)?;
        if count <= 0 {
            return Err(unavailable(
                "no CUDA device: the driver reports 0 devices".into(),
            ));
        }
        if i64::from(ordinal) >= i64::from(count) {
            return Err(backend_error(format!(
                "device {ordinal} requested but the driver reports {count} CUDA device(s)"
            )));
        }
        let device = Device::get_device(ordinal).map_err(cuda_err("cuDeviceGet"))?;
        let device_name = device.name().map_err(cuda_err("cuDeviceGetName"))?;
        let context = Context::new(device).map_err(cuda_err("creating the primary context"))?;
        let module = load_kernels()?;
        let jit_info_log = module.info_log.clone();
        let stream = Stream::new(StreamFlags::DEFAULT, None).map_err(cuda_err("cuStreamCreate"))?;
        Ok(CudaBackend {
            state: Mutex::new(State {
                buffers: Buffers::default(),
                stream,
                functions: Vec::new(),
                signatures,
                module,
                context,
                lost: None,
            }),
            device_name,
            jit_info_log,
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
    fn with_state<T>(&self, body: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
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

    /// Times `iters` back-to-back launches of `kernel` on `problem` with CUDA events
    /// recorded on the stream around them (not counting uploads and the launches that
    /// prepare its inputs: the row norms and, for the gradients, one training forward).
    pub fn time_kernel(
        &self,
        kernel: MarginKernel,
        problem: &Problem,
        iters: u64,
    ) -> Result<Duration> {
        crate::layer::validate_inputs(problem.x.view(), problem.w.view(), &problem.labels)?;
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
        self.with_state(|state| time_kernel_locked(state, choice, kernel, problem, iters))
    }
}

/// [`CudaBackend::time_kernel`] on the locked state.
fn time_kernel_locked(
    state: &mut State,
    choice: KernelChoice,
    kernel: MarginKernel,
    problem: &Problem,
    iters: u64,
) -> Result<Duration> {
    let (n, d) = problem.x.dim();
    let c = problem.w.nrows();
    let (mode, margin) = (Mode::Train, problem.margin);
    let fwd = forward_launch(n, d, c, margin, mode, choice.variant)?;
    let norms = if needs_row_norms(margin, mode) {
        Some(row_norms_plan(n, d, c)?)
    } else {
        None
    };
    let mut scratch = Vec::new();
    let bufs = &mut state.buffers;
    let x = bufs
        .x
        .upload(row_major(&problem.x.view(), &mut scratch), "x")?;
    let w = bufs
        .w
        .upload(row_major(&problem.w.view(), &mut scratch), "w")?;
    let labels = upload_labels(bufs, &problem.labels)?;
    let g = bufs
        .g
        .upload(row_major(&problem.g.view(), &mut scratch), "dout")?;
    let fv = run_forward(state, &fwd, norms.as_ref(), x, w, labels)?;
    let ig = input_grad_launch(n, d, c, choice)?;
    let wg = weight_grad_launch(n, d, c, choice.variant)?;
    let partial = split_scratch(state, &ig)?;
    let dx = state.buffers.dx.region(n * d, "dx")?;
    let dw = state.buffers.dw.region(c * d, "dw")?;
    let start = Event::new(EventFlags::DEFAULT).map_err(cuda_err("cuEventCreate"))?;
    let stop = Event::new(EventFlags::DEFAULT).map_err(cuda_err("cuEventCreate"))?;
    start
        .record(&state.stream)
        .map_err(cuda_err("cuEventRecord"))?;
    for _ in 0..iters {
        match kernel {
            MarginKernel::Forward => launch_forward(state, &fwd, &fv)?,
            MarginKernel::InputGrad => {
                launch_input_grad(state, &ig, &g, &fv, partial.as_ref(), &dx)?
            }
            MarginKernel::WeightGrad => launch_weight_grad(state, &wg, &g, &fv, &dw)?,
        }
    }
    stop.record(&state.stream)
        .map_err(cuda_err("cuEventRecord"))?;
    stop.synchronize()
        .map_err(cuda_err("running the timed kernels"))?;
    stop.elapsed(&start).map_err(cuda_err("cuEventElapsedTime"))
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

/// Random inputs for [`CudaBackend::time_kernel`]: X, W, G uniform in `[-1, 1)`, labels
/// uniform in `0..C`, from a seeded ChaCha8 stream.
#[derive(Clone, Debug)]
pub struct Problem {
    /// N×D inputs.
    pub x: Array2<f32>,
    /// C×D weights.
    pub w: Array2<f32>,
    /// N labels in `0..C`.
    pub labels: Vec<usize>,
    /// N×C upstream gradient.
    pub g: Array2<f32>,
    /// The margin the forward applies.
    pub margin: Margin,
}

impl Problem {
    /// A random problem of shape (N, D, C); errors if any is 0.
    pub fn random(n: usize, d: usize, c: usize, margin: Margin, seed: u64) -> Result<Self> {
        if n == 0 || d == 0 || c == 0 {
            return Err(Error::Shape(format!(
                "empty problem: N = {n}, D = {d}, C = {c} (all must be >= 1)"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut uniform = |rows, cols| {
            Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0f32..1.0))
        };
        let (x, w, g) = (uniform(n, d), uniform(c, d), uniform(n, c));
        let labels = (0..n).map(|_| rng.random_range(0..c)).collect();
        Ok(Problem {
            x,
            w,
            labels,
            g,
            margin,
        })
    }
}

fn upload_labels(buffers: &mut Buffers, labels: &[usize]) -> Result<DeviceSlice<u32>> {
    buffers.labels_host.clear();
    for (row, &l) in labels.iter().enumerate() {
        let l32 = u32::try_from(l).map_err(|_| Error::LabelOutOfRange {
            row,
            label: i64::try_from(l).unwrap_or(i64::MAX),
            classes: u32::MAX as usize,
        })?;
        buffers.labels_host.push(l32);
    }
    let Buffers {
        labels: slot,
        labels_host,
        ..
    } = buffers;
    slot.upload(labels_host, "labels")
}

/// The device regions of the forward's inputs and outputs, which the gradient kernels
/// read too. `None` marks an argument the launch does not read (passed as an empty view).
struct ForwardViews {
    x: DeviceSlice<f32>,
    w: DeviceSlice<f32>,
    labels: DeviceSlice<u32>,
    x_norms: Option<DeviceSlice<f64>>,
    w_norms: Option<DeviceSlice<f64>>,
    out: Option<DeviceSlice<f32>>,
    p: DeviceSlice<f32>,
    alpha_scale: DeviceSlice<f32>,
    gamma_scale: DeviceSlice<f32>,
}

/// Loads [`KERNELS_PTX`] into the current context with line info (so Nsight Compute maps
/// SASS to the Rust lines of the `.loc` directives, docs/profiling.md) and the JIT's logs:
/// a rejected PTX says why, with the driver's code, the driver version and the PTX's
/// `.version`/`.target`.
fn load_kernels() -> Result<driver::LoadedModule> {
    let ptx = CString::new(KERNELS_PTX)
        .map_err(|_| backend_error("the embedded PTX contains a NUL byte".into()))?;
    driver::load_module(&ptx).map_err(|e| {
        let isa = ptx_directive(KERNELS_PTX, ".version").unwrap_or("?");
        let target = ptx_directive(KERNELS_PTX, ".target").unwrap_or("?");
        let driver = match driver::driver_version() {
            Ok((major, minor)) => format!("driver CUDA {major}.{minor}"),
            Err(v) => format!("driver version unknown ({v})"),
        };
        backend_error(format!(
            "loading the kernels' PTX (.version {isa}, .target {target}) into {driver}: {e}{}",
            if e.code == UNSUPPORTED_PTX_VERSION {
                "; the driver is older than this PTX ISA version (the README's First GPU run \
                 names the minimum driver)"
            } else {
                ""
            }
        ))
    })
}

/// `CUDA_ERROR_UNSUPPORTED_PTX_VERSION`.
const UNSUPPORTED_PTX_VERSION: driver::Code = 222;

/// The first word after a PTX directive at the start of a line (`.version 7.8` gives
/// `7.8`).
fn ptx_directive<'a>(ptx: &'a str, directive: &str) -> Option<&'a str> {
    ptx.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(directive)?;
        rest.split([',', ' ', '\t']).find(|w| !w.is_empty())
    })
}

/// The entry point of `plan`, looked up once per backend and cached (a lookup by name on
/// every launch would be timed as part of small problems), and opted in to the plan's
/// dynamic shared memory when that exceeds the default 48 KiB.
fn function(state: &mut State, plan: &LaunchPlan) -> Result<driver::Handle> {
    let index = match state.functions.iter().position(|f| f.kernel == plan.kernel) {
        Some(i) => i,
        None => {
            let name = CString::new(plan.kernel)
                .map_err(|_| backend_error(format!("kernel name {:?} has a NUL", plan.kernel)))?;
            let raw = state.module.function(&name).map_err(|e| {
                backend_error(format!(
                    "looking up kernel {} in the PTX module: {e}",
                    plan.kernel
                ))
            })?;
            state.functions.push(CachedFunction {
                kernel: plan.kernel,
                raw,
                shared_limit: DEFAULT_DYNAMIC_SHARED_LIMIT,
            });
            state.functions.len() - 1
        }
    };
    let f = &mut state.functions[index];
    if plan.shared_bytes > f.shared_limit {
        let bytes = i32::try_from(plan.shared_bytes).map_err(|_| {
            backend_error(format!(
                "{}: {} bytes of shared memory",
                plan.kernel, plan.shared_bytes
            ))
        })?;
        driver::set_function_attribute(
            f.raw,
            driver::FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes,
            &format!(
                "{}: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES = {bytes})",
                plan.kernel
            ),
        )
        .map_err(driver_err)?;
        f.shared_limit = plan.shared_bytes;
    }
    Ok(f.raw)
}

/// An NVTX range named after the kernel around its launch call (feature `nvtx`), so
/// Nsight Systems shows which host call issued which kernel.
struct LaunchRange;

impl LaunchRange {
    #[cfg_attr(not(feature = "nvtx"), allow(unused_variables))]
    fn new(kernel: &str) -> Self {
        #[cfg(feature = "nvtx")]
        nvtx::range_push!("{kernel}");
        LaunchRange
    }
}

impl Drop for LaunchRange {
    fn drop(&mut self) {
        #[cfg(feature = "nvtx")]
        nvtx::range_pop!();
    }
}

/// Packs `args` into the `.param` bytes of the entry of `plan` ([`abi::pack`], checked
/// against the parameters the embedded PTX declares: the same packing the `ptx` backend
/// hands its interpreter) and launches it on the state's stream.
fn launch_args(state: &mut State, plan: &LaunchPlan, args: &[abi::Arg]) -> Result<()> {
    let declared = state.signatures.get(plan.kernel).ok_or_else(|| {
        backend_error(format!(
            "kernel {} has no .entry in the embedded PTX",
            plan.kernel
        ))
    })?;
    let packed = abi::pack(plan.kernel, args, declared)?;
    let _range = LaunchRange::new(plan.kernel);
    let f = function(state, plan)?;
    let stream = state.stream.as_inner().cast::<c_void>();
    // `cuLaunchKernel` takes one pointer per parameter, to that parameter's value.
    let base = packed.bytes.as_ptr();
    let mut params: Vec<*mut c_void> = packed
        .offsets
        .iter()
        .map(|&off| base.wrapping_add(off).cast_mut().cast::<c_void>())
        .collect();
    // SAFETY: `f` belongs to the module loaded in the state's context, which `with_state`
    // made current, and `stream` to that context. `params` points into `packed`, which
    // `abi::pack` laid out and checked against the entry's declared parameters (count,
    // sizes, alignments); the driver copies each value (by the size it knows from the
    // PTX) during the call, while `packed` is alive. The views inside are device
    // allocations of this context owned by the locked state, alive until the stream is
    // synchronised, with lengths checked against the kernel parameters by the
    // `abi::*_args` builders.
    let code = unsafe {
        driver::launch(
            f,
            plan.grid,
            plan.block,
            plan.shared_bytes,
            stream,
            &mut params,
        )
    };
    driver::check(format!("launching {}", plan.kernel), code).map_err(driver_err)
}

/// Allocates the forward's outputs, runs `row_norms` when `norms` is given, then
/// `margin_forward`; returns the regions the gradient kernels need. Does not synchronise.
fn run_forward(
    state: &mut State,
    fwd: &KernelLaunch<ForwardParams>,
    norms: Option<&KernelLaunch<RowNormsParams>>,
    x: DeviceSlice<f32>,
    w: DeviceSlice<f32>,
    labels: DeviceSlice<u32>,
) -> Result<ForwardViews> {
    let (n, c) = (fwd.params.n as usize, fwd.params.c as usize);
    let b = &mut state.buffers;
    let mut fv = ForwardViews {
        x,
        w,
        labels,
        x_norms: None,
        w_norms: None,
        out: Some(b.out.region(n * c, "out")?),
        p: b.p.region(n, "p")?,
        alpha_scale: b.alpha_scale.region(n, "alpha_scale")?,
        gamma_scale: b.gamma_scale.region(n, "gamma_scale")?,
    };
    if let Some(rn) = norms {
        let x_norms = b.x_norms.region(n, "x_norms")?;
        let w_norms = b.w_norms.region(c, "w_norms")?;
        let views = abi::RowNormsViews {
            x: view(&fv.x),
            w: view(&fv.w),
            x_norms: view(&x_norms),
            w_norms: view(&w_norms),
        };
        launch_args(state, &rn.plan, &abi::row_norms_args(&rn.params, &views)?)?;
        fv.x_norms = Some(x_norms);
        fv.w_norms = Some(w_norms);
    }
    if fwd.params.margin.is_normalised() {
        let (x_norms, w_norms) = match (&fv.x_norms, &fv.w_norms) {
            (Some(xn), Some(wn)) => (xn.index(..), wn.index(..)),
            _ => return Err(backend_error("normalised margin without row norms".into())),
        };
        let x_scale = feature_scale(&fwd.params);
        (fv.x, fv.w) = normalised_operands(state, x_scale, &fv.x, &fv.w, &x_norms, &w_norms)?;
    }
    launch_forward(state, fwd, &fv)?;
    Ok(fv)
}

/// `Some(S)` for the kinds that rescale the rows of X (CosFace, ArcFace, combined).
fn feature_scale(p: &ForwardParams) -> Option<f32> {
    use kernels_gpu::params::MarginKind;
    matches!(
        p.margin,
        MarginKind::CosFace | MarginKind::ArcFace | MarginKind::Combined
    )
    .then_some(p.s)
}

/// `X̃` (`S·x_i/‖x_i‖` if `x_scale` is given, else `x` itself) and `Ŵ = w_j/‖w_j‖` by the
/// `row_scale` kernel.
fn normalised_operands(
    state: &mut State,
    x_scale: Option<f32>,
    x: &DeviceSlice<f32>,
    w: &DeviceSlice<f32>,
    x_norms: &DeviceSlice<f64>,
    w_norms: &DeviceSlice<f64>,
) -> Result<(DeviceSlice<f32>, DeviceSlice<f32>)> {
    let xt = match x_scale {
        Some(s) => {
            let out = state.buffers.x_scaled.region(x.len(), "x_scaled")?;
            launch_row_scale(state, x, x_norms, s, &out)?;
            out
        }
        None => x.index(..),
    };
    let wt = state.buffers.w_scaled.region(w.len(), "w_scaled")?;
    launch_row_scale(state, w, w_norms, 1.0, &wt)?;
    Ok((xt, wt))
}

/// `out_i = factor·v_i/‖v_i‖` (the `row_scale` kernel) for the `norms.len()` rows of `v`.
fn launch_row_scale(
    state: &mut State,
    v: &DeviceSlice<f32>,
    norms: &DeviceSlice<f64>,
    factor: f32,
    out: &DeviceSlice<f32>,
) -> Result<()> {
    let rows = norms.len();
    let d = v.len().checked_div(rows).unwrap_or(0);
    let launch = row_scale_plan(rows, d, factor)?;
    let views = abi::RowScaleViews {
        v: view(v),
        norms: view(norms),
        dv_scaled: abi::View::EMPTY,
        out: view(out),
    };
    launch_args(
        state,
        &launch.plan,
        &abi::row_scale_args(&launch.params, &views)?,
    )
}

/// `dv_i = (factor/‖v_i‖)·(dṽ_i − (v̂_i·dṽ_i)·v̂_i)` (the `row_project` kernel).
fn launch_row_project(
    state: &mut State,
    v: &DeviceSlice<f32>,
    norms: &DeviceSlice<f64>,
    factor: f32,
    dv_scaled: &DeviceSlice<f32>,
    dv: &DeviceSlice<f32>,
) -> Result<()> {
    let rows = norms.len();
    let d = v.len().checked_div(rows).unwrap_or(0);
    let launch = row_project_plan(rows, d, factor)?;
    let views = abi::RowScaleViews {
        v: view(v),
        norms: view(norms),
        dv_scaled: view(dv_scaled),
        out: view(dv),
    };
    launch_args(
        state,
        &launch.plan,
        &abi::row_project_args(&launch.params, &views)?,
    )
}

fn launch_forward(
    state: &mut State,
    fwd: &KernelLaunch<ForwardParams>,
    fv: &ForwardViews,
) -> Result<()> {
    // Only L-Softmax training reads the norms; other launches get empty views.
    let views = abi::ForwardViews {
        x: view(&fv.x),
        w: view(&fv.w),
        labels: view(&fv.labels),
        x_norms: view_opt(fv.x_norms.as_ref()),
        w_norms: view_opt(fv.w_norms.as_ref()),
        out: view_opt(fv.out.as_ref()),
        p: view(&fv.p),
        alpha_scale: view(&fv.alpha_scale),
        gamma_scale: view(&fv.gamma_scale),
    };
    launch_args(state, &fwd.plan, &abi::forward_args(&fwd.params, &views)?)
}

/// The split-K scratch region `ig` needs, if it splits.
fn split_scratch(state: &mut State, ig: &InputGradLaunch) -> Result<Option<DeviceSlice<f32>>> {
    match ig {
        InputGradLaunch::Direct(_) => Ok(None),
        InputGradLaunch::Split { scratch_len, .. } => Ok(Some(
            state
                .buffers
                .partial
                .region(*scratch_len, "split-k partials")?,
        )),
    }
}

/// The input gradient: one launch, or split-K's two (partials, then their reduction in
/// chunk order).
fn launch_input_grad(
    state: &mut State,
    ig: &InputGradLaunch,
    g: &DeviceSlice<f32>,
    fv: &ForwardViews,
    partial: Option<&DeviceSlice<f32>>,
    dx: &DeviceSlice<f32>,
) -> Result<()> {
    let launch = match ig {
        InputGradLaunch::Direct(launch) => launch,
        InputGradLaunch::Split {
            partial: first,
            reduce,
            ..
        } => {
            let views = abi::SplitKViews {
                g: view(g),
                x: view(&fv.x),
                w: view(&fv.w),
                labels: view(&fv.labels),
                p: view(&fv.p),
                alpha_scale: view(&fv.alpha_scale),
                partial: view_opt(partial),
                dx: view(dx),
            };
            launch_args(
                state,
                &first.plan,
                &abi::splitk_partial_args(&first.params, &views)?,
            )?;
            return launch_args(
                state,
                &reduce.plan,
                &abi::splitk_reduce_args(&reduce.params, &views)?,
            );
        }
    };
    let views = abi::GradViews {
        g: view(g),
        x: view(&fv.x),
        w: view(&fv.w),
        labels: view(&fv.labels),
        p: view(&fv.p),
        scale: view(&fv.alpha_scale),
        out: view(dx),
    };
    launch_args(
        state,
        &launch.plan,
        &abi::input_grad_args(&launch.params, &views)?,
    )
}

fn launch_weight_grad(
    state: &mut State,
    launch: &KernelLaunch<GradParams>,
    g: &DeviceSlice<f32>,
    fv: &ForwardViews,
    dw: &DeviceSlice<f32>,
) -> Result<()> {
    let views = abi::GradViews {
        g: view(g),
        x: view(&fv.x),
        w: view(&fv.w),
        labels: view(&fv.labels),
        p: view(&fv.p),
        scale: view(&fv.gamma_scale),
        out: view(dw),
    };
    launch_args(
        state,
        &launch.plan,
        &abi::weight_grad_args(&launch.params, &views)?,
    )
}

/// Copies a device region into `host` (same length); call after the stream finished.
fn download<T: DeviceCopy>(region: &DeviceSlice<T>, host: &mut [T], what: &str) -> Result<()> {
    if region.len() != host.len() {
        return Err(backend_error(format!(
            "{what}: device region of {} elements, host buffer of {}",
            region.len(),
            host.len()
        )));
    }
    region.copy_to(host).map_err(|e| {
        let code = e as u32 as driver::Code;
        backend_error(format!(
            "copying {what} to the host: {}",
            driver::describe(code)
        ))
    })
}

/// The row-major data of `a`, copied into `scratch` only if `a` is not row-major already.
fn row_major<'a>(a: &'a ArrayView2<'_, f32>, scratch: &'a mut Vec<f32>) -> &'a [f32] {
    match a.as_slice() {
        Some(s) => s,
        None => {
            scratch.clear();
            scratch.extend(a.iter().copied());
            scratch
        }
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn forward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        margin: Margin,
        mode: Mode,
    ) -> Result<(Array2<f32>, RowCache)> {
        // The trait is public: a label >= C reaching the kernels would index outside a
        // device buffer (the emulator catches that, the GPU does not), so the inputs are
        // checked here as well as in `layer::forward_on`.
        crate::layer::validate_inputs(x, w, labels)?;
        let (n, d) = x.dim();
        let c = w.nrows();
        let fwd = forward_launch(n, d, c, margin, mode, self.choice.variant)?;
        let norms = if needs_row_norms(margin, mode) {
            Some(row_norms_plan(n, d, c)?)
        } else {
            None
        };
        self.with_state(|state| {
            let mut scratch = Vec::new();
            let b = &mut state.buffers;
            let xd = b.x.upload(row_major(&x, &mut scratch), "x")?;
            let wd = b.w.upload(row_major(&w, &mut scratch), "w")?;
            let ld = upload_labels(b, labels)?;
            let fv = run_forward(state, &fwd, norms.as_ref(), xd, wd, ld)?;
            driver::stream_synchronize(
                state.stream.as_inner().cast(),
                "running the forward kernels",
            )
            .map_err(driver_err)?;
            let mut out = vec![0.0f32; n * c];
            if let Some(region) = &fv.out {
                download(region, &mut out, "out")?;
            }
            let mut cache = RowCache::plain(n);
            if let (true, Some(xn), Some(wn)) = (margin.is_normalised(), &fv.x_norms, &fv.w_norms) {
                let mut norms = crate::layer::Normalisation {
                    x_norms: vec![0.0; n],
                    w_norms: vec![0.0; c],
                    x_scale: margin.feature_scale(),
                };
                download(xn, &mut norms.x_norms, "x_norms")?;
                download(wn, &mut norms.w_norms, "w_norms")?;
                cache.normalisation = Some(norms);
            }
            download(&fv.p, &mut cache.p, "p")?;
            download(&fv.alpha_scale, &mut cache.alpha_scale, "alpha_scale")?;
            download(&fv.gamma_scale, &mut cache.gamma_scale, "gamma_scale")?;
            let out = Array2::from_shape_vec((n, c), out)
                .map_err(|e| backend_error(format!("output of {n}x{c}: {e}")))?;
            Ok((out, cache))
        })
    }

    fn backward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        cache: &RowCache,
        dout: ArrayView2<f32>,
    ) -> Result<Grads> {
        // Checked here as well as in `layer::backward`: see `forward`.
        crate::layer::validate_inputs(x, w, labels)?;
        let (n, d) = x.dim();
        let c = w.nrows();
        if dout.dim() != (n, c) {
            return Err(Error::Shape(format!(
                "dout is {}x{} but the layer output is {n}x{c}",
                dout.nrows(),
                dout.ncols()
            )));
        }
        for (name, len) in [
            ("p", cache.p.len()),
            ("alpha_scale", cache.alpha_scale.len()),
            ("gamma_scale", cache.gamma_scale.len()),
        ] {
            if len != n {
                return Err(Error::Shape(format!(
                    "row cache {name} has {len} entries but x has {n} rows"
                )));
            }
        }
        if let Some(nm) = cache
            .normalisation
            .as_ref()
            .filter(|nm| nm.x_norms.len() != n || nm.w_norms.len() != c)
        {
            return Err(Error::Shape(format!(
                "row cache norms have {} and {} entries but x has {n} rows and w {c}",
                nm.x_norms.len(),
                nm.w_norms.len()
            )));
        }
        let ig = input_grad_launch(n, d, c, self.choice)?;
        let wg = weight_grad_launch(n, d, c, self.choice.variant)?;
        self.with_state(|state| {
            let mut scratch = Vec::new();
            let b = &mut state.buffers;
            let mut fv = ForwardViews {
                x: b.x.upload(row_major(&x, &mut scratch), "x")?,
                w: b.w.upload(row_major(&w, &mut scratch), "w")?,
                labels: upload_labels(b, labels)?,
                x_norms: None,
                w_norms: None,
                out: None,
                p: b.p.upload(&cache.p, "p")?,
                alpha_scale: b.alpha_scale.upload(&cache.alpha_scale, "alpha_scale")?,
                gamma_scale: b.gamma_scale.upload(&cache.gamma_scale, "gamma_scale")?,
            };
            let g = b.g.upload(row_major(&dout, &mut scratch), "dout")?;
            let dx = b.dx.region(n * d, "dx")?;
            let dw = b.dw.region(c * d, "dw")?;
            match &cache.normalisation {
                None => {
                    let partial = split_scratch(state, &ig)?;
                    launch_input_grad(state, &ig, &g, &fv, partial.as_ref(), &dx)?;
                    launch_weight_grad(state, &wg, &g, &fv, &dw)?;
                }
                Some(nm) => {
                    // GEMMs on X̃, Ŵ into dX̃, dŴ, then the projections into dX, dW.
                    let b = &mut state.buffers;
                    let xn = b.x_norms.upload(&nm.x_norms, "x_norms")?;
                    let wn = b.w_norms.upload(&nm.w_norms, "w_norms")?;
                    let dxs = b.dx_scaled.region(n * d, "dx_scaled")?;
                    let dws = b.dw_scaled.region(c * d, "dw_scaled")?;
                    let (x_raw, w_raw) = (fv.x.index(..), fv.w.index(..));
                    (fv.x, fv.w) =
                        normalised_operands(state, nm.x_scale, &x_raw, &w_raw, &xn, &wn)?;
                    let dx_target = if nm.x_scale.is_some() { &dxs } else { &dx };
                    let partial = split_scratch(state, &ig)?;
                    launch_input_grad(state, &ig, &g, &fv, partial.as_ref(), dx_target)?;
                    launch_weight_grad(state, &wg, &g, &fv, &dws)?;
                    if let Some(s) = nm.x_scale {
                        launch_row_project(state, &x_raw, &xn, s, &dxs, &dx)?;
                    }
                    launch_row_project(state, &w_raw, &wn, 1.0, &dws, &dw)?;
                }
            }
            driver::stream_synchronize(
                state.stream.as_inner().cast(),
                "running the gradient kernels",
            )
            .map_err(driver_err)?;
            let mut dx_host = vec![0.0f32; n * d];
            let mut dw_host = vec![0.0f32; c * d];
            download(&dx, &mut dx_host, "dx")?;
            download(&dw, &mut dw_host, "dw")?;
            let grads = Grads {
                dx: Array2::from_shape_vec((n, d), dx_host)
                    .map_err(|e| backend_error(format!("dx of {n}x{d}: {e}")))?,
                dw: Array2::from_shape_vec((c, d), dw_host)
                    .map_err(|e| backend_error(format!("dw of {c}x{d}: {e}")))?,
            };
            Ok(grads)
        })
    }
}
