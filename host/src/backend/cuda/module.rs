//! The kernels' module on the device: the embedded PTX loaded with the JIT's logs, its
//! entry points looked up once, opted in to the dynamic shared memory their plans need,
//! and launched with packed arguments.

use std::collections::HashMap;
use std::ffi::{CString, c_void};

use ptxsim::ParamDecl;

use super::driver;
use super::error::{backend_error, driver_err};
use crate::backend::abi;
use crate::backend::launch::LaunchPlan;
use crate::error::Result;

/// The kernels' PTX (with `.loc` line info), built by `host/build.rs` exactly as
/// `lsoftmax ptx` builds it.
pub const KERNELS_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));

/// The loaded module with its entry points. Fields drop in declaration order: the function
/// handles before the module they belong to.
pub(crate) struct Kernels {
    functions: Vec<CachedFunction>,
    /// Declared `.param` lists of the embedded PTX's entries, which every launch's packed
    /// arguments are checked against ([`abi::pack`]).
    signatures: HashMap<String, Vec<ParamDecl>>,
    module: driver::LoadedModule,
}

/// Dynamic shared memory a kernel may use without opting in through
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
const DEFAULT_DYNAMIC_SHARED_LIMIT: u32 = 48 * 1024;

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

/// The entry point of `plan`, looked up once per backend and cached (a lookup by name on
/// every launch would be timed as part of small problems), and opted in to the plan's
/// dynamic shared memory when that exceeds the default 48 KiB.
fn function(kernels: &mut Kernels, plan: &LaunchPlan) -> Result<driver::Handle> {
    let index = match kernels
        .functions
        .iter()
        .position(|f| f.kernel == plan.kernel)
    {
        Some(i) => i,
        None => {
            let name = CString::new(plan.kernel)
                .map_err(|_| backend_error(format!("kernel name {:?} has a NUL", plan.kernel)))?;
            let raw = kernels.module.function(&name).map_err(|e| {
                backend_error(format!(
                    "looking up kernel {} in the PTX module: {e}",
                    plan.kernel
                ))
            })?;
            kernels.functions.push(CachedFunction {
                kernel: plan.kernel,
                raw,
                shared_limit: DEFAULT_DYNAMIC_SHARED_LIMIT,
            });
            kernels.functions.len() - 1
        }
    };
    let f = &mut kernels.functions[index];
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
/// The module's context is current on this thread and `stream` is a stream of it; every
/// view inside `args` is a device allocation of that context, valid until the stream is
/// synchronised, and `args` belongs to `plan.kernel` (the pipeline's `Device::launch`
/// contract).
pub(super) unsafe fn launch_args(
    kernels: &mut Kernels,
    stream: driver::Handle,
    plan: &LaunchPlan,
    args: &[abi::Arg],
) -> Result<()> {
    let declared = kernels.signatures.get(plan.kernel).ok_or_else(|| {
        backend_error(format!(
            "kernel {} has no .entry in the embedded PTX",
            plan.kernel
        ))
    })?;
    let packed = abi::pack(plan.kernel, args, declared)?;
    let _range = LaunchRange::new(plan.kernel);
    let f = function(kernels, plan)?;
    // `cuLaunchKernel` takes one pointer per parameter, to that parameter's value.
    let base = packed.bytes.as_ptr();
    let mut params: Vec<*mut c_void> = packed
        .offsets
        .iter()
        .map(|&off| base.wrapping_add(off).cast_mut().cast::<c_void>())
        .collect();
    // SAFETY: `f` belongs to the module loaded in the context that is current (this
    // function's contract), and `stream` to that context. `params`
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

impl Kernels {
    /// Loads [`KERNELS_PTX`] into the current context; `signatures` are its entries'
    /// declared parameters.
    pub(super) fn load(signatures: HashMap<String, Vec<ParamDecl>>) -> Result<Self> {
        Ok(Kernels {
            functions: Vec::new(),
            signatures,
            module: load_module()?,
        })
    }

    /// What the driver's JIT said while compiling the PTX.
    pub(super) fn jit_info_log(&self) -> &str {
        &self.module.info_log
    }
}

/// Loads [`KERNELS_PTX`] into the current context with line info (so Nsight Compute maps
/// SASS to the Rust lines of the `.loc` directives, docs/profiling.md) and the JIT's logs:
/// a rejected PTX says why, with the driver's code, the driver version and the PTX's
/// `.version`/`.target`.
fn load_module() -> Result<driver::LoadedModule> {
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
