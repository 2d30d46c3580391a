//! Gradient check of any [`Operator`]: the analytic backward pass against central finite
//! differences in f64.
//!
//! A scalar loss `J(F)` mixes all outputs; its upstream gradient `G = ∂J/∂F` goes into
//! `backward`, and each input element `θ` is checked against
//! `n = (J(θ + ε) − J(θ − ε)) / 2ε`. Two losses:
//! - [`Loss::HalfSquaredNorm`]: `J = ½‖F‖²`, `G = F` (the source article's check);
//! - [`Loss::Projection`]: `J = Σ F ⊙ R` with a fixed random `R`, `G = R`: linear in `F`, so
//!   every output element gets an independent weight and no error can cancel by symmetry.
//!
//! A point passes when `|a − n| <= atol + rtol·|n|` (PyTorch's `gradcheck` rule).
//! Defaults `ε = 1e-6`, `atol = 1e-6`, `rtol = 1e-4`: the central difference's truncation
//! error is `ε²/6·|J'''| ≈ 2e-13·|J'''|` and its rounding error about `u·|J|/ε ≈ 1e-10·|J|`
//! (`u = 1.1e-16`); for the problems checked here (`|J| ≲ 1e2`, `|J'''| ≲ 1e2`) both stay
//! below 1e-7, a decade under `atol`, while a wrong factor anywhere in a gradient gives
//! errors of the size of the gradient itself (≳ 1e-2), far above `atol + rtol·|n|`.
//!
//! Points where the operator says the two evaluation points straddle a kink
//! ([`Operator::near_kink`]) are skipped and counted.
//!
//! For large inputs, [`directional_check`] compares `vᵀ(J u)` (a central difference of
//! `Σ v ⊙ F` along a random direction `u`) with `(vᵀJ) u = ⟨backward(v), u⟩`: one pair of
//! forward passes per direction instead of one per input element.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD, Dimension, Zip};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::margin::Mode;
use crate::operator::Operator;

/// The scalar loss whose gradient is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `J = ½‖F‖²`, upstream gradient `F`.
    HalfSquaredNorm,
    /// `J = Σ F ⊙ R`, `R` uniform in `[−1, 1)` from the config's seed; upstream gradient `R`.
    Projection,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::HalfSquaredNorm => "J=1/2|F|^2",
            Loss::Projection => "J=sum(F*R)",
        })
    }
}

/// Step and tolerances of a check; see the module docs for the defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Central-difference step `ε`.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (times `|numeric|`).
    pub rtol: f64,
    /// Seed of `R` (projection loss) and of the random directions.
    pub seed: u64,
    /// Skip points that [`Operator::near_kink`] flags; `false` checks them anyway.
    pub skip_kinks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            eps: 1e-6,
            atol: 1e-6,
            rtol: 1e-4,
            seed: 0,
            skip_kinks: true,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !(ok(self.eps) && self.eps > 0.0 && ok(self.atol) && ok(self.rtol)) {
            return Err(Error::Shape(format!(
                "gradcheck needs eps > 0 and atol, rtol >= 0 (finite); got eps={}, atol={}, rtol={}",
                self.eps, self.atol, self.rtol
            )));
        }
        Ok(())
    }

    /// `|a − n| <= atol + rtol·|n|`.
    pub fn close(&self, analytic: f64, numeric: f64) -> bool {
        (analytic - numeric).abs() <= self.atol + self.rtol * numeric.abs()
    }
}

/// One compared value: where, both gradients and their errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Element index in the input (for a directional check: `[direction]`).
    pub index: Vec<usize>,
    /// From `backward`.
    pub analytic: f64,
    /// From central differences.
    pub numeric: f64,
    /// `|a − n|`.
    pub abs_err: f64,
    /// `|a − n| / max(|a| + |n|, 1e-300)`.
    pub rel_err: f64,
    /// `|a − n| / (atol + rtol·|n|)`: above 1 fails; the worst point maximises it.
    pub tol_ratio: f64,
}

impl Point {
    fn new(index: Vec<usize>, analytic: f64, numeric: f64, config: &Config) -> Self {
        let abs_err = (analytic - numeric).abs();
        let bound = config.atol + config.rtol * numeric.abs();
        Point {
            index,
            analytic,
            numeric,
            abs_err,
            rel_err: abs_err / (analytic.abs() + numeric.abs()).max(1e-300),
            tol_ratio: if bound > 0.0 {
                abs_err / bound
            } else if abs_err == 0.0 {
                0.0
            } else {
                f64::INFINITY
            },
        }
    }
}

