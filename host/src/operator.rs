//! Operators in the sense of MXNet/TensorFlow: a named function of several arrays whose
//! parameters (weights) are ordinary inputs, with a shape function, a forward pass and a
//! backward pass that maps output gradients to input gradients. Everything is f64 so that
//! finite differences ([`crate::gradcheck`]) can check the backward pass.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Dimension, Ix1, Ix2};

use crate::error::{Error, Result};
use crate::margin::{Margin, Mode};
use crate::reference::naive;

/// A differentiable operator `outputs = F(inputs)` on f64 arrays.
///
/// `backward` returns `∂J/∂inputs[k] = Σ_o output_grads[o] · ∂outputs[o]/∂inputs[k]` for the
/// inputs marked differentiable, `None` for the others (labels, indices).
///
/// # Example: checking a layer of your own
/// Implement the trait for the f64 version of your layer and hand it to
/// [`crate::gradcheck::gradcheck`]. Here `y = x³`, with a `slope` field to plant a bug in
/// the gradient (`3x²` is right):
/// ```
/// use lsoftmax_host::gradcheck::{Config, Loss, gradcheck};
/// use lsoftmax_host::operator::Operator;
/// use lsoftmax_host::{Mode, Result};
/// use ndarray::{ArrayD, ArrayViewD};
///
/// struct Cube {
///     slope: f64,
/// }
///
/// impl Operator for Cube {
///     fn name(&self) -> String {
///         format!("cube[slope={}]", self.slope)
///     }
///     fn input_names(&self) -> Vec<String> {
///         vec!["x".into()]
///     }
///     fn differentiable(&self) -> Vec<bool> {
///         vec![true]
///     }
///     fn infer_shape(&self, shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
///         Ok(vec![shapes[0].clone()])
///     }
///     fn forward(&self, _: Mode, inputs: &[ArrayViewD<f64>]) -> Result<Vec<ArrayD<f64>>> {
///         Ok(vec![inputs[0].mapv(|v| v * v * v)])
///     }
///     fn backward(
///         &self,
///         _: Mode,
///         inputs: &[ArrayViewD<f64>],
///         _outputs: &[ArrayViewD<f64>],
///         grads: &[ArrayViewD<f64>],
///     ) -> Result<Vec<Option<ArrayD<f64>>>> {
///         Ok(vec![Some(&grads[0] * &inputs[0].mapv(|v| self.slope * v * v))])
///     }
/// }
///
/// let x = ArrayD::from_shape_vec(vec![2, 3], vec![0.5, -1.0, 2.0, 0.25, -0.75, 1.5]).unwrap();
/// let config = Config::default();
/// let right = gradcheck(&Cube { slope: 3.0 }, Mode::Train, &[x.clone()], Loss::HalfSquaredNorm, &config)?;
/// assert!(right.passed());
/// let wrong = gradcheck(&Cube { slope: 2.9 }, Mode::Train, &[x], Loss::HalfSquaredNorm, &config)?;
/// assert!(!wrong.passed());
/// print!("{wrong}"); // names the input, the worst index, analytic and numeric values
/// # Ok::<(), lsoftmax_host::Error>(())
/// ```
pub trait Operator {
    /// Name used in reports (`margin[lsoftmax:m=2,beta=0]`).
    fn name(&self) -> String;

    /// One name per input, in order (`x`, `w`, `labels`).
    fn input_names(&self) -> Vec<String>;

    /// One flag per input: `true` if `backward` returns its gradient.
    fn differentiable(&self) -> Vec<bool>;

