//! Per-launch, per-block and per-thread state, and the thread-local pointer to it that
//! the device facade reads.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::config::Dim3;
use super::error::{Fault, LaunchError, StopPoint};
use super::shared::SharedMemory;
use super::sync::Barrier;

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

    /// Keeps the first fault; counts the rest.
    pub fn record(&self, error: LaunchError) {
        let mut faults = lock(&self.faults);
        if faults.0.is_none() {
            faults.0 = Some(error);
        } else {
            faults.1 += 1;
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
