//! The emulated backend: the kernels of `kernels-gpu` compiled for the host and run by
//! its CPU emulator, with every detector on (memcheck, racecheck, initcheck, synccheck).
//!
//! It runs exactly the launches a GPU would ([`super::launch`] computes them for both), so
//! a kernel that agrees with the reference here differs on a GPU only by what the emulator
//! does not model (warps, memory ordering). The emulator runs one block at a time on OS
//! threads: use it for correctness, not speed.

use kernels_gpu::device::{Global, GlobalMut};
use kernels_gpu::emulator::{DeviceBuffer, LaunchConfig, LaunchError, launch};
use kernels_gpu::normalise::{row_project, row_scale};
use kernels_gpu::params::{ForwardParams, GradParams};
use kernels_gpu::row_norms::row_norms;
use kernels_gpu::{forward, input_grad, weight_grad};
use ndarray::{Array2, ArrayView2};

use super::Backend;
use super::launch::{
    InputGradLaunch, KernelChoice, KernelVariant, LaunchPlan, forward_launch, input_grad_launch,
    needs_row_norms, row_norms_plan, row_project_plan, row_scale_plan, weight_grad_launch,
};
use crate::error::{Error, Result};
use crate::layer::{Grads, Normalisation, RowCache};
use crate::margin::{Margin, Mode};

/// Runs the margin kernels under the CPU emulator: the default [`KernelChoice`]
/// (variant and split-K policy); [`EmulatedVariant`] runs any other.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmulatedBackend;

/// The emulated backend running a chosen kernel variant and split-K policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmulatedVariant {
    /// What to launch.
    pub choice: KernelChoice,
}

type ForwardFn = fn(
    ForwardParams,
    Global<f32>,
    Global<f32>,
    Global<u32>,
    Global<f64>,
    Global<f64>,
    GlobalMut<f32>,
    GlobalMut<f32>,
    GlobalMut<f32>,
    GlobalMut<f32>,
);
type GradFn = fn(
    GradParams,
    Global<f32>,
    Global<f32>,
    Global<f32>,
    Global<u32>,
    Global<f32>,
    Global<f32>,
    GlobalMut<f32>,
);

/// The host functions of `variant`'s `(forward, input grad, weight grad)` entries.
fn kernels(variant: KernelVariant) -> (ForwardFn, GradFn, GradFn) {
    match variant {
        KernelVariant::Base => (
            forward::margin_forward,
            input_grad::margin_input_grad,
            weight_grad::margin_weight_grad,
        ),
        KernelVariant::Unrolled => (
            forward::margin_forward_unrolled,
            input_grad::margin_input_grad_unrolled,
            weight_grad::margin_weight_grad_unrolled,
        ),
        KernelVariant::Micro8 => (
            forward::margin_forward_micro8,
            input_grad::margin_input_grad_micro8,
            weight_grad::margin_weight_grad_micro8,
        ),
        KernelVariant::Ldg => (
            forward::margin_forward_ldg,
            input_grad::margin_input_grad_ldg,
            weight_grad::margin_weight_grad_ldg,
        ),
        KernelVariant::Dbuf => (
            forward::margin_forward_dbuf,
            input_grad::margin_input_grad_dbuf,
            weight_grad::margin_weight_grad_dbuf,
        ),
    }
}

const NAME: &str = "emulated";

fn config(plan: &LaunchPlan) -> LaunchConfig {
    LaunchConfig {
        grid: plan.grid,
        block: plan.block,
        dynamic_shared_bytes: plan.shared_bytes as usize,
    }
}

fn backend_error(e: LaunchError) -> Error {
    Error::Backend {
        backend: NAME,
        message: e.to_string(),
    }
}

/// Row-major copy of a view of any layout (Fortran order, strided, transposed).
fn upload(name: &str, a: ArrayView2<f32>) -> DeviceBuffer<f32> {
    let data: Vec<f32> = a.iter().copied().collect();
    DeviceBuffer::from_slice(&data).named(name)
}

fn upload_labels(labels: &[usize], classes: usize) -> Result<DeviceBuffer<u32>> {
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
    Ok(DeviceBuffer::from_slice(&data).named("labels"))
}

fn download(buf: &DeviceBuffer<f32>, rows: usize, cols: usize) -> Result<Array2<f32>> {
    Array2::from_shape_vec((rows, cols), buf.to_vec()).map_err(|e| Error::Backend {
        backend: NAME,
        message: format!("result of {} elements is not {rows}x{cols}: {e}", buf.len()),
    })
}

