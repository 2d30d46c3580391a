//! The CPU backend: ndarray GEMMs on strided views (no transposed copies), f32 storage,
//! plus an O(N·D) per-row epilogue forward and O((N + C)·D) diagonal corrections backward.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, Zip};

use super::DEGENERATE_NORM_PRODUCT;
use crate::margin::{Margin, Mode, forward_params};
use crate::types::{Grads, Normalisation, RowCache};

/// `‖v‖`, accumulated in f64 so long rows lose nothing to f32 summation.
fn norm(v: ArrayView1<f32>) -> f64 {
    v.iter()
        .map(|&e| f64::from(e) * f64::from(e))
        .sum::<f64>()
        .sqrt()
}

/// `(ψ, dψ/dc)` for `c = cos θ`: the kernels' own function, so the CPU backend and the
/// GPU kernels choose the ψ interval identically; `naive` derives θ with `acos` instead
/// and is what both are tested against.
pub use kernels_gpu::margin_math::psi;

/// Applies the margin to `z = F[i, y_i]` given `a = ‖x_i‖`, `b = ‖w_{y_i}‖`: returns the new
/// target logit and the row's cache entries `(p, q·b/a, q·a/b)`.
fn epilogue(margin: Margin, z: f32, a: f64, b: f64) -> (f32, f32, f32, f32) {
    match margin {
        Margin::Plain => (z, 1.0, 0.0, 0.0),
        Margin::Simplified { k } => {
            if z > 0.0 {
                (k * z, k, 0.0, 0.0)
            } else {
                (z, 1.0, 0.0, 0.0)
            }
        }
        // Not reached: forward sends these to `forward_normalised`.
        Margin::CosFace { .. }
        | Margin::ArcFace { .. }
        | Margin::Combined { .. }
        | Margin::SphereFace { .. } => (z, 1.0, 0.0, 0.0),
        Margin::LSoftmax { m, beta } => {
            let ab = a * b;
            if ab < DEGENERATE_NORM_PRODUCT {
                return (z, 1.0, 0.0, 0.0);
            }
            let zf = f64::from(z);
            let beta = f64::from(beta);
            let c = (zf / ab).clamp(-1.0, 1.0);
            let (psi, dpsi) = psi(m, c);
            let g = (beta * zf + ab * psi) / (1.0 + beta);
            let p = (beta + dpsi) / (1.0 + beta);
            let q = (psi - c * dpsi) / (1.0 + beta);
            (g as f32, p as f32, (q * b / a) as f32, (q * a / b) as f32)
        }
    }
}

