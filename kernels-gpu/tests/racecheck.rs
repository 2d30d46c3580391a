//! racecheck: conflicting shared-memory accesses between two barriers, and global
//! writes that conflict with another thread's write in the same launch.

mod common;

use common::{config_1d, expect_clean, expect_fault};
use kernels_gpu::device::*;
use kernels_gpu::emulator::{
    Access, DeviceBuffer, Fault, LaunchOptions, MemorySpace, launch, launch_with_options,
};
use kernels_gpu::kernel;

kernel! {
    /// Rotates values through shared memory but forgets the barrier between the
    /// write of `s[t]` and the read of the neighbour's `s[t + 1]`.
    fn rotate_without_barrier(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        let (t, n) = (thread_idx_x() as usize, block_dim_x() as usize);
        s.set(t, 0.0);
        sync_threads();
        s.set(t, t as f32);
        out.set(t, s.get((t + 1) % n));
    }

    fn rotate_with_barrier(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        let (t, n) = (thread_idx_x() as usize, block_dim_x() as usize);
        s.set(t, 0.0);
        sync_threads();
        s.set(t, t as f32);
        sync_threads();
        out.set(t, s.get((t + 1) % n));
    }

    /// Every thread writes the same shared element in the same epoch.
    fn all_write_one_shared(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        s.set(0, thread_idx_x() as f32);
        sync_threads();
        out.set(thread_idx_x() as usize, s.get(0));
    }

    fn one_writes_shared(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        if thread_idx_x() == 0 {
            s.set(0, 42.0);
        }
        sync_threads();
        out.set(thread_idx_x() as usize, s.get(0));
    }

    /// Indexes the output by thread instead of global index: every block writes the
    /// same elements.
    fn store_by_thread_index(out: GlobalMut<u32>) {
        out.set(thread_idx_x() as usize, block_idx_x());
    }

    fn store_by_global_index(out: GlobalMut<u32>) {
        out.set(global_thread_x() as usize, block_idx_x());
    }

    /// Thread 1 reads what thread 0 wrote to global memory without a barrier.
    fn global_handoff_without_barrier(buf: GlobalMut<u32>) {
        let t = thread_idx_x() as usize;
        if t == 0 {
            buf.set(0, 7);
        }
        if t == 1 {
            buf.set(1, buf.get(0));
        }
    }

    /// The same hand-off, ordered by a barrier (legal within a block).
    fn global_handoff_with_barrier(buf: GlobalMut<u32>) {
        let t = thread_idx_x() as usize;
        if t == 0 {
            buf.set(0, 7);
        }
        sync_threads();
        if t == 1 {
            buf.set(1, buf.get(0));
        }
    }
}

#[test]
fn shared_read_write_race_without_barrier_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(64);
    let vout = out.view_mut();
    let err = expect_fault(
        launch(&config_1d(1, 64, 64 * 4), "rotate_without_barrier", || {
            rotate_without_barrier(vout)
        }),
        &[
            "kernel `rotate_without_barrier`",
            "racecheck: shared",
            "hazard on shared memory",
            "racecheck.rs",
        ],
    );
    assert!(matches!(
        *err.fault,
        Fault::Race {
            space: MemorySpace::Shared,
            ..
        }
    ));
    expect_clean(launch(
        &config_1d(1, 64, 64 * 4),
        "rotate_with_barrier",
        || rotate_with_barrier(vout),
    ));
    let expected: Vec<f32> = (0..64).map(|t| ((t + 1) % 64) as f32).collect();
    assert_eq!(out.to_vec(), expected);
}

#[test]
fn shared_race_is_caught_under_every_perturbed_schedule() {
    let out = DeviceBuffer::<f32>::zeroed(32);
    let vout = out.view_mut();
    for seed in 0..8 {
        let options = LaunchOptions {
            schedule_seed: Some(seed),
            ..LaunchOptions::default()
        };
        expect_fault(
            launch_with_options(&config_1d(1, 32, 32 * 4), &options, "rotate", || {
                rotate_without_barrier(vout)
            }),
            &["racecheck: shared"],
        );
        expect_clean(launch_with_options(
            &config_1d(1, 32, 32 * 4),
            &options,
            "rotate",
            || rotate_with_barrier(vout),
        ));
    }
}

#[test]
fn shared_write_write_race_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(16);
    let vout = out.view_mut();
    let err = expect_fault(
        launch(&config_1d(1, 16, 4), "all_write_one_shared", || {
            all_write_one_shared(vout)
        }),
        &["racecheck: shared write-after-write hazard on shared memory (as f32 from byte 0)[0]"],
    );
    assert!(matches!(
        *err.fault,
        Fault::Race {
            access: Access::Write,
            other_access: Access::Write,
            index: 0,
            other_thread: Some(_),
            ..
        }
    ));
    expect_clean(launch(&config_1d(1, 16, 4), "one_writes_shared", || {
        one_writes_shared(vout)
    }));
    assert_eq!(out.to_vec(), vec![42.0; 16]);
}

#[test]
fn global_write_write_race_between_blocks_is_caught() {
    let out = DeviceBuffer::<u32>::zeroed(64).named("out");
    let vout = out.view_mut();
    let err = expect_fault(
        launch(&config_1d(2, 32, 0), "store_by_thread_index", || {
            store_by_thread_index(vout)
        }),
        &[
            "racecheck: global write-after-write hazard on `out`",
            "block (1, 0, 0)",
            "block (0, 0, 0) thread",
        ],
    );
    assert!(matches!(
        *err.fault,
        Fault::Race {
            space: MemorySpace::Global,
            ..
        }
    ));
    expect_clean(launch(
        &config_1d(2, 32, 0),
        "store_by_global_index",
        || store_by_global_index(vout),
    ));
    let expected: Vec<u32> = (0..64).map(|i| i / 32).collect();
    assert_eq!(out.to_vec(), expected);
}

#[test]
fn global_read_of_another_threads_unordered_write_is_caught() {
    let buf = DeviceBuffer::<u32>::zeroed(2).named("buf");
    let vbuf = buf.view_mut();
    // Thread 0 is dispatched first and writes before thread 1 reads, so the read sees a
    // write of the same epoch; the barrier twin moves the read to the next epoch.
    expect_fault(
        launch(
            &config_1d(1, 2, 0),
            "global_handoff_without_barrier",
            || global_handoff_without_barrier(vbuf),
        ),
        &[
            "racecheck: global read-after-write hazard on `buf`[0]",
            "thread (0, 0, 0) did the write",
        ],
    );
    let buf = DeviceBuffer::<u32>::zeroed(2).named("buf");
    let vbuf = buf.view_mut();
    expect_clean(launch(
        &config_1d(1, 2, 0),
        "global_handoff_with_barrier",
        || global_handoff_with_barrier(vbuf),
    ));
    assert_eq!(buf.to_vec(), vec![7, 7]);
}
