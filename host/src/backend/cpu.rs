//! The CPU backend: [`crate::reference::fast`].

use ndarray::{Array2, ArrayView2};

use super::Backend;
use crate::error::Result;
use crate::layer::{Grads, RowCache};
use crate::margin::{Margin, Mode};
use crate::reference::fast;

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
