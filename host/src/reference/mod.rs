//! Two CPU implementations of the layer.
//!
//! - [`naive`]: loops that mirror the formulas, in f64. The definition of right.
//! - [`fast`]: ndarray GEMMs plus the per-row epilogue and diagonal corrections, f32
//!   storage. The CPU backend; tested against `naive`.
//! - [`agreement`]: the check of any backend against `naive` under a derived f32 bound.

pub mod agreement;
pub mod fast;
pub mod naive;

/// Rows with `‖x_i‖·‖w_{y_i}‖` below this are degenerate and use `g = z` (plain FC for the
/// sample). It is the smallest normal f32: below it `b/a` or `a/b` can overflow f32, and
/// at exactly 0 the angle is undefined.
pub const DEGENERATE_NORM_PRODUCT: f64 = f32::MIN_POSITIVE as f64;

#[cfg(test)]
mod tests;
