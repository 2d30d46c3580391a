//! A PTX interpreter for any CUDA kernel crate: it parses a PTX module (for instance the
//! `.s` file rustc's nvptx64 backend emits, or what `nvcc -ptx` writes), launches its
//! `.entry` kernels on the CPU with the same packed parameter bytes a CUDA launch takes,
//! checks every memory access, and can count warp-level memory statistics. A kernel author
//! uses it to run the exact PTX a GPU would run, on a machine without a GPU, and compare
//! the result with a CPU reference.
//!
//! ```text
//! let module = ptxsim::parse_module(&ptx_text)?;          // errors name the PTX line
//! let mut sim = ptxsim::Simulator::new(module)?;
//! let out = sim.memory.alloc("out", vec![0; 4 * n]);     // device buffers
//! sim.launch("my_kernel", geometry, &param_bytes, &ptxsim::SimOptions::default())?;
//! let bytes = sim.memory.read(out, 4 * n);
//! ```
//!
//! - [`front`]: the PTX front end: text to a [`Module`] of decoded kernels
//!   ([`front::inst`] is the decoded instruction set). Nothing there executes.
//! - [`machine`]: the machine that executes a module: device memory, launches, one thread
//!   at a time between barriers, checks.
//! - [`stats`]: warp-level memory statistics (sectors per request, bank conflicts).
//! - [`arch`]: facts of the GPU the front end, machine and statistics share (warp width).
//!
//! # Supported subset
//! Module: `.version`, `.target`, `.address_size`, `.file`, `.global` variables with
//! integer initialisers, `.shared` and `.extern .shared` arrays at module level, `.entry`
//! kernels (`.func` bodies are skipped; `call` is refused). Kernel bodies: `.reg`
//! declarations, labels, `.loc`, `.pragma`, `.branchtargets`.
//!
//! Instructions (types b/u/s 32 and 64, f32, f64, pred): `mov` (registers, immediates,
//! special registers `%tid %ntid %ctaid %nctaid %laneid %warpid`, variable addresses,
//! `{lo, hi}` packing/unpacking of b64); `add sub mul.lo mul.hi mul.wide mad.lo mad.wide
//! min max div rem and or xor not neg abs shl shr shf.{l,r}.{wrap,clamp}`; float `add sub
//! mul div.rn min max neg abs sqrt.rn rcp.rn fma.rn mad.rn` with `.rn` or no rounding
//! modifier (IEEE round-to-nearest-even: Rust's float arithmetic, `mul_add` for fma);
//! `setp` (all comparisons, no boolean combining form) and `selp`; `cvt` between integer
//! types (with `.sat`), integer to float (`.rn`), float to integer (`.rni .rzi .rmi .rpi`,
//! saturating, NaN to 0), f32↔f64 (`.rn` narrowing) and same-type float rounding;
//! `cvta(.to).{global,shared}.u64`; `ld`/`st` generic, `.global`, `.shared`, `.param`
//! (loads), `ld.global.nc`, scalar and `.v2`/`.v4`; `cp.async.{ca,cg}.shared.global`
//! with `commit_group`, `wait_group`, `wait_all`; `bra`, `brx.idx`, `bar.sync 0` /
//! `barrier.sync 0`, `ret`, `exit`, `trap`.
//!
//! Everything else — `.ftz`, `.sat` on floats, `.approx`, directed rounding of
//! arithmetic, f16, 8/16-bit arithmetic, atomics, shuffles, votes, `.local`, `call`,
//! textures — is a parse error naming the instruction and the PTX line.
//!
//! # Execution model and checks
//! Blocks run one after the other; inside a block each thread runs alone until its next
//! `bar.sync` or its exit, then the next thread. When all threads wait, they must wait at
//! the same `bar.sync` and none may have exited (else: barrier divergence). Checked on
//! every access: global addresses against the allocation they fall in (each launch buffer
//! and module variable has its own address window), shared offsets against the block's
//! static + dynamic shared size, natural alignment; shared-memory races between threads in
//! the same barrier interval (read-after-write, write-after-read, write-after-write, per
//! 4-byte word); a step limit per thread. Not modelled: warps as a scheduling unit (no
//! warp-synchronous behaviour is assumed), races in global memory between blocks, memory
//! ordering, timing.

pub mod arch;
pub mod front;
pub mod machine;
pub mod stats;

pub use front::inst::Space;
pub use front::{Kernel, Module, ParamDecl, ParseError, entry_params, parse_module};
pub use machine::{DeviceMemory, Geometry, LaunchReport, SimError, SimOptions, Simulator};
pub use stats::{InstStats, KernelStats};
