//! Per-launch, per-block and per-thread state, and the thread-local pointer to it that
//! the device facade reads: the lowest layer of the emulator. The block's barrier and
//! shared memory are defined here as state; what threads do with them (waiting with
//! synccheck, checked accesses) is in `sync` and `shared`, which import this file.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use super::config::Dim3;
use super::error::{Fault, LaunchError, StopPoint};

/// Locks `m`, ignoring poisoning: a kernel thread unwinding with a lock held (a fault
/// or a panic) must not make every other thread fail too; the state stays consistent
/// because faults are raised before any mutation.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State of one launch, shared by all its threads.
pub(crate) struct LaunchState {
    /// Unique per launch, so global-memory metadata of earlier launches never conflicts.
    pub id: u64,
    pub kernel: String,
    pub grid: Dim3,
    pub block_dim: Dim3,
    pub shared_bytes: usize,
    pub barrier_timeout: Duration,
    /// First fault and the count of later ones.
    faults: Mutex<(Option<LaunchError>, usize)>,
    failed: AtomicBool,
}

impl LaunchState {
    pub fn new(
        id: u64,
        kernel: &str,
        grid: Dim3,
        block_dim: Dim3,
        shared_bytes: usize,
        barrier_timeout: Duration,
    ) -> Self {
        LaunchState {
            id,
            kernel: kernel.to_owned(),
            grid,
            block_dim,
            shared_bytes,
            barrier_timeout,
            faults: Mutex::new((None, 0)),
            failed: AtomicBool::new(false),
        }
    }

