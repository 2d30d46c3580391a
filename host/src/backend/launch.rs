//! Launch configuration of the margin kernels (`kernels_gpu::{forward, row_norms,
//! input_grad, weight_grad}`), computed in this one place for every backend that runs
//! them: the emulator now, CUDA next. A backend turns a [`KernelLaunch`] into its own
//! launch call and passes `params` by value as the kernel's first argument; the other
//! arguments (buffers) are listed on each plan function.
//!
//! Sizes must fit the kernels' `u32` parameters and CUDA's grid limits
//! (`grid.x < 2³¹`, `grid.y ≤ 65535`); larger problems are refused with
//! [`Error::Shape`] before anything runs.

use kernels_gpu::params::{
    FORWARD_KERNEL, ForwardParams, GEMM_SHARED_BYTES, GradParams, INPUT_GRAD_KERNEL, KernelMode,
    MarginKind, NORM_LANES, NORM_ROWS_PER_BLOCK, NORM_SHARED_BYTES, NORMALISE_THREADS,
    PROJECT_LANES, PROJECT_ROWS_PER_BLOCK, PROJECT_SHARED_BYTES, ROW_NORMS_KERNEL,
    ROW_PROJECT_KERNEL, ROW_SCALE_KERNEL, RowNormsParams, RowScaleParams, THREADS, TILE,
    WEIGHT_GRAD_KERNEL,
};

use crate::error::{Error, Result};
use crate::margin::{Margin, Mode};

/// Where and how wide one kernel runs: CUDA's `<<<grid, block, shared_bytes>>>` plus the
/// PTX entry name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// PTX entry point (the kernel function's name).
    pub kernel: &'static str,
    /// Blocks along (x, y, z).
    pub grid: (u32, u32, u32),
    /// Threads per block along (x, y, z).
    pub block: (u32, u32, u32),
    /// Dynamic shared memory per block, bytes.
    pub shared_bytes: u32,
}

/// A plan with the kernel's parameter struct (its first argument).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelLaunch<P> {
    /// Grid, block, shared memory, entry name.
    pub plan: LaunchPlan,
    /// The `#[repr(C)]` parameter struct, passed by value.
    pub params: P,
}

/// Most blocks along grid x (`2³¹ − 1`).
const MAX_GRID_X: u64 = i32::MAX as u64;
/// Most blocks along grid y.
const MAX_GRID_Y: u64 = 65_535;

fn to_u32(name: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Shape(format!(
            "{name} = {v} exceeds the kernels' limit of {} (u32 sizes)",
            u32::MAX
        ))
    })
}

/// `(N, D, C)` as the kernels' `u32`s.
fn dims(n: usize, d: usize, c: usize) -> Result<(u32, u32, u32)> {
    Ok((to_u32("N", n)?, to_u32("D", d)?, to_u32("C", c)?))
}

/// Grid of 64×64 output tiles for an `rows × cols` output: x over columns, y over rows.
fn tile_grid(kernel: &str, rows: (&str, usize), cols: (&str, usize)) -> Result<(u32, u32, u32)> {
    let tile = TILE as usize;
    let gx = cols.1.div_ceil(tile) as u64;
    let gy = rows.1.div_ceil(tile) as u64;
    if gx > MAX_GRID_X || gy > MAX_GRID_Y {
        return Err(Error::Shape(format!(
            "{kernel}: {} = {} and {} = {} need a grid of {gx} x {gy} tiles of {tile}, \
             beyond CUDA's ({MAX_GRID_X}, {MAX_GRID_Y})",
            rows.0, rows.1, cols.0, cols.1
        )));
    }
    Ok((gx as u32, gy as u32, 1))
}

fn gemm_plan(kernel: &'static str, grid: (u32, u32, u32)) -> LaunchPlan {
    LaunchPlan {
        kernel,
        grid,
        block: (THREADS, THREADS, 1),
        shared_bytes: GEMM_SHARED_BYTES,
    }
}

