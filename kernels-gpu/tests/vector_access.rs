//! The facade's vector and read-only accesses under the emulator: 128-bit shared loads
//! and stores (`Shared::get4`/`set4`) and global loads (`Global::load4`) fault unless
//! 16-byte aligned and in bounds; read-only loads (`Global::load`, `load4`) fault on
//! memory the same launch wrote.

mod common;

use common::{config_1d, expect_clean, expect_fault};
use kernels_gpu::device::*;
use kernels_gpu::emulator::{DeviceBuffer, Fault, MemorySpace, launch};
use kernels_gpu::kernel;

kernel! {
    /// Each thread stages 4 floats with one 128-bit store, then reads its neighbour's
    /// run with one 128-bit load at float `4·t + offset`.
    fn shared_runs(out: GlobalMut<f32>, offset: u32) {
        let s = dynamic_shared::<f32>();
        let t = thread_idx_x() as usize;
        s.set4(4 * t, [t as f32, 1.0, 2.0, 3.0]);
        sync_threads();
        let n = block_dim_x() as usize;
        let v = s.get4(4 * ((t + 1) % n) + offset as usize);
        out.set(t, v[0]);
    }

    /// Thread `t` loads elements `4·t + offset ..` with one 128-bit read-only load.
    fn global_runs(a: Global<f32>, out: GlobalMut<f32>, offset: u32) {
        let t = thread_idx_x() as usize;
        let v = a.load4(4 * t + offset as usize);
        out.set(t, v[0] + v[1] + v[2] + v[3]);
    }

    /// Writes `buf[t]`, then reads `buf[t]` back through the read-only path.
    fn read_only_after_write(buf: GlobalMut<f32>, out: GlobalMut<f32>) {
        let t = thread_idx_x() as usize;
        buf.set(t, 2.0);
        out.set(t, buf.as_global().load(t));
    }

    /// The correct twin: reads through the read-only path memory nobody writes.
    fn read_only_input(a: Global<f32>, out: GlobalMut<f32>) {
        let t = thread_idx_x() as usize;
        out.set(t, a.load(t));
    }
}

#[test]
fn misaligned_128_bit_shared_load_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(8).named("out");
    let vout = out.view_mut();
    // 8 threads × 4 floats, plus one spare run so an offset load stays in bounds.
    let bytes = 9 * 16;
    let err = expect_fault(
        launch(&config_1d(1, 8, bytes), "shared_runs", || {
            shared_runs(vout, 2)
        }),
        &["16-byte vector access to shared", "not 16-byte aligned"],
    );
    assert!(matches!(
        *err.fault,
        Fault::MisalignedVector {
            space: MemorySpace::Shared,
            ..
        }
    ));
    expect_clean(launch(&config_1d(1, 8, bytes), "shared_runs", || {
        shared_runs(vout, 0)
    }));
    assert_eq!(out.to_vec(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.0]);
}

#[test]
fn out_of_bounds_128_bit_shared_load_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(8).named("out");
    let vout = out.view_mut();
    // Exactly 8 runs: thread 7's load at run 8 + 1 is past the end.
    expect_fault(
        launch(&config_1d(1, 8, 8 * 16), "shared_runs", || {
            shared_runs(vout, 4)
        }),
        &["out-of-bounds shared read"],
    );
}

#[test]
fn misaligned_128_bit_global_load_is_caught() {
    let a = DeviceBuffer::from_slice(&[1.0f32; 40]).named("a");
    let out = DeviceBuffer::<f32>::zeroed(8).named("out");
    let (va, vout) = (a.view(), out.view_mut());
    let err = expect_fault(
        launch(&config_1d(1, 8, 0), "global_runs", || {
            global_runs(va, vout, 1)
        }),
        &["16-byte vector access to global `a`[1]", "global_runs"],
    );
    assert!(matches!(
        *err.fault,
        Fault::MisalignedVector {
            space: MemorySpace::Global,
            index: 1,
            ..
        }
    ));
    expect_clean(launch(&config_1d(1, 8, 0), "global_runs", || {
        global_runs(va, vout, 4)
    }));
    assert_eq!(out.to_vec(), [4.0; 8]);
    // A buffer of 38: thread 9's aligned run 36..40 starts inside and ends past the end.
    let short = DeviceBuffer::from_slice(&[1.0f32; 38]).named("short");
    let out10 = DeviceBuffer::<f32>::zeroed(10).named("out");
    let (vs, vout10) = (short.view(), out10.view_mut());
    expect_fault(
        launch(&config_1d(1, 10, 0), "global_runs", || {
            global_runs(vs, vout10, 0)
        }),
        &["out-of-bounds global read of `short`[38] (len 38)"],
    );
}

#[test]
fn read_only_load_of_memory_the_launch_wrote_is_caught() {
    let buf = DeviceBuffer::<f32>::zeroed(4).named("buf");
    let out = DeviceBuffer::<f32>::zeroed(4).named("out");
    let (vb, vout) = (buf.view_mut(), out.view_mut());
    let err = expect_fault(
        launch(&config_1d(1, 4, 0), "read_only_after_write", || {
            read_only_after_write(vb, vout)
        }),
        &["read-only (non-coherent) load of `buf`"],
    );
    assert!(matches!(*err.fault, Fault::NonCoherentRead { .. }));
    let a = DeviceBuffer::from_slice(&[5.0f32; 4]).named("a");
    let va = a.view();
    expect_clean(launch(&config_1d(1, 4, 0), "read_only_input", || {
        read_only_input(va, vout)
    }));
    assert_eq!(out.to_vec(), [5.0; 4]);
}
