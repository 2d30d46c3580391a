//! Does a backend agree with [`naive`]? One check, with an error bound derived from f32
//! arithmetic, shared by the property tests of every backend and by the default demo.
//!
//! # The error bound
//! A dot product of length L summed in f32 in any order is off by at most
//! `γ_L·Σ|terms| ≤ 1.01·L·u·Σ|terms|` (Higham, Accuracy and Stability, §3.1), u = 2⁻²⁴;
//! we allow `2·L·u·Σ|terms|` (`S` below, computed in f64 from |x|, |w|, |G|), plus `8u`
//! of the value for the final roundings. The margin adds, on training rows with target
//! `t = G_{i,y_i}`:
//! - forward: `g` moves with `z` at rate `|∂g/∂z| = |p| ≤ (β + m²)/(1 + β) ≤ 16`,
//!   so the target entry gets `16·2·D·u·S` more;
//! - backward: p and q are functions of `c = z/(ab)` whose error is `≤ 2·D·u`
//!   (`Σ|x_k w_k| ≤ ab`, Cauchy–Schwarz) and `|dp/dc|, |dq/dc| ≤ max|ψ''| ≤ 96`;
//!   with `|p| ≤ 16`, `|q| ≤ 24` and rounding of the correction terms the corrections
//!   `t·(p−1)·w_y + t·q·(b/a)·x` are off by at most `(2·96·D·u + 64·u)` times
//!   `|t|·(|w_y| + (b/a)|x|)` (and the mirror image for dW). We use `256·(D+1)·u`.
//! - simplified margin: if `|z|` is within its rounding bound of the kink at 0 the
//!   backends may legitimately pick the other branch: allow `(1−k)·|t|·|w_y|` there.
//!   Not when every term `x_k·w_k` is zero (an all-zero x row, a zero target weight
//!   row): then every backend computes z = 0 exactly, and the documented convention
//!   `p = 1`, `g = z` at z = 0 is checked exactly.
//!
//! # The normalised margins (CosFace, ArcFace, combined, SphereFace)
//! Backends compute `X̃` (`S·x̂`, or `X`), `Ŵ = ŵ` rounded to f32 (relative error `u`
//! each), so a logit `z̃ = x̃·ŵ` is off by at most `e_z = (2D + 4)·u·σ`,
//! `σ = Σ_k |x̃_k·ŵ_k|`. The target is `S·h(c)` at `c = z̃/S` (SphereFace: L-Softmax's `g`
//! at `c = z̃/a`), with `c` off by at most `e_c = e_z/S` (resp. `e_z/a`). Every `h` here is
//! monotone in `c`, so the target moves by at most `S·max(|h(c ± e_c) − h(c)|)`, which
//! covers ArcFace's jump and both clamps when `c` lies within `e_c` of them. The backward
//! factor `p = h'(c)` is not monotone: its change `Δp` is the largest `|h'(c') − h'(c)|`
//! over 9 points `c'` evenly spread over `[c − e_c, c + e_c]`, doubled (a sampled bound,
//! not a proof). The GEMM bounds of `dX̃ = G'·Ŵ`, `dŴ = G'ᵀ·X̃` are `(2L + 4)·u·Σ|terms|`
//! plus `|t|·(Δp + 4u·|p|)` times the target operand, and SphereFace's norm terms as
//! L-Softmax's above. The projection `dv = s·(dṽ − (v̂·dṽ)·v̂)` maps an error `E` of
//! `dṽ` to at most `s·(E_k + |v̂_k|·Σ_m |v̂_m|·E_m)`; its own roundings are f64 and one f32
//! rounding, `8u·|dv|`.

use std::fmt;

use ndarray::{Array2, ArrayView2};

use super::{DEGENERATE_NORM_PRODUCT, naive};
use crate::error::Result;
use crate::margin::{Margin, Mode};
use crate::types::{Backend, backward_checked, forward_checked};

