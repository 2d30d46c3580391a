//! The toy model: it learns, the margin makes classes angularly compact (the L-Softmax
//! paper's claim), runs are reproducible, and the outputs have the documented shape.

use std::process::Command;

use lsoftmax::margin::Margin;
use lsoftmax::train::{self, TrainConfig, TrainedRun};

/// A short run: 30 epochs (630 SGD steps), β annealed below 1 by step ~460 of them.
fn short(feature_dim: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        feature_dim,
        epochs: 30,
        beta_schedule: train::parse_beta_schedule("mult:start=100,scale=0.99").unwrap(),
        seed,
        ..TrainConfig::default()
    }
}

/// Whether the CUDA backend starts in this build on this machine, as the binary will
/// find it: `Ok` (a device), `Err(true)` unavailable (no `cuda` feature, driver or device:
/// the CLI exits 2, the demo uses the emulator), `Err(false)` a failure (exit 1).
fn cuda_starts() -> Result<(), bool> {
    match lsoftmax::backend::BackendKind::Cuda.instance() {
        Ok(_) => Ok(()),
        Err(lsoftmax::Error::BackendUnavailable { .. }) => Err(true),
        Err(_) => Err(false),
    }
}

fn margins(specs: &[&str]) -> Vec<Margin> {
    specs.iter().map(|s| Margin::parse(s).unwrap()).collect()
}

#[test]
fn loss_decreases_during_a_short_run() {
    // β fixed (no schedule): annealing raises the loss on purpose as the margin switches on,
    // so a fixed margin is the fair check that optimisation makes progress.
    let config = TrainConfig {
        epochs: 10,
        beta_schedule: None,
        ..short(8, 1)
    };
    let runs = train::compare(&config, &margins(&["plain", "lsoftmax:m=2,beta=1"])).unwrap();
    for r in &runs {
        let l = &r.epoch_losses;
        assert_eq!(l.len(), 10);
        assert!(l.iter().all(|v| v.is_finite()), "{}: {l:?}", r.margin);
        // ln 10 ≈ 2.30 is the loss of a uniform guess over 10 classes; the margin lowers
        // the target logit, so only the plain layer must beat it within the first epoch.
        if r.margin == Margin::Plain {
            assert!(l[0] < 2.4, "plain: first epoch loss {}", l[0]);
        }
        assert!(
            l[9] < 0.5 * l[0],
            "{}: loss went from {} to {}",
            r.margin,
            l[0],
            l[9]
        );
        assert_eq!(r.metrics.final_train_loss, l[9]);
    }
}

#[test]
fn feature_dim_16_reaches_90_percent_and_the_margin_tightens_angles() {
    let start = std::time::Instant::now();
    let runs = train::compare(&short(16, 0), &margins(&["plain", "lsoftmax:m=4,beta=0"])).unwrap();
    let (plain, lsm) = (&runs[0].metrics, &runs[1].metrics);
    for m in [plain, lsm] {
        assert!(
            m.test_accuracy >= 0.9,
            "{}: test accuracy {}",
            m.margin,
            m.test_accuracy
        );
        assert_eq!(m.feature_dim, 16);
    }
    // The paper's claim: features lie closer (in angle) to their class weight with the
    // margin. Measured on seeds 0-5 with 200 epochs it was 40-43° plain vs 10-12° with m = 4.
    assert!(
        lsm.mean_target_angle_deg < 0.6 * plain.mean_target_angle_deg,
        "mean target angle: plain {:.2}°, lsoftmax m=4 {:.2}°",
        plain.mean_target_angle_deg,
        lsm.mean_target_angle_deg
    );
    // 30 epochs of 21 batches of 64 (1,347 training samples): the last step is t = 629.
    let want_beta = 100.0 * 0.99f64.powi(629);
    assert!(
        (lsm.final_beta - want_beta).abs() < 1e-9,
        "final beta {} (expected {want_beta})",
        lsm.final_beta
    );
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}

