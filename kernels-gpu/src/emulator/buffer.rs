//! Emulated global memory: [`DeviceBuffer`] (like `cudaMalloc`'d memory) and the checked
//! accesses of the facade's global views.
//!
//! Views are `Copy` handles holding a buffer id; the storage lives in a process-wide
//! registry until its `DeviceBuffer` is dropped, so a stale view is reported instead of
//! reading freed memory.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::context::{self, ThreadCtx, lock};
use super::error::{Access, Fault, MemorySpace, StopPoint};

type AnyBuffer = Arc<dyn Any + Send + Sync>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<BTreeMap<u64, AnyBuffer>> = Mutex::new(BTreeMap::new());

/// Shadow state of one element.
#[derive(Clone, Copy)]
struct ElemState {
    initialized: bool,
    /// Launch of the last write (0: written by the host).
    write_launch: u64,
    /// Linear block and thread of the last device write, and its barrier epoch.
    writer_block: u32,
    writer_thread: u32,
    write_epoch: u32,
    /// Launch of the reads below (0: none since the host wrote).
    read_launch: u64,
    /// Linear block and thread of the latest device read, and its barrier epoch.
    reader_block: u32,
    reader_thread: u32,
    read_epoch: u32,
    /// A read of this launch by a block other than `reader_block` (block, thread): a
    /// later write by any thread is unordered with it.
    foreign_read: Option<(u32, u32)>,
    /// Another thread of `reader_block` also read in `read_epoch`.
    several_readers: bool,
}

impl ElemState {
    const HOST_WRITTEN: ElemState = ElemState {
        initialized: true,
        write_launch: 0,
        writer_block: 0,
        writer_thread: 0,
        write_epoch: 0,
        read_launch: 0,
        reader_block: 0,
        reader_thread: 0,
        read_epoch: 0,
        foreign_read: None,
        several_readers: false,
    };
    const UNINIT: ElemState = ElemState {
        initialized: false,
        ..ElemState::HOST_WRITTEN
    };
}

struct BufferState<T> {
    name: String,
    data: Vec<T>,
    shadow: Vec<ElemState>,
}

struct BufferCore<T> {
    state: Mutex<BufferState<T>>,
}

/// Memory of the emulated device, viewed by kernels through
/// [`Global`](super::views::Global) and [`GlobalMut`](super::views::GlobalMut). Dropping it frees the memory; views of it then fault.
pub struct DeviceBuffer<T: Copy + Send + 'static> {
    pub(super) id: u64,
    pub(super) len: usize,
    core: Arc<BufferCore<T>>,
}

impl<T: Copy + Send + 'static> DeviceBuffer<T> {
    fn new(data: Vec<T>, initialized: bool) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let len = data.len();
        let shadow = if initialized {
            ElemState::HOST_WRITTEN
        } else {
            ElemState::UNINIT
        };
        let core = Arc::new(BufferCore {
            state: Mutex::new(BufferState {
                name: format!("buffer#{id}"),
                data,
                shadow: vec![shadow; len],
            }),
        });
        lock(&REGISTRY).insert(id, core.clone() as AnyBuffer);
        DeviceBuffer { id, len, core }
    }

    /// A buffer holding a copy of `data` (`cudaMemcpy` host to device).
    pub fn from_slice(data: &[T]) -> Self {
        Self::new(data.to_vec(), true)
    }

    /// Names the buffer in fault messages (default `buffer#<id>`).
    pub fn named(self, name: &str) -> Self {
        lock(&self.core.state).name = name.to_owned();
        self
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the contents back (`cudaMemcpy` device to host).
    pub fn to_vec(&self) -> Vec<T> {
        lock(&self.core.state).data.clone()
    }
}

impl<T: Copy + Send + Default + 'static> DeviceBuffer<T> {
    /// A buffer of `len` default (zero) values, counted as initialised.
    pub fn zeroed(len: usize) -> Self {
        Self::new(vec![T::default(); len], true)
    }

    /// A buffer of `len` elements that count as uninitialised (`cudaMalloc` without a
    /// memset): a kernel reading one before any thread wrote it is an initcheck fault.
    pub fn uninit(len: usize) -> Self {
        Self::new(vec![T::default(); len], false)
    }
}

impl<T: Copy + Send + 'static> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        lock(&REGISTRY).remove(&self.id);
    }
}

impl<T: Copy + Send + 'static> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = lock(&self.core.state).name.clone();
        write!(f, "DeviceBuffer({name}, len {})", self.len)
    }
}

fn lookup(id: u64) -> Option<AnyBuffer> {
    lock(&REGISTRY).get(&id).cloned()
}

