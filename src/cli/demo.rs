//! `lsoftmax demo`, also what `lsoftmax` (`cargo run --release`) does with no arguments:
//! 1. the gradient check of every margin variant on the f64 reference;
//! 2. the GPU kernels against the reference on the best backend available (CUDA if built
//!    and a device answers, else the checking emulator);
//! 3. the toy model: plain softmax against L-Softmax m = 4 on the digits, with the plot.
//!
//! Exits 0 if every check passes, 1 if one fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args as ClapArgs;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gradcheck::{check_margins, default_margins, random_problem};
use crate::train::{self, TrainConfig};
use lsoftmax_host::backend::{
    Backend, BackendKind, CpuBackend, EmulatedBackend, REQUIRE_CUDA_ENV, cuda_required,
};
use lsoftmax_host::error::{Error, Result};
use lsoftmax_host::gradcheck::Config;
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::reference::agreement::{self, Problem};

/// Where the demo writes when no `--out` is given (relative to the working directory).
pub const DEFAULT_OUT: &str = "lsoftmax-demo";

/// Shape of the kernels-vs-reference problem: every dimension past one 64-wide tile and
/// none a multiple of it, N ≠ D ≠ C, so edge tiles and multi-tile reductions are exercised.
pub const KERNEL_CHECK_SHAPE: (usize, usize, usize) = (70, 67, 66);

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
    let (backend, why) = match choice {
        Some(kind) => (
            Arc::from(kind.instance()?),
            "chosen with --backend".to_string(),
        ),
        None => best_kernel_backend()?,
    };
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
    let (n, d, c) = (4, 5, 3);
    let config = Config::default();
    let t = Instant::now();
    let margins = default_margins();
    let inputs = random_problem(n, d, c, config.seed);
    out!(
        "1. gradient check of reference::naive (f64 central differences, eps {:e}; \
         pass if |a-n| <= {:e} + {:e}*|n|)\n   N={n} D={d} C={c}, train and infer mode, \
         losses ½‖F‖², Σ F⊙R and 4 random projections\n",
        config.eps,
        config.atol,
        config.rtol
    );
    let mut all_ok = true;
    out!(
        "   {:<24} {:>7} {:>7} {:>12} {:>16}\n",
        "margin",
        "checks",
        "failed",
        "worst |a-n|",
        "skipped (kinks)"
    );
    let per_margin = check_margins(&margins, &inputs, &config, 4)?;
    let chunk = per_margin.len() / margins.len();
    for (margin, reports) in margins.iter().zip(per_margin.chunks(chunk)) {
        let inputs = reports.iter().flat_map(|r| r.inputs.iter());
        let (mut skipped, mut worst) = (0, 0.0f64);
        for r in inputs {
            skipped += r.skipped;
            if let Some(p) = &r.worst {
                worst = worst.max(p.abs_err);
            }
        }
        let failed_reports = reports.iter().filter(|r| !r.passed()).count();
        all_ok &= failed_reports == 0;
        out!(
            "   {:<24} {:>7} {:>7} {:>12.2e} {:>16}\n",
            margin.to_string(),
            reports.len(),
            failed_reports,
            worst,
            skipped
        );
    }
    out!(
        "   {} ({:.3} s); full table: lsoftmax gradcheck\n",
        if all_ok { "passed" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    Ok(all_ok)
}

/// CUDA if it starts, else (no driver, no device, no `cuda` feature) the emulator; the
/// string says which and why. Any other CUDA startup failure is an error, and so is an
/// unavailable CUDA under `LSOFTMAX_REQUIRE_CUDA=1`.
fn best_kernel_backend() -> Result<(Arc<dyn Backend>, String)> {
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
fn kernel_check_cases() -> Vec<(Margin, Mode)> {
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

/// Step 2: F, dX, dW of the kernels against `reference::naive` on one random problem per
/// margin, under the f32 bound of [`lsoftmax_host::reference::agreement`].
fn kernel_check(backend: &dyn Backend, why: &str) -> Result<bool> {
    let (n, d, c) = KERNEL_CHECK_SHAPE;
    let t = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut uniform =
        |r, k| Array2::from_shape_simple_fn((r, k), || rng.random_range(-1.0f32..1.0));
    let mut x = uniform(n, d);
    let w = uniform(c, d);
    let dout = uniform(n, c);
    // One degenerate row (x_0 = 0) exercises the g = z convention.
    x.row_mut(0).fill(0.0);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % c).collect();
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
    for (margin, mode) in kernel_check_cases() {
        let problem = Problem {
            x: x.view(),
            w: w.view(),
            labels: &labels,
            dout: dout.view(),
            margin,
            mode,
        };
        let a = agreement::check_backend(backend, &problem)?;
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

/// Step 3: the toy model of `lsoftmax train` with its defaults. The emulator would take
/// minutes for 200 epochs, so training runs on CUDA when present, else on the CPU backend.
fn toy_model(out_dir: &Path, kernel_backend: Arc<dyn Backend>) -> Result<()> {
    let backend: Arc<dyn Backend> = if kernel_backend.name() == "cuda" {
        kernel_backend
    } else {
        Arc::new(CpuBackend)
    };
    let config = TrainConfig {
        backend,
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
