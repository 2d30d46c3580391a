//! Weight-gradient kernel: `dW = G'ᵀ·X + diag(γ)·W` (G N×C, X N×D, W and dW C×D,
//! row-major), `G'` as in [`crate::input_grad`], and
//! `γ_j = Σ_{i: y_i = j} G_{i,y_i}·gamma_scale[i]`.
//!
//! Launch (base kernel): grid `(⌈D/64⌉, ⌈C/64⌉)`, block `(16, 16)`,
//! [`crate::params::GEMM_SHARED_BYTES`] of dynamic shared memory; the ladder variants
//! ([`margin_weight_grad_unrolled`] …) take the same arguments with their own block tile
//! and shared memory size. The K dimension is the sample index `i`: a stage of `G` is 16
//! rows of G restricted to the block's 64 classes, already `[k][class]`, and a stage of X
//! is 16 rows of X, already `[k][column]` (both staged directly, no transpose). The
//! target entry of each G row is scaled by `p_i` as it is loaded.
//!
//! γ without atomics: during the loop over samples, thread `(tx, ty)` looks at sample
//! `k0 + tx` of each stage and adds its term to a register partial if its class is one of
//! the thread's four output rows. After the loop the 16 partials of each class (one per
//! `tx`) go through shared memory and every thread sums those of its rows in `tx` order.
//! The summation order is fixed, so dW is bitwise reproducible.

use crate::device::{self, Global, GlobalMut, Shared};
use crate::ladder::ladder_kernels;
use crate::mainloop::staging::{Staging, fetch_run, with_fetch};
use crate::mainloop::tile::{MT, T, TL, micro_offset, tile, unroll};
use crate::mainloop::{self, single_stage};
use crate::margin_math::fma;
use crate::params::GradParams;

ladder_kernels! {
    params(
        p: GradParams,
        g: Global<f32>,
        x: Global<f32>,
        w: Global<f32>,
        labels: Global<u32>,
        cache_p: Global<f32>,
        gamma_scale: Global<f32>,
        dw: GlobalMut<f32>,
    );

    /// `dW = G'ᵀ·X + diag(γ)·W`; see the module docs.
    base margin_weight_grad {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * TL;
        let row0 = device::block_idx_y() as usize * TL;

        let mut gamma_part = [0.0f32; MT];
        let acc = single_stage::strided(
            n,
            Staging::Direct,
            |_, i, cl| {
                let class = row0 + cl;
                if i < n && class < c {
                    let v = g.get(i * c + class);
                    if labels.get(i) as usize == class { cache_p.get(i) * v } else { v }
                } else {
                    0.0
                }
            },
            Staging::Direct,
            |i, cl| {
                let col = col0 + cl;
                if i < n && col < d { x.get(i * d + col) } else { 0.0 }
            },
            |k0| {
                let i = k0 + tx;
                if i < n {
                    let y = labels.get(i) as usize;
                    let rel = y.wrapping_sub(row0 + ty);
                    unroll!(MT, l => {
                        if rel == T * l {
                            gamma_part[l] = fma(g.get(i * c + y), gamma_scale.get(i), gamma_part[l]);
                        }
                    });
                }
            },
        );

        // The main loop ended on a barrier, so its stages may be overwritten.
        let sh: Shared<f32> = device::dynamic_shared::<f32>();
        unroll!(MT, l => {
            sh.set((ty + T * l) * T + tx, gamma_part[l]);
        });
        device::sync_threads();
        unroll!(MT, i => {
            let class = row0 + ty + T * i;
            if class < c {
                let mut gamma = 0.0f32;
                for t in 0..T {
                    gamma += sh.get((ty + T * i) * T + t);
                }
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + tx + T * j;
                    if col < d {
                        let v = if gamma != 0.0 { fma(gamma, w.get(class * d + col), v) } else { v };
                        dw.set(class * d + col, v);
                    }
                }
            }
        });
    }

    /// The body of the weight-gradient kernel's ladder variants ([`ladder_kernels!`]): `M × M`
    /// thread tile, `STAGES` shared stages, `ld.global.nc` if `LDG`. Same arguments and
    /// results as [`margin_weight_grad`], γ bit for bit equal.
    ///
    /// γ is gathered after the main loop instead of inside it (the loop keeps only GEMM
    /// work): thread `(tx, ty)` walks samples `i ≡ tx (mod 16)` in order and adds
    /// `G_{i,y_i}·gamma_scale[i]` to the partial of its class row `y_i`, if it owns one; the
    /// 16 partials of a class are then summed in `tx` order, as in [`margin_weight_grad`].
    variants weight_grad_tiled<M, STAGES, LDG> {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * tile(M);
        let row0 = device::block_idx_y() as usize * tile(M);

        let (row0_32, col0_32) = (row0 as u32, col0 as u32);
        // A stage of G is `[sample][class]` and of X `[sample][column]`: both direct.
        let aligned = || {
            c.is_multiple_of(4) && d.is_multiple_of(4) && g.is_vec4_aligned() && x.is_vec4_aligned()
        };
        let acc = with_fetch!(LDG, aligned(), |fetch, UNROLL| {
            mainloop::run::<M, STAGES, UNROLL, _, _>(
                0,
                p.n,
                Staging::Direct,
                |i, cl| {
                    let mut v = fetch_run(fetch, g, i < p.n, i as usize * c, row0_32 + cl, p.c);
                    if i < p.n {
                        // Unconditional loads and selects: no branch in the main loop.
                        let rel = labels.get(i as usize).wrapping_sub(row0_32 + cl);
                        let p_i = cache_p.get(i as usize);
                        for (e, ve) in (0u32..).zip(v.iter_mut()) {
                            if e == rel {
                                *ve *= p_i;
                            }
                        }
                    }
                    v
                },
                Staging::Direct,
                |i, cl| fetch_run(fetch, x, i < p.n, i as usize * d, col0_32 + cl, p.d),
            )
        });

        let mut gamma_part = [0.0f32; M];
        let mut i = tx;
        while i < n {
            let y = labels.get(i) as usize;
            let rel = y.wrapping_sub(row0);
            unroll!(M, l => {
                if rel == micro_offset(ty, l) {
                    gamma_part[l] = fma(g.get(i * c + y), gamma_scale.get(i), gamma_part[l]);
                }
            });
            i += T;
        }
        // The main loop ended on a barrier, so its stages may be overwritten.
        let sh: Shared<f32> = device::dynamic_shared::<f32>();
        unroll!(M, l => {
            sh.set(micro_offset(ty, l) * T + tx, gamma_part[l]);
        });
        device::sync_threads();
        unroll!(M, i => {
            let class = row0 + micro_offset(ty, i);
            if class < c {
                let mut gamma = 0.0f32;
                for t in 0..T {
                    gamma += sh.get(micro_offset(ty, i) * T + t);
                }
                for (j, &v) in acc[i].iter().enumerate() {
                    let col = col0 + micro_offset(tx, j);
                    if col < d {
                        let v = if gamma != 0.0 { fma(gamma, w.get(class * d + col), v) } else { v };
                        dw.set(class * d + col, v);
                    }
                }
            }
        });
    }

    vector_loads_when: "`C` and `D` are multiples of 4";
    thread_tile_in_runs: margin_weight_grad_unrolled;
    block_tile_128: margin_weight_grad_micro8;
    global_loads_nc: margin_weight_grad_ldg;
    shared_double_buffered: margin_weight_grad_dbuf;
}
