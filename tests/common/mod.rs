//! Shared test definitions: random layer problems and the comparison of any backend with
//! `reference::naive` under an error bound derived from f32 arithmetic. Every backend's
//! test instantiates the same body (see `backend_agreement.rs`).
#![allow(dead_code)] // each test crate uses a different subset

use lsoftmax::reference::{DEGENERATE_NORM_PRODUCT, naive};
use lsoftmax::{Backend, Margin, Mode, backward, forward_on};
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

/// Unit roundoff of f32.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// One layer problem.
#[derive(Clone, Debug)]
pub struct Case {
    pub x: Array2<f32>,
    pub w: Array2<f32>,
    pub labels: Vec<usize>,
    pub dout: Array2<f32>,
    pub margin: Margin,
    pub mode: Mode,
}

/// All margin variants the layer supports, with a few parameters each.
pub fn margin_strategy() -> impl Strategy<Value = Margin> {
    prop_oneof![
        Just(Margin::plain()),
        (0.05f32..=1.0).prop_map(|k| Margin::simplified(k).unwrap()),
        Just(Margin::simplified(1.0).unwrap()),
        (
            1u32..=4,
            prop_oneof![Just(0.0f32), 0.0f32..5.0, Just(100.0f32)]
        )
            .prop_map(|(m, b)| Margin::lsoftmax(m, b).unwrap()),
    ]
}

/// How labels are drawn: uniformly, all rows in one class, or only from the upper half
/// of the classes (so some classes have no rows).
#[derive(Clone, Copy, Debug)]
enum LabelPattern {
    Uniform,
    OneClass(usize),
    UpperHalf,
}

fn matrix(rows: usize, cols: usize, values: Vec<f32>) -> Array2<f32> {
    Array2::from_shape_vec((rows, cols), values).expect("strategy made rows*cols values")
}

/// Rewrites row `i` of `x` to make angle `theta` with `w_y` (same norm as before), so
/// L-Softmax angles land in every interval `[kπ/m, (k+1)π/m]`, not only near 90° where
/// random high-dimensional vectors sit.
fn set_angle(x: &mut Array2<f32>, w: &Array2<f32>, i: usize, y: usize, theta: f64) {
    let wy: Vec<f64> = w.row(y).iter().map(|&v| f64::from(v)).collect();
    let xi: Vec<f64> = x.row(i).iter().map(|&v| f64::from(v)).collect();
    let nw = wy.iter().map(|v| v * v).sum::<f64>().sqrt();
    let nx = xi.iter().map(|v| v * v).sum::<f64>().sqrt();
    if nw == 0.0 || nx == 0.0 {
        return;
    }
    let u: Vec<f64> = wy.iter().map(|v| v / nw).collect();
    let proj: f64 = xi.iter().zip(&u).map(|(a, b)| a * b).sum();
    let perp: Vec<f64> = xi.iter().zip(&u).map(|(a, b)| a - proj * b).collect();
    let np = perp.iter().map(|v| v * v).sum::<f64>().sqrt();
    if np < 1e-6 * nx {
        return; // x parallel to w (or D = 1): keep the angle it has
    }
    for k in 0..xi.len() {
        let v = nx * (theta.cos() * u[k] + theta.sin() * perp[k] / np);
        x[[i, k]] = v as f32;
    }
}