/// Result of checking one input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputReport {
    /// Input name (from [`Operator::input_names`]).
    pub name: String,
    /// Points compared.
    pub checked: usize,
    /// Points skipped as near a kink.
    pub skipped: usize,
    /// Points outside the tolerance.
    pub failed: usize,
    /// The point with the largest `tol_ratio` (None if nothing was checked).
    pub worst: Option<Point>,
}

impl InputReport {
    /// No point failed.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    fn add(&mut self, p: Point) {
        self.checked += 1;
        if !p.tol_ratio.is_finite() || p.tol_ratio > 1.0 || p.numeric.is_nan() {
            self.failed += 1;
        }
        if self
            .worst
            .as_ref()
            .is_none_or(|w| p.tol_ratio > w.tol_ratio || p.tol_ratio.is_nan())
        {
            self.worst = Some(p);
        }
    }
}

/// Result of a gradient check of one operator, mode and loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// [`Operator::name`].
    pub operator: String,
    /// Mode checked.
    pub mode: Mode,
    /// Loss checked (`None` for a directional check, whose loss is `Σ v ⊙ F`).
    pub loss: Option<Loss>,
    /// Config used.
    pub config: Config,
    /// One entry per differentiable input (for a directional check: one entry, `all`).
    pub inputs: Vec<InputReport>,
}

impl Report {
    /// Every input passed.
    pub fn passed(&self) -> bool {
        self.inputs.iter().all(InputReport::passed)
    }

    /// Header line of the table that [`Report`]'s `Display` rows belong to.
    pub fn table_header() -> String {
        format!(
            "{:<32} {:<6} {:<11} {:<6} {:<10} {:>13} {:>13} {:>9} {:>9} {:>7} {:>7} {:>4}",
            "operator",
            "mode",
            "loss",
            "input",
            "worst at",
            "analytic",
            "numeric",
            "abs err",
            "rel err",
            "checked",
            "skipped",
            "ok"
        )
    }
}

impl fmt::Display for Report {
    /// One row per input, columns as in [`Report::table_header`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Train => "train",
            Mode::Infer => "infer",
        };
        let loss = self
            .loss
            .map_or_else(|| "directional".to_string(), |l| l.to_string());
        for r in &self.inputs {
            let (at, a, n, ae, re) = match &r.worst {
                Some(p) => (
                    format!("{:?}", p.index),
                    format!("{:.6e}", p.analytic),
                    format!("{:.6e}", p.numeric),
                    format!("{:.2e}", p.abs_err),
                    format!("{:.2e}", p.rel_err),
                ),
                None => Default::default(),
            };
            writeln!(
                f,
                "{:<32} {:<6} {:<11} {:<6} {:<10} {:>13} {:>13} {:>9} {:>9} {:>7} {:>7} {:>4}",
                self.operator,
                mode,
                loss,
                r.name,
                at,
                a,
                n,
                ae,
                re,
                r.checked,
                r.skipped,
                if r.passed() { "ok" } else { "FAIL" }
            )?;
        }
        Ok(())
    }
}

fn views(a: &[ArrayD<f64>]) -> Vec<ArrayViewD<'_, f64>> {
    a.iter().map(|a| a.view()).collect()
}

fn random_like(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(shape.to_vec(), || rng.random_range(-1.0..1.0))
}

/// `J` and `∂J/∂F` for `loss` at outputs `outputs`.
struct Objective {
    loss: Loss,
    r: Vec<ArrayD<f64>>,
}

impl Objective {
    fn new(op: &dyn Operator, loss: Loss, inputs: &[ArrayD<f64>], seed: u64) -> Result<Self> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape().to_vec()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let r = op
            .infer_shape(&shapes)?
            .iter()
            .map(|s| random_like(s, &mut rng))
            .collect();
        Ok(Objective { loss, r })
    }

    fn value(&self, outputs: &[ArrayD<f64>]) -> f64 {
        match self.loss {
            Loss::HalfSquaredNorm => outputs.iter().map(|f| 0.5 * f.map(|v| v * v).sum()).sum(),
            Loss::Projection => outputs.iter().zip(&self.r).map(|(f, r)| dot(f, r)).sum(),
        }
    }

    fn grad(&self, outputs: &[ArrayD<f64>]) -> Vec<ArrayD<f64>> {
        match self.loss {
            Loss::HalfSquaredNorm => outputs.to_vec(),
            Loss::Projection => self.r.clone(),
        }
    }
}

