//! The backend seam: every backend computes the same [`crate::layer`] functions and must
//! agree with [`crate::reference::naive`].

use crate::error::Result;

pub mod abi;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device;
mod emulated;
mod flops;
pub mod launch;
mod pipeline;
pub mod ptx;

pub use crate::types::Backend;
pub use cpu::{CPU, CpuBackend};
#[cfg(feature = "cuda")]
pub use cuda::CudaBackend;
pub use emulated::{EmulatedBackend, EmulatedVariant};
pub use flops::MarginKernel;
pub use launch::{KernelChoice, KernelVariant, SplitK};
pub use ptx::PtxBackend;

/// `LSOFTMAX_REQUIRE_CUDA`: set to `1` on a machine that has a GPU (a GPU CI) to make a
/// CUDA backend that is unavailable (no driver, no device, no `cuda` feature) a failure
/// of the tests and the demo instead of a skip or a fallback to the emulator.
pub const REQUIRE_CUDA_ENV: &str = "LSOFTMAX_REQUIRE_CUDA";

/// Whether [`REQUIRE_CUDA_ENV`] is set to `1`.
pub fn cuda_required() -> bool {
    std::env::var(REQUIRE_CUDA_ENV).is_ok_and(|v| v == "1")
}

/// The backends a command line can choose (`--backend`). Adding one is a variant here and
/// its arm in [`BackendKind::instance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
#[non_exhaustive]
pub enum BackendKind {
    /// [`CpuBackend`]: ndarray GEMMs plus the margin epilogue.
    Cpu,
    /// [`EmulatedBackend`]: the GPU kernels run by the CPU emulator, every check on.
    Emulated,
    /// `CudaBackend`: the PTX kernels on CUDA device 0 (needs the `cuda` feature; without
    /// it, choosing this backend is an error that says so).
    Cuda,
    /// [`PtxBackend`]: the PTX module the CUDA backend embeds, run by the CPU PTX
    /// interpreter (needs the nightly toolchain to build the PTX).
    Ptx,
}

impl BackendKind {
    /// A ready-to-use instance of this backend (errors if it cannot start, e.g. no device),
    /// running the default kernel variant.
    pub fn instance(&self) -> Result<Box<dyn Backend>> {
        self.instance_with(KernelChoice::default())
    }

    /// [`BackendKind::instance`] launching `choice`'s kernels (the CPU backend has no
    /// kernels and ignores it).
    pub fn instance_with(&self, choice: KernelChoice) -> Result<Box<dyn Backend>> {
        match self {
            BackendKind::Cpu => Ok(Box::new(CpuBackend)),
            BackendKind::Emulated => Ok(Box::new(EmulatedVariant { choice })),
            BackendKind::Ptx => Ok(Box::new(PtxBackend::new()?.with_kernels(choice))),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Ok(Box::new(CudaBackend::new()?.with_kernels(choice))),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => Err(crate::error::Error::BackendUnavailable {
                backend: "cuda",
                message: "built without the cuda feature: rebuild with `--features cuda` \
                          (see docs/profiling.md)"
                    .into(),
            }),
        }
    }
}
