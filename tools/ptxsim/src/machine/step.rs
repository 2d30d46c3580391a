//! One thread of a block running until its next barrier, its exit or a fault: the
//! instruction interpreter.

use super::alu::{classify, compare, int32, int64};
use super::block::{BlockCtx, BlockState, Fault, PendingCopy, Status};
use super::memory::{DeviceMemory, SHARED_WINDOW, read_le, write_le};
use crate::arch::WARP;
use crate::front::Kernel;
use crate::front::inst::{
    Addr, AddrBase, F32Op, F64Op, Inst, IntOp, Op, Space, Special, Src, UnOp,
};
use crate::stats::BlockRecorder;

impl BlockState {
    #[allow(clippy::too_many_lines)]
    pub(super) fn run_thread(
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
}
