//! The main loop of the faster rungs of the kernel ladder (rung 0 is [`crate::gemm_tile`]).
//!
//! Hierarchy, CUTLASS-style in miniature:
//! - **block tile** `TL × TL` outputs (`TL = 16·M`) for a block of 16×16 threads;
//! - **stage** `TK = 64/M` deep, so that each operand stage is `TK·TL = 1024` floats: one
//!   4-float run per thread and operand;
//! - **thread tile** `M × M` in registers: rows `4·ty + 64·(i/4) + i mod 4`, columns
//!   `4·tx + 64·(j/4) + j mod 4` ([`micro_offset`]). Runs of 4 adjacent outputs per thread
//!   make each operand fragment one 128-bit shared load (`ld.shared.v4.f32`).
//!
//! The rungs, one step each (the README's ladder table has the SASS numbers):
//! - (a) `M = 4` (64×64 tile, 16-deep stage, as rung 0) with the K stage unrolled by
//!   construction (`unroll!`), `u32` stage counters and 128-bit shared loads;
//! - (b) `M = 8`: 128×128 tile, 8-deep stage, twice the FFMAs per shared byte;
//! - global loads through `ld.global.nc`, 128-bit where the rows allow
//!   ([`Fetch::Vector`]), chosen by the kernel from the shape and the pointers;
//! - (c) `DB = true`: two shared stages, one barrier per stage.
//!
//! Summation order is rung 0's: each output is summed over `k` in order with one `fma`
//! per step, zero padding adds exact zeros. Results are bitwise reproducible and
//! independent of the grid shape; they equal rung 0's bit for bit.

use crate::device::{self, Global, Shared};
use crate::margin_math::fma;

/// Threads per block side (16×16 = 256 threads).
pub(crate) const T: usize = 16;

/// Output tile side of a rung with an `m × m` thread tile.
pub(crate) const fn tile(m: usize) -> usize {
    T * m
}

/// Stage depth for an `m × m` thread tile (1024 floats per operand stage).
pub(crate) const fn stage_depth(m: usize) -> usize {
    64 / m
}

/// Row stride (floats) of a staged operand in shared memory: a multiple of 4 (16-byte
/// aligned rows for `ld.shared.v4`), and `+4` so that the transposing stores of two
/// k-rows 4 apart land 16 banks apart.
const fn stride(m: usize) -> usize {
    tile(m) + 4
}

/// Floats of one stage (A and B).
const fn stage_floats(m: usize) -> usize {
    2 * stage_depth(m) * stride(m)
}

/// Tile offset (row for `t = ty`, column for `t = tx`) of thread-tile index `i`.
#[inline(always)]
pub(crate) const fn micro_offset(t: usize, i: usize) -> usize {
    4 * t + 64 * (i / 4) + i % 4
}

/// `(thread index, thread-tile index)` holding tile offset `rel`: the inverse of
/// [`micro_offset`].
#[inline(always)]
pub(crate) const fn micro_owner(rel: usize) -> (usize, usize) {
    ((rel / 4) % T, (rel / 64) * 4 + rel % 4)
}

/// How a `TL`-wide, `TK`-deep operand stage is read from global memory.
#[derive(Clone, Copy)]
pub(crate) enum Staging {
    /// The source is `[tile row][k]` (k contiguous): a thread reads 4 consecutive k of
    /// one row and stores them transposed to `[k][row]` (4 scalar shared stores).
    Transpose,
    /// The source is already `[k][tile column]`: a thread reads 4 consecutive columns of
    /// one k and stores them with one 128-bit shared store.
    Direct,
}

impl Staging {
    /// `(k, tile row/column)` of the first element of this thread's 4-run (`t = 16·ty +
    /// tx`). Consecutive threads read consecutive 16-byte runs.
    #[inline(always)]
    pub(crate) const fn coords(self, m: usize, t: usize) -> (usize, usize) {
        match self {
            Staging::Transpose => {
                let runs_per_row = stage_depth(m) / 4;
                ((t % runs_per_row) * 4, t / runs_per_row)
            }
            Staging::Direct => {
                let runs_per_k = tile(m) / 4;
                (t / runs_per_k, (t % runs_per_k) * 4)
            }
        }
    }
}

/// How a kernel reads a 4-run of an operand from global memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// 4 generic scalar loads (`ld.f32`), each bounds-tested: rungs (a)–(c).
    Scalar,
    /// 4 scalar `ld.global.nc.f32`, each bounds-tested: rows not a multiple of 4 long,
    /// or a misaligned buffer.
    ScalarNc,
    /// One `ld.global.nc.v4.f32`: the caller guarantees 16-byte alignment of every run
    /// (row length and buffer start), that a run starting inside a row ends inside it,
    /// and that the buffer holds at least 4 elements.
    Vector,
}

