//! The device facade: everything a kernel body needs that differs between the GPU and
//! the CPU emulator.
//!
//! Kernel bodies are plain Rust written against this module only; they contain no `cfg`.
//! Two implementations sit behind `cfg(target_arch)`:
//! - `nvptx64` ([`nvptx`](self)): `core::arch::nvptx` special registers and barrier,
//!   `gpu_launch_sized_workgroup_mem` for dynamic shared memory, and memory views that are
//!   raw pointers with *unchecked* indexing (a bounds check would leave a
//!   `panic_bounds_check` extern in the PTX, which ptxas rejects).
//! - every other target (`host`): the same functions read a thread-local launch context
//!   set up by [`crate::emulator`], and every memory access is checked (bounds, races,
//!   uninitialised reads, barrier divergence).
//!
//! Write kernels with [`kernel!`](crate::kernel): it turns one function body into an
//! `extern "ptx-kernel"` entry point on the GPU and a plain function on the host.
//!
//! Helper functions that call [`sync_threads`] must be `#[track_caller]`: the emulator
//! identifies a barrier by its caller location, and the attribute makes that the
//! helper's call site, so two divergent calls of one helper are two barriers (see
//! [`sync_threads`]).

#[cfg(not(target_arch = "nvptx64"))]
mod host;
#[cfg(target_arch = "nvptx64")]
mod nvptx;

#[cfg(not(target_arch = "nvptx64"))]
pub use host::*;
#[cfg(target_arch = "nvptx64")]
pub use nvptx::*;

pub use crate::device_copy::DeviceCopy;

/// Global linear index of the calling thread along x: `block_idx_x * block_dim_x + thread_idx_x`,
/// computed in `usize`: a grid may hold up to (2³¹ − 1) × 1024 threads along x, which a
/// `u32` product would wrap (and the wrapped index would alias another thread's element).
#[inline(always)]
pub fn global_thread_x() -> usize {
    block_idx_x() as usize * block_dim_x() as usize + thread_idx_x() as usize
}

/// Global linear index of the calling thread along y: `block_idx_y * block_dim_y + thread_idx_y`,
/// in `usize` like [`global_thread_x`].
#[inline(always)]
pub fn global_thread_y() -> usize {
    block_idx_y() as usize * block_dim_y() as usize + thread_idx_y() as usize
}

/// Declares GPU kernels whose bodies are shared by the GPU and the emulator.
///
/// ```
/// use kernels_gpu::device::{Global, GlobalMut, global_thread_x};
/// use kernels_gpu::emulator::{DeviceBuffer, LaunchConfig, launch};
/// use kernels_gpu::kernel;
///
/// kernel! {
///     /// Scales a vector.
///     pub fn scale(x: Global<f32>, out: GlobalMut<f32>, factor: f32, n: u32) {
///         let i = global_thread_x();
///         if i < n as usize {
///             out.set(i, factor * x.get(i));
///         }
///     }
/// }
///
/// // On the host `scale` is a plain function that the emulator runs once per thread.
/// let x = DeviceBuffer::from_slice(&[1.0f32, 2.0, 3.0]);
/// let out = DeviceBuffer::<f32>::zeroed(3);
/// let (vx, vout) = (x.view(), out.view_mut());
/// launch(&LaunchConfig::cover_1d(3, 32), "scale", || scale(vx, vout, 2.0, 3))?;
/// assert_eq!(out.to_vec(), [2.0, 4.0, 6.0]);
/// # Ok::<(), kernels_gpu::emulator::LaunchError>(())
/// ```
///
/// - On `nvptx64` each function becomes
///   `#[unsafe(no_mangle)] pub unsafe extern "ptx-kernel" fn vector_add(...)`: a PTX
///   `.entry` named after the function. Its parameters are passed by value in PTX
///   parameter space, so they must be `#[repr(C)]` ([`Global`], [`GlobalMut`], scalars,
///   or your own `#[repr(C)] #[derive(Clone, Copy)]` structs).
/// - On the host it is a plain `pub fn` that [`crate::emulator::launch`] runs once per
///   emulated thread.
///
/// Several functions may be declared in one invocation. Parameters are `name: Type`
/// (no patterns, no `mut`: rebind inside the body if needed).
#[macro_export]
macro_rules! kernel {
    ($(
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $body:block
    )*) => {
        $(
            #[cfg(target_arch = "nvptx64")]
            $(#[$meta])*
            ///
            /// # Safety
            /// GPU entry point: every global-memory view argument must describe memory
            /// valid for its length, and every index the kernel computes must be in
            /// bounds (the views do not check on the GPU; run the kernel under the
            /// emulator to check).
            #[unsafe(no_mangle)]
            // A kernel's parameter list is its launch ABI; it cannot be regrouped.
            #[allow(clippy::too_many_arguments)]
            $vis unsafe extern "ptx-kernel" fn $name($($arg: $ty),*) $body

            #[cfg(not(target_arch = "nvptx64"))]
            $(#[$meta])*
            #[allow(clippy::too_many_arguments)]
            $vis fn $name($($arg: $ty),*) $body
        )*
    };
}
