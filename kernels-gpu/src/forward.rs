//! Forward kernel: `F = X·Wᵀ` (X N×D, W C×D, F N×C, all row-major) with the margin
//! epilogue at each row's target `(i, y_i)` and the per-row cache backward reads.
//!
//! Launch (base kernel): grid `(⌈C/64⌉, ⌈N/64⌉)`, block `(16, 16)`,
//! [`crate::params::GEMM_SHARED_BYTES`] of dynamic shared memory. Block `(bx, by)`
//! computes `F[64·by.., 64·bx..]`; both operands are rows with k contiguous, so both are
//! staged transposed. The ladder variants ([`margin_forward_unrolled`] …) take the same
//! arguments with their own block tile and shared memory size.
//!
//! Epilogue, train mode: the thread holding `z = F[i, y_i]` replaces it by `g` and writes
//! `p[i]`, `alpha_scale[i] = q·b/a`, `gamma_scale[i] = q·a/b` (exactly one thread per row
//! does). The normalised kinds (CosFace, ArcFace, combined, SphereFace) run on the
//! operands of [`crate::normalise::row_scale`] and read the raw norms too. L-Softmax
//! reads `a = ‖x_i‖`, `b = ‖w_{y_i}‖` from `x_norms`, `w_norms` (the
//! [`crate::row_norms::row_norms`] kernel, run first); other margins never touch them.
//! Inference mode: plain `F`, and the cache `p = 1`, scales 0.

use crate::device::{self, Global, GlobalMut};
use crate::ladder::ladder_kernels;
use crate::mainloop::staging::{Staging, fetch_run, with_fetch};
use crate::mainloop::tile::{MT, T, TL, micro_offset, micro_owner, select, tile, unroll};
use crate::mainloop::{self, single_stage};
use crate::margin_math::{self, TargetEpilogue};
use crate::params::{ForwardParams, KernelMode};

/// The margin epilogue at row `row`'s target `(row, y)` with plain logit `z`, shared by
/// every variant of the forward kernel: writes `F[row, y] = g` and the row cache `p`,
/// `alpha_scale`, `gamma_scale` (train mode: [`margin_math::target_epilogue`]; inference: `g = z`,
/// `p = 1`, scales 0). Called by exactly one thread per row.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn target_epilogue(
    p: &ForwardParams,
    row: usize,
    y: usize,
    z: f32,
    x_norms: Global<f64>,
    w_norms: Global<f64>,
    out: GlobalMut<f32>,
    cache_p: GlobalMut<f32>,
    alpha_scale: GlobalMut<f32>,
    gamma_scale: GlobalMut<f32>,
) {
    let e = match p.mode {
        KernelMode::Infer => TargetEpilogue::plain(z),
        KernelMode::Train => {
            let (a, b) = if p.margin.reads_norms() {
                (x_norms.get(row), w_norms.get(y))
            } else {
                (0.0, 0.0)
            };
            margin_math::target_epilogue(p, z, a, b)
        }
    };
    out.set(row * p.c as usize + y, e.g);
    cache_p.set(row, e.p);
    alpha_scale.set(row, e.alpha_scale);
    gamma_scale.set(row, e.gamma_scale);
}

ladder_kernels! {
    params(
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
    );

    /// `F = X·Wᵀ` plus the margin epilogue and row cache; see the module docs.
    base margin_forward {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * TL;
        let row0 = device::block_idx_y() as usize * TL;

        let acc = single_stage::strided(
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

        unroll!(MT, i => {
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
                    target_epilogue(
                        &p, row, y, z, x_norms, w_norms, out, cache_p, alpha_scale, gamma_scale,
                    );
                }
            }
        });
    }

    /// The body of the forward kernel's ladder variants ([`ladder_kernels!`]): `M × M` thread
    /// tile, `STAGES` shared stages, `ld.global.nc` (128-bit where `D` and the pointers allow)
    /// if `LDG`. Same arguments and results as [`margin_forward`].
    variants forward_tiled<M, STAGES, LDG> {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * tile(M);
        let row0 = device::block_idx_y() as usize * tile(M);
        let (row0_32, col0_32) = (row0 as u32, col0 as u32);

        // Both operands are rows with k contiguous: runs along k of one X row and one W row.
        let aligned = || d.is_multiple_of(4) && x.is_vec4_aligned() && w.is_vec4_aligned();
        let acc = with_fetch!(LDG, aligned(), |fetch, UNROLL| {
            mainloop::run::<M, STAGES, UNROLL, _, _>(
                0,
                p.d,
                Staging::Transpose,
                |k, r| fetch_run(fetch, x, row0_32 + r < p.n, (row0 + r as usize) * d, k, p.d),
                Staging::Transpose,
                |k, cl| {
                    fetch_run(
                        fetch,
                        w,
                        col0_32 + cl < p.c,
                        (col0 + cl as usize) * d,
                        k,
                        p.d,
                    )
                },
            )
        });

        unroll!(M, i => {
            let row = row0 + micro_offset(ty, i);
            if row < n {
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + micro_offset(tx, j);
                    if col < c {
                        out.set(row * c + col, v);
                    }
                }
                // As in `margin_forward`: the target entry, overwritten after the plain store.
                let y = labels.get(row) as usize;
                let rel = y.wrapping_sub(col0);
                if rel < tile(M) && micro_owner(rel).0 == tx {
                    let z = select(&acc[i], micro_owner(rel).1);
                    target_epilogue(
                        &p, row, y, z, x_norms, w_norms, out, cache_p, alpha_scale, gamma_scale,
                    );
                }
            }
        });
    }

    vector_loads_when: "`D` is a multiple of 4";
    thread_tile_in_runs: margin_forward_unrolled;
    block_tile_128: margin_forward_micro8;
    global_loads_nc: margin_forward_ldg;
    shared_double_buffered: margin_forward_dbuf;
}