    /// Output shapes for the given input shapes; errors if the shapes do not fit together.
    fn infer_shape(&self, input_shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>>;

    /// The outputs; errors on invalid inputs (shapes, values).
    fn forward(&self, mode: Mode, inputs: &[ArrayViewD<f64>]) -> Result<Vec<ArrayD<f64>>>;

    /// Input gradients for upstream gradients `output_grads` (one per output, same shapes as
    /// `outputs`, which are the forward outputs at `inputs`).
    fn backward(
        &self,
        mode: Mode,
        inputs: &[ArrayViewD<f64>],
        outputs: &[ArrayViewD<f64>],
        output_grads: &[ArrayViewD<f64>],
    ) -> Result<Vec<Option<ArrayD<f64>>>>;

    /// Whether the straight segment between the input sets `minus` and `plus` (a central
    /// difference's two evaluation points) comes close to a point where the operator is not
    /// differentiable, so that a finite difference across it means nothing.
    ///
    /// The default says "never": right for operators that are smooth everywhere.
    fn near_kink(
        &self,
        _mode: Mode,
        _minus: &[ArrayViewD<f64>],
        _plus: &[ArrayViewD<f64>],
    ) -> bool {
        false
    }
}

/// The margin layer as an operator: inputs `[x (N×D), w (C×D), labels (N)]`, labels given
/// as integer-valued f64 in `0..C`; one output `F` (N×C), computed by
/// [`crate::reference::naive`] (`F = X·Wᵀ` with `F_{i,y_i} = g(z, ‖x_i‖, ‖w_{y_i}‖)` in
/// training mode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarginOperator {
    /// The margin function applied to the target logits.
    pub margin: Margin,
}

/// Distance from zero (in units of the step `ε`) within which a row norm counts as
/// degenerate for [`Operator::near_kink`]: there the L-Softmax gradient carries `b/a`
/// (or `a/b`), whose curvature grows like `1/a²` and swamps a central difference.
const DEGENERATE_STEPS: f64 = 100.0;

impl MarginOperator {
    /// The operator for `margin`.
    pub fn new(margin: Margin) -> Self {
        MarginOperator { margin }
    }

    /// Checks the inputs and returns `x`, `w` as 2-D views and the labels as indices.
    ///
    /// Errors: wrong number of inputs, wrong ranks, width or length mismatch, empty
    /// dimensions, non-finite `x`/`w`, labels that are not integers in `0..C`.
    pub fn unpack<'a>(
        &self,
        inputs: &'a [ArrayViewD<'a, f64>],
    ) -> Result<(ArrayView2<'a, f64>, ArrayView2<'a, f64>, Vec<usize>)> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape().to_vec()).collect();
        let out_shape = self.infer_shape(&shapes)?;
        let (n, c) = (out_shape[0][0], out_shape[0][1]);
        let x = view2(&inputs[0], "x")?;
        let w = view2(&inputs[1], "w")?;
        let labels_f = inputs[2]
            .view()
            .into_dimensionality::<Ix1>()
            .map_err(|_| Error::Shape("labels must be 1-D".into()))?;
        check_finite_d("x", &inputs[0])?;
        check_finite_d("w", &inputs[1])?;
        let mut labels = Vec::with_capacity(n);
        for (row, &v) in labels_f.iter().enumerate() {
            labels.push(label_index(row, v, c)?);
        }
        Ok((x, w, labels))
    }
}

/// The class index of label value `v` in row `row`: an integer in `0..classes`.
pub fn label_index(row: usize, v: f64, classes: usize) -> Result<usize> {
    if !v.is_finite() {
        return Err(Error::NonFinite {
            input: "labels".into(),
            index: vec![row],
            value: v,
        });
    }
    if v.fract() != 0.0 {
        return Err(Error::NonIntegerLabel { row, value: v });
    }
    if v < 0.0 || v >= classes as f64 {
        return Err(Error::LabelOutOfRange {
            row,
            label: v as i64,
            classes,
        });
    }
    Ok(v as usize)
}

fn view2<'a>(a: &'a ArrayViewD<'a, f64>, name: &str) -> Result<ArrayView2<'a, f64>> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::Shape(format!("{name} must be 2-D, found shape {:?}", a.shape())))
}

fn check_finite_d(name: &str, a: &ArrayViewD<f64>) -> Result<()> {
    match a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some((index, v)) => Err(Error::NonFinite {
            input: name.to_string(),
            index: index.slice().to_vec(),
            value: *v,
        }),
        None => Ok(()),
    }
}

