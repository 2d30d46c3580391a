//! The toy model: the margin layer as the classifier of a small network on the digits data
//! set, to check that it learns and that the margin makes classes more compact and better
//! separated (the claim of the L-Softmax paper, its Figure 2).
//!
//! Network: `x (64 pixels) → Linear(64, H) → ReLU → Linear(H, D) = f → margin layer
//! F = f·Wᵀ (C = 10; W owned here and passed to the layer as an input) → softmax
//! cross-entropy`, trained by SGD with momentum and weight decay on minibatches; β of
//! L-Softmax is annealed per iteration. Evaluation uses the inference-mode (plain) logits.
//! Everything random (split, initial weights, batch order) comes from ChaCha8 generators
//! seeded by [`TrainConfig::seed`], so a run is a pure function of config and backend.

pub mod data;
pub mod metrics;
pub mod mlp;
pub mod optim;
pub mod plot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use lsoftmax_host::backend::{Backend, CpuBackend};
use lsoftmax_host::error::{Error, Result};
use lsoftmax_host::layer::{backward, forward_on};
use lsoftmax_host::margin::{BetaSchedule, Margin, Mode};

pub use data::{DIGIT_CLASSES, DIGIT_PIXELS, Samples, load_digits, stratified_split};
pub use metrics::RunMetrics;
pub use mlp::Mlp;
pub use optim::Sgd;

/// Settings of a training run (shared by every margin of a comparison).
#[derive(Clone)]
pub struct TrainConfig {
    /// Feature dimension D (the margin layer's input width); 2 gives the scatter plot.
    pub feature_dim: usize,
    /// Hidden width H of the perceptron.
    pub hidden: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per SGD step (a last incomplete batch of an epoch is dropped).
    pub batch_size: usize,
    /// Optimiser.
    pub sgd: Sgd,
    /// β of L-Softmax at iteration `t` is `max(β_spec, schedule.beta(t))`, where `β_spec` is
    /// the β of the margin spec (so the spec's β is the value the annealing ends at).
    /// `None`: β stays at `β_spec`. Other margins ignore it.
    pub beta_schedule: Option<BetaSchedule>,
    /// Share of each class held out for testing.
    pub test_fraction: f64,
    /// Seed of the split, the initial weights and the batch order.
    pub seed: u64,
    /// Backend that runs the margin layer.
    pub backend: Arc<dyn Backend>,
    /// Show an indicatif progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

impl std::fmt::Debug for TrainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainConfig")
            .field("feature_dim", &self.feature_dim)
            .field("hidden", &self.hidden)
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("sgd", &self.sgd)
            .field("beta_schedule", &self.beta_schedule)
            .field("test_fraction", &self.test_fraction)
            .field("seed", &self.seed)
            .field("backend", &self.backend.name())
            .field("progress", &self.progress)
            .finish()
    }
}

/// Default β annealing: `β(t) = max(β_spec, 1000·0.995^t)`. A default run has 4,200 steps
/// (200 epochs of 21 batches); β falls below 1 at step ~1,380, so the network first learns
/// as with plain softmax and the full margin acts for the last two thirds.
/// Measured with m = 4, D = 2, η = 0.02, seeds 0–5: these constants and the MXNet port's
/// (100, 0.99) both trained every seed (smallest class angle 27–32° here, 21–31° there;
/// test accuracy 0.949–0.971 for both); the slower warm-up is kept because the MXNet
/// constants left two classes on one direction in 1 of 6 seeds of an earlier sweep with a
/// different initialisation stream. The learning rate matters more: at η = 0.05 both
/// collapsed classes (smallest class angle < 4°) in most seeds.
pub const DEFAULT_BETA_SCHEDULE: BetaSchedule = BetaSchedule::Multiplicative {
    start: 1000.0,
    scale: 0.995,
    min: 0.0,
};

impl Default for TrainConfig {
    /// The demo's settings: D = 2, H = 64, 200 epochs of batches of 64, SGD η = 0.02,
    /// μ = 0.9, λ = 5e-4, [`DEFAULT_BETA_SCHEDULE`], 25% test, seed 0, CPU backend.
    /// (η = 0.05 made m = 4 collapse classes in 2-D; 0.02 trained every seed tried.)
    fn default() -> Self {
        TrainConfig {
            feature_dim: 2,
            hidden: 64,
            epochs: 200,
            batch_size: 64,
            sgd: Sgd {
                lr: 0.02,
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            beta_schedule: Some(DEFAULT_BETA_SCHEDULE),
            test_fraction: 0.25,
            seed: 0,
            backend: Arc::new(CpuBackend),
            progress: false,
        }
    }
}

impl TrainConfig {
    /// Errors naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("feature dim", self.feature_dim),
            ("hidden width", self.hidden),
            ("epochs", self.epochs),
            ("batch size", self.batch_size),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Train(format!("{name} = {v}: must be >= 1")));
        }
        // Re-validate: the fields are public and may have been set directly.
        Sgd::new(self.sgd.lr, self.sgd.momentum, self.sgd.weight_decay)?;
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Train(format!(
                "test fraction {} must lie strictly between 0 and 1",
                self.test_fraction
            )));
        }
        Ok(())
    }
}

