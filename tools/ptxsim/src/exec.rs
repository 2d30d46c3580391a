//! Executing a kernel of a parsed module: device memory, the block loop, one thread at a
//! time between barriers, and the checks (bounds, alignment, shared-memory races, barrier
//! divergence, step limit).
//!
//! Address spaces: every device allocation (a launch's buffers and the module's `.global`
//! variables) gets its own window of 2³⁶ bytes at `(index + 1) · 2³⁶`, so a generic or
//! global address maps to its allocation with one shift and is checked against that
//! allocation's length. Shared memory is addressed by offset in `.shared` accesses and at
//! [`SHARED_WINDOW`] + offset in generic ones (`cvta.shared`). Address 0 and everything
//! outside the windows is invalid.

use std::collections::HashMap;

use super::inst::{
    Addr, AddrBase, Cmp, CmpTy, F32Op, F64Op, Inst, IntOp, Op, Space, Special, Src, UnOp,
};
use super::parse::{Kernel, Module};
use super::stats::{BlockRecorder, KernelStats};

/// log2 of the size of one allocation's address window.
const WINDOW_SHIFT: u32 = 36;
/// Generic address of shared offset 0.
pub const SHARED_WINDOW: u64 = 1 << 62;
/// Threads per warp.
pub const WARP: u32 = 32;

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

/// One device allocation.
#[derive(Debug, Clone)]
struct Alloc {
    name: String,
    data: Vec<u8>,
}

/// Device memory: allocations in separate address windows.
#[derive(Debug, Clone, Default)]
pub struct DeviceMemory {
    allocs: Vec<Alloc>,
}

impl DeviceMemory {
    /// Allocates `bytes` (named for error messages) and returns its device address.
    pub fn alloc(&mut self, name: &str, bytes: Vec<u8>) -> u64 {
        self.allocs.push(Alloc {
            name: name.to_string(),
            data: bytes,
        });
        (self.allocs.len() as u64) << WINDOW_SHIFT
    }

    /// Allocates and fills from `values` (little-endian, as on the GPU).
    pub fn alloc_f32(&mut self, name: &str, values: &[f32]) -> u64 {
        self.alloc(name, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Allocates and fills from `values`.
    pub fn alloc_u32(&mut self, name: &str, values: &[u32]) -> u64 {
        self.alloc(name, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// The allocation at `addr` and the byte offset into it, if `addr..addr+len` lies
    /// inside one allocation.
    fn locate(&self, addr: u64, len: u64) -> Option<(usize, usize)> {
        let window = (addr >> WINDOW_SHIFT) as usize;
        let a = self.allocs.get(window.checked_sub(1)?)?;
        let off = addr & ((1 << WINDOW_SHIFT) - 1);
        (off + len <= a.data.len() as u64).then_some((window - 1, off as usize))
    }

    /// Bytes `addr..addr+len`.
    pub fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (i, off) = self.locate(addr, len as u64)?;
        Some(&self.allocs[i].data[off..off + len])
    }

    /// `n` f32 values at `addr`.
    pub fn read_f32(&self, addr: u64, n: usize) -> Option<Vec<f32>> {
        let b = self.read(addr, 4 * n)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// The name and size of the allocation whose window holds `addr`, for messages.
    fn describe(&self, addr: u64) -> String {
        let window = (addr >> WINDOW_SHIFT) as usize;
        match window.checked_sub(1).and_then(|w| self.allocs.get(w)) {
            Some(a) => format!(
                "byte offset {} of `{}` ({} bytes)",
                addr & ((1 << WINDOW_SHIFT) - 1),
                a.name,
                a.data.len()
            ),
            None => "no allocation".into(),
        }
    }

    fn load(&self, addr: u64, size: u8) -> Result<u64, String> {
        match self.locate(addr, u64::from(size)) {
            Some((i, off)) => Ok(read_le(&self.allocs[i].data[off..off + size as usize])),
            None => Err(format!(
                "out-of-bounds global read of {size} bytes: {}",
                self.describe(addr)
            )),
        }
    }

    fn store(&mut self, addr: u64, size: u8, v: u64) -> Result<(), String> {
        match self.locate(addr, u64::from(size)) {
            Some((i, off)) => {
                write_le(&mut self.allocs[i].data[off..off + size as usize], v);
                Ok(())
            }
            None => Err(format!(
                "out-of-bounds global write of {size} bytes: {}",
                self.describe(addr)
            )),
        }
    }
}

fn read_le(b: &[u8]) -> u64 {
    match b.len() {
        4 => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        8 => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        _ => b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x)),
    }
}

fn write_le(b: &mut [u8], v: u64) {
    let bytes = v.to_le_bytes();
    let n = b.len();
    b.copy_from_slice(&bytes[..n]);
}

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

struct BlockCtx<'a> {
    ctaid: [u32; 3],
    nctaid: [u32; 3],
    ntid: [u32; 3],
    params: &'a [u8],
}

/// A fault inside a block: the thread (linear index) and instruction, if known.
struct Fault {
    thread: Option<usize>,
    pc: u32,
    address: Option<u64>,
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Ready,
    AtBarrier,
    Exited,
}

/// Last accesses of one 4-byte shared word in the current barrier interval.
#[derive(Clone, Copy, Default)]
struct Shadow {
    /// Writer thread + 1 (0: none) and the interval of that write.
    writer: u32,
    w_epoch: u32,
    /// Reader thread + 1 and the interval; `multi` if several threads read.
    reader: u32,
    r_epoch: u32,
    multi: bool,
}

/// A pending `cp.async`: shared destination, global source, size, issuing pc, group.
#[derive(Clone, Copy)]
struct PendingCopy {
    dst: u64,
    src: u64,
    size: u8,
    pc: u32,
    group: u32,
}

struct BlockState {
    nregs: usize,
    threads: usize,
    regs: Vec<u64>,
    pcs: Vec<u32>,
    status: Vec<Status>,
    steps: Vec<u64>,
    steps_total: u64,
    max_steps: u64,
    shared: Vec<u8>,
    shadow: Vec<Shadow>,
    epoch: u32,
    copies: Vec<Vec<PendingCopy>>,
    groups: Vec<u32>,
}

impl BlockState {
    fn new(k: &Kernel, threads: usize, shared: usize, opts: &SimOptions) -> Self {
        let nregs = k.registers as usize + 1;
        BlockState {
            nregs,
            threads,
            regs: vec![0; nregs * threads],
            pcs: vec![0; threads],
            status: vec![Status::Ready; threads],
            steps: vec![0; threads],
            steps_total: 0,
            max_steps: opts.max_steps_per_thread,
            shared: vec![0; shared],
            shadow: vec![Shadow::default(); shared.div_ceil(4)],
            epoch: 1,
            copies: vec![Vec::new(); threads],
            groups: vec![0; threads],
        }
    }

