//! The definition of right: plain loops in f64 that follow MARGIN-MATH.md term by term.
//!
//! Nothing here is fast or clever. Backward is the chain rule written out directly
//! (`∂J/∂x_i = Σ_j G_ij ∂F_ij/∂x_i`), not the GEMM-plus-correction form the other
//! implementations use, so the two derivations check each other.

use ndarray::{Array2, ArrayView2};

use super::DEGENERATE_NORM_PRODUCT;
use crate::margin::{Margin, Mode};

/// Value and partials of the margin function at one target logit.
///
/// `∂g/∂x = p·w + q·(b/a)·x` and `∂g/∂w = p·x + q·(a/b)·w`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetLogit {
    /// `g(z, a, b)`.
    pub g: f64,
    /// Coefficient of the other operand in the gradient.
    pub p: f64,
    /// Coefficient of the norm terms in the gradient.
    pub q: f64,
}

/// `g`, `p`, `q` for target logit `z = w·x` with `a = ‖x‖`, `b = ‖w‖`.
pub fn target_logit(margin: Margin, z: f64, a: f64, b: f64) -> TargetLogit {
    let plain = TargetLogit {
        g: z,
        p: 1.0,
        q: 0.0,
    };
    match margin {
        Margin::Plain => plain,
        Margin::Simplified { k } => {
            let k = f64::from(k);
            if z > 0.0 {
                TargetLogit {
                    g: k * z,
                    p: k,
                    q: 0.0,
                }
            } else {
                plain
            }
        }
        Margin::LSoftmax { m, beta } => {
            if a * b < DEGENERATE_NORM_PRODUCT {
                return plain;
            }
            let beta = f64::from(beta);
            let c = (z / (a * b)).clamp(-1.0, 1.0);
            let (psi, dpsi) = psi_from_angle(m, c);
            TargetLogit {
                g: (beta * z + a * b * psi) / (1.0 + beta),
                p: (beta + dpsi) / (1.0 + beta),
                q: (psi - c * dpsi) / (1.0 + beta),
            }
        }
    }
}

/// `ψ` and `dψ/dc` by way of the angle: `θ = acos c`, `k = ⌊θ·m/π⌋` (the interval
/// `θ ∈ [kπ/m, (k+1)π/m]`, capped at `m − 1` for `θ = π`), `ψ = (−1)^k·cos(mθ) − 2k`,
/// and `dψ/dc = (−1)^k·T_m'(c)` from `cos(mθ) = T_m(cos θ)`.
pub fn psi_from_angle(m: u32, c: f64) -> (f64, f64) {
    let theta = c.acos();
    let k = ((theta * f64::from(m) / std::f64::consts::PI).floor() as u32).min(m - 1);
    let sign = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
    let psi = sign * (f64::from(m) * theta).cos() - 2.0 * f64::from(k);
    let dt = match m {
        1 => 1.0,
        2 => 4.0 * c,
        3 => 12.0 * c * c - 3.0,
        4 => 32.0 * c * c * c - 16.0 * c,
        _ => unreachable!("Margin::lsoftmax admits m in 1..=4 only"),
    };
    (psi, sign * dt)
}

fn norm(v: impl Iterator<Item = f64>) -> f64 {
    v.map(|e| e * e).sum::<f64>().sqrt()
}

fn target(
    margin: Margin,
    mode: Mode,
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    i: usize,
    y: usize,
) -> TargetLogit {
    let z: f64 = (0..x.ncols()).map(|k| x[[i, k]] * w[[y, k]]).sum();
    match mode {
        Mode::Infer => TargetLogit {
            g: z,
            p: 1.0,
            q: 0.0,
        },
        Mode::Train => {
            let a = norm(x.row(i).iter().copied());
            let b = norm(w.row(y).iter().copied());
            target_logit(margin, z, a, b)
        }
    }
}

/// `F` (N×C): `F_ij = Σ_k x_ik·w_jk`, with `F_{i,y_i} = g` in training mode.
pub fn forward(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let c = w.nrows();
    let mut out = Array2::zeros((n, c));
    for i in 0..n {
        for j in 0..c {
            out[[i, j]] = (0..d).map(|k| x[[i, k]] * w[[j, k]]).sum();
        }
        out[[i, labels[i]]] = target(margin, mode, x, w, i, labels[i]).g;
    }
    out
}

/// `(dX, dW)` for upstream gradient `dout = G` by the chain rule:
/// `dX_i = Σ_{j ≠ y_i} G_ij·w_j + G_{i,y_i}·∂g/∂x_i`,
/// `dW_j = Σ_{i: y_i ≠ j} G_ij·x_i + Σ_{i: y_i = j} G_ij·∂g/∂w_j`.
pub fn backward(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
    dout: ArrayView2<f64>,
) -> (Array2<f64>, Array2<f64>) {
    let (n, d) = x.dim();
    let c = w.nrows();
    let mut dx = Array2::zeros((n, d));
    let mut dw = Array2::zeros((c, d));
    for i in 0..n {
        let y = labels[i];
        let t = target(margin, mode, x, w, i, y);
        let a = norm(x.row(i).iter().copied());
        let b = norm(w.row(y).iter().copied());
        for j in 0..c {
            let gij = dout[[i, j]];
            for k in 0..d {
                if j == y {
                    // q = 0 whenever a or b is 0 (degenerate rows), so the ratios are
                    // only evaluated where they are finite.
                    let (dgx, dgw) = if t.q == 0.0 {
                        (t.p * w[[j, k]], t.p * x[[i, k]])
                    } else {
                        (
                            t.p * w[[j, k]] + t.q * (b / a) * x[[i, k]],
                            t.p * x[[i, k]] + t.q * (a / b) * w[[j, k]],
                        )
                    };
                    dx[[i, k]] += gij * dgx;
                    dw[[j, k]] += gij * dgw;
                } else {
                    dx[[i, k]] += gij * w[[j, k]];
                    dw[[j, k]] += gij * x[[i, k]];
                }
            }
        }
    }
    (dx, dw)
}
