//! Kernel parameters and tiling constants shared by the kernels and the host launchers.
//!
//! Every kernel takes one `#[repr(C)]` parameter struct by value (it becomes one
//! `.param .align 4 .b8` blob in PTX), so the host fills the same struct for the
//! emulator and for a CUDA launch. Sizes are `u32`: the host refuses larger problems
//! before launching (a 2³²-element dimension does not fit the grid limits anyway).

/// Which margin function `g` the forward epilogue applies to the target logit.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarginKind {
    /// `g = z`.
    Plain = 0,
    /// `g = k·z` if `z > 0`, else `z`.
    Simplified = 1,
    /// `g = (β·z + a·b·ψ(z/(a·b))) / (1 + β)`, margin `m ∈ 1..=4`.
    LSoftmax = 2,
    /// Normalised operands; target `S·(c − M)`, `c = z̃/S` (`M` in `m3`).
    CosFace = 3,
    /// Normalised operands; target `S·cos(θ + M)` or `S·(c − M·sin M)` (`M` in `m2`).
    ArcFace = 4,
    /// Normalised operands; target `S·(ψ(A·θ + B) − C)` (`m1, m2, m3`).
    Combined = 5,
    /// Normalised weights; target L-Softmax's `g` with `b = 1`, margin `m`, `β`.
    SphereFace = 6,
}

impl MarginKind {
    /// Whether the forward epilogue reads `‖x_i‖` and `‖w_{y_i}‖` (L-Softmax in training;
    /// the normalised kinds always, for their degenerate-row test and SphereFace's `a`).
    #[inline(always)]
    pub fn reads_norms(self) -> bool {
        !matches!(self, MarginKind::Plain | MarginKind::Simplified)
    }

    /// Whether the kind runs on normalised operands (`X̃`, `Ŵ` from [`crate::normalise`]).
    #[inline(always)]
    pub fn is_normalised(self) -> bool {
        matches!(
            self,
            MarginKind::CosFace
                | MarginKind::ArcFace
                | MarginKind::Combined
                | MarginKind::SphereFace
        )
    }
}

/// Training (margin on the target logit) or inference (plain logits everywhere).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelMode {
    /// Apply the margin and write its row cache.
    Train = 0,
    /// `F = X·Wᵀ`, cache `p = 1`, scales 0.
    Infer = 1,
}

/// Parameters of [`crate::forward::margin_forward`]: `F = X·Wᵀ` (N×C) with the margin
/// epilogue at `(i, y_i)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardParams {
    /// Rows of `X` (samples).
    pub n: u32,
    /// Feature width (columns of `X` and `W`).
    pub d: u32,
    /// Rows of `W` (classes).
    pub c: u32,
    /// The margin function.
    pub margin: MarginKind,
    /// Train or inference.
    pub mode: KernelMode,
    /// L-Softmax margin `m ∈ 1..=4` (ignored by the other kinds).
    pub m: u32,
    /// Simplified-margin factor `k ∈ (0, 1]` (ignored by the other kinds).
    pub k: f32,
    /// L-Softmax `β ≥ 0` (ignored by the other kinds).
    pub beta: f32,
    /// Scale `S` of CosFace, ArcFace, combined (the operand `X̃` has rows of length `S`).
    pub s: f32,
    /// Combined `A` (1 for CosFace and ArcFace).
    pub m1: f32,
    /// Combined `B`; ArcFace's `M`.
    pub m2: f32,
    /// Combined `C`; CosFace's `M`.
    pub m3: f32,
}

/// Parameters of [`crate::normalise::row_scale`]: `out_i = factor·v_i/‖v_i‖` for `rows`
/// rows of width `d`, and of [`crate::normalise::row_project`]: the backward of that map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowScaleParams {
    /// Rows of `v`.
    pub rows: u32,
    /// Row width.
    pub d: u32,
    /// `S` for features of the cosine margins, 1 for weights.
    pub factor: f32,
}

/// Parameters of [`crate::row_norms::row_norms`]: `‖x_i‖` for the N rows of `X` and
/// `‖w_j‖` for the C rows of `W`, both D wide.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowNormsParams {
    /// Rows of `X`.
    pub n: u32,
    /// Row width.
    pub d: u32,
    /// Rows of `W`.
    pub c: u32,
}

/// Parameters of the two backward kernels ([`crate::input_grad::margin_input_grad`],
/// [`crate::weight_grad::margin_weight_grad`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradParams {
    /// Rows of `X` and `G` (samples).
    pub n: u32,
    /// Feature width.
    pub d: u32,
    /// Rows of `W`, columns of `G` (classes).
    pub c: u32,
}

