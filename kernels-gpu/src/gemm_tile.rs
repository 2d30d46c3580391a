//! The main loop shared by the three GEMM kernels: one 64×64 output tile per block of
//! 16×16 threads, K staged through shared memory 16 deep, a 4×4 register micro-tile per
//! thread, and the next stage prefetched into registers while the current one is used.
//!
//! Thread `(tx, ty)` owns outputs `(ty + 16·i, tx + 16·j)`, `i, j ∈ 0..4`, of the tile: at
//! stride 16 (not 4 adjacent) so a half-warp reads 16 consecutive B entries from shared
//! memory (no bank conflicts) and writes 16 consecutive output columns (coalesced).
//!
//! Each thread sums its outputs over `k = 0, 1, …, K − 1` in order with one `fma` per step,
//! and the zero padding past the matrix edges adds exact zeros: results are bitwise
//! reproducible and independent of the grid shape.

use crate::device::{self, Shared};
use crate::margin_math::fma;
use crate::params::{MICRO, SHARED_STRIDE, THREADS, TILE, TILE_K};

/// Threads per block side.
pub(crate) const T: usize = THREADS as usize;
/// Micro-tile side.
pub(crate) const MT: usize = MICRO as usize;
/// Stage depth.
pub(crate) const TK: usize = TILE_K as usize;
/// Output tile side.
pub(crate) const TL: usize = TILE as usize;
/// Row stride of a staged tile in shared memory.
const S: usize = SHARED_STRIDE as usize;
/// Offset of the B stage after the A stage.
const B_OFFSET: usize = TK * S;

/// How a 64-wide, 16-deep operand tile is read from global memory. Either way each
/// thread moves 4 elements per stage and consecutive threads read consecutive addresses.
#[derive(Clone, Copy)]
pub(crate) enum Staging {
    /// The source is `[tile row][k]` (rows of X or W, k contiguous): thread `(tx, ty)`
    /// reads `(row ty + 16·l, k tx)` and stores it transposed to `[k][row]`.
    Transpose,
    /// The source is already `[k][tile column]` (rows of G indexed by class, rows of X or
    /// W indexed by feature): thread `t = 16·ty + tx` reads element `t + 256·l` of the
    /// 16×64 tile, i.e. `(k ty/4 + 4·l, column 16·(ty mod 4) + tx)`.
    Direct,
}

impl Staging {
    /// `(k, tile row/column)` of this thread's `l`-th element of a stage.
    #[inline(always)]
    pub(crate) fn coords(self, tx: usize, ty: usize, l: usize) -> (usize, usize) {
        match self {
            Staging::Transpose => (tx, ty + T * l),
            Staging::Direct => (ty / 4 + 4 * l, (ty % 4) * T + tx),
        }
    }
}

/// Runs the K loop for this thread's 4×4 micro-tile and returns it (`acc[i][j]` is output
/// `(ty + 16·i, tx + 16·j)` of the tile).
///
/// `fetch_a(l, k, r)` returns `A[r][k]` for tile row `r` (`l` is the element slot, so a
/// kernel can keep per-row values in registers), `fetch_b(k, c)` returns `B[k][c]` for
/// tile column `c`; both must return 0 outside the matrices. `per_stage(k0)` runs once per
/// stage of `k0..k0 + 16` between the barriers (the weight-grad γ reduction uses it).
/// Every thread of the block must call this (it synchronises the block).
#[inline(always)]
pub(crate) fn gemm_main_loop<FA, FB, FS>(
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
        let (k, r) = a_staging.coords(tx, ty, l);
        ra[l] = fetch_a(l, k, r);
        let (k, c) = b_staging.coords(tx, ty, l);
        rb[l] = fetch_b(k, c);
    }
    let mut k0 = 0;
    while k0 < k_len {
        for l in 0..MT {
            let (k, r) = a_staging.coords(tx, ty, l);
            sh.set(k * S + r, ra[l]);
            let (k, c) = b_staging.coords(tx, ty, l);
            sh.set(B_OFFSET + k * S + c, rb[l]);
        }
        device::sync_threads();
        let next = k0 + TK;
        // Issue the next stage's global loads before this stage's arithmetic: their
        // latency hides behind 256 FMAs instead of stalling after the barrier.
        if next < k_len {
            for l in 0..MT {
                let (k, r) = a_staging.coords(tx, ty, l);
                ra[l] = fetch_a(l, next + k, r);
                let (k, c) = b_staging.coords(tx, ty, l);
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

/// Runs `$body` with `$i` bound to 0, 1, 2, 3 (the micro-tile rows), unrolled in the
/// source. Epilogue loops carry enough code that LLVM keeps them rolled, and a rolled loop
/// over `acc[i]` indexes the register array dynamically: it would live in local memory.
macro_rules! unroll_micro {
    ($i:ident => $body:block) => {{
        const _: () = assert!($crate::gemm_tile::MT == 4);
        {
            let $i: usize = 0;
            $body
        }
        {
            let $i: usize = 1;
            $body
        }
        {
            let $i: usize = 2;
            $body
        }
        {
            let $i: usize = 3;
            $body
        }
    }};
}
pub(crate) use unroll_micro;

/// `acc[i][j]` for a `j` known only at run time, without indexing a register array
/// dynamically (which would put it in local memory).
#[inline(always)]
pub(crate) fn select(row: &[f32; MT], j: usize) -> f32 {
    let mut v = row[0];
    for (jj, &e) in row.iter().enumerate().skip(1) {
        if jj == j {
            v = e;
        }
    }
    v
}
