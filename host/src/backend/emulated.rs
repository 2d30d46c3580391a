//! The emulated backend: the kernels of `kernels-gpu` compiled for the host and run by
//! its CPU emulator, with every detector on (memcheck, racecheck, initcheck, synccheck).
//!
//! It runs exactly the launches a GPU would ([`super::launch`] computes them for both), so
//! a kernel that agrees with the reference here differs on a GPU only by what the emulator
//! does not model (warps, memory ordering). The emulator runs one block at a time on OS
//! threads: use it for correctness, not speed.

use kernels_gpu::emulator::{DeviceBuffer, LaunchConfig, LaunchError, launch};
use kernels_gpu::forward::margin_forward;
use kernels_gpu::input_grad::margin_input_grad;
use kernels_gpu::row_norms::row_norms;
use kernels_gpu::weight_grad::margin_weight_grad;
use ndarray::{Array2, ArrayView2};

use super::Backend;
use super::launch::{
    LaunchPlan, forward_plan, input_grad_plan, needs_row_norms, row_norms_plan, weight_grad_plan,
};
use crate::error::{Error, Result};
use crate::layer::{Grads, RowCache};
use crate::margin::{Margin, Mode};

/// Runs the margin kernels under the CPU emulator.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmulatedBackend;

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
        let ((n, d), c) = (x.dim(), w.nrows());
        let fwd = forward_plan(n, d, c, margin, mode)?;
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
            normalisation: None,
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
        let ig = input_grad_plan(n, d, c)?;
        let wg = weight_grad_plan(n, d, c)?;
        let xb = upload("x", x);
        let wb = upload("w", w);
        let gb = upload("dout", dout);
        let yb = upload_labels(labels, c)?;
        let pb = DeviceBuffer::from_slice(&cache.p).named("p");
        let sab = DeviceBuffer::from_slice(&cache.alpha_scale).named("alpha_scale");
        let sgb = DeviceBuffer::from_slice(&cache.gamma_scale).named("gamma_scale");
        let dx = DeviceBuffer::<f32>::uninit(n * d).named("dx");
        let dw = DeviceBuffer::<f32>::uninit(c * d).named("dw");

        let (gv, wv, xv, yv, pv) = (gb.view(), wb.view(), xb.view(), yb.view(), pb.view());
        let (sav, sgv, dxv, dwv) = (sab.view(), sgb.view(), dx.view_mut(), dw.view_mut());
        launch(&config(&ig.plan), ig.plan.kernel, || {
            margin_input_grad(ig.params, gv, wv, xv, yv, pv, sav, dxv)
        })
        .map_err(backend_error)?;
        launch(&config(&wg.plan), wg.plan.kernel, || {
            margin_weight_grad(wg.params, gv, xv, wv, yv, pv, sgv, dwv)
        })
        .map_err(backend_error)?;
        Ok(Grads {
            dx: download(&dx, n, d)?,
            dw: download(&dw, c, d)?,
        })
    }
}
