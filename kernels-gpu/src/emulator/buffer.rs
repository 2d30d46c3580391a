//! Emulated global memory: [`DeviceBuffer`] (like `cudaMalloc`'d memory) and the checked
//! accesses of the facade's global views.
//!
//! Views are `Copy` handles holding a buffer id; the storage lives in a process-wide
//! registry until its `DeviceBuffer` is dropped, so a stale view is reported instead of
//! reading freed memory.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::context::{self, ThreadCtx, lock};
use super::error::{Access, Fault, MemorySpace};
use crate::device::{Global, GlobalMut};

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
}

impl ElemState {
    const HOST_WRITTEN: ElemState = ElemState {
        initialized: true,
        write_launch: 0,
        writer_block: 0,
        writer_thread: 0,
        write_epoch: 0,
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

/// Memory of the emulated device, viewed by kernels through [`Global`] and
/// [`GlobalMut`]. Dropping it frees the memory; views of it then fault.
pub struct DeviceBuffer<T: Copy + Send + 'static> {
    id: u64,
    len: usize,
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

    /// Read-only view for a kernel argument.
    pub fn view(&self) -> Global<T> {
        Global {
            id: self.id,
            len: self.len,
            _elem: PhantomData,
        }
    }

    /// Writable view for a kernel argument.
    pub fn view_mut(&self) -> GlobalMut<T> {
        GlobalMut {
            id: self.id,
            len: self.len,
            _elem: PhantomData,
        }
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

/// Checked load for a global view. Outside a launch (host code) only bounds are checked.
pub(crate) fn read<T: Copy + Send + 'static>(
    id: u64,
    len: usize,
    index: usize,
    location: &'static Location<'static>,
) -> T {
    let in_launch = context::try_with(|ctx| {
        ctx.maybe_yield();
        with_buffer::<T, T>(ctx, id, location, |core| {
            let state = lock(&core.state);
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
            match race_with_write(ctx, &state, prev, Access::Read, index, location) {
                Some(fault) => Err(fault),
                None => Ok(state.data[index]),
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
        ctx.maybe_yield();
        with_buffer::<T, ()>(ctx, id, location, |core| {
            let mut state = lock(&core.state);
            if index >= len {
                return Err(out_of_bounds(&state, Access::Write, index, location));
            }
            let prev = state.shadow[index];
            if let Some(fault) = race_with_write(ctx, &state, prev, Access::Write, index, location)
            {
                return Err(fault);
            }
            state.data[index] = value;
            state.shadow[index] = ElemState {
                initialized: true,
                write_launch: ctx.launch.id,
                writer_block: ctx.block_linear,
                writer_thread: ctx.thread_linear,
                write_epoch: ctx.epoch.get(),
            };
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
