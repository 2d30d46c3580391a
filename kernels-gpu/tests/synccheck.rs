//! synccheck: threads that return before a barrier, divergent barriers, barriers that
//! never complete, blocks that never finish; and launch-configuration validation.

mod common;

use std::time::{Duration, Instant};

use common::{config_1d, expect_clean, expect_fault};
use kernels_gpu::device::*;
use kernels_gpu::emulator::{
    Access, DeviceBuffer, Fault, LaunchConfig, LaunchOptions, MAX_DYNAMIC_SHARED_BYTES,
    MemorySpace, StopPoint, launch, launch_with_options,
};
use kernels_gpu::kernel;

kernel! {
    /// Threads past `n` return early, leaving the others at the barrier.
    fn early_return_before_barrier(out: GlobalMut<f32>, n: u32) {
        let s = dynamic_shared::<f32>();
        let t = thread_idx_x();
        if t >= n {
            return;
        }
        s.set(t as usize, 1.0);
        sync_threads();
        out.set(t as usize, s.get(((t + 1) % n) as usize));
    }

    /// Keeps every thread until the barrier and guards only the memory accesses.
    fn guarded_before_barrier(out: GlobalMut<f32>, n: u32) {
        let s = dynamic_shared::<f32>();
        let t = thread_idx_x();
        if t < n {
            s.set(t as usize, 1.0);
        }
        sync_threads();
        if t < n {
            out.set(t as usize, s.get(((t + 1) % n) as usize));
        }
    }

    /// Even and odd threads wait at different `__syncthreads` calls.
    // The two branches are textually identical on purpose: they are two distinct barrier
    // call sites, which is exactly the bug synccheck must see.
    #[allow(clippy::if_same_then_else)]
    fn divergent_barriers(out: GlobalMut<u32>) {
        let t = thread_idx_x();
        if t.is_multiple_of(2) {
            sync_threads();
        } else {
            sync_threads();
        }
        out.set(t as usize, t);
    }

    /// Even and odd threads each call a synchronising helper: two call sites, so two
    /// barriers, although both reach the same `sync_threads` line inside the helper.
    #[allow(clippy::if_same_then_else)]
    fn divergent_helper_barriers(out: GlobalMut<u32>) {
        let s = dynamic_shared::<u32>();
        let t = thread_idx_x();
        if t.is_multiple_of(2) {
            publish_and_sync(s, t);
        } else {
            publish_and_sync(s, t);
        }
        out.set(t as usize, s.get(((t + 1) % block_dim_x()) as usize));
    }

    /// The correct twin: every thread calls the helper at the same place.
    fn uniform_helper_barrier(out: GlobalMut<u32>) {
        let s = dynamic_shared::<u32>();
        let t = thread_idx_x();
        publish_and_sync(s, t);
        out.set(t as usize, s.get(((t + 1) % block_dim_x()) as usize));
    }

    /// One barrier for all; indexes by the linear thread index so 2-D blocks work.
    fn uniform_barrier(out: GlobalMut<u32>) {
        let t = thread_idx_y() * block_dim_x() + thread_idx_x();
        sync_threads();
        out.set(t as usize, t);
    }

    /// Every thread polls `flag[0]` until it is non-zero: endless if nobody sets it (no
    /// barrier involved, so only the block timeout can end it).
    fn wait_for_flag(flag: Global<u32>, out: GlobalMut<u32>) {
        let t = thread_idx_x();
        while flag.get(0) == 0 {}
        out.set(t as usize, t);
    }

    /// Thread 0 polls `flag[0]` (endless if nobody sets it) while the others wait at
    /// the barrier for it.
    fn one_thread_spins_before_barrier(flag: Global<u32>, out: GlobalMut<u32>) {
        let t = thread_idx_x();
        if t == 0 {
            while flag.get(0) == 0 {}
        }
        sync_threads();
        out.set(t as usize, t);
    }

    /// Thread 0 is stuck (sleeps) while the others wait at the barrier.
    fn one_thread_stalls(out: GlobalMut<u32>) {
        let t = thread_idx_x();
        if t == 0 {
            std::thread::sleep(Duration::from_millis(600));
        }
        sync_threads();
        out.set(t as usize, t);
    }
}