    fn reset(&mut self) {
        self.regs.fill(0);
        self.pcs.fill(0);
        self.status.fill(Status::Ready);
        self.steps.fill(0);
        self.steps_total = 0;
        // Shared memory starts as 0xFF bytes (NaN as floats), so a read before any write
        // shows up in the results instead of reading a plausible zero.
        self.shared.fill(0xff);
        self.shadow.fill(Shadow::default());
        self.epoch = 1;
        for c in &mut self.copies {
            c.clear();
        }
        self.groups.fill(0);
    }

    fn run(
        &mut self,
        k: &Kernel,
        ctx: &BlockCtx,
        mem: &mut DeviceMemory,
        mut rec: Option<&mut BlockRecorder>,
    ) -> Result<(), Fault> {
        loop {
            for t in 0..self.threads {
                if self.status[t] == Status::Ready {
                    self.run_thread(k, ctx, mem, t, rec.as_deref_mut())?;
                }
            }
            let waiting: Vec<usize> = (0..self.threads)
                .filter(|&t| self.status[t] == Status::AtBarrier)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if let Some(exited) = (0..self.threads).find(|&t| self.status[t] == Status::Exited) {
                let w = waiting[0];
                return Err(Fault {
                    thread: Some(w),
                    pc: self.pcs[w],
                    address: None,
                    message: format!(
                        "barrier divergence: thread {w} (linear) waits at bar.sync while \
                         thread {exited} has exited (PTX line {} was its last instruction)",
                        k.pos[self.pcs[exited] as usize].ptx_line
                    ),
                });
            }
            let pc0 = self.pcs[waiting[0]];
            if let Some(&other) = waiting.iter().find(|&&t| self.pcs[t] != pc0) {
                return Err(Fault {
                    thread: Some(other),
                    pc: self.pcs[other],
                    address: None,
                    message: format!(
                        "barrier divergence: threads wait at different bar.sync instructions \
                         (thread {} at PTX line {}, thread {other} here)",
                        waiting[0], k.pos[pc0 as usize].ptx_line
                    ),
                });
            }
            self.epoch += 1;
            for &t in &waiting {
                self.status[t] = Status::Ready;
                self.pcs[t] += 1;
            }
        }
    }

    fn fault(&self, t: usize, pc: u32, address: Option<u64>, message: String) -> Fault {
        Fault {
            thread: Some(t),
            pc,
            address,
            message,
        }
    }

    /// Shared-memory access check: bounds, then the race detector on each 4-byte word.
    fn shared_check(
        &mut self,
        t: usize,
        pc: u32,
        off: u64,
        size: u8,
        write: bool,
    ) -> Result<usize, Fault> {
        let end = off.checked_add(u64::from(size));
        if end.is_none_or(|e| e > self.shared.len() as u64) {
            return Err(self.fault(
                t,
                pc,
                Some(off),
                format!(
                    "out-of-bounds shared {} of {size} bytes at offset {off} (block has {} bytes)",
                    if write { "write" } else { "read" },
                    self.shared.len()
                ),
            ));
        }
        let me = t as u32 + 1;
        let e = self.epoch;
        for word in (off / 4)..(off + u64::from(size)).div_ceil(4) {
            let s = &mut self.shadow[word as usize];
            let racer = if write {
                if s.w_epoch == e && s.writer != me {
                    Some(("write after write", s.writer))
                } else if s.r_epoch == e && (s.multi || s.reader != me) {
                    Some((
                        "write after read",
                        if s.reader != me { s.reader } else { 0 },
                    ))
                } else {
                    s.writer = me;
                    s.w_epoch = e;
                    None
                }
            } else if s.w_epoch == e && s.writer != me {
                Some(("read after write", s.writer))
            } else {
                if s.r_epoch == e && s.reader != me {
                    s.multi = true;
                } else if s.r_epoch != e {
                    s.reader = me;
                    s.r_epoch = e;
                    s.multi = false;
                }
                None
            };
            if let Some((kind, other)) = racer {
                let who = if other > 0 {
                    format!("thread {} (linear)", other - 1)
                } else {
                    "another thread".into()
                };
                return Err(self.fault(
                    t,
                    pc,
                    Some(word * 4),
                    format!(
                        "shared-memory race ({kind}) with {who} in the same barrier interval, \
                         shared offset {}",
                        word * 4
                    ),
                ));
            }
        }
        Ok(off as usize)
    }

