//! The CUDA state of one backend: device, context, stream, the loaded module and the
//! device memory, created once by [`State::open`] and used by one call at a time.

use std::collections::HashMap;
use std::ffi::CString;

use cust::context::Context;
use cust::device::Device as CudaDevice;
use cust::stream::{Stream, StreamFlags};
use ptxsim::ParamDecl;

use super::KERNELS_PTX;
use super::driver;
use super::error::{backend_error, cuda_err, startup_err, unavailable};
use super::memory::Regions;
use super::module::CachedFunction;
use crate::error::Result;

/// The CUDA state, used by one call at a time. Fields drop in declaration order: device
/// memory, then the stream, the function handles and the module, then the context they
/// live in.
pub(super) struct State {
    pub(super) regions: Regions,
    pub(super) stream: Stream,
    pub(super) functions: Vec<CachedFunction>,
    /// Declared `.param` lists of the embedded PTX's entries, which every launch's packed
    /// arguments are checked against ([`crate::backend::abi::pack`]).
    pub(super) signatures: HashMap<String, Vec<ParamDecl>>,
    pub(super) module: driver::LoadedModule,
    pub(super) context: Context,
    /// The first error after which the context was unusable (a sticky fault); every later
    /// call fails with it instead of running.
    pub(super) lost: Option<String>,
}

/// What [`State::open`] learnt about the device besides the state.
pub(super) struct Opened {
    pub(super) state: State,
    pub(super) device_name: String,
    pub(super) jit_info_log: String,
}

impl State {
    /// Initialises the driver, creates a context on the device with this ordinal, loads
    /// [`KERNELS_PTX`] and creates the stream. Errors: [`crate::Error::BackendUnavailable`]
    /// without a driver or a device, [`crate::Error::Backend`] otherwise.
    pub(super) fn open(ordinal: u32) -> Result<Opened> {
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
        let device = CudaDevice::get_device(ordinal).map_err(cuda_err("cuDeviceGet"))?;
        let device_name = device.name().map_err(cuda_err("cuDeviceGetName"))?;
        let context = Context::new(device).map_err(cuda_err("creating the primary context"))?;
        let module = load_kernels()?;
        let jit_info_log = module.info_log.clone();
        let stream = Stream::new(StreamFlags::DEFAULT, None).map_err(cuda_err("cuStreamCreate"))?;
        Ok(Opened {
            state: State {
                regions: Regions::default(),
                stream,
                functions: Vec::new(),
                signatures,
                module,
                context,
                lost: None,
            },
            device_name,
            jit_info_log,
        })
    }
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
