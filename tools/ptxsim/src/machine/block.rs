//! One block: its threads' registers and program counters, the barrier loop that runs
//! each thread to its next `bar.sync`, the shared-memory race detector and the pending
//! `cp.async` copies.

use super::SimOptions;
use super::memory::DeviceMemory;
use crate::front::Kernel;
use crate::stats::BlockRecorder;

pub(super) struct BlockCtx<'a> {
    pub(super) ctaid: [u32; 3],
    pub(super) nctaid: [u32; 3],
    pub(super) ntid: [u32; 3],
    pub(super) params: &'a [u8],
}

/// A fault inside a block: the thread (linear index) and instruction, if known.
pub(super) struct Fault {
    pub(super) thread: Option<usize>,
    pub(super) pc: u32,
    pub(super) address: Option<u64>,
    pub(super) message: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Status {
    Ready,
    AtBarrier,
    Exited,
}

/// Last accesses of one 4-byte shared word in the current barrier interval.
#[derive(Clone, Copy, Default)]
pub(super) struct Shadow {
    /// Writer thread + 1 (0: none) and the interval of that write.
    pub(super) writer: u32,
    pub(super) w_epoch: u32,
    /// Reader thread + 1 and the interval; `multi` if several threads read.
    pub(super) reader: u32,
    pub(super) r_epoch: u32,
    pub(super) multi: bool,
}

/// A pending `cp.async`: shared destination, global source, size, issuing pc, group.
#[derive(Clone, Copy)]
pub(super) struct PendingCopy {
    pub(super) dst: u64,
    pub(super) src: u64,
    pub(super) size: u8,
    pub(super) pc: u32,
    pub(super) group: u32,
}

pub(super) struct BlockState {
    pub(super) nregs: usize,
    pub(super) threads: usize,
    pub(super) regs: Vec<u64>,
    pub(super) pcs: Vec<u32>,
    pub(super) status: Vec<Status>,
    pub(super) steps: Vec<u64>,
    pub(super) steps_total: u64,
    pub(super) max_steps: u64,
    pub(super) shared: Vec<u8>,
    pub(super) shadow: Vec<Shadow>,
    pub(super) epoch: u32,
    pub(super) copies: Vec<Vec<PendingCopy>>,
    pub(super) groups: Vec<u32>,
}

impl BlockState {
    pub(super) fn new(k: &Kernel, threads: usize, shared: usize, opts: &SimOptions) -> Self {
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

    pub(super) fn reset(&mut self) {
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

    pub(super) fn run(
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

    pub(super) fn fault(&self, t: usize, pc: u32, address: Option<u64>, message: String) -> Fault {
        Fault {
            thread: Some(t),
            pc,
            address,
            message,
        }
    }

    /// Shared-memory access check: bounds, then the race detector on each 4-byte word.
    pub(super) fn shared_check(
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
    pub(super) fn complete_copies(
        &mut self,
        t: usize,
        keep: u32,
        mem: &DeviceMemory,
    ) -> Result<(), Fault> {
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

    pub(super) fn stop(
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
