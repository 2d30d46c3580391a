//! `launch`: runs a kernel over a grid, block after block, each block's threads
//! concurrently on pool workers.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::config::{Dim3, LaunchConfig, LaunchOptions};
use super::context::{self, BlockState, FaultUnwind, LaunchState, ThreadCtx, lock};
use super::error::{Fault, LaunchError};
use super::pool;

static NEXT_LAUNCH: AtomicU64 = AtomicU64::new(1);

/// Runs `kernel` once per thread of the grid described by `config`, with the default
/// [`LaunchOptions`].
///
/// `kernel` is called on pool threads with the emulated thread's context set: typically
/// `|| my_kernel(a, b, out, n)` where the arguments are `Copy` views and scalars.
/// `kernel_name` appears in error messages.
///
/// Returns the first fault detected (see [`crate::emulator`] for the checks); then
/// the remaining blocks are not run.
pub fn launch(
    config: &LaunchConfig,
    kernel_name: &str,
    kernel: impl Fn() + Sync,
) -> Result<(), LaunchError> {
    launch_with_options(config, &LaunchOptions::default(), kernel_name, kernel)
}

/// [`launch`] with emulator options (schedule perturbation, barrier timeout).
pub fn launch_with_options(
    config: &LaunchConfig,
    options: &LaunchOptions,
    kernel_name: &str,
    kernel: impl Fn() + Sync,
) -> Result<(), LaunchError> {
    let launch_error = |fault| LaunchError {
        kernel: kernel_name.to_owned(),
        block: None,
        thread: None,
        fault: Box::new(fault),
        further_faults: 0,
    };
    config
        .validate()
        .map_err(|why| launch_error(Fault::InvalidConfig(why)))?;
    let (grid, block_dim) = (Dim3::from(config.grid), Dim3::from(config.block));
    let threads = block_dim.volume() as u32;
    let _reservation =
        pool::reserve(threads as usize).map_err(|why| launch_error(Fault::Resources(why)))?;
    let launch = Arc::new(LaunchState::new(
        NEXT_LAUNCH.fetch_add(1, Ordering::Relaxed),
        kernel_name,
        grid,
        block_dim,
        config.dynamic_shared_bytes,
        options.barrier_timeout,
    ));
    let kernel: &(dyn Fn() + Sync) = &kernel;
    // SAFETY: only the lifetime is extended. `run_block` returns after every job that
    // holds this reference has finished (it waits for all of them, and nothing between
    // submitting and waiting can unwind), so no job outlives the borrow of `kernel`.
    let kernel: &'static (dyn Fn() + Sync) =
        unsafe { std::mem::transmute::<&(dyn Fn() + Sync), &'static (dyn Fn() + Sync)>(kernel) };
    let mut seed = options.schedule_seed.map(|s| s | 1);
    for block_linear in 0..grid.volume() {
        run_block(
            &launch,
            block_linear as u32,
            threads,
            kernel,
            &mut seed,
            options.block_timeout,
        );
        if launch.failed() {
            break;
        }
    }
    launch.take_error().map_or(Ok(()), Err)
}

/// Counts the finished threads of a block.
struct Completion {
    remaining: Mutex<u32>,
    done: Condvar,
}

impl Completion {
    fn finish_one(&self) {
        let mut remaining = lock(&self.remaining);
        *remaining -= 1;
        if *remaining == 0 {
            self.done.notify_all();
        }
    }

    /// Waits up to `timeout`; returns the threads still running (0: all finished).
    fn wait_for(&self, timeout: Duration) -> u32 {
        let remaining = lock(&self.remaining);
        let (remaining, _) = self
            .done
            .wait_timeout_while(remaining, timeout, |r| *r > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *remaining
    }

    fn wait(&self) {
        let mut remaining = lock(&self.remaining);
        while *remaining > 0 {
            remaining = self
                .done
                .wait(remaining)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// splitmix64: decorrelates per-thread generator seeds.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn run_block(
    launch: &Arc<LaunchState>,
    block_linear: u32,
    threads: u32,
    kernel: &'static (dyn Fn() + Sync),
    seed: &mut Option<u64>,
    block_timeout: Duration,
) {
    let block = launch.grid.delinearize(u64::from(block_linear));
    let block_state = Arc::new(BlockState::new(threads, launch.shared_bytes));
    let completion = Arc::new(Completion {
        remaining: Mutex::new(threads),
        done: Condvar::new(),
    });
    let mut order: Vec<u32> = (0..threads).collect();
    if let Some(s) = seed.as_mut() {
        // Fisher-Yates with the launch's generator: a seeded dispatch order.
        for i in (1..order.len()).rev() {
            let j = (splitmix(s) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
    }
    let mut jobs: Vec<Box<dyn FnOnce() + Send>> = Vec::with_capacity(order.len());
    for thread_linear in order {
        let rng = seed.as_mut().map_or(0, |s| splitmix(s) | 1);
        let ctx = ThreadCtx {
            thread: launch.block_dim.delinearize(u64::from(thread_linear)),
            block,
            block_dim: launch.block_dim,
            grid_dim: launch.grid,
            thread_linear,
            block_linear,
            epoch: Cell::new(1),
            block_state: block_state.clone(),
            launch: launch.clone(),
            buffers: RefCell::new(Vec::new()),
            rng: Cell::new(rng),
        };
        let completion = completion.clone();
        jobs.push(Box::new(move || {
            run_thread(ctx, kernel);
            completion.finish_one();
        }));
    }
    pool::submit_batch(jobs);
    let unfinished = completion.wait_for(block_timeout);
    if unfinished > 0 {
        // Barrier waiters are released; running threads stop at their next access
        // (`ThreadCtx::maybe_yield`), noting where. The jobs borrow `kernel`, so wait for
        // all of them; then report one stopped thread and its stopping point.
        block_state.timed_out.store(true, Ordering::Release);
        launch.halt();
        block_state.barrier.poison();
        completion.wait();
        let stopped = lock(&block_state.stopped).take();
        let (thread, stopped_at) = stopped.map_or((None, None), |(t, at)| (Some(t), Some(at)));
        launch.record(launch.error_at(
            block,
            thread,
            Fault::BlockTimeout {
                after: block_timeout,
                unfinished,
                threads,
                stopped_at,
            },
        ));
    }
}

/// One emulated thread: runs the kernel, turns any unwind into a recorded fault.
fn run_thread(ctx: ThreadCtx, kernel: &(dyn Fn() + Sync)) {
    context::enter(ctx);
    let result = catch_unwind(AssertUnwindSafe(kernel));
    let Some(ctx) = context::leave() else {
        return;
    };
    match result {
        Ok(()) => ctx.block_state.barrier.exit(&ctx),
        Err(payload) if payload.is::<FaultUnwind>() => {}
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            ctx.report(Fault::Panic { message });
        }
    }
}
