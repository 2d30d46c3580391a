//! initcheck: reads of shared memory no thread of the block wrote, and of uninitialised
//! device buffers.

mod common;

use common::{config_1d, expect_clean, expect_fault};
use kernels_gpu::device::*;
use kernels_gpu::emulator::{DeviceBuffer, Fault, MemorySpace, launch};
use kernels_gpu::kernel;

kernel! {
    /// Only even threads fill their slot, but every thread reads its own.
    fn fill_even_read_all(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        let t = thread_idx_x() as usize;
        if t.is_multiple_of(2) {
            s.set(t, 1.0);
        }
        sync_threads();
        out.set(t, s.get(t));
    }

    fn fill_all_read_all(out: GlobalMut<f32>) {
        let s = dynamic_shared::<f32>();
        let t = thread_idx_x() as usize;
        s.set(t, 1.0);
        sync_threads();
        out.set(t, s.get(t));
    }

    fn copy(input: Global<f32>, out: GlobalMut<f32>) {
        let t = global_thread_x();
        out.set(t, input.get(t));
    }
}

#[test]
fn read_of_unwritten_shared_memory_is_caught() {
    let out = DeviceBuffer::<f32>::zeroed(32);
    let vout = out.view_mut();
    let err = expect_fault(
        launch(&config_1d(1, 32, 32 * 4), "fill_even_read_all", || {
            fill_even_read_all(vout)
        }),
        &[
            "initcheck: read of uninitialised shared memory (as f32 from byte 0)[",
            "initcheck.rs",
        ],
    );
    assert!(
        !err.to_string().contains("shared memory shared memory"),
        "{err}"
    );
    match *err.fault {
        Fault::UninitializedRead {
            space: MemorySpace::Shared,
            index,
            ..
        } => {
            assert_eq!(index % 2, 1, "only odd slots are unwritten");
            assert_eq!(err.thread.map(|t| t.x as usize), Some(index));
        }
        ref other => panic!("wrong fault: {other}"),
    }
    expect_clean(launch(
        &config_1d(1, 32, 32 * 4),
        "fill_all_read_all",
        || fill_all_read_all(vout),
    ));
}

#[test]
fn shared_memory_starts_uninitialised_in_every_block() {
    // Block 0 fills all slots, but block 1 has its own shared memory: a kernel that
    // relied on leftovers would still fail there. Here each block fills its own.
    let out = DeviceBuffer::<f32>::zeroed(32);
    let vout = out.view_mut();
    expect_clean(launch(
        &config_1d(1, 32, 32 * 4),
        "fill_all_read_all",
        || fill_all_read_all(vout),
    ));
    let err = expect_fault(
        launch(&config_1d(1, 32, 32 * 4), "fill_even_read_all", || {
            fill_even_read_all(vout)
        }),
        &["initcheck"],
    );
    assert!(matches!(*err.fault, Fault::UninitializedRead { .. }));
}

#[test]
fn read_of_uninitialised_device_buffer_is_caught() {
    let input = DeviceBuffer::<f32>::uninit(8).named("input");
    let out = DeviceBuffer::<f32>::zeroed(8);
    let (vin, vout) = (input.view(), out.view_mut());
    expect_fault(
        launch(&config_1d(1, 8, 0), "copy", || copy(vin, vout)),
        &["initcheck: read of uninitialised global memory `input`["],
    );
    let input = DeviceBuffer::<f32>::zeroed(8).named("input");
    let vin = input.view();
    expect_clean(launch(&config_1d(1, 8, 0), "copy", || copy(vin, vout)));
}
