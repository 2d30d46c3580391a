//! The kernels' module on the device: its entry points, looked up once, opted in to the
//! dynamic shared memory their plans need, and launched with packed arguments.

use std::ffi::{CString, c_void};

use super::context::State;
use super::driver;
use super::error::{backend_error, driver_err};
use crate::backend::abi;
use crate::backend::launch::LaunchPlan;
use crate::error::Result;

/// Dynamic shared memory a kernel may use without opting in through
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
const DEFAULT_DYNAMIC_SHARED_LIMIT: u32 = 48 * 1024;

/// A kernel entry point looked up once ([`function`]), with the dynamic shared memory it
/// has been opted in to.
pub(super) struct CachedFunction {
    kernel: &'static str,
    raw: driver::Handle,
    shared_limit: u32,
}

// SAFETY: a function handle may be used from any thread on which its context is current;
// the backend serialises every use behind its mutex and sets the context first.
unsafe impl Send for CachedFunction {}

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
///
/// # Safety
/// The contract of [`crate::backend::pipeline::Device::launch`]: every view inside `args`
/// is a region of `state`'s memory, valid until the stream is synchronised, and `args`
/// belongs to `plan.kernel`.
pub(super) unsafe fn launch_args(
    state: &mut State,
    plan: &LaunchPlan,
    args: &[abi::Arg],
) -> Result<()> {
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
    // SAFETY: `f` belongs to the module loaded in the state's context, which the backend
    // made current before handing out the state, and `stream` to that context. `params`
    // points into `packed`, which `abi::pack` laid out and checked against the entry's
    // declared parameters (count, sizes, alignments); the driver copies each value (by
    // the size it knows from the PTX) during the call, while `packed` is alive. The views
    // inside are device allocations of this context that stay valid until the stream is
    // synchronised (this function's contract), with lengths checked against the kernel
    // parameters by the `abi::*_args` builders.
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
