//! Row-norm kernel: `‖x_i‖` for the N rows of X and `‖w_j‖` for the C rows of W (both D
//! wide, row-major), squares summed in f64 as the host reference does.
//!
//! Launch: grid `(⌈N/8⌉ + ⌈C/8⌉)`, block `(32, 8)`, [`crate::params::NORM_SHARED_BYTES`] of
//! dynamic shared memory. The first `⌈N/8⌉` blocks take X, the rest W; each block does 8
//! rows, one per `threadIdx.y`, with 32 threads striding along the row (coalesced), then a
//! fixed-order tree reduction in shared memory (deterministic, no atomics).
//!
//! Why a separate kernel rather than norms fused into the forward GEMM: only the L-Softmax
//! training forward needs norms, so the other variants pay nothing; the pass reads X and W
//! once, O((N + C)·D) memory-bound work next to the O(N·C·D) GEMM; and its f64 sums give
//! the reference's degenerate-row decision (`‖x‖·‖w‖ < f32::MIN_POSITIVE`) and range
//! (squares of |v| > 1.8e19 overflow f32) that f32 partial sums taken from the GEMM's
//! staged tiles would not.

use crate::device::{self, Global, GlobalMut, Shared};
use crate::kernel;
use crate::margin_math::{fma64, sqrt64};
use crate::params::{NORM_LANES, NORM_ROWS_PER_BLOCK, RowNormsParams};

kernel! {
    /// `x_norms[i] = ‖x_i‖`, `w_norms[j] = ‖w_j‖` (f64); see the module docs.
    pub fn row_norms(
        p: RowNormsParams,
        x: Global<f32>,
        w: Global<f32>,
        x_norms: GlobalMut<f64>,
        w_norms: GlobalMut<f64>,
    ) {
        let lanes = NORM_LANES as usize;
        let rows_per_block = NORM_ROWS_PER_BLOCK as usize;
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let lane = device::thread_idx_x() as usize;
        let ry = device::thread_idx_y() as usize;
        let block = device::block_idx_x() as usize;
        let x_blocks = n.div_ceil(rows_per_block);
        let (src, dst, rows, row) = if block < x_blocks {
            (x, x_norms, n, block * rows_per_block + ry)
        } else {
            (w, w_norms, c, (block - x_blocks) * rows_per_block + ry)
        };

        let mut sum = 0.0f64;
        if row < rows {
            let mut k = lane;
            while k < d {
                let v = src.get(row * d + k) as f64;
                sum = fma64(v, v, sum);
                k += lanes;
            }
        }
        let sh: Shared<f64> = device::dynamic_shared::<f64>();
        let slot = ry * lanes + lane;
        sh.set(slot, sum);
        device::sync_threads();
        let mut stride = lanes / 2;
        while stride > 0 {
            if lane < stride {
                sh.set(slot, sh.get(slot) + sh.get(slot + stride));
            }
            device::sync_threads();
            stride /= 2;
        }
        if lane == 0 && row < rows {
            dst.set(row, sqrt64(sh.get(slot)));
        }
    }
}
