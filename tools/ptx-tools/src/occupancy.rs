//! Theoretical occupancy of a kernel: how many of its blocks fit on one SM at once, from
//! ptxas's register count and the launch's block size and shared memory, computed the way
//! CUDA's occupancy calculator does. It is an upper bound on resident warps, not a speed:
//! a kernel limited by memory bandwidth or latency may run as fast at 25% as at 50%. It is
//! what a register or shared-memory change costs, readable without a GPU.
//!
//! ```text
//! warps/block    = ⌈threads / 32⌉
//! regs/warp      = ⌈regs · 32 / 256⌉ · 256          (registers are allocated per warp, 256 at a time)
//! blocks by regs = ⌊⌊65536 / regs/warp⌋ / warps/block⌋
//! smem/block     = ⌈(static + dynamic + reserved) / 128⌉ · 128
//! blocks by smem = ⌊smem/SM / smem/block⌋
//! blocks by warps= ⌊max warps/SM / warps/block⌋
//! blocks/SM      = min(blocks by regs, by smem, by warps, max blocks/SM)
//! occupancy      = blocks/SM · warps/block / max warps/SM
//! ```
//! The per-architecture limits are those of the CUDA C++ Programming Guide's table
//! "Technical Specifications per Compute Capability"; shared memory per SM is the largest
//! carve-out (the driver picks the carve-out, so this is the best case). An architecture
//! missing from [`limits`] gets no number rather than a guess.

/// Per-SM limits of one compute capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmLimits {
    /// `sm_XY`.
    pub arch: &'static str,
    /// Resident warps per SM.
    pub max_warps: u32,
    /// Resident blocks per SM.
    pub max_blocks: u32,
    /// 32-bit registers per SM.
    pub registers: u32,
    /// Shared memory per SM at the largest carve-out, bytes.
    pub shared_bytes: u32,
    /// Shared memory the system reserves per block (1 KiB from compute capability 8.0).
    pub reserved_shared_per_block: u32,
}

const REGISTER_UNIT: u32 = 256;
const SHARED_UNIT: u32 = 128;
const WARP: u32 = 32;
const KIB: u32 = 1024;

const LIMITS: &[SmLimits] = &[
    SmLimits {
        arch: "sm_70",
        max_warps: 64,
        max_blocks: 32,
        registers: 65_536,
        shared_bytes: 96 * KIB,
        reserved_shared_per_block: 0,
    },
    SmLimits {
        arch: "sm_75",
        max_warps: 32,
        max_blocks: 16,
        registers: 65_536,
        shared_bytes: 64 * KIB,
        reserved_shared_per_block: 0,
    },
    SmLimits {
        arch: "sm_80",
        max_warps: 64,
        max_blocks: 32,
        registers: 65_536,
        shared_bytes: 164 * KIB,
        reserved_shared_per_block: KIB,
    },
    SmLimits {
        arch: "sm_86",
        max_warps: 48,
        max_blocks: 16,
        registers: 65_536,
        shared_bytes: 100 * KIB,
        reserved_shared_per_block: KIB,
    },
    SmLimits {
        arch: "sm_89",
        max_warps: 48,
        max_blocks: 24,
        registers: 65_536,
        shared_bytes: 100 * KIB,
        reserved_shared_per_block: KIB,
    },
    SmLimits {
        arch: "sm_90",
        max_warps: 64,
        max_blocks: 32,
        registers: 65_536,
        shared_bytes: 228 * KIB,
        reserved_shared_per_block: KIB,
    },
];

/// The limits of `arch` (`sm_70`, `sm_75`, `sm_80`, `sm_86`, `sm_89`, `sm_90`).
pub fn limits(arch: &str) -> Option<SmLimits> {
    LIMITS.iter().copied().find(|l| l.arch == arch)
}

/// What bounds the number of resident blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limiter {
    /// The register file.
    Registers,
    /// Shared memory.
    SharedMemory,
    /// Resident warps (threads) per SM.
    Warps,
    /// Resident blocks per SM.
    Blocks,
}

impl std::fmt::Display for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limiter::Registers => "registers",
            Limiter::SharedMemory => "shared",
            Limiter::Warps => "warps",
            Limiter::Blocks => "blocks",
        })
    }
}

/// Theoretical occupancy of one kernel launch shape on one architecture.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Occupancy {
    /// Blocks resident on one SM (0: the block does not fit at all).
    pub blocks_per_sm: u32,
    /// Resident warps over the SM's maximum, in `[0, 1]`.
    pub fraction: f64,
    /// The tightest limit.
    pub limiter: Limiter,
}

