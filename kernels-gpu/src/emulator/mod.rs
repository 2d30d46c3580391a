//! A CPU emulator for the kernels of this crate: CUDA's execution model plus the checks
//! of compute-sanitizer.
//!
//! [`launch`] runs a kernel over a grid of blocks. The threads of a block run
//! concurrently on OS threads taken from a process-wide, reused pool, so
//! [`sync_threads`](crate::device::sync_threads) is a real barrier; blocks run one after
//! another. Kernels access memory only through the facade's views
//! ([`Global`](crate::device::Global), [`GlobalMut`](crate::device::GlobalMut),
//! [`Shared`](crate::device::Shared)), and every access is checked:
//!
//! - **memcheck**: out-of-bounds global or shared access (shared memory is exactly
//!   `dynamic_shared_bytes` long), misaligned shared views, use of a freed buffer;
//! - **racecheck**: two threads of a block touching the same shared byte between two
//!   barriers with at least one write; global accesses that conflict with another
//!   thread's access of the launch (another block, or the same block without a barrier
//!   in between) when one of them is a write: write after write, read after write,
//!   write after read;
//! - **initcheck**: reads of shared memory that no thread of the block wrote since the
//!   launch, and of [`DeviceBuffer::uninit`] elements nobody wrote. Its limit: a byte
//!   written once stays initialised for the rest of the launch, so a *stale* value is
//!   not an uninitialised one. A GEMM that forgets to overwrite (zero-pad) part of an
//!   edge tile reads the slot's value from an earlier K stage, which initcheck accepts
//!   by design; the wrong result is caught by the agreement check against
//!   `reference::naive` (`tests/backend_agreement.rs`, and the multi-stage ragged shapes
//!   of `tests/emulated_kernels.rs`), not by a detector;
//! - **synccheck**: threads waiting at different barriers (identified by the caller
//!   location of `sync_threads`, so helpers that synchronise must be `#[track_caller]`,
//!   see [`sync_threads`](crate::device::sync_threads)), a thread exiting while others
//!   wait at a barrier, a barrier that never completes;
//! - a panic in a kernel thread (overflow, explicit `panic!`).
//!
//! The first fault ends the launch with `Err(LaunchError)`; threads blocked at a
//! barrier of the faulting block are released. The process never aborts.
//!
//! Cost: OS context switches dominate. Measured on a 2-core VM (release): a launch of
//! 4 blocks of 16x16 threads with 8 barriers each takes about 35-50 ms (roughly 1 ms per
//! barrier round of a 256-thread block); a barrier-free kernel runs a block on a couple of
//! workers without switching (100 launches of 8x128 threads: 50 ms). Blocks run one after
//! another so that which fault is reported first does not depend on timing.
//!
//! A block that runs longer than [`LaunchOptions::block_timeout`] (an endless loop) fails
//! the launch with [`Fault::BlockTimeout`]: its threads stop at their next device-memory
//! access or barrier, and the report names one stopped thread and where it stopped
//! ([`StopPoint`]: buffer, index and source line of the access, preferred over a thread
//! released from a barrier).
//!
//! Not emulated: warps and warp-synchronous behaviour, atomics, memory ordering weaker
//! than sequential consistency. Not caught: a thread that loops forever without touching
//! device memory or a barrier (the launch then waits for it).
//!
//! Files, each importing only files listed before it:
//! - `config` (launch shapes and options), `error` (faults and their reports);
//! - `context`: launch, block and thread state (including the state of a block's barrier
//!   and shared memory), the lock helper and the thread-local current thread;
//! - `pool` (the worker threads), `buffer` (device buffers, global-memory checks),
//!   `shared` (checked shared-memory accesses), `sync` (barrier waits, synccheck);
//! - `views`: the facade's checked global-memory views (`Global`, `GlobalMut`), which
//!   the facade's host half re-exports;
//! - `launch`: runs a grid on the pool.

pub(crate) mod buffer;
mod config;
pub(crate) mod context;
mod error;
mod launch;
mod pool;
pub(crate) mod shared;
pub(crate) mod sync;
pub(crate) mod views;

pub use buffer::DeviceBuffer;
pub use config::{
    Dim3, LaunchConfig, LaunchOptions, MAX_DYNAMIC_SHARED_BYTES, MAX_THREADS_PER_BLOCK,
};
pub use error::{Access, Fault, LaunchError, MemorySpace, StopPoint};
pub use launch::{launch, launch_with_options};
