//! Input-gradient kernel: `dX = G'·W + diag(α)·X` (G N×C, W C×D, X and dX N×D, row-major),
//! where `G'` is `G` with `G'_{i,y_i} = p_i·G_{i,y_i}` and `α_i = G_{i,y_i}·alpha_scale[i]`.
//!
//! Launch: grid `(⌈D/64⌉, ⌈N/64⌉)`, block `(16, 16)`, [`crate::params::GEMM_SHARED_BYTES`]
//! of dynamic shared memory. The K dimension is the class index. `G` rows are staged
//! transposed, and the target entry is scaled by `p_i` as it is loaded, so `G'` never
//! exists in memory; `W` rows are already `[k][column]` (`Staging::Direct` in `gemm_tile`). The
//! `diag(α)·X` term is one `fma` per output in the epilogue, skipped on rows with `α = 0`
//! (every row of the plain and simplified margins and of inference mode).

use crate::device::{self, Global, GlobalMut};
use crate::gemm_tile::{MT, Staging, T, TL, gemm_main_loop, unroll_micro};
use crate::kernel;
use crate::margin_math::fma;
use crate::params::GradParams;

kernel! {
    /// `dX = G'·W + diag(α)·X`; see the module docs.
    pub fn margin_input_grad(
        p: GradParams,
        g: Global<f32>,
        w: Global<f32>,
        x: Global<f32>,
        labels: Global<u32>,
        cache_p: Global<f32>,
        alpha_scale: Global<f32>,
        dx: GlobalMut<f32>,
    ) {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * TL;
        let row0 = device::block_idx_y() as usize * TL;

        // The rows this thread stages from G are the rows of its outputs (ty + 16·l), so
        // their label and p are loaded once and serve both the G' scaling and the epilogue.
        let mut target = [usize::MAX; MT];
        let mut p_row = [1.0f32; MT];
        for l in 0..MT {
            let row = row0 + ty + T * l;
            if row < n {
                target[l] = labels.get(row) as usize;
                p_row[l] = cache_p.get(row);
            }
        }

        let acc = gemm_main_loop(
            c,
            Staging::Transpose,
            |l, k, r| {
                let row = row0 + r;
                if row < n && k < c {
                    let v = g.get(row * c + k);
                    if k == target[l] { p_row[l] * v } else { v }
                } else {
                    0.0
                }
            },
            Staging::Direct,
            |k, cl| {
                let col = col0 + cl;
                if k < c && col < d { w.get(k * d + col) } else { 0.0 }
            },
            |_| {},
        );

        unroll_micro!(i => {
            let row = row0 + ty + T * i;
            if row < n {
                let alpha = g.get(row * c + target[i]) * alpha_scale.get(row);
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + tx + T * j;
                    if col < d {
                        let v = if alpha != 0.0 { fma(alpha, x.get(row * d + col), v) } else { v };
                        dx.set(row * d + col, v);
                    }
                }
            }
        });
    }
}