/// One trained run: its metrics and what the plot needs.
#[derive(Clone, Debug)]
pub struct TrainedRun {
    /// The margin as given.
    pub margin: Margin,
    /// Measured results.
    pub metrics: RunMetrics,
    /// Features of the test set (N_test×D).
    pub test_features: Array2<f32>,
    /// Labels of the test set.
    pub test_labels: Vec<usize>,
    /// Final class weights W (C×D).
    pub weights: Array2<f32>,
    /// Mean training loss of each epoch (training-mode output, margin applied).
    pub epoch_losses: Vec<f64>,
}

/// Parses a β schedule: `power:base=B,gamma=G,power=P[,min=M]` (the Caffe layer's
/// `β = max(M, B·(1 + G·t)^(−P))`), `mult:start=S,scale=K[,min=M]` (the MXNet port's
/// `β = max(M, S·K^t)`), or `none` (β constant). `min` defaults to 0.
pub fn parse_beta_schedule(spec: &str) -> Result<Option<BetaSchedule>> {
    let bad = |why: String| Error::BetaSchedule(format!("{spec:?}: {why}"));
    let (kind, params) = spec.trim().split_once(':').unwrap_or((spec.trim(), ""));
    let mut pairs: Vec<(&str, f64)> = Vec::new();
    for item in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("expected key=value, found {item:?}")))?;
        let v: f64 = v.trim().parse().map_err(|_| {
            bad(format!(
                "value of {} is not a number: {:?}",
                k.trim(),
                v.trim()
            ))
        })?;
        pairs.push((k.trim(), v));
    }
    let check_keys = |allowed: &[&str]| -> Result<()> {
        match pairs.iter().find(|(k, _)| !allowed.contains(k)) {
            Some((k, _)) => Err(bad(format!(
                "unknown parameter {k:?} for {kind} (allowed: {allowed:?})"
            ))),
            None => Ok(()),
        }
    };
    let get = |k: &str| pairs.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let need = |k: &str| get(k).ok_or_else(|| bad(format!("{kind} needs {k}")));
    match kind.trim() {
        "none" => {
            check_keys(&[])?;
            Ok(None)
        }
        "power" => {
            check_keys(&["base", "gamma", "power", "min"])?;
            BetaSchedule::power_decay(
                need("base")?,
                need("gamma")?,
                need("power")?,
                get("min").unwrap_or(0.0),
            )
            .map(Some)
        }
        "mult" => {
            check_keys(&["start", "scale", "min"])?;
            BetaSchedule::multiplicative(need("start")?, need("scale")?, get("min").unwrap_or(0.0))
                .map(Some)
        }
        _ => Err(bad(
            "unknown schedule kind (expected power:..., mult:... or none)".into(),
        )),
    }
}

/// The spec form of a schedule accepted by [`parse_beta_schedule`].
pub fn beta_schedule_spec(s: Option<&BetaSchedule>) -> String {
    match s {
        None => "none".into(),
        Some(BetaSchedule::PowerDecay {
            base,
            gamma,
            power,
            min,
        }) => format!("power:base={base},gamma={gamma},power={power},min={min}"),
        Some(BetaSchedule::Multiplicative { start, scale, min }) => {
            format!("mult:start={start},scale={scale},min={min}")
        }
    }
}

/// Trains one network per margin on the same split, initial weights and batch order (all
/// from `config.seed`) and returns them in the order given.
pub fn compare(config: &TrainConfig, margins: &[Margin]) -> Result<Vec<TrainedRun>> {
    config.validate()?;
    if margins.is_empty() {
        return Err(Error::Train("no margin to train".into()));
    }
    let digits = load_digits()?;
    let (train, test) =
        stratified_split(&digits, DIGIT_CLASSES, config.test_fraction, config.seed)?;
    margins
        .iter()
        .map(|&m| train_one(config, m, &train, &test))
        .collect()
}

