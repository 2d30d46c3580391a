//! The digits data set (8×8 handwritten digits, 1,797 images, 10 classes, shipped inside the
//! `smartcore` crate) and a seeded stratified train/test split.

use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use lsoftmax_host::error::{Error, Result};

/// Number of digit classes.
pub const DIGIT_CLASSES: usize = 10;
/// Pixels per image (8×8).
pub const DIGIT_PIXELS: usize = 64;
/// Largest pixel value of the data set (pixels are counts in `0..=16`).
const PIXEL_MAX: f32 = 16.0;

/// Labelled samples: one image per row of `x`, its class in `y`.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    /// N×64 pixels scaled to `[0, 1]` (`pixel / 16`).
    pub x: Array2<f32>,
    /// N labels in `0..10`.
    pub y: Vec<usize>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The samples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Samples {
        Samples {
            x: self.x.select(Axis(0), idx),
            y: idx.iter().map(|&i| self.y[i]).collect(),
        }
    }
}

/// Loads the 1,797 digits with pixels scaled to `[0, 1]`.
///
/// The data are embedded in `smartcore`; nothing is downloaded. Errors if the embedded
/// data do not have the documented shape or labels (a changed dependency).
pub fn load_digits() -> Result<Samples> {
    let ds = smartcore::dataset::digits::load_dataset();
    let bad = |what: String| Error::Train(format!("digits data set from smartcore: {what}"));
    if ds.num_features != DIGIT_PIXELS || ds.data.len() != ds.num_samples * DIGIT_PIXELS {
        return Err(bad(format!(
            "expected {DIGIT_PIXELS} features per sample, found {} features and {} values for {} samples",
            ds.num_features,
            ds.data.len(),
            ds.num_samples
        )));
    }
    let y = ds
        .target
        .iter()
        .map(|&t| {
            if t.fract() == 0.0 && (0.0..DIGIT_CLASSES as f32).contains(&t) {
                Ok(t as usize)
            } else {
                Err(bad(format!(
                    "label {t} is not a class in 0..{DIGIT_CLASSES}"
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if y.len() != ds.num_samples {
        return Err(bad(format!(
            "{} labels for {} samples",
            y.len(),
            ds.num_samples
        )));
    }
    let x = Array2::from_shape_vec((ds.num_samples, DIGIT_PIXELS), ds.data)
        .map_err(|e| bad(e.to_string()))?
        / PIXEL_MAX;
    Ok(Samples { x, y })
}

/// Splits `data` into (train, test) so that each class keeps the same share in both:
/// for every class, its samples are shuffled with a ChaCha8 generator seeded by `seed` and
/// `round(count · test_fraction)` of them go to the test set. Both sets are then shuffled
/// (same generator), so the split is a pure function of `seed`.
pub fn stratified_split(
    data: &Samples,
    classes: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Samples, Samples)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::Train(format!(
            "test fraction {test_fraction} must lie strictly between 0 and 1"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in 0..classes {
        let mut members: Vec<usize> = (0..data.len()).filter(|&i| data.y[i] == class).collect();
        members.shuffle(&mut rng);
        let n_test = (members.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    if train.is_empty() || test.is_empty() {
        return Err(Error::Train(format!(
            "test fraction {test_fraction} leaves {} training and {} test samples; both must be non-empty",
            train.len(),
            test.len()
        )));
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Ok((data.select(&train), data.select(&test)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_have_documented_shape_and_balanced_classes() {
        let d = load_digits().unwrap();
        assert_eq!(d.x.dim(), (1797, 64));
        assert!(d.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Every class of the UCI digits set has between 174 and 183 images.
        for c in 0..DIGIT_CLASSES {
            let n = d.y.iter().filter(|&&y| y == c).count();
            assert!((174..=183).contains(&n), "class {c} has {n} samples");
        }
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let d = load_digits().unwrap();
        let (tr, te) = stratified_split(&d, DIGIT_CLASSES, 0.25, 7).unwrap();
        assert_eq!(tr.len() + te.len(), 1797);
        for c in 0..DIGIT_CLASSES {
            let total = d.y.iter().filter(|&&y| y == c).count();
            let n_te = te.y.iter().filter(|&&y| y == c).count();
            assert_eq!(n_te, (total as f64 * 0.25).round() as usize);
        }
        // Disjoint: every image (as a pixel row) appears as often as in the full set.
        let key =
            |s: &Samples, i: usize| s.x.row(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let mut all: Vec<_> = (0..d.len()).map(|i| key(&d, i)).collect();
        let mut both: Vec<_> = (0..tr.len())
            .map(|i| key(&tr, i))
            .chain((0..te.len()).map(|i| key(&te, i)))
            .collect();
        all.sort();
        both.sort();
        assert_eq!(all, both);
        let again = stratified_split(&d, DIGIT_CLASSES, 0.25, 7).unwrap();
        assert_eq!(again.1, te);
        let other = stratified_split(&d, DIGIT_CLASSES, 0.25, 8).unwrap();
        assert_ne!(other.1, te);
        assert!(stratified_split(&d, DIGIT_CLASSES, 1.0, 7).is_err());
        assert!(stratified_split(&d, DIGIT_CLASSES, f64::NAN, 7).is_err());
    }
}
