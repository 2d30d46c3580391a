//! Device memory of the CUDA backend: a grow-only cache of one region per name (`x`, `w`,
//! `labels`, `out`, …, the names the launch pipeline gives its buffers), kept behind the
//! backend's mutex across calls. A call whose sizes fit what an earlier call allocated
//! allocates nothing on the device.

use std::any::Any;
use std::collections::HashMap;

use cust::memory::{CopyDestination, DeviceBuffer, DeviceSlice};

use super::error::{backend_error, cuda_err, describe};
use crate::backend::abi;
use crate::backend::device::Element;
use crate::error::Result;

/// One grow-only device allocation.
struct Slot<T: Element> {
    buf: Option<DeviceBuffer<T>>,
}

impl<T: Element> Slot<T> {
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
                    T::SIZE,
                    describe(e)
                ))
            })?);
        }
        match &self.buf {
            Some(b) => Ok(b.index(..len)),
            None => Err(backend_error(format!("no device buffer for {what}"))),
        }
    }
}

/// Every device region the kernels read or write, one grow-only [`Slot`] per name.
/// Asking for a name again may reallocate its slot, which frees the memory of the region
/// handed out before under that name.
#[derive(Default)]
pub(super) struct Regions {
    slots: HashMap<&'static str, Box<dyn Any + Send>>,
}

impl Regions {
    /// The region `name` of `len` elements (contents: whatever the slot held, zeroes when
    /// it was just allocated).
    pub(super) fn region<T: Element>(
        &mut self,
        name: &'static str,
        len: usize,
    ) -> Result<DeviceSlice<T>> {
        let slot = self
            .slots
            .entry(name)
            .or_insert_with(|| Box::new(Slot::<T> { buf: None }));
        match slot.downcast_mut::<Slot<T>>() {
            Some(slot) => slot.region(len, name),
            None => Err(backend_error(format!(
                "device region {name} was allocated for another element type"
            ))),
        }
    }

    /// [`Self::region`] filled from `host`.
    pub(super) fn upload<T: Element>(
        &mut self,
        name: &'static str,
        host: &[T],
    ) -> Result<DeviceSlice<T>> {
        let mut region = self.region(name, host.len())?;
        region
            .copy_from(host)
            .map_err(cuda_err("copying an input to the device"))?;
        Ok(region)
    }
}

/// The ABI view (`{u64 device address, u64 element count}`) of a device region.
pub(super) fn view<T: Element>(slice: &DeviceSlice<T>) -> abi::View {
    abi::View {
        addr: slice.as_device_ptr().as_raw(),
        len: slice.len() as u64,
    }
}

/// A device region's contents; call after the stream finished.
pub(super) fn download<T: Element>(region: &DeviceSlice<T>, what: &str) -> Result<Vec<T>> {
    let mut host = vec![T::default(); region.len()];
    region
        .copy_to(&mut host[..])
        .map_err(|e| backend_error(format!("copying {what} to the host: {}", describe(e))))?;
    Ok(host)
}
