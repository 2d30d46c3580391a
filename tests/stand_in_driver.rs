//! The CUDA backend against a stand-in driver library (tests/stand-in-driver/libcuda.c)
//! that answers with chosen error codes: clean one-line errors with the driver's code, the
//! documented exit statuses, no panic, and a failure (not a skip, not a fallback) wherever
//! the backend did not start for a reason other than a missing driver or device.
//!
//! Needs the `cuda` feature built and run against the stand-in:
//! `scripts/test-stand-in-driver` does that and sets `LSOFTMAX_STAND_IN_TESTS=1`. Without
//! it every test here says it is skipped and checks nothing (against a real driver these
//! expectations would be wrong).
#![cfg(feature = "cuda")]

use std::path::Path;
use std::process::{Command, Output};

use lsoftmax::backend::CudaBackend;
use lsoftmax::backend::MarginKernel;
use lsoftmax::backend::cuda::Problem;
use lsoftmax::{Backend, Error, Margin, Mode};
use ndarray::{Array1, Array2};

const BIN: &str = env!("CARGO_BIN_EXE_lsoftmax");
/// Set by scripts/test-stand-in-driver, which links the stand-in.
const GATE: &str = "LSOFTMAX_STAND_IN_TESTS";
/// The stand-in's behaviour (see libcuda.c).
const MODE: &str = "LSOFTMAX_STAND_IN";
/// Set for a child run of one of the in-process tests below.
const CHILD: &str = "LSOFTMAX_STAND_IN_CHILD";

fn enabled(test: &str) -> bool {
    let on = std::env::var(GATE).is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipped: {test} needs the stand-in driver (run scripts/test-stand-in-driver)");
    }
    on
}

fn lsoftmax(mode: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env(MODE, mode)
        .env_remove("LSOFTMAX_REQUIRE_CUDA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Asserts exit status `code` and a stderr that is exactly one `error:` line containing
/// every needle, with no panic; returns that line.
fn one_line_error(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {stderr}\nstdout: {stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line expected: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} missing from {stderr:?}"
        );
    }
    lines[0].to_string()
}

const PROFILE: &[&str] = &[
    "profile", "--kernel", "forward", "--n", "4", "--d", "3", "--c", "5", "--iters", "2",
];

