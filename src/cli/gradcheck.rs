//! `lsoftmax gradcheck`: the gradient check of the margin operator on a random problem,
//! for one margin or (by default) every variant, both modes and both losses, plus the
//! random-projection check. Prints one table row per input; exits 1 if any check fails.

use std::io::Write;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use ndarray::{Array1, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lsoftmax_host::error::Result;
use lsoftmax_host::gradcheck::{self, Config, Loss, Report};
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::operator::MarginOperator;

/// Check the analytic gradients of the margin layer against central differences (f64).
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Margin to check (repeatable); default: plain, simplified k in {0.3, 1},
    /// lsoftmax m in 1..=4 with beta in {0, 0.7}, sphereface (m=4; m=2,beta=0.7),
    /// cosface s=16,m=0.2, arcface s=8,m=0.5 and two combined margins.
    #[arg(long = "margin", value_name = "SPEC", value_parser = Margin::parse)]
    margins: Vec<Margin>,
    /// Rows N of X.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    n: u32,
    /// Width D of X and W.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=256))]
    d: u32,
    /// Classes C (rows of W).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=256))]
    c: u32,
    /// Seed of X, W, labels, R and the random directions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Central-difference step ε.
    #[arg(long, default_value_t = Config::default().eps)]
    eps: f64,
    /// Absolute tolerance: pass if |a − n| <= atol + rtol·|n|.
    #[arg(long, default_value_t = Config::default().atol)]
    atol: f64,
    /// Relative tolerance.
    #[arg(long, default_value_t = Config::default().rtol)]
    rtol: f64,
    /// Random directions of the projection check vᵀ(J u) = (vᵀJ) u (0 to skip it).
    #[arg(long, default_value_t = 4)]
    directions: usize,
}

/// The margins checked when none is given.
pub fn default_margins() -> Vec<Margin> {
    let mut v = vec![Margin::Plain];
    for k in [0.3, 1.0] {
        v.extend(Margin::simplified(k));
    }
    for m in 1..=4 {
        for beta in [0.0, 0.7] {
            v.extend(Margin::lsoftmax(m, beta));
        }
    }
    v.extend(Margin::sphereface(4, 0.0));
    v.extend(Margin::sphereface(2, 0.7));
    v.extend(Margin::cosface(16.0, 0.2));
    v.extend(Margin::arcface(8.0, 0.5));
    v.extend(Margin::combined(8.0, 1.0, 0.2, 0.1));
    v.extend(Margin::combined(8.0, 1.35, 0.25, 0.1));
    v
}

/// `[x, w, labels]`: x, w uniform in `[−1, 1)`, labels uniform in `0..c`, from `seed`.
pub fn random_problem(n: usize, d: usize, c: usize, seed: u64) -> Vec<ArrayD<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform =
        |shape: Vec<usize>| ArrayD::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0));
    let x = uniform(vec![n, d]);
    let w = uniform(vec![c, d]);
    let labels = Array1::from_shape_simple_fn(n, || rng.random_range(0..c) as f64).into_dyn();
    vec![x, w, labels]
}

/// Every check of `lsoftmax gradcheck` on `inputs` (`[x, w, labels]`): for each margin and
/// both modes, the losses `½‖F‖²` and `Σ F ⊙ R`, then (if `directions > 0`) the
/// random-projection check. One report per check, in that order.
pub fn check_margins(
    margins: &[Margin],
    inputs: &[ArrayD<f64>],
    config: &Config,
    directions: usize,
) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for &margin in margins {
        let op = MarginOperator::new(margin);
        for mode in [Mode::Train, Mode::Infer] {
            for loss in [Loss::HalfSquaredNorm, Loss::Projection] {
                reports.push(gradcheck::gradcheck(&op, mode, inputs, loss, config)?);
            }
            if directions > 0 {
                reports.push(gradcheck::directional_check(
                    &op, mode, inputs, directions, config,
                )?);
            }
        }
    }
    Ok(reports)
}

/// Runs `lsoftmax gradcheck`: exit 0 if every check passes, 1 if one fails, 2 on bad
/// arguments.
pub fn run(args: Args) -> ExitCode {
    match check_all(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints to stdout, ignoring errors: a closed pipe (`| head`) must not panic the check.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

fn check_all(args: &Args) -> Result<bool> {
    let config = Config {
        eps: args.eps,
        atol: args.atol,
        rtol: args.rtol,
        seed: args.seed,
        skip_kinks: true,
    };
    let margins = if args.margins.is_empty() {
        default_margins()
    } else {
        args.margins.clone()
    };
    let (n, d, c) = (args.n as usize, args.d as usize, args.c as usize);
    let inputs = random_problem(n, d, c, args.seed);
    out!(
        "gradcheck: N={n} D={d} C={c} seed={} eps={:e} pass if |a-n| <= {:e} + {:e}*|n|\n",
        args.seed,
        config.eps,
        config.atol,
        config.rtol
    );
    out!("{}\n", Report::table_header());
    let reports = check_margins(&margins, &inputs, &config, args.directions)?;
    let failed = reports.iter().filter(|r| !r.passed()).count();
    let total = reports.len();
    for r in &reports {
        out!("{r}");
    }
    if failed == 0 {
        out!("all {total} checks passed\n");
    } else {
        out!("{failed} of {total} checks FAILED\n");
    }
    Ok(failed == 0)
}
