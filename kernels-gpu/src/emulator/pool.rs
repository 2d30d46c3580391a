//! The process-wide pool of OS threads that run emulated GPU threads.
//!
//! Spawning an OS thread per emulated thread per launch would dominate the run time of
//! a test suite of many small launches, so workers are kept and reused. A block's
//! threads must all be able to run at once (they meet at barriers), so a launch first
//! *reserves* as many workers as its block has threads; the pool grows until the
//! workers cover all reservations. Then every queued job finds an idle worker: jobs in
//! flight never outnumber reserved workers.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

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

/// Queues `job` for the next idle worker.
pub(crate) fn submit(job: Job) {
    lock(&POOL.state).jobs.push_back(job);
    POOL.job_ready.notify_one();
}

fn worker() {
    let mut state = lock(&POOL.state);
    loop {
        match state.jobs.pop_front() {
            Some(job) => {
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
