//! memcheck: out-of-bounds global and shared accesses, misaligned shared views, freed
//! buffers; and panicking kernel threads.

mod common;

use std::time::{Duration, Instant};

use common::{config_1d, expect_clean, expect_fault};
use kernels_gpu::device::*;
use kernels_gpu::emulator::{Access, DeviceBuffer, Dim3, Fault, MemorySpace, launch};
use kernels_gpu::kernel;

kernel! {
    /// Off by one: `i <= n` lets thread `n` read `a[n]`.
    fn copy_off_by_one(a: Global<f32>, out: GlobalMut<f32>, n: u32) {
        let i = global_thread_x();
        if i <= n as usize {
            out.set(i % n as usize, a.get(i));
        }
    }

    fn copy_checked(a: Global<f32>, out: GlobalMut<f32>, n: u32) {
        let i = global_thread_x();
        if i < n as usize {
            out.set(i, a.get(i));
        }
    }

    /// Writes `out[i + 1]`, one past the end for the last element.
    fn shift_right(a: Global<f32>, out: GlobalMut<f32>, n: u32) {
        let i = global_thread_x();
        if i < n as usize {
            out.set(i + 1, a.get(i));
        }
    }

    fn shift_right_checked(a: Global<f32>, out: GlobalMut<f32>, n: u32) {
        let i = global_thread_x();
        if i + 1 < n as usize {
            out.set(i + 1, a.get(i));
        }
    }

    /// Stages one f32 per thread in shared memory; the launch decides how much exists.
    fn stage_in_shared(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        let t = thread_idx_x() as usize;
        s.set(t, t as f32);
        out.set(t, s.get(t));
    }

    /// Views shared memory as f32 from byte 2.
    fn misaligned_shared(out: GlobalMut<f32>) {
        let s = dynamic_shared_at::<f32>(2);
        s.set(0, 1.0);
        out.set(0, s.get(0));
    }

    fn aligned_shared(out: GlobalMut<f32>) {
        let s = dynamic_shared_at::<f32>(4);
        s.set(0, 1.0);
        out.set(0, s.get(0));
    }

    /// Thread 3 panics (as an overflow would in a debug build) while the others wait
    /// at a barrier.
    fn panics_before_barrier(out: GlobalMut<u32>) {
        let t = thread_idx_x();
        let step = if t == 3 { u32::MAX } else { 1 };
        let v = t.checked_add(step).expect("index overflow");
        sync_threads();
        out.set(t as usize, v);
    }
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn out_of_bounds_global_read_is_caught() {
    let n = 100;
    let a = DeviceBuffer::from_slice(&ramp(n)).named("a");
    let out = DeviceBuffer::<f32>::zeroed(n).named("out");
    let (va, vout) = (a.view(), out.view_mut());
    // 2 blocks of 64: thread 100 is block 1, thread 36.
    let err = expect_fault(
        launch(&config_1d(2, 64, 0), "copy_off_by_one", || {
            copy_off_by_one(va, vout, n as u32)
        }),
        &[
            "kernel `copy_off_by_one`",
            "block (1, 0, 0)",
            "thread (36, 0, 0)",
            "out-of-bounds global read of `a`[100] (len 100)",
            "memcheck.rs",
        ],
    );
    assert!(matches!(
        *err.fault,
        Fault::OutOfBounds {
            space: MemorySpace::Global,
            access: Access::Read,
            index: 100,
            len: 100,
            ..
        }
    ));
    expect_clean(launch(&config_1d(2, 64, 0), "copy_checked", || {
        copy_checked(va, vout, n as u32)
    }));
    assert_eq!(out.to_vec(), ramp(n));
}

#[test]
fn out_of_bounds_global_write_is_caught() {
    let n = 77;
    let a = DeviceBuffer::from_slice(&ramp(n)).named("a");
    let out = DeviceBuffer::<f32>::zeroed(n).named("out");
    let (va, vout) = (a.view(), out.view_mut());
    let err = expect_fault(
        launch(&config_1d(3, 32, 0), "shift_right", || {
            shift_right(va, vout, n as u32)
        }),
        &[
            "out-of-bounds global write of `out`[77] (len 77)",
            "block (2, 0, 0)",
            "thread (12, 0, 0)",
        ],
    );
    assert_eq!(err.thread, Some(Dim3 { x: 12, y: 0, z: 0 }));
    expect_clean(launch(&config_1d(3, 32, 0), "shift_right_checked", || {
        shift_right_checked(va, vout, n as u32)
    }));
}

#[test]
fn shared_memory_beyond_dynamic_shared_bytes_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(64);
    let vout = out.view_mut();
    // 64 threads but room for 63 f32: thread 63 writes past the end.
    let err = expect_fault(
        launch(&config_1d(1, 64, 63 * 4), "stage_in_shared", || {
            stage_in_shared(vout)
        }),
        &[
            "out-of-bounds shared write",
            "[63] (len 63)",
            "thread (63, 0, 0)",
        ],
    );
    assert!(matches!(
        *err.fault,
        Fault::OutOfBounds {
            space: MemorySpace::Shared,
            ..
        }
    ));
    expect_clean(launch(&config_1d(1, 64, 64 * 4), "stage_in_shared", || {
        stage_in_shared(vout)
    }));
    assert_eq!(out.to_vec(), ramp(64));
}

#[test]
fn misaligned_shared_view_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(1);
    let vout = out.view_mut();
    expect_fault(
        launch(&config_1d(1, 1, 64), "misaligned_shared", || {
            misaligned_shared(vout)
        }),
        &["byte offset 2 is not 4-byte aligned"],
    );
    expect_clean(launch(&config_1d(1, 1, 64), "aligned_shared", || {
        aligned_shared(vout)
    }));
}

#[test]
fn access_to_a_freed_buffer_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(4);
    let a = DeviceBuffer::from_slice(&ramp(4));
    let (stale, vout) = (a.view(), out.view_mut());
    drop(a);
    expect_fault(
        launch(&config_1d(1, 4, 0), "copy_checked", || {
            copy_checked(stale, vout, 4)
        }),
        &["access to freed buffer"],
    );
    let live = DeviceBuffer::from_slice(&ramp(4));
    let va = live.view();
    expect_clean(launch(&config_1d(1, 4, 0), "copy_checked", || {
        copy_checked(va, vout, 4)
    }));
}

#[test]
fn a_panicking_thread_fails_the_launch_and_releases_the_barrier() {
    let out = DeviceBuffer::<u32>::zeroed(64);
    let vout = out.view_mut();
    let start = Instant::now();
    let err = expect_fault(
        launch(&config_1d(2, 32, 0), "panics_before_barrier", || {
            panics_before_barrier(vout)
        }),
        &[
            "thread panicked: index overflow",
            "block (0, 0, 0)",
            "thread (3, 0, 0)",
        ],
    );
    assert!(matches!(*err.fault, Fault::Panic { .. }));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waiters were not released"
    );
    // Block 1 never ran: the first fault ends the launch.
    assert_eq!(out.to_vec()[32..], [0; 32]);
}

#[test]
fn views_are_cheap_thread_safe_handles() {
    fn assert_handle<T: Copy + Send + Sync + 'static>() {}
    assert_handle::<Global<f32>>();
    assert_handle::<GlobalMut<f32>>();
    assert_handle::<Shared<f32>>();
    // Host code may read a view outside a launch (checked, without race tracking).
    let buf = DeviceBuffer::from_slice(&[1.0f32, 2.0]);
    assert_eq!(buf.view().get(1), 2.0);
    buf.view_mut().set(0, 5.0);
    assert_eq!(buf.to_vec(), vec![5.0, 2.0]);
}
