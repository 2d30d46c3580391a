//! Loss and the measures the L-Softmax paper argues about: accuracy, how close features lie
//! to their class weight (compactness), and how far apart class weights are (separation).

use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

/// What one training run measured; one entry of `metrics.json`'s `runs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// The margin spec (`plain`, `simplified:k=0.5`, `lsoftmax:m=4,beta=0`), β as configured.
    pub margin: String,
    /// Fraction of test samples whose largest plain logit is their class (inference mode).
    pub test_accuracy: f64,
    /// Mean over test samples of the angle between feature `f_i` and its class weight
    /// `w_{y_i}`, `acos(f·w / (‖f‖·‖w‖))`, in degrees (samples with `‖f‖·‖w‖ = 0` left out).
    pub mean_target_angle_deg: f64,
    /// Smallest angle between two class weights `w_j`, `w_k` (`j ≠ k`), in degrees.
    pub min_class_angle_deg: f64,
    /// Mean training loss (softmax cross-entropy of the training-mode output, so with the
    /// margin applied) over the last epoch.
    pub final_train_loss: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Seed of the split, the initial weights and the batch order.
    pub seed: u64,
    /// Backend that ran the margin layer.
    pub backend: String,
    /// Feature dimension D.
    pub feature_dim: usize,
    /// β at the last iteration (L-Softmax only; 0 otherwise).
    pub final_beta: f64,
}

/// Mean softmax cross-entropy of `logits` (N×C) against `labels`, and its gradient:
/// `J = −(1/N)·Σ_i log softmax(F_i)_{y_i}`, `∂J/∂F_ij = (softmax(F_i)_j − [j = y_i]) / N`.
/// Uses the max-shifted log-sum-exp so large logits do not overflow.
pub fn softmax_cross_entropy(logits: ArrayView2<f32>, labels: &[usize]) -> (f64, Array2<f32>) {
    let n = logits.nrows();
    let mut grad = Array2::zeros(logits.dim());
    let mut total = 0.0f64;
    for (i, (row, mut g)) in logits.outer_iter().zip(grad.outer_iter_mut()).enumerate() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
        let log_sum = sum.ln();
        total += log_sum - f64::from(row[labels[i]] - max);
        for (j, (gj, &v)) in g.iter_mut().zip(row).enumerate() {
            let p = (f64::from(v - max) - log_sum).exp();
            let target = if j == labels[i] { 1.0 } else { 0.0 };
            *gj = ((p - target) / n as f64) as f32;
        }
    }
    (total / n as f64, grad)
}

/// Index of the largest value of each row (the first one on ties).
pub fn argmax_rows(a: ArrayView2<f32>) -> Vec<usize> {
    a.outer_iter()
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Fraction of `predicted` equal to `labels`.
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    let hits = predicted.iter().zip(labels).filter(|(p, y)| p == y).count();
    hits as f64 / labels.len().max(1) as f64
}

/// Angle between `u` and `v` in degrees, `acos(u·v / (‖u‖·‖v‖))` with the cosine clamped to
/// `[−1, 1]` (rounding can push it just outside); `None` if either vector is zero.
pub fn angle_deg(u: ArrayView1<f32>, v: ArrayView1<f32>) -> Option<f64> {
    let dot: f64 = u
        .iter()
        .zip(v)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let nu: f64 = u.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
    let nv: f64 = v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
    if nu == 0.0 || nv == 0.0 {
        return None;
    }
    Some((dot / (nu * nv)).clamp(-1.0, 1.0).acos().to_degrees())
}

/// Mean angle (degrees) between each feature row and the weight row of its label; rows with
/// a zero feature or weight are left out. `NaN` if every row is.
pub fn mean_target_angle_deg(
    features: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
) -> f64 {
    let angles: Vec<f64> = features
        .outer_iter()
        .zip(labels)
        .filter_map(|(f, &y)| angle_deg(f, w.row(y)))
        .collect();
    angles.iter().sum::<f64>() / angles.len() as f64
}

/// Smallest angle (degrees) between two distinct rows of `w`; `NaN` with fewer than two
/// non-zero rows.
pub fn min_class_angle_deg(w: ArrayView2<f32>) -> f64 {
    let c = w.nrows();
    let mut min = f64::NAN;
    for j in 0..c {
        for k in j + 1..c {
            if let Some(a) = angle_deg(w.row(j), w.row(k)) {
                min = if min.is_nan() { a } else { min.min(a) };
            }
        }
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cross_entropy_of_known_logits() {
        // Row 0: logits (0, ln 3): softmax (1/4, 3/4), label 1: loss = ln(4/3).
        // Row 1: equal logits, label 0: loss = ln 2.
        let logits = array![[0.0f32, 3f32.ln()], [5.0, 5.0]];
        let (loss, g) = softmax_cross_entropy(logits.view(), &[1, 0]);
        let expected = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        let want = array![[0.125f32, -0.125], [-0.25, 0.25]];
        assert!(
            g.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{g}"
        );
        // Large logits do not overflow.
        let (big, _) = softmax_cross_entropy(array![[1e4f32, 0.0]].view(), &[1]);
        assert!((big - 1e4).abs() < 1e-2);
    }

    #[test]
    fn angles_of_known_vectors() {
        let w = array![[1.0f32, 0.0], [0.0, 2.0], [-1.0, 1.0]];
        // Pairs: (w0, w1) 90°, (w0, w2) 135°, (w1, w2) 45°.
        assert!((min_class_angle_deg(w.view()) - 45.0).abs() < 1e-9);
        let f = array![[2.0f32, 2.0], [0.0, 0.0], [0.0, -3.0]];
        // Row 0 vs w_0: 45°; row 1 is zero (left out); row 2 vs w_1: 180°.
        let m = mean_target_angle_deg(f.view(), w.view(), &[0, 2, 1]);
        assert!((m - 112.5).abs() < 1e-9, "{m}");
        assert_eq!(
            argmax_rows(array![[1.0f32, 3.0, 3.0], [2.0, 1.0, 0.0]].view()),
            vec![1, 0]
        );
        assert_eq!(accuracy(&[1, 0, 2], &[1, 1, 2]), 2.0 / 3.0);
    }
}
