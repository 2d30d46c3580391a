//! `lsoftmax profile`: runs one margin kernel K times on random data on the CUDA device,
//! for Nsight Systems / Nsight Compute to record (docs/profiling.md), and prints the time
//! CUDA events measured and the rate it implies.
//!
//! Exit status: 0 after the run, 2 on bad arguments or when the CUDA backend is
//! unavailable (a build without the `cuda` feature, no NVIDIA driver, no device), 1 if the
//! CUDA backend fails (the PTX does not load, a launch or kernel error, ...). The run is
//! [`crate::commands::profile`].

use std::process::ExitCode;

use clap::Args as ClapArgs;

use lsoftmax_host::backend::{KernelVariant, MarginKernel};

/// Run one margin kernel repeatedly on the CUDA device (for Nsight).
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The kernel to run.
    #[arg(long, value_enum)]
    kernel: MarginKernel,
    /// Its GEMM main-loop variant (a rung of the kernel ladder; `--kernel` names the
    /// kernel here). Default: the best-ranked one.
    #[arg(long, value_enum, value_name = "NAME", default_value_t = KernelVariant::default())]
    variant: KernelVariant,
    /// Rows of X (samples).
    #[arg(long)]
    n: usize,
    /// Feature width D.
    #[arg(long)]
    d: usize,
    /// Classes C.
    #[arg(long)]
    c: usize,
    /// Timed launches.
    #[arg(long, default_value_t = 20)]
    iters: u64,
    /// Margin of the forward pass (the gradients use its row cache).
    #[arg(long, value_name = "SPEC", default_value = "lsoftmax:m=4,beta=0")]
    margin: String,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `lsoftmax profile`.
pub fn run(args: Args) -> ExitCode {
    imp::run(args)
}

#[cfg(feature = "cuda")]
fn request(args: Args) -> crate::commands::profile::Request {
    crate::commands::profile::Request {
        kernel: args.kernel,
        variant: args.variant,
        n: args.n,
        d: args.d,
        c: args.c,
        iters: args.iters,
        margin: args.margin,
        seed: args.seed,
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;
    use crate::commands::profile::MISSING_FEATURE;

    pub(super) fn run(_args: Args) -> ExitCode {
        eprintln!("error: {}", MISSING_FEATURE);
        ExitCode::from(2)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use lsoftmax_host::backend::BackendKind;

        fn args() -> Args {
            Args {
                kernel: MarginKernel::Forward,
                variant: KernelVariant::default(),
                n: 4,
                d: 4,
                c: 4,
                iters: 1,
                margin: "plain".into(),
                seed: 0,
            }
        }

        #[test]
        fn without_the_feature_profile_exits_2() {
            assert_eq!(run(args()), ExitCode::from(2));
        }

        #[test]
        fn without_the_feature_the_cuda_backend_says_so() {
            let err = BackendKind::Cuda.instance().err().map(|e| e.to_string());
            let msg = err.unwrap_or_default();
            assert!(msg.contains("built without the cuda feature"), "{msg:?}");
        }
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use crate::commands::profile::profile;
    use lsoftmax_host::error::Error;

    pub(super) fn run(args: Args) -> ExitCode {
        let req = request(args);
        let t = match profile(&req) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return match e {
                    Error::Backend { .. } => ExitCode::FAILURE,
                    // Bad arguments, and a backend that is unavailable here.
                    _ => ExitCode::from(2),
                };
            }
        };
        let per_launch = t.elapsed.as_secs_f64() / req.iters as f64;
        println!(
            "{} (variant {}) on {}: N = {}, D = {}, C = {}, margin {}, {} launches",
            req.kernel.entry_name(),
            req.variant,
            t.device,
            req.n,
            req.d,
            req.c,
            t.margin,
            req.iters
        );
        println!(
            "  {:.3} ms total, {:.3} us per launch (CUDA events), {:.1} GFLOP/s \
             (FLOPs = {} = {:.3e})",
            t.elapsed.as_secs_f64() * 1e3,
            per_launch * 1e6,
            t.flops / per_launch / 1e9,
            req.kernel.flops_formula(),
            t.flops
        );
        ExitCode::SUCCESS
    }
}