fn norm(v: ndarray::ArrayView1<f64>) -> f64 {
    v.dot(&v).sqrt()
}

impl Operator for MarginOperator {
    fn name(&self) -> String {
        format!("margin[{}]", self.margin)
    }

    fn input_names(&self) -> Vec<String> {
        vec!["x".into(), "w".into(), "labels".into()]
    }

    fn differentiable(&self) -> Vec<bool> {
        vec![true, true, false]
    }

    /// `[N, D], [C, D], [N]  ->  [[N, C]]`, all of N, D, C >= 1.
    fn infer_shape(&self, input_shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
        let [xs, ws, ls] = input_shapes else {
            return Err(Error::Shape(format!(
                "the margin operator takes 3 inputs (x, w, labels), got {}",
                input_shapes.len()
            )));
        };
        for (name, shape, rank) in [("x", xs, 2), ("w", ws, 2), ("labels", ls, 1)] {
            if shape.len() != rank {
                return Err(Error::Shape(format!(
                    "{name} must have rank {rank}, found shape {shape:?}"
                )));
            }
        }
        let (n, d, c) = (xs[0], xs[1], ws[0]);
        if ws[1] != d {
            return Err(Error::Shape(format!(
                "x is {n}x{d} and w is {c}x{}: their widths (D) must match",
                ws[1]
            )));
        }
        if ls[0] != n {
            return Err(Error::Shape(format!(
                "labels has {} entries but x has {n} rows",
                ls[0]
            )));
        }
        if n == 0 || d == 0 || c == 0 {
            return Err(Error::Shape(format!(
                "empty input: N = {n}, D = {d}, C = {c} (all must be >= 1)"
            )));
        }
        Ok(vec![vec![n, c]])
    }

    fn forward(&self, mode: Mode, inputs: &[ArrayViewD<f64>]) -> Result<Vec<ArrayD<f64>>> {
        let (x, w, labels) = self.unpack(inputs)?;
        Ok(vec![
            naive::forward(x, w, &labels, self.margin, mode).into_dyn(),
        ])
    }

    fn backward(
        &self,
        mode: Mode,
        inputs: &[ArrayViewD<f64>],
        outputs: &[ArrayViewD<f64>],
        output_grads: &[ArrayViewD<f64>],
    ) -> Result<Vec<Option<ArrayD<f64>>>> {
        let (x, w, labels) = self.unpack(inputs)?;
        let (n, c) = (x.nrows(), w.nrows());
        if outputs.len() != 1 || output_grads.len() != 1 {
            return Err(Error::Shape(format!(
                "the margin operator has 1 output; got {} outputs and {} output gradients",
                outputs.len(),
                output_grads.len()
            )));
        }
        let dout = output_grads[0]
            .view()
            .into_dimensionality::<Ix2>()
            .ok()
            .filter(|g| g.dim() == (n, c))
            .ok_or_else(|| {
                Error::Shape(format!(
                    "dout has shape {:?} but the output is {n}x{c}",
                    output_grads[0].shape()
                ))
            })?;
        check_finite_d("dout", &output_grads[0])?;
        let (dx, dw) = naive::backward(x, w, &labels, self.margin, mode, dout);
        Ok(vec![Some(dx.into_dyn()), Some(dw.into_dyn()), None])
    }

