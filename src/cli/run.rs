//! `lsoftmax run`: one forward (and with `--dout`, backward) pass of the layer on `.npy`
//! files, written as float32 `DIR/out.npy` (and `DIR/dx.npy`, `DIR/dw.npy`).
//!
//! Every input is read and checked and everything is computed before `DIR` is created, so a
//! bad input leaves nothing behind: one `error:` line on stderr and exit status 2 (also when
//! the backend is unavailable: no `cuda` feature, driver or device). A backend that fails
//! while running (a CUDA driver or kernel error) exits 1, like a failed write.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args as ClapArgs;
use ndarray::Array2;

use lsoftmax_host::backend::{BackendKind, KernelChoice, KernelVariant};
use lsoftmax_host::error::{Error, Result};
use lsoftmax_host::layer::{backward, forward_on};
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::npy_io::{self, Matrix};

/// Run the layer on .npy inputs and write float32 outputs.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Inputs X (N×D), float32 or float64.
    #[arg(long, value_name = "X.npy")]
    x: PathBuf,
    /// Weights W (C×D), float32 or float64.
    #[arg(long, value_name = "W.npy")]
    w: PathBuf,
    /// Labels (N), any integer dtype, values in 0..C.
    #[arg(long, value_name = "Y.npy")]
    labels: PathBuf,
    /// Upstream gradient dOut = ∂J/∂F (N×C); also writes dx.npy and dw.npy.
    #[arg(long, value_name = "G.npy")]
    dout: Option<PathBuf>,
    /// Margin: `plain`, `simplified:k=0.5`, `lsoftmax:m=2,beta=0.5`.
    #[arg(long, value_name = "SPEC")]
    margin: String,
    /// Inference mode: F = X·Wᵀ for every margin (and its plain gradient).
    #[arg(long)]
    infer: bool,
    /// Backend that computes the layer.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// GEMM main-loop variant the emulated and CUDA backends launch (a rung of the
    /// kernel ladder; all give the same results). Default: the best-ranked one.
    #[arg(long, value_enum, value_name = "NAME", default_value_t = KernelVariant::default())]
    kernel: KernelVariant,
    /// Run this PTX module (e.g. a hand-edited copy of `lsoftmax ptx --line-info --arch
    /// sm_70 --out FILE`) on the PTX interpreter; implies `--backend ptx`.
    #[arg(long, value_name = "FILE")]
    ptx: Option<PathBuf>,
    /// Output folder (created only once everything has been computed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// What `run` computed, before anything is written.
struct Outputs {
    out: Array2<f32>,
    grads: Option<(Array2<f32>, Array2<f32>)>,
    notes: Vec<String>,
}

/// Runs `lsoftmax run`: exit 0 on success, 2 on bad input or an unavailable backend, 1 if
/// the backend fails or writing fails.
pub fn run(args: Args) -> ExitCode {
    let computed = match compute(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            let code = if matches!(e, Error::Backend { .. }) {
                1
            } else {
                2
            };
            return ExitCode::from(code);
        }
    };
    for note in &computed.notes {
        eprintln!("note: {note}");
    }
    match write(&args.out, &computed) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn file_err(path: &Path, message: String) -> Error {
    Error::File {
        path: path.display().to_string(),
        message,
    }
}

fn compute(args: &Args) -> Result<Outputs> {
    // Parsed here rather than by clap so that a bad spec is one line, like other errors.
    let margin = Margin::parse(&args.margin)?;
    let mode = if args.infer { Mode::Infer } else { Mode::Train };
    let Matrix { data: x, note: nx } = npy_io::read_matrix(&args.x, "X")?;
    let Matrix { data: w, note: nw } = npy_io::read_matrix(&args.w, "W")?;
    let labels = npy_io::read_labels(&args.labels)?;
    let (n, d) = x.dim();
    let (c, dw) = w.dim();
    if d != dw {
        return Err(Error::Shape(format!(
            "X ({}) is {n}x{d} and W ({}) is {c}x{dw}: their widths (D) must match",
            args.x.display(),
            args.w.display()
        )));
    }
    if n == 0 || d == 0 || c == 0 {
        return Err(Error::Shape(format!(
            "empty input: N = {n}, D = {d}, C = {c} from {} and {} (all must be >= 1)",
            args.x.display(),
            args.w.display()
        )));
    }
    if labels.len() != n {
        return Err(file_err(
            &args.labels,
            format!("{} labels but X has {n} rows", labels.len()),
        ));
    }
    if let Some((row, label)) = labels.iter().enumerate().find(|(_, l)| **l >= c) {
        return Err(file_err(
            &args.labels,
            format!("label {label} of row {row} is out of range: W has {c} classes (0..{c})"),
        ));
    }
    let dout = match &args.dout {
        Some(path) => {
            let g = npy_io::read_matrix(path, "dOut")?;
            if g.data.dim() != (n, c) {
                return Err(file_err(
                    path,
                    format!(
                        "dOut is {}x{} but the layer output is N x C = {n}x{c}",
                        g.data.nrows(),
                        g.data.ncols()
                    ),
                ));
            }
            Some(g)
        }
        None => None,
    };
    let backend: Box<dyn lsoftmax_host::backend::Backend> = match &args.ptx {
        Some(path) => Box::new(
            lsoftmax_host::backend::PtxBackend::from_file(path)?
                .with_kernels(KernelChoice::variant(args.kernel)),
        ),
        None => args
            .backend
            .instance_with(KernelChoice::variant(args.kernel))?,
    };
    let fwd = forward_on(backend.as_ref(), x.view(), w.view(), &labels, margin, mode)?;
    let grads = match &dout {
        Some(g) => {
            let grads = backward(&fwd, g.data.view())?;
            Some((grads.dx, grads.dw))
        }
        None => None,
    };
    let notes = [nx, nw, dout.and_then(|g| g.note)]
        .into_iter()
        .flatten()
        .collect();
    Ok(Outputs {
        out: fwd.out,
        grads,
        notes,
    })
}

fn write(dir: &Path, computed: &Outputs) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot create: {e}")))?;
    let mut files = vec![(dir.join("out.npy"), &computed.out)];
    if let Some((dx, dw)) = &computed.grads {
        files.push((dir.join("dx.npy"), dx));
        files.push((dir.join("dw.npy"), dw));
    }
    let mut written = Vec::new();
    for (path, a) in files {
        npy_io::write_matrix(&path, a)?;
        written.push(path);
    }
    Ok(written)
}