fn same_run(a: &TrainedRun, b: &TrainedRun) -> bool {
    a.metrics == b.metrics
        && a.test_features == b.test_features
        && a.weights == b.weights
        && a.epoch_losses == b.epoch_losses
}

#[test]
fn runs_are_deterministic_for_a_seed() {
    let config = TrainConfig {
        epochs: 3,
        ..short(2, 42)
    };
    let specs = margins(&["plain", "simplified:k=0.5", "lsoftmax:m=4,beta=0"]);
    let a = train::compare(&config, &specs).unwrap();
    let b = train::compare(&config, &specs).unwrap();
    assert_eq!(a.len(), 3);
    assert!(a.iter().zip(&b).all(|(x, y)| same_run(x, y)));
    let other = train::compare(&TrainConfig { seed: 43, ..config }, &specs).unwrap();
    assert!(!same_run(&a[0], &other[0]), "seed had no effect");
}

#[test]
fn metrics_json_and_plot_have_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 2,
        ..short(2, 5)
    };
    let specs = margins(&["plain", "lsoftmax:m=4,beta=0"]);
    let runs = train::compare(&config, &specs).unwrap();
    let out = train::write_outputs(dir.path(), &runs).unwrap();
    assert_eq!(out.metrics_json, dir.path().join("metrics.json"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.metrics_json).unwrap()).unwrap();
    let list = doc["runs"].as_array().expect("runs is an array");
    assert_eq!(list.len(), 2);
    for (entry, spec) in list.iter().zip(["plain", "lsoftmax:m=4,beta=0"]) {
        assert_eq!(entry["margin"].as_str(), Some(spec));
        let acc = entry["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        let angle = entry["mean_target_angle_deg"].as_f64().unwrap();
        assert!((0.0..=180.0).contains(&angle));
        let min_angle = entry["min_class_angle_deg"].as_f64().unwrap();
        assert!((0.0..=180.0).contains(&min_angle));
        assert!(entry["final_train_loss"].as_f64().unwrap() > 0.0);
        assert_eq!(entry["epochs"].as_u64(), Some(2));
        assert_eq!(entry["seed"].as_u64(), Some(5));
        assert_eq!(entry["backend"].as_str(), Some("cpu"));
        assert_eq!(entry["feature_dim"].as_u64(), Some(2));
        assert!(entry["final_beta"].as_f64().is_some());
    }
    let png = out.features_png.expect("2-D features give a plot");
    let bytes = std::fs::read(png).unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    // IHDR width and height (big-endian) at bytes 16..24: one panel per run.
    let size = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!(size, train::plot::feature_figure_size(2));

    let dir16 = tempfile::tempdir().unwrap();
    let runs16 = train::compare(
        &TrainConfig {
            epochs: 1,
            ..short(16, 5)
        },
        &specs[..1],
    )
    .unwrap();
    let out16 = train::write_outputs(dir16.path(), &runs16).unwrap();
    assert_eq!(out16.features_png, None);
    assert!(!dir16.path().join("features.png").exists());
}