/// Unit roundoff of f32, `u = 2⁻²⁴`.
pub const UNIT_ROUNDOFF_F32: f64 = f32::EPSILON as f64 / 2.0;

/// One layer problem: inputs of a forward and a backward.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a> {
    /// X, N×D.
    pub x: ArrayView2<'a, f32>,
    /// W, C×D.
    pub w: ArrayView2<'a, f32>,
    /// Labels, N entries in `0..C`.
    pub labels: &'a [usize],
    /// dL/dF, N×C.
    pub dout: ArrayView2<'a, f32>,
    /// Margin of the forward.
    pub margin: Margin,
    /// Mode of the forward.
    pub mode: Mode,
}

/// The worst element of one output (F, dX or dW), measured against its bound.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputAgreement {
    /// `F`, `dX` or `dW`.
    pub name: &'static str,
    /// Index of the element with the largest `|err| / bound`.
    pub index: (usize, usize),
    /// The backend's value there.
    pub got: f32,
    /// The reference value there (f64).
    pub reference: f64,
    /// `|got − reference|`.
    pub error: f64,
    /// The bound at that element.
    pub bound: f64,
}

impl OutputAgreement {
    /// `|err| / bound` (infinite for a NaN output or a zero bound exceeded).
    pub fn ratio(&self) -> f64 {
        ratio(self.error, self.bound)
    }

    /// `|err| <= bound` (false for NaN). Subnormal-level slack of 1e-30 absorbs bounds of 0.
    pub fn passed(&self) -> bool {
        self.error <= self.bound + 1e-30
    }
}

impl fmt::Display for OutputAgreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{:?}: got {}, reference {}, |err| {:.2e} {} bound {:.2e}",
            self.name,
            self.index,
            self.got,
            self.reference,
            self.error,
            if self.passed() { "<=" } else { ">" },
            self.bound
        )
    }
}

/// Result of [`check_backend`]: the worst element of F, dX and dW.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// F, dX, dW in that order.
    pub outputs: [OutputAgreement; 3],
}

impl Agreement {
    /// Every output within its bound.
    pub fn passed(&self) -> bool {
        self.outputs.iter().all(OutputAgreement::passed)
    }

    /// The first output over its bound, if any.
    pub fn violation(&self) -> Option<&OutputAgreement> {
        self.outputs.iter().find(|o| !o.passed())
    }

    /// The largest `|err| / bound` over the three outputs.
    pub fn worst_ratio(&self) -> f64 {
        self.outputs
            .iter()
            .map(OutputAgreement::ratio)
            .fold(0.0, f64::max)
    }
}

fn ratio(error: f64, bound: f64) -> f64 {
    if error.is_nan() || (error > 0.0 && bound <= 0.0) {
        f64::INFINITY
    } else if error == 0.0 {
        0.0
    } else {
        error / bound
    }
}

