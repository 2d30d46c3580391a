//! Stochastic gradient descent with momentum and weight decay (Caffe's update rule, as the
//! L-Softmax paper trained with it).

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension, Zip};

use lsoftmax_host::error::{Error, Result};

/// SGD hyper-parameters: `v ← μ·v + η·(g + λ·θ)`, `θ ← θ − v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate `η > 0`.
    pub lr: f32,
    /// Momentum `μ ∈ [0, 1)`.
    pub momentum: f32,
    /// Weight decay `λ >= 0` (L2 penalty `λ/2·‖θ‖²`), applied to weights, not to biases.
    pub weight_decay: f32,
}

impl Sgd {
    /// Validated hyper-parameters.
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Train(format!(
                "learning rate {lr} must be finite and > 0"
            )));
        }
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::Train(format!(
                "momentum {momentum} must lie in [0, 1)"
            )));
        }
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(Error::Train(format!(
                "weight decay {weight_decay} must be finite and >= 0"
            )));
        }
        Ok(Sgd {
            lr,
            momentum,
            weight_decay,
        })
    }

    /// One update of `param` from `grad` with its `velocity` (same shapes); `decay` says
    /// whether the weight-decay term applies (weights yes, biases no).
    pub fn step<D: Dimension>(
        &self,
        param: ArrayViewMut<f32, D>,
        grad: ArrayView<f32, D>,
        velocity: &mut Array<f32, D>,
        decay: bool,
    ) {
        let lambda = if decay { self.weight_decay } else { 0.0 };
        let (lr, mu) = (self.lr, self.momentum);
        Zip::from(param)
            .and(grad)
            .and(velocity)
            .for_each(|p, &g, v| {
                *v = mu * *v + lr * (g + lambda * *p);
                *p -= *v;
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, arr1};

    #[test]
    fn step_follows_the_update_rule() {
        let sgd = Sgd::new(0.5, 0.9, 0.1).unwrap();
        let mut p = arr1(&[1.0f32, -2.0]);
        let g = arr1(&[0.2f32, 0.4]);
        let mut v = arr1(&[0.1f32, 0.0]);
        sgd.step(p.view_mut(), g.view(), &mut v, true);
        // v = 0.9·0.1 + 0.5·(0.2 + 0.1·1) = 0.24; p = 1 − 0.24 = 0.76.
        // v = 0 + 0.5·(0.4 + 0.1·(−2)) = 0.1;     p = −2 − 0.1 = −2.1.
        assert!((v[0] - 0.24).abs() < 1e-6 && (p[0] - 0.76).abs() < 1e-6);
        assert!((v[1] - 0.1).abs() < 1e-6 && (p[1] + 2.1).abs() < 1e-6);
        let mut b = arr1(&[1.0f32]);
        let mut vb = Array1::zeros(1);
        sgd.step(b.view_mut(), g.slice(ndarray::s![..1]), &mut vb, false);
        // No decay: v = 0.5·0.2 = 0.1.
        assert!((b[0] - 0.9).abs() < 1e-6);
    }

    #[test]
    fn invalid_hyper_parameters_are_named() {
        assert!(
            Sgd::new(0.0, 0.9, 0.0)
                .unwrap_err()
                .to_string()
                .contains("learning rate 0")
        );
        assert!(
            Sgd::new(0.1, 1.0, 0.0)
                .unwrap_err()
                .to_string()
                .contains("momentum 1")
        );
        assert!(
            Sgd::new(0.1, 0.9, -1.0)
                .unwrap_err()
                .to_string()
                .contains("weight decay -1")
        );
    }
}
