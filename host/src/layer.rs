//! The layer API: `F = X·Wᵀ` with the margin applied to the target logits in training,
//! and its backward pass, on any [`Backend`].
//!
//! Backward uses the GEMM form of MARGIN-MATH.md (see `docs/math.md`):
//! `dX = G'·W + diag(α)·X`, `dW = G'ᵀ·X + diag(γ)·W`, where `G'` is `G` with its target
//! entry scaled by `p_i`, `α_i = G_{i,y_i}·q_i·b_i/a_i`, `γ_j = Σ_{i: y_i = j} G_{i,y_i}·q_i·a_i/b_j`.

use ndarray::{Array2, ArrayView2};

use crate::backend::{Backend, CPU};
use crate::error::{Error, Result};
use crate::margin::{Margin, Mode};

/// What backward needs of each row, kept by forward so backward recomputes no norms.
///
/// For row `i` with `a = ‖x_i‖`, `b = ‖w_{y_i}‖` and the margin's `p`, `q`
/// (`∂g/∂x = p·w + q·(b/a)·x`, `∂g/∂w = p·x + q·(a/b)·w`):
/// `p[i] = p`, `alpha_scale[i] = q·b/a`, `gamma_scale[i] = q·a/b`.
/// In inference mode and on degenerate rows (`a·b = 0`): `p = 1` and both scales are 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowCache {
    /// `p_i`, the factor of `G_{i,y_i}` in `G'`.
    pub p: Vec<f32>,
    /// `q_i·b_i/a_i`: `α_i = G_{i,y_i}·alpha_scale[i]`.
    pub alpha_scale: Vec<f32>,
    /// `q_i·a_i/b_{y_i}`: `γ_j = Σ_{i: y_i = j} G_{i,y_i}·gamma_scale[i]`.
    pub gamma_scale: Vec<f32>,
    /// For the normalised margins (CosFace, ArcFace, combined, SphereFace): the norms the
    /// operands were normalised with; `p`, `alpha_scale`, `gamma_scale` then refer to the
    /// normalised operands `X̃`, `Ŵ`. `None` for the other margins.
    pub normalisation: Option<Normalisation>,
}

/// How a normalised margin built its operands: `X̃ = S·x_i/‖x_i‖` (or `X̃ = X` for
/// SphereFace) and `Ŵ = w_j/‖w_j‖`, rows of norm below `f32::MIN_POSITIVE` mapping to 0.
/// Backward rebuilds `X̃`, `Ŵ` from these, runs the plain GEMM backward on them, and maps
/// the gradients back with `dv = (f/‖v‖)·(dṽ − (v̂·dṽ)·v̂)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Normalisation {
    /// `‖x_i‖` (f64 sums of squares).
    pub x_norms: Vec<f64>,
    /// `‖w_j‖`.
    pub w_norms: Vec<f64>,
    /// `Some(S)` if the rows of `X` are rescaled to length `S`; `None` for SphereFace.
    pub x_scale: Option<f32>,
}

impl RowCache {
    /// The cache of the plain layer (inference mode) for `n` rows.
    pub fn plain(n: usize) -> Self {
        RowCache {
            p: vec![1.0; n],
            alpha_scale: vec![0.0; n],
            gamma_scale: vec![0.0; n],
            normalisation: None,
        }
    }
}

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

/// Gradients of the loss with respect to the layer inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Grads {
    /// `∂J/∂X` (N×D).
    pub dx: Array2<f32>,
    /// `∂J/∂W` (C×D).
    pub dw: Array2<f32>,
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
    validate_inputs(x, w, labels)?;
    let (out, cache) = backend.forward(x, w, labels, margin, mode)?;
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
    let (n, c) = fwd.out.dim();
    if dout.dim() != (n, c) {
        return Err(Error::Shape(format!(
            "dout is {}x{} but the layer output is {n}x{c}",
            dout.nrows(),
            dout.ncols()
        )));
    }
    check_finite("dout", dout)?;
    fwd.backend
        .backward(fwd.x, fwd.w, fwd.labels, &fwd.cache, dout)
}

/// Checks shapes, label range and finiteness of the layer inputs.
pub fn validate_inputs(x: ArrayView2<f32>, w: ArrayView2<f32>, labels: &[usize]) -> Result<()> {
    let (n, d) = x.dim();
    let (c, dw) = w.dim();
    if d != dw {
        return Err(Error::Shape(format!(
            "x is {n}x{d} and w is {c}x{dw}: their widths (D) must match"
        )));
    }
    if labels.len() != n {
        return Err(Error::Shape(format!(
            "labels has {} entries but x has {n} rows",
            labels.len()
        )));
    }
    if n == 0 || c == 0 || d == 0 {
        return Err(Error::Shape(format!(
            "empty input: N = {n}, D = {d}, C = {c} (all must be >= 1)"
        )));
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= c) {
        return Err(Error::LabelOutOfRange {
            row,
            label: label as i64,
            classes: c,
        });
    }
    check_finite("x", x)?;
    check_finite("w", w)
}

/// Errors with the first non-finite element of `a`, named `input`.
pub fn check_finite(input: &str, a: ArrayView2<f32>) -> Result<()> {
    // The scan runs on every call over inputs as large as W: a branch-free fold over
    // memory order vectorises; the index is searched only once something is wrong.
    let all_finite = match a.as_slice_memory_order() {
        Some(s) => s.iter().fold(true, |ok, v| ok & v.is_finite()),
        None => a.iter().all(|v| v.is_finite()),
    };
    if all_finite {
        return Ok(());
    }
    match a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((i, j), v)) => Err(Error::NonFinite {
            input: input.to_string(),
            index: vec![i, j],
            value: f64::from(*v),
        }),
        None => Ok(()),
    }
}
