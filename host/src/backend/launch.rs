//! Launch configuration of the margin kernels (`kernels_gpu::{forward, row_norms,
//! input_grad, weight_grad}`), computed in this one place for every backend that runs
//! them (emulated, ptx, cuda, all through the launch pipeline of `backend/pipeline.rs`).
//! A backend turns a [`KernelLaunch`] into its own launch call and passes `params` by
//! value as the kernel's first argument; the other arguments (buffers) are listed on each
//! plan function.
//!
//! Sizes must fit the kernels' `u32` parameters and CUDA's grid limits
//! (`grid.x < 2³¹`, `grid.y ≤ 65535`); larger problems are refused with
//! [`Error::Shape`] before anything runs.

use kernels_gpu::params::{
    FORWARD_KERNEL, ForwardParams, GEMM_SHARED_BYTES, GradParams, INPUT_GRAD_KERNEL, NORM_LANES,
    NORM_ROWS_PER_BLOCK, NORM_SHARED_BYTES, NORMALISE_THREADS, PROJECT_LANES,
    PROJECT_ROWS_PER_BLOCK, PROJECT_SHARED_BYTES, ROW_NORMS_KERNEL, ROW_PROJECT_KERNEL,
    ROW_SCALE_KERNEL, RowNormsParams, RowScaleParams, SPLITK_KERNEL, SPLITK_REDUCE_KERNEL,
    SPLITK_REDUCE_THREADS, SplitKParams, THREADS, TILE, WEIGHT_GRAD_KERNEL, wide_shared_bytes,
};

use crate::error::{Error, Result};
pub use crate::margin::forward_params;
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

/// A variant of the GEMM main loop shared by the three margin kernels: one step of the
/// kernel ladder (`kernels-gpu/src/ladder.rs`), each changing one level of the tile
/// hierarchy. Every variant computes the same results (bitwise equal: same summation
/// order); they differ in speed only. Each is its own PTX entry per kernel, with the same
/// parameter list as the base kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum KernelVariant {
    /// The base kernel: 64×64 block tile, strided 4×4 thread tile, 16-deep stage, scalar
    /// shared loads, inner loop unrolled 2× by LLVM (entries `margin_forward`, …).
    Base,
    /// Thread tile ↔ shared memory changed: the 4×4 thread tile in runs of 4 (128-bit
    /// shared loads), stage unrolled by construction with `u32` counters (suffix `_unrolled`).
    Unrolled,
    /// Block and thread tile changed: 128×128 block tile, 8×8 thread tile, 8-deep stage
    /// (suffix `_micro8`).
    Micro8,
    /// Global loads changed: `micro8` with `ld.global.nc`, 128-bit when the rows are a
    /// multiple of 4 long (suffix `_ldg`). The default: the static SASS report ranks it
    /// best.
    #[default]
    Ldg,
    /// Shared staging changed: `ldg` with double-buffered shared memory, one barrier per
    /// stage (suffix `_dbuf`).
    Dbuf,
}

impl KernelVariant {
    /// Every variant, in ladder order (each builds on the one before).
    pub const ALL: [KernelVariant; 5] = [
        KernelVariant::Base,
        KernelVariant::Unrolled,
        KernelVariant::Micro8,
        KernelVariant::Ldg,
        KernelVariant::Dbuf,
    ];

