//! What a failed launch reports: which kernel, block and thread, and what went wrong.

use std::fmt;
use std::panic::Location;
use std::time::Duration;

use super::config::Dim3;

/// The memory a faulting access went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemorySpace {
    /// A [`DeviceBuffer`](crate::emulator::DeviceBuffer) seen through a global view.
    Global,
    /// The block's dynamic shared memory.
    Shared,
}

/// Direction of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
}

/// One detected bug (or invalid launch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The launch configuration breaks a CUDA limit; no thread ran.
    InvalidConfig(String),
    /// memcheck: an access outside the buffer or the dynamic shared memory.
    OutOfBounds {
        /// Global or shared.
        space: MemorySpace,
        /// Load or store.
        access: Access,
        /// Buffer name, or a description of the shared view.
        buffer: String,
        /// The element index the kernel used.
        index: usize,
        /// Elements the view has.
        len: usize,
        /// Kernel source line of the access.
        location: &'static Location<'static>,
    },
    /// memcheck: a shared view at a byte offset not aligned for its element type.
    Misaligned {
        /// Requested byte offset into shared memory.
        byte_offset: usize,
        /// Required alignment.
        align: usize,
        /// Element type name.
        elem: &'static str,
        /// Kernel source line.
        location: &'static Location<'static>,
    },
    /// memcheck: a vector access (`ld.*.v4`, 16 bytes) at an element whose address is not
    /// 16-byte aligned; the GPU faults with a misaligned address.
    MisalignedVector {
        /// Global or shared.
        space: MemorySpace,
        /// Buffer name, or a description of the shared view.
        buffer: String,
        /// The first element index of the vector.
        index: usize,
        /// Kernel source line of the access.
        location: &'static Location<'static>,
    },
    /// A read through the read-only (non-coherent, `ld.global.nc`) path of an element this
    /// launch has written: the GPU may return the stale value.
    NonCoherentRead {
        /// Buffer name.
        buffer: String,
        /// Element index.
        index: usize,
        /// Kernel source line of the read.
        location: &'static Location<'static>,
    },
    /// memcheck: a global view whose buffer was dropped.
    UseAfterFree {
        /// Buffer id.
        buffer_id: u64,
        /// Kernel source line.
        location: &'static Location<'static>,
    },
    /// initcheck: a read of memory nobody wrote.
    UninitializedRead {
        /// Global or shared.
        space: MemorySpace,
        /// Buffer name or shared view description.
        buffer: String,
        /// Element index.
        index: usize,
        /// Kernel source line.
        location: &'static Location<'static>,
    },
    /// racecheck: a conflicting access to memory another thread accessed without a
    /// barrier in between.
    Race {
        /// Global or shared.
        space: MemorySpace,
        /// This thread's access.
        access: Access,
        /// The other thread's access.
        other_access: Access,
        /// Buffer name or shared view description.
        buffer: String,
        /// Element index.
        index: usize,
        /// The other thread's block (equal to the faulting block for shared memory).
        other_block: Dim3,
        /// The other thread, `None` if several threads read the element.
        other_thread: Option<Dim3>,
        /// Kernel source line of this thread's access.
        location: &'static Location<'static>,
    },
    /// synccheck: threads of one block wait at different barriers.
    DivergentBarrier {
        /// The barrier this thread reached.
        location: &'static Location<'static>,
        /// The barrier other threads wait at.
        other_location: &'static Location<'static>,
        /// A thread waiting there.
        other_thread: Dim3,
    },
    /// synccheck: a thread exited while others of its block wait (or later wait) at a
    /// barrier it will never reach.
    ExitedBeforeBarrier {
        /// The thread that returned from the kernel.
        exited_thread: Dim3,
        /// The barrier the other threads wait at.
        barrier: &'static Location<'static>,
    },
    /// synccheck: a barrier did not complete within the timeout (some thread never came).
    BarrierTimeout {
        /// The barrier.
        barrier: &'static Location<'static>,
        /// Threads that arrived.
        arrived: u32,
        /// Threads of the block.
        expected: u32,
        /// How long this thread waited.
        waited: Duration,
    },
    /// A block ran past [`LaunchOptions::block_timeout`](crate::emulator::LaunchOptions):
    /// typically a loop that never ends (its threads were stopped at their next device
    /// memory access or barrier).
    ///
    /// The error's `thread` is a thread that was stopped, and `stopped_at` where: a thread
    /// stopped at a memory access is preferred to one released from a barrier (the
    /// barrier waiters are usually waiting for the looping thread).
    BlockTimeout {
        /// The timeout.
        after: Duration,
        /// Threads of the block that had not finished.
        unfinished: u32,
        /// Threads of the block.
        threads: u32,
        /// Where the reported thread was stopped; `None` if every unfinished thread
        /// finished on its own before reaching a stopping point.
        stopped_at: Option<StopPoint>,
    },
    /// A kernel thread panicked (for example arithmetic overflow in a debug build).
    Panic {
        /// The panic message.
        message: String,
    },
    /// The host could not provide enough OS threads for a block.
    Resources(String),
}

