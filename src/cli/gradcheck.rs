//! `lsoftmax gradcheck`: the gradient check of the margin operator on a random problem,
//! for one margin or (by default) every variant, both modes and both losses, plus the
//! random-projection check. Prints one table row per input; exits 1 if any check fails.
//! The checks are [`crate::commands::gradcheck`].

use std::io::Write;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::commands::gradcheck::{check_margins, default_margins, random_problem};
use lsoftmax_host::error::Result;
use lsoftmax_host::gradcheck::{Config, Report};
use lsoftmax_host::margin::Margin;

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
