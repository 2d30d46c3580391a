//! Shared test definitions: random layer problems and the comparison of any backend with
//! `reference::naive` under an error bound derived from f32 arithmetic. Every backend's
//! test instantiates the same body (see `backend_agreement.rs`).
#![allow(dead_code)] // each test crate uses a different subset

use lsoftmax::reference::agreement::{self, Problem};
use lsoftmax::{Backend, Margin, Mode};
use ndarray::{Array2, ArrayView2, ShapeBuilder, s};
use proptest::prelude::*;

/// One layer problem.
#[derive(Clone, Debug)]
pub struct Case {
    pub x: Array2<f32>,
    pub w: Array2<f32>,
    pub labels: Vec<usize>,
    pub dout: Array2<f32>,
    pub margin: Margin,
    pub mode: Mode,
    /// Memory layouts in which X, W and dOut are handed to the backend.
    pub layouts: [Layout; 3],
}

/// How a matrix sits in memory when the backend sees it: the values are the same, the
/// strides differ (the backend API takes views of any strides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// C order, strides (cols, 1).
    RowMajor,
    /// Fortran order, strides (1, rows).
    ColumnMajor,
    /// Both axes reversed: negative strides.
    Reversed,
    /// Every other column of a twice-as-wide array: strides (2·cols, 2).
    EveryOther,
}

/// A buffer that holds `a` in `layout`; [`Laid::view`] equals `a` element-wise.
pub struct Laid {
    buf: Array2<f32>,
    layout: Layout,
}

impl Laid {
    pub fn new(a: &Array2<f32>, layout: Layout) -> Self {
        let (r, c) = a.dim();
        let buf = match layout {
            Layout::RowMajor => a.clone(),
            Layout::ColumnMajor => {
                let mut f = Array2::zeros((r, c).f());
                f.assign(a);
                f
            }
            Layout::Reversed => a.slice(s![..;-1, ..;-1]).to_owned(),
            Layout::EveryOther => {
                let mut wide = Array2::from_elem((r, 2 * c), f32::NAN);
                wide.slice_mut(s![.., ..;2]).assign(a);
                wide
            }
        };
        Laid { buf, layout }
    }

    pub fn view(&self) -> ArrayView2<'_, f32> {
        match self.layout {
            Layout::RowMajor | Layout::ColumnMajor => self.buf.view(),
            Layout::Reversed => self.buf.slice(s![..;-1, ..;-1]),
            Layout::EveryOther => self.buf.slice(s![.., ..;2]),
        }
    }
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    prop_oneof![
        5 => Just(Layout::RowMajor),
        1 => Just(Layout::ColumnMajor),
        1 => Just(Layout::Reversed),
        1 => Just(Layout::EveryOther),
    ]
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
        (1u32..=4, prop_oneof![Just(0.0f32), 0.0f32..5.0])
            .prop_map(|(m, b)| Margin::sphereface(m, b).unwrap()),
        (0.5f32..64.0, 0.0f32..=1.0).prop_map(|(s, m)| Margin::cosface(s, m).unwrap()),
        (0.5f32..64.0, 0.0f32..3.0).prop_map(|(s, m)| Margin::arcface(s, m).unwrap()),
        (0.5f32..64.0, 0.25f32..=4.0, 0.0f32..3.0, 0.0f32..=1.0)
            .prop_map(|(s, a, b, c)| Margin::combined(s, a, b, c).unwrap()),
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
                [layout_strategy(), layout_strategy(), layout_strategy()],
            ),
        )
            .prop_map(
                move |(
                    xv,
                    wv,
                    gv,
                    raw_labels,
                    pattern,
                    angles,
                    zero_rows,
                    (margin, mode, layouts),
                )| {
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
                        layouts,
                    }
                },
            )
    })
}

/// Runs `backend` forward and backward on `case` and checks F, dX, dW against
/// `reference::naive` (f64) under the bound derived in `lsoftmax::reference::agreement`.
/// Returns a description of the worst violation.
pub fn check_backend(backend: &dyn Backend, case: &Case) -> Result<(), String> {
    let [lx, lw, lg] = case.layouts;
    let (x, w, dout) = (
        Laid::new(&case.x, lx),
        Laid::new(&case.w, lw),
        Laid::new(&case.dout, lg),
    );
    let problem = Problem {
        x: x.view(),
        w: w.view(),
        labels: &case.labels,
        dout: dout.view(),
        margin: case.margin,
        mode: case.mode,
    };
    let agreement = agreement::check_backend(backend, &problem).map_err(|e| e.to_string())?;
    match agreement.violation() {
        None => Ok(()),
        Some(v) => Err(v.to_string()),
    }
}
