//! The facade on the host: every function reads the thread-local launch context that
//! [`crate::emulator`] sets for each emulated thread, and every memory access is checked.
//!
//! Accessors are `#[track_caller]` so that a fault names the kernel source line.

use std::marker::PhantomData;
use std::panic::Location;

use super::DeviceCopy;
pub use crate::emulator::views::{Global, GlobalMut};
use crate::emulator::{context, shared, sync};

macro_rules! launch_indices {
    ($($(#[$doc:meta])* $name:ident => $field:ident . $axis:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            /// # Panics
            /// Outside an emulated launch (there is no thread to ask about).
            #[inline]
            pub fn $name() -> u32 {
                context::with(|ctx| ctx.$field.$axis)
            }
        )*
    };
}

launch_indices! {
    /// `threadIdx.x`: index of the calling thread in its block along x.
    thread_idx_x => thread.x;
    /// `threadIdx.y`.
    thread_idx_y => thread.y;
    /// `threadIdx.z`.
    thread_idx_z => thread.z;
    /// `blockIdx.x`: index of the calling thread's block in the grid along x.
    block_idx_x => block.x;
    /// `blockIdx.y`.
    block_idx_y => block.y;
    /// `blockIdx.z`.
    block_idx_z => block.z;
    /// `blockDim.x`: threads per block along x.
    block_dim_x => block_dim.x;
    /// `blockDim.y`.
    block_dim_y => block_dim.y;
    /// `blockDim.z`.
    block_dim_z => block_dim.z;
    /// `gridDim.x`: blocks per grid along x.
    grid_dim_x => grid_dim.x;
    /// `gridDim.y`.
    grid_dim_y => grid_dim.y;
    /// `gridDim.z`.
    grid_dim_z => grid_dim.z;
}

/// `__syncthreads()`: waits until every thread of the block reaches this same call.
///
/// The call site identifies the barrier: threads waiting at different call sites, or a
/// thread exiting while others wait, is reported as a synccheck fault.
///
/// The call site is `#[track_caller]`'s: a helper function that synchronises must itself
/// be `#[track_caller]` (as every function between it and the kernel body), so that each
/// call of the helper is its own barrier. Without the attribute, all calls of the helper
/// share the `sync_threads` line inside it, and a kernel whose divergent branches each
/// call the helper is not flagged. The price of the attribute: every barrier and every
/// access fault inside the helper is reported at the helper's call site (keep such
/// helpers small), and several barriers inside one helper are not told apart.
#[track_caller]
pub fn sync_threads() {
    sync::sync_threads(Location::caller());
}

/// View of the calling block's dynamic shared memory, typed as `T`, starting at a byte
/// offset. Every access is checked against `dynamic_shared_bytes`, for races between
/// barriers, and for reads of bytes no thread of the block has written.
pub struct Shared<T> {
    byte_offset: usize,
    _elem: PhantomData<fn() -> T>,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(byte offset {})", self.byte_offset)
    }
}

impl<T: DeviceCopy> Shared<T> {
    /// Element `i`, checked.
    #[track_caller]
    pub fn get(&self, i: usize) -> T {
        shared::read::<T>(self.byte_offset, i, Location::caller())
    }

    /// Stores `v` at element `i`, checked.
    #[track_caller]
    pub fn set(&self, i: usize, v: T) {
        shared::write::<T>(self.byte_offset, i, v, Location::caller());
    }
}

impl Shared<f32> {
    /// Elements `i..i + 4` in one 16-byte load (`ld.shared.v4.f32` on the GPU): each
    /// checked as by [`Shared::get`], and a memcheck fault unless the byte address
    /// (view offset + 4·i) is a multiple of 16.
    #[track_caller]
    pub fn get4(&self, i: usize) -> [f32; 4] {
        shared::read4(self.byte_offset, i, Location::caller())
    }

    /// Stores `v` at elements `i..i + 4` in one 16-byte store (`st.shared.v4.f32`),
    /// checked as [`Shared::set`] per element plus the alignment of [`Shared::get4`].
    #[track_caller]
    pub fn set4(&self, i: usize, v: [f32; 4]) {
        shared::write4(self.byte_offset, i, v, Location::caller());
    }
}

/// The block's dynamic shared memory from its start, as `T` elements.
#[track_caller]
pub fn dynamic_shared<T: DeviceCopy>() -> Shared<T> {
    dynamic_shared_at::<T>(0)
}

/// The block's dynamic shared memory starting `byte_offset` bytes in, as `T` elements.
///
/// A misaligned offset (not a multiple of `align_of::<T>()`) is reported as a memcheck
/// fault, as the GPU would fault on the misaligned access.
#[track_caller]
pub fn dynamic_shared_at<T: DeviceCopy>(byte_offset: usize) -> Shared<T> {
    shared::check_alignment::<T>(byte_offset, Location::caller());
    Shared {
        byte_offset,
        _elem: PhantomData,
    }
}