/// Where a thread stopped by the block timeout was: the access or barrier it was about to
/// make (in an endless loop, an access of the loop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopPoint {
    /// A device-memory access.
    Access {
        /// Global or shared.
        space: MemorySpace,
        /// Load or store.
        access: Access,
        /// Buffer name or shared view description.
        buffer: String,
        /// Element index.
        index: usize,
        /// Kernel source line of the access.
        location: &'static Location<'static>,
    },
    /// A barrier (the thread was waiting there, or about to).
    Barrier {
        /// The barrier's call site.
        location: &'static Location<'static>,
    },
}

impl fmt::Display for StopPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopPoint::Access {
                space,
                access,
                buffer,
                index,
                location,
            } => write!(f, "its {space} {access} of {buffer}[{index}] at {location}"),
            StopPoint::Barrier { location } => write!(f, "the barrier at {location}"),
        }
    }
}

/// A failed emulated launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchError {
    /// Name given to [`launch`](crate::emulator::launch).
    pub kernel: String,
    /// Block of the faulting thread (`None` for launch-level faults).
    pub block: Option<Dim3>,
    /// The faulting thread within its block (`None` for launch-level faults).
    pub thread: Option<Dim3>,
    /// What went wrong (boxed: keeps `Result<_, LaunchError>` small).
    pub fault: Box<Fault>,
    /// Faults reported after the first one in the same launch (not kept).
    pub further_faults: usize,
}

impl std::error::Error for LaunchError {}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel `{}`", self.kernel)?;
        if let Some(block) = self.block {
            write!(f, ", block {block}")?;
        }
        if let Some(thread) = self.thread {
            write!(f, ", thread {thread}")?;
        }
        write!(f, ": {}", self.fault)?;
        if self.further_faults > 0 {
            write!(f, " (and {} further faults)", self.further_faults)?;
        }
        Ok(())
    }
}

impl fmt::Display for MemorySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemorySpace::Global => "global",
            MemorySpace::Shared => "shared",
        })
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::InvalidConfig(why) => write!(f, "invalid launch configuration: {why}"),
            Fault::OutOfBounds {
                space,
                access,
                buffer,
                index,
                len,
                location,
            } => write!(
                f,
                "memcheck: out-of-bounds {space} {access} of {buffer}[{index}] (len {len}) at {location}"
            ),
            Fault::Misaligned {
                byte_offset,
                align,
                elem,
                location,
            } => write!(
                f,
                "memcheck: shared view of {elem} at byte offset {byte_offset} is not {align}-byte aligned, at {location}"
            ),
            Fault::MisalignedVector {
                space,
                buffer,
                index,
                location,
            } => write!(
                f,
                "memcheck: 16-byte vector access to {space} {buffer}[{index}] is not 16-byte aligned, at {location}"
            ),
            Fault::NonCoherentRead {
                buffer,
                index,
                location,
            } => write!(
                f,
                "racecheck: read-only (non-coherent) load of {buffer}[{index}], which this launch wrote, at {location}"
            ),
            Fault::UseAfterFree {
                buffer_id,
                location,
            } => write!(
                f,
                "memcheck: access to freed buffer #{buffer_id} at {location}"
            ),
            Fault::UninitializedRead {
                space,
                buffer,
                index,
                location,
            } => {
                // A shared view's description already says "shared memory".
                let memory = match space {
                    MemorySpace::Global => "global memory ",
                    MemorySpace::Shared => "",
                };
                write!(
                    f,
                    "initcheck: read of uninitialised {memory}{buffer}[{index}] at {location}"
                )
            }
            Fault::Race {
                space,
                access,
                other_access,
                buffer,
                index,
                other_block,
                other_thread,
                location,
            } => {
                write!(
                    f,
                    "racecheck: {space} {access}-after-{other_access} hazard on {buffer}[{index}] at {location}: "
                )?;
                match other_thread {
                    Some(t) => write!(f, "block {other_block} thread {t} did the {other_access}")?,
                    None => write!(
                        f,
                        "several threads of block {other_block} did {other_access}s"
                    )?,
                }
                f.write_str(" with no barrier in between")
            }
            Fault::DivergentBarrier {
                location,
                other_location,
                other_thread,
            } => write!(
                f,
                "synccheck: divergent barriers: this thread waits at {location} while thread {other_thread} waits at {other_location}"
            ),
            Fault::ExitedBeforeBarrier {
                exited_thread,
                barrier,
            } => write!(
                f,
                "synccheck: thread {exited_thread} exited while its block waits at the barrier at {barrier}"
            ),
            Fault::BarrierTimeout {
                barrier,
                arrived,
                expected,
                waited,
            } => write!(
                f,
                "synccheck: barrier at {barrier} incomplete after {waited:?}: {arrived} of {expected} threads arrived"
            ),
            Fault::BlockTimeout {
                after,
                unfinished,
                threads,
                stopped_at,
            } => {
                write!(
                    f,
                    "block still running after {after:?}: {unfinished} of {threads} threads had \
                     not finished (an endless loop?)"
                )?;
                match stopped_at {
                    Some(at) => write!(f, "; this thread was stopped at {at}"),
                    None => f.write_str("; they finished before reaching a stopping point"),
                }
            }
            Fault::Panic { message } => write!(f, "thread panicked: {message}"),
            Fault::Resources(why) => write!(f, "emulator out of resources: {why}"),
        }
    }
}