#[test]
fn bad_settings_are_errors_that_name_the_value() {
    let cases = [
        (
            TrainConfig {
                epochs: 0,
                ..short(2, 0)
            },
            "epochs = 0",
        ),
        (
            TrainConfig {
                feature_dim: 0,
                ..short(2, 0)
            },
            "feature dim = 0",
        ),
        (
            TrainConfig {
                test_fraction: 1.5,
                ..short(2, 0)
            },
            "test fraction 1.5",
        ),
    ];
    for (config, needle) in cases {
        let msg = train::compare(&config, &[Margin::Plain])
            .unwrap_err()
            .to_string();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    let msg = train::compare(&short(2, 0), &[]).unwrap_err().to_string();
    assert!(msg.contains("no margin"), "{msg}");
    for (spec, needle) in [
        ("mult:start=100", "needs scale"),
        ("mult:start=100,scale=2", "scale=2"),
        (
            "power:base=1,gamma=1,power=1,x=3",
            "unknown parameter \"x\"",
        ),
        ("cosine", "unknown schedule kind"),
    ] {
        let msg = train::parse_beta_schedule(spec).unwrap_err().to_string();
        assert!(
            msg.contains(needle),
            "{spec}: {msg:?} should mention {needle:?}"
        );
    }
    assert_eq!(train::parse_beta_schedule("none").unwrap(), None);
    let spec = train::beta_schedule_spec(Some(&train::DEFAULT_BETA_SCHEDULE));
    assert_eq!(
        train::parse_beta_schedule(&spec).unwrap(),
        Some(train::DEFAULT_BETA_SCHEDULE)
    );
}

#[test]
fn cli_trains_writes_outputs_and_reports_bad_input() {
    let bin = env!("CARGO_BIN_EXE_lsoftmax");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "train",
            "--epochs",
            "2",
            "--margin",
            "plain",
            "--margin",
            "simplified:k=0.5",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("simplified:k=0.5"), "{stdout}");
    assert!(dir.path().join("metrics.json").exists());
    assert!(dir.path().join("features.png").exists());
    // The target-logit curves, a PNG of the documented size.
    let png = std::fs::read(dir.path().join("target-logits.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = train::plot::target_figure_size(2);
    let size: Vec<u8> = [w.to_be_bytes(), h.to_be_bytes()].concat();
    assert_eq!(&png[16..24], &size[..], "{w}x{h}");

    // `--backend cuda` depends on the machine: it trains with a device, exits 2 when CUDA
    // is unavailable (no feature, driver or device) and 1 when it fails to start.
    let cuda = Command::new(bin)
        .args([
            "train",
            "--epochs",
            "2",
            "--margin",
            "plain",
            "--backend",
            "cuda",
        ])
        .arg("--out")
        .arg(dir.path().join("cuda"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cuda.stderr);
    match cuda_starts() {
        Ok(()) => assert!(cuda.status.success(), "{stderr}"),
        Err(unavailable) => {
            let (code, needle) = if unavailable {
                (2, "cuda backend unavailable: ")
            } else {
                (1, "cuda backend: ")
            };
            assert_eq!(cuda.status.code(), Some(code), "{stderr}");
            assert!(
                stderr.contains(needle),
                "{stderr:?} should mention {needle:?}"
            );
        }
    }

    for (args, needle) in [
        (
            vec!["--backend", "tpu"],
            "invalid value 'tpu' for '--backend",
        ),
        (vec!["--margin", "lsoftmax:m=9"], "m = 9"),
        (vec!["--beta-schedule", "mult:start=1,scale=0"], "scale=0"),
        (vec!["--lr=-1"], "learning rate -1"),
    ] {
        let out = Command::new(bin)
            .arg("train")
            .args(&args)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should mention {needle:?}"
        );
    }
}

/// `lsoftmax` with no arguments is the demo: it runs every step, passes, says where its
/// files went, and writes them under the working directory.
#[test]
fn no_arguments_runs_the_demo_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lsoftmax"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The kernels run on CUDA when it starts, else on the emulator (a CUDA backend that
    // fails to start fails the demo, and with it this test).
    let kernel_backend = match cuda_starts() {
        Ok(()) => "2. GPU kernels against reference::naive on the cuda backend",
        Err(_) => "2. GPU kernels against reference::naive on the emulated backend",
    };
    for needle in [
        "1. gradient check",
        kernel_backend,
        "3. toy model",
        "lsoftmax:m=4,beta=0",
        "wrote lsoftmax-demo/metrics.json",
        "wrote lsoftmax-demo/features.png",
        "all checks passed",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains(" NO\n") && !stdout.contains("FAILED"),
        "{stdout}"
    );
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("lsoftmax-demo/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["runs"].as_array().map(Vec::len), Some(2));
    assert!(dir.path().join("lsoftmax-demo/features.png").exists());
}