fn norm_row(a: ArrayView2<f64>, i: usize) -> f64 {
    a.row(i).iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// Runs `backend` forward and backward on `problem` and measures F, dX and dW against
/// [`naive`] (f64) under the bound of the module docs. `Err` only if the backend (or input
/// validation) fails; disagreement is reported in the [`Agreement`].
pub fn check_backend(backend: &dyn Backend, problem: &Problem<'_>) -> Result<Agreement> {
    let Problem {
        x: x32,
        w: w32,
        labels,
        dout,
        margin,
        mode,
    } = *problem;
    let (n, d) = x32.dim();
    let c = w32.nrows();
    // The layer API's checks (`crate::layer::forward_on`, `crate::layer::backward`).
    let (out, cache) = forward_checked(backend, x32, w32, labels, margin, mode)?;
    let grads = backward_checked(backend, x32, w32, labels, &cache, dout, (n, c))?;
    let u = UNIT_ROUNDOFF_F32;

    let (x, w, g) = (
        x32.mapv(f64::from),
        w32.mapv(f64::from),
        dout.mapv(f64::from),
    );
    let ref_f = naive::forward(x.view(), w.view(), labels, margin, mode);
    let (ref_dx, ref_dw) = naive::backward(x.view(), w.view(), labels, margin, mode, g.view());

    // Σ|terms| of each GEMM entry, by the same reference on absolute values.
    let (ax, aw, ag) = (x.mapv(f64::abs), w.mapv(f64::abs), g.mapv(f64::abs));
    let s_f = naive::forward(ax.view(), aw.view(), labels, Margin::Plain, Mode::Infer);
    let (s_dx, s_dw) = naive::backward(
        ax.view(),
        aw.view(),
        labels,
        Margin::Plain,
        Mode::Infer,
        ag.view(),
    );

    if margin.is_normalised() {
        let (tol_f, tol_dx, tol_dw) = normalised_bounds(problem, &ref_f, &ref_dx, &ref_dw);
        return Ok(Agreement {
            outputs: [
                worst("F", out.view(), &ref_f, &tol_f),
                worst("dX", grads.dx.view(), &ref_dx, &tol_dx),
                worst("dW", grads.dw.view(), &ref_dw, &tol_dw),
            ],
        });
    }
    let margin_active = mode == Mode::Train && margin != Margin::Plain;
    let corr_rate = 256.0 * (d as f64 + 1.0) * u;
    let mut tol_f = s_f.mapv(|s| 2.0 * d as f64 * u * s) + ref_f.mapv(|v| 8.0 * u * v.abs());
    let mut tol_dx = s_dx.mapv(|s| 2.0 * c as f64 * u * s) + ref_dx.mapv(|v| 8.0 * u * v.abs());
    let mut tol_dw = s_dw.mapv(|s| 2.0 * n as f64 * u * s) + ref_dw.mapv(|v| 8.0 * u * v.abs());
    if margin_active {
        for (i, &y) in labels.iter().enumerate() {
            let t = g[[i, y]].abs();
            let (a, b) = (norm_row(x.view(), i), norm_row(w.view(), y));
            tol_f[[i, y]] += 16.0 * 2.0 * d as f64 * u * s_f[[i, y]];
            let z: f64 = x.row(i).dot(&w.row(y));
            // With every term x_k·w_k zero (s = 0) z is exactly 0 in any backend and
            // any order: the convention p = 1 holds exactly, so no slack there.
            let near_kink = s_f[[i, y]] > 0.0 && z.abs() <= 2.0 * d as f64 * u * s_f[[i, y]];
            let kink_slack = match margin {
                Margin::Simplified { k, .. } if near_kink => 1.0 - f64::from(k),
                _ => 0.0,
            };
            let lsoftmax = matches!(margin, Margin::LSoftmax { .. });
            let (ba, ab) = if lsoftmax && a * b >= DEGENERATE_NORM_PRODUCT {
                (b / a, a / b)
            } else {
                (0.0, 0.0)
            };
            for k in 0..d {
                tol_dx[[i, k]] +=
                    t * (corr_rate * (aw[[y, k]] + ba * ax[[i, k]]) + kink_slack * aw[[y, k]]);
                tol_dw[[y, k]] +=
                    t * (corr_rate * (ax[[i, k]] + ab * aw[[y, k]]) + kink_slack * ax[[i, k]]);
            }
        }
    }
    Ok(Agreement {
        outputs: [
            worst("F", out.view(), &ref_f, &tol_f),
            worst("dX", grads.dx.view(), &ref_dx, &tol_dx),
            worst("dW", grads.dw.view(), &ref_dw, &tol_dw),
        ],
    })
}

/// `v̂_i = v_i/‖v_i‖` (0 for degenerate rows) and the norms.
fn unit_rows(v: &Array2<f64>) -> (Array2<f64>, Vec<f64>) {
    let mut out = v.clone();
    let mut norms = Vec::with_capacity(v.nrows());
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        let n = norm_row(v.view(), i);
        norms.push(n);
        let inv = if n < DEGENERATE_NORM_PRODUCT {
            0.0
        } else {
            1.0 / n
        };
        row.mapv_inplace(|e| e * inv);
    }
    (out, norms)
}

