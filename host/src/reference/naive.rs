//! The definition of right: plain loops in f64 that follow `docs/math.md` term by term.
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
        // The normalised margins do not use this per-target form: see `forward_normalised`.
        Margin::CosFace { .. }
        | Margin::ArcFace { .. }
        | Margin::Combined { .. }
        | Margin::SphereFace { .. } => plain,
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

/// `F` (N×C): `F_ij = Σ_k x_ik·w_jk`, with `F_{i,y_i} = g` in training mode; the
/// normalised margins by [`forward_normalised`].
pub fn forward(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> Array2<f64> {
    if margin.is_normalised() {
        return forward_normalised(x, w, labels, margin, mode);
    }
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
    if margin.is_normalised() {
        return backward_normalised(x, w, labels, margin, mode, dout);
    }
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

/// `(h(c), dh/dc)` of the cosine margins per unit scale (`F_{i,y_i} = S·h(cos θ)`), from
/// the papers' angle forms with `std`'s `acos`, `cos`, `sin`:
/// - CosFace: `h = c − M`;
/// - ArcFace: `c₁ = min(c, 1 − ε)`, `θ = acos c₁`; `h = cos(θ + M)` if `c₁ > cos(π − M)`,
///   else `h = c₁ − M·sin M`; `dh/dc = sin(θ + M)/sin θ` resp. 1, 0 above the clamp;
/// - combined: `c₁ = clamp(c, −1 + ε, 1 − ε)`, `φ = A·acos c₁ + B`, `k = ⌊φ/π⌋`,
///   `h = (−1)^k·cos φ − 2k − C`, `dh/dc = A·(−1)^k·sin φ / sin θ`, 0 outside the clamp.
///
/// `ε` is [`crate::margin::ANGLE_CLAMP`]. Other margins: `(c, 1)`.
pub fn cosine_target(margin: Margin, c: f64) -> (f64, f64) {
    let eps = crate::margin::ANGLE_CLAMP;
    let pi = std::f64::consts::PI;
    match margin {
        Margin::CosFace { m, .. } => (c - f64::from(m), 1.0),
        Margin::ArcFace { m, .. } => {
            let m = f64::from(m);
            let clamped = c > 1.0 - eps;
            let c1 = c.min(1.0 - eps);
            if c1 > (pi - m).cos() {
                let theta = c1.acos();
                let dh = if clamped {
                    0.0
                } else {
                    (theta + m).sin() / theta.sin()
                };
                ((theta + m).cos(), dh)
            } else {
                (c1 - m * m.sin(), 1.0)
            }
        }
        Margin::Combined { m1, m2, m3, .. } => {
            let (a, b, cm) = (f64::from(m1), f64::from(m2), f64::from(m3));
            let clamped = !(-1.0 + eps..=1.0 - eps).contains(&c);
            let c1 = c.clamp(-1.0 + eps, 1.0 - eps);
            let theta = c1.acos();
            let phi = a * theta + b;
            let k = (phi / pi).floor();
            let sign = if (k as i64) % 2 == 0 { 1.0 } else { -1.0 };
            let dh = if clamped {
                0.0
            } else {
                a * sign * phi.sin() / theta.sin()
            };
            (sign * phi.cos() - 2.0 * k - cm, dh)
        }
        _ => (c, 1.0),
    }
}

/// What one logit `F_ij` of a normalised margin is, by the definitions:
/// `value`, and `∂F_ij/∂x_i = kx·x_i + kw·w_j`, `∂F_ij/∂w_j = lx·x_i + lw·w_j`.
struct NormalisedLogit {
    value: f64,
    kx: f64,
    kw: f64,
    lx: f64,
    lw: f64,
}

/// `F_ij` of a normalised margin with its partials. `a = ‖x_i‖`, `b = ‖w_j‖`,
/// `z = x_i·w_j`, `target` = whether `j = y_i` in training mode.
///
/// Cosine margins (`S` given): `F = S·h(c)` (target) or `S·c`, `c = z/(a·b)`; by
/// `∂c/∂x = w/(ab) − c·x/a²`, `∂c/∂w = x/(ab) − c·w/b²`. Rows or classes of norm below
/// `f32::MIN_POSITIVE` normalise to 0: `F = 0` with zero partials (a degenerate target is
/// the plain logit of the normalised operands, also 0).
///
/// SphereFace: `F = z/b` (= `a·cos θ`) off target; on target (non-degenerate `a`)
/// `F = (β·z/b + a·ψ(c))/(1 + β)` (L-Softmax with `‖w‖ = 1`), whose partials are
/// `∂F/∂x = φ·x/a + a·φ'·∂c/∂x`, `∂F/∂w = a·φ'·∂c/∂w` with `φ = (β·c + ψ)/(1 + β)`,
/// `φ' = (β + ψ')/(1 + β)`.
fn normalised_logit(margin: Margin, target: bool, a: f64, b: f64, z: f64) -> NormalisedLogit {
    let zero = NormalisedLogit {
        value: 0.0,
        kx: 0.0,
        kw: 0.0,
        lx: 0.0,
        lw: 0.0,
    };
    if b < DEGENERATE_NORM_PRODUCT {
        return zero;
    }
    let ab = a * b;
    match margin.feature_scale() {
        Some(s) => {
            if a < DEGENERATE_NORM_PRODUCT {
                return zero;
            }
            let s = f64::from(s);
            let c = z / ab;
            let (h, dh) = if target {
                cosine_target(margin, c)
            } else {
                (c, 1.0)
            };
            let kappa = s * dh;
            NormalisedLogit {
                value: s * h,
                kx: -kappa * c / (a * a),
                kw: kappa / ab,
                lx: kappa / ab,
                lw: -kappa * c / (b * b),
            }
        }
        None => {
            let Margin::SphereFace { m, beta } = margin else {
                unreachable!("only SphereFace is normalised without a feature scale")
            };
            if !target || a < DEGENERATE_NORM_PRODUCT {
                // F = z/b: ∂/∂x = w/b, ∂/∂w = x/b − z·w/b³.
                return NormalisedLogit {
                    value: z / b,
                    kx: 0.0,
                    kw: 1.0 / b,
                    lx: 1.0 / b,
                    lw: -z / (b * b * b),
                };
            }
            let beta = f64::from(beta);
            let c_raw = z / ab;
            let c = c_raw.clamp(-1.0, 1.0);
            let (psi, dpsi) = psi_from_angle(m, c);
            let phi = (beta * c_raw + psi) / (1.0 + beta);
            let dphi = (beta + dpsi) / (1.0 + beta);
            NormalisedLogit {
                value: a * phi,
                kx: phi / a - a * dphi * c / (a * a),
                kw: a * dphi / ab,
                lx: a * dphi / ab,
                lw: -a * dphi * c / (b * b),
            }
        }
    }
}

/// The normalised margins' `F` straight from the definitions: every `F_ij` from
/// `x_i`, `w_j`, their norms and the angle (`normalised_logit`); inference mode drops the
/// margin (`S·cos θ`, or `‖x‖·cos θ` for SphereFace).
pub fn forward_normalised(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let c = w.nrows();
    let b: Vec<f64> = (0..c).map(|j| norm(w.row(j).iter().copied())).collect();
    let mut out = Array2::zeros((n, c));
    for i in 0..n {
        let a = norm(x.row(i).iter().copied());
        for j in 0..c {
            let z: f64 = (0..d).map(|k| x[[i, k]] * w[[j, k]]).sum();
            let target = mode == Mode::Train && j == labels[i];
            out[[i, j]] = normalised_logit(margin, target, a, b[j], z).value;
        }
    }
    out
}

/// `(dX, dW)` of the normalised margins by the chain rule over every logit:
/// `dX_i = Σ_j G_ij·∂F_ij/∂x_i`, `dW_j = Σ_i G_ij·∂F_ij/∂w_j`.
pub fn backward_normalised(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
    dout: ArrayView2<f64>,
) -> (Array2<f64>, Array2<f64>) {
    let (n, d) = x.dim();
    let c = w.nrows();
    let b: Vec<f64> = (0..c).map(|j| norm(w.row(j).iter().copied())).collect();
    let mut dx = Array2::zeros((n, d));
    let mut dw = Array2::zeros((c, d));
    for i in 0..n {
        let a = norm(x.row(i).iter().copied());
        for j in 0..c {
            let z: f64 = (0..d).map(|k| x[[i, k]] * w[[j, k]]).sum();
            let target = mode == Mode::Train && j == labels[i];
            let l = normalised_logit(margin, target, a, b[j], z);
            let g = dout[[i, j]];
            for k in 0..d {
                dx[[i, k]] += g * (l.kx * x[[i, k]] + l.kw * w[[j, k]]);
                dw[[j, k]] += g * (l.lx * x[[i, k]] + l.lw * w[[j, k]]);
            }
        }
    }
    (dx, dw)
}