/// Buffer `id` as fault messages name it (only computed for a report).
fn display_name<T: Copy + Send + 'static>(id: u64) -> String {
    lookup(id)
        .and_then(|b| {
            b.downcast_ref::<BufferCore<T>>()
                .map(|core| format!("`{}`", lock(&core.state).name))
        })
        .unwrap_or_else(|| format!("freed buffer #{id}"))
}

/// The stopping point of a global access, for the block-timeout report.
fn stop_point<T: Copy + Send + 'static>(
    id: u64,
    access: Access,
    index: usize,
    location: &'static Location<'static>,
) -> impl FnOnce() -> StopPoint {
    move || StopPoint::Access {
        space: MemorySpace::Global,
        access,
        buffer: display_name::<T>(id),
        index,
        location,
    }
}

/// Runs `f` on buffer `id` of element type `T`, through the thread's cache.
fn with_buffer<T: Copy + Send + 'static, R>(
    ctx: &ThreadCtx,
    id: u64,
    location: &'static Location<'static>,
    f: impl FnOnce(&BufferCore<T>) -> Result<R, Fault>,
) -> R {
    let cached = ctx.buffers.borrow().iter().any(|(cid, _)| *cid == id);
    if !cached {
        match lookup(id) {
            Some(buffer) => ctx.buffers.borrow_mut().push((id, buffer)),
            None => ctx.fault(Fault::UseAfterFree {
                buffer_id: id,
                location,
            }),
        }
    }
    let result = {
        let buffers = ctx.buffers.borrow();
        let (_, buffer) = buffers
            .iter()
            .find(|(cid, _)| *cid == id)
            .expect("buffer cached just above");
        let core = buffer
            .downcast_ref::<BufferCore<T>>()
            .expect("a view's element type is the buffer's element type");
        f(core)
    };
    result.unwrap_or_else(|fault| ctx.fault(fault))
}

fn out_of_bounds<T>(
    state: &BufferState<T>,
    access: Access,
    index: usize,
    location: &'static Location<'static>,
) -> Fault {
    Fault::OutOfBounds {
        space: MemorySpace::Global,
        access,
        buffer: format!("`{}`", state.name),
        index,
        len: state.data.len(),
        location,
    }
}

/// A race between this thread's `access` and the last write `prev`, if any: the write
/// was by another thread of this launch, in another block or in the same block without
/// a barrier in between.
fn race_with_write<T>(
    ctx: &ThreadCtx,
    state: &BufferState<T>,
    prev: ElemState,
    access: Access,
    index: usize,
    location: &'static Location<'static>,
) -> Option<Fault> {
    let same_thread =
        prev.writer_block == ctx.block_linear && prev.writer_thread == ctx.thread_linear;
    let ordered = prev.writer_block == ctx.block_linear && prev.write_epoch != ctx.epoch.get();
    (prev.write_launch == ctx.launch.id && !same_thread && !ordered).then(|| Fault::Race {
        space: MemorySpace::Global,
        access,
        other_access: Access::Write,
        buffer: format!("`{}`", state.name),
        index,
        other_block: ctx.launch.grid.delinearize(u64::from(prev.writer_block)),
        other_thread: Some(ctx.thread_at(prev.writer_thread)),
        location,
    })
}

/// The emulated thread making an access, as the shadow state records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Accessor {
    launch: u64,
    block: u32,
    thread: u32,
    epoch: u32,
}

impl Accessor {
    fn of(ctx: &ThreadCtx) -> Self {
        Accessor {
            launch: ctx.launch.id,
            block: ctx.block_linear,
            thread: ctx.thread_linear,
            epoch: ctx.epoch.get(),
        }
    }
}

/// Records a read by `by` in the element's shadow state (see [`unordered_read`]).
fn note_read(e: &mut ElemState, by: Accessor) {
    if e.read_launch != by.launch {
        e.read_launch = by.launch;
        e.foreign_read = None;
        e.several_readers = false;
    } else if e.reader_block != by.block {
        e.foreign_read = Some((e.reader_block, e.reader_thread));
        e.several_readers = false;
    } else if e.read_epoch == by.epoch {
        e.several_readers |= e.reader_thread != by.thread;
    } else {
        // A barrier separates the earlier reads of this block from any later write.
        e.several_readers = false;
    }
    e.reader_block = by.block;
    e.reader_thread = by.thread;
    e.read_epoch = by.epoch;
}

