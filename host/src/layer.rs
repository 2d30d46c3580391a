//! The layer API: `F = X·Wᵀ` with the margin applied to the target logits in training,
//! and its backward pass, on any [`Backend`].
//!
//! Backward uses the GEMM form of `docs/math.md`:
//! `dX = G'·W + diag(α)·X`, `dW = G'ᵀ·X + diag(γ)·W`, where `G'` is `G` with its target
//! entry scaled by `p_i`, `α_i = G_{i,y_i}·q_i·b_i/a_i`, `γ_j = Σ_{i: y_i = j} G_{i,y_i}·q_i·a_i/b_j`.

use ndarray::{Array2, ArrayView2};

use crate::backend::CPU;
use crate::error::Result;
use crate::margin::{Margin, Mode};
use crate::types::{Backend, backward_checked, forward_checked};
pub use crate::types::{Grads, Normalisation, RowCache, check_finite, validate_inputs};

/// Result of a forward pass: the N×C output and what backward needs.
pub struct Forward<'a> {
    /// The layer output `F` (N×C).
    pub out: Array2<f32>,
    /// Per-row values for backward.
    pub cache: RowCache,
    /// Margin used.
    pub margin: Margin,
    /// Mode used: after [`Mode::Infer`] backward is the plain fully-connected gradient.
    pub mode: Mode,
    x: ArrayView2<'a, f32>,
    w: ArrayView2<'a, f32>,
    labels: &'a [usize],
    backend: &'a dyn Backend,
}

impl std::fmt::Debug for Forward<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("backend", &self.backend.name())
            .field("margin", &self.margin)
            .field("mode", &self.mode)
            .field("out_shape", &self.out.dim())
            .finish_non_exhaustive()
    }
}

/// Forward pass on the CPU backend ([`crate::reference::fast`]).
///
/// `x`: N×D, `w`: C×D, `labels`: N values in `0..C`. Returns `F` (N×C) with
/// `F_ij = x_i·w_j`, and in [`Mode::Train`] `F_{i,y_i} = g(z_{i,y_i}, ‖x_i‖, ‖w_{y_i}‖)`.
pub fn forward<'a>(
    x: ArrayView2<'a, f32>,
    w: ArrayView2<'a, f32>,
    labels: &'a [usize],
    margin: Margin,
    mode: Mode,
) -> Result<Forward<'a>> {
    forward_on(&CPU, x, w, labels, margin, mode)
}

/// Forward pass on a chosen backend; see [`forward`].
pub fn forward_on<'a>(
    backend: &'a dyn Backend,
    x: ArrayView2<'a, f32>,
    w: ArrayView2<'a, f32>,
    labels: &'a [usize],
    margin: Margin,
    mode: Mode,
) -> Result<Forward<'a>> {
    let (out, cache) = forward_checked(backend, x, w, labels, margin, mode)?;
    Ok(Forward {
        out,
        cache,
        margin,
        mode,
        x,
        w,
        labels,
        backend,
    })
}

/// Backward pass on the backend that ran `fwd`: `dout = ∂J/∂F` (N×C) gives `dX`, `dW`.
pub fn backward(fwd: &Forward<'_>, dout: ArrayView2<'_, f32>) -> Result<Grads> {
    backward_checked(
        fwd.backend,
        fwd.x,
        fwd.w,
        fwd.labels,
        &fwd.cache,
        dout,
        fwd.out.dim(),
    )
}
