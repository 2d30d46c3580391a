//! The feature extractor in front of the margin layer: a two-layer perceptron
//! `f = W₂·relu(W₁·x + b₁) + b₂`. The feature layer has no ReLU, so features can point in
//! any direction: the margin acts on angles, and a ReLU would confine them to one orthant.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng;

/// Weights of the perceptron, stored `out × in` like the margin layer's `W`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Hidden layer weights (H×P).
    pub w1: Array2<f32>,
    /// Hidden layer bias (H).
    pub b1: Array1<f32>,
    /// Feature layer weights (D×H).
    pub w2: Array2<f32>,
    /// Feature layer bias (D).
    pub b2: Array1<f32>,
}

/// What backward needs of a forward pass.
#[derive(Clone, Debug)]
pub struct MlpCache {
    /// Hidden pre-activations `h = X·W₁ᵀ + b₁` (N×H).
    pre: Array2<f32>,
    /// Hidden activations `relu(h)` (N×H).
    act: Array2<f32>,
}

/// Gradients of the loss with respect to the perceptron's parameters.
#[derive(Clone, Debug)]
pub struct MlpGrads {
    /// `∂J/∂W₁`.
    pub w1: Array2<f32>,
    /// `∂J/∂b₁`.
    pub b1: Array1<f32>,
    /// `∂J/∂W₂`.
    pub w2: Array2<f32>,
    /// `∂J/∂b₂`.
    pub b2: Array1<f32>,
}

/// `out × fan_in` weights uniform in `±sqrt(6 / fan_in)` (He et al. for ReLU layers; the
/// variance `2 / fan_in` keeps activations from shrinking or growing through the layer).
pub fn he_uniform(out: usize, fan_in: usize, rng: &mut impl Rng) -> Array2<f32> {
    let bound = (6.0 / fan_in as f64).sqrt() as f32;
    Array2::from_shape_simple_fn((out, fan_in), || rng.random_range(-bound..=bound))
}

impl Mlp {
    /// A perceptron `inputs → hidden → features` with He-uniform weights and zero biases.
    pub fn new(inputs: usize, hidden: usize, features: usize, rng: &mut impl Rng) -> Self {
        Mlp {
            w1: he_uniform(hidden, inputs, rng),
            b1: Array1::zeros(hidden),
            w2: he_uniform(features, hidden, rng),
            b2: Array1::zeros(features),
        }
    }

    /// Features `f = relu(X·W₁ᵀ + b₁)·W₂ᵀ + b₂` (N×D) and the cache for [`Mlp::backward`].
    pub fn forward(&self, x: ArrayView2<f32>) -> (Array2<f32>, MlpCache) {
        let pre = x.dot(&self.w1.t()) + &self.b1;
        let act = pre.mapv(|v| v.max(0.0));
        let feat = act.dot(&self.w2.t()) + &self.b2;
        (feat, MlpCache { pre, act })
    }

    /// Gradients from `dfeat = ∂J/∂f` (N×D):
    /// `∂J/∂W₂ = dfᵀ·A`, `∂J/∂b₂ = Σ_i df_i`, `dH = (df·W₂) ⊙ [h > 0]`,
    /// `∂J/∂W₁ = dHᵀ·X`, `∂J/∂b₁ = Σ_i dH_i`.
    pub fn backward(
        &self,
        x: ArrayView2<f32>,
        cache: &MlpCache,
        dfeat: ArrayView2<f32>,
    ) -> MlpGrads {
        let w2 = dfeat.t().dot(&cache.act);
        let b2 = dfeat.sum_axis(Axis(0));
        let mut dh = dfeat.dot(&self.w2);
        dh.zip_mut_with(&cache.pre, |g, &h| {
            if h <= 0.0 {
                *g = 0.0;
            }
        });
        let w1 = dh.t().dot(&x);
        let b1 = dh.sum_axis(Axis(0));
        MlpGrads { w1, b1, w2, b2 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `J = Σ f ⊙ R` in f64 from f32 parameters, for central differences.
    fn loss(m: &Mlp, x: &Array2<f32>, r: &Array2<f32>) -> f64 {
        let (f, _) = m.forward(x.view());
        f.iter()
            .zip(r)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    }

    #[test]
    fn backward_matches_central_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let m = Mlp::new(5, 7, 3, &mut rng);
        let x = Array2::from_shape_simple_fn((4, 5), || rng.random_range(-1.0f32..1.0));
        let r = Array2::from_shape_simple_fn((4, 3), || rng.random_range(-1.0f32..1.0));
        let (_, cache) = m.forward(x.view());
        let g = m.backward(x.view(), &cache, r.view());
        let eps = 1e-2f32;
        let mut checked = 0usize;
        let mut check = |name: &str, get: &dyn Fn(&mut Mlp) -> &mut [f32], analytic: &[f32]| {
            for (k, &ak) in analytic.iter().enumerate() {
                let mut plus = m.clone();
                get(&mut plus)[k] += eps;
                let mut minus = m.clone();
                get(&mut minus)[k] -= eps;
                // Skip parameters whose perturbation flips a ReLU: the loss has a kink there.
                let flips = |p: &Mlp| {
                    let (_, c) = p.forward(x.view());
                    c.pre
                        .iter()
                        .zip(&cache.pre)
                        .any(|(a, b)| (*a > 0.0) != (*b > 0.0))
                };
                if flips(&plus) || flips(&minus) {
                    continue;
                }
                let numeric = (loss(&plus, &x, &r) - loss(&minus, &x, &r)) / (2.0 * f64::from(eps));
                let a = f64::from(ak);
                // The loss is evaluated from an f32 forward pass: its rounding (~1e-7 of
                // |J| ~ 1) divided by 2·eps bounds the numeric error near 1e-5.
                let tol = 1e-3 + 1e-3 * a.abs();
                assert!(
                    (a - numeric).abs() < tol,
                    "{name}[{k}]: analytic {a}, numeric {numeric}"
                );
                checked += 1;
            }
        };
        check(
            "w1",
            &|p| p.w1.as_slice_mut().unwrap(),
            g.w1.as_slice().unwrap(),
        );
        check(
            "b1",
            &|p| p.b1.as_slice_mut().unwrap(),
            g.b1.as_slice().unwrap(),
        );
        check(
            "w2",
            &|p| p.w2.as_slice_mut().unwrap(),
            g.w2.as_slice().unwrap(),
        );
        check(
            "b2",
            &|p| p.b2.as_slice_mut().unwrap(),
            g.b2.as_slice().unwrap(),
        );
        // Most parameters must have been checked (few perturbations flip a ReLU).
        assert!(
            checked > (7 * 5 + 7 + 3 * 7 + 3) / 2,
            "only {checked} parameters checked"
        );
    }
}
