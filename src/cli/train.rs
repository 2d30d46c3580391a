//! `lsoftmax train`: the toy model on the digits data set, one run per `--margin`, with a
//! table of accuracy and angles, `DIR/metrics.json`, and for 2-D features `DIR/features.png`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args as ClapArgs;

use crate::train::{self, Sgd, TrainConfig};
use lsoftmax_host::backend::BackendKind;
use lsoftmax_host::error::Result;
use lsoftmax_host::margin::Margin;

/// Train a small network with the margin layer on the 8×8 digits and compare margins.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Margin to train with; repeat to compare (`plain`, `simplified:k=0.5`,
    /// `lsoftmax:m=4,beta=0`). For L-Softmax the spec's beta is where annealing ends.
    #[arg(long = "margin", value_name = "SPEC", value_parser = Margin::parse,
          default_values = ["plain", "lsoftmax:m=4,beta=0"])]
    margins: Vec<Margin>,
    /// Feature dimension D; 2 also writes the scatter plot features.png.
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().feature_dim)]
    feature_dim: usize,
    /// Hidden width of the perceptron.
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().hidden)]
    hidden: usize,
    /// Passes over the training set.
    #[arg(long, value_name = "E", default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    /// Samples per SGD step.
    #[arg(long, value_name = "N", default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// SGD learning rate.
    #[arg(long, value_name = "LR", default_value_t = TrainConfig::default().sgd.lr)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, value_name = "MU", default_value_t = TrainConfig::default().sgd.momentum)]
    momentum: f32,
    /// L2 weight decay on weights (not biases).
    #[arg(long, value_name = "LAMBDA", default_value_t = TrainConfig::default().sgd.weight_decay)]
    weight_decay: f32,
    /// β annealing per iteration: `mult:start=S,scale=K[,min=M]` (β = max(M, S·K^t)),
    /// `power:base=B,gamma=G,power=P[,min=M]` (β = max(M, B·(1+G·t)^−P)), or `none`.
    #[arg(long, value_name = "SPEC", default_value_t = train::beta_schedule_spec(Some(&train::DEFAULT_BETA_SCHEDULE)))]
    beta_schedule: String,
    /// Share of each class held out for testing.
    #[arg(long, value_name = "F", default_value_t = TrainConfig::default().test_fraction)]
    test_fraction: f64,
    /// Seed of the split, initial weights and batch order.
    #[arg(long, value_name = "S", default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Backend of the margin layer (emulated is slow: it runs every GPU thread on the CPU
    /// with all checks on; use it with few epochs).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// Output folder for metrics.json (and features.png).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Runs `lsoftmax train`: exit 0 on success, 2 on bad settings (or a backend that is
/// unavailable: no `cuda` feature, driver or device), 1 if the backend fails (also while
/// starting: a CUDA driver error), training fails (divergence) or the outputs cannot be
/// written.
pub fn run(args: Args) -> ExitCode {
    let fail = |e: lsoftmax_host::error::Error, code: u8| {
        eprintln!("error: {e}");
        ExitCode::from(code)
    };
    let config = match config_of(&args) {
        Ok(config) => config,
        Err(e @ lsoftmax_host::error::Error::Backend { .. }) => return fail(e, 1),
        Err(e) => return fail(e, 2),
    };
    match train_and_report(&args, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}

/// The validated settings of `args`.
fn config_of(args: &Args) -> Result<TrainConfig> {
    let config = TrainConfig {
        feature_dim: args.feature_dim,
        hidden: args.hidden,
        epochs: args.epochs,
        batch_size: args.batch_size,
        sgd: Sgd::new(args.lr, args.momentum, args.weight_decay)?,
        beta_schedule: train::parse_beta_schedule(&args.beta_schedule)?,
        test_fraction: args.test_fraction,
        seed: args.seed,
        backend: Arc::from(args.backend.instance()?),
        progress: true,
    };
    config.validate()?;
    Ok(config)
}

fn train_and_report(args: &Args, config: &TrainConfig) -> Result<()> {
    let start = Instant::now();
    let runs = train::compare(config, &args.margins)?;
    let seconds = start.elapsed().as_secs_f64();
    let outputs = train::write_outputs(&args.out, &runs)?;
    let metrics: Vec<_> = runs.iter().map(|r| r.metrics.clone()).collect();
    print!("{}", train::format_table(&metrics));
    println!(
        "{} run(s), {} epochs, feature dim {}, backend {}, beta schedule {}, seed {}: trained in {seconds:.2} s",
        runs.len(),
        config.epochs,
        config.feature_dim,
        config.backend.name(),
        train::beta_schedule_spec(config.beta_schedule.as_ref()),
        config.seed
    );
    println!("wrote {}", outputs.metrics_json.display());
    if let Some(png) = &outputs.features_png {
        let order: Vec<String> = runs.iter().map(|r| r.margin.to_string()).collect();
        println!(
            "wrote {} (panels in run order, left to right then top to bottom: {})",
            png.display(),
            order.join(" | ")
        );
    }
    let target_png = args.out.join("target-logits.png");
    crate::train::plot::write_target_logit_plot(&target_png, &args.margins)?;
    let order: Vec<String> = args.margins.iter().map(Margin::to_string).collect();
    println!(
        "wrote {} (target logit / S against θ in [0, π], grey: cos θ; colours in order: {})",
        target_png.display(),
        order.join(" | ")
    );
    Ok(())
}