    /// The name `--kernel` takes.
    pub fn name(self) -> &'static str {
        match self {
            KernelVariant::Base => "base",
            KernelVariant::Unrolled => "unrolled",
            KernelVariant::Micro8 => "micro8",
            KernelVariant::Ldg => "ldg",
            KernelVariant::Dbuf => "dbuf",
        }
    }

    /// PTX entries `(forward, input grad, weight grad)` of this variant.
    pub fn entries(self) -> [&'static str; 3] {
        match self {
            KernelVariant::Base => [FORWARD_KERNEL, INPUT_GRAD_KERNEL, WEIGHT_GRAD_KERNEL],
            KernelVariant::Unrolled => [
                "margin_forward_unrolled",
                "margin_input_grad_unrolled",
                "margin_weight_grad_unrolled",
            ],
            KernelVariant::Micro8 => [
                "margin_forward_micro8",
                "margin_input_grad_micro8",
                "margin_weight_grad_micro8",
            ],
            KernelVariant::Ldg => [
                "margin_forward_ldg",
                "margin_input_grad_ldg",
                "margin_weight_grad_ldg",
            ],
            KernelVariant::Dbuf => [
                "margin_forward_dbuf",
                "margin_input_grad_dbuf",
                "margin_weight_grad_dbuf",
            ],
        }
    }

    /// Output tile side of each block.
    pub fn tile(self) -> u32 {
        match self {
            KernelVariant::Base | KernelVariant::Unrolled => TILE,
            KernelVariant::Micro8 | KernelVariant::Ldg | KernelVariant::Dbuf => 2 * TILE,
        }
    }

    /// Dynamic shared memory per block, bytes.
    pub fn shared_bytes(self) -> u32 {
        match self {
            KernelVariant::Base => GEMM_SHARED_BYTES,
            KernelVariant::Unrolled => wide_shared_bytes(4, false),
            KernelVariant::Micro8 | KernelVariant::Ldg => wide_shared_bytes(8, false),
            KernelVariant::Dbuf => wide_shared_bytes(8, true),
        }
    }

    fn plan(self, kernel: &'static str, grid: (u32, u32, u32)) -> LaunchPlan {
        LaunchPlan {
            kernel,
            grid,
            block: (THREADS, THREADS, 1),
            shared_bytes: self.shared_bytes(),
        }
    }
}

impl std::fmt::Display for KernelVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// PTX entries of the variants other than the base one and of split-K: `lsoftmax ptx
/// --check` fails if one is missing (the base variant's are in `ptx::EXPECTED_ENTRIES`).
pub const LADDER_ENTRIES: &[&str] = &[
    "margin_forward_unrolled",
    "margin_input_grad_unrolled",
    "margin_weight_grad_unrolled",
    "margin_forward_micro8",
    "margin_input_grad_micro8",
    "margin_weight_grad_micro8",
    "margin_forward_ldg",
    "margin_input_grad_ldg",
    "margin_weight_grad_ldg",
    "margin_forward_dbuf",
    "margin_input_grad_dbuf",
    "margin_weight_grad_dbuf",
    SPLITK_KERNEL,
    SPLITK_REDUCE_KERNEL,
];

/// Whether the input gradient may be split along K = C ([`input_grad_launch`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitK {
    /// Split when the shape leaves the GPU mostly idle (few output tiles, large C).
    #[default]
    Auto,
    /// Never split.
    Off,
    /// Split into this many chunks (at least 2; capped so each chunk holds a stage).
    Force(u32),
}

/// What a GPU-style backend launches: the main-loop variant and the split-K policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelChoice {
    /// Main-loop variant of the three GEMM kernels.
    pub variant: KernelVariant,
    /// Split-K policy for the input gradient.
    pub split_k: SplitK,
}

impl KernelChoice {
    /// `variant` with automatic split-K.
    pub fn variant(variant: KernelVariant) -> Self {
        KernelChoice {
            variant,
            split_k: SplitK::Auto,
        }
    }
}

/// Most blocks along grid x (`2³¹ − 1`).
const MAX_GRID_X: u64 = i32::MAX as u64;
/// Most blocks along grid y.
const MAX_GRID_Y: u64 = 65_535;

/// Largest N, D or C the kernels accept: `2³¹ − 1`, so that the kernels' `u32` position
/// arithmetic (a position plus a tile) cannot wrap.
pub const MAX_DIM: usize = i32::MAX as usize;

fn to_u32(name: &str, v: usize) -> Result<u32> {
    if v > MAX_DIM {
        return Err(Error::Shape(format!(
            "{name} = {v} exceeds the kernels' limit of {MAX_DIM}"
        )));
    }
    Ok(v as u32)
}

/// `(N, D, C)` as the kernels' `u32`s.
fn dims(n: usize, d: usize, c: usize) -> Result<(u32, u32, u32)> {
    Ok((to_u32("N", n)?, to_u32("D", d)?, to_u32("C", c)?))
}

/// Grid of 64×64 output tiles for an `rows × cols` output: x over columns, y over rows.
fn tile_grid(kernel: &str, rows: (&str, usize), cols: (&str, usize)) -> Result<(u32, u32, u32)> {
    tile_grid_of(TILE as usize, kernel, rows, cols)
}

