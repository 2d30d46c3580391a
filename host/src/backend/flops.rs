//! The three margin kernels as a value, with the floating-point work each one does: what
//! `lsoftmax profile` and `benches/cuda_kernels.rs` run and how they turn a time into GFLOP/s.

/// One of the margin kernels (`kernels_gpu::{forward, input_grad, weight_grad}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum MarginKernel {
    /// `margin_forward`: `F = X·Wᵀ` plus the margin epilogue on `(i, y_i)`.
    Forward,
    /// `margin_input_grad`: `dX = G'·W + diag(α)·X`.
    InputGrad,
    /// `margin_weight_grad`: `dW = G'ᵀ·X + diag(γ)·W`.
    WeightGrad,
}

impl MarginKernel {
    /// All three, in pipeline order.
    pub const ALL: [MarginKernel; 3] = [
        MarginKernel::Forward,
        MarginKernel::InputGrad,
        MarginKernel::WeightGrad,
    ];

    /// The kernel's PTX entry name.
    pub fn entry_name(self) -> &'static str {
        use kernels_gpu::params::{FORWARD_KERNEL, INPUT_GRAD_KERNEL, WEIGHT_GRAD_KERNEL};
        match self {
            MarginKernel::Forward => FORWARD_KERNEL,
            MarginKernel::InputGrad => INPUT_GRAD_KERNEL,
            MarginKernel::WeightGrad => WEIGHT_GRAD_KERNEL,
        }
    }

    /// Floating-point operations of one launch on an N×D input, C classes, counting a
    /// fused multiply-add as 2:
    /// - forward: `2·N·D·C` (the GEMM; the per-row epilogue is O(N) and not counted),
    /// - input-grad: `2·N·C·D + 2·N·D` (the GEMM `G'·W`, then `+ α_i·x_i` per element),
    /// - weight-grad: `2·N·C·D + 2·C·D` (the GEMM `G'ᵀ·X`, then `+ γ_j·w_j` per element).
    ///
    /// Computed in f64 so that no realistic size overflows.
    pub fn flops(self, n: usize, d: usize, c: usize) -> f64 {
        let (n, d, c) = (n as f64, d as f64, c as f64);
        match self {
            MarginKernel::Forward => 2.0 * n * d * c,
            MarginKernel::InputGrad => 2.0 * n * c * d + 2.0 * n * d,
            MarginKernel::WeightGrad => 2.0 * n * c * d + 2.0 * c * d,
        }
    }

    /// The FLOP formula as text, printed next to measured rates.
    pub fn flops_formula(self) -> &'static str {
        match self {
            MarginKernel::Forward => "2·N·D·C",
            MarginKernel::InputGrad => "2·N·C·D + 2·N·D",
            MarginKernel::WeightGrad => "2·N·C·D + 2·C·D",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_counts_match_hand_counts() {
        // N=2, D=3, C=5: the forward GEMM does N·C dot products of length D, each D FMAs.
        assert_eq!(MarginKernel::Forward.flops(2, 3, 5), 60.0);
        // 60 for G'·W plus one FMA per element of the 2×3 dX.
        assert_eq!(MarginKernel::InputGrad.flops(2, 3, 5), 72.0);
        // 60 for G'ᵀ·X plus one FMA per element of the 5×3 dW.
        assert_eq!(MarginKernel::WeightGrad.flops(2, 3, 5), 90.0);
    }

    #[test]
    fn entry_names_are_the_ptx_entries() {
        assert_eq!(MarginKernel::Forward.entry_name(), "margin_forward");
        assert_eq!(MarginKernel::InputGrad.entry_name(), "margin_input_grad");
        assert_eq!(MarginKernel::WeightGrad.entry_name(), "margin_weight_grad");
    }
}