    /// Performs thread `t`'s pending copies of every group but the newest `keep`.
    fn complete_copies(&mut self, t: usize, keep: u32, mem: &DeviceMemory) -> Result<(), Fault> {
        let limit = self.groups[t].saturating_sub(keep);
        let pending = std::mem::take(&mut self.copies[t]);
        let mut rest = Vec::new();
        for c in pending {
            if c.group < limit {
                let bytes = mem
                    .read(c.src, c.size as usize)
                    .ok_or_else(|| {
                        self.fault(
                            t,
                            c.pc,
                            Some(c.src),
                            format!(
                                "out-of-bounds global read of {} bytes by cp.async: {}",
                                c.size,
                                mem.describe(c.src)
                            ),
                        )
                    })?
                    .to_vec();
                let off = self.shared_check(t, c.pc, c.dst, c.size, true)?;
                self.shared[off..off + c.size as usize].copy_from_slice(&bytes);
            } else {
                rest.push(c);
            }
        }
        self.copies[t] = rest;
        Ok(())
    }

    #[allow(clippy::too_many_lines)]
    fn run_thread(
        &mut self,
        k: &Kernel,
        ctx: &BlockCtx,
        mem: &mut DeviceMemory,
        t: usize,
        mut rec: Option<&mut BlockRecorder>,
    ) -> Result<(), Fault> {
        let n = self.nregs;
        let mut pc = self.pcs[t] as usize;
        let tid = [
            t as u32 % ctx.ntid[0],
            (t as u32 / ctx.ntid[0]) % ctx.ntid[1],
            t as u32 / (ctx.ntid[0] * ctx.ntid[1]),
        ];
        let budget = self.max_steps.saturating_sub(self.steps[t]);
        let mut steps = 0u64;
        let insts: &[Inst] = &k.insts;
        // The register file is taken out of the block state while the thread runs, so the
        // thread's registers and the rest of the state can be borrowed apart.
        let mut all = std::mem::take(&mut self.regs);
        let r = &mut all[t * n..(t + 1) * n];
        macro_rules! v {
            ($s:expr) => {
                match $s {
                    Src::R(i) => r[i as usize],
                    Src::I(x) => x,
                }
            };
        }
        let result = loop {
            if steps >= budget {
                break Err(self.fault(
                    t,
                    pc as u32,
                    None,
                    format!(
                        "step limit: the thread executed {} instructions without finishing \
                         (a launch that never ends?)",
                        self.max_steps
                    ),
                ));
            }
            steps += 1;
            let inst = &insts[pc];
            if let Some(rec) = rec.as_deref_mut() {
                rec.executed(t, pc);
            }
            if let Some((p, neg)) = inst.guard
                && (r[p as usize] != 0) == neg
            {
                pc += 1;
                continue;
            }
            match &inst.op {
                Op::Mov { d, a } => r[*d as usize] = v!(*a),
                Op::MovSpecial { d, s } => {
                    r[*d as usize] = u64::from(match *s {
                        Special::Tid(i) => tid[i as usize],
                        Special::Ntid(i) => ctx.ntid[i as usize],
                        Special::Ctaid(i) => ctx.ctaid[i as usize],
                        Special::Nctaid(i) => ctx.nctaid[i as usize],
                        Special::Lane => t as u32 % WARP,
                        Special::Warp => t as u32 / WARP,
                    })
                }
                Op::MovSymbol { .. } => unreachable!("symbols are resolved at load"),
                Op::Pack { d, lo, hi } => {
                    r[*d as usize] = (v!(*lo) & 0xffff_ffff) | (v!(*hi) << 32)
                }
                Op::Unpack { lo, hi, a } => {
                    let x = v!(*a);
                    r[*lo as usize] = x & 0xffff_ffff;
                    r[*hi as usize] = x >> 32;
                }
                Op::Int { op, w64, d, a, b } => {
                    let (a, b) = (v!(*a), v!(*b));
                    let res = if *w64 {
                        int64(*op, a, b)
                    } else {
                        int32(*op, a as u32, b as u32)
                    };
                    match res {
                        Some(x) => r[*d as usize] = x,
                        None => {
                            break Err(self.fault(
                                t,
                                pc as u32,
                                None,
                                "integer division by zero".into(),
                            ));
                        }
                    }
                }
                Op::Int16 { op, d, a, b } => {
                    let (a, b) = (v!(*a), v!(*b));
                    // Signed operations see the sign-extended 16-bit values.
                    let signed = matches!(
                        op,
                        IntOp::ShrS | IntOp::MinS | IntOp::MaxS | IntOp::DivS | IntOp::RemS
                    );
                    let ext = |x: u64| {
                        if signed {
                            x as u16 as i16 as i32 as u32
                        } else {
                            u32::from(x as u16)
                        }
                    };
                    let b32 = if matches!(op, IntOp::Shl | IntOp::ShrU | IntOp::ShrS) {
                        b as u32
                    } else {
                        ext(b)
                    };
                    let shifted_out = matches!(op, IntOp::Shl | IntOp::ShrU) && b32 >= 16;
                    match int32(*op, ext(a), b32) {
                        Some(_) if shifted_out => r[*d as usize] = 0,
                        Some(x) => r[*d as usize] = x & 0xffff,
                        None => {
                            break Err(self.fault(
                                t,
                                pc as u32,
                                None,
                                "integer division by zero".into(),
                            ));
                        }
                    }
                }
                Op::Bfe {
                    signed,
                    w64,
                    d,
                    a,
                    b,
                    c,
                } => {
                    let width = if *w64 { 64 } else { 32 };
                    let x = if *w64 { v!(*a) } else { v!(*a) & 0xffff_ffff };
                    let pos = (v!(*b) & 0xff) as u32;
                    let len = (v!(*c) & 0xff) as u32;
                    let msb = if len == 0 {
                        0
                    } else {
                        (pos + len - 1).min(width - 1)
                    };
                    let sbit = *signed && len != 0 && pos < width && (x >> msb) & 1 == 1;
                    let mut out = 0u64;
                    for i in 0..width {
                        let bit = if i < len && pos + i <= msb && pos + i < width {
                            (x >> (pos + i)) & 1 == 1
                        } else {
                            sbit
                        };
                        out |= u64::from(bit) << i;
                    }
                    r[*d as usize] = out;
                }
                Op::IntUn { op, w64, d, a } => {
                    let a = v!(*a);
                    r[*d as usize] = match (op, w64) {
                        (UnOp::NotPred, _) => a ^ 1,
                        (UnOp::Not, true) => !a,
                        (UnOp::Not, false) => u64::from(!(a as u32)),
                        (UnOp::Neg, true) => a.wrapping_neg(),
                        (UnOp::Neg, false) => u64::from((a as u32).wrapping_neg()),
                        (UnOp::Abs, true) => (a as i64).wrapping_abs() as u64,
                        (UnOp::Abs, false) => u64::from((a as i32).wrapping_abs() as u32),
                    };
                }
                Op::MulWide { signed, d, a, b } => {
                    let (a, b) = (v!(*a), v!(*b));
                    r[*d as usize] = if *signed {
                        (i64::from(a as u32 as i32) * i64::from(b as u32 as i32)) as u64
                    } else {
                        (a & 0xffff_ffff) * (b & 0xffff_ffff)
                    };
                }
                Op::MadLo { w64, d, a, b, c } => {
                    let (a, b, c) = (v!(*a), v!(*b), v!(*c));
                    r[*d as usize] = if *w64 {
                        a.wrapping_mul(b).wrapping_add(c)
                    } else {
                        u64::from((a as u32).wrapping_mul(b as u32).wrapping_add(c as u32))
                    };
                }
                Op::MadWide { signed, d, a, b, c } => {
                    let (a, b, c) = (v!(*a), v!(*b), v!(*c));
                    let p = if *signed {
                        (i64::from(a as u32 as i32) * i64::from(b as u32 as i32)) as u64
                    } else {
                        (a & 0xffff_ffff) * (b & 0xffff_ffff)
                    };
                    r[*d as usize] = p.wrapping_add(c);
                }
                Op::Shf {
                    left,
                    wrap,
                    d,
                    a,
                    b,
                    c,
                } => {
                    let (a, b, c) = (v!(*a) as u32, v!(*b) as u32, v!(*c) as u32);
                    let n = if *wrap { c & 31 } else { c.min(32) };
                    let both = (u64::from(b) << 32) | u64::from(a);
                    r[*d as usize] = u64::from(if *left {
                        ((both << n) >> 32) as u32
                    } else {
                        (both >> n) as u32
                    });
                }
                Op::F32 { op, d, a, b } => {
                    let x = f32::from_bits(v!(*a) as u32);
                    let y = f32::from_bits(v!(*b) as u32);
                    let z = match op {
                        F32Op::Add => x + y,
                        F32Op::Sub => x - y,
                        F32Op::Mul => x * y,
                        F32Op::Div => x / y,
                        F32Op::Min => x.min(y),
                        F32Op::Max => x.max(y),
                        F32Op::Neg => -x,
                        F32Op::Abs => x.abs(),
                        F32Op::Sqrt => x.sqrt(),
                        F32Op::Rcp => 1.0 / x,
                    };
                    r[*d as usize] = u64::from(z.to_bits());
                }
                Op::F64 { op, d, a, b } => {
                    let x = f64::from_bits(v!(*a));
                    let y = f64::from_bits(v!(*b));
                    let z = match op {
                        F64Op::Add => x + y,
                        F64Op::Sub => x - y,
                        F64Op::Mul => x * y,
                        F64Op::Div => x / y,
                        F64Op::Min => x.min(y),
                        F64Op::Max => x.max(y),
                        F64Op::Neg => -x,
                        F64Op::Abs => x.abs(),
                        F64Op::Sqrt => x.sqrt(),
                        F64Op::Rcp => 1.0 / x,
                    };
                    r[*d as usize] = z.to_bits();
                }
                Op::Fma32 { d, a, b, c } => {
                    let (x, y, z) = (
                        f32::from_bits(v!(*a) as u32),
                        f32::from_bits(v!(*b) as u32),
                        f32::from_bits(v!(*c) as u32),
                    );
                    r[*d as usize] = u64::from(x.mul_add(y, z).to_bits());
                }
                Op::Fma64 { d, a, b, c } => {
                    let (x, y, z) = (
                        f64::from_bits(v!(*a)),
                        f64::from_bits(v!(*b)),
                        f64::from_bits(v!(*c)),
                    );
                    r[*d as usize] = x.mul_add(y, z).to_bits();
                }
                Op::Setp { cmp, ty, d, a, b } => {
                    r[*d as usize] = u64::from(compare(*cmp, *ty, v!(*a), v!(*b)));
                }
                Op::Selp { d, a, b, p } => {
                    r[*d as usize] = if r[*p as usize] != 0 { v!(*a) } else { v!(*b) };
                }
                Op::Cvt { cvt, d, a } => r[*d as usize] = cvt.apply(v!(*a)),
                Op::Cvta { to, space, d, a } => {
                    let x = v!(*a);
                    r[*d as usize] = match (space, to) {
                        (Space::Shared, false) => x.wrapping_add(SHARED_WINDOW),
                        (Space::Shared, true) => x.wrapping_sub(SHARED_WINDOW),
                        // Global addresses are generic addresses.
                        _ => x,
                    };
                }
                Op::Ld {
                    space,
                    size,
                    vec,
                    sign,
                    d,
                    addr,
                } => {
                    let base = match addr.base {
                        AddrBase::Reg(b) => r[b as usize],
                        AddrBase::Abs(a) => a,
                        AddrBase::Param(o) => u64::from(o),
                        AddrBase::Symbol(_) => unreachable!("resolved at load"),
                    };
                    let a0 = base.wrapping_add(addr.off as u64);
                    let total = u64::from(*size) * u64::from(*vec);
                    if a0 % total != 0 && *space != Space::Param {
                        break Err(self.fault(
                            t,
                            pc as u32,
                            Some(a0),
                            format!("misaligned {total}-byte load"),
                        ));
                    }
                    let (sp, a) = classify(*space, a0);
                    if let Some(rec) = rec.as_deref_mut()
                        && sp != Space::Param
                    {
                        rec.access(t, pc, sp, a, total as u8, false);
                    }
                    for (e, &dst) in d.iter().take(*vec as usize).enumerate() {
                        let ea = a + (e as u64) * u64::from(*size);
                        let x = match sp {
                            Space::Param => {
                                let o = ea as usize;
                                match ctx.params.get(o..o + *size as usize) {
                                    Some(b) => read_le(b),
                                    None => {
                                        return self.stop(
                                            t,
                                            pc,
                                            all,
                                            steps,
                                            Err(self.fault(
                                                t,
                                                pc as u32,
                                                Some(ea),
                                                "parameter read beyond the declared parameters"
                                                    .into(),
                                            )),
                                        );
                                    }
                                }
                            }
                            Space::Shared => {
                                match self.shared_check(t, pc as u32, ea, *size, false) {
                                    Ok(o) => read_le(&self.shared[o..o + *size as usize]),
                                    Err(f) => return self.stop(t, pc, all, steps, Err(f)),
                                }
                            }
                            _ => match mem.load(ea, *size) {
                                Ok(x) => x,
                                Err(m) => {
                                    return self.stop(
                                        t,
                                        pc,
                                        all,
                                        steps,
                                        Err(self.fault(t, pc as u32, Some(ea), m)),
                                    );
                                }
                            },
                        };
                        let x = if *sign && *size < 8 {
                            let sh = 64 - 8 * u32::from(*size);
                            (((x << sh) as i64) >> sh) as u64
                        } else {
                            x
                        };
                        if dst != u32::MAX {
                            r[dst as usize] = x;
                        }
                    }
                }
                Op::St {
                    space,
                    size,
                    vec,
                    s,
                    addr,
                } => {
                    let base = match addr.base {
                        AddrBase::Reg(b) => r[b as usize],
                        AddrBase::Abs(a) => a,
                        AddrBase::Param(o) => u64::from(o),
                        AddrBase::Symbol(_) => unreachable!("resolved at load"),
                    };
                    let a0 = base.wrapping_add(addr.off as u64);
                    let total = u64::from(*size) * u64::from(*vec);
                    if a0 % total != 0 {
                        break Err(self.fault(
                            t,
                            pc as u32,
                            Some(a0),
                            format!("misaligned {total}-byte store"),
                        ));
                    }
                    let (sp, a) = classify(*space, a0);
                    if let Some(rec) = rec.as_deref_mut() {
                        rec.access(t, pc, sp, a, total as u8, true);
                    }
                    for (e, &src) in s.iter().take(*vec as usize).enumerate() {
                        let ea = a + (e as u64) * u64::from(*size);
                        let x = v!(src);
                        let res = match sp {
                            Space::Param => Err(self.fault(
                                t,
                                pc as u32,
                                Some(ea),
                                "store to kernel parameters".into(),
                            )),
                            Space::Shared => {
                                self.shared_check(t, pc as u32, ea, *size, true).map(|o| {
                                    write_le(&mut self.shared[o..o + *size as usize], x);
                                })
                            }
                            _ => mem
                                .store(ea, *size, x)
                                .map_err(|m| self.fault(t, pc as u32, Some(ea), m)),
                        };
                        if let Err(f) = res {
                            return self.stop(t, pc, all, steps, Err(f));
                        }
                    }
                }
                Op::CpAsync { dst, src, size } => {
                    let base = |a: &Addr| {
                        match a.base {
                            AddrBase::Reg(b) => r[b as usize],
                            AddrBase::Abs(x) => x,
                            _ => 0,
                        }
                        .wrapping_add(a.off as u64)
                    };
                    let (d0, s0) = (base(dst), base(src));
                    if d0 % u64::from(*size) != 0 || s0 % u64::from(*size) != 0 {
                        break Err(self.fault(
                            t,
                            pc as u32,
                            Some(s0),
                            format!("misaligned {size}-byte cp.async"),
                        ));
                    }
                    if let Some(rec) = rec.as_deref_mut() {
                        rec.access(t, pc, Space::Global, s0, *size, false);
                    }
                    let group = self.groups[t];
                    self.copies[t].push(PendingCopy {
                        dst: d0,
                        src: s0,
                        size: *size,
                        pc: pc as u32,
                        group,
                    });
                }
                Op::CpAsyncCommit => self.groups[t] += 1,
                Op::CpAsyncWait { n } => {
                    if let Err(f) = self.complete_copies(t, *n, mem) {
                        return self.stop(t, pc, all, steps, Err(f));
                    }
                }
                Op::Bra { target } => {
                    pc = *target as usize;
                    continue;
                }
                Op::BrxIdx { idx, table } => {
                    let i = v!(*idx) as usize;
                    match k.tables[*table as usize].get(i) {
                        Some(&target) => {
                            pc = target as usize;
                            continue;
                        }
                        None => {
                            break Err(self.fault(
                                t,
                                pc as u32,
                                None,
                                format!(
                                    "brx.idx index {i} beyond its {} targets",
                                    k.tables[*table as usize].len()
                                ),
                            ));
                        }
                    }
                }
                Op::Bar => {
                    self.status[t] = Status::AtBarrier;
                    break Ok(());
                }
                Op::Exit => {
                    // Copies still in flight complete before the thread's results are final.
                    let g = self.groups[t];
                    self.groups[t] = g + 1;
                    if let Err(f) = self.complete_copies(t, 0, mem) {
                        break Err(f);
                    }
                    self.status[t] = Status::Exited;
                    break Ok(());
                }
                Op::Trap => {
                    break Err(self.fault(t, pc as u32, None, "trap executed".into()));
                }
            }
            pc += 1;
        };
        self.stop(t, pc, all, steps, result)
    }

