//! Warp-level statistics of a launch, the counters Nsight Compute reports for memory
//! instructions, counted exactly over the simulated execution:
//!
//! - per global load/store instruction: *requests* (warp-level executions that access
//!   memory) and *sectors* (distinct 32-byte sectors the active lanes touch, summed over
//!   requests);
//! - per shared access: *wavefronts*, the bank-conflict degree: the most distinct 4-byte
//!   words any one of the 32 banks must deliver (lanes reading the same word share it, a
//!   broadcast), next to the *ideal* `⌈distinct bytes / 128⌉`;
//! - dynamic instruction counts by class, thread-level and warp-level.
//!
//! Threads run one at a time, so the lanes of a warp are grouped afterwards: the k-th
//! execution of instruction `pc` by each lane of a warp is taken as one warp-level
//! execution. That is exact while a warp's lanes execute each instruction the same
//! number of times or diverge only by skipping (as in kernels whose only divergence is a bounds guard); a warp
//! that splits and runs the same instruction on both paths at different times would be
//! counted as fewer, fuller requests than the hardware issues.

use std::collections::{BTreeMap, HashSet};

use crate::arch::WARP;
use crate::front::Kernel;
use crate::front::inst::{Class, Op, Space};

/// One memory access of one lane.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pc: u32,
    warp: u32,
    occurrence: u32,
    space: Space,
    addr: u64,
    size: u8,
}

/// What one block recorded.
#[derive(Debug)]
pub struct BlockRecorder {
    insts: usize,
    threads: usize,
    /// Executions of each instruction by each thread (`thread · insts + pc`).
    occ: Vec<u32>,
    accesses: Vec<Access>,
}

impl BlockRecorder {
    pub(crate) fn new(k: &Kernel, threads: usize) -> Self {
        BlockRecorder {
            insts: k.insts.len(),
            threads,
            occ: vec![0; threads * k.insts.len()],
            accesses: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn executed(&mut self, t: usize, pc: usize) {
        self.occ[t * self.insts + pc] += 1;
    }

    pub(crate) fn access(
        &mut self,
        t: usize,
        pc: usize,
        space: Space,
        addr: u64,
        size: u8,
        _write: bool,
    ) {
        self.accesses.push(Access {
            pc: pc as u32,
            warp: t as u32 / WARP,
            occurrence: self.occ[t * self.insts + pc],
            space,
            addr,
            size,
        });
    }
}

/// Counters of one instruction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstStats {
    /// Thread-level executions (issued, guarded-off lanes included).
    pub thread_executions: u64,
    /// Warp-level executions.
    pub warp_executions: u64,
    /// The space its accesses went to (generic accesses resolved), if it accessed memory.
    pub space: Option<Space>,
    /// Warp-level executions that accessed memory.
    pub requests: u64,
    /// Global: distinct 32-byte sectors summed over requests.
    pub sectors: u64,
    /// Shared: bank-conflict wavefronts summed over requests.
    pub wavefronts: u64,
    /// Shared: conflict-free wavefronts `⌈distinct bytes/128⌉` summed over requests.
    pub ideal_wavefronts: u64,
}

/// Statistics of one kernel over one launch.
#[derive(Debug, Clone)]
pub struct KernelStats {
    /// Per instruction (index = pc).
    pub per_inst: Vec<InstStats>,
    classes: Vec<Class>,
}

impl KernelStats {
    pub(crate) fn new(k: &Kernel) -> Self {
        KernelStats {
            per_inst: vec![InstStats::default(); k.insts.len()],
            classes: k.insts.iter().map(|i| class(&i.op)).collect(),
        }
    }