    /// Kinks of the margin layer:
    /// - simplified (training): `g` switches from `k·z` to `z` at `z = 0`: near when the
    ///   target logit `z_i` of some row has different signs (`z > 0` or not) at `minus` and
    ///   `plus` (`z` is linear along a single coordinate, so endpoints decide; along a
    ///   general direction it is quadratic and a double crossing within one step is missed);
    /// - L-Softmax (training): rows with `‖x_i‖` or `‖w_{y_i}‖` within `100·ε` of zero at
    ///   either point, where the angle is undefined (and `g = z` by convention below
    ///   [`crate::reference::DEGENERATE_NORM_PRODUCT`]);
    /// - normalised margins (both modes): any `‖x_i‖` or `‖w_j‖` within `100·ε` of zero
    ///   (every logit depends on every norm);
    /// - ArcFace (training): a target `cos θ` on different sides of the clamp `1 − ε` or of
    ///   the fallback threshold `cos(π − M)` (where the target logit jumps) at the two points;
    /// - combined (training): a target `cos θ` on different sides of `±(1 − ε)`.
    ///
    /// `ε` is taken as half the largest coordinate change between `minus` and `plus`.
    fn near_kink(&self, mode: Mode, minus: &[ArrayViewD<f64>], plus: &[ArrayViewD<f64>]) -> bool {
        let normalised = self.margin.is_normalised();
        if (mode == Mode::Infer && !normalised) || matches!(self.margin, Margin::Plain) {
            return false;
        }
        let (Ok((xm, wm, labels)), Ok((xp, wp, _))) = (self.unpack(minus), self.unpack(plus))
        else {
            return false;
        };
        let step = (&xm - &xp)
            .iter()
            .chain((&wm - &wp).iter())
            .fold(0.0f64, |acc, v| acc.max(v.abs()))
            / 2.0;
        let limit = DEGENERATE_STEPS * step;
        if normalised {
            let tiny = |a: ArrayView2<f64>| a.rows().into_iter().any(|r| norm(r) <= limit);
            if tiny(xm) || tiny(xp) || tiny(wm) || tiny(wp) {
                return true;
            }
            if mode == Mode::Infer {
                return false;
            }
        }
        let rows = |x: ArrayView2<f64>, w: ArrayView2<f64>| -> Array2<f64> {
            // Per row: z, a, b.
            let mut r = Array2::zeros((labels.len(), 3));
            for (i, &y) in labels.iter().enumerate() {
                r[[i, 0]] = x.row(i).dot(&w.row(y));
                r[[i, 1]] = norm(x.row(i));
                r[[i, 2]] = norm(w.row(y));
            }
            r
        };
        let (rm, rp) = (rows(xm, wm), rows(xp, wp));
        let cos = |r: &Array2<f64>, i: usize| r[[i, 0]] / (r[[i, 1]] * r[[i, 2]]);
        let eps = crate::margin::ANGLE_CLAMP;
        let crosses = |i: usize, t: f64| (cos(&rm, i) > t) != (cos(&rp, i) > t);
        (0..labels.len()).any(|i| match self.margin {
            Margin::Simplified { .. } => (rm[[i, 0]] > 0.0) != (rp[[i, 0]] > 0.0),
            Margin::LSoftmax { .. } => [rm[[i, 1]], rm[[i, 2]], rp[[i, 1]], rp[[i, 2]]]
                .iter()
                .any(|&n| n <= limit),
            Margin::ArcFace { m, .. } => {
                let th = (std::f64::consts::PI - f64::from(m)).cos();
                crosses(i, 1.0 - eps) || crosses(i, th)
            }
            Margin::Combined { .. } => crosses(i, 1.0 - eps) || crosses(i, -1.0 + eps),
            Margin::Plain | Margin::CosFace { .. } | Margin::SphereFace { .. } => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};

    fn inputs() -> Vec<ArrayD<f64>> {
        vec![
            array![[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]].into_dyn(),
            array![[1.0, 0.0], [0.0, 1.0]].into_dyn(),
            Array1::from(vec![0.0, 1.0, 0.0]).into_dyn(),
        ]
    }

    fn views(a: &[ArrayD<f64>]) -> Vec<ArrayViewD<'_, f64>> {
        a.iter().map(|a| a.view()).collect()
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        let op = MarginOperator::new(Margin::simplified(0.5).unwrap());
        let inp = inputs();
        let out = op.forward(Mode::Train, &views(&inp)).unwrap();
        // z = X·Wᵀ = [[1, 2], [0.5, -1], [3, 0]]; targets (0, 1, 0): 1 -> 0.5, -1 stays, 3 -> 1.5.
        let want = array![[0.5, 2.0], [0.5, -1.0], [1.5, 0.0]].into_dyn();
        assert_eq!(out, vec![want]);
        assert_eq!(
            op.infer_shape(&[vec![3, 2], vec![2, 2], vec![3]]).unwrap(),
            vec![vec![3, 2]]
        );
    }

    #[test]
    fn invalid_inputs_are_named() {
        let op = MarginOperator::new(Margin::plain());
        type Edit = Box<dyn Fn(&mut Vec<ArrayD<f64>>)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v[2][[1]] = 2.0), "label 2 of row 1"),
            (Box::new(|v| v[2][[1]] = -1.0), "label -1 of row 1"),
            (Box::new(|v| v[2][[0]] = 0.5), "not an integer"),
            (
                Box::new(|v| v[0][[2, 1]] = f64::NAN),
                "x holds a non-finite",
            ),
            (Box::new(|v| v[1][[0, 0]] = f64::INFINITY), "w holds"),
            (
                Box::new(|v| v[1] = ArrayD::zeros(vec![2, 3])),
                "widths (D) must match",
            ),
            (
                Box::new(|v| v[2] = ArrayD::zeros(vec![2])),
                "labels has 2 entries",
            ),
            (
                Box::new(|v| v[0] = ArrayD::zeros(vec![3, 2, 1])),
                "x must have rank 2",
            ),
            (Box::new(|v| v.truncate(2)), "takes 3 inputs"),
        ];
        for (edit, needle) in cases {
            let mut inp = inputs();
            edit(&mut inp);
            let msg = op
                .forward(Mode::Train, &views(&inp))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        }
    }

    #[test]
    fn backward_checks_dout_and_marks_labels_non_differentiable() {
        let op = MarginOperator::new(Margin::lsoftmax(2, 0.0).unwrap());
        let inp = inputs();
        let v = views(&inp);
        let out = op.forward(Mode::Train, &v).unwrap();
        let ov: Vec<_> = out.iter().map(|a| a.view()).collect();
        let bad = ArrayD::<f64>::zeros(vec![2, 3]);
        let err = op
            .backward(Mode::Train, &v, &ov, &[bad.view()])
            .unwrap_err();
        assert!(err.to_string().contains("dout has shape [2, 3]"), "{err}");
        let g = op.backward(Mode::Train, &v, &ov, &ov).unwrap();
        assert_eq!(g.len(), 3);
        assert!(g[0].is_some() && g[1].is_some() && g[2].is_none());
        assert_eq!(op.differentiable(), vec![true, true, false]);
    }

    #[test]
    fn near_kink_sees_sign_changes_and_degenerate_rows() {
        let op = MarginOperator::new(Margin::simplified(0.5).unwrap());
        let inp = inputs();
        let (mut minus, mut plus) = (inp.clone(), inp.clone());
        // Row 1 (label 1): z = x_1·w_1 = -1; move x[1,1] by ±1.5 around -1 -> z in {-2.5, 0.5}.
        minus[0][[1, 1]] = -2.5;
        plus[0][[1, 1]] = 0.5;
        assert!(op.near_kink(Mode::Train, &views(&minus), &views(&plus)));
        assert!(!op.near_kink(Mode::Infer, &views(&minus), &views(&plus)));
        plus[0][[1, 1]] = -0.5;
        assert!(!op.near_kink(Mode::Train, &views(&minus), &views(&plus)));

        let ls = MarginOperator::new(Margin::lsoftmax(2, 0.0).unwrap());
        let mut tiny = inputs();
        tiny[0].slice_mut(ndarray::s![1, ..]).fill(1e-7);
        let (mut minus, mut plus) = (tiny.clone(), tiny.clone());
        minus[0][[0, 0]] -= 1e-6;
        plus[0][[0, 0]] += 1e-6;
        assert!(ls.near_kink(Mode::Train, &views(&minus), &views(&plus)));
        let (mut minus, mut plus) = (inputs(), inputs());
        minus[0][[0, 0]] -= 1e-6;
        plus[0][[0, 0]] += 1e-6;
        assert!(!ls.near_kink(Mode::Train, &views(&minus), &views(&plus)));
    }
}
