//! Checked accesses of a block's dynamic shared memory
//! ([`SharedMemory`](super::context::SharedMemory)): memcheck, racecheck and initcheck on
//! its per-byte shadow state.

use std::panic::Location;

use super::context::{self, MANY, ThreadCtx, lock};
use super::error::{Access, Fault, MemorySpace, StopPoint};
use crate::device_copy::DeviceCopy;

/// The stopping point of a shared access, for the block-timeout report.
fn stop_point<T>(
    byte_offset: usize,
    access: Access,
    index: usize,
    location: &'static Location<'static>,
) -> impl FnOnce() -> StopPoint {
    move || StopPoint::Access {
        space: MemorySpace::Shared,
        access,
        buffer: describe::<T>(byte_offset),
        index,
        location,
    }
}

fn describe<T>(byte_offset: usize) -> String {
    format!(
        "shared memory (as {} from byte {byte_offset})",
        std::any::type_name::<T>()
    )
}

/// Byte range of element `index` of a `T` view at `byte_offset`, or the out-of-bounds
/// fault.
fn byte_range<T>(
    ctx: &ThreadCtx,
    byte_offset: usize,
    index: usize,
    access: Access,
    location: &'static Location<'static>,
) -> Result<std::ops::Range<usize>, Fault> {
    let size = size_of::<T>();
    let total = ctx.launch.shared_bytes;
    let start = index
        .checked_mul(size)
        .and_then(|b| b.checked_add(byte_offset));
    match start {
        Some(start) if start + size <= total => Ok(start..start + size),
        _ => Err(Fault::OutOfBounds {
            space: MemorySpace::Shared,
            access,
            buffer: describe::<T>(byte_offset),
            index,
            len: total.saturating_sub(byte_offset) / size.max(1),
            location,
        }),
    }
}

/// Checked load of element `index` of the `T` view at `byte_offset`.
pub(crate) fn read<T: DeviceCopy>(
    byte_offset: usize,
    index: usize,
    location: &'static Location<'static>,
) -> T {
    context::with(|ctx| {
        ctx.maybe_yield(stop_point::<T>(byte_offset, Access::Read, index, location));
        let result =
            byte_range::<T>(ctx, byte_offset, index, Access::Read, location).and_then(|range| {
                let mut mem = lock(&ctx.block_state.shared);
                let (epoch, me) = (ctx.epoch.get(), ctx.thread_linear);
                // Check every byte before updating any, so a fault leaves no trace.
                for b in range.clone() {
                    let s = mem.shadow[b];
                    if s.write_epoch == 0 {
                        return Err(Fault::UninitializedRead {
                            space: MemorySpace::Shared,
                            buffer: describe::<T>(byte_offset),
                            index,
                            location,
                        });
                    }
                    if s.write_epoch == epoch && s.writer != me {
                        return Err(race::<T>(
                            ctx,
                            Access::Read,
                            Access::Write,
                            byte_offset,
                            index,
                            Some(s.writer),
                            location,
                        ));
                    }
                }
                for s in &mut mem.shadow[range.clone()] {
                    if s.read_epoch != epoch {
                        s.read_epoch = epoch;
                        s.reader = me;
                    } else if s.reader != me {
                        s.reader = MANY;
                    }
                }
                // SAFETY: `range` is in bounds and `size_of::<T>()` long; `T: DeviceCopy`
                // is valid for any bytes; `read_unaligned` needs no alignment.
                Ok(unsafe { mem.bytes[range].as_ptr().cast::<T>().read_unaligned() })
            });
        result.unwrap_or_else(|fault| ctx.fault(fault))
    })
}

/// Checked 16-byte vector load (`ld.shared.v4.f32`) of elements `index..index + 4` of the
/// f32 view at `byte_offset`: the byte address must be a multiple of 16 (the dynamic
/// region itself starts 16-byte aligned), then each element is checked as by [`read`].
pub(crate) fn read4(
    byte_offset: usize,
    index: usize,
    location: &'static Location<'static>,
) -> [f32; 4] {
    check_vector_alignment(byte_offset, index, location);
    [0, 1, 2, 3].map(|l| read::<f32>(byte_offset, index + l, location))
}