/// A read of this launch that a write by `by` would race with: by another block (blocks
/// run in no fixed order on a GPU), or by another thread of `by`'s block in the same
/// barrier epoch. Returns its (block, thread), the thread `None` if several threads of
/// the block read.
fn unordered_read(e: &ElemState, by: Accessor) -> Option<(u32, Option<u32>)> {
    if e.read_launch != by.launch {
        return None;
    }
    let same_epoch = e.reader_block == by.block && e.read_epoch == by.epoch;
    if e.reader_block != by.block {
        Some((e.reader_block, Some(e.reader_thread)))
    } else if let Some((b, t)) = e.foreign_read {
        Some((b, Some(t)))
    } else if same_epoch && e.reader_thread != by.thread {
        Some((by.block, Some(e.reader_thread)))
    } else if same_epoch && e.several_readers {
        Some((by.block, None))
    } else {
        None
    }
}

/// The write-after-read race of this thread's write, if any (see [`unordered_read`]).
fn race_with_reads<T>(
    ctx: &ThreadCtx,
    state: &BufferState<T>,
    prev: ElemState,
    index: usize,
    location: &'static Location<'static>,
) -> Option<Fault> {
    let (other_block, other_thread) = unordered_read(&prev, Accessor::of(ctx))?;
    Some(Fault::Race {
        space: MemorySpace::Global,
        access: Access::Write,
        other_access: Access::Read,
        buffer: format!("`{}`", state.name),
        index,
        other_block: ctx.launch.grid.delinearize(u64::from(other_block)),
        other_thread: other_thread.map(|t| ctx.thread_at(t)),
        location,
    })
}

/// Checked load for a global view. Outside a launch (host code) only bounds are checked.
pub(crate) fn read<T: Copy + Send + 'static>(
    id: u64,
    len: usize,
    index: usize,
    location: &'static Location<'static>,
) -> T {
    read_via(id, len, index, false, location)
}

/// Checked load through the read-only path (`ld.global.nc`): as [`read`], and a fault if
/// this launch wrote the element (the non-coherent cache may hold the old value).
pub(crate) fn read_non_coherent<T: Copy + Send + 'static>(
    id: u64,
    len: usize,
    index: usize,
    location: &'static Location<'static>,
) -> T {
    read_via(id, len, index, true, location)
}

/// Checked 16-byte vector load of elements `index..index + 4` through the read-only
/// path (`ld.global.nc.v4.f32`). Buffers start 256-byte aligned (as `cudaMalloc`'s do),
/// so the address is 16-byte aligned exactly when `index` is a multiple of 4.
pub(crate) fn read4_non_coherent(
    id: u64,
    len: usize,
    index: usize,
    location: &'static Location<'static>,
) -> [f32; 4] {
    if !index.is_multiple_of(4) {
        let fault = |name: String| Fault::MisalignedVector {
            space: MemorySpace::Global,
            buffer: format!("`{name}`"),
            index,
            location,
        };
        let in_launch = context::try_with(|ctx| {
            with_buffer::<f32, ()>(ctx, id, location, |core| {
                Err(fault(lock(&core.state).name.clone()))
            })
        });
        if in_launch.is_none() {
            panic!("{}", fault(format!("buffer#{id}")));
        }
    }
    [0, 1, 2, 3].map(|l| read_via(id, len, index + l, true, location))
}

fn read_via<T: Copy + Send + 'static>(
    id: u64,
    len: usize,
    index: usize,
    non_coherent: bool,
    location: &'static Location<'static>,
) -> T {
    let in_launch = context::try_with(|ctx| {
        ctx.maybe_yield(stop_point::<T>(id, Access::Read, index, location));
        with_buffer::<T, T>(ctx, id, location, |core| {
            let mut state = lock(&core.state);
            if index >= len {
                return Err(out_of_bounds(&state, Access::Read, index, location));
            }
            let prev = state.shadow[index];
            if !prev.initialized {
                return Err(Fault::UninitializedRead {
                    space: MemorySpace::Global,
                    buffer: format!("`{}`", state.name),
                    index,
                    location,
                });
            }
            if non_coherent && prev.write_launch == ctx.launch.id {
                return Err(Fault::NonCoherentRead {
                    buffer: format!("`{}`", state.name),
                    index,
                    location,
                });
            }
            match race_with_write(ctx, &state, prev, Access::Read, index, location) {
                Some(fault) => Err(fault),
                None => {
                    note_read(&mut state.shadow[index], Accessor::of(ctx));
                    Ok(state.data[index])
                }
            }
        })
    });
    in_launch.unwrap_or_else(|| host_access(id, index, location, |state| state.data[index]))
}