/// Forward: `F = X·Wᵀ` by one GEMM, then in training mode the margin epilogue on each
/// row's target entry. Inputs must be validated ([`crate::types::validate_inputs`]).
/// The normalised margins run the same on `X̃`, `Ŵ` ([`forward_normalised`]).
pub fn forward(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> (Array2<f32>, RowCache) {
    if margin.is_normalised() {
        return forward_normalised(x, w, labels, margin, mode);
    }
    let n = x.nrows();
    let mut out = Array2::<f32>::zeros((n, w.nrows()));
    general_mat_mul(1.0, &x, &w.t(), 0.0, &mut out);
    let mut cache = RowCache::plain(n);
    if mode == Mode::Infer || margin == Margin::Plain {
        return (out, cache);
    }
    for (i, &y) in labels.iter().enumerate() {
        // Norms are only needed where g depends on them.
        let (a, b) = match margin {
            Margin::LSoftmax { .. } => (norm(x.row(i)), norm(w.row(y))),
            _ => (0.0, 0.0),
        };
        let (g, p, sa, sg) = epilogue(margin, out[[i, y]], a, b);
        out[[i, y]] = g;
        cache.p[i] = p;
        cache.alpha_scale[i] = sa;
        cache.gamma_scale[i] = sg;
    }
    (out, cache)
}

/// `‖v_i‖` of every row, f64.
pub fn row_norms(v: ArrayView2<f32>) -> Vec<f64> {
    v.rows().into_iter().map(norm).collect()
}

/// `ṽ_i = factor·v_i/‖v_i‖` (0 for rows of norm below `f32::MIN_POSITIVE`), each element
/// `(v·(factor·(1/‖v‖)))` in f64 rounded once, as the `row_scale` kernel does.
pub fn row_scale(v: ArrayView2<f32>, norms: &[f64], factor: f32) -> Array2<f32> {
    let mut out = v.to_owned();
    for (mut row, &nrm) in out.rows_mut().into_iter().zip(norms) {
        let scale = f64::from(factor) * inverse_norm(nrm);
        row.mapv_inplace(|e| (f64::from(e) * scale) as f32);
    }
    out
}

/// The backward of [`row_scale`]: `dv_i = (f/‖v_i‖)·(dṽ_i − (v̂_i·dṽ_i)·v̂_i)`,
/// `v̂ = v/‖v‖` (0 for degenerate rows), in f64, rounded once.
pub fn row_project(
    v: ArrayView2<f32>,
    norms: &[f64],
    factor: f32,
    dv_scaled: ArrayView2<f32>,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(v.dim());
    for (i, &nrm) in norms.iter().enumerate() {
        let inv = inverse_norm(nrm);
        let scale = f64::from(factor) * inv;
        let dot: f64 = v
            .row(i)
            .iter()
            .zip(dv_scaled.row(i))
            .map(|(&e, &g)| f64::from(e) * inv * f64::from(g))
            .sum();
        for k in 0..v.ncols() {
            let vhat = f64::from(v[[i, k]]) * inv;
            out[[i, k]] = (scale * (f64::from(dv_scaled[[i, k]]) - dot * vhat)) as f32;
        }
    }
    out
}

pub use kernels_gpu::normalise::inverse_norm;

/// The normalised operands of `margin`: `X̃` (`S·x_i/‖x_i‖`, or `X` for SphereFace) and
/// `Ŵ = w_j/‖w_j‖`.
fn normalised_operands(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    norms: &Normalisation,
) -> (Array2<f32>, Array2<f32>) {
    let xt = match norms.x_scale {
        Some(s) => row_scale(x, &norms.x_norms, s),
        None => x.to_owned(),
    };
    (xt, row_scale(w, &norms.w_norms, 1.0))
}

/// CosFace, ArcFace, combined, SphereFace: `F = X̃·Ŵᵀ` by one GEMM, then in training mode
/// the kernels' epilogue ([`kernels_gpu::margin_math::target_epilogue`]) on each target.
pub fn forward_normalised(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> (Array2<f32>, RowCache) {
    let n = x.nrows();
    let norms = Normalisation {
        x_norms: row_norms(x),
        w_norms: row_norms(w),
        x_scale: margin.feature_scale(),
    };
    let (xt, wt) = normalised_operands(x, w, &norms);
    let mut out = Array2::<f32>::zeros((n, w.nrows()));
    general_mat_mul(1.0, &xt, &wt.t(), 0.0, &mut out);
    let mut cache = RowCache::plain(n);
    if mode == Mode::Train {
        let params = forward_params(0, 0, 0, margin, mode);
        for (i, &y) in labels.iter().enumerate() {
            let e = kernels_gpu::margin_math::target_epilogue(
                &params,
                out[[i, y]],
                norms.x_norms[i],
                norms.w_norms[y],
            );
            out[[i, y]] = e.g;
            cache.p[i] = e.p;
            cache.alpha_scale[i] = e.alpha_scale;
            cache.gamma_scale[i] = e.gamma_scale;
        }
    }
    cache.normalisation = Some(norms);
    (out, cache)
}

/// Backward: for the normalised margins, [`backward_gemm`] on `X̃`, `Ŵ` followed by
/// [`row_project`] (of `dX̃` for CosFace, ArcFace, combined; of `dŴ` always); otherwise
/// [`backward_gemm`] on `X`, `W`.
pub fn backward(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    cache: &RowCache,
    dout: ArrayView2<f32>,
) -> Grads {
    let Some(norms) = &cache.normalisation else {
        return backward_gemm(x, w, labels, cache, dout);
    };
    let (xt, wt) = normalised_operands(x, w, norms);
    let g = backward_gemm(xt.view(), wt.view(), labels, cache, dout);
    let dx = match norms.x_scale {
        Some(s) => row_project(x, &norms.x_norms, s, g.dx.view()),
        None => g.dx,
    };
    Grads {
        dx,
        dw: row_project(w, &norms.w_norms, 1.0, g.dw.view()),
    }
}

/// Backward: `dX = G·W`, `dW = Gᵀ·X` by two GEMMs on the unmodified `G`, then per row `i`
/// (target `y = y_i`, `t = G_{i,y}`) the corrections that turn `G` into `G'` and add the
/// diagonal terms: `dX_i += (p_i − 1)·t·w_y + α_i·x_i`, `dW_y += (p_i − 1)·t·x_i + t·γ-scale_i·w_y`.
/// Correcting afterwards costs O((N + C)·D) instead of copying the N×C matrix `G`.
pub fn backward_gemm(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    cache: &RowCache,
    dout: ArrayView2<f32>,
) -> Grads {
    let mut dx = Array2::<f32>::zeros(x.dim());
    let mut dw = Array2::<f32>::zeros(w.dim());
    general_mat_mul(1.0, &dout, &w, 0.0, &mut dx);
    general_mat_mul(1.0, &dout.t(), &x, 0.0, &mut dw);
    // γ_j sums over the rows of class j; accumulating the per-class factor first keeps
    // the diagonal term one pass over w_j.
    let mut gamma = vec![0.0f32; w.nrows()];
    for (i, &y) in labels.iter().enumerate() {
        let t = dout[[i, y]];
        let dp = (cache.p[i] - 1.0) * t;
        let alpha = t * cache.alpha_scale[i];
        gamma[y] += t * cache.gamma_scale[i];
        if dp == 0.0 && alpha == 0.0 {
            continue;
        }
        Zip::from(dx.row_mut(i))
            .and(w.row(y))
            .and(x.row(i))
            .for_each(|d, &wy, &xi| *d += dp * wy + alpha * xi);
        Zip::from(dw.row_mut(y))
            .and(x.row(i))
            .for_each(|d, &xi| *d += dp * xi);
    }
    for (j, &g) in gamma.iter().enumerate() {
        if g != 0.0 {
            Zip::from(dw.row_mut(j))
                .and(w.row(j))
                .for_each(|d, &wj| *d += g * wj);
        }
    }
    Grads { dx, dw }
}
