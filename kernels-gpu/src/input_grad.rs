//! Input-gradient kernel: `dX = G'·W + diag(α)·X` (G N×C, W C×D, X and dX N×D, row-major),
//! where `G'` is `G` with `G'_{i,y_i} = p_i·G_{i,y_i}` and `α_i = G_{i,y_i}·alpha_scale[i]`.
//!
//! Launch (base kernel): grid `(⌈D/64⌉, ⌈N/64⌉)`, block `(16, 16)`,
//! [`crate::params::GEMM_SHARED_BYTES`] of dynamic shared memory; the ladder variants
//! ([`margin_input_grad_unrolled`] …) take the same arguments with their own block tile
//! and shared memory size. The K dimension is the class index. `G` rows are staged
//! transposed, and the target entry is scaled by `p_i` as it is loaded, so `G'` never
//! exists in memory; `W` rows are already `[k][column]` (staged directly). The
//! `diag(α)·X` term is one `fma` per output in the epilogue, skipped on rows with `α = 0`
//! (every row of the plain and simplified margins and of inference mode).

use crate::device::{self, Global, GlobalMut};
use crate::kernel;
use crate::ladder::ladder_kernels;
use crate::mainloop::staging::{Staging, fetch_run, with_fetch};
use crate::mainloop::tile::{MT, T, TL, micro_offset, tile, unroll};
use crate::mainloop::{self, single_stage};
use crate::margin_math::fma;
use crate::params::{GradParams, SplitKParams};

/// `dX[row, col] = α_row·X[row, col] + v` with `v = (G'·W)[row, col]` (skipped when
/// `α = 0`): the input-gradient epilogue every variant shares.
#[inline(always)]
fn add_alpha_x(alpha: f32, x: Global<f32>, at: usize, v: f32) -> f32 {
    if alpha != 0.0 {
        fma(alpha, x.get(at), v)
    } else {
        v
    }
}

/// `(G'·W)` restricted to classes `k_begin..k_end`, for this block's tile with an `M × M`
/// thread tile, `STAGES` shared stages and `ld.global.nc` if `LDG`. G rows are staged
/// transposed with the target entry scaled by `p_i`; W rows are already `[k][column]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_grad_tile<const M: usize, const STAGES: usize, const LDG: bool>(
    p: GradParams,
    k_begin: u32,
    k_end: u32,
    g: Global<f32>,
    w: Global<f32>,
    labels: Global<u32>,
    cache_p: Global<f32>,
) -> [[f32; M]; M] {
    let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
    let tx = device::thread_idx_x() as usize;
    let ty = device::thread_idx_y() as usize;
    let col0 = device::block_idx_x() as usize * tile(M);
    let row0 = device::block_idx_y() as usize * tile(M);
    // The one G row this thread stages: its label and p, loaded once.
    let staged_row = row0 + Staging::Transpose.run(M, T * ty + tx).1;
    let (target, p_row) = if staged_row < n {
        (labels.get(staged_row), cache_p.get(staged_row))
    } else {
        (u32::MAX, 1.0)
    };
    let col0_32 = col0 as u32;
    let aligned =
        || c.is_multiple_of(4) && d.is_multiple_of(4) && g.is_vec4_aligned() && w.is_vec4_aligned();
    with_fetch!(LDG, aligned(), |fetch, UNROLL| {
        mainloop::run::<M, STAGES, UNROLL, _, _>(
            k_begin,
            k_end,
            Staging::Transpose,
            |k, _| {
                let mut v = fetch_run(fetch, g, staged_row < n, staged_row * c, k, p.c);
                let rel = target.wrapping_sub(k);
                for (e, ve) in (0u32..).zip(v.iter_mut()) {
                    if rel == e {
                        *ve *= p_row;
                    }
                }
                v
            },
            Staging::Direct,
            |k, cl| fetch_run(fetch, w, k < p.c, k as usize * d, col0_32 + cl, p.d),
        )
    })
}

