//! Element-wise vector addition: the smallest kernel, one thread per element.

use crate::device::{Global, GlobalMut, global_thread_x};
use crate::kernel;

kernel! {
    /// `out[i] = a[i] + b[i]` for `i < n`; one thread per element on a 1-D grid that
    /// may have more threads than elements.
    pub fn vector_add(a: Global<f32>, b: Global<f32>, out: GlobalMut<f32>, n: u32) {
        let i = global_thread_x();
        if i < n as usize {
            out.set(i, a.get(i) + b.get(i));
        }
    }
}

kernel! {
    /// `out[i·stride] = a[i·stride] + b[i·stride]` for `i·stride < n`: the same work per
    /// thread as [`vector_add`], but the lanes of a warp touch addresses `4·stride` bytes
    /// apart. A demonstration of uncoalesced access for the PTX backend's memory
    /// statistics (`lsoftmax ptx --sim`): stride 1 needs 4 sectors of 32 bytes per warp
    /// request, stride s ≥ 8 needs 32.
    pub fn vector_add_strided(a: Global<f32>, b: Global<f32>, out: GlobalMut<f32>, n: u32, stride: u32) {
        let i = global_thread_x() * stride as usize;
        if i < n as usize {
            out.set(i, a.get(i) + b.get(i));
        }
    }
}

/// Threads per block used by [`run`].
pub const BLOCK: u32 = 128;

/// Adds `a` and `b` (equal lengths) on the emulator.
#[cfg(not(target_arch = "nvptx64"))]
pub fn run(a: &[f32], b: &[f32]) -> Result<Vec<f32>, crate::emulator::LaunchError> {
    use crate::emulator::{DeviceBuffer, LaunchConfig, launch};
    assert_eq!(a.len(), b.len(), "vector_add needs equal lengths");
    let n = u32::try_from(a.len()).expect("vector length fits u32");
    let (da, db) = (DeviceBuffer::from_slice(a), DeviceBuffer::from_slice(b));
    let out = DeviceBuffer::<f32>::uninit(a.len()).named("out");
    let (va, vb, vout) = (da.view(), db.view(), out.view_mut());
    launch(&LaunchConfig::cover_1d(n, BLOCK), "vector_add", || {
        vector_add(va, vb, vout, n)
    })?;
    Ok(out.to_vec())
}