fn dot(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    Zip::from(a).and(b).fold(0.0, |acc, x, y| acc + x * y)
}

fn analytic_grads(
    op: &dyn Operator,
    mode: Mode,
    inputs: &[ArrayD<f64>],
    outputs: &[ArrayD<f64>],
    output_grads: &[ArrayD<f64>],
) -> Result<Vec<Option<ArrayD<f64>>>> {
    let grads = op.backward(mode, &views(inputs), &views(outputs), &views(output_grads))?;
    let diff = op.differentiable();
    if grads.len() != inputs.len() {
        return Err(Error::Shape(format!(
            "{}: backward returned {} gradients for {} inputs",
            op.name(),
            grads.len(),
            inputs.len()
        )));
    }
    for (k, (g, x)) in grads.iter().zip(inputs).enumerate() {
        match g {
            Some(g) if g.shape() != x.shape() => {
                return Err(Error::Shape(format!(
                    "{}: gradient of input {k} has shape {:?}, the input {:?}",
                    op.name(),
                    g.shape(),
                    x.shape()
                )));
            }
            None if diff.get(k).copied().unwrap_or(false) => {
                return Err(Error::Shape(format!(
                    "{}: input {k} is differentiable but backward returned no gradient",
                    op.name()
                )));
            }
            _ => {}
        }
    }
    Ok(grads)
}

/// Element-wise check of every differentiable input of `op` at `inputs` for `loss`.
///
/// Costs two forward passes per input element: use [`directional_check`] for big shapes.
pub fn gradcheck(
    op: &dyn Operator,
    mode: Mode,
    inputs: &[ArrayD<f64>],
    loss: Loss,
    config: &Config,
) -> Result<Report> {
    config.validate()?;
    let objective = Objective::new(op, loss, inputs, config.seed)?;
    let outputs = op.forward(mode, &views(inputs))?;
    let grads = analytic_grads(op, mode, inputs, &outputs, &objective.grad(&outputs))?;
    let names = op.input_names();
    let (mut minus, mut plus) = (inputs.to_vec(), inputs.to_vec());
    let mut reports = Vec::new();
    for (k, grad) in grads.iter().enumerate() {
        let Some(grad) = grad else { continue };
        let mut report = InputReport {
            name: names.get(k).cloned().unwrap_or_else(|| format!("#{k}")),
            checked: 0,
            skipped: 0,
            failed: 0,
            worst: None,
        };
        for (index, &theta) in inputs[k].indexed_iter() {
            minus[k][&index] = theta - config.eps;
            plus[k][&index] = theta + config.eps;
            if config.skip_kinks && op.near_kink(mode, &views(&minus), &views(&plus)) {
                report.skipped += 1;
            } else {
                let jp = objective.value(&op.forward(mode, &views(&plus))?);
                let jm = objective.value(&op.forward(mode, &views(&minus))?);
                let numeric = (jp - jm) / (2.0 * config.eps);
                report.add(Point::new(
                    index.slice().to_vec(),
                    grad[&index],
                    numeric,
                    config,
                ));
            }
            minus[k][&index] = theta;
            plus[k][&index] = theta;
        }
        reports.push(report);
    }
    Ok(Report {
        operator: op.name(),
        mode,
        loss: Some(loss),
        config: *config,
        inputs: reports,
    })
}