/// Random problems: N, D, C each in `1..=max_dim` (past 64 for `max_dim > 64`; primes and
/// non-square shapes come up naturally), all variants, both modes, labels anywhere,
/// some all-zero (degenerate) rows, target logits of both signs, and angles spread over
/// `[0, π]` for half of the rows.
pub fn case_strategy(max_dim: usize) -> impl Strategy<Value = Case> {
    (1..=max_dim, 1..=max_dim, 1..=max_dim).prop_flat_map(|(n, d, c)| {
        let label_pattern = prop_oneof![
            Just(LabelPattern::Uniform),
            (0..c).prop_map(LabelPattern::OneClass),
            Just(LabelPattern::UpperHalf),
        ];
        (
            proptest::collection::vec(-1.0f32..1.0, n * d),
            proptest::collection::vec(-1.0f32..1.0, c * d),
            proptest::collection::vec(-1.0f32..1.0, n * c),
            proptest::collection::vec(0usize..1_000_000, n),
            label_pattern,
            proptest::collection::vec(
                prop_oneof![3 => Just(None), 1 => (0.0f64..=std::f64::consts::PI).prop_map(Some)],
                n,
            ),
            proptest::collection::vec(prop_oneof![12 => Just(false), 1 => Just(true)], n),
            (
                margin_strategy(),
                prop_oneof![3 => Just(Mode::Train), 1 => Just(Mode::Infer)],
            ),
        )
            .prop_map(
                move |(xv, wv, gv, raw_labels, pattern, angles, zero_rows, (margin, mode))| {
                    let mut x = matrix(n, d, xv);
                    let w = matrix(c, d, wv);
                    let labels: Vec<usize> = raw_labels
                        .iter()
                        .map(|&r| match pattern {
                            LabelPattern::Uniform => r % c,
                            LabelPattern::OneClass(k) => k,
                            LabelPattern::UpperHalf => c / 2 + r % (c - c / 2),
                        })
                        .collect();
                    for i in 0..n {
                        if let Some(theta) = angles[i] {
                            set_angle(&mut x, &w, i, labels[i], theta);
                        }
                        if zero_rows[i] {
                            x.row_mut(i).fill(0.0);
                        }
                    }
                    Case {
                        x,
                        w,
                        labels,
                        dout: matrix(n, c, gv),
                        margin,
                        mode,
                    }
                },
            )
    })
}

