//! The machine that executes a parsed module: device memory, launches, one thread at a
//! time between barriers, and the checks (bounds, alignment, shared-memory races, barrier
//! divergence, step limit).
//!
//! - [`memory`]: device memory, one address window per allocation;
//! - `block`: the state of one block and its barrier loop, the shared-memory race detector,
//!   `cp.async` groups;
//! - `step`: one thread running until its next barrier or exit;
//! - `alu`: integer arithmetic and comparisons on register bits.
//!
//! Address spaces: every device allocation (a launch's buffers and the module's `.global`
//! variables) gets its own window of 2³⁶ bytes at `(index + 1) · 2³⁶`, so a generic or
//! global address maps to its allocation with one shift and is checked against that
//! allocation's length. Shared memory is addressed by offset in `.shared` accesses and at
//! [`SHARED_WINDOW`] + offset in generic ones (`cvta.shared`). Address 0 and everything
//! outside the windows is invalid.

mod alu;
mod block;
pub mod memory;
mod step;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::front::inst::{Addr, AddrBase, Op, Space, Src};
use crate::front::{Kernel, Module};
use crate::stats::{BlockRecorder, KernelStats};
use block::{BlockCtx, BlockState};
pub use memory::{DeviceMemory, SHARED_WINDOW};

/// A device-side failure: what happened, where (kernel, block, thread, PTX line, Rust
/// line) and at which address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    /// Kernel name.
    pub kernel: String,
    /// Block index (x, y, z), if the error happened inside a block.
    pub block: Option<(u32, u32, u32)>,
    /// Thread index (x, y, z).
    pub thread: Option<(u32, u32, u32)>,
    /// PTX line of the faulting instruction.
    pub ptx_line: Option<u32>,
    /// `file:line` from `.loc`.
    pub source: Option<String>,
    /// The faulting address.
    pub address: Option<u64>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kernel, self.message)?;
        if let Some(a) = self.address {
            write!(f, " at address {a:#x}")?;
        }
        if let Some(b) = self.block {
            write!(f, "; block {b:?}")?;
        }
        if let Some(t) = self.thread {
            write!(f, " thread {t:?}")?;
        }
        if let Some(l) = self.ptx_line {
            write!(f, ", PTX line {l}")?;
        }
        if let Some(s) = &self.source {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimError {}

/// Options of a launch.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Most instructions one thread may execute in one launch before the launch is
    /// stopped as never-ending.
    pub max_steps_per_thread: u64,
    /// Record warp-level memory statistics (slower).
    pub stats: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            max_steps_per_thread: 50_000_000,
            stats: false,
        }
    }
}

/// `<<<grid, block, shared_bytes>>>` of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Blocks (x, y, z).
    pub grid: (u32, u32, u32),
    /// Threads per block (x, y, z).
    pub block: (u32, u32, u32),
    /// Dynamic shared memory bytes.
    pub shared_bytes: u32,
}

/// What one launch did.
#[derive(Debug, Clone, Default)]
pub struct LaunchReport {
    /// Thread-level instructions executed (guarded-off ones included: they issue).
    pub instructions: u64,
    /// Warp-level statistics, when [`SimOptions::stats`] was on.
    pub stats: Option<KernelStats>,
}

/// A kernel whose symbols are resolved to addresses.
#[derive(Debug, Clone)]
struct Resolved {
    kernel: Kernel,
    /// Static shared bytes before the dynamic region.
    static_shared: u32,
}

/// A parsed module with its symbols resolved: shared by every [`Simulator`] made from it.
#[derive(Debug)]
struct Program {
    module: Module,
    kernels: HashMap<String, Resolved>,
    /// Device memory holding only the module's `.global` variables.
    globals: DeviceMemory,
}

/// A loaded module with its device memory: the interpreter's "context".
#[derive(Debug, Clone)]
pub struct Simulator {
    program: std::sync::Arc<Program>,
    /// Device memory (module variables first, then what callers allocate).
    pub memory: DeviceMemory,
}

impl Simulator {
    /// Loads `module`: places its `.global` variables in device memory and resolves every
    /// symbol the kernels use. Errors name an unknown symbol.
    // A `SimError` is built at most once per launch, when the launch ends: its size does
    // not matter for speed.
    #[allow(clippy::result_large_err)]
    pub fn new(module: Module) -> Result<Simulator, SimError> {
        let mut memory = DeviceMemory::default();
        let mut globals = HashMap::new();
        for g in &module.globals {
            globals.insert(g.name.clone(), memory.alloc(&g.name, g.bytes.clone()));
        }
        // Static shared variables first, then the `.extern` ones at the end, aligned.
        let mut shared = HashMap::new();
        let mut off = 0u32;
        for s in module.shared.iter().filter(|s| s.size.is_some()) {
            off = off.div_ceil(s.align) * s.align;
            shared.insert(s.name.clone(), off);
            off += s.size.unwrap_or(0);
        }
        let dyn_align = module
            .shared
            .iter()
            .filter(|s| s.size.is_none())
            .map(|s| s.align)
            .max()
            .unwrap_or(1);
        let static_shared = off.div_ceil(dyn_align) * dyn_align;
        for s in module.shared.iter().filter(|s| s.size.is_none()) {
            shared.insert(s.name.clone(), static_shared);
        }
        let mut kernels = HashMap::new();
        for k in &module.kernels {
            let mut k2 = k.clone();
            for (pc, inst) in k2.insts.iter_mut().enumerate() {
                let fail = |message: String| SimError {
                    kernel: k.name.clone(),
                    block: None,
                    thread: None,
                    ptx_line: Some(k.pos[pc].ptx_line),
                    source: module.source_line(k.pos[pc].loc),
                    address: None,
                    message,
                };
                resolve(&mut inst.op, &globals, &shared).map_err(fail)?;
            }
            kernels.insert(
                k.name.clone(),
                Resolved {
                    kernel: k2,
                    static_shared,
                },
            );
        }
        Ok(Simulator {
            program: std::sync::Arc::new(Program {
                module,
                kernels,
                globals: memory.clone(),
            }),
            memory,
        })
    }

