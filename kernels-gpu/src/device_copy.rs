//! The one trait both halves of the facade and the emulator's shared memory rest on. It
//! sits below `device` and `emulator` so that the emulator need not import the facade
//! (the facade's host half imports the emulator).

/// Element types that may live in shared memory and be reinterpreted from raw bytes.
///
/// Shared memory is one untyped byte region per block (CUDA's `extern __shared__`); the
/// emulator stores it as bytes and reads a `T` back from them, so `T` must be valid for
/// every bit pattern and have no padding.
///
/// # Safety
/// Implement only for `Copy` types without padding bytes for which every bit pattern
/// is a valid value (integers, floats, arrays of those).
pub unsafe trait DeviceCopy: Copy + 'static {}

macro_rules! impl_device_copy {
    ($($t:ty),*) => {
        $(
            // SAFETY: primitive integers and floats have no padding and no invalid bit
            // patterns.
            unsafe impl DeviceCopy for $t {}
        )*
    };
}
impl_device_copy!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);

// SAFETY: an array of padding-free, all-bit-patterns-valid elements is itself padding-free
// (arrays have no inter-element padding) with all bit patterns valid.
unsafe impl<T: DeviceCopy, const N: usize> DeviceCopy for [T; N] {}
