//! `lsoftmax demo` (and `lsoftmax` with no arguments): what its three steps compute. The
//! CLI prints the results (`src/cli/demo.rs`).
//! 1. the gradient check of every margin variant on the f64 reference
//!    ([`gradient_check`]);
//! 2. the GPU kernels against the reference on the best backend available
//!    ([`kernel_backend`], [`kernel_check`]);
//! 3. the toy model: plain softmax against L-Softmax m = 4 on the digits
//!    ([`toy_model_backend`] picks where it trains).

use std::sync::Arc;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gradcheck::{check_margins, default_margins, random_problem};
use lsoftmax_host::backend::{
    Backend, BackendKind, CpuBackend, EmulatedBackend, REQUIRE_CUDA_ENV, cuda_required,
};
use lsoftmax_host::error::{Error, Result};
use lsoftmax_host::gradcheck::Config;
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::reference::agreement::{self, Agreement, Problem};

/// Shape of the step-1 problem, `(N, D, C)`.
pub const GRADCHECK_SHAPE: (usize, usize, usize) = (4, 5, 3);

/// Shape of the kernels-vs-reference problem: every dimension past one 64-wide tile and
/// none a multiple of it, N ≠ D ≠ C, so edge tiles and multi-tile reductions are exercised.
pub const KERNEL_CHECK_SHAPE: (usize, usize, usize) = (70, 67, 66);

/// Step 1's summary of one margin's gradient checks.
#[derive(Clone, Debug)]
pub struct MarginGradcheck {
    /// The margin checked.
    pub margin: Margin,
    /// Number of checks (modes × losses, and the random projections).
    pub checks: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Largest `|analytic − numeric|` over all checked entries.
    pub worst_abs_err: f64,
    /// Entries skipped because a finite difference would straddle a kink.
    pub skipped: usize,
}

/// Step 1: the `lsoftmax gradcheck` defaults (`config`, 4 random projections) on a
/// [`GRADCHECK_SHAPE`] problem, one summary per margin of
/// [`default_margins`].
pub fn gradient_check(config: &Config) -> Result<Vec<MarginGradcheck>> {
    let (n, d, c) = GRADCHECK_SHAPE;
    let margins = default_margins();
    let inputs = random_problem(n, d, c, config.seed);
    let per_margin = check_margins(&margins, &inputs, config, 4)?;
    let chunk = per_margin.len() / margins.len().max(1);
    Ok(margins
        .iter()
        .zip(per_margin.chunks(chunk.max(1)))
        .map(|(margin, reports)| {
            let (mut skipped, mut worst) = (0, 0.0f64);
            for r in reports.iter().flat_map(|r| r.inputs.iter()) {
                skipped += r.skipped;
                if let Some(p) = &r.worst {
                    worst = worst.max(p.abs_err);
                }
            }
            MarginGradcheck {
                margin: *margin,
                checks: reports.len(),
                failed: reports.iter().filter(|r| !r.passed()).count(),
                worst_abs_err: worst,
                skipped,
            }
        })
        .collect())
}

/// The backend of step 2 and why it was chosen: `choice` if given; else CUDA if it starts,
/// else (no driver, no device, no `cuda` feature) the emulator. Any other CUDA startup
/// failure is an error, and so is an unavailable CUDA under `LSOFTMAX_REQUIRE_CUDA=1`.
pub fn kernel_backend(choice: Option<BackendKind>) -> Result<(Arc<dyn Backend>, String)> {
    if let Some(kind) = choice {
        return Ok((
            Arc::from(kind.instance()?),
            "chosen with --backend".to_string(),
        ));
    }
    match BackendKind::Cuda.instance() {
        Ok(cuda) => Ok((Arc::from(cuda), "CUDA device 0".to_string())),
        Err(Error::BackendUnavailable { backend, message }) if cuda_required() => {
            Err(Error::BackendUnavailable {
                backend,
                message: format!("{message} ({REQUIRE_CUDA_ENV}=1 requires it)"),
            })
        }
        Err(e @ Error::BackendUnavailable { .. }) => Ok((
            Arc::new(EmulatedBackend),
            format!(
                "CPU emulator with memcheck, racecheck, initcheck and synccheck on; no CUDA ({e})"
            ),
        )),
        Err(e) => Err(e),
    }
}

/// The margins of step 2: every variant, and one inference-mode forward.
pub fn kernel_check_cases() -> Vec<(Margin, Mode)> {
    let mut v = vec![(Margin::Plain, Mode::Train)];
    v.extend(Margin::simplified(0.5).map(|m| (m, Mode::Train)));
    for m in 1..=4 {
        v.extend(Margin::lsoftmax(m, 0.0).map(|mm| (mm, Mode::Train)));
    }
    v.extend(Margin::lsoftmax(4, 1.0).map(|m| (m, Mode::Train)));
    v.extend(Margin::lsoftmax(4, 0.0).map(|m| (m, Mode::Infer)));
    v.extend(Margin::sphereface(4, 0.0).map(|m| (m, Mode::Train)));
    v.extend(Margin::cosface(16.0, 0.2).map(|m| (m, Mode::Train)));
    v.extend(Margin::arcface(8.0, 0.5).map(|m| (m, Mode::Train)));
    v.extend(Margin::combined(8.0, 1.35, 0.25, 0.1).map(|m| (m, Mode::Train)));
    v.extend(Margin::arcface(8.0, 0.5).map(|m| (m, Mode::Infer)));
    v
}

/// Step 2: F, dX, dW of `backend` against `reference::naive` on one random
/// [`KERNEL_CHECK_SHAPE`] problem (row 0 all zero, exercising the `g = z` convention) per
/// case of [`kernel_check_cases`], under the f32 bound of [`agreement`].
pub fn kernel_check(backend: &dyn Backend) -> Result<Vec<(Margin, Mode, Agreement)>> {
    let (n, d, c) = KERNEL_CHECK_SHAPE;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut uniform =
        |r, k| Array2::from_shape_simple_fn((r, k), || rng.random_range(-1.0f32..1.0));
    let mut x = uniform(n, d);
    let w = uniform(c, d);
    let dout = uniform(n, c);
    x.row_mut(0).fill(0.0);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % c).collect();
    kernel_check_cases()
        .into_iter()
        .map(|(margin, mode)| {
            let problem = Problem {
                x: x.view(),
                w: w.view(),
                labels: &labels,
                dout: dout.view(),
                margin,
                mode,
            };
            Ok((margin, mode, agreement::check_backend(backend, &problem)?))
        })
        .collect()
}

/// Where step 3 trains: on CUDA when step 2 ran there, else on the CPU backend (the
/// emulator would take minutes for 200 epochs).
pub fn toy_model_backend(kernel_backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    if kernel_backend.name() == "cuda" {
        kernel_backend
    } else {
        Arc::new(CpuBackend)
    }
}