/// Checked store for a global view. Outside a launch (host code) only bounds are checked.
pub(crate) fn write<T: Copy + Send + 'static>(
    id: u64,
    len: usize,
    index: usize,
    value: T,
    location: &'static Location<'static>,
) {
    let in_launch = context::try_with(|ctx| {
        ctx.maybe_yield(stop_point::<T>(id, Access::Write, index, location));
        with_buffer::<T, ()>(ctx, id, location, |core| {
            let mut state = lock(&core.state);
            if index >= len {
                return Err(out_of_bounds(&state, Access::Write, index, location));
            }
            let prev = state.shadow[index];
            if let Some(fault) = race_with_write(ctx, &state, prev, Access::Write, index, location)
                .or_else(|| race_with_reads(ctx, &state, prev, index, location))
            {
                return Err(fault);
            }
            state.data[index] = value;
            let shadow = &mut state.shadow[index];
            shadow.initialized = true;
            shadow.write_launch = ctx.launch.id;
            shadow.writer_block = ctx.block_linear;
            shadow.writer_thread = ctx.thread_linear;
            shadow.write_epoch = ctx.epoch.get();
            Ok(())
        })
    });
    if in_launch.is_none() {
        host_access::<T, ()>(id, index, location, |state| {
            state.data[index] = value;
            state.shadow[index] = ElemState::HOST_WRITTEN;
        });
    }
}

/// A view used by host code outside any launch: a plain checked access.
#[track_caller]
fn host_access<T: Copy + Send + 'static, R>(
    id: u64,
    index: usize,
    location: &'static Location<'static>,
    f: impl FnOnce(&mut BufferState<T>) -> R,
) -> R {
    let Some(buffer) = lookup(id) else {
        panic!("access to freed device buffer #{id} at {location}");
    };
    let core = buffer
        .downcast_ref::<BufferCore<T>>()
        .expect("a view's element type is the buffer's element type");
    let mut state = lock(&core.state);
    assert!(
        index < state.data.len(),
        "out-of-bounds access to `{}`[{index}] (len {}) at {location}",
        state.name,
        state.data.len()
    );
    f(&mut state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u32, thread: u32, epoch: u32) -> Accessor {
        Accessor {
            launch: 7,
            block,
            thread,
            epoch,
        }
    }

    fn after_reads(reads: &[Accessor]) -> ElemState {
        let mut e = ElemState::HOST_WRITTEN;
        for &r in reads {
            note_read(&mut e, r);
        }
        e
    }

    #[test]
    fn writes_after_unordered_reads_are_races() {
        // Another thread of the block, same epoch.
        let e = after_reads(&[at(0, 1, 1)]);
        assert_eq!(unordered_read(&e, at(0, 0, 1)), Some((0, Some(1))));
        // Several readers including the writer: still a race, reported for the block.
        let e = after_reads(&[at(0, 1, 1), at(0, 0, 1)]);
        assert_eq!(unordered_read(&e, at(0, 0, 1)), Some((0, None)));
        // Another block, whatever the epochs.
        let e = after_reads(&[at(2, 5, 3)]);
        assert_eq!(unordered_read(&e, at(0, 5, 1)), Some((2, Some(5))));
        // Another block read earlier, then this block: the other block's read remains.
        let e = after_reads(&[at(2, 5, 1), at(0, 0, 1)]);
        assert_eq!(unordered_read(&e, at(0, 0, 1)), Some((2, Some(5))));
    }

    #[test]
    fn ordered_or_own_reads_are_not_races() {
        // Only the writer read it.
        let e = after_reads(&[at(0, 3, 1)]);
        assert_eq!(unordered_read(&e, at(0, 3, 1)), None);
        // Other threads read before a barrier (epoch 1), the write comes after (epoch 2).
        let e = after_reads(&[at(0, 1, 1), at(0, 2, 1)]);
        assert_eq!(unordered_read(&e, at(0, 0, 2)), None);
        // ... also when the writer read again after the barrier.
        let e = after_reads(&[at(0, 1, 1), at(0, 2, 1), at(0, 0, 2)]);
        assert_eq!(unordered_read(&e, at(0, 0, 2)), None);
        // Reads of an earlier launch.
        let e = after_reads(&[at(0, 1, 1)]);
        let next_launch = Accessor {
            launch: 8,
            ..at(0, 0, 1)
        };
        assert_eq!(unordered_read(&e, next_launch), None);
        // Nothing read since the host wrote.
        assert_eq!(unordered_read(&ElemState::HOST_WRITTEN, at(0, 0, 1)), None);
    }
}
