//! The GEMM main loops of the three margin kernels, named by how they pipeline the K
//! loop (as CUTLASS names its `MmaSingleStage`, `MmaPipelined`, `MmaMultistage`).
//!
//! Every main loop computes one block tile of `A·B` for a block of 16×16 threads, K cut
//! into stages that go global memory → registers → shared memory → registers, each
//! thread accumulating its thread tile with one `fma` per output and k step, in k order:
//! results are bitwise equal across main loops, tile shapes and grid shapes.
//!
//! The levels a kernel variant can change, bottom up (imports go downward only):
//! - [`tile`]: block tile, stage depth and thread tile (the strided 4×4 layout of the
//!   base kernel, or runs of 4 with an `M × M` thread tile), who owns which output, one
//!   stage's FFMAs, and the `unroll!` / `select` helpers every kernel shares;
//! - [`staging`]: how a stage gets from global to shared memory: the source layout
//!   ([`staging::Staging`]), which thread moves which elements, the global load
//!   instruction ([`staging::Fetch`]: generic, `ld.global.nc`, 128-bit);
//! - the pipelines:
//!   - [`single_stage`]: one shared stage, the next stage prefetched into registers, two
//!     barriers per stage ([`single_stage::strided`] for the base kernel, and
//!     [`single_stage::run`] for runs of 4);
//!   - [`double_buffered`]: two shared stages plus the register prefetch, one barrier
//!     per stage (CUTLASS's `MmaPipelined`).
//!
//! [`run`] picks the pipeline from a const parameter; the kernel variants themselves are
//! listed once, in [`crate::ladder`].

pub(crate) mod double_buffered;
pub(crate) mod single_stage;
pub(crate) mod staging;
pub(crate) mod tile;

use staging::{StageRuns, Staging};
use tile::T;

use crate::device;

/// Runs the K loop over `k_begin..k_end` for this thread's `M × M` thread tile (runs-of-4
/// layout) with `STAGES` shared stages (1: [`single_stage::run`], 2:
/// [`double_buffered::run`]) and returns it (`acc[i][j]` is block-tile output
/// `(micro_offset(ty, i), micro_offset(tx, j))`, see [`tile::micro_offset`]).
///
/// `fetch_a(k, r)` returns the 4-run of A starting at `(tile row r, k)`: `A[r][k..k+4]`
/// for [`Staging::Transpose`], `A[r..r+4][k]` for [`Staging::Direct`]; `fetch_b(k, c)`
/// likewise for B. Both return 0 outside the matrices. `k_begin` and, unless it is the
/// end of K, `k_end` must be multiples of the stage depth. The stage is unrolled by
/// construction if `UNROLL`. Every thread of the block must call this (it synchronises
/// the block); it ends on a barrier, so the caller may reuse the shared memory.
#[inline(always)]
pub(crate) fn run<const M: usize, const STAGES: usize, const UNROLL: bool, FA, FB>(
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
    const { assert!(STAGES == 1 || STAGES == 2) };
    let tx = device::thread_idx_x() as usize;
    let ty = device::thread_idx_y() as usize;
    let runs = StageRuns::new::<M>(T * ty + tx, a_staging, fetch_a, b_staging, fetch_b);
    if STAGES == 2 {
        double_buffered::run::<M, UNROLL, _, _>(k_begin, k_end, (tx, ty), runs)
    } else {
        single_stage::run::<M, UNROLL, _, _>(k_begin, k_end, (tx, ty), runs)
    }
}
