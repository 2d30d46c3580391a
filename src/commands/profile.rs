//! `lsoftmax profile`: one margin kernel launched K times on random data on the CUDA
//! device, timed with CUDA events, for Nsight Systems / Nsight Compute to record
//! (docs/profiling.md). Without the `cuda` feature there is nothing to run.

use lsoftmax_host::backend::{KernelVariant, MarginKernel};

/// What `lsoftmax profile` says when the binary has no CUDA backend.
pub const MISSING_FEATURE: &str = "`lsoftmax profile` runs kernels on a CUDA \
    device, and this binary was built without the cuda feature; rebuild with \
    `cargo build --release --features cuda` (see docs/profiling.md)";

/// One profiling run.
#[derive(Debug, Clone)]
pub struct Request {
    /// The kernel to run.
    pub kernel: MarginKernel,
    /// Its GEMM main-loop variant.
    pub variant: KernelVariant,
    /// Rows N of X.
    pub n: usize,
    /// Feature width D.
    pub d: usize,
    /// Classes C.
    pub c: usize,
    /// Timed launches (at least one).
    pub iters: u64,
    /// Margin spec of the forward pass (the gradients use its row cache).
    pub margin: String,
    /// Seed of the random inputs.
    pub seed: u64,
}

/// What one profiling run measured.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The margin parsed from the request.
    pub margin: lsoftmax_host::margin::Margin,
    /// The CUDA device's name.
    pub device: String,
    /// Time of all timed launches (CUDA events).
    pub elapsed: std::time::Duration,
    /// Floating-point operations of one launch, [`MarginKernel::flops`].
    pub flops: f64,
}

/// Runs the kernel once untimed (module loading, caches), then `iters` times timed.
#[cfg(feature = "cuda")]
pub fn profile(req: &Request) -> lsoftmax_host::Result<Timing> {
    use lsoftmax_host::backend::KernelChoice;
    use lsoftmax_host::backend::cuda::{CudaBackend, Problem};
    use lsoftmax_host::error::Error;
    use lsoftmax_host::margin::Margin;

    let margin = Margin::parse(&req.margin)?;
    if req.iters == 0 {
        return Err(Error::Shape(
            "--iters 0: at least one launch is needed".into(),
        ));
    }
    let problem = Problem::random(req.n, req.d, req.c, margin, req.seed)?;
    let cuda = CudaBackend::new()?.with_kernels(KernelChoice::variant(req.variant));
    // The first launch pays for module loading and caches; keep it out of the numbers.
    cuda.time_kernel(req.kernel, &problem, 1)?;
    let elapsed = cuda.time_kernel(req.kernel, &problem, req.iters)?;
    Ok(Timing {
        margin,
        device: cuda.device_name().to_string(),
        elapsed,
        flops: req.kernel.flops(req.n, req.d, req.c),
    })
}