/// Random-projection check: for `directions` random `u` (uniform in `[−1, 1)` on every
/// differentiable input, 0 on the others) and a random `v` on the outputs, compares
/// `(Σ v⊙F(θ + εu) − Σ v⊙F(θ − εu)) / 2ε` with `Σ_k ⟨backward(v)_k, u_k⟩`.
///
/// The report has one entry `all` whose points are indexed `[direction]`.
pub fn directional_check(
    op: &dyn Operator,
    mode: Mode,
    inputs: &[ArrayD<f64>],
    directions: usize,
    config: &Config,
) -> Result<Report> {
    config.validate()?;
    let objective = Objective::new(op, Loss::Projection, inputs, config.seed)?;
    let outputs = op.forward(mode, &views(inputs))?;
    let grads = analytic_grads(op, mode, inputs, &outputs, &objective.grad(&outputs))?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut report = InputReport {
        name: "all".into(),
        checked: 0,
        skipped: 0,
        failed: 0,
        worst: None,
    };
    for dir in 0..directions {
        let u: Vec<Option<ArrayD<f64>>> = grads
            .iter()
            .zip(inputs)
            .map(|(g, x)| g.as_ref().map(|_| random_like(x.shape(), &mut rng)))
            .collect();
        let shifted = |sign: f64| -> Vec<ArrayD<f64>> {
            inputs
                .iter()
                .zip(&u)
                .map(|(x, u)| match u {
                    Some(u) => x + &(u * (sign * config.eps)),
                    None => x.clone(),
                })
                .collect()
        };
        let (minus, plus) = (shifted(-1.0), shifted(1.0));
        if config.skip_kinks && op.near_kink(mode, &views(&minus), &views(&plus)) {
            report.skipped += 1;
            continue;
        }
        let jp = objective.value(&op.forward(mode, &views(&plus))?);
        let jm = objective.value(&op.forward(mode, &views(&minus))?);
        let numeric = (jp - jm) / (2.0 * config.eps);
        let analytic: f64 = grads
            .iter()
            .zip(&u)
            .filter_map(|(g, u)| Some(dot(g.as_ref()?, u.as_ref()?)))
            .sum();
        report.add(Point::new(vec![dir], analytic, numeric, config));
    }
    Ok(Report {
        operator: op.name(),
        mode,
        loss: None,
        config: *config,
        inputs: vec![report],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::margin::Margin;
    use crate::operator::MarginOperator;
    use crate::reference::naive;
    use ndarray::{Array1, Array2, Ix2};

    /// Random problem with x, w uniform in [−1, 1) and labels covering the classes.
    fn problem(n: usize, d: usize, c: usize, seed: u64) -> Vec<ArrayD<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = random_like(&[n, d], &mut rng);
        let w = random_like(&[c, d], &mut rng);
        let labels = Array1::from_shape_fn(n, |i| ((i + seed as usize) % c) as f64).into_dyn();
        vec![x, w, labels]
    }

    fn all_margins() -> Vec<Margin> {
        let mut v = vec![
            Margin::plain(),
            Margin::simplified(0.3).unwrap(),
            Margin::simplified(1.0).unwrap(),
        ];
        for m in 1..=4 {
            for beta in [0.0, 0.7] {
                v.push(Margin::lsoftmax(m, beta).unwrap());
                v.push(Margin::sphereface(m, beta).unwrap());
            }
        }
        v.extend([
            Margin::cosface(4.0, 0.35).unwrap(),
            Margin::arcface(4.0, 0.5).unwrap(),
            Margin::arcface(2.0, 1.2).unwrap(),
            Margin::combined(4.0, 1.0, 0.3, 0.2).unwrap(),
            Margin::combined(3.0, 2.5, 0.4, 0.1).unwrap(),
        ]);
        v
    }

    #[test]
    fn every_margin_variant_mode_and_loss_passes() {
        let inputs = problem(5, 4, 3, 7);
        for margin in all_margins() {
            let op = MarginOperator::new(margin);
            for mode in [Mode::Train, Mode::Infer] {
                for loss in [Loss::HalfSquaredNorm, Loss::Projection] {
                    let r = gradcheck(&op, mode, &inputs, loss, &Config::default()).unwrap();
                    assert!(r.passed(), "{}\n{r}", Report::table_header());
                    assert_eq!(r.inputs.len(), 2, "x and w, not labels");
                    assert_eq!(r.inputs[0].checked + r.inputs[0].skipped, 20);
                    assert_eq!(r.inputs[1].checked + r.inputs[1].skipped, 12);
                    // The check is not vacuous: gradients are of order one.
                    let worst = r.inputs[0].worst.as_ref().unwrap();
                    assert!(worst.numeric.is_finite());
                }
                let r = directional_check(&op, mode, &inputs, 4, &Config::default()).unwrap();
                assert!(r.passed(), "{r}");
                assert_eq!(r.inputs[0].checked, 4);
            }
        }
    }

    /// The margin operator with a deliberately wrong backward: `scale` times the true dW,
    /// and optionally the plain (margin-free) gradient, as an implementation that forgets
    /// the margin's `p`, `q` would produce.
    struct Wrong {
        inner: MarginOperator,
        dw_scale: f64,
        forget_margin: bool,
    }

    impl Operator for Wrong {
        fn name(&self) -> String {
            format!("wrong[{}]", self.inner.margin)
        }
        fn input_names(&self) -> Vec<String> {
            self.inner.input_names()
        }
        fn differentiable(&self) -> Vec<bool> {
            self.inner.differentiable()
        }
        fn infer_shape(&self, s: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
            self.inner.infer_shape(s)
        }
        fn forward(&self, mode: Mode, inputs: &[ArrayViewD<f64>]) -> Result<Vec<ArrayD<f64>>> {
            self.inner.forward(mode, inputs)
        }
        fn backward(
            &self,
            mode: Mode,
            inputs: &[ArrayViewD<f64>],
            _outputs: &[ArrayViewD<f64>],
            output_grads: &[ArrayViewD<f64>],
        ) -> Result<Vec<Option<ArrayD<f64>>>> {
            let (x, w, labels) = self.inner.unpack(inputs)?;
            let g = output_grads[0].view().into_dimensionality::<Ix2>().unwrap();
            let margin = if self.forget_margin {
                Margin::plain()
            } else {
                self.inner.margin
            };
            let (dx, dw): (Array2<f64>, Array2<f64>) =
                naive::backward(x, w, &labels, margin, mode, g);
            Ok(vec![
                Some(dx.into_dyn()),
                Some((dw * self.dw_scale).into_dyn()),
                None,
            ])
        }
    }

    #[test]
    fn a_wrong_backward_fails() {
        let inputs = problem(5, 4, 3, 7);
        let config = Config::default();
        // A dropped factor of 2 on dW: x passes, w fails, for both losses and directions.
        let halved = Wrong {
            inner: MarginOperator::new(Margin::lsoftmax(2, 0.0).unwrap()),
            dw_scale: 0.5,
            forget_margin: false,
        };
        for loss in [Loss::HalfSquaredNorm, Loss::Projection] {
            let r = gradcheck(&halved, Mode::Train, &inputs, loss, &config).unwrap();
            assert!(!r.passed());
            assert!(r.inputs[0].passed(), "{r}");
            assert!(!r.inputs[1].passed(), "{r}");
            assert!(r.to_string().contains("FAIL"));
        }
        let r = directional_check(&halved, Mode::Train, &inputs, 3, &config).unwrap();
        assert_eq!(r.inputs[0].failed, 3, "{r}");
        // An error of 0.1% is still caught (rtol is 1e-4).
        let slightly = Wrong {
            dw_scale: 1.001,
            ..halved
        };
        let r = gradcheck(&slightly, Mode::Train, &inputs, Loss::Projection, &config).unwrap();
        assert!(!r.inputs[1].passed(), "{r}");
        // Forgetting the margin's gradient in backward: both inputs fail in training mode,
        // and nothing fails in inference mode, where the plain gradient is right.
        for m in [2, 3, 4] {
            let forgot = Wrong {
                inner: MarginOperator::new(Margin::lsoftmax(m, 0.0).unwrap()),
                dw_scale: 1.0,
                forget_margin: true,
            };
            let r = gradcheck(&forgot, Mode::Train, &inputs, Loss::Projection, &config).unwrap();
            assert!(!r.inputs[0].passed() && !r.inputs[1].passed(), "{r}");
            let r = gradcheck(&forgot, Mode::Infer, &inputs, Loss::Projection, &config).unwrap();
            assert!(r.passed(), "{r}");
        }
    }

    #[test]
    fn points_straddling_the_simplified_kink_are_skipped_and_counted() {
        // Row 0 has target logit z = x_0·w_0 = 1e-8 > 0, a hair right of the kink at 0:
        // moving any coordinate of x_0 or w_0 by ±1e-6 (each ~0.5 in size) crosses it.
        let x = ndarray::array![[0.5, 0.5], [0.3, -0.8]];
        let mut w = ndarray::array![[0.5, -0.5], [0.2, 0.9]];
        w[[0, 1]] = -0.5 + 1e-8 / 0.5;
        let labels = Array1::from(vec![0.0, 1.0]).into_dyn();
        let inputs = vec![x.into_dyn(), w.into_dyn(), labels];
        let op = MarginOperator::new(Margin::simplified(0.3).unwrap());
        let config = Config::default();
        let r = gradcheck(&op, Mode::Train, &inputs, Loss::Projection, &config).unwrap();
        assert!(r.passed(), "{r}");
        assert_eq!(r.inputs[0].skipped, 2, "x[0, *]: {r}");
        assert_eq!(r.inputs[0].checked, 2);
        assert_eq!(r.inputs[1].skipped, 2, "w[0, *]: {r}");
        assert_eq!(r.inputs[1].checked, 2);
        // Without skipping, the difference across the kink disagrees with either side's
        // derivative: the skip is what keeps the check meaningful.
        let no_skip = Config {
            skip_kinks: false,
            ..config
        };
        let r = gradcheck(&op, Mode::Train, &inputs, Loss::Projection, &no_skip).unwrap();
        assert!(!r.passed(), "{r}");
        assert_eq!(r.inputs[0].skipped + r.inputs[1].skipped, 0);
        // In inference mode there is no kink and nothing is skipped.
        let r = gradcheck(&op, Mode::Infer, &inputs, Loss::Projection, &config).unwrap();
        assert!(r.passed());
        assert_eq!(r.inputs[0].skipped + r.inputs[1].skipped, 0);
    }

    #[test]
    fn points_straddling_the_arcface_jump_are_skipped_and_counted() {
        // Row 0 sits 1e-9 rad past θ = π − M, where ArcFace's target jumps; a step of 1e-6
        // in x_0 or in w_0's tangential coordinate crosses back. w_0's radial coordinate
        // (w[0, 0]) does not move the angle and is checked.
        let m = 0.5f32;
        let alpha = std::f64::consts::PI - f64::from(m) + 1e-9;
        let x = ndarray::array![[alpha.cos(), alpha.sin()], [0.3, -0.8]];
        let w = ndarray::array![[1.0, 0.0], [0.2, 0.9]];
        let labels = Array1::from(vec![0.0, 1.0]).into_dyn();
        let inputs = vec![x.into_dyn(), w.into_dyn(), labels];
        let op = MarginOperator::new(Margin::arcface(4.0, m).unwrap());
        let config = Config::default();
        let r = gradcheck(&op, Mode::Train, &inputs, Loss::Projection, &config).unwrap();
        assert!(r.passed(), "{r}");
        assert_eq!(r.inputs[0].skipped, 2, "x[0, *]: {r}");
        assert_eq!(r.inputs[1].skipped, 1, "w[0, 1]: {r}");
        assert_eq!(r.inputs[1].checked, 3);
        let no_skip = Config {
            skip_kinks: false,
            ..config
        };
        let r = gradcheck(&op, Mode::Train, &inputs, Loss::Projection, &no_skip).unwrap();
        assert!(!r.passed(), "the jump must show when not skipped: {r}");
    }

    #[test]
    fn degenerate_lsoftmax_rows_are_skipped() {
        // Row 1 has x_1 = 0: its angle is undefined.
        let mut inputs = problem(3, 3, 2, 1);
        inputs[0].slice_mut(ndarray::s![1, ..]).fill(0.0);
        let op = MarginOperator::new(Margin::lsoftmax(3, 0.0).unwrap());
        let r = gradcheck(
            &op,
            Mode::Train,
            &inputs,
            Loss::Projection,
            &Config::default(),
        )
        .unwrap();
        assert!(r.passed(), "{r}");
        // All of x_1, and w_{y_1} (shared by every row with that label) are skipped.
        assert!(r.inputs[0].skipped >= 3, "{r}");
        assert!(r.inputs[1].skipped >= 3, "{r}");
    }

    #[test]
    fn bad_config_and_inputs_are_errors() {
        let op = MarginOperator::new(Margin::plain());
        let inputs = problem(2, 2, 2, 0);
        let bad = Config {
            eps: 0.0,
            ..Config::default()
        };
        assert!(gradcheck(&op, Mode::Train, &inputs, Loss::Projection, &bad).is_err());
        let mut nan = inputs.clone();
        nan[0][[0, 0]] = f64::NAN;
        let err =
            gradcheck(&op, Mode::Train, &nan, Loss::Projection, &Config::default()).unwrap_err();
        assert!(err.to_string().contains("x holds a non-finite"), "{err}");
    }
}
