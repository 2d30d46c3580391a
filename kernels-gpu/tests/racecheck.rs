//! racecheck: conflicting shared-memory accesses between two barriers; global writes
//! that conflict with another thread's write or read in the same launch, and global
//! reads of another thread's unordered write.

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
        out.set(global_thread_x(), block_idx_x());
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

    /// Block 0 reads `buf[0]`, block 1 overwrites element `target`: with `target = 0` the
    /// write races with the read (blocks are unordered on a GPU).
    fn read_then_other_block_writes(buf: GlobalMut<u32>, out: GlobalMut<u32>, target: u32) {
        if thread_idx_x() == 0 {
            if block_idx_x() == 0 {
                out.set(0, buf.get(0));
            } else {
                buf.set(target as usize, 9);
            }
        }
    }

    /// Every thread reads `buf[0]`; then thread 0 overwrites it, with or without a barrier
    /// after the reads.
    fn all_read_then_thread0_writes(buf: GlobalMut<u32>, out: GlobalMut<u32>, barrier: u32) {
        let t = thread_idx_x() as usize;
        out.set(t, buf.get(0));
        if barrier != 0 {
            sync_threads();
        }
        if t == 0 {
            buf.set(0, 1);
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
    // Whichever thread the OS runs first, the other access conflicts with it: thread 1's
    // read after thread 0's write (read-after-write), or thread 0's write after thread 1's
    // read (write-after-read). The barrier twin orders them.
    let err = expect_fault(
        launch(
            &config_1d(1, 2, 0),
            "global_handoff_without_barrier",
            || global_handoff_without_barrier(vbuf),
        ),
        &["racecheck: global ", "hazard on `buf`[0]"],
    );
    let Fault::Race {
        access,
        other_access,
        ..
    } = *err.fault
    else {
        panic!("wrong fault: {err}");
    };
    assert!(
        matches!(
            (access, other_access),
            (Access::Read, Access::Write) | (Access::Write, Access::Read)
        ),
        "{err}"
    );
    // Across seeded schedules the race is always reported.
    for seed in 0..16 {
        let buf = DeviceBuffer::<u32>::zeroed(2).named("buf");
        let vbuf = buf.view_mut();
        let options = LaunchOptions {
            schedule_seed: Some(seed),
            ..LaunchOptions::default()
        };
        expect_fault(
            launch_with_options(
                &config_1d(1, 2, 0),
                &options,
                "global_handoff_without_barrier",
                || global_handoff_without_barrier(vbuf),
            ),
            &["hazard on `buf`[0]"],
        );
    }
    let buf = DeviceBuffer::<u32>::zeroed(2).named("buf");
    let vbuf = buf.view_mut();
    expect_clean(launch(
        &config_1d(1, 2, 0),
        "global_handoff_with_barrier",
        || global_handoff_with_barrier(vbuf),
    ));
    assert_eq!(buf.to_vec(), vec![7, 7]);
}

#[test]
fn global_write_after_another_blocks_read_is_caught() {
    let buf = DeviceBuffer::from_slice(&[5u32, 6]).named("buf");
    let out = DeviceBuffer::<u32>::zeroed(1);
    let (vbuf, vout) = (buf.view_mut(), out.view_mut());
    // Blocks run in order here, so block 0's read always comes first: deterministic.
    let err = expect_fault(
        launch(&config_1d(2, 32, 0), "read_then_other_block_writes", || {
            read_then_other_block_writes(vbuf, vout, 0)
        }),
        &[
            "racecheck: global write-after-read hazard on `buf`[0]",
            "block (0, 0, 0) thread (0, 0, 0) did the read",
        ],
    );
    assert!(matches!(
        *err.fault,
        Fault::Race {
            space: MemorySpace::Global,
            access: Access::Write,
            other_access: Access::Read,
            ..
        }
    ));
    // The twin writes the element nobody reads.
    expect_clean(launch(
        &config_1d(2, 32, 0),
        "read_then_other_block_writes",
        || read_then_other_block_writes(vbuf, vout, 1),
    ));
    assert_eq!((buf.to_vec(), out.to_vec()), (vec![5, 9], vec![5]));
}

#[test]
fn global_write_after_reads_of_the_same_epoch_is_caught() {
    let buf = DeviceBuffer::from_slice(&[3u32]).named("buf");
    let out = DeviceBuffer::<u32>::zeroed(64);
    let (vbuf, vout) = (buf.view_mut(), out.view_mut());
    // Thread 0 reads too, so if it runs first it is the only reader so far; the other 63
    // reads then come after its write (read-after-write) or before (write-after-read).
    let err = expect_fault(
        launch(&config_1d(1, 64, 0), "all_read_then_thread0_writes", || {
            all_read_then_thread0_writes(vbuf, vout, 0)
        }),
        &["racecheck: global ", "hazard on `buf`[0]"],
    );
    assert!(matches!(*err.fault, Fault::Race { .. }), "{err}");
    let buf = DeviceBuffer::from_slice(&[3u32]).named("buf");
    let vbuf = buf.view_mut();
    expect_clean(launch(
        &config_1d(1, 64, 0),
        "all_read_then_thread0_writes",
        || all_read_then_thread0_writes(vbuf, vout, 1),
    ));
    assert_eq!((buf.to_vec(), out.to_vec()), (vec![1], vec![3; 64]));
}