/// Whether the forward pass needs [`row_norms_plan`] first: L-Softmax in training reads
/// `‖x_i‖` and `‖w_{y_i}‖`; the normalised margins need the norms in both modes.
pub fn needs_row_norms(margin: Margin, mode: Mode) -> bool {
    (mode == Mode::Train && matches!(margin, Margin::LSoftmax { .. })) || margin.is_normalised()
}

/// `row_scale(params, v: rows×D, norms: rows f64, out: rows×D)`: `out_i = factor·v_i/‖v_i‖`.
/// Grid `⌈rows·D/256⌉` blocks of 256 threads, no shared memory.
pub fn row_scale_plan(rows: usize, d: usize, factor: f32) -> Result<KernelLaunch<RowScaleParams>> {
    let (r32, d32) = (to_u32("rows", rows)?, to_u32("D", d)?);
    let threads = NORMALISE_THREADS as usize;
    let blocks = rows
        .checked_mul(d)
        .map(|e| e.div_ceil(threads) as u64)
        .filter(|&b| b <= MAX_GRID_X)
        .ok_or_else(|| {
            Error::Shape(format!(
                "{ROW_SCALE_KERNEL}: {rows} rows of D = {d} need more than {MAX_GRID_X} blocks"
            ))
        })?;
    Ok(KernelLaunch {
        plan: LaunchPlan {
            kernel: ROW_SCALE_KERNEL,
            grid: (blocks as u32, 1, 1),
            block: (NORMALISE_THREADS, 1, 1),
            shared_bytes: 0,
        },
        params: RowScaleParams {
            rows: r32,
            d: d32,
            factor,
        },
    })
}

/// `row_project(params, v: rows×D, norms: rows f64, dv_scaled: rows×D, dv: rows×D)`:
/// the backward of [`row_scale_plan`]'s map. Grid `⌈rows/8⌉` blocks of 32×8 threads (8
/// rows per block), one f64 per thread of shared memory.
pub fn row_project_plan(
    rows: usize,
    d: usize,
    factor: f32,
) -> Result<KernelLaunch<RowScaleParams>> {
    let (r32, d32) = (to_u32("rows", rows)?, to_u32("D", d)?);
    let blocks = rows.div_ceil(PROJECT_ROWS_PER_BLOCK as usize) as u64;
    if blocks > MAX_GRID_X {
        return Err(Error::Shape(format!(
            "{ROW_PROJECT_KERNEL}: {rows} rows need {blocks} blocks, beyond CUDA's {MAX_GRID_X}"
        )));
    }
    Ok(KernelLaunch {
        plan: LaunchPlan {
            kernel: ROW_PROJECT_KERNEL,
            grid: (blocks as u32, 1, 1),
            block: (PROJECT_LANES, PROJECT_ROWS_PER_BLOCK, 1),
            shared_bytes: PROJECT_SHARED_BYTES,
        },
        params: RowScaleParams {
            rows: r32,
            d: d32,
            factor,
        },
    })
}

/// The forward kernel's parameters for `margin` and `mode` on an `n×d` by `c×d` problem
/// (sizes already checked to fit `u32`).
pub fn forward_params(n: u32, d: u32, c: u32, margin: Margin, mode: Mode) -> ForwardParams {
    let mut p = ForwardParams {
        n,
        d,
        c,
        margin: MarginKind::Plain,
        mode: match mode {
            Mode::Train => KernelMode::Train,
            Mode::Infer => KernelMode::Infer,
        },
        m: 1,
        k: 1.0,
        beta: 0.0,
        s: 1.0,
        m1: 1.0,
        m2: 0.0,
        m3: 0.0,
    };
    match margin {
        Margin::Plain => {}
        Margin::Simplified { k } => {
            p.margin = MarginKind::Simplified;
            p.k = k;
        }
        Margin::LSoftmax { m, beta } => {
            p.margin = MarginKind::LSoftmax;
            (p.m, p.beta) = (m, beta);
        }
        Margin::SphereFace { m, beta } => {
            p.margin = MarginKind::SphereFace;
            (p.m, p.beta) = (m, beta);
        }
        Margin::CosFace { s, m } => {
            p.margin = MarginKind::CosFace;
            (p.s, p.m3) = (s, m);
        }
        Margin::ArcFace { s, m } => {
            p.margin = MarginKind::ArcFace;
            (p.s, p.m2) = (s, m);
        }
        Margin::Combined { s, m1, m2, m3 } => {
            p.margin = MarginKind::Combined;
            (p.s, p.m1, p.m2, p.m3) = (s, m1, m2, m3);
        }
    }
    p
}