#[test]
fn thread_exiting_while_others_wait_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(32);
    let vout = out.view_mut();
    let start = Instant::now();
    let err = expect_fault(
        launch(
            &config_1d(1, 32, 32 * 4),
            "early_return_before_barrier",
            || early_return_before_barrier(vout, 20),
        ),
        &[
            "synccheck: thread (",
            "exited while its block waits at the barrier at",
            "synccheck.rs",
        ],
    );
    let Fault::ExitedBeforeBarrier { exited_thread, .. } = *err.fault else {
        panic!("wrong fault: {err}");
    };
    assert!(exited_thread.x >= 20, "only threads >= n return early");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waiters were not released"
    );
    expect_clean(launch(
        &config_1d(1, 32, 32 * 4),
        "guarded_before_barrier",
        || guarded_before_barrier(vout, 20),
    ));
}

#[test]
fn divergent_barriers_are_caught() {
    let out = DeviceBuffer::<u32>::zeroed(8);
    let vout = out.view_mut();
    let err = expect_fault(
        launch(&config_1d(1, 8, 0), "divergent_barriers", || {
            divergent_barriers(vout)
        }),
        &[
            "synccheck: divergent barriers: this thread waits at",
            "while thread (",
        ],
    );
    let Fault::DivergentBarrier {
        location,
        other_location,
        ..
    } = *err.fault
    else {
        panic!("wrong fault: {err}");
    };
    assert_ne!(location.line(), other_location.line());
    expect_clean(launch(&config_1d(1, 8, 0), "uniform_barrier", || {
        uniform_barrier(vout)
    }));
    assert_eq!(out.to_vec(), (0..8).collect::<Vec<u32>>());
}

/// A helper that synchronises, written as the facade's docs require: `#[track_caller]`,
/// so each call of it is its own barrier for synccheck.
#[track_caller]
fn publish_and_sync(s: Shared<u32>, t: u32) {
    s.set(t as usize, t);
    sync_threads();
}

#[test]
fn divergent_calls_of_a_synchronising_helper_are_caught() {
    let out = DeviceBuffer::<u32>::zeroed(8);
    let vout = out.view_mut();
    let err = expect_fault(
        launch(&config_1d(1, 8, 8 * 4), "divergent_helper_barriers", || {
            divergent_helper_barriers(vout)
        }),
        &["synccheck: divergent barriers: this thread waits at"],
    );
    let Fault::DivergentBarrier {
        location,
        other_location,
        ..
    } = *err.fault
    else {
        panic!("wrong fault: {err}");
    };
    // The two call sites of the helper, not its body.
    assert_ne!(location.line(), other_location.line(), "{err}");
    for l in [location, other_location] {
        assert!(l.file().ends_with("synccheck.rs"), "{l}");
    }
    expect_clean(launch(
        &config_1d(1, 8, 8 * 4),
        "uniform_helper_barrier",
        || uniform_helper_barrier(vout),
    ));
    assert_eq!(out.to_vec(), (1..8).chain([0]).collect::<Vec<u32>>());
}

#[test]
fn a_barrier_that_never_completes_times_out_instead_of_hanging() {
    let out = DeviceBuffer::<u32>::zeroed(4);
    let vout = out.view_mut();
    let options = LaunchOptions {
        barrier_timeout: Duration::from_millis(100),
        ..LaunchOptions::default()
    };
    let err = expect_fault(
        launch_with_options(&config_1d(1, 4, 0), &options, "one_thread_stalls", || {
            one_thread_stalls(vout)
        }),
        &[
            "synccheck: barrier at",
            "incomplete after",
            "of 4 threads arrived",
        ],
    );
    assert!(matches!(
        *err.fault,
        Fault::BarrierTimeout { expected: 4, .. }
    ));
    // With the default (long) timeout the slow thread arrives and the launch is clean.
    expect_clean(launch(&config_1d(1, 4, 0), "one_thread_stalls", || {
        one_thread_stalls(vout)
    }));
}

