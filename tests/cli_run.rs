//! `lsoftmax run` and `lsoftmax gradcheck` as a user runs them: the built binary on `.npy`
//! files in a temporary folder. The happy paths compare the written files with
//! `reference::naive`; every bad input must give exit status 2, one stderr line naming the
//! file or value, and no file under `--out`.

use std::path::PathBuf;
use std::process::{Command, Output};

use lsoftmax::reference::naive;
use lsoftmax::{Margin, Mode};
use ndarray::{Array1, Array2, array};
use ndarray_npy::{read_npy, write_npy};

const BIN: &str = env!("CARGO_BIN_EXE_lsoftmax");

/// The `.npy` v1.0 bytes for `descr`, layout and shape, with `data` as the raw payload:
/// lets the tests write what ndarray-npy does not (big-endian, complex, truncated files).
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let py = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {py}, 'shape': {shape_s}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n' is padded to a multiple of 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A problem of 5 rows, 4 features and 3 classes with values of mixed sign.
struct Problem {
    x: Array2<f32>,
    w: Array2<f32>,
    labels: Vec<usize>,
    dout: Array2<f32>,
}

fn problem() -> Problem {
    let x = Array2::from_shape_fn((5, 4), |(i, k)| ((i * 7 + k * 3) % 11) as f32 / 5.0 - 1.0);
    let w = Array2::from_shape_fn((3, 4), |(j, k)| {
        ((j * 5 + k * 4 + 1) % 9) as f32 / 4.0 - 1.0
    });
    let dout = Array2::from_shape_fn((5, 3), |(i, j)| ((i + 2 * j) % 5) as f32 / 2.0 - 1.0);
    Problem {
        x,
        w,
        labels: vec![0, 2, 1, 2, 0],
        dout,
    }
}

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    /// A temporary folder with the problem as x.npy (f32), w.npy (f32), y.npy (i64),
    /// g.npy (f32).
    fn new() -> Self {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        let p = problem();
        write_npy(d.path("x.npy"), &p.x).unwrap();
        write_npy(d.path("w.npy"), &p.w).unwrap();
        let y: Array1<i64> = p.labels.iter().map(|&l| l as i64).collect();
        write_npy(d.path("y.npy"), &y).unwrap();
        write_npy(d.path("g.npy"), &p.dout).unwrap();
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// Runs `lsoftmax run` with the default files, `extra` arguments replacing any of
    /// `--x/--w/--labels/--dout/--margin` given there.
    fn run(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["run".into()];
        for (flag, file) in [
            ("--x", "x.npy"),
            ("--w", "w.npy"),
            ("--labels", "y.npy"),
            ("--dout", "g.npy"),
        ] {
            if !extra.contains(&flag) {
                args.push(flag.into());
                args.push(self.path(file).display().to_string());
            }
        }
        if !extra.contains(&"--margin") {
            args.extend(["--margin".into(), "lsoftmax:m=2,beta=0.5".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".into(), self.out().display().to_string()]);
        Command::new(BIN).args(&args).output().unwrap()
    }

    fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn f64_of(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

/// `|got − want| <= 1e-5 · (1 + |want|)` element-wise: f32 arithmetic on values of order 1
/// over D = 4 terms stays far inside that.
fn assert_close(name: &str, got: &Array2<f32>, want: &Array2<f64>) {
    assert_eq!(got.dim(), want.dim(), "{name}");
    for ((i, j), &g) in got.indexed_iter() {
        let w = want[[i, j]];
        assert!(
            (f64::from(g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{name}[{i}, {j}]: got {g}, want {w}"
        );
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check_outputs(dir: &Dir, p: &Problem, margin: Margin, mode: Mode, with_grads: bool) {
    let (x, w) = (f64_of(&p.x), f64_of(&p.w));
    let out: Array2<f32> = read_npy(dir.out().join("out.npy")).unwrap();
    assert_close(
        "out",
        &out,
        &naive::forward(x.view(), w.view(), &p.labels, margin, mode),
    );
    if with_grads {
        let g = f64_of(&p.dout);
        let (dx, dw) = naive::backward(x.view(), w.view(), &p.labels, margin, mode, g.view());
        let got_dx: Array2<f32> = read_npy(dir.out().join("dx.npy")).unwrap();
        let got_dw: Array2<f32> = read_npy(dir.out().join("dw.npy")).unwrap();
        assert_close("dx", &got_dx, &dx);
        assert_close("dw", &got_dw, &dw);
    } else {
        assert!(!dir.out().join("dx.npy").exists());
    }
}

#[test]
fn run_writes_outputs_equal_to_the_reference() {
    let p = problem();
    // The emulated backend runs the GPU kernels: the same files, the same answers.
    for backend in ["cpu", "emulated"] {
        for (spec, mode) in [
            ("lsoftmax:m=2,beta=0.5", Mode::Train),
            ("simplified:k=0.5", Mode::Train),
            ("lsoftmax:m=4", Mode::Infer),
            ("cosface:s=16,m=0.2", Mode::Train),
            ("arcface:s=8,m=0.5", Mode::Train),
            ("combined:s=8,m1=1.35,m2=0.25,m3=0.1", Mode::Train),
            ("sphereface:m=4,beta=0.5", Mode::Train),
            ("arcface:s=8,m=0.5", Mode::Infer),
        ] {
            let dir = Dir::new();
            let mut extra = vec!["--margin", spec, "--backend", backend];
            if mode == Mode::Infer {
                extra.push("--infer");
            }
            let o = dir.run(&extra);
            assert!(o.status.success(), "{backend} {spec}: {}", stderr(&o));
            check_outputs(&dir, &p, Margin::parse(spec).unwrap(), mode, true);
            assert!(String::from_utf8_lossy(&o.stdout).contains("dw.npy"));
        }
    }
    // Without --dout only out.npy is written.
    let dir = Dir::new();
    let o = Command::new(BIN)
        .args(["run", "--x", &dir.file("x.npy"), "--w", &dir.file("w.npy")])
        .args(["--labels", &dir.file("y.npy"), "--margin", "plain"])
        .args([
            "--backend",
            "cpu",
            "--out",
            &dir.out().display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    check_outputs(&dir, &p, Margin::plain(), Mode::Train, false);
}

#[test]
fn run_reads_big_endian_fortran_float64_and_any_integer_labels() {
    let p = problem();
    let dir = Dir::new();
    // X as big-endian float64 in Fortran order (column after column).
    let mut data = Vec::new();
    for k in 0..4 {
        for i in 0..5 {
            data.extend_from_slice(&f64::from(p.x[[i, k]]).to_be_bytes());
        }
    }
    std::fs::write(dir.path("x.npy"), npy_bytes(">f8", true, &[5, 4], &data)).unwrap();
    // W as big-endian float32, C order.
    let data: Vec<u8> = p.w.iter().flat_map(|v| v.to_be_bytes()).collect();
    std::fs::write(dir.path("w.npy"), npy_bytes(">f4", false, &[3, 4], &data)).unwrap();
    // Labels as big-endian uint16.
    let data: Vec<u8> = p
        .labels
        .iter()
        .flat_map(|&l| (l as u16).to_be_bytes())
        .collect();
    std::fs::write(dir.path("y.npy"), npy_bytes(">u2", false, &[5], &data)).unwrap();
    let o = dir.run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("x.npy: float64 converted to float32"),
        "{}",
        stderr(&o)
    );
    check_outputs(
        &dir,
        &p,
        Margin::lsoftmax(2, 0.5).unwrap(),
        Mode::Train,
        true,
    );

    // Other integer label dtypes, written by ndarray-npy.
    let labels: Array1<u8> = p.labels.iter().map(|&l| l as u8).collect();
    write_npy(dir.path("y.npy"), &labels).unwrap();
    assert!(dir.run(&[]).status.success());
    let labels: Array1<i16> = p.labels.iter().map(|&l| l as i16).collect();
    write_npy(dir.path("y.npy"), &labels).unwrap();
    assert!(dir.run(&[]).status.success());
}

/// Runs `lsoftmax run` after `setup` and expects exit 2, exactly one stderr line holding
/// every needle, and nothing under --out.
fn expect_error(case: &str, setup: impl FnOnce(&Dir), extra: &[&str], needles: &[&str]) {
    let dir = Dir::new();
    setup(&dir);
    let o = dir.run(extra);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{case}: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "{case}: one line expected, got {err:?}"
    );
    for needle in needles {
        let needle = needle.replace("$DIR", &dir.tmp.path().display().to_string());
        assert!(
            err.contains(&needle),
            "{case}: {err:?} should mention {needle:?}"
        );
    }
    assert!(!err.contains("panicked"), "{case}: {err}");
    let leftovers = std::fs::read_dir(dir.out()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "{case}: files were written under --out");
}

fn write_f32(dir: &Dir, name: &str, a: &Array2<f32>) {
    write_npy(dir.path(name), a).unwrap();
}

#[test]
fn bad_shapes_and_labels_exit_2_naming_the_file() {
    expect_error(
        "X rank 3",
        |d| {
            write_npy(d.path("x.npy"), &ndarray::Array3::<f32>::zeros((5, 4, 1))).unwrap();
        },
        &[],
        &["$DIR/x.npy", "X must be a 2-D array", "[5, 4, 1]"],
    );
    expect_error(
        "X/W width mismatch",
        |d| write_f32(d, "w.npy", &Array2::zeros((3, 5))),
        &[],
        &["$DIR/x.npy", "$DIR/w.npy", "5x4", "3x5", "widths"],
    );
    expect_error(
        "labels too short",
        |d| write_npy(d.path("y.npy"), &array![0i64, 1, 2]).unwrap(),
        &[],
        &["$DIR/y.npy", "3 labels but X has 5 rows"],
    );
    expect_error(
        "labels rank 2",
        |d| write_npy(d.path("y.npy"), &Array2::<i32>::zeros((5, 1))).unwrap(),
        &[],
        &["$DIR/y.npy", "labels must be a 1-D array"],
    );
    expect_error(
        "label >= C",
        |d| write_npy(d.path("y.npy"), &array![0i32, 1, 3, 0, 0]).unwrap(),
        &[],
        &[
            "$DIR/y.npy",
            "label 3 of row 2 is out of range",
            "3 classes",
        ],
    );
    expect_error(
        "negative label",
        |d| write_npy(d.path("y.npy"), &array![0i8, 1, 2, -1, 0]).unwrap(),
        &[],
        &["$DIR/y.npy", "label -1 of row 3 is negative"],
    );
    expect_error(
        "float labels",
        |d| write_npy(d.path("y.npy"), &array![0.0f32, 1.0, 2.0, 1.5, 0.0]).unwrap(),
        &[],
        &["$DIR/y.npy", "float32", "expected an integer dtype"],
    );
    expect_error(
        "dOut wrong shape",
        |d| write_f32(d, "g.npy", &Array2::zeros((5, 4))),
        &[],
        &["$DIR/g.npy", "dOut is 5x4", "5x3"],
    );
    expect_error(
        "X empty",
        |d| write_f32(d, "x.npy", &Array2::zeros((0, 4))),
        &[],
        &["empty input", "N = 0"],
    );
}

#[test]
fn non_finite_values_exit_2_naming_file_and_index() {
    expect_error(
        "NaN in X",
        |d| {
            let mut x = problem().x;
            x[[1, 2]] = f32::NAN;
            write_f32(d, "x.npy", &x);
        },
        &[],
        &["$DIR/x.npy", "non-finite value NaN at index [1, 2]"],
    );
    expect_error(
        "Inf in W",
        |d| {
            let mut w = problem().w;
            w[[2, 0]] = f32::NEG_INFINITY;
            write_f32(d, "w.npy", &w);
        },
        &[],
        &["$DIR/w.npy", "-inf at index [2, 0]"],
    );
    expect_error(
        "Inf in dOut (float64)",
        |d| {
            let mut g = problem().dout.mapv(f64::from);
            g[[4, 1]] = f64::INFINITY;
            write_npy(d.path("g.npy"), &g).unwrap();
        },
        &[],
        &["$DIR/g.npy", "inf at index [4, 1]"],
    );
    expect_error(
        "float64 beyond float32",
        |d| {
            let mut x = problem().x.mapv(f64::from);
            x[[0, 3]] = 1e300;
            write_npy(d.path("x.npy"), &x).unwrap();
        },
        &[],
        &["$DIR/x.npy", "1e300", "[0, 3]", "beyond the float32 range"],
    );
}

#[test]
fn bad_margin_specs_exit_2_naming_the_value() {
    for (spec, needle) in [
        ("softmax", "unknown margin kind"),
        ("lsoftmax:m=", "not a number"),
        ("lsoftmax:m=2,,beta", "expected key=value"),
        ("simplified:k=2", "k = 2"),
        ("simplified:k=0", "k = 0"),
        ("lsoftmax:m=5", "m = 5"),
        ("lsoftmax:m=2,beta=-1", "beta = -1"),
        ("cosface:s=0,m=0.2", "s = 0"),
        ("cosface:s=16,m=NaN", "m = NaN"),
        ("arcface:s=8,m=4", "m = 4"),
        ("combined:s=8,m1=1,m2=0.2", "needs m3"),
        ("sphereface:m=6", "m = 6"),
    ] {
        expect_error(spec, |_| {}, &["--margin", spec], &[needle]);
    }
}

#[test]
fn bad_files_exit_2_naming_the_file() {
    expect_error(
        "missing",
        |d| std::fs::remove_file(d.path("w.npy")).unwrap(),
        &[],
        &["$DIR/w.npy", "no such file"],
    );
    expect_error(
        "not npy",
        |d| std::fs::write(d.path("x.npy"), "a,b,c\n1,2,3\n").unwrap(),
        &[],
        &["$DIR/x.npy", "not an .npy file"],
    );
    expect_error(
        "truncated data",
        |d| {
            let bytes = std::fs::read(d.path("g.npy")).unwrap();
            std::fs::write(d.path("g.npy"), &bytes[..bytes.len() - 3]).unwrap();
        },
        &[],
        &["$DIR/g.npy", "truncated"],
    );
    expect_error(
        "truncated header",
        |d| {
            let bytes = std::fs::read(d.path("y.npy")).unwrap();
            std::fs::write(d.path("y.npy"), &bytes[..20]).unwrap();
        },
        &[],
        &["$DIR/y.npy", "truncated"],
    );
    expect_error(
        "complex",
        |d| {
            let data = vec![0u8; 5 * 4 * 8];
            std::fs::write(d.path("x.npy"), npy_bytes("<c8", false, &[5, 4], &data)).unwrap();
        },
        &[],
        &["$DIR/x.npy", "complex-valued", "complex64"],
    );
    expect_error(
        "integer X",
        |d| write_npy(d.path("x.npy"), &Array2::<i32>::zeros((5, 4))).unwrap(),
        &[],
        &["$DIR/x.npy", "int32", "expected float32 or float64"],
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = Dir::new();
    for args in [
        vec!["run", "--x", "a.npy"],
        vec!["run", "--backend", "tpu"],
        vec!["gradcheck", "--n", "0"],
        vec!["gradcheck", "--margin", "lsoftmax:m=9"],
    ] {
        let o = Command::new(BIN)
            .args(&args)
            .current_dir(dir.tmp.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error:"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn gradcheck_command_passes_and_prints_a_table() {
    let o = Command::new(BIN)
        .args(["gradcheck", "--margin", "lsoftmax:m=3,beta=0.7"])
        .args(["--margin", "simplified:k=0.3", "--seed", "3"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // 2 margins x 2 modes x (2 losses x 2 inputs + 1 directional) rows.
    let rows = out.lines().filter(|l| l.starts_with("margin[")).count();
    assert_eq!(rows, 20, "{out}");
    assert!(out.contains("all 12 checks passed"), "{out}");
    // A tolerance no finite difference can meet makes it fail with status 1.
    let o = Command::new(BIN)
        .args([
            "gradcheck",
            "--margin",
            "lsoftmax:m=4",
            "--atol",
            "0",
            "--rtol",
            "0",
        ])
        .args(["--eps", "0.5"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL"), "{out}");
}
