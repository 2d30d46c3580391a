//! `lsoftmax gradcheck`: the gradient checks of the margin operator on a random problem,
//! for a list of margins, both modes and both losses, plus the random-projection check.

use ndarray::{Array1, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lsoftmax_host::error::Result;
use lsoftmax_host::gradcheck::{self, Config, Loss, Report};
use lsoftmax_host::margin::{Margin, Mode};
use lsoftmax_host::operator::MarginOperator;

/// The margins checked when none is given.
pub fn default_margins() -> Vec<Margin> {
    let mut v = vec![Margin::Plain];
    for k in [0.3, 1.0] {
        v.extend(Margin::simplified(k));
    }
    for m in 1..=4 {
        for beta in [0.0, 0.7] {
            v.extend(Margin::lsoftmax(m, beta));
        }
    }
    v.extend(Margin::sphereface(4, 0.0));
    v.extend(Margin::sphereface(2, 0.7));
    v.extend(Margin::cosface(16.0, 0.2));
    v.extend(Margin::arcface(8.0, 0.5));
    v.extend(Margin::combined(8.0, 1.0, 0.2, 0.1));
    v.extend(Margin::combined(8.0, 1.35, 0.25, 0.1));
    v
}

/// `[x, w, labels]`: x, w uniform in `[−1, 1)`, labels uniform in `0..c`, from `seed`.
pub fn random_problem(n: usize, d: usize, c: usize, seed: u64) -> Vec<ArrayD<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform =
        |shape: Vec<usize>| ArrayD::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0));
    let x = uniform(vec![n, d]);
    let w = uniform(vec![c, d]);
    let labels = Array1::from_shape_simple_fn(n, || rng.random_range(0..c) as f64).into_dyn();
    vec![x, w, labels]
}

/// Every check of `lsoftmax gradcheck` on `inputs` (`[x, w, labels]`): for each margin and
/// both modes, the losses `½‖F‖²` and `Σ F ⊙ R`, then (if `directions > 0`) the
/// random-projection check. One report per check, in that order.
pub fn check_margins(
    margins: &[Margin],
    inputs: &[ArrayD<f64>],
    config: &Config,
    directions: usize,
) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for &margin in margins {
        let op = MarginOperator::new(margin);
        for mode in [Mode::Train, Mode::Infer] {
            for loss in [Loss::HalfSquaredNorm, Loss::Projection] {
                reports.push(gradcheck::gradcheck(&op, mode, inputs, loss, config)?);
            }
            if directions > 0 {
                reports.push(gradcheck::directional_check(
                    &op, mode, inputs, directions, config,
                )?);
            }
        }
    }
    Ok(reports)
}