/// The target's value and backward factors per unit of the epilogue's input `c`, from the
/// reference formulas: cosine margins `(S·h(c), h'(c), 0)`; SphereFace (with `a`)
/// `(a·φ(c), φ'(c), q(c)) = (a·(βc + ψ)/(1+β), (β + ψ')/(1+β), (ψ − cψ')/(1+β))`.
fn target_at(margin: Margin, c: f64, a: f64) -> (f64, f64, f64) {
    match margin {
        Margin::SphereFace { m, beta } => {
            let beta = f64::from(beta);
            let (psi, dpsi) = naive::psi_from_angle(m, c.clamp(-1.0, 1.0));
            (
                a * (beta * c + psi) / (1.0 + beta),
                (beta + dpsi) / (1.0 + beta),
                (psi - c.clamp(-1.0, 1.0) * dpsi) / (1.0 + beta),
            )
        }
        _ => {
            let s = f64::from(margin.feature_scale().unwrap_or(1.0));
            let (h, dh) = naive::cosine_target(margin, c);
            (s * h, dh, 0.0)
        }
    }
}

/// The bounds of F, dX, dW for a normalised margin (module docs).
fn normalised_bounds(
    problem: &Problem<'_>,
    ref_f: &Array2<f64>,
    ref_dx: &Array2<f64>,
    ref_dw: &Array2<f64>,
) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let Problem {
        x,
        w,
        labels,
        dout,
        margin,
        mode,
    } = *problem;
    let u = UNIT_ROUNDOFF_F32;
    let (n, d) = x.dim();
    let c = w.nrows();
    let (x, w, g) = (x.mapv(f64::from), w.mapv(f64::from), dout.mapv(f64::from));
    let (xhat, a) = unit_rows(&x);
    let (what, b) = unit_rows(&w);
    let scale = margin.feature_scale().map(f64::from);
    // The operands the backends multiply, exactly.
    let xt = match scale {
        Some(s) => xhat.mapv(|e| s * e),
        None => x.clone(),
    };
    let (axt, awt) = (xt.mapv(f64::abs), what.mapv(f64::abs));
    let sigma = axt.dot(&awt.t());
    let z = xt.dot(&what.t());
    let mut tol_f =
        sigma.mapv(|s| (2.0 * d as f64 + 4.0) * u * s) + ref_f.mapv(|v| 8.0 * u * v.abs());

    // Per row: p (factor of the target entry of G'), Δp, and SphereFace's α = q/a, Δα,
    // γ-scale = q·a, Δγ.
    let mut p = vec![1.0; n];
    let mut dp = vec![0.0; n];
    let mut alpha = vec![0.0; n];
    let mut dalpha = vec![0.0; n];
    let mut gam = vec![0.0; n];
    let mut dgam = vec![0.0; n];
    let sphere = matches!(margin, Margin::SphereFace { .. });
    if mode == Mode::Train {
        for (i, &y) in labels.iter().enumerate() {
            if a[i] < DEGENERATE_NORM_PRODUCT || b[y] < DEGENERATE_NORM_PRODUCT {
                continue;
            }
            let unit = if sphere { a[i] } else { scale.unwrap_or(1.0) };
            let cc = z[[i, y]] / unit;
            let ec = (2.0 * d as f64 + 4.0) * u * sigma[[i, y]] / unit;
            let (g0, p0, q0) = target_at(margin, cc, a[i]);
            let mut dv = 0.0f64;
            let (mut dpp, mut dq) = (0.0f64, 0.0f64);
            for step in -4..=4 {
                let c2 = cc + ec * f64::from(step) / 4.0;
                let (g2, p2, q2) = target_at(margin, c2, a[i]);
                dv = dv.max((g2 - g0).abs());
                dpp = dpp.max((p2 - p0).abs());
                dq = dq.max((q2 - q0).abs());
            }
            tol_f[[i, y]] += dv;
            p[i] = p0;
            dp[i] = 2.0 * dpp + 4.0 * u * p0.abs();
            if sphere {
                // The kernels' ψ and the reference's differ by ~1e-15; corr_rate covers
                // the f32 roundings of p, q and the correction terms, as for L-Softmax.
                let corr = 256.0 * (d as f64 + 1.0) * u;
                dp[i] += corr;
                alpha[i] = q0 / a[i];
                dalpha[i] = (2.0 * dq + corr) / a[i];
                gam[i] = q0 * a[i];
                dgam[i] = (2.0 * dq + corr) * a[i];
            }
        }
    }
    // |G'| and the bounds before the projections.
    let mut agp = g.mapv(f64::abs);
    for (i, &y) in labels.iter().enumerate() {
        agp[[i, y]] *= p[i].abs();
    }
    let mut e_dxt = agp.dot(&awt).mapv(|v| (2.0 * c as f64 + 4.0) * u * v);
    let mut e_dwt = agp.t().dot(&axt).mapv(|v| (2.0 * n as f64 + 4.0) * u * v);
    for (i, &y) in labels.iter().enumerate() {
        let t = g[[i, y]].abs();
        for k in 0..d {
            e_dxt[[i, k]] +=
                t * (dp[i] * awt[[y, k]] + (dalpha[i] + 4.0 * u * alpha[i].abs()) * axt[[i, k]]);
            e_dwt[[y, k]] +=
                t * (dp[i] * axt[[i, k]] + (dgam[i] + 4.0 * u * gam[i].abs()) * awt[[y, k]]);
        }
    }
    // Reference dX̃, dŴ (for the rounding terms of the projection).
    let project = |e: &Array2<f64>, vhat: &Array2<f64>, s: &dyn Fn(usize) -> f64| {
        let mut out = e.clone();
        for i in 0..e.nrows() {
            let spread: f64 = (0..e.ncols()).map(|k| vhat[[i, k]].abs() * e[[i, k]]).sum();
            for k in 0..e.ncols() {
                out[[i, k]] = s(i) * (e[[i, k]] + vhat[[i, k]].abs() * spread);
            }
        }
        out
    };
    let inv = |v: f64| {
        if v < DEGENERATE_NORM_PRODUCT {
            0.0
        } else {
            1.0 / v
        }
    };
    let tol_dx = match scale {
        Some(s) => project(&e_dxt, &xhat, &|i| s * inv(a[i])),
        None => e_dxt,
    } + ref_dx.mapv(|v| 8.0 * u * v.abs());
    let tol_dw = project(&e_dwt, &what, &|j| inv(b[j])) + ref_dw.mapv(|v| 8.0 * u * v.abs());
    (tol_f, tol_dx, tol_dw)
}

/// The element of `got` with the largest `|got − want| / tol` (the first one on ties).
fn worst(
    name: &'static str,
    got: ArrayView2<f32>,
    want: &Array2<f64>,
    tol: &Array2<f64>,
) -> OutputAgreement {
    let mut best = OutputAgreement {
        name,
        index: (0, 0),
        got: got.first().copied().unwrap_or(0.0),
        reference: want.first().copied().unwrap_or(0.0),
        error: 0.0,
        bound: tol.first().copied().unwrap_or(0.0),
    };
    let mut best_ratio = f64::NEG_INFINITY;
    for ((index, &g), (&r, &t)) in got.indexed_iter().zip(want.iter().zip(tol.iter())) {
        let error = (f64::from(g) - r).abs();
        let q = ratio(error, t);
        if q > best_ratio {
            best_ratio = q;
            best = OutputAgreement {
                name,
                index,
                got: g,
                reference: r,
                error: if error.is_nan() { f64::INFINITY } else { error },
                bound: t,
            };
        }
    }
    best
}