/// `row_norms(params, x: N×D, w: C×D, x_norms: N f64, w_norms: C f64)`:
/// grid `⌈N/8⌉ + ⌈C/8⌉` blocks of 32×8 threads, one f64 per thread of shared memory.
pub fn row_norms_plan(n: usize, d: usize, c: usize) -> Result<KernelLaunch<RowNormsParams>> {
    let (n32, d32, c32) = dims(n, d, c)?;
    let per_block = NORM_ROWS_PER_BLOCK as usize;
    let blocks = (n.div_ceil(per_block) + c.div_ceil(per_block)) as u64;
    if blocks > MAX_GRID_X {
        return Err(Error::Shape(format!(
            "{ROW_NORMS_KERNEL}: N + C = {} rows need {blocks} blocks, beyond CUDA's {MAX_GRID_X}",
            n + c
        )));
    }
    Ok(KernelLaunch {
        plan: LaunchPlan {
            kernel: ROW_NORMS_KERNEL,
            grid: (blocks as u32, 1, 1),
            block: (NORM_LANES, NORM_ROWS_PER_BLOCK, 1),
            shared_bytes: NORM_SHARED_BYTES,
        },
        params: RowNormsParams {
            n: n32,
            d: d32,
            c: c32,
        },
    })
}

/// `margin_forward(params, x: N×D, w: C×D, labels: N u32, x_norms: N f64, w_norms: C f64,
/// out: N×C, p: N, alpha_scale: N, gamma_scale: N)`; the norm buffers are read only when
/// [`needs_row_norms`] (otherwise they may be empty). Grid `(⌈C/64⌉, ⌈N/64⌉)` of 16×16.
pub fn forward_plan(
    n: usize,
    d: usize,
    c: usize,
    margin: Margin,
    mode: Mode,
) -> Result<KernelLaunch<ForwardParams>> {
    let (n32, d32, c32) = dims(n, d, c)?;
    Ok(KernelLaunch {
        plan: gemm_plan(
            FORWARD_KERNEL,
            tile_grid(FORWARD_KERNEL, ("N", n), ("C", c))?,
        ),
        params: forward_params(n32, d32, c32, margin, mode),
    })
}

/// `margin_input_grad(params, g: N×C, w: C×D, x: N×D, labels: N u32, p: N,
/// alpha_scale: N, dx: N×D)`. Grid `(⌈D/64⌉, ⌈N/64⌉)` of 16×16.
pub fn input_grad_plan(n: usize, d: usize, c: usize) -> Result<KernelLaunch<GradParams>> {
    let (n32, d32, c32) = dims(n, d, c)?;
    Ok(KernelLaunch {
        plan: gemm_plan(
            INPUT_GRAD_KERNEL,
            tile_grid(INPUT_GRAD_KERNEL, ("N", n), ("D", d))?,
        ),
        params: GradParams {
            n: n32,
            d: d32,
            c: c32,
        },
    })
}

