//! The host half of the facade's global-memory views: handles into emulator
//! [`DeviceBuffer`](super::DeviceBuffer)s whose every access is checked. They live here, not
//! in `device/`, so that imports run one way: the facade re-exports them from the
//! emulator, and the emulator never imports the facade.

use std::marker::PhantomData;
use std::panic::Location;

use super::buffer::{self, DeviceBuffer};

/// Read-only view of an emulator [`DeviceBuffer`](crate::emulator::DeviceBuffer).
///
/// A cheap `Copy` handle (buffer id + length); every `get` checks the index, that the
/// buffer still exists, that the element was initialised, and for races with writes of
/// other threads in the same launch.
pub struct Global<T> {
    pub(crate) id: u64,
    pub(crate) len: usize,
    // `fn() -> T`: the handle owns no `T`, and stays `Send + Sync` for any `T`.
    pub(crate) _elem: PhantomData<fn() -> T>,
}

impl<T> Clone for Global<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Global<T> {}

impl<T> std::fmt::Debug for Global<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Global(buffer #{}, len {})", self.id, self.len)
    }
}

impl<T: Copy + Send + 'static> Global<T> {
    /// Element `i`, checked.
    #[track_caller]
    pub fn get(&self, i: usize) -> T {
        buffer::read::<T>(self.id, self.len, i, Location::caller())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Global<f32> {
    /// Element `i` through the read-only data path (`ld.global.nc` on the GPU), checked as
    /// [`Global::get`] plus: a fault if this launch wrote the element (the non-coherent
    /// cache could return the old value).
    #[track_caller]
    pub fn load(&self, i: usize) -> f32 {
        buffer::read_non_coherent::<f32>(self.id, self.len, i, Location::caller())
    }

    /// Elements `i..i + 4` in one 16-byte load (`ld.global.nc.v4.f32` on the GPU); each
    /// checked as by [`Global::load`], and a memcheck fault unless the address is 16-byte
    /// aligned (emulated buffers start 256-byte aligned like `cudaMalloc`'s, so: unless
    /// `i` is a multiple of 4).
    #[track_caller]
    pub fn load4(&self, i: usize) -> [f32; 4] {
        buffer::read4_non_coherent(self.id, self.len, i, Location::caller())
    }

    /// Whether the view's first element is 16-byte aligned, so that [`Global::load4`]
    /// at a multiple of 4 is aligned. Emulated buffers always are (256-byte aligned).
    pub fn is_vec4_aligned(&self) -> bool {
        true
    }
}

/// Writable view of an emulator [`DeviceBuffer`](crate::emulator::DeviceBuffer).
///
/// A cheap `Copy` handle; `get` is checked as for [`Global`], and `set` checks the index
/// and that no other thread of the launch wrote the same element.
pub struct GlobalMut<T> {
    pub(crate) id: u64,
    pub(crate) len: usize,
    pub(crate) _elem: PhantomData<fn() -> T>,
}

impl<T> Clone for GlobalMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GlobalMut<T> {}

impl<T> std::fmt::Debug for GlobalMut<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GlobalMut(buffer #{}, len {})", self.id, self.len)
    }
}

impl<T: Copy + Send + 'static> GlobalMut<T> {
    /// Element `i`, checked.
    #[track_caller]
    pub fn get(&self, i: usize) -> T {
        buffer::read::<T>(self.id, self.len, i, Location::caller())
    }

    /// Stores `v` at element `i`, checked.
    #[track_caller]
    pub fn set(&self, i: usize, v: T) {
        buffer::write::<T>(self.id, self.len, i, v, Location::caller());
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same memory, read-only.
    pub fn as_global(&self) -> Global<T> {
        Global {
            id: self.id,
            len: self.len,
            _elem: PhantomData,
        }
    }
}

// The views of a buffer are made here rather than in `buffer.rs`, so that `buffer.rs`
// does not import this file (imports inside the emulator run one way).
impl<T: Copy + Send + 'static> DeviceBuffer<T> {
    /// Read-only view for a kernel argument.
    pub fn view(&self) -> Global<T> {
        Global {
            id: self.id,
            len: self.len,
            _elem: PhantomData,
        }
    }

    /// Writable view for a kernel argument.
    pub fn view_mut(&self) -> GlobalMut<T> {
        GlobalMut {
            id: self.id,
            len: self.len,
            _elem: PhantomData,
        }
    }
}
