//! The `ptx` backend: the kernels' PTX module — the one the CUDA backend embeds, built by
//! the same code (`ptx-tools`'s `compile.rs`, line info, [`ptx_tools::compile::EMBEDDED_ARCH`]) —
//! executed by the CPU interpreter [`ptxsim`], with parameter bytes packed by
//! [`super::abi`] exactly as for a CUDA launch.
//!
//! What it proves beyond the emulated backend: rustc's nvptx code generation, the
//! facade's GPU half (`device/nvptx.rs`) and the launch ABI are right for the inputs
//! tested. What it cannot prove: ptxas's and the driver's compilation to SASS, the
//! hardware's behaviour (warp scheduling, memory ordering), anything about time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use kernels_gpu::params::{ForwardParams, GradParams, RowNormsParams};
use ndarray::{Array2, ArrayView2};

use super::Backend;
use super::abi::{self, Arg, ForwardViews, GradViews, RowNormsViews, SplitKViews, View};
use super::launch::{
    InputGradLaunch, KernelChoice, KernelLaunch, LaunchPlan, forward_launch, input_grad_launch,
    needs_row_norms, row_norms_plan, row_project_plan, row_scale_plan, weight_grad_launch,
};
use crate::error::{Error, Result};
use crate::layer::{Grads, Normalisation, RowCache};
use crate::margin::{Margin, Mode};
use ptxsim::{Geometry, KernelStats, SimOptions, Simulator, parse_module};

const NAME: &str = "ptx";

fn backend_error(message: String) -> Error {
    Error::Backend {
        backend: NAME,
        message,
    }
}

/// The margin kernels' PTX run by the interpreter.
#[derive(Debug)]
pub struct PtxBackend {
    base: Simulator,
    origin: String,
    options: SimOptions,
    /// Which kernel variant and split-K policy to launch.
    choice: KernelChoice,
    instructions: AtomicU64,
    /// Statistics of every launch so far, when `options.stats` is on.
    stats: Mutex<Vec<LaunchStats>>,
}

/// Warp-level statistics of one launch (with [`SimOptions::stats`]).
#[derive(Debug, Clone)]
pub struct LaunchStats {
    /// Entry name.
    pub kernel: String,
    /// Thread-level instructions executed.
    pub instructions: u64,
    /// The counters.
    pub stats: KernelStats,
}

impl PtxBackend {
    /// The backend on the module the CUDA backend embeds, built now with the nightly
    /// toolchain (cached by cargo under the target directory, and per process).
    /// Errors when the nightly toolchain or its rust-src is missing.
    pub fn new() -> Result<Self> {
        // Ok(text, path), or Err(missing tool?, message).
        type Built = std::result::Result<(String, String), (Option<String>, String)>;
        static BUILT: OnceLock<Built> = OnceLock::new();
        let built = BUILT.get_or_init(|| {
            let arch = ptx_tools::compile::embedded_arch();
            match ptx_tools::build(&arch, true) {
                Ok(out) => Ok((out.text, out.path.display().to_string())),
                Err(ptx_tools::Error::Toolchain { tool, message }) => Err((Some(tool), message)),
                Err(e) => Err((None, e.to_string())),
            }
        });
        match built {
            Ok((text, path)) => Self::from_ptx(text, path),
            // A missing toolchain stays `Error::Toolchain`: tests skip on it and only on it.
            Err((Some(tool), message)) => Err(Error::Toolchain {
                tool: tool.clone(),
                message: message.clone(),
            }),
            Err((None, e)) => Err(backend_error(format!("building the kernels' PTX: {e}"))),
        }
    }

    /// The backend on a PTX module's text (`origin` names it in messages, e.g. its file).
    pub fn from_ptx(text: &str, origin: &str) -> Result<Self> {
        let module = parse_module(text).map_err(|e| backend_error(format!("{origin}: {e}")))?;
        let base = Simulator::new(module).map_err(|e| backend_error(format!("{origin}: {e}")))?;
        Ok(PtxBackend {
            base,
            origin: origin.to_string(),
            options: SimOptions::default(),
            choice: KernelChoice::default(),
            instructions: AtomicU64::new(0),
            stats: Mutex::new(Vec::new()),
        })
    }

