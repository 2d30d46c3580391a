//! The double-buffered main loop (CUTLASS's `MmaPipelined`): two shared stages and a
//! register prefetch. Stage `s + 1` is loaded into registers and stored into the other
//! shared buffer while stage `s` is read, so one barrier per stage separates "written"
//! from "read" for both buffers (the single-stage loops need two).

use super::staging::StageRuns;
use super::tile::{compute_stage, stage_depth};
use crate::device::{self, Shared};

/// The double-buffered main loop of the runs-of-4 thread tile: the K loop over
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
    runs.store::<M>(sh, 0, va, vb);
    device::sync_threads();
    let mut buf = 0;
    while k0 < k_end {
        let next = k0 + tk;
        if next < k_end {
            (va, vb) = runs.fetch(next);
        }
        compute_stage::<M, UNROLL>(sh, buf, tx, ty, &mut acc);
        if next < k_end {
            runs.store::<M>(sh, buf ^ 1, va, vb);
        }
        device::sync_threads();
        buf ^= 1;
        k0 = next;
    }
    acc
}
