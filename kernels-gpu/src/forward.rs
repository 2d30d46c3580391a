//! Forward kernel: `F = X·Wᵀ` (X N×D, W C×D, F N×C, all row-major) with the margin
//! epilogue at each row's target `(i, y_i)` and the per-row cache backward reads.
//!
//! Launch: grid `(⌈C/64⌉, ⌈N/64⌉)`, block `(16, 16)`, [`crate::params::GEMM_SHARED_BYTES`]
//! of dynamic shared memory. Block `(bx, by)` computes `F[64·by.., 64·bx..]`; both operands
//! are rows with k contiguous, so both are staged transposed (`Staging::Transpose` in `gemm_tile`).
//!
//! Epilogue, train mode: the thread holding `z = F[i, y_i]` replaces it by `g` and writes
//! `p[i]`, `alpha_scale[i] = q·b/a`, `gamma_scale[i] = q·a/b` (exactly one thread per row
//! does). The normalised kinds (CosFace, ArcFace, combined, SphereFace) run on the
//! operands of [`crate::normalise::row_scale`] and read the raw norms too. L-Softmax reads `a = ‖x_i‖`, `b = ‖w_{y_i}‖` from `x_norms`, `w_norms` (the
//! [`crate::row_norms::row_norms`] kernel, run first); other margins never touch them.
//! Inference mode: plain `F`, and the cache `p = 1`, scales 0.

use crate::device::{self, Global, GlobalMut};
use crate::gemm_tile::{Staging, T, TL, gemm_main_loop, select, unroll_micro};
use crate::kernel;
use crate::margin_math::{TargetEpilogue, target_epilogue};
use crate::params::{ForwardParams, KernelMode};

kernel! {
    /// `F = X·Wᵀ` plus the margin epilogue and row cache; see the module docs.
    pub fn margin_forward(
        p: ForwardParams,
        x: Global<f32>,
        w: Global<f32>,
        labels: Global<u32>,
        x_norms: Global<f64>,
        w_norms: Global<f64>,
        out: GlobalMut<f32>,
        cache_p: GlobalMut<f32>,
        alpha_scale: GlobalMut<f32>,
        gamma_scale: GlobalMut<f32>,
    ) {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * TL;
        let row0 = device::block_idx_y() as usize * TL;

        let acc = gemm_main_loop(
            d,
            Staging::Transpose,
            |_, k, r| {
                let row = row0 + r;
                if row < n && k < d { x.get(row * d + k) } else { 0.0 }
            },
            Staging::Transpose,
            |k, cl| {
                let col = col0 + cl;
                if col < c && k < d { w.get(col * d + k) } else { 0.0 }
            },
            |_| {},
        );

        unroll_micro!(i => {
            let row = row0 + ty + T * i;
            if row < n {
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + tx + T * j;
                    if col < c {
                        out.set(row * c + col, v);
                    }
                }
                // The target entry, if this thread holds it: overwritten after the plain
                // store so the f64 epilogue is emitted once per row, not once per column.
                let y = labels.get(row) as usize;
                let rel = y.wrapping_sub(col0 + tx);
                if rel < TL && rel.is_multiple_of(T) {
                    let z = select(&acc[i], rel / T);
                    let e = match p.mode {
                        KernelMode::Infer => TargetEpilogue::plain(z),
                        KernelMode::Train => {
                            let (a, b) = if p.margin.reads_norms() {
                                (x_norms.get(row), w_norms.get(y))
                            } else {
                                (0.0, 0.0)
                            };
                            target_epilogue(&p, z, a, b)
                        }
                    };
                    out.set(row * c + y, e.g);
                    cache_p.set(row, e.p);
                    alpha_scale.set(row, e.alpha_scale);
                    gamma_scale.set(row, e.gamma_scale);
                }
            }
        });
    }
}
