//! Launch configuration (grid, block, dynamic shared memory) and its validation.

use std::fmt;
use std::time::Duration;

/// Most threads a block may have (all CUDA architectures since sm_20).
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;

/// Most dynamic shared memory a launch may request: 228 KiB, the shared memory of one
/// sm_90 multiprocessor (the largest of the architectures this crate targets).
pub const MAX_DYNAMIC_SHARED_BYTES: usize = 228 * 1024;

/// A 3-D index or extent (`dim3`/`uint3` in CUDA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Dim3 {
    /// Fastest-varying component.
    pub x: u32,
    /// Middle component.
    pub y: u32,
    /// Slowest-varying component.
    pub z: u32,
}

impl Dim3 {
    /// Number of points in the extent `x * y * z` (u64: a grid can exceed `u32`).
    pub fn volume(self) -> u64 {
        u64::from(self.x) * u64::from(self.y) * u64::from(self.z)
    }

    /// The index `linear` (x fastest) within the extent `self`.
    pub(crate) fn delinearize(self, linear: u64) -> Dim3 {
        let x = u64::from(self.x.max(1));
        let y = u64::from(self.y.max(1));
        Dim3 {
            x: (linear % x) as u32,
            y: ((linear / x) % y) as u32,
            z: (linear / (x * y)) as u32,
        }
    }
}

impl From<(u32, u32, u32)> for Dim3 {
    fn from((x, y, z): (u32, u32, u32)) -> Self {
        Dim3 { x, y, z }
    }
}

impl fmt::Display for Dim3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.x, self.y, self.z)
    }
}

/// How to launch a kernel: the CUDA `<<<grid, block, shared>>>` triple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks per grid along (x, y, z).
    pub grid: (u32, u32, u32),
    /// Threads per block along (x, y, z).
    pub block: (u32, u32, u32),
    /// Bytes of dynamic shared memory per block.
    pub dynamic_shared_bytes: usize,
}

impl LaunchConfig {
    /// A 1-D launch with enough blocks of `block_x` threads to cover `n` threads
    /// (at least one block), and no shared memory.
    pub fn cover_1d(n: u32, block_x: u32) -> Self {
        LaunchConfig {
            grid: (n.div_ceil(block_x.max(1)).max(1), 1, 1),
            block: (block_x, 1, 1),
            dynamic_shared_bytes: 0,
        }
    }

    /// Checks the limits a CUDA launch would reject.
    pub fn validate(&self) -> Result<(), String> {
        let (grid, block) = (Dim3::from(self.grid), Dim3::from(self.block));
        if grid.volume() == 0 || block.volume() == 0 {
            return Err(format!(
                "grid {grid} and block {block} must have no zero dimension"
            ));
        }
        if block.volume() > u64::from(MAX_THREADS_PER_BLOCK) {
            return Err(format!(
                "block {block} has {} threads, more than {MAX_THREADS_PER_BLOCK}",
                block.volume()
            ));
        }
        if block.z > 64 {
            return Err(format!("block {block}: z is limited to 64"));
        }
        if grid.y > 65_535 || grid.z > 65_535 || grid.x > i32::MAX as u32 {
            return Err(format!(
                "grid {grid} exceeds (2^31 - 1, 65535, 65535) blocks"
            ));
        }
        if self.dynamic_shared_bytes > MAX_DYNAMIC_SHARED_BYTES {
            return Err(format!(
                "{} bytes of dynamic shared memory requested, more than {MAX_DYNAMIC_SHARED_BYTES} (228 KiB)",
                self.dynamic_shared_bytes
            ));
        }
        Ok(())
    }
}

/// Emulator-only knobs that have no CUDA counterpart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchOptions {
    /// `Some(seed)`: perturb the schedule reproducibly. Threads of a block are dispatched
    /// in a seeded random order and yield the CPU at random memory accesses and
    /// barriers, so races that the default schedule hides show up. `None`: no
    /// perturbation (fastest).
    pub schedule_seed: Option<u64>,
    /// How long a thread waits at a barrier for the rest of its block before the launch
    /// fails with [`Fault::BarrierTimeout`](crate::emulator::Fault::BarrierTimeout)
    /// instead of hanging.
    pub barrier_timeout: Duration,
    /// How long one block may run before the launch fails with
    /// [`Fault::BlockTimeout`](crate::emulator::Fault::BlockTimeout) instead of hanging.
    /// Its threads are stopped at their next device-memory access or barrier; a thread
    /// that loops without touching device memory cannot be stopped, and the launch then
    /// waits for it.
    pub block_timeout: Duration,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            schedule_seed: None,
            barrier_timeout: Duration::from_secs(20),
            block_timeout: Duration::from_secs(60),
        }
    }
}