/// Trains the network with margin `margin` on `train` and measures it on `test`.
pub fn train_one(
    config: &TrainConfig,
    margin: Margin,
    train: &Samples,
    test: &Samples,
) -> Result<TrainedRun> {
    config.validate()?;
    if train.is_empty() || test.is_empty() {
        return Err(Error::Train(format!(
            "{} training and {} test samples: both must be non-empty",
            train.len(),
            test.len()
        )));
    }
    let backend = config.backend.as_ref();
    let (p, d, c) = (train.x.ncols(), config.feature_dim, DIGIT_CLASSES);
    // Same seed as the split, another ChaCha stream: the numbers differ from the split's
    // while both stay a function of the one seed.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(1);
    let mut mlp = Mlp::new(p, config.hidden, d, &mut rng);
    let mut w = mlp::he_uniform(c, d, &mut rng);
    let mut v_w = Array2::zeros(w.dim());
    let mut v_w1 = Array2::zeros(mlp.w1.dim());
    let mut v_b1 = Array1::zeros(mlp.b1.dim());
    let mut v_w2 = Array2::zeros(mlp.w2.dim());
    let mut v_b2 = Array1::zeros(mlp.b2.dim());

    let batch = config.batch_size.min(train.len());
    let batches = train.len() / batch;
    let bar = progress_bar(config, margin, (config.epochs * batches) as u64);
    let beta_spec = match margin {
        Margin::LSoftmax { beta, .. } | Margin::SphereFace { beta, .. } => f64::from(beta),
        _ => 0.0,
    };
    let beta_at = |t: u64| match &config.beta_schedule {
        Some(s) => s.beta(t).max(beta_spec),
        None => beta_spec,
    };
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut t = 0u64;
    let mut epoch_losses = Vec::with_capacity(config.epochs);
    let mut beta = beta_spec;
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for idx in order.chunks_exact(batch) {
            let xb = train.x.select(ndarray::Axis(0), idx);
            let yb: Vec<usize> = idx.iter().map(|&i| train.y[i]).collect();
            beta = beta_at(t);
            let m_t = margin.with_beta(beta as f32)?;
            let (feat, cache) = mlp.forward(xb.view());
            let fwd = forward_on(backend, feat.view(), w.view(), &yb, m_t, Mode::Train)
                .map_err(|e| diverged_or(e, &margin, epoch))?;
            let (loss, dout) = metrics::softmax_cross_entropy(fwd.out.view(), &yb);
            if !loss.is_finite() {
                return Err(Error::Train(format!(
                    "{margin}: loss became {loss} in epoch {epoch} (step {t}); lower the learning rate {}",
                    config.sgd.lr
                )));
            }
            let g = backward(&fwd, dout.view())?;
            let mg = mlp.backward(xb.view(), &cache, g.dx.view());
            drop(fwd);
            let sgd = &config.sgd;
            sgd.step(w.view_mut(), g.dw.view(), &mut v_w, true);
            sgd.step(mlp.w1.view_mut(), mg.w1.view(), &mut v_w1, true);
            sgd.step(mlp.b1.view_mut(), mg.b1.view(), &mut v_b1, false);
            sgd.step(mlp.w2.view_mut(), mg.w2.view(), &mut v_w2, true);
            sgd.step(mlp.b2.view_mut(), mg.b2.view(), &mut v_b2, false);
            loss_sum += loss;
            t += 1;
            bar.inc(1);
        }
        let epoch_loss = loss_sum / batches as f64;
        epoch_losses.push(epoch_loss);
        if !bar.is_hidden() {
            let acc = evaluate(backend, &mlp, &w, train)?.0;
            bar.set_message(format!(
                "epoch {}/{} loss {epoch_loss:.4} train acc {:.3} beta {beta:.3}",
                epoch + 1,
                config.epochs,
                acc
            ));
        }
    }
    bar.finish_and_clear();

    let (test_accuracy, test_features) = evaluate(backend, &mlp, &w, test)?;
    let metrics = RunMetrics {
        margin: margin.to_string(),
        test_accuracy,
        mean_target_angle_deg: metrics::mean_target_angle_deg(
            test_features.view(),
            w.view(),
            &test.y,
        ),
        min_class_angle_deg: metrics::min_class_angle_deg(w.view()),
        final_train_loss: epoch_losses.last().copied().unwrap_or(f64::NAN),
        epochs: config.epochs,
        seed: config.seed,
        backend: backend.name().to_string(),
        feature_dim: d,
        final_beta: if matches!(margin, Margin::LSoftmax { .. } | Margin::SphereFace { .. }) {
            beta
        } else {
            0.0
        },
    };
    Ok(TrainedRun {
        margin,
        metrics,
        test_features,
        test_labels: test.y.clone(),
        weights: w,
        epoch_losses,
    })
}

/// A non-finite feature reaching the layer means training diverged: say so, not just
/// "x holds a non-finite value".
fn diverged_or(e: Error, margin: &Margin, epoch: usize) -> Error {
    match e {
        Error::NonFinite { .. } => Error::Train(format!(
            "{margin}: features became non-finite in epoch {epoch} (training diverged; lower the learning rate): {e}"
        )),
        other => other,
    }
}

