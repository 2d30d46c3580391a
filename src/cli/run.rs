//! `lsoftmax run`: one forward (and with `--dout`, backward) pass of the layer on `.npy`
//! files, written as float32 `DIR/out.npy` (and `DIR/dx.npy`, `DIR/dw.npy`).
//!
//! Every input is read and checked and everything is computed before `DIR` is created, so a
//! bad input leaves nothing behind: one `error:` line on stderr and exit status 2 (also when
//! the backend is unavailable: no `cuda` feature, driver or device). A backend that fails
//! while running (a CUDA driver or kernel error) exits 1, like a failed write. The work is
//! [`crate::commands::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::commands::run::{Request, compute, write};
use lsoftmax_host::backend::{BackendKind, KernelVariant};
use lsoftmax_host::error::Error;

/// Run the layer on .npy inputs and write float32 outputs.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Inputs X (N×D), float32 or float64.
    #[arg(long, value_name = "X.npy")]
    x: PathBuf,
    /// Weights W (C×D), float32 or float64.
    #[arg(long, value_name = "W.npy")]
    w: PathBuf,
    /// Labels (N), any integer dtype, values in 0..C.
    #[arg(long, value_name = "Y.npy")]
    labels: PathBuf,
    /// Upstream gradient dOut = ∂J/∂F (N×C); also writes dx.npy and dw.npy.
    #[arg(long, value_name = "G.npy")]
    dout: Option<PathBuf>,
    /// Margin: `plain`, `simplified:k=0.5`, `lsoftmax:m=2,beta=0.5`.
    #[arg(long, value_name = "SPEC")]
    margin: String,
    /// Inference mode: F = X·Wᵀ for every margin (and its plain gradient).
    #[arg(long)]
    infer: bool,
    /// Backend that computes the layer.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// GEMM main-loop variant the emulated and CUDA backends launch (a rung of the
    /// kernel ladder; all give the same results). Default: the best-ranked one.
    #[arg(long, value_enum, value_name = "NAME", default_value_t = KernelVariant::default())]
    kernel: KernelVariant,
    /// Run this PTX module (e.g. a hand-edited copy of `lsoftmax ptx --line-info --arch
    /// sm_70 --out FILE`) on the PTX interpreter; implies `--backend ptx`.
    #[arg(long, value_name = "FILE")]
    ptx: Option<PathBuf>,
    /// Output folder (created only once everything has been computed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Runs `lsoftmax run`: exit 0 on success, 2 on bad input or an unavailable backend, 1 if
/// the backend fails or writing fails.
pub fn run(args: Args) -> ExitCode {
    let request = Request {
        x: args.x,
        w: args.w,
        labels: args.labels,
        dout: args.dout,
        margin: args.margin,
        infer: args.infer,
        backend: args.backend,
        kernel: args.kernel,
        ptx: args.ptx,
    };
    let computed = match compute(&request) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            let code = if matches!(e, Error::Backend { .. }) {
                1
            } else {
                2
            };
            return ExitCode::from(code);
        }
    };
    for note in &computed.notes {
        eprintln!("note: {note}");
    }
    match write(&args.out, &computed) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
