//! The CPU backend: [`crate::reference::fast`].

use ndarray::{Array2, ArrayView2};

use crate::error::Result;
use crate::margin::{Margin, Mode};
use crate::reference::fast;
use crate::types::{Backend, Grads, RowCache};

/// ndarray GEMMs plus the margin epilogue, f32 storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// The CPU backend instance used by [`crate::layer::forward`].
pub static CPU: CpuBackend = CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn forward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        margin: Margin,
        mode: Mode,
    ) -> Result<(Array2<f32>, RowCache)> {
        Ok(fast::forward(x, w, labels, margin, mode))
    }

    fn backward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        cache: &RowCache,
        dout: ArrayView2<f32>,
    ) -> Result<Grads> {
        Ok(fast::backward(x, w, labels, cache, dout))
    }
}

// The agreement check (`crate::reference::agreement`) tested on this backend.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::reference::agreement::{Problem, check_backend};
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
