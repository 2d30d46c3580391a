//! Margin-softmax kernels and the device facade they are written against.
//!
//! - [`device`]: thread indices, barrier, shared and global memory views, and the
//!   [`kernel!`] macro; GPU intrinsics on `nvptx64`, the checking emulator elsewhere.
//! - `emulator` (host only): runs kernels on the CPU with memcheck, racecheck,
//!   initcheck and synccheck.
//! - [`demo`]: small kernels that exercise the facade and the emulator.
//! - the margin kernels: [`forward`], [`input_grad`], [`weight_grad`] (the three GEMM
//!   kernels, each with its ladder of variants), [`row_norms`], [`normalise`], the
//!   device-side margin math ([`margin_math`]) and the parameter structs and entry names
//!   shared with the host ([`params`]). The GEMM main loops (`mainloop/`: tile
//!   hierarchy, staging, single-stage and double-buffered pipelines) and the ladder's one
//!   definition (`ladder.rs`) are private to the crate.
#![cfg_attr(target_arch = "nvptx64", no_std)]
// `core::intrinsics::gpu` is an internal feature; it is the only way rustc offers to reach
// dynamic shared memory.
#![cfg_attr(target_arch = "nvptx64", allow(internal_features))]
#![cfg_attr(
    target_arch = "nvptx64",
    feature(
        abi_ptx,
        stdarch_nvptx,
        core_intrinsics,
        gpu_intrinsics,
        gpu_launch_sized_workgroup_mem,
        // `core::f32::math::mul_add` / `core::f64::math::sqrt` for the margin kernels.
        core_float_math,
        // Inline PTX for `ld.global.nc` (the facade's `Global::load4`).
        asm_experimental_arch
    )
)]

pub mod demo;
pub mod device;
mod device_copy;
#[cfg(not(target_arch = "nvptx64"))]
pub mod emulator;
// The margin kernels: parameters shared with the host (`params`), device-side margin
// math, the GEMM main loops (`mainloop`), the ladder of kernel variants (`ladder`), and
// one file per kernel.
pub mod forward;
pub mod input_grad;
mod ladder;
mod mainloop;
pub mod margin_math;
pub mod normalise;
pub mod params;
pub mod row_norms;
pub mod weight_grad;

/// On the GPU a panic traps the kernel (the launch fails with an error on the host).
///
/// Kernels must not contain panic paths at all: the panic machinery lives in `core`,
/// outside this crate's PTX, and ptxas rejects the undefined function it would call.
/// This handler only makes the crate link; the emitted PTX is checked for `.extern .func`.
#[cfg(target_arch = "nvptx64")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: `trap` aborts the kernel; it has no preconditions.
    unsafe { core::arch::nvptx::trap() }
}