/// `factor·v_i/‖v_i‖` for the `rows` rows of `v` (the `row_scale` kernel).
fn scaled(
    name: &str,
    v: &DeviceBuffer<f32>,
    norms: &DeviceBuffer<f64>,
    rows: usize,
    d: usize,
    factor: f32,
) -> Result<DeviceBuffer<f32>> {
    let plan = row_scale_plan(rows, d, factor)?;
    let out = DeviceBuffer::<f32>::uninit(rows * d).named(name);
    let (vv, nv, ov) = (v.view(), norms.view(), out.view_mut());
    launch(&config(&plan.plan), plan.plan.kernel, || {
        row_scale(plan.params, vv, nv, ov)
    })
    .map_err(backend_error)?;
    Ok(out)
}

/// The backward of [`scaled`] (the `row_project` kernel).
fn projected(
    name: &str,
    v: &DeviceBuffer<f32>,
    norms: &DeviceBuffer<f64>,
    dv_scaled: &DeviceBuffer<f32>,
    rows: usize,
    d: usize,
    factor: f32,
) -> Result<DeviceBuffer<f32>> {
    let plan = row_project_plan(rows, d, factor)?;
    let out = DeviceBuffer::<f32>::uninit(rows * d).named(name);
    let (vv, nv, gv, ov) = (v.view(), norms.view(), dv_scaled.view(), out.view_mut());
    launch(&config(&plan.plan), plan.plan.kernel, || {
        row_project(plan.params, vv, nv, gv, ov)
    })
    .map_err(backend_error)?;
    Ok(out)
}

impl Backend for EmulatedBackend {
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
        EmulatedVariant::default().forward(x, w, labels, margin, mode)
    }

    fn backward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        cache: &RowCache,
        dout: ArrayView2<f32>,
    ) -> Result<Grads> {
        EmulatedVariant::default().backward(x, w, labels, cache, dout)
    }
}

impl Backend for EmulatedVariant {
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
        let (margin_forward, _, _) = kernels(self.choice.variant);
        let xb = upload("x", x);
        let wb = upload("w", w);
        let yb = upload_labels(labels, c)?;
        // Outputs start uninitialised: a kernel that read one before writing it would
        // be an initcheck fault.
        let out = DeviceBuffer::<f32>::uninit(n * c).named("out");
        let p = DeviceBuffer::<f32>::uninit(n).named("p");
        let alpha_scale = DeviceBuffer::<f32>::uninit(n).named("alpha_scale");
        let gamma_scale = DeviceBuffer::<f32>::uninit(n).named("gamma_scale");
        let (x_norms, w_norms) = if needs_row_norms(margin, mode) {
            let norms = row_norms_plan(n, d, c)?;
            let xn = DeviceBuffer::<f64>::uninit(n).named("x_norms");
            let wn = DeviceBuffer::<f64>::uninit(c).named("w_norms");
            let (xv, wv, xnv, wnv) = (xb.view(), wb.view(), xn.view_mut(), wn.view_mut());
            launch(&config(&norms.plan), norms.plan.kernel, || {
                row_norms(norms.params, xv, wv, xnv, wnv)
            })
            .map_err(backend_error)?;
            (xn, wn)
        } else {
            // Never read by the other margins: empty, so any read is a memcheck fault.
            (
                DeviceBuffer::<f64>::zeroed(0).named("x_norms (unused)"),
                DeviceBuffer::<f64>::zeroed(0).named("w_norms (unused)"),
            )
        };
        // The normalised margins multiply X̃ = S·x/‖x‖ (SphereFace: X) and Ŵ = w/‖w‖.
        let x_scale = margin.feature_scale();
        let (xb, wb) = if margin.is_normalised() {
            let xt = match x_scale {
                Some(s) => scaled("x_scaled", &xb, &x_norms, n, d, s)?,
                None => xb,
            };
            (xt, scaled("w_scaled", &wb, &w_norms, c, d, 1.0)?)
        } else {
            (xb, wb)
        };
        let args = (
            xb.view(),
            wb.view(),
            yb.view(),
            x_norms.view(),
            w_norms.view(),
            out.view_mut(),
            p.view_mut(),
            alpha_scale.view_mut(),
            gamma_scale.view_mut(),
        );
        launch(&config(&fwd.plan), fwd.plan.kernel, || {
            let (xv, wv, yv, xn, wn, o, pv, sa, sg) = args;
            margin_forward(fwd.params, xv, wv, yv, xn, wn, o, pv, sa, sg)
        })
        .map_err(backend_error)?;
        let cache = RowCache {
            p: p.to_vec(),
            alpha_scale: alpha_scale.to_vec(),
            gamma_scale: gamma_scale.to_vec(),
            normalisation: margin.is_normalised().then(|| Normalisation {
                x_norms: x_norms.to_vec(),
                w_norms: w_norms.to_vec(),
                x_scale,
            }),
        };
        Ok((download(&out, n, c)?, cache))
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
        let (_, margin_input_grad, margin_weight_grad) = kernels(self.choice.variant);
        let x_raw = upload("x", x);
        let w_raw = upload("w", w);
        // Normalised margins: the GEMMs run on X̃, Ŵ rebuilt from the cached norms, and
        // their gradients are projected back below.
        let norms = match &cache.normalisation {
            Some(nm) => {
                if nm.x_norms.len() != n || nm.w_norms.len() != c {
                    return Err(Error::Shape(format!(
                        "row cache norms have {} and {} entries but x has {n} rows and w {c}",
                        nm.x_norms.len(),
                        nm.w_norms.len()
                    )));
                }
                Some((
                    DeviceBuffer::from_slice(&nm.x_norms).named("x_norms"),
                    DeviceBuffer::from_slice(&nm.w_norms).named("w_norms"),
                    nm.x_scale,
                ))
            }
            None => None,
        };
        let (xt, wt) = match &norms {
            Some((xn, wn, x_scale)) => (
                match x_scale {
                    Some(s) => Some(scaled("x_scaled", &x_raw, xn, n, d, *s)?),
                    None => None,
                },
                Some(scaled("w_scaled", &w_raw, wn, c, d, 1.0)?),
            ),
            None => (None, None),
        };
        let xb = xt.as_ref().unwrap_or(&x_raw);
        let wb = wt.as_ref().unwrap_or(&w_raw);
        let gb = upload("dout", dout);
        let yb = upload_labels(labels, c)?;
        let pb = DeviceBuffer::from_slice(&cache.p).named("p");
        let sab = DeviceBuffer::from_slice(&cache.alpha_scale).named("alpha_scale");
        let sgb = DeviceBuffer::from_slice(&cache.gamma_scale).named("gamma_scale");
        let dx = DeviceBuffer::<f32>::uninit(n * d).named("dx");
        let dw = DeviceBuffer::<f32>::uninit(c * d).named("dw");

