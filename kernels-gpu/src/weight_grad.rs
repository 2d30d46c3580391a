//! Weight-gradient kernel: `dW = G'ᵀ·X + diag(γ)·W` (G N×C, X N×D, W and dW C×D,
//! row-major), `G'` as in [`crate::input_grad`], and
//! `γ_j = Σ_{i: y_i = j} G_{i,y_i}·gamma_scale[i]`.
//!
//! Launch: grid `(⌈D/64⌉, ⌈C/64⌉)`, block `(16, 16)`, [`crate::params::GEMM_SHARED_BYTES`]
//! of dynamic shared memory. The K dimension is the sample index `i`: a stage of `G` is 16
//! rows of G restricted to the block's 64 classes, already `[k][class]`, and a stage of X
//! is 16 rows of X, already `[k][column]` (both `Staging::Direct` in `gemm_tile`, no transpose). The
//! target entry of each G row is scaled by `p_i` as it is loaded.
//!
//! γ without atomics: during the loop over samples, thread `(tx, ty)` looks at sample
//! `k0 + tx` of each stage and adds its term to a register partial if its class is one of
//! the thread's four output rows. After the loop the 16 partials of each class (one per
//! `tx`) go through shared memory and every thread sums those of its rows in `tx` order.
//! The summation order is fixed, so dW is bitwise reproducible.

use crate::device::{self, Global, GlobalMut, Shared};
use crate::gemm_tile::{MT, Staging, T, TL, gemm_main_loop, unroll_micro};
use crate::kernel;
use crate::margin_math::fma;
use crate::params::GradParams;

kernel! {
    /// `dW = G'ᵀ·X + diag(γ)·W`; see the module docs.
    pub fn margin_weight_grad(
        p: GradParams,
        g: Global<f32>,
        x: Global<f32>,
        w: Global<f32>,
        labels: Global<u32>,
        cache_p: Global<f32>,
        gamma_scale: Global<f32>,
        dw: GlobalMut<f32>,
    ) {
        let (n, d, c) = (p.n as usize, p.d as usize, p.c as usize);
        let tx = device::thread_idx_x() as usize;
        let ty = device::thread_idx_y() as usize;
        let col0 = device::block_idx_x() as usize * TL;
        let row0 = device::block_idx_y() as usize * TL;

        let mut gamma_part = [0.0f32; MT];
        let acc = gemm_main_loop(
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
                    unroll_micro!(l => {
                        if rel == T * l {
                            gamma_part[l] = fma(g.get(i * c + y), gamma_scale.get(i), gamma_part[l]);
                        }
                    });
                }
            },
        );

        // The main loop ended on a barrier, so its stages may be overwritten.
        let sh: Shared<f32> = device::dynamic_shared::<f32>();
        unroll_micro!(l => {
            sh.set((ty + T * l) * T + tx, gamma_part[l]);
        });
        device::sync_threads();
        unroll_micro!(i => {
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
}