/// `lsoftmax run --backend cuda` on a small problem written into `dir`.
fn run_args(dir: &Path) -> Vec<String> {
    let x = Array2::<f32>::from_shape_fn((4, 3), |(i, j)| (i + j) as f32 * 0.25 - 0.5);
    let w = Array2::<f32>::from_shape_fn((5, 3), |(i, j)| (i * j) as f32 * 0.125 - 0.25);
    let labels = Array1::from(vec![0i64, 1, 4, 2]);
    ndarray_npy::write_npy(dir.join("x.npy"), &x).unwrap();
    ndarray_npy::write_npy(dir.join("w.npy"), &w).unwrap();
    ndarray_npy::write_npy(dir.join("y.npy"), &labels).unwrap();
    [
        "run",
        "--x",
        "x.npy",
        "--w",
        "w.npy",
        "--labels",
        "y.npy",
        "--margin",
        "plain",
        "--backend",
        "cuda",
        "--out",
        "out",
    ]
    .map(String::from)
    .to_vec()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const NO_DEVICE: &str = "cuda backend unavailable: no CUDA device: cuInit: CUDA_ERROR_NO_DEVICE (100): \
     no CUDA-capable device is detected";

#[test]
fn no_device_is_unavailable_exit_2_and_the_demo_falls_back_unless_required() {
    if !enabled("no_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    one_line_error(
        &lsoftmax("no-device", PROFILE, dir.path(), &[]),
        2,
        &[NO_DEVICE],
    );
    let run = run_args(dir.path());
    one_line_error(
        &lsoftmax("no-device", &refs(&run), dir.path(), &[]),
        2,
        &[NO_DEVICE],
    );
    assert!(!dir.path().join("out").exists());
    let train = [
        "train",
        "--epochs",
        "1",
        "--margin",
        "plain",
        "--backend",
        "cuda",
        "--out",
        "t",
    ];
    one_line_error(
        &lsoftmax("no-device", &train, dir.path(), &[]),
        2,
        &[NO_DEVICE],
    );

    // The demo: the emulator, saying why; a failure under LSOFTMAX_REQUIRE_CUDA=1.
    let demo = lsoftmax("no-device", &[], dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(
        stdout.contains("2. GPU kernels against reference::naive on the emulated backend"),
        "{stdout}"
    );
    assert!(stdout.contains(NO_DEVICE), "{stdout}");
    let required = lsoftmax(
        "no-device",
        &[],
        dir.path(),
        &[("LSOFTMAX_REQUIRE_CUDA", "1")],
    );
    one_line_error(
        &required,
        1,
        &[NO_DEVICE, "LSOFTMAX_REQUIRE_CUDA=1 requires it"],
    );
    // It stopped before any step ran.
    assert!(String::from_utf8_lossy(&required.stdout).is_empty());
}

#[test]
fn no_driver_and_zero_devices_are_unavailable() {
    if !enabled("no_driver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The toolkit's stub answers 34 to everything, name lookups included: the number alone.
    one_line_error(
        &lsoftmax("stub", PROFILE, dir.path(), &[]),
        2,
        &[
            "cuda backend unavailable: no NVIDIA driver: cuInit: CUDA error 34 (the driver \
             has no name for it)",
            "stub",
        ],
    );
    one_line_error(
        &lsoftmax("zero-devices", PROFILE, dir.path(), &[]),
        2,
        &["cuda backend unavailable: no CUDA device: the driver reports 0 devices"],
    );
}

#[test]
fn a_driver_mismatch_fails_everywhere_with_its_code() {
    if !enabled("mismatch") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let named = "cuda backend: cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803): system has \
                 unsupported display driver / cuda driver combination";
    one_line_error(&lsoftmax("mismatch", PROFILE, dir.path(), &[]), 1, &[named]);
    let run = run_args(dir.path());
    one_line_error(
        &lsoftmax("mismatch", &refs(&run), dir.path(), &[]),
        1,
        &[named],
    );
    let train = [
        "train",
        "--epochs",
        "1",
        "--margin",
        "plain",
        "--backend",
        "cuda",
        "--out",
        "t",
    ];
    one_line_error(&lsoftmax("mismatch", &train, dir.path(), &[]), 1, &[named]);
    // The demo does not fall back to the emulator on a broken driver.
    let demo = lsoftmax("mismatch", &[], dir.path(), &[]);
    one_line_error(&demo, 1, &[named]);
    // With cuGetErrorName/cuGetErrorString failing: the number, and no panic.
    one_line_error(
        &lsoftmax("no-names", PROFILE, dir.path(), &[]),
        1,
        &["cuda backend: cuInit: CUDA error 803 (the driver has no name for it)"],
    );
}

#[test]
fn a_rejected_ptx_reports_the_code_and_the_jit_log() {
    if !enabled("ptx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    one_line_error(
        &lsoftmax("ptx-too-new", PROFILE, dir.path(), &[]),
        1,
        &[
            "loading the kernels' PTX (.version 7.0, .target sm_70) into driver CUDA 12.4",
            "CUDA_ERROR_UNSUPPORTED_PTX_VERSION (222)",
            "JIT error log: ptxas application ptx input, line 10; fatal   : Unsupported \
             .version 9.9; current version is '8.4'",
            "minimum driver",
        ],
    );
    // A multi-line log stays on the one error line.
    one_line_error(
        &lsoftmax("jit-error", PROFILE, dir.path(), &[]),
        1,
        &[
            "CUDA_ERROR_INVALID_PTX (218): a PTX JIT compilation failed",
            "line 42; error   : stand-in JIT error | ptxas fatal   : Ptx assembly aborted",
        ],
    );
    let run = run_args(dir.path());
    one_line_error(
        &lsoftmax("jit-error", &refs(&run), dir.path(), &[]),
        1,
        &["(218)"],
    );
}

#[test]
fn profile_runs_through_a_working_stand_in() {
    if !enabled("profile") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = lsoftmax("works", PROFILE, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The stand-in's events report 1 ms whatever ran: only the shape of the report is
    // checked here.
    assert!(stdout.starts_with("margin_forward"), "{stdout}");
    assert!(
        stdout.contains(" on Stand-in GPU (works): N = 4, D = 3, C = 5"),
        "{stdout}"
    );
    assert!(stdout.contains(" us per launch (CUDA events)"), "{stdout}");
}

/// Runs the test `name` of this binary in a child process with the stand-in in `mode`
/// (the driver's state is per process) and asserts that it passed.
fn in_child(name: &str, mode: &str, log: Option<&Path>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MODE, mode)
    .env(CHILD, "1");
    if let Some(log) = log {
        cmd.env("LSOFTMAX_STAND_IN_LOG", log);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} in mode {mode}:\n{text}");
    assert!(text.contains("1 passed"), "{name} did not run:\n{text}");
}

fn is_child() -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == "1")
}

fn small_problem() -> (Array2<f32>, Array2<f32>, Vec<usize>) {
    let x = Array2::<f32>::from_shape_fn((4, 3), |(i, j)| (i + j) as f32 * 0.25 - 0.5);
    let w = Array2::<f32>::from_shape_fn((5, 3), |(i, j)| (i * j) as f32 * 0.125 - 0.25);
    (x, w, vec![0, 1, 4, 2])
}

#[test]
fn a_kernel_fault_is_reported_then_every_later_call_says_context_lost() {
    if !enabled("fault") {
        return;
    }
    in_child("child_fault", "fault", None);
}

#[test]
#[ignore = "run in a child process by a_kernel_fault_is_reported_then_every_later_call_says_context_lost"]
fn child_fault() {
    if !is_child() {
        eprintln!("skipped: child_fault runs only as the child of its parent test");
        return;
    }
    let cuda = CudaBackend::new().unwrap();
    let (x, w, labels) = small_problem();
    // One launch (no row norms): the stand-in faults it, the synchronisation reports it.
    let margin = Margin::plain();
    let first = cuda
        .forward(x.view(), w.view(), &labels, margin, Mode::Train)
        .unwrap_err()
        .to_string();
    assert!(
        first.contains("running the forward kernels: CUDA_ERROR_ILLEGAL_ADDRESS (700)"),
        "{first}"
    );
    for _ in 0..2 {
        let later = cuda
            .forward(x.view(), w.view(), &labels, margin, Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(later.contains("context lost after: "), "{later}");
        assert!(later.contains(&first["cuda backend: ".len()..]), "{later}");
    }
    let problem = Problem::random(4, 3, 5, margin, 1).unwrap();
    let timed = cuda
        .time_kernel(MarginKernel::Forward, &problem, 1)
        .unwrap_err()
        .to_string();
    assert!(timed.contains("context lost after: "), "{timed}");
}

#[test]
fn labels_are_checked_and_functions_looked_up_once() {
    if !enabled("works") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    in_child("child_works", "works", Some(&log));
    let calls = std::fs::read_to_string(&log).unwrap();
    let count = |name: &str| calls.lines().filter(|l| *l == name).count();
    // Two L-Softmax training forwards: row_norms + margin_forward, each launched twice and
    // looked up once; the bad-label calls launched nothing.
    assert_eq!(count("cuModuleGetFunction"), 2, "{calls}");
    assert_eq!(count("cuLaunchKernel"), 4, "{calls}");
    assert_eq!(count("cuModuleLoadDataEx"), 1, "{calls}");
}

#[test]
#[ignore = "run in a child process by labels_are_checked_and_functions_looked_up_once"]
fn child_works() {
    if !is_child() {
        eprintln!("skipped: child_works runs only as the child of its parent test");
        return;
    }
    let cuda = CudaBackend::new().unwrap();
    assert!(
        cuda.device_name().contains("Stand-in"),
        "{}",
        cuda.device_name()
    );
    assert!(
        cuda.jit_info_log().contains("stand-in JIT"),
        "{}",
        cuda.jit_info_log()
    );
    let (x, w, labels) = small_problem();
    let margin = Margin::lsoftmax(2, 0.0).unwrap();
    // A label >= C through the public trait, bypassing `layer::forward_on`.
    let mut bad = labels.clone();
    bad[2] = 5;
    let e = cuda
        .forward(x.view(), w.view(), &bad, margin, Mode::Train)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LabelOutOfRange {
                row: 2,
                label: 5,
                classes: 5
            }
        ),
        "{e}"
    );
    let cache = lsoftmax::RowCache::plain(4);
    let dout = Array2::<f32>::zeros((4, 5));
    let e = cuda
        .backward(x.view(), w.view(), &bad, &cache, dout.view())
        .unwrap_err();
    assert!(matches!(e, Error::LabelOutOfRange { .. }), "{e}");
    for _ in 0..2 {
        cuda.forward(x.view(), w.view(), &labels, margin, Mode::Train)
            .unwrap();
    }
}