        let (gv, wv, xv, yv, pv) = (gb.view(), wb.view(), xb.view(), yb.view(), pb.view());
        let (sav, sgv, dxv, dwv) = (sab.view(), sgb.view(), dx.view_mut(), dw.view_mut());
        match ig {
            InputGradLaunch::Direct(ig) => {
                launch(&config(&ig.plan), ig.plan.kernel, || {
                    margin_input_grad(ig.params, gv, wv, xv, yv, pv, sav, dxv)
                })
                .map_err(backend_error)?;
            }
            InputGradLaunch::Split {
                partial,
                reduce,
                scratch_len,
            } => {
                let scratch = DeviceBuffer::<f32>::uninit(scratch_len).named("split-k partials");
                let (sv, swv) = (scratch.view(), scratch.view_mut());
                launch(&config(&partial.plan), partial.plan.kernel, || {
                    input_grad::margin_input_grad_splitk(partial.params, gv, wv, yv, pv, swv)
                })
                .map_err(backend_error)?;
                launch(&config(&reduce.plan), reduce.plan.kernel, || {
                    input_grad::margin_input_grad_splitk_reduce(
                        reduce.params,
                        gv,
                        xv,
                        yv,
                        sav,
                        sv,
                        dxv,
                    )
                })
                .map_err(backend_error)?;
            }
        }
        launch(&config(&wg.plan), wg.plan.kernel, || {
            margin_weight_grad(wg.params, gv, xv, wv, yv, pv, sgv, dwv)
        })
        .map_err(backend_error)?;
        let (dx, dw) = match &norms {
            Some((xn, wn, x_scale)) => {
                let dx = match x_scale {
                    Some(s) => projected("dx", &x_raw, xn, &dx, n, d, *s)?,
                    None => dx,
                };
                (dx, projected("dw", &w_raw, wn, &dw, c, d, 1.0)?)
            }
            None => (dx, dw),
        };
        Ok(Grads {
            dx: download(&dx, n, d)?,
            dw: download(&dw, c, d)?,
        })
    }
}
