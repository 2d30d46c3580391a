//! The locked CUDA state as the launch pipeline's [`Device`]: regions of the grow-only
//! memory cache, launches on the state's stream, synchronisation of that stream.

use cust::memory::DeviceSlice;

use super::context::State;
use super::error::{NAME, driver_err};
use super::{driver, memory, module};
use crate::backend::abi::{KernelArgs, View};
use crate::backend::device::{Device, Element};
use crate::backend::launch::LaunchPlan;
use crate::error::Result;

/// Only lent out by `CudaBackend`'s `DeviceBackend::with_device`, which made the state's
/// context current on the calling thread and waited for earlier work on its stream.
impl Device for State {
    type Buffer<T: Element> = DeviceSlice<T>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn upload<T: Element>(&mut self, name: &'static str, data: &[T]) -> Result<DeviceSlice<T>> {
        self.regions.upload(name, data)
    }

    /// The region `name` as an earlier call left it (zeroes when newly allocated).
    fn output<T: Element>(&mut self, name: &'static str, len: usize) -> Result<DeviceSlice<T>> {
        self.regions.region(name, len)
    }

    fn view<T: Element>(&self, buffer: &DeviceSlice<T>) -> View {
        memory::view(buffer)
    }

    unsafe fn launch(&mut self, plan: &LaunchPlan, args: &KernelArgs) -> Result<()> {
        let args = args.args()?;
        let stream = self.stream.as_inner().cast();
        // SAFETY: the state is lent out only with its context current (see above), and
        // `stream` is the state's; the rest is this function's own contract: the views in
        // `args` are regions of this state's memory, valid until the stream is
        // synchronised, and `args` belongs to `plan.kernel`.
        unsafe { module::launch_args(&mut self.kernels, stream, plan, &args) }
    }

    fn synchronize(&mut self, what: &str) -> Result<()> {
        driver::stream_synchronize(self.stream.as_inner().cast(), what).map_err(driver_err)
    }

    fn download<T: Element>(&mut self, buffer: &DeviceSlice<T>, name: &str) -> Result<Vec<T>> {
        memory::download(buffer, name)
    }
}
