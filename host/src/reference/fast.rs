//! The CPU backend: ndarray GEMMs on strided views (no transposed copies), f32 storage,
//! plus an O(N·D) per-row epilogue forward and O((N + C)·D) diagonal corrections backward.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, Zip};

use super::DEGENERATE_NORM_PRODUCT;
use crate::layer::{Grads, RowCache};
use crate::margin::{Margin, Mode};

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
/// row's target entry. Inputs must be validated ([`crate::layer::validate_inputs`]).
pub fn forward(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> (Array2<f32>, RowCache) {
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

/// Backward: `dX = G·W`, `dW = Gᵀ·X` by two GEMMs on the unmodified `G`, then per row `i`
/// (target `y = y_i`, `t = G_{i,y}`) the corrections that turn `G` into `G'` and add the
/// diagonal terms: `dX_i += (p_i − 1)·t·w_y + α_i·x_i`, `dW_y += (p_i − 1)·t·x_i + t·γ-scale_i·w_y`.
/// Correcting afterwards costs O((N + C)·D) instead of copying the N×C matrix `G`.
pub fn backward(
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
