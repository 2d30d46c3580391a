//! The one launch pipeline of the device backends (emulated, ptx, cuda): the forward and
//! backward sequences — check, plan, upload, launch, synchronise, download — written once
//! over the [`Device`] trait (`backend/device.rs`), which holds only what differs between
//! them: where memory lives, how a kernel is launched, and the backend's name for errors.
//!
//! Forward: upload `X`, `W`, labels; for L-Softmax training and the normalised margins,
//! `row_norms`; for the normalised margins, `row_scale` into `X̃` (CosFace, ArcFace,
//! combined) and `Ŵ`; then the variant's `margin_forward`. Backward: upload, rebuild
//! `X̃`, `Ŵ` from the cached norms (normalised margins), the input gradient (one kernel or
//! split-K's two), the weight gradient, and `row_project` back to `dX`, `dW`.

use ndarray::{Array2, ArrayView2};

use super::abi::{
    ForwardViews, GradViews, KernelArgs, RowNormsViews, RowScaleViews, SplitKViews, View,
};
use super::device::Device;
#[cfg(feature = "cuda")]
use super::flops::MarginKernel;
use super::launch::{
    InputGradLaunch, KernelChoice, KernelLaunch, LaunchPlan, forward_launch, input_grad_launch,
    needs_row_norms, row_norms_plan, row_project_plan, row_scale_plan, weight_grad_launch,
};
use crate::error::{Error, Result};
use crate::margin::{Margin, Mode};
use crate::types::{
    Backend, Grads, Normalisation, RowCache, check_cache, check_dout, validate_inputs,
};
use kernels_gpu::params::{ForwardParams, GradParams, RowNormsParams};

/// A backend that runs the layer through this pipeline: it names itself, says which
/// kernels to launch, and lends out a [`Device`] for one call. [`Backend`] follows:
/// forward and backward plan and check the inputs first ([`ForwardJob::new`],
/// [`BackwardJob::new`]), then run on the lent device.
pub(crate) trait DeviceBackend: Send + Sync {
    /// The backend's name ([`Backend::name`]).
    const NAME: &'static str;

    /// The device of one call.
    type Device<'a>: Device
    where
        Self: 'a;

    /// The kernel variant and split-K policy to launch.
    fn choice(&self) -> KernelChoice;

    /// Runs `body` on a device ready for one call (for CUDA: the locked state, its
    /// context current, its stream idle).
    fn with_device<T>(&self, body: impl FnOnce(&mut Self::Device<'_>) -> Result<T>) -> Result<T>;
}

impl<B: DeviceBackend> Backend for B {
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn forward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        margin: Margin,
        mode: Mode,
    ) -> Result<(Array2<f32>, RowCache)> {
        let job = ForwardJob::new(self.choice(), x, w, labels, margin, mode)?;
        self.with_device(|device| job.run(device))
    }

    fn backward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        cache: &RowCache,
        dout: ArrayView2<f32>,
    ) -> Result<Grads> {
        let job = BackwardJob::new(self.choice(), (x, w, labels), cache, dout)?;
        self.with_device(|device| job.run(device))
    }
}

/// `message` as an error of `device`'s backend.
fn device_error<D: Device>(device: &D, message: String) -> Error {
    Error::backend(device.name(), message)
}

/// Launches one kernel of the pipeline.
fn launch<D: Device>(device: &mut D, plan: &LaunchPlan, args: KernelArgs) -> Result<()> {
    // SAFETY: every function of this module builds `args` only from views of buffers it
    // obtained from this `device` during the current call (forward, backward or staging),
    // each under its own name (x, w, labels, x_norms, w_norms, x_scaled, w_scaled, out, p,
    // alpha_scale, gamma_scale, dout, dx, dw, dx_scaled, dw_scaled, split-k partials) and
    // never requested twice (the tests of this module check it on every path), so their
    // memory stays valid until the device is dropped (a `Staged` keeps its device
    // borrowed and lends it out shared only, so nothing can request a name again between
    // its launches); the `KernelArgs` variant is the one of `plan`'s kernel, both coming
    // from the same plan.
    unsafe { device.launch(plan, &args) }
}