    /// A simulator of the same module with fresh device memory (only the module's
    /// variables, at their initial values).
    pub fn fresh(&self) -> Simulator {
        Simulator {
            program: self.program.clone(),
            memory: self.program.globals.clone(),
        }
    }

    /// The parsed module.
    pub fn module(&self) -> &Module {
        &self.program.module
    }

    /// Runs `kernel` over the grid with `params` as its parameter bytes (which must be
    /// exactly the entry's declared parameter size).
    #[allow(clippy::result_large_err)]
    pub fn launch(
        &mut self,
        kernel: &str,
        geometry: Geometry,
        params: &[u8],
        options: &SimOptions,
    ) -> Result<LaunchReport, SimError> {
        let fail = |message: String| SimError {
            kernel: kernel.to_string(),
            block: None,
            thread: None,
            ptx_line: None,
            source: None,
            address: None,
            message,
        };
        let program = self.program.clone();
        let r = program
            .kernels
            .get(kernel)
            .ok_or_else(|| fail("no such .entry in the PTX module".into()))?;
        if params.len() != r.kernel.param_bytes as usize {
            return Err(fail(format!(
                "{} parameter bytes given, the .entry declares {}",
                params.len(),
                r.kernel.param_bytes
            )));
        }
        let (bx, by, bz) = geometry.block;
        let threads = u64::from(bx) * u64::from(by) * u64::from(bz);
        if threads == 0 || threads > 1024 {
            return Err(fail(format!("block of {threads} threads (1..=1024)")));
        }
        let (gx, gy, gz) = geometry.grid;
        if gx == 0 || gy == 0 || gz == 0 {
            return Err(fail(format!("empty grid {:?}", geometry.grid)));
        }
        let mut report = LaunchReport::default();
        let mut stats = options.stats.then(|| KernelStats::new(&r.kernel));
        let shared_size = r.static_shared as usize + geometry.shared_bytes as usize;
        let mut block = BlockState::new(&r.kernel, threads as usize, shared_size, options);
        for z in 0..gz {
            for y in 0..gy {
                for x in 0..gx {
                    let ctx = BlockCtx {
                        ctaid: [x, y, z],
                        nctaid: [gx, gy, gz],
                        ntid: [bx, by, bz],
                        params,
                    };
                    block.reset();
                    let mut recorder = stats
                        .as_ref()
                        .map(|_| BlockRecorder::new(&r.kernel, threads as usize));
                    let res = block.run(&r.kernel, &ctx, &mut self.memory, recorder.as_mut());
                    report.instructions += block.steps_total;
                    if let Err(f) = res {
                        let pos = r.kernel.pos.get(f.pc as usize);
                        let t = f.thread;
                        return Err(SimError {
                            kernel: kernel.to_string(),
                            block: Some((x, y, z)),
                            thread: t.map(|t| {
                                let t = t as u32;
                                (t % bx, (t / bx) % by, t / (bx * by))
                            }),
                            ptx_line: pos.map(|p| p.ptx_line),
                            source: pos.and_then(|p| program.module.source_line(p.loc)),
                            address: f.address,
                            message: f.message,
                        });
                    }
                    if let (Some(s), Some(rec)) = (stats.as_mut(), recorder) {
                        s.add_block(rec);
                    }
                }
            }
        }
        report.stats = stats;
        Ok(report)
    }
}

/// Replaces symbols by addresses: `mov` of a variable gives its address in its own space;
/// an address operand `[sym]` gives the address in the instruction's space.
fn resolve(
    op: &mut Op,
    globals: &HashMap<String, u64>,
    shared: &HashMap<String, u32>,
) -> Result<(), String> {
    let lookup = |name: &str, space: Space| -> Result<u64, String> {
        if let Some(&a) = globals.get(name) {
            return match space {
                Space::Shared => Err(format!("global variable {name} used as a shared address")),
                _ => Ok(a),
            };
        }
        if let Some(&o) = shared.get(name) {
            return match space {
                Space::Shared => Ok(u64::from(o)),
                Space::Generic => Ok(SHARED_WINDOW + u64::from(o)),
                _ => Err(format!("shared variable {name} used as a global address")),
            };
        }
        Err(format!("unknown symbol {name}"))
    };
    let fix = |a: &mut Addr, space: Space| -> Result<(), String> {
        if let AddrBase::Symbol(s) = &a.base {
            a.base = AddrBase::Abs(lookup(s, space)?);
        }
        Ok(())
    };
    match op {
        Op::MovSymbol { d, symbol } => {
            // The non-generic address: a shared variable's offset, a global's address.
            let v = if let Some(&o) = shared.get(symbol.as_str()) {
                u64::from(o)
            } else {
                lookup(symbol, Space::Global)?
            };
            *op = Op::Mov {
                d: *d,
                a: Src::I(v),
            };
        }
        Op::Ld { space, addr, .. } | Op::St { space, addr, .. } => fix(addr, *space)?,
        Op::CpAsync { dst, src, .. } => {
            fix(dst, Space::Shared)?;
            fix(src, Space::Global)?;
        }
        _ => {}
    }
    Ok(())
}