    /// Keeps one fault and counts the rest: of the faults recorded, the one of the lowest
    /// (block, thread) index. Threads of a block run concurrently, so when several of them
    /// fault before the launch stops them, keeping the first to arrive would make the
    /// report depend on which thread the scheduler ran first.
    pub fn record(&self, error: LaunchError) {
        let mut faults = lock(&self.faults);
        match &faults.0 {
            Some(kept) if order_key(kept) <= order_key(&error) => faults.1 += 1,
            Some(_) => {
                faults.0 = Some(error);
                faults.1 += 1;
            }
            None => faults.0 = Some(error),
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Makes every thread of the launch stop at its next access or barrier, without
    /// recording a fault (the block timeout records its own once they stopped).
    pub fn halt(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn take_error(&self) -> Option<LaunchError> {
        let mut faults = lock(&self.faults);
        let (first, further) = (faults.0.take(), faults.1);
        first.map(|mut e| {
            e.further_faults = further;
            e
        })
    }

    pub fn error_at(&self, block: Dim3, thread: Option<Dim3>, fault: Fault) -> LaunchError {
        LaunchError {
            kernel: self.kernel.clone(),
            block: Some(block),
            thread,
            fault: Box::new(fault),
            further_faults: 0,
        }
    }
}

/// Block index, then thread index, each `(z, y, x)`: the order in which faults are kept.
/// A fault of no particular block or thread sorts first.
fn order_key(e: &LaunchError) -> (Option<[u32; 3]>, Option<[u32; 3]>) {
    let zyx = |d: Dim3| [d.z, d.y, d.x];
    (e.block.map(zyx), e.thread.map(zyx))
}

/// State of one block: its barrier and its shared memory.
pub(crate) struct BlockState {
    pub threads: u32,
    pub barrier: Barrier,
    pub shared: Mutex<SharedMemory>,
    /// The block ran past its timeout: threads note where they stop.
    pub timed_out: AtomicBool,
    /// The thread to name in the timeout report and where it stopped.
    pub stopped: Mutex<Option<(Dim3, StopPoint)>>,
}

impl BlockState {
    pub fn new(threads: u32, shared_bytes: usize) -> Self {
        BlockState {
            threads,
            barrier: Barrier::new(),
            shared: Mutex::new(SharedMemory::new(shared_bytes)),
            timed_out: AtomicBool::new(false),
            stopped: Mutex::new(None),
        }
    }
}

/// A reusable barrier for the threads of one block that can be poisoned (released with
/// an error) when any thread of the block faults.
///
/// Waiters park on their own OS thread and the last arrival unparks each of them: a
/// `Condvar::notify_all` would wake the whole block at once to fight over the mutex,
/// which made barriers of 256-thread blocks several times slower.
pub(crate) struct Barrier {
    pub(super) state: Mutex<BarrierState>,
    /// Completed rounds; a waiter leaves when it changes.
    pub(super) generation: AtomicU64,
    /// A thread of the block faulted: nobody waits any more.
    poisoned: AtomicBool,
}

pub(super) struct BarrierState {
    /// Threads waiting in the current round.
    pub(super) arrived: u32,
    /// Call site of the current round and the first thread that reached it.
    pub(super) site: Option<(&'static Location<'static>, u32)>,
    /// First thread of the block that returned from the kernel.
    pub(super) exited: Option<u32>,
    /// Parked waiters of the current round.
    pub(super) waiters: Vec<Thread>,
}

impl Barrier {
    pub fn new() -> Self {
        Barrier {
            state: Mutex::new(BarrierState {
                arrived: 0,
                site: None,
                exited: None,
                waiters: Vec::new(),
            }),
            generation: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Releases every waiter; they and every later arrival unwind.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut lock(&self.state).waiters);
        for waiter in waiters {
            waiter.unpark();
        }
    }

    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}

/// Marks a byte read by more than one thread in the current epoch.
pub(super) const MANY: u32 = u32::MAX;

/// Shadow state of one shared byte. Epochs count barriers + 1, so 0 means "never".
#[derive(Clone, Copy, Default)]
pub(super) struct ByteState {
    pub(super) write_epoch: u32,
    pub(super) writer: u32,
    pub(super) read_epoch: u32,
    /// The thread that read it in `read_epoch`, or [`MANY`].
    pub(super) reader: u32,
}

/// One block's dynamic shared memory: bytes plus per-byte shadow state for memcheck,
/// racecheck and initcheck (the checked accesses are in `shared`).
pub(crate) struct SharedMemory {
    pub(super) bytes: Vec<u8>,
    pub(super) shadow: Vec<ByteState>,
}

impl SharedMemory {
    pub fn new(len: usize) -> Self {
        SharedMemory {
            bytes: vec![0; len],
            shadow: vec![ByteState::default(); len],
        }
    }
}

/// Everything one emulated thread knows about itself.
pub(crate) struct ThreadCtx {
    pub thread: Dim3,
    pub block: Dim3,
    pub block_dim: Dim3,
    pub grid_dim: Dim3,
    /// Linear thread index within the block (x fastest).
    pub thread_linear: u32,
    /// Linear block index within the grid (x fastest).
    pub block_linear: u32,
    /// Barriers passed + 1: accesses in the same epoch are unordered between threads.
    pub epoch: Cell<u32>,
    pub block_state: Arc<BlockState>,
    pub launch: Arc<LaunchState>,
    /// Buffers this thread already looked up, so accesses skip the global registry lock.
    pub buffers: RefCell<Vec<(u64, Arc<dyn Any + Send + Sync>)>>,
    /// Xorshift state for schedule perturbation; 0 means off.
    pub rng: Cell<u64>,
}

impl ThreadCtx {
    /// Records `fault` for this thread, releases its block's barrier waiters, and
    /// unwinds out of the kernel (the worker catches it).
    pub fn fault(&self, fault: Fault) -> ! {
        self.report(fault);
        unwind_quietly()
    }

    /// Records `fault` for this thread and releases its block's barrier waiters.
    pub fn report(&self, fault: Fault) {
        self.launch
            .record(self.launch.error_at(self.block, Some(self.thread), fault));
        self.block_state.barrier.poison();
    }

    /// The index of thread `linear` of this block.
    pub fn thread_at(&self, linear: u32) -> Dim3 {
        self.block_dim.delinearize(u64::from(linear))
    }

    /// Called at every device-memory access and barrier (`at` describes it): stops this
    /// thread if the launch has already failed (another thread's fault, or the block
    /// timeout), and with schedule perturbation on gives up the CPU at random (one call
    /// in four), so that other threads of the block interleave here.
    pub fn maybe_yield(&self, at: impl FnOnce() -> StopPoint) {
        if self.launch.failed() {
            self.stop(at);
        }
        let mut x = self.rng.get();
        if x == 0 {
            return;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        if x & 3 == 0 {
            std::thread::yield_now();
        }
    }
}

impl ThreadCtx {
    /// Ends this thread because the launch failed. If its block timed out, `at` (where it
    /// stopped) may become the report's: the first thread stopped at a memory access, else
    /// the first stopped at a barrier (`at` is only evaluated then).
    pub fn stop(&self, at: impl FnOnce() -> StopPoint) -> ! {
        if self.block_state.timed_out.load(Ordering::Acquire) {
            let mut stopped = lock(&self.block_state.stopped);
            let replace = match &*stopped {
                None => true,
                Some((_, StopPoint::Barrier { .. })) => true,
                Some((_, StopPoint::Access { .. })) => false,
            };
            if replace {
                let at = at();
                if stopped.is_none() || matches!(at, StopPoint::Access { .. }) {
                    *stopped = Some((self.thread, at));
                }
            }
        }
        unwind_quietly()
    }
}

/// Unwind payload for a fault that is already recorded (or a thread released from a
/// poisoned barrier): the worker ignores it. `resume_unwind` skips the panic hook, so
/// detected bugs print nothing.
pub(crate) struct FaultUnwind;

pub(crate) fn unwind_quietly() -> ! {
    std::panic::resume_unwind(Box::new(FaultUnwind))
}

thread_local! {
    static CURRENT: RefCell<Option<ThreadCtx>> = const { RefCell::new(None) };
}

/// Makes `ctx` the calling OS thread's emulated thread.
pub(crate) fn enter(ctx: ThreadCtx) {
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
}

/// Ends the calling OS thread's emulated thread.
pub(crate) fn leave() -> Option<ThreadCtx> {
    CURRENT.with(|c| c.borrow_mut().take())
}

/// Runs `f` with the current emulated thread, `None` outside a launch.
pub(crate) fn try_with<R>(f: impl FnOnce(&ThreadCtx) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(f))
}

/// Runs `f` with the current emulated thread.
///
/// # Panics
/// Outside an emulated launch: device functions have no meaning on a plain host thread.
#[track_caller]
pub(crate) fn with<R>(f: impl FnOnce(&ThreadCtx) -> R) -> R {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(ctx) => f(ctx),
        None => panic!(
            "device function called outside an emulated launch (use kernels_gpu::emulator::launch)"
        ),
    })
}