/// Grid of `tile × tile` output tiles for an `rows × cols` output.
fn tile_grid_of(
    tile: usize,
    kernel: &str,
    rows: (&str, usize),
    cols: (&str, usize),
) -> Result<(u32, u32, u32)> {
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
/// The base variant ([`KernelVariant::Base`]); [`forward_launch`] takes the variant.
pub fn forward_plan(
    n: usize,
    d: usize,
    c: usize,
    margin: Margin,
    mode: Mode,
) -> Result<KernelLaunch<ForwardParams>> {
    forward_launch(n, d, c, margin, mode, KernelVariant::Base)
}

/// [`forward_plan`] for `variant`: the same arguments; grid `(⌈C/T⌉, ⌈N/T⌉)` of 16×16
/// for the variant's tile side `T`.
pub fn forward_launch(
    n: usize,
    d: usize,
    c: usize,
    margin: Margin,
    mode: Mode,
    variant: KernelVariant,
) -> Result<KernelLaunch<ForwardParams>> {
    let (n32, d32, c32) = dims(n, d, c)?;
    Ok(KernelLaunch {
        plan: variant.plan(
            variant.entries()[0],
            tile_grid_of(
                variant.tile() as usize,
                variant.entries()[0],
                ("N", n),
                ("C", c),
            )?,
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
/// gamma_scale: N, dw: C×D)`. Grid `(⌈D/64⌉, ⌈C/64⌉)` of 16×16. The base variant; see
/// [`weight_grad_launch`].
pub fn weight_grad_plan(n: usize, d: usize, c: usize) -> Result<KernelLaunch<GradParams>> {
    weight_grad_launch(n, d, c, KernelVariant::Base)
}

/// [`weight_grad_plan`] for `variant` (grid of the variant's tiles).
pub fn weight_grad_launch(
    n: usize,
    d: usize,
    c: usize,
    variant: KernelVariant,
) -> Result<KernelLaunch<GradParams>> {
    let (n32, d32, c32) = dims(n, d, c)?;
    let entry = variant.entries()[2];
    Ok(KernelLaunch {
        plan: variant.plan(
            entry,
            tile_grid_of(variant.tile() as usize, entry, ("C", c), ("D", d))?,
        ),
        params: GradParams {
            n: n32,
            d: d32,
            c: c32,
        },
    })
}

/// How the input gradient runs: one kernel, or split-K (partials, then their reduction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputGradLaunch {
    /// The variant's `margin_input_grad*` entry ([`input_grad_plan`]'s arguments).
    Direct(KernelLaunch<GradParams>),
    /// Split-K along C.
    Split {
        /// `margin_input_grad_splitk(params, g, w, labels, p, partial: splits×N×D)`, grid
        /// `(⌈D/128⌉, ⌈N/128⌉, splits)` of 16×16.
        partial: KernelLaunch<SplitKParams>,
        /// `margin_input_grad_splitk_reduce(params, g, x, labels, alpha_scale, partial, dx)`,
        /// grid `⌈N·D/256⌉` of 256.
        reduce: KernelLaunch<SplitKParams>,
        /// Elements of the `partial` scratch buffer (`splits·N·D`).
        scratch_len: usize,
    },
}

/// Blocks that keep a large GPU busy (two waves of a 132-SM H100): below this many output
/// tiles, [`SplitK::Auto`] splits K.
pub const SPLITK_TARGET_BLOCKS: usize = 264;
/// Fewest classes per split-K chunk under [`SplitK::Auto`] (64 stages of 8): below it
/// the reduction's extra traffic outweighs the gain.
pub const SPLITK_MIN_CHUNK: usize = 512;

/// The input gradient for `choice`: [`InputGradLaunch::Split`] when the policy asks for it
/// and the variant has split-K entries (split-K runs the `dbuf` main loop; the base
/// variant never splits), else [`InputGradLaunch::Direct`].
///
/// `Auto` splits when `⌈N/128⌉·⌈D/128⌉ < 264` tiles and `C ≥ 1024`, into
/// `min(⌈264 / tiles⌉, ⌊C / 512⌋)` chunks. Chunks are a whole number of 8-class stages.
pub fn input_grad_launch(
    n: usize,
    d: usize,
    c: usize,
    choice: KernelChoice,
) -> Result<InputGradLaunch> {
    let (n32, d32, c32) = dims(n, d, c)?;
    let grad = GradParams {
        n: n32,
        d: d32,
        c: c32,
    };
    let variant = choice.variant;
    let split_tile = KernelVariant::Dbuf.tile() as usize;
    let tiles = n.div_ceil(split_tile) * d.div_ceil(split_tile);
    let wanted = match (variant, choice.split_k) {
        (KernelVariant::Base, _) | (_, SplitK::Off) => 1,
        (_, SplitK::Force(s)) => s as usize,
        (_, SplitK::Auto) if tiles < SPLITK_TARGET_BLOCKS => SPLITK_TARGET_BLOCKS
            .div_ceil(tiles)
            .min(c / SPLITK_MIN_CHUNK),
        (_, SplitK::Auto) => 1,
    };
    // Chunks of whole stages, at least one stage each.
    let stage = 8;
    let chunk = c.div_ceil(wanted.max(1)).div_ceil(stage) * stage;
    let splits = c.div_ceil(chunk);
    if splits < 2 {
        let entry = variant.entries()[1];
        return Ok(InputGradLaunch::Direct(KernelLaunch {
            plan: variant.plan(
                entry,
                tile_grid_of(variant.tile() as usize, entry, ("N", n), ("D", d))?,
            ),
            params: grad,
        }));
    }
    let (gx, gy, _) = tile_grid_of(split_tile, SPLITK_KERNEL, ("N", n), ("D", d))?;
    let scratch_len = splits
        .checked_mul(n)
        .and_then(|v| v.checked_mul(d))
        .filter(|&v| v <= isize::MAX as usize / 4)
        .ok_or_else(|| {
            Error::Shape(format!(
                "{SPLITK_KERNEL}: {splits} partial copies of N×D = {n}×{d} do not fit in memory"
            ))
        })?;
    let outputs = (n * d) as u64;
    let reduce_blocks = outputs.div_ceil(u64::from(SPLITK_REDUCE_THREADS));
    if reduce_blocks > MAX_GRID_X {
        return Err(Error::Shape(format!(
            "{SPLITK_REDUCE_KERNEL}: N·D = {outputs} outputs need {reduce_blocks} blocks, \
             beyond CUDA's {MAX_GRID_X}"
        )));
    }
    let params = SplitKParams {
        grad,
        chunk: chunk as u32,
        splits: splits as u32,
    };
    Ok(InputGradLaunch::Split {
        partial: KernelLaunch {
            plan: KernelVariant::Dbuf.plan(SPLITK_KERNEL, (gx, gy, splits as u32)),
            params,
        },
        reduce: KernelLaunch {
            plan: LaunchPlan {
                kernel: SPLITK_REDUCE_KERNEL,
                grid: (reduce_blocks as u32, 1, 1),
                block: (SPLITK_REDUCE_THREADS, 1, 1),
                shared_bytes: 0,
            },
            params,
        },
        scratch_len,
    })
}

/// Threads per block and dynamic shared bytes of a margin kernel's launches, for resource
/// reports (`lsoftmax ptx`); `None` for kernels launched elsewhere. Blocks do not depend on
/// the problem size, so the plans of a 1×1×1 problem answer for every size.
pub fn block_shape(kernel: &str) -> Option<(u32, u32)> {
    let mut plans = vec![row_norms_plan(1, 1, 1).ok()?.plan];
    for variant in KernelVariant::ALL {
        plans.push(
            forward_launch(1, 1, 1, Margin::Plain, Mode::Infer, variant)
                .ok()?
                .plan,
        );
        if let InputGradLaunch::Direct(l) =
            input_grad_launch(1, 1, 1, KernelChoice::variant(variant)).ok()?
        {
            plans.push(l.plan);
        }
        plans.push(weight_grad_launch(1, 1, 1, variant).ok()?.plan);
    }
    let split = KernelChoice {
        variant: KernelVariant::Dbuf,
        split_k: SplitK::Force(2),
    };
    if let InputGradLaunch::Split {
        partial, reduce, ..
    } = input_grad_launch(1, 1, 16, split).ok()?
    {
        plans.push(partial.plan);
        plans.push(reduce.plan);
    }
    plans.push(row_scale_plan(1, 1, 1.0).ok()?.plan);
    plans.push(row_project_plan(1, 1, 1.0).ok()?.plan);
    plans
        .iter()
        .find(|p| p.kernel == kernel)
        .map(|p| (p.block.0 * p.block.1 * p.block.2, p.shared_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernels_gpu::params::{KernelMode, MarginKind};

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
    fn variants_have_their_own_entries_and_tiles() {
        for v in KernelVariant::ALL {
            let f = forward_launch(200, 3, 300, Margin::Plain, Mode::Infer, v).unwrap();
            let t = v.tile();
            assert_eq!(f.plan.kernel, v.entries()[0]);
            assert!(f.plan.kernel.starts_with(FORWARD_KERNEL));
            assert_eq!(f.plan.grid, (300u32.div_ceil(t), 200u32.div_ceil(t), 1));
            assert_eq!(f.plan.shared_bytes, v.shared_bytes());
            assert!(v.entries()[1].starts_with(INPUT_GRAD_KERNEL));
            assert!(v.entries()[2].starts_with(WEIGHT_GRAD_KERNEL));
            assert_eq!(
                block_shape(v.entries()[2]),
                Some((256, v.shared_bytes())),
                "{v}"
            );
        }
        assert_eq!(KernelVariant::default(), KernelVariant::Ldg);
        for v in &KernelVariant::ALL[1..] {
            for e in v.entries() {
                assert!(
                    LADDER_ENTRIES.contains(&e),
                    "{e} missing from LADDER_ENTRIES"
                );
            }
        }
        assert_eq!(block_shape(SPLITK_REDUCE_KERNEL), Some((256, 0)));
    }

    #[test]
    fn split_k_is_chosen_from_the_shape() {
        let auto = KernelChoice::default();
        // 256×512 output: 8 tiles of 128; C = 16384 → min(⌈264/8⌉, 16384/512) = 32 chunks.
        let InputGradLaunch::Split {
            partial,
            reduce,
            scratch_len,
        } = input_grad_launch(256, 512, 16_384, auto).unwrap()
        else {
            panic!("256x512x16384 should split");
        };
        assert_eq!((partial.params.splits, partial.params.chunk), (32, 512));
        assert_eq!(partial.plan.grid, (4, 2, 32));
        assert_eq!(partial.plan.kernel, SPLITK_KERNEL);
        assert_eq!(reduce.plan.grid, (256 * 512 / 256, 1, 1));
        assert_eq!(scratch_len, 32 * 256 * 512);
        // Many output tiles, or few classes, or the base variant, or Off: one kernel.
        for (n, d, c, choice) in [
            (4096, 4096, 100_000, auto),
            (256, 512, 1000, auto),
            (256, 512, 16_384, KernelChoice::variant(KernelVariant::Base)),
            (
                256,
                512,
                16_384,
                KernelChoice {
                    variant: KernelVariant::Ldg,
                    split_k: SplitK::Off,
                },
            ),
        ] {
            assert!(
                matches!(
                    input_grad_launch(n, d, c, choice).unwrap(),
                    InputGradLaunch::Direct(_)
                ),
                "{n}x{d}x{c} {choice:?}"
            );
        }
        // Forced: chunks are whole 8-class stages, the last one shorter.
        let forced = KernelChoice {
            variant: KernelVariant::Ldg,
            split_k: SplitK::Force(3),
        };
        let InputGradLaunch::Split { partial, .. } = input_grad_launch(5, 7, 33, forced).unwrap()
        else {
            panic!("forced split");
        };
        assert_eq!((partial.params.chunk, partial.params.splits), (16, 3));
    }

    #[test]
    fn oversized_problems_are_refused_with_the_offending_size() {
        let err = forward_plan(65_535 * 64 + 1, 1, 1, Margin::Plain, Mode::Train).unwrap_err();
        assert!(err.to_string().contains("N = 4194241"), "{err}");
        let err = input_grad_plan(1, 1usize << 33, 1).unwrap_err();
        assert!(err.to_string().contains("D = 8589934592"), "{err}");
    }
}