    /// The backend on a PTX file (`--ptx FILE`: a hand-edited module).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_ptx(&text, &path.display().to_string())
    }

    /// The parsed module.
    pub fn module(&self) -> &ptxsim::Module {
        self.base.module()
    }

    /// Where the module came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Launches `choice`'s kernels (variant, split-K policy).
    pub fn with_kernels(mut self, choice: KernelChoice) -> Self {
        self.choice = choice;
        self
    }

    /// A backend on the same parsed module launching `choice`'s kernels (fresh counters).
    pub fn with_choice(&self, choice: KernelChoice) -> Self {
        PtxBackend {
            base: self.base.fresh(),
            origin: self.origin.clone(),
            options: self.options,
            choice,
            instructions: AtomicU64::new(0),
            stats: Mutex::new(Vec::new()),
        }
    }

    /// Interpreter options (step limit, statistics).
    pub fn with_options(mut self, options: SimOptions) -> Self {
        self.options = options;
        self
    }

    /// Thread-level PTX instructions executed by this backend so far.
    pub fn instructions_executed(&self) -> u64 {
        self.instructions.load(Ordering::Relaxed)
    }

    /// Takes the statistics recorded so far (launch order).
    pub fn take_stats(&self) -> Vec<LaunchStats> {
        self.stats
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// A simulator with fresh device memory.
    pub fn simulator(&self) -> Simulator {
        self.base.fresh()
    }

    /// Packs `args` against the `.entry` of `plan.kernel` and runs it on `sim`.
    pub fn launch(&self, sim: &mut Simulator, plan: &LaunchPlan, args: &[Arg]) -> Result<()> {
        let entry = sim.module().kernel(plan.kernel).ok_or_else(|| {
            backend_error(format!(
                "{}: kernel {} not in the PTX",
                self.origin, plan.kernel
            ))
        })?;
        let packed = abi::pack(plan.kernel, args, &entry.params)?;
        let geometry = Geometry {
            grid: plan.grid,
            block: plan.block,
            shared_bytes: plan.shared_bytes,
        };
        let report = sim
            .launch(plan.kernel, geometry, &packed.bytes, &self.options)
            .map_err(|e| backend_error(e.to_string()))?;
        self.instructions
            .fetch_add(report.instructions, Ordering::Relaxed);
        if let (Some(stats), Ok(mut all)) = (report.stats, self.stats.lock()) {
            all.push(LaunchStats {
                kernel: plan.kernel.to_string(),
                instructions: report.instructions,
                stats,
            });
        }
        Ok(())
    }
}

/// Row-major bytes of a view of any layout.
fn upload(sim: &mut Simulator, name: &str, a: ArrayView2<f32>) -> View {
    let data: Vec<f32> = a.iter().copied().collect();
    View {
        addr: sim.memory.alloc_f32(name, &data),
        len: data.len() as u64,
    }
}

/// An output buffer of `len` elements of `size` bytes, filled with 0xFF bytes (NaN as
/// floats) so that an element the kernel fails to write shows up in the results.
fn output(sim: &mut Simulator, name: &str, len: usize, size: usize) -> View {
    View {
        addr: sim.memory.alloc(name, vec![0xff; len * size]),
        len: len as u64,
    }
}