/// `margin_weight_grad(params, g: N×C, x: N×D, w: C×D, labels: N u32, p: N,
/// gamma_scale: N, dw: C×D)`. Grid `(⌈D/64⌉, ⌈C/64⌉)` of 16×16.
pub fn weight_grad_plan(n: usize, d: usize, c: usize) -> Result<KernelLaunch<GradParams>> {
    let (n32, d32, c32) = dims(n, d, c)?;
    Ok(KernelLaunch {
        plan: gemm_plan(
            WEIGHT_GRAD_KERNEL,
            tile_grid(WEIGHT_GRAD_KERNEL, ("C", c), ("D", d))?,
        ),
        params: GradParams {
            n: n32,
            d: d32,
            c: c32,
        },
    })
}

/// Threads per block and dynamic shared bytes of a margin kernel's launches, for resource
/// reports (`lsoftmax ptx`); `None` for kernels launched elsewhere. Blocks do not depend on
/// the problem size, so the plans of a 1×1×1 problem answer for every size.
pub fn block_shape(kernel: &str) -> Option<(u32, u32)> {
    let plans = [
        row_norms_plan(1, 1, 1).ok()?.plan,
        forward_plan(1, 1, 1, Margin::Plain, Mode::Infer).ok()?.plan,
        input_grad_plan(1, 1, 1).ok()?.plan,
        weight_grad_plan(1, 1, 1).ok()?.plan,
        row_scale_plan(1, 1, 1.0).ok()?.plan,
        row_project_plan(1, 1, 1.0).ok()?.plan,
    ];
    plans
        .iter()
        .find(|p| p.kernel == kernel)
        .map(|p| (p.block.0 * p.block.1 * p.block.2, p.shared_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_the_outputs_with_64_tiles() {
        let f = forward_plan(65, 3, 128, Margin::Plain, Mode::Infer).unwrap();
        assert_eq!(f.plan.grid, (2, 2, 1));
        assert_eq!(f.plan.block, (16, 16, 1));
        assert_eq!(f.plan.shared_bytes, 2 * 16 * 66 * 4);
        assert_eq!(input_grad_plan(1, 129, 7).unwrap().plan.grid, (3, 1, 1));
        assert_eq!(weight_grad_plan(1, 64, 200).unwrap().plan.grid, (1, 4, 1));
        let r = row_norms_plan(9, 5, 8).unwrap();
        assert_eq!((r.plan.grid, r.plan.block), ((3, 1, 1), (32, 8, 1)));
        // Block shapes do not depend on the problem size.
        let big = forward_plan(1000, 300, 5000, Margin::Plain, Mode::Train).unwrap();
        assert_eq!(
            block_shape(FORWARD_KERNEL),
            Some((256, big.plan.shared_bytes))
        );
        assert_eq!(block_shape(ROW_NORMS_KERNEL), Some((256, 8 * 32 * 8)));
        assert_eq!(block_shape("vector_add"), None);
    }

    #[test]
    fn margin_parameters_reach_the_kernel() {
        let p = forward_plan(1, 1, 1, Margin::lsoftmax(3, 2.5).unwrap(), Mode::Train)
            .unwrap()
            .params;
        assert_eq!(
            (p.margin, p.mode, p.m, p.beta),
            (MarginKind::LSoftmax, KernelMode::Train, 3, 2.5)
        );
        let p = forward_plan(1, 1, 1, Margin::simplified(0.25).unwrap(), Mode::Infer)
            .unwrap()
            .params;
        assert_eq!(
            (p.margin, p.mode, p.k),
            (MarginKind::Simplified, KernelMode::Infer, 0.25)
        );
    }

    #[test]
    fn oversized_problems_are_refused_with_the_offending_size() {
        let err = forward_plan(65_535 * 64 + 1, 1, 1, Margin::Plain, Mode::Train).unwrap_err();
        assert!(err.to_string().contains("N = 4194241"), "{err}");
        let err = input_grad_plan(1, 1usize << 33, 1).unwrap_err();
        assert!(err.to_string().contains("D = 8589934592"), "{err}");
    }
}