/// Accuracy of the inference-mode (plain) logits on `data`, and its features.
fn evaluate(
    backend: &dyn Backend,
    mlp: &Mlp,
    w: &Array2<f32>,
    data: &Samples,
) -> Result<(f64, Array2<f32>)> {
    let (feat, _) = mlp.forward(data.x.view());
    let fwd = forward_on(
        backend,
        feat.view(),
        w.view(),
        &data.y,
        Margin::Plain,
        Mode::Infer,
    )?;
    let acc = metrics::accuracy(&metrics::argmax_rows(fwd.out.view()), &data.y);
    drop(fwd);
    Ok((acc, feat))
}

fn progress_bar(config: &TrainConfig, margin: Margin, steps: u64) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(margin.to_string());
    bar
}

/// The margins of the default demo: plain softmax and L-Softmax with m = 4 (β annealed to 0).
pub fn demo_margins() -> Vec<Margin> {
    let lsoftmax = Margin::lsoftmax(4, 0.0).expect("m = 4, beta = 0 are in range");
    vec![Margin::Plain, lsoftmax]
}

/// The default demo: [`TrainConfig::default`] (D = 2) with [`demo_margins`], outputs written
/// to `dir`. Returns the runs and the files written.
pub fn demo(dir: &Path, progress: bool) -> Result<(Vec<TrainedRun>, Outputs)> {
    let config = TrainConfig {
        progress,
        ..TrainConfig::default()
    };
    let runs = compare(&config, &demo_margins())?;
    let outputs = write_outputs(dir, &runs)?;
    Ok((runs, outputs))
}

/// Files written by [`write_outputs`].
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// `DIR/metrics.json`.
    pub metrics_json: PathBuf,
    /// `DIR/features.png`, when the features are 2-D.
    pub features_png: Option<PathBuf>,
}

/// The `metrics.json` document: `{"runs": [RunMetrics, ...]}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsFile {
    /// One entry per run, in the order trained.
    pub runs: Vec<RunMetrics>,
}

/// Creates `dir` if needed and writes `metrics.json` and, if every run has 2-D features,
/// `features.png` (one panel per run in run order, left to right then top to bottom, each
/// headed by its margin spec, test accuracy and mean target angle).
pub fn write_outputs(dir: &Path, runs: &[TrainedRun]) -> Result<Outputs> {
    let io_err = |path: &Path, e: &dyn std::fmt::Display| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let metrics_json = dir.join("metrics.json");
    let doc = MetricsFile {
        runs: runs.iter().map(|r| r.metrics.clone()).collect(),
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| io_err(&metrics_json, &e))?;
    std::fs::write(&metrics_json, text + "\n").map_err(|e| io_err(&metrics_json, &e))?;
    let features_png = if !runs.is_empty() && runs.iter().all(|r| r.test_features.ncols() == 2) {
        let path = dir.join("features.png");
        let notes: Vec<String> = runs
            .iter()
            .map(|r| {
                format!(
                    "test accuracy {:.4}, mean angle to own class weight {:.1}°",
                    r.metrics.test_accuracy, r.metrics.mean_target_angle_deg
                )
            })
            .collect();
        let panels: Vec<plot::Panel<'_>> = runs
            .iter()
            .zip(&notes)
            .map(|(r, note)| plot::Panel {
                title: &r.metrics.margin,
                note,
                features: r.test_features.view(),
                labels: &r.test_labels,
                weights: r.weights.view(),
            })
            .collect();
        let m = &runs[0].metrics;
        let title = format!(
            "Test features (D = 2) and class weights after {} epochs, seed {}, {} backend",
            m.epochs, m.seed, m.backend
        );
        plot::write_feature_scatter(&path, &title, &panels)?;
        Some(path)
    } else {
        None
    };
    Ok(Outputs {
        metrics_json,
        features_png,
    })
}

/// A plain-text table of the runs: margin, test accuracy, mean target angle, smallest
/// class angle, final training loss.
pub fn format_table(runs: &[RunMetrics]) -> String {
    let width = runs
        .iter()
        .map(|r| r.margin.len())
        .chain(std::iter::once("margin".len()))
        .max()
        .unwrap_or(6);
    let mut s = format!(
        "{:<width$}  {:>9}  {:>16}  {:>15}  {:>10}\n",
        "margin", "test acc", "target angle °", "min class °", "train loss"
    );
    for r in runs {
        s += &format!(
            "{:<width$}  {:>9.4}  {:>16.2}  {:>15.2}  {:>10.4}\n",
            r.margin,
            r.test_accuracy,
            r.mean_target_angle_deg,
            r.min_class_angle_deg,
            r.final_train_loss
        );
    }
    s
}
