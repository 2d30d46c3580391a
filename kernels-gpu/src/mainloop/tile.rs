//! The tile hierarchy of the GEMM main loops: block tile, stage and thread tile, who owns
//! which output, and one stage's arithmetic (the FFMAs).
//!
//! Two thread-tile layouts exist:
//! - **strided** (the base kernel): a 4×4 thread tile at stride 16, thread `(tx, ty)`
//!   owning outputs `(ty + 16·i, tx + 16·j)` of a 64×64 block tile, so a half-warp reads
//!   16 consecutive shared floats (no bank conflicts) and writes 16 consecutive output
//!   columns (coalesced). Constants [`MT`], [`TL`], [`TK`].
//! - **runs of 4** (every ladder variant): an `M × M` thread tile (`M` = 4 or 8) of a
//!   `16·M`-square block tile, rows `4·ty + 64·(i/4) + i mod 4` and columns
//!   `4·tx + 64·(j/4) + j mod 4` ([`micro_offset`]): 4 adjacent outputs per thread make
//!   each operand fragment one 128-bit shared load (`ld.shared.v4.f32`). Functions
//!   [`tile`], [`stage_depth`], [`stride`].
//!
//! Either way the block is 16×16 threads ([`T`]) and each output is summed over `k` in
//! order with one `fma` per step: results are bitwise equal across layouts.

use crate::device::Shared;
use crate::margin_math::fma;
use crate::params::{MICRO, SHARED_STRIDE, THREADS, TILE, TILE_K};

/// Threads per block side (16×16 = 256 threads).
pub(crate) const T: usize = THREADS as usize;

/// Thread-tile side of the strided layout (4×4).
pub(crate) const MT: usize = MICRO as usize;
/// Stage depth of the strided layout.
pub(crate) const TK: usize = TILE_K as usize;
/// Block-tile side of the strided layout.
pub(crate) const TL: usize = TILE as usize;
/// Row stride (floats) of a staged operand of the strided layout in shared memory.
pub(crate) const S: usize = SHARED_STRIDE as usize;

/// Block-tile side for an `m × m` thread tile in runs of 4.
pub(crate) const fn tile(m: usize) -> usize {
    T * m
}

/// Stage depth for an `m × m` thread tile in runs of 4: `64/m`, so that each operand
/// stage is 1024 floats, one 4-float run per thread.
pub(crate) const fn stage_depth(m: usize) -> usize {
    64 / m
}

/// Row stride (floats) of a staged operand in shared memory, runs-of-4 layout: a
/// multiple of 4 (16-byte aligned rows for `ld.shared.v4`), and `+4` so that the
/// transposing stores of two k-rows 4 apart land 16 banks apart.
pub(crate) const fn stride(m: usize) -> usize {
    tile(m) + 4
}

/// Floats of one shared stage (A and B), runs-of-4 layout.
pub(crate) const fn stage_floats(m: usize) -> usize {
    2 * stage_depth(m) * stride(m)
}

/// Tile offset (row for `t = ty`, column for `t = tx`) of thread-tile index `i`, runs-of-4
/// layout.
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

/// Runs `$body` with `$i` bound to each of `0..$n` (`$n` ≤ 16, a constant), unrolled in
/// the source. Used for the stage steps (LLVM's default threshold unrolled the base
/// kernel's 16-step loop only twice, leaving 64-bit loop control in every other step) and
/// for thread-tile rows in epilogues (a rolled loop over `acc[i]` indexes the register
/// array dynamically, which puts it in local memory).
macro_rules! unroll {
    ($n:expr, $i:ident => $body:block) => {{
        $crate::mainloop::tile::unroll!(@ $n, $i, $body, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
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

/// One stage's arithmetic (runs-of-4 layout) on shared stage `buf`: `stage_depth(M)`
/// rank-1 updates of the thread tile, each from `M/4` 128-bit loads of A and of B;
/// unrolled by construction if `UNROLL`, else a plain loop (left to LLVM: the compact
/// form of the rarely used fallback paths).
#[inline(always)]
pub(crate) fn compute_stage<const M: usize, const UNROLL: bool>(
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
}
