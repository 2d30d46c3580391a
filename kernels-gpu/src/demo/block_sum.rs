//! Block-level sum reduction in shared memory: one partial sum per block.

use crate::device::{
    Global, GlobalMut, Shared, block_dim_x, block_idx_x, dynamic_shared, global_thread_x,
    sync_threads, thread_idx_x,
};
use crate::kernel;

kernel! {
    /// `partial[b] = sum(input[b * B .. min((b + 1) * B, n)])` with `B = block_dim_x`.
    ///
    /// Launch with a power-of-two `block_dim_x` and `block_dim_x * 4` bytes of dynamic
    /// shared memory. Tree reduction with sequential addressing: in each round the
    /// lower half of the active threads adds the upper half, so no thread reads an
    /// element another thread writes in the same round, and a barrier separates rounds.
    /// Every thread reaches every barrier (threads past `n` contribute 0), because a
    /// thread that returned early would leave the others waiting.
    pub fn block_sum(input: Global<f32>, partial: GlobalMut<f32>, n: u32) {
        let cache = dynamic_shared::<f32>();
        let tid = thread_idx_x() as usize;
        let i = global_thread_x();
        cache.set(tid, if i < n as usize { input.get(i) } else { 0.0 });
        sync_threads();
        let mut active = (block_dim_x() / 2) as usize;
        while active > 0 {
            tree_round(cache, tid, active);
            active /= 2;
        }
        if tid == 0 {
            partial.set(block_idx_x() as usize, cache.get(0));
        }
    }
}

/// One round of the tree: the lower `active` threads add the upper half, then the block
/// synchronises. A synchronising helper, so `#[track_caller]` (see
/// [`sync_threads`](crate::device::sync_threads)): the emulator identifies its barrier,
/// and reports faults inside it, by the line that calls it.
#[track_caller]
#[inline(always)]
fn tree_round(cache: Shared<f32>, tid: usize, active: usize) {
    if tid < active {
        cache.set(tid, cache.get(tid) + cache.get(tid + active));
    }
    sync_threads();
}

/// Threads per block used by [`run`] (a power of two).
pub const BLOCK: u32 = 256;

/// Per-block partial sums of `input` on the emulator, with blocks of `block` threads
/// (a power of two).
#[cfg(not(target_arch = "nvptx64"))]
pub fn run(input: &[f32], block: u32) -> Result<Vec<f32>, crate::emulator::LaunchError> {
    use crate::emulator::{DeviceBuffer, LaunchConfig, launch};
    assert!(
        block.is_power_of_two(),
        "block_sum needs a power-of-two block"
    );
    let n = u32::try_from(input.len()).expect("input length fits u32");
    let config = LaunchConfig {
        dynamic_shared_bytes: block as usize * size_of::<f32>(),
        ..LaunchConfig::cover_1d(n, block)
    };
    let din = DeviceBuffer::from_slice(input).named("input");
    let partial = DeviceBuffer::<f32>::uninit(config.grid.0 as usize).named("partial");
    let (vin, vpartial) = (din.view(), partial.view_mut());
    launch(&config, "block_sum", || block_sum(vin, vpartial, n))?;
    Ok(partial.to_vec())
}
