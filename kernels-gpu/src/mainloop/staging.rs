//! How an operand stage gets from global memory into shared memory: the layout of the
//! source ([`Staging`]), which thread moves which elements, the global load instruction
//! ([`Fetch`]), and the shared stores.

use super::tile::{T, stage_depth, stage_floats, stride, tile};
use crate::device::{Global, Shared};

/// How an operand tile (tile rows or columns × stage depth `k`) is laid out in global
/// memory, and so how it is stored to shared memory, which is always `[k][tile row or
/// column]`. Consecutive threads read consecutive global addresses either way.
#[derive(Clone, Copy)]
pub(crate) enum Staging {
    /// The source is `[tile row][k]` (rows of X or W with k contiguous): stored
    /// transposed.
    Transpose,
    /// The source is already `[k][tile column]` (rows of G indexed by class, rows of X or
    /// W indexed by feature): stored as read.
    Direct,
}

impl Staging {
    /// Strided layout (16-deep, 64-wide stage, 4 single elements per thread): `(k, tile
    /// row/column)` of this thread's `l`-th element. [`Staging::Transpose`]: `(tx, ty +
    /// 16·l)`; [`Staging::Direct`]: thread `t = 16·ty + tx` moves element `t + 256·l` of
    /// the 16×64 stage, `(ty/4 + 4·l, 16·(ty mod 4) + tx)`.
    #[inline(always)]
    pub(crate) fn element(self, tx: usize, ty: usize, l: usize) -> (usize, usize) {
        match self {
            Staging::Transpose => (tx, ty + T * l),
            Staging::Direct => (ty / 4 + 4 * l, (ty % 4) * T + tx),
        }
    }

    /// Runs-of-4 layout (`m × m` thread tile, one 4-run per thread and operand): `(k, tile
    /// row/column)` of the first element of this thread's run (`t = 16·ty + tx`): 4
    /// consecutive k of one row for [`Staging::Transpose`], 4 consecutive columns of one
    /// k for [`Staging::Direct`]. Consecutive threads read consecutive 16-byte runs.
    #[inline(always)]
    pub(crate) const fn run(self, m: usize, t: usize) -> (usize, usize) {
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

/// Stores this thread's 4-run `v` of one operand (first element at `(k, r)`) into the
/// operand's stage at float `base`: 4 scalar stores for [`Staging::Transpose`], one
/// 128-bit store for [`Staging::Direct`].
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

/// This thread's share of the A and B stages in the runs-of-4 layout: where its 4-runs
/// sit, how to fetch them from global memory and store them to a shared stage.
pub(crate) struct StageRuns<FA, FB> {
    a_staging: Staging,
    a_at: (usize, usize),
    fetch_a: FA,
    b_staging: Staging,
    b_at: (usize, usize),
    fetch_b: FB,
}

impl<FA, FB> StageRuns<FA, FB>
where
    FA: Fn(u32, u32) -> [f32; 4],
    FB: Fn(u32, u32) -> [f32; 4],
{
    /// The runs of thread `t = 16·ty + tx` for an `M × M` thread tile.
    #[inline(always)]
    pub(crate) fn new<const M: usize>(
        t: usize,
        a_staging: Staging,
        fetch_a: FA,
        b_staging: Staging,
        fetch_b: FB,
    ) -> Self {
        StageRuns {
            a_staging,
            a_at: a_staging.run(M, t),
            fetch_a,
            b_staging,
            b_at: b_staging.run(M, t),
            fetch_b,
        }
    }

    /// This thread's A and B runs of the stage starting at `k0`.
    #[inline(always)]
    pub(crate) fn fetch(&self, k0: u32) -> ([f32; 4], [f32; 4]) {
        (
            (self.fetch_a)(k0 + self.a_at.0 as u32, self.a_at.1 as u32),
            (self.fetch_b)(k0 + self.b_at.0 as u32, self.b_at.1 as u32),
        )
    }

    /// Stores runs `va`, `vb` into shared stage `buf` (A first, then B).
    #[inline(always)]
    pub(crate) fn store<const M: usize>(
        &self,
        sh: Shared<f32>,
        buf: usize,
        va: [f32; 4],
        vb: [f32; 4],
    ) {
        let base = buf * stage_floats(M);
        store_run::<M>(sh, base, self.a_staging, self.a_at, va);
        let b_base = base + stage_depth(M) * stride(M);
        store_run::<M>(sh, b_base, self.b_staging, self.b_at, vb);
    }
}

/// How a kernel reads a 4-run of an operand from global memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// 4 generic scalar loads (`ld.f32`), each bounds-tested: the variants before `_ldg`.
    Scalar,
    /// 4 scalar `ld.global.nc.f32`, each bounds-tested: rows not a multiple of 4 long,
    /// or a misaligned buffer.
    ScalarNc,
    /// One `ld.global.nc.v4.f32`: the caller guarantees 16-byte alignment of every run
    /// (row length and buffer start), that a run starting inside a row ends inside it,
    /// and that the buffer holds at least 4 elements.
    Vector,
}

/// Runs `$body` with `$fetch` bound to the [`Fetch`] a kernel uses and `$unroll` to a
/// `const bool` saying whether the stage is unrolled: [`Fetch::Scalar`] (unrolled) if
/// `$ldg` is false; else [`Fetch::Vector`] (unrolled) if `$aligned` (evaluated only
/// then: rows a multiple of 4 long and 16-byte aligned buffers), else
/// [`Fetch::ScalarNc`], kept rolled (compact: odd row lengths only).
macro_rules! with_fetch {
    ($ldg:expr, $aligned:expr, |$fetch:ident, $unroll:ident| $body:expr) => {{
        use $crate::mainloop::staging::Fetch;
        if !$ldg {
            const $unroll: bool = true;
            let $fetch = Fetch::Scalar;
            $body
        } else if $aligned {
            const $unroll: bool = true;
            let $fetch = Fetch::Vector;
            $body
        } else {
            const $unroll: bool = false;
            let $fetch = Fetch::ScalarNc;
            $body
        }
    }};
}
pub(crate) use with_fetch;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_each_stage_once() {
        for m in [4, 8] {
            for staging in [Staging::Transpose, Staging::Direct] {
                let mut seen = vec![false; stage_depth(m) * tile(m)];
                for t in 0..T * T {
                    let (k, r) = staging.run(m, t);
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

    #[test]
    fn elements_cover_the_strided_stage_once() {
        use super::super::tile::{MT, TK, TL};
        for staging in [Staging::Transpose, Staging::Direct] {
            let mut seen = vec![false; TK * TL];
            for ty in 0..T {
                for tx in 0..T {
                    for l in 0..MT {
                        let (k, r) = staging.element(tx, ty, l);
                        assert!(k < TK && r < TL);
                        assert!(!seen[k * TL + r]);
                        seen[k * TL + r] = true;
                    }
                }
            }
            assert!(seen.iter().all(|&s| s));
        }
    }
}
