//! The process-wide pool of OS threads that run emulated GPU threads.
//!
//! Spawning an OS thread per emulated thread per launch would dominate the run time of
//! a test suite of many small launches, so workers are kept and reused. A block's
//! threads must all be able to run at once (they meet at barriers), so a launch first
//! *reserves* as many workers as its block has threads; the pool grows until the
//! workers cover all reservations. Then every queued job finds an idle worker: jobs in
//! flight never outnumber reserved workers.
//!
//! Context switches dominate the emulator's run time, so workers are woken lazily: a
//! batch wakes only as many workers as there are CPUs, and a worker about to block at a
//! barrier wakes one more if jobs are queued. A kernel without barriers then runs a
//! whole block on a couple of workers without any switch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use super::context::lock;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct PoolState {
    jobs: VecDeque<Job>,
    workers: usize,
    reserved: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    job_ready: Condvar,
}

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        jobs: VecDeque::new(),
        workers: 0,
        reserved: 0,
    }),
    job_ready: Condvar::new(),
};

/// Stack size of a worker: kernels are shallow, and up to a few thousand workers may
/// exist, so keep it well below the 8 MiB default.
const WORKER_STACK_BYTES: usize = 1 << 20;

/// Workers reserved for one launch; released on drop.
pub(crate) struct Reservation {
    threads: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        lock(&POOL.state).reserved -= self.threads;
    }
}

/// Reserves `threads` workers, spawning what is missing.
pub(crate) fn reserve(threads: usize) -> Result<Reservation, String> {
    let mut state = lock(&POOL.state);
    state.reserved += threads;
    // From here on the reservation is owned by the guard, so an early return releases it.
    let reservation = Reservation { threads };
    while state.workers < state.reserved {
        std::thread::Builder::new()
            .name(format!("emulator-worker-{}", state.workers))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(worker)
            .map_err(|e| format!("cannot spawn worker thread: {e}"))?;
        state.workers += 1;
    }
    drop(state);
    Ok(reservation)
}

/// Jobs queued and not yet taken by a worker (readable without the lock).
static QUEUED: AtomicUsize = AtomicUsize::new(0);

fn parallelism() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Queues `jobs` and wakes up to one worker per CPU for them.
pub(crate) fn submit_batch(jobs: impl IntoIterator<Item = Job>) {
    let mut state = lock(&POOL.state);
    let before = state.jobs.len();
    state.jobs.extend(jobs);
    let added = state.jobs.len() - before;
    QUEUED.fetch_add(added, Ordering::Release);
    drop(state);
    for _ in 0..added.min(parallelism()) {
        POOL.job_ready.notify_one();
    }
}

/// Called by a worker about to block (at a barrier): hands its CPU to a queued job.
pub(crate) fn before_blocking() {
    if QUEUED.load(Ordering::Acquire) > 0 {
        POOL.job_ready.notify_one();
    }
}

fn worker() {
    let mut state = lock(&POOL.state);
    loop {
        match state.jobs.pop_front() {
            Some(job) => {
                QUEUED.fetch_sub(1, Ordering::Release);
                drop(state);
                // Jobs catch their own unwinds (see `launch`), so a worker never dies.
                job();
                state = lock(&POOL.state);
            }
            None => {
                state = POOL
                    .job_ready
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
}
