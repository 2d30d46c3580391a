//! The facade on the GPU: special registers, `bar.sync`, dynamic shared memory, and raw
//! global-memory views.
//!
//! Nothing here may panic: a panic path leaves an `.extern .func` in the PTX, which
//! ptxas rejects. Accessors therefore do unchecked pointer arithmetic; the checks live
//! in the emulator, where the same kernel bodies run with every access verified.

use core::arch::nvptx;
use core::marker::PhantomData;

use super::DeviceCopy;

macro_rules! special_registers {
    ($($(#[$doc:meta])* $name:ident => $intrinsic:ident;)*) => {
        $(
            $(#[$doc])*
            #[inline(always)]
            pub fn $name() -> u32 {
                // SAFETY: reads a PTX special register; always defined inside a kernel.
                unsafe { nvptx::$intrinsic() }
            }
        )*
    };
}

special_registers! {
    /// `threadIdx.x`: index of the calling thread in its block along x.
    thread_idx_x => _thread_idx_x;
    /// `threadIdx.y`.
    thread_idx_y => _thread_idx_y;
    /// `threadIdx.z`.
    thread_idx_z => _thread_idx_z;
    /// `blockIdx.x`: index of the calling thread's block in the grid along x.
    block_idx_x => _block_idx_x;
    /// `blockIdx.y`.
    block_idx_y => _block_idx_y;
    /// `blockIdx.z`.
    block_idx_z => _block_idx_z;
    /// `blockDim.x`: threads per block along x.
    block_dim_x => _block_dim_x;
    /// `blockDim.y`.
    block_dim_y => _block_dim_y;
    /// `blockDim.z`.
    block_dim_z => _block_dim_z;
    /// `gridDim.x`: blocks per grid along x.
    grid_dim_x => _grid_dim_x;
    /// `gridDim.y`.
    grid_dim_y => _grid_dim_y;
    /// `gridDim.z`.
    grid_dim_z => _grid_dim_z;
}

/// `__syncthreads()`: block-wide barrier (`bar.sync 0`). Every thread of the block must
/// reach the same call.
///
/// Synchronising helpers are `#[track_caller]` for the emulator's synccheck (see the
/// host facade); here the hidden location argument is never read, and inlining removes
/// it (the `block_sum` demo kernel, built by `lsoftmax ptx --check`, uses such a helper).
#[inline(always)]
pub fn sync_threads() {
    // SAFETY: `bar.sync` has no memory-safety preconditions; divergent use is a
    // correctness bug that the emulator's synccheck reports.
    unsafe { nvptx::_syncthreads() }
}

/// Read-only view of global memory.
///
/// ABI (kernel parameter, passed by value): `#[repr(C)] { ptr: *const T, len: usize }`,
/// i.e. two 64-bit words `{u64 device_pointer, u64 element_count}`, 16 bytes, align 8.
/// A launcher must pass exactly this layout.
///
/// `get` does not check `i < len` (no panic path may reach the PTX): an out-of-bounds
/// index is undefined behaviour on the GPU and is caught by the emulator.
#[repr(C)]
pub struct Global<T> {
    ptr: *const T,
    len: usize,
}

impl<T> Clone for Global<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Global<T> {}

impl<T: Copy> Global<T> {
    /// Builds a view from a raw device pointer and element count.
    ///
    /// # Safety
    /// `ptr` must be valid for reads of `len` elements of `T` for as long as the view
    /// is used.
    #[inline(always)]
    pub const unsafe fn from_raw_parts(ptr: *const T, len: usize) -> Self {
        Self { ptr, len }
    }

    /// Element `i` (unchecked on the GPU).
    #[inline(always)]
    pub fn get(&self, i: usize) -> T {
        // SAFETY: the launcher guarantees `ptr` is valid for `len` elements; the kernel
        // keeps `i < len`, which the emulator verifies on every access.
        unsafe { *self.ptr.add(i) }
    }

    /// Number of elements.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the view has no elements.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Global<f32> {
    /// Elements `i..i + 4` in one `ld.global.nc.v4.f32`. The address `ptr + 4·i` must be
    /// 16-byte aligned ([`Global::is_vec4_aligned`] and `i` a multiple of 4) and the memory
    /// read-only during the launch; both are checked by the emulator.
    #[inline(always)]
    pub fn load4(&self, i: usize) -> [f32; 4] {
        let (a, b, c, d): (f32, f32, f32, f32);
        // SAFETY: the kernel keeps `i + 3 < len` and the address 16-byte aligned, and the
        // launcher guarantees `ptr` valid for `len` elements (emulator-checked). `cvta`
        // turns the generic address of the view into a global one (the identity on every
        // current GPU, kept for the PTX rules). The asm only reads memory.
        unsafe {
            core::arch::asm!(
                "{{ .reg .u64 ga; cvta.to.global.u64 ga, {p}; ld.global.nc.v4.f32 {{{a}, {b}, {c}, {d}}}, [ga]; }}",
                p = in(reg64) self.ptr.add(i),
                a = out(reg32) a,
                b = out(reg32) b,
                c = out(reg32) c,
                d = out(reg32) d,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        [a, b, c, d]
    }

    /// Element `i` in one `ld.global.nc.f32`: the read-only data path, valid only for
    /// memory no thread writes during the launch (emulator-checked).
    #[inline(always)]
    pub fn load(&self, i: usize) -> f32 {
        let v: f32;
        // SAFETY: as for `load4`, with a 4-byte access at a 4-byte aligned address.
        unsafe {
            core::arch::asm!(
                "{{ .reg .u64 ga; cvta.to.global.u64 ga, {p}; ld.global.nc.f32 {v}, [ga]; }}",
                p = in(reg64) self.ptr.add(i),
                v = out(reg32) v,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        v
    }

    /// Whether the view's first element is 16-byte aligned (so [`Global::load4`] at a
    /// multiple of 4 is aligned).
    #[inline(always)]
    pub fn is_vec4_aligned(&self) -> bool {
        (self.ptr as usize).is_multiple_of(16)
    }
}

/// Writable view of global memory.
///
/// ABI (kernel parameter, passed by value): `#[repr(C)] { ptr: *mut T, len: usize }`,
/// i.e. `{u64 device_pointer, u64 element_count}`, 16 bytes, align 8.
///
/// Accessors are unchecked on the GPU, see [`Global`].
#[repr(C)]
pub struct GlobalMut<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Clone for GlobalMut<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GlobalMut<T> {}

impl<T: Copy> GlobalMut<T> {
    /// Builds a view from a raw device pointer and element count.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` elements of `T` for as long as
    /// the view is used.
    #[inline(always)]
    pub const unsafe fn from_raw_parts(ptr: *mut T, len: usize) -> Self {
        Self { ptr, len }
    }

    /// Element `i` (unchecked on the GPU).
    #[inline(always)]
    pub fn get(&self, i: usize) -> T {
        // SAFETY: see `Global::get`.
        unsafe { *self.ptr.add(i) }
    }

    /// Stores `v` at element `i` (unchecked on the GPU).
    #[inline(always)]
    pub fn set(&self, i: usize, v: T) {
        // SAFETY: the launcher guarantees `ptr` is valid for `len` elements; the kernel
        // keeps `i < len` and writes each element from one thread (emulator-checked).
        unsafe { *self.ptr.add(i) = v }
    }

    /// Number of elements.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the view has no elements.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same memory, read-only.
    #[inline(always)]
    pub fn as_global(&self) -> Global<T> {
        Global {
            ptr: self.ptr,
            len: self.len,
        }
    }
}

/// View of the block's dynamic shared memory (`extern __shared__ T s[]`), typed as `T`.
///
/// Its size is the launch's `dynamic_shared_bytes`; indexing is unchecked on the GPU.
pub struct Shared<T> {
    ptr: *mut T,
    _elem: PhantomData<T>,
}

impl<T> Clone for Shared<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}

impl<T: DeviceCopy> Shared<T> {
    /// Element `i` (unchecked on the GPU).
    #[inline(always)]
    pub fn get(&self, i: usize) -> T {
        // SAFETY: the launch allocates `dynamic_shared_bytes`, and the kernel keeps
        // `i` inside it (emulator-checked). `T: DeviceCopy` accepts any bit pattern.
        unsafe { *self.ptr.add(i) }
    }

    /// Stores `v` at element `i` (unchecked on the GPU).
    #[inline(always)]
    pub fn set(&self, i: usize, v: T) {
        // SAFETY: as for `get`; races between threads are excluded by barriers
        // (emulator racecheck).
        unsafe { *self.ptr.add(i) = v }
    }
}

/// Four f32 with the alignment of a 128-bit shared access.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Vec4([f32; 4]);

impl Shared<f32> {
    /// Elements `i..i + 4` in one `ld.shared.v4.f32`; the byte address must be a multiple
    /// of 16 (emulator-checked).
    #[inline(always)]
    pub fn get4(&self, i: usize) -> [f32; 4] {
        // SAFETY: as for `get`, plus the 16-byte alignment the caller keeps; `Vec4` is
        // four f32 (any bit pattern valid).
        unsafe { self.ptr.add(i).cast::<Vec4>().read().0 }
    }

    /// Stores `v` at elements `i..i + 4` in one `st.shared.v4.f32` (16-byte aligned).
    #[inline(always)]
    pub fn set4(&self, i: usize, v: [f32; 4]) {
        // SAFETY: as for `set`, plus the alignment of `get4`.
        unsafe { self.ptr.add(i).cast::<Vec4>().write(Vec4(v)) }
    }
}

/// The block's dynamic shared memory from its start, as `T` elements.
///
/// Implemented with `core::intrinsics::gpu::gpu_launch_sized_workgroup_mem`, which
/// declares one `.extern .shared` array sized at launch. All calls alias the same memory.
#[inline(always)]
pub fn dynamic_shared<T: DeviceCopy>() -> Shared<T> {
    dynamic_shared_at::<T>(0)
}

/// The block's dynamic shared memory starting `byte_offset` bytes in, as `T` elements.
///
/// Use it to carve several arrays out of the one dynamic region. `byte_offset` must be a
/// multiple of `align_of::<T>()` (checked by the emulator).
#[inline(always)]
pub fn dynamic_shared_at<T: DeviceCopy>(byte_offset: usize) -> Shared<T> {
    // The intrinsic aligns its result for `T`, so request it for `T` and then offset.
    let base = core::intrinsics::gpu::gpu_launch_sized_workgroup_mem::<T>();
    Shared {
        // `wrapping_byte_add` instead of `byte_add`: computing the pointer needs no
        // `unsafe`; dereferencing it is covered by the accessors' contracts.
        ptr: base.wrapping_byte_add(byte_offset),
        _elem: PhantomData,
    }
}