/// Checked 16-byte vector store (`st.shared.v4.f32`), aligned as for [`read4`].
pub(crate) fn write4(
    byte_offset: usize,
    index: usize,
    value: [f32; 4],
    location: &'static Location<'static>,
) {
    check_vector_alignment(byte_offset, index, location);
    for (l, v) in value.into_iter().enumerate() {
        write::<f32>(byte_offset, index + l, v, location);
    }
}

fn check_vector_alignment(byte_offset: usize, index: usize, location: &'static Location<'static>) {
    let aligned = index
        .checked_mul(4)
        .and_then(|b| b.checked_add(byte_offset))
        .is_some_and(|b| b.is_multiple_of(16));
    if !aligned {
        context::with(|ctx| {
            ctx.fault(Fault::MisalignedVector {
                space: MemorySpace::Shared,
                buffer: describe::<f32>(byte_offset),
                index,
                location,
            })
        });
    }
}

/// Checked store of `value` at element `index` of the `T` view at `byte_offset`.
pub(crate) fn write<T: DeviceCopy>(
    byte_offset: usize,
    index: usize,
    value: T,
    location: &'static Location<'static>,
) {
    context::with(|ctx| {
        ctx.maybe_yield(stop_point::<T>(byte_offset, Access::Write, index, location));
        let result =
            byte_range::<T>(ctx, byte_offset, index, Access::Write, location).and_then(|range| {
                let mut mem = lock(&ctx.block_state.shared);
                let (epoch, me) = (ctx.epoch.get(), ctx.thread_linear);
                for b in range.clone() {
                    let s = mem.shadow[b];
                    if s.write_epoch == epoch && s.writer != me {
                        return Err(race::<T>(
                            ctx,
                            Access::Write,
                            Access::Write,
                            byte_offset,
                            index,
                            Some(s.writer),
                            location,
                        ));
                    }
                    if s.read_epoch == epoch && s.reader != me {
                        let other = (s.reader != MANY).then_some(s.reader);
                        return Err(race::<T>(
                            ctx,
                            Access::Write,
                            Access::Read,
                            byte_offset,
                            index,
                            other,
                            location,
                        ));
                    }
                }
                for s in &mut mem.shadow[range.clone()] {
                    s.write_epoch = epoch;
                    s.writer = me;
                }
                // SAFETY: `range` is in bounds and `size_of::<T>()` long;
                // `write_unaligned` needs no alignment.
                unsafe {
                    mem.bytes[range]
                        .as_mut_ptr()
                        .cast::<T>()
                        .write_unaligned(value)
                };
                Ok(())
            });
        if let Err(fault) = result {
            ctx.fault(fault);
        }
    });
}

fn race<T>(
    ctx: &ThreadCtx,
    access: Access,
    other_access: Access,
    byte_offset: usize,
    index: usize,
    other: Option<u32>,
    location: &'static Location<'static>,
) -> Fault {
    Fault::Race {
        space: MemorySpace::Shared,
        access,
        other_access,
        buffer: describe::<T>(byte_offset),
        index,
        other_block: ctx.block,
        other_thread: other.map(|t| ctx.thread_at(t)),
        location,
    }
}

/// Faults if a `T` view at `byte_offset` would be misaligned.
pub(crate) fn check_alignment<T>(byte_offset: usize, location: &'static Location<'static>) {
    if !byte_offset.is_multiple_of(align_of::<T>()) {
        context::with(|ctx| {
            ctx.fault(Fault::Misaligned {
                byte_offset,
                align: align_of::<T>(),
                elem: std::any::type_name::<T>(),
                location,
            })
        });
    }
}
