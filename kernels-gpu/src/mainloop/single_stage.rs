//! The single-stage main loops: one shared stage, the next stage's global loads issued
//! into registers before the current stage's arithmetic (register prefetch), two
//! barriers per stage (stage stored → read; read → overwritten).
//!
//! CUTLASS's `MmaSingleStage` has no prefetch and its `MmaPipelined` double-buffers the
//! shared stage too ([`super::double_buffered`]); these loops sit between the two.
//!
//! - [`strided`]: the base kernel's loop (strided 4×4 thread tile, scalar shared loads,
//!   the stage loop left to LLVM);
//! - [`run`]: the runs-of-4 thread tile (`M` = 4 or 8), 128-bit shared loads, the stage
//!   unrolled by construction with `u32` counters.

use super::staging::{StageRuns, Staging};
use super::tile::{MT, S, T, TK, compute_stage, stage_depth};
use crate::device::{self, Shared};
use crate::margin_math::fma;

/// Offset of the B stage after the A stage, strided layout.
const B_OFFSET: usize = TK * S;

/// The base kernel's main loop: runs the K loop for this thread's strided 4×4 thread
/// tile and returns it (`acc[i][j]` is output `(ty + 16·i, tx + 16·j)` of the tile).
///
/// `fetch_a(l, k, r)` returns `A[r][k]` for tile row `r` (`l` is the element slot, so a
/// kernel can keep per-row values in registers), `fetch_b(k, c)` returns `B[k][c]` for
/// tile column `c`; both must return 0 outside the matrices. `per_stage(k0)` runs once per
/// stage of `k0..k0 + 16` between the barriers (the weight-grad γ reduction uses it).
/// Every thread of the block must call this (it synchronises the block).
#[inline(always)]
pub(crate) fn strided<FA, FB, FS>(
    k_len: usize,
    a_staging: Staging,
    fetch_a: FA,
    b_staging: Staging,
    fetch_b: FB,
    mut per_stage: FS,
) -> [[f32; MT]; MT]
where
    FA: Fn(usize, usize, usize) -> f32,
    FB: Fn(usize, usize) -> f32,
    FS: FnMut(usize),
{
    let tx = device::thread_idx_x() as usize;
    let ty = device::thread_idx_y() as usize;
    let sh: Shared<f32> = device::dynamic_shared::<f32>();
    let mut acc = [[0.0f32; MT]; MT];
    let mut ra = [0.0f32; MT];
    let mut rb = [0.0f32; MT];
    for l in 0..MT {
        let (k, r) = a_staging.element(tx, ty, l);
        ra[l] = fetch_a(l, k, r);
        let (k, c) = b_staging.element(tx, ty, l);
        rb[l] = fetch_b(k, c);
    }
    let mut k0 = 0;
    while k0 < k_len {
        for l in 0..MT {
            let (k, r) = a_staging.element(tx, ty, l);
            sh.set(k * S + r, ra[l]);
            let (k, c) = b_staging.element(tx, ty, l);
            sh.set(B_OFFSET + k * S + c, rb[l]);
        }
        device::sync_threads();
        let next = k0 + TK;
        // Issue the next stage's global loads before this stage's arithmetic: their
        // latency hides behind 256 FMAs instead of stalling after the barrier.
        if next < k_len {
            for l in 0..MT {
                let (k, r) = a_staging.element(tx, ty, l);
                ra[l] = fetch_a(l, next + k, r);
                let (k, c) = b_staging.element(tx, ty, l);
                rb[l] = fetch_b(next + k, c);
            }
        }
        per_stage(k0);
        for kk in 0..TK {
            let mut a = [0.0f32; MT];
            let mut b = [0.0f32; MT];
            for i in 0..MT {
                a[i] = sh.get(kk * S + ty + T * i);
                b[i] = sh.get(B_OFFSET + kk * S + tx + T * i);
            }
            for i in 0..MT {
                for j in 0..MT {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        device::sync_threads();
        k0 = next;
    }
    acc
}

/// The single-stage main loop of the runs-of-4 thread tile: the K loop over
/// `k_begin..k_end` for thread `(tx, ty)`, its stages moved by `runs`; see [`super::run`].
#[inline(always)]
pub(crate) fn run<const M: usize, const UNROLL: bool, FA, FB>(
    k_begin: u32,
    k_end: u32,
    (tx, ty): (usize, usize),
    runs: StageRuns<FA, FB>,
) -> [[f32; M]; M]
where
    FA: Fn(u32, u32) -> [f32; 4],
    FB: Fn(u32, u32) -> [f32; 4],
{
    let sh: Shared<f32> = device::dynamic_shared::<f32>();
    let tk = stage_depth(M) as u32;
    let mut acc = [[0.0f32; M]; M];
    let (mut va, mut vb) = runs.fetch(k_begin);
    let mut k0 = k_begin;
    while k0 < k_end {
        runs.store::<M>(sh, 0, va, vb);
        device::sync_threads();
        let next = k0 + tk;
        // The next stage's global loads go out before this stage's arithmetic.
        if next < k_end {
            (va, vb) = runs.fetch(next);
        }
        compute_stage::<M, UNROLL>(sh, 0, tx, ty, &mut acc);
        device::sync_threads();
        k0 = next;
    }
    acc
}
