//! A static model: the highest fraction of FP32 peak that a K stage's instruction mix
//! allows on one SM, ignoring latency, memory bandwidth beyond shared memory, and
//! occupancy. It is an upper bound from counting, not a timing.
//!
//! For one warp's stage (all warps of an SM run the same stage, so per-SM throughputs
//! apply):
//! ```text
//! issue cycles  = instructions / issue_per_clock          (one instruction per scheduler per clock)
//! FP32 cycles   = FFMA / ffma_per_clock                   (warp FFMAs the FP32 lanes retire per clock)
//! shared cycles = (LDS + STS + LDGSTS) / wavefronts_per_clock
//!                 (each shared access is at least one 128-byte wavefront; broadcast best case)
//! bound         = FP32 cycles / max(issue, FP32, shared cycles)
//! ```
//! Constants and their sources: docs/sass-model.md.

/// Per-SM throughputs of one GPU, per clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineModel {
    /// The SASS architecture whose code this models (`sm_80`).
    pub arch: &'static str,
    /// The GPU the constants describe.
    pub gpu: &'static str,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Warp instructions issued per clock per SM (schedulers × 1).
    pub issue_per_clock: f64,
    /// Warp-wide FFMAs retired per clock per SM (FP32 lanes / 32).
    pub ffma_per_clock: f64,
    /// Shared-memory wavefronts (128 bytes each) per clock per SM.
    pub shared_wavefronts_per_clock: f64,
}

/// A100 (SXM, sm_80) and H100 (SXM, sm_90).
pub const MODELS: &[MachineModel] = &[
    MachineModel {
        arch: "sm_80",
        gpu: "A100",
        sms: 108,
        issue_per_clock: 4.0,
        ffma_per_clock: 2.0,
        shared_wavefronts_per_clock: 1.0,
    },
    MachineModel {
        arch: "sm_90",
        gpu: "H100",
        sms: 132,
        issue_per_clock: 4.0,
        ffma_per_clock: 4.0,
        shared_wavefronts_per_clock: 1.0,
    },
];

/// The model for SASS of `arch`, if there is one.
pub fn model(arch: &str) -> Option<&'static MachineModel> {
    MODELS.iter().find(|m| m.arch == arch)
}

/// What limits the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The FP32 pipe itself: the mix allows peak.
    Fp32,
    /// Instruction issue.
    Issue,
    /// Shared-memory wavefronts.
    Shared,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Fp32 => "fp32",
            Limit::Issue => "issue",
            Limit::Shared => "shared",
        })
    }
}

/// The bound for one stage on one machine.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeakBound {
    /// The GPU of the model.
    pub gpu: String,
    /// Upper bound on the fraction of FP32 peak, in `[0, 1]`.
    pub fraction: f64,
    /// The binding limit.
    pub limit: Limit,
}

/// Counts of one stage that the model needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageCounts {
    /// All instructions.
    pub instructions: u64,
    /// FFMA.
    pub ffma: u64,
    /// Shared accesses: LDS + STS + LDGSTS instructions.
    pub shared_accesses: u64,
}

/// The bound of `counts` on `m` (see the module docs); `None` without FFMA.
pub fn peak_bound(m: &MachineModel, counts: StageCounts) -> Option<(f64, Limit)> {
    if counts.ffma == 0 {
        return None;
    }
    let fp32 = counts.ffma as f64 / m.ffma_per_clock;
    let issue = counts.instructions as f64 / m.issue_per_clock;
    let shared = counts.shared_accesses as f64 / m.shared_wavefronts_per_clock;
    // Ties name the FP32 pipe first: the mix then allows peak.
    let (cycles, limit) = [
        (fp32, Limit::Fp32),
        (issue, Limit::Issue),
        (shared, Limit::Shared),
    ]
    .into_iter()
    .fold(
        (0.0, Limit::Fp32),
        |best, c| {
            if c.0 > best.0 { c } else { best }
        },
    );
    Some((fp32 / cycles, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(instructions: u64, ffma: u64, shared_accesses: u64) -> StageCounts {
        StageCounts {
            instructions,
            ffma,
            shared_accesses,
        }
    }

    #[test]
    fn bounds_by_hand() {
        let a100 = model("sm_80").unwrap();
        let h100 = model("sm_90").unwrap();
        // 575 instructions, 256 FFMA, 128 LDS + 8 STS: A100 issue 143.75 cycles vs FP32 128
        // vs shared 136 → 128 / 143.75.
        let (f, l) = peak_bound(a100, counts(575, 256, 136)).unwrap();
        assert!(
            (f - 128.0 / 143.75).abs() < 1e-12 && l == Limit::Issue,
            "{f} {l}"
        );
        // H100: FP32 64 cycles, shared 136 → 64 / 143.75 (issue 143.75 is larger still).
        let (f, l) = peak_bound(h100, counts(575, 256, 136)).unwrap();
        assert!((f - 64.0 / 143.75).abs() < 1e-12 && l == Limit::Issue);
        // Shared-bound: 100 instructions, 64 FFMA, 40 shared on A100 → 32 / 40.
        let (f, l) = peak_bound(a100, counts(100, 64, 40)).unwrap();
        assert!((f - 0.8).abs() < 1e-12 && l == Limit::Shared);
        // Pure FFMA on A100 leaves issue slack: peak.
        assert_eq!(
            peak_bound(a100, counts(64, 64, 0)),
            Some((1.0, Limit::Fp32))
        );
        assert_eq!(peak_bound(a100, counts(10, 0, 0)), None);
        assert!(model("sm_70").is_none());
    }
}