fn upload_labels(sim: &mut Simulator, labels: &[usize], classes: usize) -> Result<View> {
    let data = labels
        .iter()
        .enumerate()
        .map(|(row, &y)| {
            u32::try_from(y).map_err(|_| Error::LabelOutOfRange {
                row,
                label: y as i64,
                classes,
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(View {
        addr: sim.memory.alloc_u32("labels", &data),
        len: data.len() as u64,
    })
}

fn download(sim: &Simulator, v: View, what: &str) -> Result<Vec<f32>> {
    sim.memory
        .read_f32(v.addr, v.len as usize)
        .ok_or_else(|| backend_error(format!("{what}: no device buffer of {} floats", v.len)))
}

fn download_f64(sim: &Simulator, v: View, what: &str) -> Result<Vec<f64>> {
    let bytes = sim
        .memory
        .read(v.addr, 8 * v.len as usize)
        .ok_or_else(|| backend_error(format!("{what}: no device buffer of {} f64", v.len)))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn upload_f64(sim: &mut Simulator, name: &str, values: &[f64]) -> View {
    View {
        addr: sim
            .memory
            .alloc(name, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        len: values.len() as u64,
    }
}

fn matrix(data: Vec<f32>, rows: usize, cols: usize, what: &str) -> Result<Array2<f32>> {
    Array2::from_shape_vec((rows, cols), data)
        .map_err(|e| backend_error(format!("{what} of {rows}x{cols}: {e}")))
}

impl PtxBackend {
    /// `factor·v_i/‖v_i‖` for the `rows` rows of `v` (the `row_scale` kernel).
    #[allow(clippy::too_many_arguments)]
    fn scale_rows(
        &self,
        sim: &mut Simulator,
        name: &str,
        v: View,
        norms: View,
        rows: usize,
        d: usize,
        factor: f32,
    ) -> Result<View> {
        let l = row_scale_plan(rows, d, factor)?;
        let out = output(sim, name, rows * d, 4);
        let views = abi::RowScaleViews {
            v,
            norms,
            dv_scaled: View::EMPTY,
            out,
        };
        self.launch(sim, &l.plan, &abi::row_scale_args(&l.params, &views)?)?;
        Ok(out)
    }

    /// The backward of [`Self::scale_rows`] (the `row_project` kernel).
    #[allow(clippy::too_many_arguments)]
    fn project_rows(
        &self,
        sim: &mut Simulator,
        name: &str,
        v: View,
        norms: View,
        dv_scaled: View,
        rows: usize,
        d: usize,
        factor: f32,
    ) -> Result<View> {
        let l = row_project_plan(rows, d, factor)?;
        let out = output(sim, name, rows * d, 4);
        let views = abi::RowScaleViews {
            v,
            norms,
            dv_scaled,
            out,
        };
        self.launch(sim, &l.plan, &abi::row_project_args(&l.params, &views)?)?;
        Ok(out)
    }

    fn run_row_norms(
        &self,
        sim: &mut Simulator,
        l: &KernelLaunch<RowNormsParams>,
        v: &RowNormsViews,
    ) -> Result<()> {
        self.launch(sim, &l.plan, &abi::row_norms_args(&l.params, v)?)
    }

    fn run_forward(
        &self,
        sim: &mut Simulator,
        l: &KernelLaunch<ForwardParams>,
        v: &ForwardViews,
    ) -> Result<()> {
        self.launch(sim, &l.plan, &abi::forward_args(&l.params, v)?)
    }

    fn run_grad(
        &self,
        sim: &mut Simulator,
        l: &KernelLaunch<GradParams>,
        v: &GradViews,
        input: bool,
    ) -> Result<()> {
        let args = if input {
            abi::input_grad_args(&l.params, v)?
        } else {
            abi::weight_grad_args(&l.params, v)?
        };
        self.launch(sim, &l.plan, &args)
    }
}

impl Backend for PtxBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn forward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        margin: Margin,
        mode: Mode,
    ) -> Result<(Array2<f32>, RowCache)> {
        let ((n, d), c) = (x.dim(), w.nrows());
        let fwd = forward_launch(n, d, c, margin, mode, self.choice.variant)?;
        let mut sim = self.simulator();
        let xv = upload(&mut sim, "x", x);
        let wv = upload(&mut sim, "w", w);
        let labels = upload_labels(&mut sim, labels, c)?;
        let (x_norms, w_norms) = if needs_row_norms(margin, mode) {
            let norms = row_norms_plan(n, d, c)?;
            let xn = output(&mut sim, "x_norms", n, 8);
            let wn = output(&mut sim, "w_norms", c, 8);
            let views = RowNormsViews {
                x: xv,
                w: wv,
                x_norms: xn,
                w_norms: wn,
            };
            self.run_row_norms(&mut sim, &norms, &views)?;
            (xn, wn)
        } else {
            // Never read by the other margins: no memory, so any read is a fault.
            (View::EMPTY, View::EMPTY)
        };
        // The normalised margins multiply X̃ = S·x/‖x‖ (SphereFace: X) and Ŵ = w/‖w‖.
        let x_scale = margin.feature_scale();
        let (xv, wv) = if margin.is_normalised() {
            let xt = match x_scale {
                Some(s) => self.scale_rows(&mut sim, "x_scaled", xv, x_norms, n, d, s)?,
                None => xv,
            };
            let wt = self.scale_rows(&mut sim, "w_scaled", wv, w_norms, c, d, 1.0)?;
            (xt, wt)
        } else {
            (xv, wv)
        };
        let views = ForwardViews {
            x: xv,
            w: wv,
            labels,
            x_norms,
            w_norms,
            out: output(&mut sim, "out", n * c, 4),
            p: output(&mut sim, "p", n, 4),
            alpha_scale: output(&mut sim, "alpha_scale", n, 4),
            gamma_scale: output(&mut sim, "gamma_scale", n, 4),
        };
        self.run_forward(&mut sim, &fwd, &views)?;
        let cache = RowCache {
            p: download(&sim, views.p, "p")?,
            alpha_scale: download(&sim, views.alpha_scale, "alpha_scale")?,
            gamma_scale: download(&sim, views.gamma_scale, "gamma_scale")?,
            normalisation: if margin.is_normalised() {
                Some(Normalisation {
                    x_norms: download_f64(&sim, x_norms, "x_norms")?,
                    w_norms: download_f64(&sim, w_norms, "w_norms")?,
                    x_scale,
                })
            } else {
                None
            },
        };
        let out = matrix(download(&sim, views.out, "out")?, n, c, "out")?;
        Ok((out, cache))
    }

    fn backward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        cache: &RowCache,
        dout: ArrayView2<f32>,
    ) -> Result<Grads> {
        let ((n, d), c) = (x.dim(), w.nrows());
        for (name, v) in [
            ("p", &cache.p),
            ("alpha_scale", &cache.alpha_scale),
            ("gamma_scale", &cache.gamma_scale),
        ] {
            if v.len() != n {
                return Err(Error::Shape(format!(
                    "row cache {name} has {} entries but x has {n} rows",
                    v.len()
                )));
            }
        }
        let ig = input_grad_launch(n, d, c, self.choice)?;
        let wg = weight_grad_launch(n, d, c, self.choice.variant)?;
        if let Some(nm) = cache
            .normalisation
            .as_ref()
            .filter(|nm| nm.x_norms.len() != n || nm.w_norms.len() != c)
        {
            return Err(Error::Shape(format!(
                "row cache norms have {} and {} entries but x has {n} rows and w {c}",
                nm.x_norms.len(),
                nm.w_norms.len()
            )));
        }
        let mut sim = self.simulator();
        let x_raw = upload(&mut sim, "x", x);
        let w_raw = upload(&mut sim, "w", w);
        // Normalised margins: the GEMMs run on X̃, Ŵ rebuilt from the cached norms, and
        // their gradients are projected back below.
        let norms = cache.normalisation.as_ref().map(|nm| {
            (
                upload_f64(&mut sim, "x_norms", &nm.x_norms),
                upload_f64(&mut sim, "w_norms", &nm.w_norms),
                nm.x_scale,
            )
        });
        let (xv, wv) = match norms {
            Some((xn, wn, x_scale)) => (
                match x_scale {
                    Some(s) => self.scale_rows(&mut sim, "x_scaled", x_raw, xn, n, d, s)?,
                    None => x_raw,
                },
                self.scale_rows(&mut sim, "w_scaled", w_raw, wn, c, d, 1.0)?,
            ),
            None => (x_raw, w_raw),
        };
        let gv = upload(&mut sim, "dout", dout);
        let labels = upload_labels(&mut sim, labels, c)?;
        let vec1 = |sim: &mut Simulator, name: &str, v: &[f32]| View {
            addr: sim.memory.alloc_f32(name, v),
            len: v.len() as u64,
        };
        let p = vec1(&mut sim, "p", &cache.p);
        let alpha = vec1(&mut sim, "alpha_scale", &cache.alpha_scale);
        let gamma = vec1(&mut sim, "gamma_scale", &cache.gamma_scale);
        let dx = output(&mut sim, "dx", n * d, 4);
        let dw = output(&mut sim, "dw", c * d, 4);
        let common = GradViews {
            g: gv,
            x: xv,
            w: wv,
            labels,
            p,
            scale: alpha,
            out: dx,
        };
        match ig {
            InputGradLaunch::Direct(ig) => self.run_grad(&mut sim, &ig, &common, true)?,
            InputGradLaunch::Split {
                partial,
                reduce,
                scratch_len,
            } => {
                let views = SplitKViews {
                    g: gv,
                    x: xv,
                    w: wv,
                    labels,
                    p,
                    alpha_scale: alpha,
                    partial: output(&mut sim, "split-k partials", scratch_len, 4),
                    dx,
                };
                let first = abi::splitk_partial_args(&partial.params, &views)?;
                self.launch(&mut sim, &partial.plan, &first)?;
                let second = abi::splitk_reduce_args(&reduce.params, &views)?;
                self.launch(&mut sim, &reduce.plan, &second)?;
            }
        }
        let wviews = GradViews {
            scale: gamma,
            out: dw,
            ..common
        };
        self.run_grad(&mut sim, &wg, &wviews, false)?;
        let (dx, dw) = match norms {
            Some((xn, wn, x_scale)) => (
                match x_scale {
                    Some(s) => self.project_rows(&mut sim, "dx", x_raw, xn, dx, n, d, s)?,
                    None => dx,
                },
                self.project_rows(&mut sim, "dw", w_raw, wn, dw, c, d, 1.0)?,
            ),
            None => (dx, dw),
        };
        Ok(Grads {
            dx: matrix(download(&sim, dx, "dx")?, n, d, "dx")?,
            dw: matrix(download(&sim, dw, "dw")?, c, d, "dw")?,
        })
    }
}
