//! The CUDA state of one backend: device, context, stream, the loaded module and the
//! device memory, created once by [`State::open`] and used by one call at a time.

use cust::context::Context;
use cust::device::Device as CudaDevice;
use cust::stream::{Stream, StreamFlags};

use super::driver;
use super::error::{backend_error, cuda_err, startup_err, unavailable};
use super::memory::Regions;
use super::module::{KERNELS_PTX, Kernels};
use crate::error::Result;

/// The CUDA state, used by one call at a time. Fields drop in declaration order: device
/// memory, then the stream, the function handles and the module, then the context they
/// live in.
pub(crate) struct State {
    pub(super) regions: Regions,
    pub(super) stream: Stream,
    pub(super) kernels: Kernels,
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
        let kernels = Kernels::load(signatures)?;
        let jit_info_log = kernels.jit_info_log().to_string();
        let stream = Stream::new(StreamFlags::DEFAULT, None).map_err(cuda_err("cuStreamCreate"))?;
        Ok(Opened {
            state: State {
                regions: Regions::default(),
                stream,
                kernels,
                context,
                lost: None,
            },
            device_name,
            jit_info_log,
        })
    }
}