fn to_f64(a: ArrayView2<f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

fn norm_row(a: ArrayView2<f64>, i: usize) -> f64 {
    a.row(i).iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// Runs `backend` forward and backward on `case` and checks F, dX, dW against
/// `reference::naive` (f64). Returns a description of the first violation.
///
/// # The error bound
/// A dot product of length L summed in f32 in any order is off by at most
/// `γ_L·Σ|terms| ≤ 1.01·L·u·Σ|terms|` (Higham, Accuracy and Stability, §3.1), u = 2⁻²⁴;
/// we allow `2·L·u·Σ|terms|` (`S` below, computed in f64 from |x|, |w|, |G|).
/// The margin adds, on training rows with target t = G_{i,y_i}:
/// - forward: `g` moves with `z` at rate `|∂g/∂z| = |p| ≤ (β + m²)/(1 + β) ≤ 16`,
///   so the target entry gets `16·2·D·u·S` plus `8u·|g|` for the f64→f32 epilogue;
/// - backward: p and q are functions of `c = z/(ab)` whose error is `≤ 2·D·u`
///   (`Σ|x_k w_k| ≤ ab`, Cauchy–Schwarz) and `|dp/dc|, |dq/dc| ≤ max|ψ''| ≤ 96`;
///   with `|p| ≤ 16`, `|q| ≤ 24` and rounding of the correction terms the corrections
///   `t·(p−1)·w_y + t·q·(b/a)·x` are off by at most `(2·96·D·u + 64·u)` times
///   `|t|·(|w_y| + (b/a)|x|)` (and the mirror image for dW). We use 256·(D+1)·u.
/// - simplified margin: if `|z|` is within its rounding bound of the kink at 0 the
///   backends may legitimately pick the other branch: allow `(1−k)·|t|·|w_y|` there.
pub fn check_backend(backend: &dyn Backend, case: &Case) -> Result<(), String> {
    let (n, d) = case.x.dim();
    let c = case.w.nrows();
    let fwd = forward_on(
        backend,
        case.x.view(),
        case.w.view(),
        &case.labels,
        case.margin,
        case.mode,
    )
    .map_err(|e| format!("forward failed: {e}"))?;
    let grads = backward(&fwd, case.dout.view()).map_err(|e| format!("backward failed: {e}"))?;

    let (x, w, g) = (
        to_f64(case.x.view()),
        to_f64(case.w.view()),
        to_f64(case.dout.view()),
    );
    let ref_f = naive::forward(x.view(), w.view(), &case.labels, case.margin, case.mode);
    let (ref_dx, ref_dw) = naive::backward(
        x.view(),
        w.view(),
        &case.labels,
        case.margin,
        case.mode,
        g.view(),
    );

    // Σ|terms| of each GEMM entry, by the same reference on absolute values.
    let (ax, aw, ag) = (x.mapv(f64::abs), w.mapv(f64::abs), g.mapv(f64::abs));
    let s_f = naive::forward(
        ax.view(),
        aw.view(),
        &case.labels,
        Margin::Plain,
        Mode::Infer,
    );
    let (s_dx, s_dw) = naive::backward(
        ax.view(),
        aw.view(),
        &case.labels,
        Margin::Plain,
        Mode::Infer,
        ag.view(),
    );

    let margin_active = case.mode == Mode::Train && case.margin != Margin::Plain;
    let corr_rate = 256.0 * (d as f64 + 1.0) * U;
    let mut tol_f = s_f.mapv(|s| 2.0 * d as f64 * U * s) + ref_f.mapv(|v| 8.0 * U * v.abs());
    let mut tol_dx = s_dx.mapv(|s| 2.0 * c as f64 * U * s) + ref_dx.mapv(|v| 8.0 * U * v.abs());
    let mut tol_dw = s_dw.mapv(|s| 2.0 * n as f64 * U * s) + ref_dw.mapv(|v| 8.0 * U * v.abs());
    if margin_active {
        for (i, &y) in case.labels.iter().enumerate() {
            let t = g[[i, y]].abs();
            let (a, b) = (norm_row(x.view(), i), norm_row(w.view(), y));
            tol_f[[i, y]] += 16.0 * 2.0 * d as f64 * U * s_f[[i, y]];
            let kink_slack = match case.margin {
                Margin::Simplified { k, .. } if ref_z_near_kink(&x, &w, &s_f, i, y, d) => {
                    1.0 - f64::from(k)
                }
                _ => 0.0,
            };
            let lsoftmax = matches!(case.margin, Margin::LSoftmax { .. });
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
    compare("F", fwd.out.view(), &ref_f, &tol_f)?;
    compare("dX", grads.dx.view(), &ref_dx, &tol_dx)?;
    compare("dW", grads.dw.view(), &ref_dw, &tol_dw)
}

fn ref_z_near_kink(
    x: &Array2<f64>,
    w: &Array2<f64>,
    s_f: &Array2<f64>,
    i: usize,
    y: usize,
    d: usize,
) -> bool {
    let z: f64 = x.row(i).dot(&w.row(y));
    z.abs() <= 2.0 * d as f64 * U * s_f[[i, y]]
}

fn compare(
    name: &str,
    got: ArrayView2<f32>,
    want: &Array2<f64>,
    tol: &Array2<f64>,
) -> Result<(), String> {
    if got.dim() != want.dim() {
        return Err(format!(
            "{name}: shape {:?}, want {:?}",
            got.dim(),
            want.dim()
        ));
    }
    for ((idx, &g), (&r, &t)) in got.indexed_iter().zip(want.iter().zip(tol.iter())) {
        let err = (f64::from(g) - r).abs();
        // Subnormal-level slack: values here are O(1), so 1e-30 never hides a bug.
        // A NaN error (NaN output) must fail, so test for "within" rather than "over".
        let within = err <= t + 1e-30;
        if !within {
            return Err(format!(
                "{name}{idx:?}: got {g}, reference {r}, |err| {err:e} > tolerance {t:e}"
            ));
        }
    }
    Ok(())
}
