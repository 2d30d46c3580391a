//! The block barrier behind `sync_threads`, with synccheck.

use std::panic::Location;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::context::{self, Barrier, ThreadCtx, lock};
use super::error::{Fault, StopPoint};
use super::pool;

/// Yields before a barrier waiter parks.
const SPIN_YIELDS: u32 = 8;

// Waiting and exiting live here, with synccheck; the barrier's state and its poisoning
// are in `context`, below every file that uses them.
impl Barrier {
    /// Waits until all threads of the block reach `site`.
    pub(super) fn wait(&self, ctx: &ThreadCtx, site: &'static Location<'static>) {
        let me = ctx.thread_linear;
        let stop = || StopPoint::Barrier { location: site };
        let mut st = lock(&self.state);
        if self.is_poisoned() {
            drop(st);
            ctx.stop(stop);
        }
        if let Some(exited) = st.exited {
            drop(st);
            ctx.fault(Fault::ExitedBeforeBarrier {
                exited_thread: ctx.thread_at(exited),
                barrier: site,
            });
        }
        match st.site {
            Some((other_site, other)) if other_site != site => {
                drop(st);
                ctx.fault(Fault::DivergentBarrier {
                    location: site,
                    other_location: other_site,
                    other_thread: ctx.thread_at(other),
                });
            }
            Some(_) => {}
            None => st.site = Some((site, me)),
        }
        st.arrived += 1;
        if st.arrived == ctx.block_state.threads {
            st.arrived = 0;
            st.site = None;
            let waiters = std::mem::take(&mut st.waiters);
            self.generation.fetch_add(1, Ordering::AcqRel);
            drop(st);
            for waiter in waiters {
                waiter.unpark();
            }
            return;
        }
        // Read under the lock: the round cannot complete before we looked.
        let generation = self.generation.load(Ordering::Acquire);
        drop(st);
        pool::before_blocking();
        // First yield the CPU a few times: between barriers kernels do little work, so
        // the rest of the block usually arrives within one pass of the run queue, and a
        // yield is cheaper than the futex wait + wake pair of parking.
        for _ in 0..SPIN_YIELDS {
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            if self.is_poisoned() {
                ctx.stop(stop);
            }
            std::thread::yield_now();
        }
        let mut st = lock(&self.state);
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        st.waiters.push(std::thread::current());
        drop(st);
        let timeout = ctx.launch.barrier_timeout;
        let start = Instant::now();
        // An unpark that lands before `park` makes `park` return at once, so no wake-up
        // is lost; spurious wake-ups just loop.
        while self.generation.load(Ordering::Acquire) == generation {
            if self.is_poisoned() {
                ctx.stop(stop);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                let arrived = lock(&self.state).arrived;
                ctx.fault(Fault::BarrierTimeout {
                    barrier: site,
                    arrived,
                    expected: ctx.block_state.threads,
                    waited,
                });
            }
            std::thread::park_timeout(timeout - waited);
        }
    }

    /// Notes that `ctx`'s thread returned from the kernel; a fault if others wait.
    pub fn exit(&self, ctx: &ThreadCtx) {
        let mut st = lock(&self.state);
        if self.is_poisoned() {
            return;
        }
        if let (Some((site, _)), true) = (st.site, st.arrived > 0) {
            drop(st);
            ctx.report(Fault::ExitedBeforeBarrier {
                exited_thread: ctx.thread,
                barrier: site,
            });
            return;
        }
        st.exited.get_or_insert(ctx.thread_linear);
    }
}

/// `sync_threads` for the calling emulated thread.
pub(crate) fn sync_threads(site: &'static Location<'static>) {
    context::with(|ctx| {
        ctx.maybe_yield(|| StopPoint::Barrier { location: site });
        ctx.block_state.barrier.wait(ctx, site);
        ctx.epoch.set(ctx.epoch.get() + 1);
    });
}