/// Parameters of the split-K input gradient
/// ([`crate::input_grad::margin_input_grad_splitk`] and its reduction): the problem, and
/// K = C cut into `splits` chunks of `chunk` classes (a multiple of the stage depth; the
/// last chunk ends at C).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitKParams {
    /// The problem.
    pub grad: GradParams,
    /// Classes per chunk.
    pub chunk: u32,
    /// Number of chunks (grid z of the first pass).
    pub splits: u32,
}

impl SplitKParams {
    /// `C − k` (0 if `k ≥ C`).
    #[inline(always)]
    pub fn c_minus(&self, k: u32) -> u32 {
        self.grad.c.saturating_sub(k)
    }
}

/// Output tile edge of the three GEMM kernels: each block computes a 64×64 tile.
pub const TILE: u32 = 64;
/// Depth of one shared-memory stage (the K extent of the staged A and B tiles).
pub const TILE_K: u32 = 16;
/// Threads per block along x and along y (16×16 = 256 threads).
pub const THREADS: u32 = 16;
/// Outputs per thread along each axis: a 4×4 register micro-tile, at stride
/// [`THREADS`] so that a half-warp touches 16 consecutive columns.
pub const MICRO: u32 = TILE / THREADS;
/// Row stride (in floats) of a staged 16×64 tile in shared memory. 66 ≡ 2 (mod 32): the
/// transposing store of a `[row][k]` tile (16 threads along k, 2 rows per warp) hits
/// 32 distinct banks, and the compute loop's reads stay conflict-free.
pub const SHARED_STRIDE: u32 = TILE + 2;
/// Dynamic shared memory of a GEMM block: the A and the B stage, f32 each.
pub const GEMM_SHARED_BYTES: u32 = 2 * TILE_K * SHARED_STRIDE * 4;

/// Rows handled by one [`crate::row_norms::row_norms`] block (one per `threadIdx.y`).
pub const NORM_ROWS_PER_BLOCK: u32 = 8;
/// Threads striding along one row in [`crate::row_norms::row_norms`] (`threadIdx.x`).
pub const NORM_LANES: u32 = 32;
/// Dynamic shared memory of a row-norm block: one f64 partial sum per thread.
pub const NORM_SHARED_BYTES: u32 = NORM_ROWS_PER_BLOCK * NORM_LANES * 8;

/// Threads per block of [`crate::normalise::row_scale`] (one element each).
pub const NORMALISE_THREADS: u32 = 256;
/// Rows handled by one [`crate::normalise::row_project`] block (one per `threadIdx.y`).
pub const PROJECT_ROWS_PER_BLOCK: u32 = 8;
/// Threads striding along one row in [`crate::normalise::row_project`] (`threadIdx.x`).
pub const PROJECT_LANES: u32 = 32;
/// Dynamic shared memory of a row-projection block: one f64 partial per thread.
pub const PROJECT_SHARED_BYTES: u32 = PROJECT_ROWS_PER_BLOCK * PROJECT_LANES * 8;

/// PTX entry name of the forward kernel.
pub const FORWARD_KERNEL: &str = "margin_forward";
/// PTX entry name of the row-norm kernel.
pub const ROW_NORMS_KERNEL: &str = "row_norms";
/// PTX entry name of the input-gradient kernel.
pub const INPUT_GRAD_KERNEL: &str = "margin_input_grad";
/// PTX entry name of the weight-gradient kernel.
pub const WEIGHT_GRAD_KERNEL: &str = "margin_weight_grad";
/// PTX entry name of the row-scale kernel.
pub const ROW_SCALE_KERNEL: &str = "row_scale";
/// PTX entry name of the row-projection kernel.
pub const ROW_PROJECT_KERNEL: &str = "row_project";

/// PTX entry name of the split-K input gradient's first pass.
pub const SPLITK_KERNEL: &str = "margin_input_grad_splitk";
/// PTX entry name of the split-K reduction.
pub const SPLITK_REDUCE_KERNEL: &str = "margin_input_grad_splitk_reduce";
/// Threads per block of the split-K reduction (1-D).
pub const SPLITK_REDUCE_THREADS: u32 = 256;

/// Dynamic shared memory of a block of the ladder variants (`_unrolled`, `_micro8`, `_ldg`,
/// `_dbuf`) with an `m × m` thread tile in runs of 4 (`m` = 4 or 8), double-buffered or
/// not: `stages · 2 · (64/m) · (16·m + 4) · 4` bytes.
pub const fn wide_shared_bytes(m: u32, double_buffer: bool) -> u32 {
    let stages = if double_buffer { 2 } else { 1 };
    stages * 2 * (64 / m) * (THREADS * m + 4) * 4
}