/// Row-major upload of a view of any layout (copied only if not row-major already).
fn upload_matrix<D: Device>(
    device: &mut D,
    name: &'static str,
    a: ArrayView2<f32>,
) -> Result<D::Buffer<f32>> {
    match a.as_slice() {
        Some(s) => device.upload(name, s),
        None => device.upload(name, &a.iter().copied().collect::<Vec<f32>>()),
    }
}

/// The labels as the kernels' `u32`.
fn upload_labels<D: Device>(
    device: &mut D,
    labels: &[usize],
    classes: usize,
) -> Result<D::Buffer<u32>> {
    let data = labels
        .iter()
        .enumerate()
        .map(|(row, &y)| {
            u32::try_from(y).map_err(|_| Error::LabelOutOfRange {
                row,
                label: i64::try_from(y).unwrap_or(i64::MAX),
                classes,
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    device.upload("labels", &data)
}

/// A `rows×cols` download.
fn download_matrix<D: Device>(
    device: &mut D,
    buffer: &D::Buffer<f32>,
    (rows, cols): (usize, usize),
    name: &str,
) -> Result<Array2<f32>> {
    let data = device.download(buffer, name)?;
    Array2::from_shape_vec((rows, cols), data)
        .map_err(|e| device_error(device, format!("{name} of {rows}x{cols}: {e}")))
}

/// `factor·v_i/‖v_i‖` for the `rows` rows of `v` (the `row_scale` kernel).
fn scale_rows<D: Device>(
    device: &mut D,
    name: &'static str,
    v: &D::Buffer<f32>,
    norms: &D::Buffer<f64>,
    (rows, d): (usize, usize),
    factor: f32,
) -> Result<D::Buffer<f32>> {
    let l = row_scale_plan(rows, d, factor)?;
    let out = device.output::<f32>(name, rows * d)?;
    let views = RowScaleViews {
        v: device.view(v),
        norms: device.view(norms),
        dv_scaled: View::EMPTY,
        out: device.view(&out),
    };
    launch(device, &l.plan, KernelArgs::RowScale(l.params, views))?;
    Ok(out)
}

/// The backward of [`scale_rows`]: `dv_i = (factor/‖v_i‖)·(dṽ_i − (v̂_i·dṽ_i)·v̂_i)` (the
/// `row_project` kernel).
fn project_rows<D: Device>(
    device: &mut D,
    name: &'static str,
    (v, norms): (&D::Buffer<f32>, &D::Buffer<f64>),
    dv_scaled: &D::Buffer<f32>,
    (rows, d): (usize, usize),
    factor: f32,
) -> Result<D::Buffer<f32>> {
    let l = row_project_plan(rows, d, factor)?;
    let out = device.output::<f32>(name, rows * d)?;
    let views = RowScaleViews {
        v: device.view(v),
        norms: device.view(norms),
        dv_scaled: device.view(dv_scaled),
        out: device.view(&out),
    };
    launch(device, &l.plan, KernelArgs::RowProject(l.params, views))?;
    Ok(out)
}

/// What the forward leaves on the device, which the gradient kernels read too.
struct Forwarded<D: Device> {
    /// The GEMM operands: `X̃`, `Ŵ` for the normalised margins, else `X`, `W`.
    x: D::Buffer<f32>,
    w: D::Buffer<f32>,
    labels: D::Buffer<u32>,
    x_norms: Option<D::Buffer<f64>>,
    w_norms: Option<D::Buffer<f64>>,
    out: D::Buffer<f32>,
    p: D::Buffer<f32>,
    alpha_scale: D::Buffer<f32>,
    gamma_scale: D::Buffer<f32>,
}

/// The forward pass planned and checked: nothing has touched a device yet.
pub struct ForwardJob<'a> {
    x: ArrayView2<'a, f32>,
    w: ArrayView2<'a, f32>,
    labels: &'a [usize],
    margin: Margin,
    fwd: KernelLaunch<ForwardParams>,
    norms: Option<KernelLaunch<RowNormsParams>>,
}

impl<'a> ForwardJob<'a> {
    /// Checks the inputs ([`validate_inputs`]: the [`crate::types::Backend`] trait is public,
    /// and a label >= C reaching the kernels would index outside a device buffer, which the
    /// emulator catches and a GPU does not) and plans `choice`'s launches.
    pub fn new(
        choice: KernelChoice,
        x: ArrayView2<'a, f32>,
        w: ArrayView2<'a, f32>,
        labels: &'a [usize],
        margin: Margin,
        mode: Mode,
    ) -> Result<Self> {
        validate_inputs(x, w, labels)?;
        let ((n, d), c) = (x.dim(), w.nrows());
        let fwd = forward_launch(n, d, c, margin, mode, choice.variant)?;
        let norms = needs_row_norms(margin, mode)
            .then(|| row_norms_plan(n, d, c))
            .transpose()?;
        Ok(ForwardJob {
            x,
            w,
            labels,
            margin,
            fwd,
            norms,
        })
    }

    /// Uploads, runs `row_norms` when planned, builds the normalised operands, launches
    /// the forward kernel. Does not synchronise.
    fn launch_all<D: Device>(&self, device: &mut D) -> Result<Forwarded<D>> {
        let ((n, d), c) = (self.x.dim(), self.w.nrows());
        let x = upload_matrix(device, "x", self.x)?;
        let w = upload_matrix(device, "w", self.w)?;
        let labels = upload_labels(device, self.labels, c)?;
        let (x_norms, w_norms) = match &self.norms {
            Some(rn) => {
                let xn = device.output::<f64>("x_norms", n)?;
                let wn = device.output::<f64>("w_norms", c)?;
                let views = RowNormsViews {
                    x: device.view(&x),
                    w: device.view(&w),
                    x_norms: device.view(&xn),
                    w_norms: device.view(&wn),
                };
                launch(device, &rn.plan, KernelArgs::RowNorms(rn.params, views))?;
                (Some(xn), Some(wn))
            }
            // Never read by the other margins: no memory, so any read is a fault.
            None => (None, None),
        };
        // The normalised margins multiply X̃ = S·x/‖x‖ (SphereFace: X) and Ŵ = w/‖w‖.
        let (x, w) = match (self.margin.is_normalised(), &x_norms, &w_norms) {
            (false, _, _) => (x, w),
            (true, Some(xn), Some(wn)) => (
                match self.margin.feature_scale() {
                    Some(s) => scale_rows(device, "x_scaled", &x, xn, (n, d), s)?,
                    None => x,
                },
                scale_rows(device, "w_scaled", &w, wn, (c, d), 1.0)?,
            ),
            (true, _, _) => {
                return Err(device_error(
                    device,
                    "normalised margin without row norms".into(),
                ));
            }
        };
        let f = Forwarded {
            out: device.output("out", n * c)?,
            p: device.output("p", n)?,
            alpha_scale: device.output("alpha_scale", n)?,
            gamma_scale: device.output("gamma_scale", n)?,
            x,
            w,
            labels,
            x_norms,
            w_norms,
        };
        let views = ForwardViews {
            x: device.view(&f.x),
            w: device.view(&f.w),
            labels: device.view(&f.labels),
            x_norms: f.x_norms.as_ref().map_or(View::EMPTY, |b| device.view(b)),
            w_norms: f.w_norms.as_ref().map_or(View::EMPTY, |b| device.view(b)),
            out: device.view(&f.out),
            p: device.view(&f.p),
            alpha_scale: device.view(&f.alpha_scale),
            gamma_scale: device.view(&f.gamma_scale),
        };
        launch(
            device,
            &self.fwd.plan,
            KernelArgs::Forward(self.fwd.params, views),
        )?;
        Ok(f)
    }

    /// `F` (N×C) and the row cache, computed on `device`.
    pub fn run<D: Device>(&self, device: &mut D) -> Result<(Array2<f32>, RowCache)> {
        let (n, c) = (self.x.nrows(), self.w.nrows());
        let f = self.launch_all(device)?;
        device.synchronize("running the forward kernels")?;
        let out = download_matrix(device, &f.out, (n, c), "out")?;
        let normalisation = match (self.margin.is_normalised(), &f.x_norms, &f.w_norms) {
            (true, Some(xn), Some(wn)) => Some(Normalisation {
                x_norms: device.download(xn, "x_norms")?,
                w_norms: device.download(wn, "w_norms")?,
                x_scale: self.margin.feature_scale(),
            }),
            _ => None,
        };
        let cache = RowCache {
            p: device.download(&f.p, "p")?,
            alpha_scale: device.download(&f.alpha_scale, "alpha_scale")?,
            gamma_scale: device.download(&f.gamma_scale, "gamma_scale")?,
            normalisation,
        };
        Ok((out, cache))
    }
}

/// Views of what the gradient kernels read.
#[derive(Clone, Copy)]
struct GradInputs {
    g: View,
    x: View,
    w: View,
    labels: View,
    p: View,
    alpha_scale: View,
    gamma_scale: View,
}

/// The input gradient into `dx`: one launch, or split-K's two (partials into `partial`,
/// then their reduction in chunk order).
fn launch_input_grad<D: Device>(
    device: &mut D,
    ig: &InputGradLaunch,
    v: &GradInputs,
    partial: View,
    dx: View,
) -> Result<()> {
    match ig {
        InputGradLaunch::Direct(l) => {
            let views = GradViews {
                g: v.g,
                x: v.x,
                w: v.w,
                labels: v.labels,
                p: v.p,
                scale: v.alpha_scale,
                out: dx,
            };
            launch(device, &l.plan, KernelArgs::InputGrad(l.params, views))
        }
        InputGradLaunch::Split {
            partial: first,
            reduce,
            ..
        } => {
            let views = SplitKViews {
                g: v.g,
                x: v.x,
                w: v.w,
                labels: v.labels,
                p: v.p,
                alpha_scale: v.alpha_scale,
                partial,
                dx,
            };
            launch(
                device,
                &first.plan,
                KernelArgs::SplitKPartial(first.params, views),
            )?;
            launch(
                device,
                &reduce.plan,
                KernelArgs::SplitKReduce(reduce.params, views),
            )
        }
    }
}

/// The weight gradient into `dw`.
fn launch_weight_grad<D: Device>(
    device: &mut D,
    wg: &KernelLaunch<GradParams>,
    v: &GradInputs,
    dw: View,
) -> Result<()> {
    let views = GradViews {
        g: v.g,
        x: v.x,
        w: v.w,
        labels: v.labels,
        p: v.p,
        scale: v.gamma_scale,
        out: dw,
    };
    launch(device, &wg.plan, KernelArgs::WeightGrad(wg.params, views))
}

/// The split-K scratch buffer `ig` needs, if it splits.
fn split_scratch<D: Device>(
    device: &mut D,
    ig: &InputGradLaunch,
) -> Result<Option<D::Buffer<f32>>> {
    match ig {
        InputGradLaunch::Direct(_) => Ok(None),
        InputGradLaunch::Split { scratch_len, .. } => {
            device.output("split-k partials", *scratch_len).map(Some)
        }
    }
}

/// The backward pass planned and checked: nothing has touched a device yet.
pub struct BackwardJob<'a> {
    x: ArrayView2<'a, f32>,
    w: ArrayView2<'a, f32>,
    labels: &'a [usize],
    cache: &'a RowCache,
    dout: ArrayView2<'a, f32>,
    ig: InputGradLaunch,
    wg: KernelLaunch<GradParams>,
}

impl<'a> BackwardJob<'a> {
    /// Checks the inputs (as [`ForwardJob::new`]), `dout` against N×C and the row cache
    /// against N and C (the kernels trust the lengths), and plans `choice`'s launches.
    pub fn new(
        choice: KernelChoice,
        (x, w, labels): (ArrayView2<'a, f32>, ArrayView2<'a, f32>, &'a [usize]),
        cache: &'a RowCache,
        dout: ArrayView2<'a, f32>,
    ) -> Result<Self> {
        validate_inputs(x, w, labels)?;
        let ((n, d), c) = (x.dim(), w.nrows());
        check_dout(dout, (n, c))?;
        check_cache(cache, n, c)?;
        Ok(BackwardJob {
            x,
            w,
            labels,
            cache,
            dout,
            ig: input_grad_launch(n, d, c, choice)?,
            wg: weight_grad_launch(n, d, c, choice.variant)?,
        })
    }

    /// `dX`, `dW` computed on `device`. Normalised margins: the GEMMs run on `X̃`, `Ŵ`
    /// rebuilt from the cached norms into `dX̃`, `dŴ`, which `row_project` maps back.
    pub fn run<D: Device>(&self, device: &mut D) -> Result<Grads> {
        let ((n, d), c) = (self.x.dim(), self.w.nrows());
        let cache = self.cache;
        let x_raw = upload_matrix(device, "x", self.x)?;
        let w_raw = upload_matrix(device, "w", self.w)?;
        let norms = match &cache.normalisation {
            Some(nm) => Some((
                device.upload("x_norms", &nm.x_norms)?,
                device.upload("w_norms", &nm.w_norms)?,
                nm.x_scale,
            )),
            None => None,
        };
        let (x_scaled, w_scaled) = match &norms {
            Some((xn, wn, x_scale)) => (
                match x_scale {
                    Some(s) => Some(scale_rows(device, "x_scaled", &x_raw, xn, (n, d), *s)?),
                    None => None,
                },
                Some(scale_rows(device, "w_scaled", &w_raw, wn, (c, d), 1.0)?),
            ),
            None => (None, None),
        };
        let g = upload_matrix(device, "dout", self.dout)?;
        let labels = upload_labels(device, self.labels, c)?;
        let p = device.upload("p", &cache.p)?;
        let alpha_scale = device.upload("alpha_scale", &cache.alpha_scale)?;
        let gamma_scale = device.upload("gamma_scale", &cache.gamma_scale)?;
        let inputs = GradInputs {
            g: device.view(&g),
            x: device.view(x_scaled.as_ref().unwrap_or(&x_raw)),
            w: device.view(w_scaled.as_ref().unwrap_or(&w_raw)),
            labels: device.view(&labels),
            p: device.view(&p),
            alpha_scale: device.view(&alpha_scale),
            gamma_scale: device.view(&gamma_scale),
        };
        // The GEMMs write the final gradient unless a projection follows.
        let dx_gemm = device.output(
            if x_scaled.is_some() {
                "dx_scaled"
            } else {
                "dx"
            },
            n * d,
        )?;
        let dw_gemm = device.output(
            if w_scaled.is_some() {
                "dw_scaled"
            } else {
                "dw"
            },
            c * d,
        )?;
        let partial = split_scratch(device, &self.ig)?;
        let partial_view = partial.as_ref().map_or(View::EMPTY, |b| device.view(b));
        let (dx_view, dw_view) = (device.view(&dx_gemm), device.view(&dw_gemm));
        launch_input_grad(device, &self.ig, &inputs, partial_view, dx_view)?;
        launch_weight_grad(device, &self.wg, &inputs, dw_view)?;
        let (dx, dw) = match &norms {
            Some((xn, wn, x_scale)) => (
                match x_scale {
                    Some(s) => project_rows(device, "dx", (&x_raw, xn), &dx_gemm, (n, d), *s)?,
                    None => dx_gemm,
                },
                project_rows(device, "dw", (&w_raw, wn), &dw_gemm, (c, d), 1.0)?,
            ),
            None => (dx_gemm, dw_gemm),
        };
        device.synchronize("running the gradient kernels")?;
        Ok(Grads {
            dx: download_matrix(device, &dx, (n, d), "dx")?,
            dw: download_matrix(device, &dw, (c, d), "dw")?,
        })
    }
}

#[cfg(feature = "cuda")]
/// A training forward run on a device, with the gradient launches planned on its buffers:
/// what timing one kernel by repeating its launch needs. The inputs the repeated kernel
/// reads (the row norms, the normalised operands, the forward's cache) were computed once,
/// by [`Staged::new`].
pub struct Staged<'d, D: Device> {
    device: &'d mut D,
    fwd: KernelLaunch<ForwardParams>,
    ig: InputGradLaunch,
    wg: KernelLaunch<GradParams>,
    forward: ForwardViews,
    grads: GradInputs,
    partial: View,
    dx: View,
    dw: View,
}

#[cfg(feature = "cuda")]
impl<'d, D: Device> Staged<'d, D> {
    /// Uploads `x`, `w`, `labels`, `g` (N×C), runs the training forward of `margin` with
    /// `choice`'s kernels and allocates the gradients. Does not synchronise.
    pub fn new(
        device: &'d mut D,
        choice: KernelChoice,
        (x, w, labels): (ArrayView2<f32>, ArrayView2<f32>, &[usize]),
        g: ArrayView2<f32>,
        margin: Margin,
    ) -> Result<Self> {
        let job = ForwardJob::new(choice, x, w, labels, margin, Mode::Train)?;
        let ((n, d), c) = (x.dim(), w.nrows());
        let ig = input_grad_launch(n, d, c, choice)?;
        let wg = weight_grad_launch(n, d, c, choice.variant)?;
        let gb = upload_matrix(device, "dout", g)?;
        let f = job.launch_all(device)?;
        let partial = split_scratch(device, &ig)?;
        let dx = device.output::<f32>("dx", n * d)?;
        let dw = device.output::<f32>("dw", c * d)?;
        let dev = &*device;
        let view_opt = |b: &Option<D::Buffer<f64>>| b.as_ref().map_or(View::EMPTY, |b| dev.view(b));
        let forward = ForwardViews {
            x: dev.view(&f.x),
            w: dev.view(&f.w),
            labels: dev.view(&f.labels),
            x_norms: view_opt(&f.x_norms),
            w_norms: view_opt(&f.w_norms),
            out: dev.view(&f.out),
            p: dev.view(&f.p),
            alpha_scale: dev.view(&f.alpha_scale),
            gamma_scale: dev.view(&f.gamma_scale),
        };
        let grads = GradInputs {
            g: dev.view(&gb),
            x: forward.x,
            w: forward.w,
            labels: forward.labels,
            p: forward.p,
            alpha_scale: forward.alpha_scale,
            gamma_scale: forward.gamma_scale,
        };
        let partial = partial.as_ref().map_or(View::EMPTY, |b| dev.view(b));
        let (dx, dw) = (dev.view(&dx), dev.view(&dw));
        Ok(Staged {
            device,
            fwd: job.fwd,
            ig,
            wg,
            forward,
            grads,
            partial,
            dx,
            dw,
        })
    }

    /// The device, for what the caller does around the launches (events on its stream).
    /// Shared only: it cannot allocate, so the staged buffers stay valid.
    pub fn device(&self) -> &D {
        self.device
    }

    /// Launches `kernel` once more on the staged buffers.
    pub fn launch(&mut self, kernel: MarginKernel) -> Result<()> {
        let device = &mut *self.device;
        match kernel {
            MarginKernel::Forward => launch(
                device,
                &self.fwd.plan,
                KernelArgs::Forward(self.fwd.params, self.forward),
            ),
            MarginKernel::InputGrad => {
                launch_input_grad(device, &self.ig, &self.grads, self.partial, self.dx)
            }
            MarginKernel::WeightGrad => launch_weight_grad(device, &self.wg, &self.grads, self.dw),
        }
    }
}

#[cfg(test)]
mod tests;
