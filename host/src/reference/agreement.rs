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

use std::fmt;

use ndarray::{Array2, ArrayView2};

use super::{DEGENERATE_NORM_PRODUCT, naive};
use crate::backend::Backend;
use crate::error::Result;
use crate::layer::{backward, forward_on};
use crate::margin::{Margin, Mode};

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
    let fwd = forward_on(backend, x32, w32, labels, margin, mode)?;
    let grads = backward(&fwd, dout)?;
    let (n, d) = x32.dim();
    let c = w32.nrows();
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
            worst("F", fwd.out.view(), &ref_f, &tol_f),
            worst("dX", grads.dx.view(), &ref_dx, &tol_dx),
            worst("dW", grads.dw.view(), &ref_dw, &tol_dw),
        ],
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;
    use crate::error::Error;
    use crate::layer::{Grads, RowCache};
    use ndarray::array;

    /// A backend that returns the CPU result with one element of dW nudged by `delta`.
    struct Nudged {
        delta: f32,
    }

    impl Backend for Nudged {
        fn name(&self) -> &'static str {
            "nudged"
        }
        fn forward(
            &self,
            x: ArrayView2<f32>,
            w: ArrayView2<f32>,
            labels: &[usize],
            margin: Margin,
            mode: Mode,
        ) -> Result<(Array2<f32>, RowCache)> {
            CpuBackend.forward(x, w, labels, margin, mode)
        }
        fn backward(
            &self,
            x: ArrayView2<f32>,
            w: ArrayView2<f32>,
            labels: &[usize],
            cache: &RowCache,
            dout: ArrayView2<f32>,
        ) -> Result<Grads> {
            let mut g = CpuBackend.backward(x, w, labels, cache, dout)?;
            g.dw[[1, 2]] += self.delta;
            Ok(g)
        }
    }

    fn problem_parts() -> (Array2<f32>, Array2<f32>, Vec<usize>, Array2<f32>) {
        let x = array![[0.5f32, -0.25, 1.0], [0.75, 0.5, -0.5]];
        let w = array![[1.0f32, 0.5, -0.25], [-0.5, 1.0, 0.25]];
        let dout = array![[0.25f32, -1.0], [0.5, 0.75]];
        (x, w, vec![1, 0], dout)
    }

    #[test]
    fn cpu_agrees_and_a_nudged_gradient_is_caught_at_its_index() {
        let (x, w, labels, dout) = problem_parts();
        let p = Problem {
            x: x.view(),
            w: w.view(),
            labels: &labels,
            dout: dout.view(),
            margin: Margin::lsoftmax(3, 0.5).unwrap(),
            mode: Mode::Train,
        };
        let ok = check_backend(&CpuBackend, &p).unwrap();
        assert!(ok.passed(), "{:?}", ok.violation());
        assert!(ok.worst_ratio() <= 1.0);

        let bad = check_backend(&Nudged { delta: 1e-3 }, &p).unwrap();
        let v = bad
            .violation()
            .expect("a 1e-3 error in dW is far over the bound");
        assert_eq!((v.name, v.index), ("dW", (1, 2)));
        assert!(bad.worst_ratio() > 1.0);
        assert!(v.to_string().starts_with("dW(1, 2): got"), "{v}");

        let nan = check_backend(&Nudged { delta: f32::NAN }, &p).unwrap();
        assert_eq!(nan.violation().map(|v| v.index), Some((1, 2)));
        assert_eq!(nan.worst_ratio(), f64::INFINITY);
    }

    #[test]
    fn invalid_input_is_an_error_not_a_disagreement() {
        let (x, w, _, dout) = problem_parts();
        let labels = [1, 7];
        let p = Problem {
            x: x.view(),
            w: w.view(),
            labels: &labels,
            dout: dout.view(),
            margin: Margin::Plain,
            mode: Mode::Train,
        };
        assert!(matches!(
            check_backend(&CpuBackend, &p),
            Err(Error::LabelOutOfRange { label: 7, .. })
        ));
    }
}