ladder_kernels! {
    params(
        p: GradParams,
        g: Global<f32>,
        w: Global<f32>,
        x: Global<f32>,
        labels: Global<u32>,
        cache_p: Global<f32>,
        alpha_scale: Global<f32>,
        dx: GlobalMut<f32>,
    );

    /// `dX = G'·W + diag(α)·X`; see the module docs.
    base margin_input_grad {
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

        let acc = single_stage::strided(
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

        unroll!(MT, i => {
            let row = row0 + ty + T * i;
            if row < n {
                let alpha = g.get(row * c + target[i]) * alpha_scale.get(row);
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + tx + T * j;
                    if col < d {
                        dx.set(row * d + col, add_alpha_x(alpha, x, row * d + col, v));
                    }
                }
            }
        });
    }

    /// The body of the input-gradient kernel's ladder variants ([`ladder_kernels!`]): `M × M`
    /// thread tile, `STAGES` shared stages, `ld.global.nc` if `LDG`. Same arguments and
    /// results as [`margin_input_grad`].
    variants input_grad_tiled<M, STAGES, LDG> {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * tile(M);
        let row0 = device::block_idx_y() as usize * tile(M);
        let acc = input_grad_tile::<M, STAGES, LDG>(p, 0, p.c, g, w, labels, cache_p);
        unroll!(M, i => {
            let row = row0 + micro_offset(ty, i);
            if row < n {
                let alpha = g.get(row * c + labels.get(row) as usize) * alpha_scale.get(row);
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + micro_offset(tx, j);
                    if col < d {
                        dx.set(row * d + col, add_alpha_x(alpha, x, row * d + col, v));
                    }
                }
            }
        });
    }

    vector_loads_when: "`C` and `D` are multiples of 4";
    thread_tile_in_runs: margin_input_grad_unrolled;
    block_tile_128: margin_input_grad_micro8;
    global_loads_nc: margin_input_grad_ldg;
    shared_double_buffered: margin_input_grad_dbuf;
}

kernel! {
    /// Split-K, first pass: block `(bx, by, z)` computes the tile of
    /// [`margin_input_grad_dbuf`] (128×128 block tile, double-buffered) of
    /// `G'·W` over classes `z·chunk .. min((z + 1)·chunk, C)` and stores it to
    /// `partial[z]` (N×D, row-major). No float atomics: [`margin_input_grad_splitk_reduce`]
    /// adds the partials in `z` order.
    pub fn margin_input_grad_splitk(
        p: SplitKParams,
        g: Global<f32>,
        w: Global<f32>,
        labels: Global<u32>,
        cache_p: Global<f32>,
        partial: GlobalMut<f32>,
    ) {
        let (n, d) = (p.grad.n as usize, p.grad.d as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * tile(8);
        let row0 = device::block_idx_y() as usize * tile(8);
        let z = device::block_idx_z();
        let k_begin = z * p.chunk;
        let k_end = if p.c_minus(k_begin) > p.chunk { k_begin + p.chunk } else { p.grad.c };
        let acc = input_grad_tile::<8, 2, true>(p.grad, k_begin, k_end, g, w, labels, cache_p);
        let slice = z as usize * n * d;
        unroll!(8, i => {
            let row = row0 + micro_offset(ty, i);
            if row < n {
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + micro_offset(tx, j);
                    if col < d {
                        partial.set(slice + row * d + col, v);
                    }
                }
            }
        });
    }

    /// Split-K, second pass: one thread per output, `dX = (((P₀ + P₁) + P₂) + …) + α·X`
    /// over the `splits` partials of [`margin_input_grad_splitk`] in order (the α term
    /// as in [`margin_input_grad`]). Grid: `⌈N·D/256⌉` blocks of 256.
    pub fn margin_input_grad_splitk_reduce(
        p: SplitKParams,
        g: Global<f32>,
        x: Global<f32>,
        labels: Global<u32>,
        alpha_scale: Global<f32>,
        partial: Global<f32>,
        dx: GlobalMut<f32>,
    ) {
        let (n, d, c) = (p.grad.n as usize, p.grad.d as usize, p.grad.c as usize);
        let at = device::global_thread_x();
        if at < n * d {
            // `at < N·D` makes D ≥ 1; `checked_div` keeps the panic path out of the PTX.
            let row = at.checked_div(d).unwrap_or(0);
            let mut v = partial.get(at);
            let mut z = 1;
            while z < p.splits as usize {
                v += partial.get(z * n * d + at);
                z += 1;
            }
            let alpha = g.get(row * c + labels.get(row) as usize) * alpha_scale.get(row);
            dx.set(at, add_alpha_x(alpha, x, at, v));
        }
    }
}
