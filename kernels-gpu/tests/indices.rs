//! The launch context: every thread of a 3-D grid of 3-D blocks runs exactly once and
//! sees its own indices and the launch's extents.

mod common;

use common::expect_clean;
use kernels_gpu::device::*;
use kernels_gpu::emulator::{DeviceBuffer, LaunchConfig, launch};
use kernels_gpu::kernel;

kernel! {
    /// Each thread stores its (block, thread, dims) tuple at its global linear index.
    fn record_indices(out: GlobalMut<[u32; 12]>) {
        let threads_per_block = block_dim_x() * block_dim_y() * block_dim_z();
        let block = (block_idx_z() * grid_dim_y() + block_idx_y()) * grid_dim_x() + block_idx_x();
        let thread = (thread_idx_z() * block_dim_y() + thread_idx_y()) * block_dim_x() + thread_idx_x();
        out.set(
            (block * threads_per_block + thread) as usize,
            [
                block_idx_x(), block_idx_y(), block_idx_z(),
                thread_idx_x(), thread_idx_y(), thread_idx_z(),
                block_dim_x(), block_dim_y(), block_dim_z(),
                grid_dim_x(), grid_dim_y(), grid_dim_z(),
            ],
        );
    }
}

#[test]
fn every_thread_of_a_3d_launch_runs_once_with_its_indices() {
    let (grid, block) = ((3u32, 2u32, 2u32), (4u32, 2u32, 3u32));
    let total = (grid.0 * grid.1 * grid.2 * block.0 * block.1 * block.2) as usize;
    let out = DeviceBuffer::<[u32; 12]>::uninit(total);
    let vout = out.view_mut();
    let config = LaunchConfig {
        grid,
        block,
        dynamic_shared_bytes: 0,
    };
    expect_clean(launch(&config, "record_indices", || record_indices(vout)));
    let mut expected = Vec::with_capacity(total);
    for bz in 0..grid.2 {
        for by in 0..grid.1 {
            for bx in 0..grid.0 {
                for tz in 0..block.2 {
                    for ty in 0..block.1 {
                        for tx in 0..block.0 {
                            expected.push([
                                bx, by, bz, tx, ty, tz, block.0, block.1, block.2, grid.0, grid.1,
                                grid.2,
                            ]);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(out.to_vec(), expected);
}

#[test]
#[should_panic(expected = "outside an emulated launch")]
fn device_functions_outside_a_launch_panic() {
    let _ = thread_idx_x();
}