    pub(crate) fn add_block(&mut self, mut rec: BlockRecorder) {
        let warps = rec.threads.div_ceil(WARP as usize);
        for pc in 0..rec.insts {
            let s = &mut self.per_inst[pc];
            for w in 0..warps {
                let lanes = (w * WARP as usize)..((w + 1) * WARP as usize).min(rec.threads);
                let mut most = 0;
                for t in lanes {
                    let o = rec.occ[t * rec.insts + pc];
                    s.thread_executions += u64::from(o);
                    most = most.max(o);
                }
                s.warp_executions += u64::from(most);
            }
        }
        rec.accesses
            .sort_unstable_by_key(|a| (a.pc, a.warp, a.occurrence, a.space == Space::Shared));
        for group in rec.accesses.chunk_by(|a, b| {
            (a.pc, a.warp, a.occurrence, a.space) == (b.pc, b.warp, b.occurrence, b.space)
        }) {
            let first = group[0];
            let s = &mut self.per_inst[first.pc as usize];
            s.space = Some(first.space);
            s.requests += 1;
            match first.space {
                Space::Shared => {
                    let mut words = HashSet::new();
                    for a in group {
                        for w in (a.addr / 4)..(a.addr + u64::from(a.size)).div_ceil(4) {
                            words.insert(w);
                        }
                    }
                    let mut per_bank = [0u64; 32];
                    for w in &words {
                        per_bank[(w % 32) as usize] += 1;
                    }
                    s.wavefronts += per_bank.iter().copied().max().unwrap_or(0);
                    s.ideal_wavefronts += (words.len() as u64 * 4).div_ceil(128);
                }
                _ => {
                    let mut sectors = HashSet::new();
                    for a in group {
                        for sec in (a.addr / 32)..=((a.addr + u64::from(a.size) - 1) / 32) {
                            sectors.insert(sec);
                        }
                    }
                    s.sectors += sectors.len() as u64;
                }
            }
            // A generic access that went to shared memory counts as a shared one.
            let k = first.pc as usize;
            self.classes[k] = match (self.classes[k], first.space) {
                (Class::LoadGlobal, Space::Shared) => Class::LoadShared,
                (Class::StoreGlobal, Space::Shared) => Class::StoreShared,
                (c, _) => c,
            };
        }
    }

    /// Dynamic counts by class: (class, thread-level, warp-level).
    pub fn by_class(&self) -> Vec<(Class, u64, u64)> {
        let mut m: BTreeMap<Class, (u64, u64)> = BTreeMap::new();
        for (s, c) in self.per_inst.iter().zip(&self.classes) {
            let e = m.entry(*c).or_default();
            e.0 += s.thread_executions;
            e.1 += s.warp_executions;
        }
        m.into_iter().map(|(c, (t, w))| (c, t, w)).collect()
    }
}

/// Static class of an instruction (generic memory accesses count as global until an
/// access shows otherwise).
pub fn class(op: &Op) -> Class {
    match op {
        Op::Mov { .. }
        | Op::MovSpecial { .. }
        | Op::MovSymbol { .. }
        | Op::Pack { .. }
        | Op::Unpack { .. } => Class::Move,
        Op::Int { .. }
        | Op::Int16 { .. }
        | Op::Bfe { .. }
        | Op::IntUn { .. }
        | Op::MulWide { .. }
        | Op::MadLo { .. }
        | Op::MadWide { .. }
        | Op::Shf { .. } => Class::Int,
        Op::F32 { .. } | Op::Fma32 { .. } => Class::Fp32,
        Op::F64 { .. } | Op::Fma64 { .. } => Class::Fp64,
        Op::Setp { .. } | Op::Selp { .. } => Class::Predicate,
        Op::Cvt { .. } | Op::Cvta { .. } => Class::Convert,
        Op::Ld {
            space: Space::Shared,
            ..
        } => Class::LoadShared,
        Op::Ld {
            space: Space::Param,
            ..
        } => Class::LoadParam,
        Op::Ld { .. } | Op::CpAsync { .. } => Class::LoadGlobal,
        Op::St {
            space: Space::Shared,
            ..
        } => Class::StoreShared,
        Op::St { .. } => Class::StoreGlobal,
        Op::Bar | Op::CpAsyncCommit | Op::CpAsyncWait { .. } => Class::Barrier,
        Op::Bra { .. } | Op::BrxIdx { .. } | Op::Exit | Op::Trap => Class::Control,
    }
}