    fn stop(
        &mut self,
        t: usize,
        pc: usize,
        regs: Vec<u64>,
        steps: u64,
        result: Result<(), Fault>,
    ) -> Result<(), Fault> {
        self.regs = regs;
        self.pcs[t] = pc as u32;
        self.steps[t] += steps;
        self.steps_total += steps;
        result
    }
}

/// The space an access really goes to, and the address within it: generic addresses in
/// the shared window become shared offsets.
fn classify(space: Space, a: u64) -> (Space, u64) {
    match space {
        Space::Generic if (SHARED_WINDOW..SHARED_WINDOW + (1 << 32)).contains(&a) => {
            (Space::Shared, a - SHARED_WINDOW)
        }
        Space::Generic => (Space::Global, a),
        s => (s, a),
    }
}

fn int32(op: IntOp, a: u32, b: u32) -> Option<u64> {
    let (sa, sb) = (a as i32, b as i32);
    Some(u64::from(match op {
        IntOp::Add => a.wrapping_add(b),
        IntOp::Sub => a.wrapping_sub(b),
        IntOp::MulLo => a.wrapping_mul(b),
        IntOp::MulHiU => ((u64::from(a) * u64::from(b)) >> 32) as u32,
        IntOp::MulHiS => ((i64::from(sa) * i64::from(sb)) >> 32) as u32,
        IntOp::And => a & b,
        IntOp::Or => a | b,
        IntOp::Xor => a ^ b,
        // PTX clamps shift amounts: shifting by the width or more gives 0 (or the sign).
        IntOp::Shl => a.checked_shl(b).unwrap_or(0),
        IntOp::ShrU => a.checked_shr(b).unwrap_or(0),
        IntOp::ShrS => (sa >> b.min(31)) as u32,
        IntOp::MinU => a.min(b),
        IntOp::MinS => sa.min(sb) as u32,
        IntOp::MaxU => a.max(b),
        IntOp::MaxS => sa.max(sb) as u32,
        IntOp::DivU => a.checked_div(b)?,
        IntOp::DivS => sa
            .checked_div(sb)
            .or(if sb == -1 { Some(sa) } else { None })? as u32,
        IntOp::RemU => a.checked_rem(b)?,
        IntOp::RemS => sa
            .checked_rem(sb)
            .or(if sb == -1 { Some(0) } else { None })? as u32,
    }))
}

fn int64(op: IntOp, a: u64, b: u64) -> Option<u64> {
    let (sa, sb) = (a as i64, b as i64);
    Some(match op {
        IntOp::Add => a.wrapping_add(b),
        IntOp::Sub => a.wrapping_sub(b),
        IntOp::MulLo => a.wrapping_mul(b),
        IntOp::MulHiU => ((u128::from(a) * u128::from(b)) >> 64) as u64,
        IntOp::MulHiS => ((i128::from(sa) * i128::from(sb)) >> 64) as u64,
        IntOp::And => a & b,
        IntOp::Or => a | b,
        IntOp::Xor => a ^ b,
        IntOp::Shl => a.checked_shl(b as u32).filter(|_| b < 64).unwrap_or(0),
        IntOp::ShrU => a.checked_shr(b as u32).filter(|_| b < 64).unwrap_or(0),
        IntOp::ShrS => (sa >> b.min(63)) as u64,
        IntOp::MinU => a.min(b),
        IntOp::MinS => sa.min(sb) as u64,
        IntOp::MaxU => a.max(b),
        IntOp::MaxS => sa.max(sb) as u64,
        IntOp::DivU => a.checked_div(b)?,
        IntOp::DivS => sa
            .checked_div(sb)
            .or(if sb == -1 { Some(sa) } else { None })? as u64,
        IntOp::RemU => a.checked_rem(b)?,
        IntOp::RemS => sa
            .checked_rem(sb)
            .or(if sb == -1 { Some(0) } else { None })? as u64,
    })
}

fn compare(cmp: Cmp, ty: CmpTy, a: u64, b: u64) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match ty {
        CmpTy::B32 | CmpTy::U32 => Some((a as u32).cmp(&(b as u32))),
        CmpTy::B64 | CmpTy::U64 => Some(a.cmp(&b)),
        CmpTy::S32 => Some((a as u32 as i32).cmp(&(b as u32 as i32))),
        CmpTy::S64 => Some((a as i64).cmp(&(b as i64))),
        CmpTy::F32 => f32::from_bits(a as u32).partial_cmp(&f32::from_bits(b as u32)),
        CmpTy::F64 => f64::from_bits(a).partial_cmp(&f64::from_bits(b)),
    };
    match (cmp, ord) {
        (Cmp::Num, o) => o.is_some(),
        (Cmp::Nan, o) => o.is_none(),
        // Ordered comparisons are false on NaN; the `u` forms are true.
        (Cmp::Equ | Cmp::Neu | Cmp::Ltu | Cmp::Leu | Cmp::Gtu | Cmp::Geu, None) => true,
        (_, None) => false,
        (c, Some(o)) => match c {
            Cmp::Eq | Cmp::Equ => o == Ordering::Equal,
            Cmp::Ne | Cmp::Neu => o != Ordering::Equal,
            Cmp::Lt | Cmp::Lo | Cmp::Ltu => o == Ordering::Less,
            Cmp::Le | Cmp::Ls | Cmp::Leu => o != Ordering::Greater,
            Cmp::Gt | Cmp::Hi | Cmp::Gtu => o == Ordering::Greater,
            Cmp::Ge | Cmp::Hs | Cmp::Geu => o != Ordering::Less,
            Cmp::Num | Cmp::Nan => unreachable!(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_module;

    /// A module with one kernel `k(u64 out, u32 n)` whose body is `body`.
    fn module(body: &str) -> Simulator {
        let ptx = format!(
            ".version 7.0\n.target sm_70\n.address_size 64\n\
             .extern .shared .align 4 .b8 smem[];\n\
             .visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u32 k_param_1\n)\n{{\n\
             \t.reg .pred %p<4>;\n\t.reg .b32 %r<16>;\n\t.reg .b64 %rd<8>;\n\
             \t.loc 1 7 0\n\
             \tld.param.u64 %rd1, [k_param_0];\n\tld.param.u32 %r1, [k_param_1];\n\
             \tmov.u32 %r2, %tid.x;\n\tmul.wide.u32 %rd2, %r2, 4;\n\tadd.s64 %rd3, %rd1, %rd2;\n\
             {body}\n\tret;\n}}\n\t.file 1 \"/w/kernels-gpu/src/t.rs\"\n"
        );
        Simulator::new(parse_module(&ptx).unwrap()).unwrap()
    }

    #[allow(clippy::result_large_err)]
    fn run(sim: &mut Simulator, threads: u32, shared: u32, n: u32) -> Result<Vec<u32>, SimError> {
        let out = sim.memory.alloc("out", vec![0; 4 * threads as usize]);
        let mut params = out.to_le_bytes().to_vec();
        params.extend_from_slice(&n.to_le_bytes());
        params.extend_from_slice(&[0; 4]);
        let g = Geometry {
            grid: (1, 1, 1),
            block: (threads, 1, 1),
            shared_bytes: shared,
        };
        let opts = SimOptions {
            max_steps_per_thread: 10_000,
            stats: false,
        };
        sim.launch("k", g, &params[..12], &opts)?;
        let b = sim.memory.read(out, 4 * threads as usize).unwrap();
        Ok(b.chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    #[test]
    fn float_arithmetic_rounds_like_ieee_and_fma_is_fused() {
        // a = 1 + 2^-23, a·a - (1 + 2^-22) is 2^-46 only if the product is not rounded.
        let mut sim = module(
            "\tmov.b32 %r3, 0f34000000;\n\tadd.rn.f32 %r4, %r3, 0f3F800000;\n\
             \tmul.rn.f32 %r5, %r4, %r4;\n\tfma.rn.f32 %r6, %r4, %r4, 0fBF800002;\n\
             \tsetp.eq.u32 %p1, %r2, 0;\n\tselp.b32 %r7, %r6, %r5, %p1;\n\
             \tst.global.u32 [%rd3], %r7;",
        );
        let out = run(&mut sim, 2, 0, 0).unwrap();
        let a = 1.0f32 + f32::EPSILON;
        assert_eq!(
            f32::from_bits(out[0]),
            a.mul_add(a, -(1.0 + 2.0 * f32::EPSILON))
        );
        assert_eq!(f32::from_bits(out[0]), 2.0f32.powi(-46));
        assert_eq!(f32::from_bits(out[1]), a * a);
    }

    #[test]
    fn conversions_saturate_and_round_as_ptx_says() {
        let mut sim = module(
            "\tcvt.rzi.s32.f32 %r3, 0f4F800000;\n\tcvt.rni.s32.f32 %r4, 0f40200000;\n\
             \tcvt.rmi.s32.f32 %r5, 0fBFC00000;\n\tcvt.rzi.u32.f32 %r6, 0f7FC00000;\n\
             \tsetp.eq.u32 %p1, %r2, 0;\n\tsetp.eq.u32 %p2, %r2, 1;\n\tsetp.eq.u32 %p3, %r2, 2;\n\
             \tselp.b32 %r7, %r3, %r6, %p1;\n\tselp.b32 %r7, %r4, %r7, %p2;\n\tselp.b32 %r7, %r5, %r7, %p3;\n\
             \tst.global.u32 [%rd3], %r7;",
        );
        let out = run(&mut sim, 4, 0, 0).unwrap();
        // 2^32 saturates to i32::MAX; 2.5 rounds to even 2; floor(-1.5) = -2; NaN gives 0.
        assert_eq!(out, [i32::MAX as u32, 2, (-2i32) as u32, 0]);
    }

    #[test]
    fn out_of_bounds_global_store_names_thread_line_source_and_buffer() {
        let mut sim = module("\tst.global.u32 [%rd3+4], %r2;");
        let e = run(&mut sim, 4, 0, 0).unwrap_err();
        assert_eq!(e.thread, Some((3, 0, 0)));
        assert_eq!(e.address.map(|a| a & 0xfff), Some(16));
        let text = e.to_string();
        assert!(
            text.contains("out-of-bounds global write") && text.contains("`out` (16 bytes)"),
            "{text}"
        );
        assert!(
            text.contains("PTX line 19") && text.contains("kernels-gpu/src/t.rs:7"),
            "{text}"
        );
    }

    #[test]
    fn shared_races_need_a_barrier_between_write_and_read() {
        // Each thread writes its word, then reads its neighbour's.
        let body = |barrier: &str| {
            format!(
                "\tmul.wide.u32 %rd4, %r2, 4;\n\tst.shared.u32 [%rd4], %r2;\n{barrier}\
                 \tadd.s32 %r3, %r2, 1;\n\trem.u32 %r3, %r3, %r1;\n\tmul.wide.u32 %rd5, %r3, 4;\n\
                 \tld.shared.u32 %r4, [%rd5];\n\tst.global.u32 [%rd3], %r4;"
            )
        };
        let mut sim = module(&body("\tbar.sync 0;\n"));
        assert_eq!(run(&mut sim, 4, 16, 4).unwrap(), [1, 2, 3, 0]);
        let mut sim = module(&body(""));
        let e = run(&mut sim, 4, 16, 4).unwrap_err().to_string();
        assert!(e.contains("shared-memory race"), "{e}");
        // Three threads' words do not fit 8 bytes of shared memory.
        let mut sim = module(&body("\tbar.sync 0;\n"));
        let e = run(&mut sim, 4, 8, 4).unwrap_err().to_string();
        assert!(
            e.contains("out-of-bounds shared write of 4 bytes at offset 8"),
            "{e}"
        );
    }

    #[test]
    fn divergent_barriers_and_endless_loops_are_reported() {
        let mut sim = module(
            "\tsetp.eq.u32 %p1, %r2, 0;\n\t@%p1 bra $L_skip;\n\tbar.sync 0;\n$L_skip:\n\
             \tst.global.u32 [%rd3], %r2;",
        );
        let e = run(&mut sim, 4, 0, 0).unwrap_err().to_string();
        assert!(
            e.contains("barrier divergence") && e.contains("exited"),
            "{e}"
        );
        let mut sim = module("$L_loop:\n\tbra.uni $L_loop;");
        let e = run(&mut sim, 1, 0, 0).unwrap_err().to_string();
        assert!(e.contains("step limit"), "{e}");
    }

    #[test]
    fn vector_loads_and_cp_async_move_the_right_words() {
        // Thread 0 copies out[0..4] (16 bytes) to shared with cp.async, waits, and reads
        // it back as a v4 into out[0..4] shifted by one lane: out[i] = in[(i+1) % 4].
        let mut sim = module(
            "\tsetp.ne.u32 %p1, %r2, 0;\n\t@%p1 bra $L_end;\n\
             \tmov.u64 %rd4, smem;\n\tcp.async.cg.shared.global [%rd4], [%rd1], 16;\n\
             \tcp.async.commit_group;\n\tcp.async.wait_group 0;\n\
             \tld.shared.v4.u32 {%r3, %r4, %r5, %r6}, [smem];\n\
             \tst.global.v4.u32 [%rd1], {%r4, %r5, %r6, %r3};\n$L_end:",
        );
        let out = sim.memory.alloc(
            "out",
            [7u32, 8, 9, 10]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        let mut params = out.to_le_bytes().to_vec();
        params.extend_from_slice(&0u32.to_le_bytes());
        let g = Geometry {
            grid: (1, 1, 1),
            block: (2, 1, 1),
            shared_bytes: 16,
        };
        sim.launch("k", g, &params, &SimOptions::default()).unwrap();
        let b = sim.memory.read(out, 16).unwrap();
        let got: Vec<u32> = b
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got, [8, 9, 10, 7]);
    }

    #[test]
    fn parameter_bytes_must_match_the_entry() {
        let mut sim = module("");
        let g = Geometry {
            grid: (1, 1, 1),
            block: (1, 1, 1),
            shared_bytes: 0,
        };
        let e = sim
            .launch("k", g, &[0; 8], &SimOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8 parameter bytes given, the .entry declares 12"),
            "{e}"
        );
    }
}
