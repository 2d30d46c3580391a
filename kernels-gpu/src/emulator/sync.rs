//! The block barrier behind `sync_threads`, with synccheck.

use std::panic::Location;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::context::{self, ThreadCtx, lock, unwind_quietly};
use super::error::Fault;

/// A reusable barrier for the threads of one block that can be poisoned (released with
/// an error) when any thread of the block faults.
pub(crate) struct Barrier {
    state: Mutex<BarrierState>,
    released: Condvar,
}

struct BarrierState {
    /// Threads waiting in the current round.
    arrived: u32,
    /// Completed rounds; waiters leave when it changes.
    generation: u64,
    /// Call site of the current round and the first thread that reached it.
    site: Option<(&'static Location<'static>, u32)>,
    /// First thread of the block that returned from the kernel.
    exited: Option<u32>,
    /// A thread of the block faulted: nobody waits any more.
    poisoned: bool,
}

impl Barrier {
    pub fn new() -> Self {
        Barrier {
            state: Mutex::new(BarrierState {
                arrived: 0,
                generation: 0,
                site: None,
                exited: None,
                poisoned: false,
            }),
            released: Condvar::new(),
        }
    }

    /// Releases every waiter; they and every later arrival unwind.
    pub fn poison(&self) {
        lock(&self.state).poisoned = true;
        self.released.notify_all();
    }

    /// Waits until all threads of the block reach `site`.
    fn wait(&self, ctx: &ThreadCtx, site: &'static Location<'static>) {
        let me = ctx.thread_linear;
        let mut st = lock(&self.state);
        if st.poisoned {
            drop(st);
            unwind_quietly();
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
            st.generation += 1;
            drop(st);
            self.released.notify_all();
            return;
        }
        let generation = st.generation;
        let timeout = ctx.launch.barrier_timeout;
        let start = Instant::now();
        while st.generation == generation {
            if st.poisoned {
                drop(st);
                unwind_quietly();
            }
            let waited = start.elapsed();
            if waited >= timeout {
                let arrived = st.arrived;
                drop(st);
                ctx.fault(Fault::BarrierTimeout {
                    barrier: site,
                    arrived,
                    expected: ctx.block_state.threads,
                    waited,
                });
            }
            st = self
                .released
                .wait_timeout(st, timeout - waited)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Notes that `ctx`'s thread returned from the kernel; a fault if others wait.
    pub fn exit(&self, ctx: &ThreadCtx) {
        let mut st = lock(&self.state);
        if st.poisoned {
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
        ctx.maybe_yield();
        ctx.block_state.barrier.wait(ctx, site);
        ctx.epoch.set(ctx.epoch.get() + 1);
    });
}