/// Occupancy of blocks of `threads` threads using `registers` registers per thread and
/// `shared_bytes` of shared memory (static + dynamic) per block; see the module docs.
pub fn occupancy(limits: &SmLimits, registers: u32, threads: u32, shared_bytes: u32) -> Occupancy {
    let warps_per_block = threads.div_ceil(WARP).max(1);
    let regs_per_warp = (registers * WARP).div_ceil(REGISTER_UNIT) * REGISTER_UNIT;
    let by_registers = (limits.registers / regs_per_warp.max(1)) / warps_per_block;
    let smem_per_block =
        (shared_bytes + limits.reserved_shared_per_block).div_ceil(SHARED_UNIT) * SHARED_UNIT;
    let by_shared = limits
        .shared_bytes
        .checked_div(smem_per_block)
        .unwrap_or(u32::MAX);
    let by_warps = limits.max_warps / warps_per_block;
    // The first of equal minima wins: at a tie the SM's own caps (warps, blocks) are named
    // before the kernel's resources, which only limit when they bind alone.
    let candidates = [
        (by_warps, Limiter::Warps),
        (limits.max_blocks, Limiter::Blocks),
        (by_registers, Limiter::Registers),
        (by_shared, Limiter::SharedMemory),
    ];
    let (blocks, limiter) =
        candidates
            .iter()
            .copied()
            .fold((u32::MAX, Limiter::Blocks), |best, c| {
                if c.0 < best.0 { c } else { best }
            });
    Occupancy {
        blocks_per_sm: blocks,
        fraction: f64::from(blocks * warps_per_block) / f64::from(limits.max_warps),
        limiter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(arch: &str) -> SmLimits {
        limits(arch).unwrap()
    }

    #[test]
    fn gemm_kernels_by_hand() {
        // 76 registers · 32 = 2432 → 2560 per warp; 65536 / 2560 = 25 warps → 3 blocks of 8.
        let o = occupancy(&sm("sm_80"), 76, 256, 8448);
        assert_eq!(o.blocks_per_sm, 3);
        assert_eq!(o.fraction, 24.0 / 64.0);
        assert_eq!(o.limiter, Limiter::Registers);
        // 92 registers → 2944 → 3072 per warp; 21 warps → 2 blocks: 25%.
        let o = occupancy(&sm("sm_70"), 92, 256, 8448);
        assert_eq!((o.blocks_per_sm, o.fraction), (2, 0.25));
        // 64 registers: exactly 2048 per warp, 32 warps → 4 blocks: 50%.
        let o = occupancy(&sm("sm_80"), 64, 256, 8448);
        assert_eq!((o.blocks_per_sm, o.fraction), (4, 0.5));
    }

    #[test]
    fn shared_memory_warps_and_block_limits() {
        // 48 KiB + 1 KiB reserved per block: 164 / 49 = 3 blocks.
        let o = occupancy(&sm("sm_80"), 16, 128, 48 * 1024);
        assert_eq!((o.blocks_per_sm, o.limiter), (3, Limiter::SharedMemory));
        // Without the reservation (sm_70) 96 / 48 = 2.
        let o = occupancy(&sm("sm_70"), 16, 128, 48 * 1024);
        assert_eq!((o.blocks_per_sm, o.limiter), (2, Limiter::SharedMemory));
        // 1024 threads, few registers: the warp limit; sm_86 has 48 warps → 1 block, 2/3.
        let o = occupancy(&sm("sm_86"), 16, 1024, 0);
        assert_eq!((o.blocks_per_sm, o.limiter), (1, Limiter::Warps));
        assert!((o.fraction - 32.0 / 48.0).abs() < 1e-12);
        // Tiny blocks: the block limit.
        let o = occupancy(&sm("sm_90"), 16, 32, 0);
        assert_eq!((o.blocks_per_sm, o.limiter), (32, Limiter::Blocks));
        assert_eq!(o.fraction, 0.5);
        // A block that cannot fit at all.
        let o = occupancy(&sm("sm_75"), 16, 256, 70 * 1024);
        assert_eq!((o.blocks_per_sm, o.fraction), (0, 0.0));
    }

    #[test]
    fn unknown_architectures_get_no_number() {
        assert!(limits("sm_61").is_none());
        assert!(limits("sm_100").is_none());
        assert!(limits("sm_80").is_some());
    }
}
