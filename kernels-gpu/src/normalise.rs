//! The normalisation kernels of CosFace, ArcFace, the combined margin and SphereFace.
//!
//! Those layers are the plain layer applied to normalised operands: `X̃ = S·X/‖x_i‖`
//! (rows of length `S`; SphereFace keeps `X`) and `Ŵ = W/‖w_j‖`. [`row_scale`] builds the
//! operands from the norms of [`crate::row_norms::row_norms`]; the GEMM kernels run on them
//! unchanged; [`row_project`] maps their gradients back through the normalisation:
//! for `ṽ = f·v/‖v‖`, `dv = (f/‖v‖)·(dṽ − (v̂·dṽ)·v̂)`, `v̂ = v/‖v‖`.
//!
//! Rows with `‖v‖` below [`DEGENERATE_NORM_PRODUCT`] (zero rows) normalise to 0 and get
//! gradient 0 (`x/‖x‖` has no derivative at 0; the convention is documented in
//! `docs/math.md`). Both kernels compute in f64 from the f32 inputs and round once.

use crate::device::{self, Global, GlobalMut, Shared};
use crate::kernel;
use crate::margin_math::DEGENERATE_NORM_PRODUCT;
use crate::params::{NORMALISE_THREADS, PROJECT_LANES, PROJECT_ROWS_PER_BLOCK, RowScaleParams};

/// `1/‖v‖`, or 0 for a degenerate row.
#[inline(always)]
pub fn inverse_norm(norm: f64) -> f64 {
    if norm < DEGENERATE_NORM_PRODUCT {
        0.0
    } else {
        1.0 / norm
    }
}

kernel! {
    /// `out[i·d + k] = (v[i·d + k]·(factor/‖v_i‖)) as f32` (0 for degenerate rows).
    /// Launch: grid `⌈rows·d/256⌉`, block 256, one element per thread, no shared memory.
    pub fn row_scale(p: RowScaleParams, v: Global<f32>, norms: Global<f64>, out: GlobalMut<f32>) {
        let (rows, d) = (p.rows as usize, p.d as usize);
        let idx = device::block_idx_x() as usize * NORMALISE_THREADS as usize
            + device::thread_idx_x() as usize;
        // `checked_div`: a plain `/` would leave a division-by-zero panic path in the PTX.
        if let (true, Some(row)) = (idx < rows * d, idx.checked_div(d)) {
            let scale = p.factor as f64 * inverse_norm(norms.get(row));
            out.set(idx, (v.get(idx) as f64 * scale) as f32);
        }
    }
}

kernel! {
    /// `dv_i = (factor/‖v_i‖)·(dṽ_i − (v̂_i·dṽ_i)·v̂_i)` with `v̂_i = v_i/‖v_i‖` (0 for
    /// degenerate rows). Launch: grid `⌈rows/8⌉`, block `(32, 8)`,
    /// [`crate::params::PROJECT_SHARED_BYTES`]: like `row_norms`, 8 rows per block, one per
    /// `threadIdx.y`, 32 lanes striding along the row (coalesced); the dot product is
    /// summed in f64 per lane and then by a fixed-order tree in shared memory
    /// (deterministic, no atomics).
    pub fn row_project(
        p: RowScaleParams,
        v: Global<f32>,
        norms: Global<f64>,
        dv_scaled: Global<f32>,
        dv: GlobalMut<f32>,
    ) {
        let lanes = PROJECT_LANES as usize;
        let d = p.d as usize;
        let lane = device::thread_idx_x() as usize;
        let ry = device::thread_idx_y() as usize;
        let row = device::block_idx_x() as usize * PROJECT_ROWS_PER_BLOCK as usize + ry;
        let live = row < p.rows as usize;
        let inv = if live { inverse_norm(norms.get(row)) } else { 0.0 };
        let base = row * d;
        let mut part = 0.0f64;
        if live {
            let mut k = lane;
            while k < d {
                part += (v.get(base + k) as f64 * inv) * dv_scaled.get(base + k) as f64;
                k += lanes;
            }
        }
        let sh: Shared<f64> = device::dynamic_shared::<f64>();
        let slot = ry * lanes + lane;
        sh.set(slot, part);
        device::sync_threads();
        let mut stride = lanes / 2;
        while stride > 0 {
            if lane < stride {
                sh.set(slot, sh.get(slot) + sh.get(slot + stride));
            }
            device::sync_threads();
            stride /= 2;
        }
        if live {
            let dot = sh.get(ry * lanes);
            let scale = p.factor as f64 * inv;
            let mut k = lane;
            while k < d {
                let vhat = v.get(base + k) as f64 * inv;
                let g = dv_scaled.get(base + k) as f64;
                dv.set(base + k, (scale * (g - dot * vhat)) as f32);
                k += lanes;
            }
        }
    }
}
