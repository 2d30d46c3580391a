//! What a device backend provides to the launch pipeline ([`super::pipeline`]): the
//! [`Device`] trait (memory, launches, a name for errors) and the element types of its
//! buffers. The emulator (`emulated.rs`), the PTX interpreter (`ptx.rs`) and CUDA
//! (`cuda/device.rs`) implement it.

use super::abi::{KernelArgs, View};
use super::launch::LaunchPlan;
use crate::error::Result;

#[cfg(feature = "cuda")]
mod bound {
    /// What cust needs of an element to copy it to and from device memory.
    pub trait DeviceMemory: cust::memory::DeviceCopy + cust::memory::bytemuck::Zeroable {}
    impl<T: cust::memory::DeviceCopy + cust::memory::bytemuck::Zeroable> DeviceMemory for T {}
}
#[cfg(not(feature = "cuda"))]
mod bound {
    /// Without the CUDA backend nothing more is needed of an element.
    pub trait DeviceMemory {}
    impl<T> DeviceMemory for T {}
}

/// An element type of device buffers: `f32` (matrices, the row cache), `u32` (labels),
/// `f64` (row norms).
pub(crate) trait Element:
    Copy + Default + Send + Sync + 'static + bound::DeviceMemory
{
    /// Bytes per element.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self` (the GPU's byte order).
    fn push_le(self, out: &mut Vec<u8>);
    /// The element of `SIZE` little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn push_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn from_le(bytes: &[u8]) -> Self {
                bytes.try_into().map(<$t>::from_le_bytes).unwrap_or_default()
            }
        }
    )*};
}
element!(f32, u32, f64);

/// What a device backend provides to the pipeline: memory, launches, a name.
///
/// A device is lent to the pipeline for one forward or backward call (or one timing run)
/// and used from one thread; what it keeps between calls (CUDA's regions) is its own
/// business.
///
/// Contract, for every implementation:
/// - Buffers are handles. The memory behind a buffer belongs to the device and stays valid
///   while the device value lives, whatever happens to the handle, except that a device may
///   reuse one region per `name` (the CUDA backend keeps grow-only regions across calls):
///   asking for a `name` again may invalidate the memory of the earlier buffer of that
///   name. The pipeline therefore asks for each name at most once per call.
/// - [`Device::output`] returns memory whose contents the kernels must not rely on (the
///   emulator leaves it uninitialised so that a read is an initcheck fault; the
///   interpreter fills it with NaN bytes; CUDA leaves whatever was there).
/// - Launches run in issue order; [`Device::download`] may only be called after
///   [`Device::synchronize`] returned `Ok` for the launches that wrote the buffer.
/// - Errors are [`crate::Error::Backend`] naming [`Device::name`], except the ABI checks of the
///   arguments (`backend: "abi"`, from [`KernelArgs::args`]).
pub(crate) trait Device {
    /// A device region of elements of `T`.
    type Buffer<T: Element>;

    /// The backend's name in errors (`emulated`, `ptx`, `cuda`).
    fn name(&self) -> &'static str;

    /// A buffer named `name` holding `data`.
    fn upload<T: Element>(&mut self, name: &'static str, data: &[T]) -> Result<Self::Buffer<T>>;

    /// A buffer named `name` of `len` elements for a kernel to write.
    fn output<T: Element>(&mut self, name: &'static str, len: usize) -> Result<Self::Buffer<T>>;

    /// The kernel-argument view (`{device address, element count}`) of `buffer`; two
    /// views of the same buffer are equal. The address means something only to this
    /// device.
    fn view<T: Element>(&self, buffer: &Self::Buffer<T>) -> View;

    /// Launches `plan.kernel` with `args` (checked against the parameters by
    /// [`KernelArgs::args`]; a device that runs bytes packs those against the entry it
    /// launches).
    ///
    /// # Safety
    /// Every non-empty [`View`] inside `args` was returned by [`Device::view`] of this
    /// device for a buffer whose memory is still valid (see the trait's contract: no later
    /// request for the same name) and stays so until the next [`Device::synchronize`]
    /// returns; `args` names the kernel `plan` launches, so that on CUDA, which checks
    /// nothing at run time, the kernel reads and writes only inside those views. The lengths
    /// inside the views are the buffers' own, which the argument builders compare with the
    /// sizes in the parameters.
    unsafe fn launch(&mut self, plan: &LaunchPlan, args: &KernelArgs) -> Result<()>;

    /// Waits for every launch so far; `what` says what they were for, in the error.
    fn synchronize(&mut self, what: &str) -> Result<()>;

    /// The contents of `buffer` (named `name` in errors).
    fn download<T: Element>(&mut self, buffer: &Self::Buffer<T>, name: &str) -> Result<Vec<T>>;
}
