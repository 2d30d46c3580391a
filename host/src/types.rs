//! What every part of the layer shares: the backend seam ([`Backend`]), the values that
//! cross it ([`RowCache`], [`Normalisation`], [`Grads`]) and the validation of its inputs.
//!
//! This module sits below the layer API, the backends and the reference, and imports
//! none of them: each of them imports it.

use ndarray::{Array2, ArrayView2};

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

/// Gradients of the loss with respect to the layer inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Grads {
    /// `∂J/∂X` (N×D).
    pub dx: Array2<f32>,
    /// `∂J/∂W` (C×D).
    pub dw: Array2<f32>,
}

/// One way of running the layer (CPU GEMMs, emulated kernels, CUDA kernels).
///
/// Callers go through [`forward_checked`] / [`backward_checked`] (which the layer API,
/// `crate::layer::forward_on` and `crate::layer::backward`, use), which validate inputs
/// first: implementations may assume matching shapes, labels in `0..C`, finite values and
/// N, D, C >= 1. Views may have any strides.
pub trait Backend: Send + Sync {
    /// Short name used in reports and errors (`cpu`, `emulated`, `cuda`).
    fn name(&self) -> &'static str;

    /// `F` (N×C) and the per-row cache; see `crate::layer::forward`.
    fn forward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        margin: Margin,
        mode: Mode,
    ) -> Result<(Array2<f32>, RowCache)>;

    /// `dX = G'·W + diag(α)·X` and `dW = G'ᵀ·X + diag(γ)·W` from the forward cache.
    fn backward(
        &self,
        x: ArrayView2<f32>,
        w: ArrayView2<f32>,
        labels: &[usize],
        cache: &RowCache,
        dout: ArrayView2<f32>,
    ) -> Result<Grads>;
}

/// [`Backend::forward`] after [`validate_inputs`].
pub fn forward_checked(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    margin: Margin,
    mode: Mode,
) -> Result<(Array2<f32>, RowCache)> {
    validate_inputs(x, w, labels)?;
    backend.forward(x, w, labels, margin, mode)
}

/// [`Backend::backward`] after checking `dout` against the forward's `out_dim` (N×C)
/// ([`check_dout`]); the other inputs were validated by the forward that made `cache`.
pub fn backward_checked(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    labels: &[usize],
    cache: &RowCache,
    dout: ArrayView2<f32>,
    out_dim: (usize, usize),
) -> Result<Grads> {
    check_dout(dout, out_dim)?;
    backend.backward(x, w, labels, cache, dout)
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

/// Checks that `dout` is `n×c` (the layer output's shape) and finite.
pub fn check_dout(dout: ArrayView2<f32>, (n, c): (usize, usize)) -> Result<()> {
    if dout.dim() != (n, c) {
        return Err(Error::Shape(format!(
            "dout is {}x{} but the layer output is {n}x{c}",
            dout.nrows(),
            dout.ncols()
        )));
    }
    check_finite("dout", dout)
}

/// Checks that a row cache fits an `n`-row, `c`-class problem: `p`, `alpha_scale`,
/// `gamma_scale` of `n` entries, and the norms (if any) of `n` and `c`. A device backend
/// sizes the buffers its kernels trust from these lengths.
pub fn check_cache(cache: &RowCache, n: usize, c: usize) -> Result<()> {
    for (name, len) in [
        ("p", cache.p.len()),
        ("alpha_scale", cache.alpha_scale.len()),
        ("gamma_scale", cache.gamma_scale.len()),
    ] {
        if len != n {
            return Err(Error::Shape(format!(
                "row cache {name} has {len} entries but x has {n} rows"
            )));
        }
    }
    match &cache.normalisation {
        Some(nm) if nm.x_norms.len() != n || nm.w_norms.len() != c => Err(Error::Shape(format!(
            "row cache norms have {} and {} entries but x has {n} rows and w {c}",
            nm.x_norms.len(),
            nm.w_norms.len()
        ))),
        _ => Ok(()),
    }
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