#[test]
fn invalid_launch_configurations_are_rejected() {
    let out = DeviceBuffer::<u32>::zeroed(1024);
    let vout = out.view_mut();
    let cases = [
        (config_1d(0, 32, 0), "must have no zero dimension"),
        (
            LaunchConfig {
                block: (32, 0, 1),
                ..config_1d(1, 32, 0)
            },
            "must have no zero dimension",
        ),
        (
            LaunchConfig {
                block: (32, 33, 1),
                ..config_1d(1, 32, 0)
            },
            "has 1056 threads, more than 1024",
        ),
        (
            config_1d(1, 32, MAX_DYNAMIC_SHARED_BYTES + 1),
            "bytes of dynamic shared memory",
        ),
    ];
    for (config, why) in cases {
        let err = expect_fault(
            launch(&config, "uniform_barrier", || uniform_barrier(vout)),
            &[
                "kernel `uniform_barrier`: invalid launch configuration",
                why,
            ],
        );
        assert!(err.block.is_none() && err.thread.is_none());
    }
    // The limits themselves are fine.
    expect_clean(launch(
        &LaunchConfig {
            block: (32, 32, 1),
            ..config_1d(1, 1, MAX_DYNAMIC_SHARED_BYTES)
        },
        "uniform_barrier",
        || uniform_barrier(vout),
    ));
}

/// The thread that loops is named, not the barrier waiters released by the timeout.
#[test]
fn a_block_timeout_names_the_looping_thread_and_its_access() {
    let out = DeviceBuffer::<u32>::zeroed(32);
    let never = DeviceBuffer::<u32>::zeroed(1).named("flag");
    let (vout, vnever) = (out.view_mut(), never.view());
    let options = LaunchOptions {
        block_timeout: Duration::from_millis(200),
        ..LaunchOptions::default()
    };
    let err = expect_fault(
        launch_with_options(
            &config_1d(1, 32, 0),
            &options,
            "one_thread_spins_before_barrier",
            || one_thread_spins_before_barrier(vnever, vout),
        ),
        &[
            "kernel `one_thread_spins_before_barrier`, block (0, 0, 0), thread (0, 0, 0): ",
            "32 of 32 threads had not finished",
            "this thread was stopped at its global read of `flag`[0] at ",
        ],
    );
    assert!(
        matches!(
            *err.fault,
            Fault::BlockTimeout {
                stopped_at: Some(StopPoint::Access { index: 0, .. }),
                ..
            }
        ),
        "{err}"
    );
    let set = DeviceBuffer::from_slice(&[1u32]);
    let vset = set.view();
    expect_clean(launch_with_options(
        &config_1d(1, 32, 0),
        &options,
        "one_thread_spins_before_barrier",
        || one_thread_spins_before_barrier(vset, vout),
    ));
}

#[test]
fn an_endless_loop_times_out_instead_of_hanging() {
    let out = DeviceBuffer::<u32>::zeroed(32);
    let never = DeviceBuffer::<u32>::zeroed(1).named("flag");
    let (vout, vnever) = (out.view_mut(), never.view());
    let options = LaunchOptions {
        block_timeout: Duration::from_millis(200),
        ..LaunchOptions::default()
    };
    let start = Instant::now();
    let err = expect_fault(
        launch_with_options(&config_1d(1, 32, 0), &options, "wait_for_flag", || {
            wait_for_flag(vnever, vout)
        }),
        &[
            "kernel `wait_for_flag`, block (0, 0, 0), thread (",
            "block still running after 200ms",
            "32 of 32 threads had not finished",
            "this thread was stopped at its global read of `flag`[0] at ",
            "synccheck.rs:",
        ],
    );
    assert!(err.thread.is_some(), "{err}");
    let Fault::BlockTimeout {
        unfinished: 32,
        threads: 32,
        stopped_at:
            Some(StopPoint::Access {
                space: MemorySpace::Global,
                access: Access::Read,
                index: 0,
                location,
                ..
            }),
        ..
    } = *err.fault
    else {
        panic!("wrong fault: {err}");
    };
    assert!(location.file().ends_with("synccheck.rs"), "{location}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The twin: the flag is set, every thread finishes.
    let set = DeviceBuffer::from_slice(&[1u32]);
    let vset = set.view();
    expect_clean(launch_with_options(
        &config_1d(1, 32, 0),
        &options,
        "wait_for_flag",
        || wait_for_flag(vset, vout),
    ));
    assert_eq!(out.to_vec(), (0..32).collect::<Vec<u32>>());
}