/// Elements `src[start + at ..][..4]` of a row of `len` elements starting at `start`,
/// each 0 past `len` or when `valid` is false (a row outside the matrix).
///
/// Positions are `u32` (32-bit compares in the loop; the launch plans keep every size
/// below 2³¹, so `at + 3` cannot wrap); the element index is formed in `usize`.
#[inline(always)]
pub(crate) fn fetch_run(
    fetch: Fetch,
    src: Global<f32>,
    valid: bool,
    start: usize,
    at: u32,
    len: u32,
) -> [f32; 4] {
    match fetch {
        Fetch::Vector => {
            // Load unconditionally (the buffer's first run when outside the matrix, valid
            // as the buffer holds at least one aligned run) and select zeros after: no
            // branch around the load in the main loop.
            let inside = valid && at < len;
            let v = src.load4(if inside { start + at as usize } else { 0 });
            if inside { v } else { [0.0; 4] }
        }
        Fetch::Scalar | Fetch::ScalarNc => [0u32, 1, 2, 3].map(|e| {
            if valid && at + e < len {
                let i = start + (at + e) as usize;
                if fetch == Fetch::Scalar {
                    src.get(i)
                } else {
                    src.load(i)
                }
            } else {
                0.0
            }
        }),
    }
}

/// Runs `$body` with `$i` bound to each of `0..$n` (`$n` ≤ 16, a constant), unrolled in
/// the source. Used for the stage steps (LLVM's default threshold unrolled rung 0's
/// 16-step loop only twice, leaving 64-bit loop control in every other step) and for
/// thread-tile rows in epilogues (a rolled loop over `acc[i]` indexes the register array
/// dynamically, which puts it in local memory).
macro_rules! unroll {
    ($n:expr, $i:ident => $body:block) => {{
        $crate::gemm_wide::unroll!(@ $n, $i, $body, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    }};
    (@ $n:expr, $i:ident, $body:block, $($v:literal)*) => {
        $(
            if $v < $n {
                let $i: usize = $v;
                $body
            }
        )*
    };
}
pub(crate) use unroll;

/// Stores this thread's 4-run `v` of one operand (first element at `(k, r)`) into the
/// operand's stage at float `base`.
#[inline(always)]
fn store_run<const M: usize>(
    sh: Shared<f32>,
    base: usize,
    staging: Staging,
    (k, r): (usize, usize),
    v: [f32; 4],
) {
    match staging {
        Staging::Transpose => {
            sh.set(base + k * stride(M) + r, v[0]);
            sh.set(base + (k + 1) * stride(M) + r, v[1]);
            sh.set(base + (k + 2) * stride(M) + r, v[2]);
            sh.set(base + (k + 3) * stride(M) + r, v[3]);
        }
        Staging::Direct => sh.set4(base + k * stride(M) + r, v),
    }
}

/// One stage's arithmetic on buffer `buf`: `TK` rank-1 updates of the thread tile, each
/// from `M/4` 128-bit loads of A and of B; unrolled by construction if `UNROLL`, else a
/// plain loop (left to LLVM: the compact form of the rarely used fallback paths).
#[inline(always)]
fn compute_stage<const M: usize, const UNROLL: bool>(
    sh: Shared<f32>,
    buf: usize,
    tx: usize,
    ty: usize,
    acc: &mut [[f32; M]; M],
) {
    let base = buf * stage_floats(M);
    let b_base = base + stage_depth(M) * stride(M);
    if UNROLL {
        unroll!(stage_depth(M), kk => {
            rank_one_update::<M>(sh, base + kk * stride(M), b_base + kk * stride(M), tx, ty, acc);
        });
    } else {
        for kk in 0..stage_depth(M) {
            rank_one_update::<M>(
                sh,
                base + kk * stride(M),
                b_base + kk * stride(M),
                tx,
                ty,
                acc,
            );
        }
    }
}

/// One k-step: the thread tile += (A fragment at float `a_row`) ⊗ (B fragment at `b_row`).
#[inline(always)]
fn rank_one_update<const M: usize>(
    sh: Shared<f32>,
    a_row: usize,
    b_row: usize,
    tx: usize,
    ty: usize,
    acc: &mut [[f32; M]; M],
) {
    {
        let mut a = [0.0f32; M];
        let mut b = [0.0f32; M];
        for g in 0..M / 4 {
            let va = sh.get4(a_row + 64 * g + 4 * ty);
            let vb = sh.get4(b_row + 64 * g + 4 * tx);
            for e in 0..4 {
                a[4 * g + e] = va[e];
                b[4 * g + e] = vb[e];
            }
        }
        for i in 0..M {
            for j in 0..M {
                acc[i][j] = fma(a[i], b[j], acc[i][j]);
            }
        }
    }
}

/// Runs the K loop over `k_begin..k_end` for this thread's `M × M` tile and returns it
/// (`acc[i][j]` is tile output `(micro_offset(ty, i), micro_offset(tx, j))`).
///
/// `fetch_a(k, r)` returns the 4-run of A starting at `(tile row r, k)`: `A[r][k..k+4]`
/// for [`Staging::Transpose`], `A[r..r+4][k]` for [`Staging::Direct`]; `fetch_b(k, c)`
/// likewise for B. Both return 0 outside the matrices. `k_begin` and, unless it is the
/// end of K, `k_end` must be multiples of the stage depth. Every thread of the block
/// must call this (it synchronises the block); it ends on a barrier, so the caller may
/// reuse the shared memory.
#[inline(always)]
pub(crate) fn main_loop<const M: usize, const DB: bool, const UNROLL: bool, FA, FB>(
    k_begin: u32,
    k_end: u32,
    a_staging: Staging,
    fetch_a: FA,
    b_staging: Staging,
    fetch_b: FB,
) -> [[f32; M]; M]
where
    FA: Fn(u32, u32) -> [f32; 4],
    FB: Fn(u32, u32) -> [f32; 4],
{
    const { assert!(M == 4 || M == 8) };
    let tx = device::thread_idx_x() as usize;
    let ty = device::thread_idx_y() as usize;
    let t = T * ty + tx;
    let sh: Shared<f32> = device::dynamic_shared::<f32>();
    let a_at = a_staging.coords(M, t);
    let b_at = b_staging.coords(M, t);
    let tk = stage_depth(M) as u32;
    let fetch = |k0: u32| {
        (
            fetch_a(k0 + a_at.0 as u32, a_at.1 as u32),
            fetch_b(k0 + b_at.0 as u32, b_at.1 as u32),
        )
    };
    let b_offset = stage_depth(M) * stride(M);
    let store = |buf: usize, va: [f32; 4], vb: [f32; 4]| {
        let base = buf * stage_floats(M);
        store_run::<M>(sh, base, a_staging, a_at, va);
        store_run::<M>(sh, base + b_offset, b_staging, b_at, vb);
    };
    let mut acc = [[0.0f32; M]; M];
    let (mut va, mut vb) = fetch(k_begin);
    let mut k0 = k_begin;
    if DB {
        // Rung (c): stage s+1 goes into the other buffer while stage s is read, so one
        // barrier per stage separates "written" from "read" for both buffers.
        store(0, va, vb);
        device::sync_threads();
        let mut buf = 0;
        while k0 < k_end {
            let next = k0 + tk;
            if next < k_end {
                (va, vb) = fetch(next);
            }
            compute_stage::<M, UNROLL>(sh, buf, tx, ty, &mut acc);
            if next < k_end {
                store(buf ^ 1, va, vb);
            }
            device::sync_threads();
            buf ^= 1;
            k0 = next;
        }
    } else {
        while k0 < k_end {
            store(0, va, vb);
            device::sync_threads();
            let next = k0 + tk;
            // The next stage's global loads go out before this stage's arithmetic.
            if next < k_end {
                (va, vb) = fetch(next);
            }
            compute_stage::<M, UNROLL>(sh, 0, tx, ty, &mut acc);
            device::sync_threads();
            k0 = next;
        }
    }
    acc
}

/// `row[j]` for a `j` known only at run time, without indexing a register array
/// dynamically (which would put it in local memory).
#[inline(always)]
pub(crate) fn select<const M: usize>(row: &[f32; M], j: usize) -> f32 {
    let mut v = row[0];
    for (jj, &e) in row.iter().enumerate().skip(1) {
        if jj == j {
            v = e;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_shared_bytes_hold_the_stages() {
        use crate::params::wide_shared_bytes;
        for m in [4, 8] {
            assert_eq!(
                wide_shared_bytes(m as u32, false) as usize,
                stage_floats(m) * 4
            );
            assert_eq!(
                wide_shared_bytes(m as u32, true) as usize,
                2 * stage_floats(m) * 4
            );
            // The weight-gradient γ reduction reuses the stages: tile rows × 16 partials.
            assert!(tile(m) * T * 4 <= stage_floats(m) * 4);
        }
    }

    #[test]
    fn micro_owner_inverts_micro_offset() {
        for m in [4, 8] {
            let mut seen = vec![false; tile(m)];
            for t in 0..T {
                for i in 0..m {
                    let rel = micro_offset(t, i);
                    assert!(!seen[rel], "offset {rel} owned twice");
                    seen[rel] = true;
                    assert_eq!(micro_owner(rel), (t, i));
                }
            }
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn staging_covers_each_stage_once() {
        for m in [4, 8] {
            for staging in [Staging::Transpose, Staging::Direct] {
                let mut seen = vec![false; stage_depth(m) * tile(m)];
                for t in 0..T * T {
                    let (k, r) = staging.coords(m, t);
                    for e in 0..4 {
                        let (k, r) = match staging {
                            Staging::Transpose => (k + e, r),
                            Staging::Direct => (k, r + e),
                        };
                        assert!(k < stage_depth(m) && r < tile(m));
                        assert!(!seen[k * tile(m) + r]);
                        seen[k * tile(m) + r] = true;
                    }
                }
                assert!(seen.iter().all(|&s| s));
            }
        }
    }
}
