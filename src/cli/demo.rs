//! `lsoftmax demo`, also what `lsoftmax` (`cargo run --release`) does with no arguments:
//! 1. the gradient check of every margin variant on the f64 reference;
//! 2. the GPU kernels against the reference on the best backend available (CUDA if built
//!    and a device answers, else the checking emulator);
//! 3. the toy model: plain softmax against L-Softmax m = 4 on the digits, with the plot.
//!
//! The steps are computed by [`crate::commands::demo`] and [`crate::train`]; this file
//! prints them. Exits 0 if every check passes, 1 if one fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args as ClapArgs;

use crate::commands::demo::{self as steps, KERNEL_CHECK_SHAPE};
use crate::train::{self, TrainConfig};
use lsoftmax_host::backend::{Backend, BackendKind};
use lsoftmax_host::error::Result;
use lsoftmax_host::gradcheck::Config;
use lsoftmax_host::margin::Margin;

/// Where the demo writes when no `--out` is given (relative to the working directory).
pub const DEFAULT_OUT: &str = "lsoftmax-demo";

/// The default demo: gradient check, kernels against the reference, toy model.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Folder for metrics.json and features.png of the toy model.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Backend of step 2 (the kernels against the reference): by default CUDA if a device
    /// answers, else the emulator; `ptx` runs the PTX module on the CPU interpreter.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            out: PathBuf::from(DEFAULT_OUT),
            backend: None,
        }
    }
}

/// Prints to stdout, ignoring errors: a closed pipe must not panic the demo.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

/// Runs the demo: exit 0 if all checks pass, 1 if one fails or a step errors.
pub fn run(args: Args) -> ExitCode {
    match demo(&args.out, args.backend) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(out_dir: &Path, choice: Option<BackendKind>) -> Result<bool> {
    let start = Instant::now();
    // First, so that a backend that fails to start stops the demo at once.
    let (backend, why) = steps::kernel_backend(choice)?;
    let grads_ok = gradient_check()?;
    let kernels_ok = kernel_check(backend.as_ref(), &why)?;
    toy_model(out_dir, backend)?;
    let verdict = if grads_ok && kernels_ok {
        "all checks passed"
    } else {
        "SOME CHECKS FAILED (see above)"
    };
    out!(
        "\n{verdict}; demo took {:.1} s\n",
        start.elapsed().as_secs_f64()
    );
    Ok(grads_ok && kernels_ok)
}

/// Step 1: the `lsoftmax gradcheck` defaults, summarised in one line per margin.
fn gradient_check() -> Result<bool> {
    let (n, d, c) = steps::GRADCHECK_SHAPE;
    let config = Config::default();
    let t = Instant::now();
    out!(
        "1. gradient check of reference::naive (f64 central differences, eps {:e}; \
         pass if |a-n| <= {:e} + {:e}*|n|)\n   N={n} D={d} C={c}, train and infer mode, \
         losses ½‖F‖², Σ F⊙R and 4 random projections\n",
        config.eps,
        config.atol,
        config.rtol
    );
    out!(
        "   {:<24} {:>7} {:>7} {:>12} {:>16}\n",
        "margin",
        "checks",
        "failed",
        "worst |a-n|",
        "skipped (kinks)"
    );
    let summaries = steps::gradient_check(&config)?;
    for s in &summaries {
        out!(
            "   {:<24} {:>7} {:>7} {:>12.2e} {:>16}\n",
            s.margin.to_string(),
            s.checks,
            s.failed,
            s.worst_abs_err,
            s.skipped
        );
    }
    let all_ok = summaries.iter().all(|s| s.failed == 0);
    out!(
        "   {} ({:.3} s); full table: lsoftmax gradcheck\n",
        if all_ok { "passed" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    Ok(all_ok)
}

/// Step 2: F, dX, dW of the kernels against `reference::naive`, one line per margin.
fn kernel_check(backend: &dyn Backend, why: &str) -> Result<bool> {
    let (n, d, c) = KERNEL_CHECK_SHAPE;
    let t = Instant::now();
    out!(
        "\n2. GPU kernels against reference::naive on the {} backend ({why})\n   \
         N={n} D={d} C={c}, one all-zero row; shown: worst |err| / bound (bound derived \
         from f32 accumulation, <= 1 passes)\n",
        backend.name()
    );
    out!(
        "   {:<24} {:<6} {:>9} {:>9} {:>9} {:>5}\n",
        "margin",
        "mode",
        "F",
        "dX",
        "dW",
        "ok"
    );
    let mut all_ok = true;
    for (margin, mode, a) in steps::kernel_check(backend)? {
        let [f, dx, dw] = &a.outputs;
        out!(
            "   {:<24} {:<6} {:>9.3} {:>9.3} {:>9.3} {:>5}\n",
            margin.to_string(),
            mode.to_string(),
            f.ratio(),
            dx.ratio(),
            dw.ratio(),
            if a.passed() { "yes" } else { "NO" }
        );
        if let Some(v) = a.violation() {
            out!("     {v}\n");
        }
        all_ok &= a.passed();
    }
    out!(
        "   {} ({:.2} s); property tests over random shapes: cargo test\n",
        if all_ok { "passed" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    Ok(all_ok)
}

/// Step 3: the toy model of `lsoftmax train` with its defaults.
fn toy_model(out_dir: &Path, kernel_backend: Arc<dyn Backend>) -> Result<()> {
    let config = TrainConfig {
        backend: steps::toy_model_backend(kernel_backend),
        progress: true,
        ..TrainConfig::default()
    };
    let margins = train::demo_margins();
    let names: Vec<String> = margins.iter().map(Margin::to_string).collect();
    out!(
        "\n3. toy model: digits 8x8 (1,797 images, 25% held out), MLP 64-{}-{} + margin layer, \
         {} epochs, SGD lr {} momentum {}, beta schedule {}, seed {}, {} backend\n   \
         margins: {}\n",
        config.hidden,
        config.feature_dim,
        config.epochs,
        config.sgd.lr,
        config.sgd.momentum,
        train::beta_schedule_spec(config.beta_schedule.as_ref()),
        config.seed,
        config.backend.name(),
        names.join(", ")
    );
    let t = Instant::now();
    let runs = train::compare(&config, &margins)?;
    let seconds = t.elapsed().as_secs_f64();
    let outputs = train::write_outputs(out_dir, &runs)?;
    let metrics: Vec<_> = runs.iter().map(|r| r.metrics.clone()).collect();
    for line in train::format_table(&metrics).lines() {
        out!("   {line}\n");
    }
    out!("   trained in {seconds:.2} s\n");
    out!("   wrote {}\n", outputs.metrics_json.display());
    if let Some(png) = &outputs.features_png {
        out!(
            "   wrote {} (test features, one panel per margin, left to right: {})\n",
            png.display(),
            names.join(" | ")
        );
    }
    Ok(())
}
