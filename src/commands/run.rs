//! `lsoftmax run`: one forward (and with a `dout`, backward) pass of the layer on `.npy`
//! files, computed completely before anything is written, then written as float32.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use lsoftmax_host::backend::{BackendKind, KernelChoice, KernelVariant};
use lsoftmax_host::error::{Error, Result};
use lsoftmax_host::layer::{backward, forward_on};
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::npy_io::{self, Matrix};

/// The inputs and choices of one run.
#[derive(Debug, Clone)]
pub struct Request {
    /// Inputs X (N×D), float32 or float64.
    pub x: PathBuf,
    /// Weights W (C×D), float32 or float64.
    pub w: PathBuf,
    /// Labels (N), any integer dtype, values in 0..C.
    pub labels: PathBuf,
    /// Upstream gradient dOut = ∂J/∂F (N×C): also compute dX and dW.
    pub dout: Option<PathBuf>,
    /// Margin spec (parsed here, so a bad spec is one error like the others).
    pub margin: String,
    /// Inference mode: F = X·Wᵀ for every margin.
    pub infer: bool,
    /// Backend that computes the layer.
    pub backend: BackendKind,
    /// GEMM main-loop variant of the emulated and CUDA backends.
    pub kernel: KernelVariant,
    /// Run this PTX module on the PTX interpreter instead of `backend`.
    pub ptx: Option<PathBuf>,
}

/// What `run` computed, before anything is written.
pub struct Outputs {
    /// The layer output F (N×C).
    pub out: Array2<f32>,
    /// dX and dW, when a dOut was given.
    pub grads: Option<(Array2<f32>, Array2<f32>)>,
    /// Notes of the readers (e.g. a float64 input converted).
    pub notes: Vec<String>,
}

fn file_err(path: &Path, message: String) -> Error {
    Error::File {
        path: path.display().to_string(),
        message,
    }
}

/// Reads and checks every input and computes the outputs; writes nothing. Bad input and an
/// unavailable backend are errors other than [`Error::Backend`], which is a backend that
/// failed while running.
pub fn compute(args: &Request) -> Result<Outputs> {
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

/// Creates `dir` and writes `out.npy` (and `dx.npy`, `dw.npy`); returns the files written.
pub fn write(dir: &Path, computed: &Outputs) -> Result<Vec<PathBuf>> {
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
