//! One instruction statement (with an optional `@%p` guard) to an [`Inst`]: the opcode and
//! its modifiers select the operation; unsupported forms are errors naming them.

use super::inst::{
    AddrBase, Cmp, CmpTy, CvtOp, F32Op, F64Op, Inst, IntOp, Op, Rnd, Space, Src, Ty, UnOp,
};
use super::module::parse_int;
use super::operands::{DResult, DecodeCtx, only, rounding, special, split_operands, ty_of, want};

/// Decodes one instruction statement (with an optional `@%p`/`@!%p` guard).
pub(super) fn decode(ctx: &DecodeCtx, text: &str) -> DResult<(Inst, String)> {
    let mut text = text.trim();
    let mut guard = None;
    if let Some(rest) = text.strip_prefix('@') {
        let (g, tail) = rest
            .split_once(char::is_whitespace)
            .ok_or("guard without instruction")?;
        let (neg, name) = match g.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, g),
        };
        guard = Some((ctx.reg(name)?, neg));
        text = tail.trim();
    }
    let (opcode, rest) = match text.split_once(char::is_whitespace) {
        Some((o, r)) => (o, r.trim()),
        None => (text, ""),
    };
    let ops = split_operands(rest);
    let parts: Vec<&str> = opcode.split('.').collect();
    let base = parts[0];
    let mods = &parts[1..];
    let op = decode_op(ctx, opcode, base, mods, &ops)?;
    Ok((Inst { op, guard }, opcode.to_string()))
}

pub(super) fn int_op(base: &str, mods: &[&str], ty: Ty) -> DResult<IntOp> {
    let signed = ty.is_signed();
    Ok(match (base, mods.first().copied()) {
        ("add", _) => IntOp::Add,
        ("sub", _) => IntOp::Sub,
        ("mul", Some("lo")) => IntOp::MulLo,
        ("mul", Some("hi")) if signed => IntOp::MulHiS,
        ("mul", Some("hi")) => IntOp::MulHiU,
        ("and", _) => IntOp::And,
        ("or", _) => IntOp::Or,
        ("xor", _) => IntOp::Xor,
        ("shl", _) => IntOp::Shl,
        ("shr", _) if signed => IntOp::ShrS,
        ("shr", _) => IntOp::ShrU,
        ("min", _) if signed => IntOp::MinS,
        ("min", _) => IntOp::MinU,
        ("max", _) if signed => IntOp::MaxS,
        ("max", _) => IntOp::MaxU,
        ("div", _) if signed => IntOp::DivS,
        ("div", _) => IntOp::DivU,
        ("rem", _) if signed => IntOp::RemS,
        ("rem", _) => IntOp::RemU,
        _ => return Err(format!("unsupported integer operation {base}")),
    })
}

pub(super) fn decode_op(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
) -> DResult<Op> {
    match base {
        "mov" => {
            only(opcode, mods, &[])?;
            want(ops, 2, opcode)?;
            let ty = ty_of(mods)?;
            let (d, a) = (&ops[0], &ops[1]);
            if let Some(inner) = d.strip_prefix('{') {
                let regs: Vec<&str> = inner
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect();
                if ty != Ty::B64 || regs.len() != 2 {
                    return Err(format!("unsupported unpacking `{opcode}`"));
                }
                return Ok(Op::Unpack {
                    lo: ctx.dst(regs[0])?,
                    hi: ctx.dst(regs[1])?,
                    a: ctx.src(a, ty)?,
                });
            }
            let d = ctx.dst(d)?;
            if let Some(inner) = a.strip_prefix('{') {
                let regs: Vec<&str> = inner
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect();
                if ty != Ty::B64 || regs.len() != 2 {
                    return Err(format!("unsupported packing `{opcode}`"));
                }
                return Ok(Op::Pack {
                    d,
                    lo: ctx.src(regs[0], Ty::B32)?,
                    hi: ctx.src(regs[1], Ty::B32)?,
                });
            }
            if a.starts_with('%') && !ctx.regs.contains_key(a.as_str()) {
                let s = special(a).ok_or_else(|| format!("unsupported special register `{a}`"))?;
                return Ok(Op::MovSpecial { d, s });
            }
            if a.starts_with('%')
                || ctx.regs.contains_key(a.as_str())
                || a.starts_with('-')
                || a.starts_with(|c: char| c.is_ascii_digit())
            {
                return Ok(Op::Mov {
                    d,
                    a: ctx.src(a, ty)?,
                });
            }
            // The address of a variable in its own state space.
            Ok(Op::MovSymbol {
                d,
                symbol: a.to_string(),
            })
        }
        "add" | "sub" | "mul" | "min" | "max" | "div" | "rem" | "and" | "or" | "xor" | "shl"
        | "shr" | "neg" | "abs" | "not" | "mad" | "fma" | "sqrt" | "rcp" => {
            let ty = ty_of(mods)?;
            if ty.is_float() {
                return decode_float(ctx, opcode, base, mods, ops, ty);
            }
            decode_int(ctx, opcode, base, mods, ops, ty)
        }
        "bfe" => {
            only(opcode, mods, &[])?;
            want(ops, 4, opcode)?;
            let ty = ty_of(mods)?;
            if !matches!(ty, Ty::U32 | Ty::S32 | Ty::U64 | Ty::S64) {
                return Err(format!("unsupported `{opcode}`"));
            }
            Ok(Op::Bfe {
                signed: ty.is_signed(),
                w64: ty.bytes() == 8,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], Ty::U32)?,
                c: ctx.src(&ops[3], Ty::U32)?,
            })
        }
        "shf" => {
            only(opcode, mods, &["l", "r", "wrap", "clamp"])?;
            want(ops, 4, opcode)?;
            let left = mods.contains(&"l");
            let wrap = mods.contains(&"wrap");
            Ok(Op::Shf {
                left,
                wrap,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], Ty::B32)?,
                b: ctx.src(&ops[2], Ty::B32)?,
                c: ctx.src(&ops[3], Ty::B32)?,
            })
        }
        "setp" => {
            want(ops, 3, opcode)?;
            if mods.len() != 2 {
                return Err(format!(
                    "unsupported setp form `{opcode}` (boolean combining operand)"
                ));
            }
            if ops[0].contains('|') {
                return Err(format!("unsupported second destination in `{opcode}`"));
            }
            let ty = ty_of(mods)?;
            let cmp = Cmp::from_name(mods[0])
                .ok_or_else(|| format!("unsupported comparison .{}", mods[0]))?;
            let cty =
                CmpTy::of(ty).ok_or_else(|| format!("unsupported comparison type .{}", mods[1]))?;
            if !cmp.valid_for(cty) {
                return Err(format!(
                    "comparison .{} is not defined for .{}",
                    mods[0], mods[1]
                ));
            }
            Ok(Op::Setp {
                cmp,
                ty: cty,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], ty)?,
            })
        }
        "selp" => {
            want(ops, 4, opcode)?;
            only(opcode, mods, &[])?;
            let ty = ty_of(mods)?;
            Ok(Op::Selp {
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], ty)?,
                p: ctx.reg(&ops[3])?,
            })
        }
        "cvt" => {
            want(ops, 2, opcode)?;
            let n = mods.len();
            if n < 2 {
                return Err(format!("`{opcode}` needs two types"));
            }
            let dst = Ty::from_name(mods[n - 2])
                .ok_or_else(|| format!("unsupported type .{}", mods[n - 2]))?;
            let src = Ty::from_name(mods[n - 1])
                .ok_or_else(|| format!("unsupported type .{}", mods[n - 1]))?;
            only(
                opcode,
                &mods[..n - 2],
                &["rn", "rz", "rm", "rp", "rni", "rzi", "rmi", "rpi", "sat"],
            )?;
            let cvt = CvtOp::new(dst, src, rounding(mods), mods.contains(&"sat"))?;
            Ok(Op::Cvt {
                cvt,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], src)?,
            })
        }
        "cvta" => {
            want(ops, 2, opcode)?;
            let to = mods.first() == Some(&"to");
            let space = mods.get(usize::from(to)).copied().unwrap_or("");
            let sp = match space {
                "global" => Space::Global,
                "shared" => Space::Shared,
                _ => return Err(format!("unsupported cvta space .{space}")),
            };
            if mods.len() != usize::from(to) + 2 || !matches!(mods.last(), Some(&"u64")) {
                return Err(format!("unsupported cvta form `{opcode}` (u64 only)"));
            }
            Ok(Op::Cvta {
                to,
                space: sp,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], Ty::U64)?,
            })
        }
        "ld" | "st" => decode_mem(ctx, opcode, base, mods, ops),
        "bra" => {
            only(opcode, mods, &["uni"])?;
            want(ops, 1, opcode)?;
            let target = *ctx
                .labels
                .get(ops[0].as_str())
                .ok_or_else(|| format!("unknown label {}", ops[0]))?;
            Ok(Op::Bra { target })
        }
        "brx" => {
            if mods != ["idx"] && mods != ["idx", "uni"] {
                return Err(format!("unsupported `{opcode}`"));
            }
            want(ops, 2, opcode)?;
            let table = *ctx
                .tables
                .get(ops[1].as_str())
                .ok_or_else(|| format!("{} is not a .branchtargets label", ops[1]))?;
            Ok(Op::BrxIdx {
                idx: ctx.src(&ops[0], Ty::U32)?,
                table,
            })
        }
        "bar" | "barrier" => {
            if !(mods == ["sync"] || mods.is_empty() && base == "bar") {
                return Err(format!("unsupported barrier `{opcode}`"));
            }
            if ops.len() != 1 || ops[0] != "0" {
                return Err(format!(
                    "unsupported barrier operands `{}` (only barrier 0 with the whole block)",
                    ops.join(", ")
                ));
            }
            Ok(Op::Bar)
        }
        "ret" | "exit" => {
            only(opcode, mods, &["uni"])?;
            Ok(Op::Exit)
        }
        "trap" => Ok(Op::Trap),
        "cp" => decode_cp_async(ctx, opcode, mods, ops),
        _ => Err(format!("unsupported instruction `{opcode}`")),
    }
}

pub(super) fn decode_cp_async(
    ctx: &DecodeCtx,
    opcode: &str,
    mods: &[&str],
    ops: &[String],
) -> DResult<Op> {
    match mods {
        ["async", "commit_group"] => Ok(Op::CpAsyncCommit),
        ["async", "wait_all"] => Ok(Op::CpAsyncWait { n: 0 }),
        ["async", "wait_group"] => {
            want(ops, 1, opcode)?;
            let n = parse_int(&ops[0]).ok_or_else(|| format!("bad group count {}", ops[0]))?;
            Ok(Op::CpAsyncWait { n: n as u32 })
        }
        ["async", "ca" | "cg", "shared", "global"] => {
            if ops.len() != 3 {
                return Err(format!(
                    "unsupported `{opcode}` form (only dst, src, cp-size without src-size)"
                ));
            }
            let size = parse_int(&ops[2]).ok_or_else(|| format!("bad copy size {}", ops[2]))?;
            if ![4, 8, 16].contains(&size) || (mods[1] == "cg" && size != 16) {
                return Err(format!("copy size {size} not allowed for `{opcode}`"));
            }
            Ok(Op::CpAsync {
                dst: ctx.addr(&ops[0])?,
                src: ctx.addr(&ops[1])?,
                size: size as u8,
            })
        }
        _ => Err(format!("unsupported instruction `{opcode}`")),
    }
}

pub(super) fn decode_int(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
    ty: Ty,
) -> DResult<Op> {
    let w64 = ty.bytes() == 8;
    if ty.bytes() == 2
        && matches!(
            base,
            "add"
                | "sub"
                | "mul"
                | "and"
                | "or"
                | "xor"
                | "shl"
                | "shr"
                | "min"
                | "max"
                | "div"
                | "rem"
        )
        && (base != "mul" || mods.first() == Some(&"lo"))
    {
        only(opcode, mods, if base == "mul" { &["lo"] } else { &[] })?;
        want(ops, 3, opcode)?;
        let bty = if matches!(base, "shl" | "shr") {
            Ty::U32
        } else {
            ty
        };
        return Ok(Op::Int16 {
            op: int_op(base, mods, ty)?,
            d: ctx.dst(&ops[0])?,
            a: ctx.src(&ops[1], ty)?,
            b: ctx.src(&ops[2], bty)?,
        });
    }
    if ty.bytes() < 4 && ty != Ty::Pred {
        return Err(format!("unsupported 8/16-bit integer operation `{opcode}`"));
    }
    match base {
        "not" | "neg" | "abs" => {
            only(opcode, mods, &[])?;
            want(ops, 2, opcode)?;
            let op = match base {
                "not" if ty == Ty::Pred => UnOp::NotPred,
                "not" => UnOp::Not,
                "neg" => UnOp::Neg,
                _ => UnOp::Abs,
            };
            Ok(Op::IntUn {
                op,
                w64,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
            })
        }
        "mad" => {
            want(ops, 4, opcode)?;
            let (d, a, b, c) = (&ops[0], &ops[1], &ops[2], &ops[3]);
            match mods.first().copied() {
                Some("lo") => {
                    only(opcode, mods, &["lo"])?;
                    Ok(Op::MadLo {
                        w64,
                        d: ctx.dst(d)?,
                        a: ctx.src(a, ty)?,
                        b: ctx.src(b, ty)?,
                        c: ctx.src(c, ty)?,
                    })
                }
                Some("wide") if !w64 => {
                    only(opcode, mods, &["wide"])?;
                    let wide = if ty.is_signed() { Ty::S64 } else { Ty::U64 };
                    Ok(Op::MadWide {
                        signed: ty.is_signed(),
                        d: ctx.dst(d)?,
                        a: ctx.src(a, ty)?,
                        b: ctx.src(b, ty)?,
                        c: ctx.src(c, wide)?,
                    })
                }
                _ => Err(format!("unsupported `{opcode}`")),
            }
        }
        "mul" if mods.first() == Some(&"wide") => {
            only(opcode, mods, &["wide"])?;
            want(ops, 3, opcode)?;
            if w64 {
                return Err(format!("unsupported `{opcode}` (64-bit wide)"));
            }
            Ok(Op::MulWide {
                signed: ty.is_signed(),
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], ty)?,
            })
        }
        _ => {
            let allowed: &[&str] = if base == "mul" { &["lo", "hi"] } else { &[] };
            only(opcode, mods, allowed)?;
            if base == "mul" && !(mods.contains(&"lo") || mods.contains(&"hi")) {
                return Err(format!("`{opcode}` needs .lo, .hi or .wide"));
            }
            want(ops, 3, opcode)?;
            if ty == Ty::Pred && !matches!(base, "and" | "or" | "xor") {
                return Err(format!("unsupported predicate operation `{opcode}`"));
            }
            let op = int_op(base, mods, ty)?;
            // Shift amounts are always .u32.
            let bty = if matches!(base, "shl" | "shr") {
                Ty::U32
            } else {
                ty
            };
            Ok(Op::Int {
                op,
                w64,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], bty)?,
            })
        }
    }
}

pub(super) fn decode_float(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
    ty: Ty,
) -> DResult<Op> {
    let rnd = rounding(mods);
    // Rounding: IEEE round-to-nearest-even only (Rust's float operations), required where
    // PTX requires a rounding modifier.
    let needs_rn = matches!(base, "div" | "sqrt" | "rcp" | "fma" | "mad");
    match rnd {
        Some(Rnd::Rn) => {}
        None if !needs_rn => {}
        None => {
            return Err(format!(
                "`{opcode}` without .rn (approximate forms are unsupported)"
            ));
        }
        Some(_) => return Err(format!("unsupported rounding in `{opcode}` (only .rn)")),
    }
    only(opcode, mods, &["rn"])?;
    let f64_ = ty == Ty::F64;
    let d = ctx.dst(&ops[0])?;
    match base {
        "neg" | "abs" | "sqrt" | "rcp" => {
            want(ops, 2, opcode)?;
            let a = ctx.src(&ops[1], ty)?;
            let op = match base {
                "neg" => F32Op::Neg,
                "abs" => F32Op::Abs,
                "sqrt" => F32Op::Sqrt,
                _ => F32Op::Rcp,
            };
            Ok(if f64_ {
                Op::F64 {
                    op: op.into(),
                    d,
                    a,
                    b: Src::I(0),
                }
            } else {
                Op::F32 {
                    op,
                    d,
                    a,
                    b: Src::I(0),
                }
            })
        }
        "fma" | "mad" => {
            want(ops, 4, opcode)?;
            let (a, b, c) = (
                ctx.src(&ops[1], ty)?,
                ctx.src(&ops[2], ty)?,
                ctx.src(&ops[3], ty)?,
            );
            Ok(if f64_ {
                Op::Fma64 { d, a, b, c }
            } else {
                Op::Fma32 { d, a, b, c }
            })
        }
        _ => {
            want(ops, 3, opcode)?;
            let op = match base {
                "add" => F32Op::Add,
                "sub" => F32Op::Sub,
                "mul" => F32Op::Mul,
                "div" => F32Op::Div,
                "min" => F32Op::Min,
                "max" => F32Op::Max,
                _ => return Err(format!("unsupported float operation `{opcode}`")),
            };
            let (a, b) = (ctx.src(&ops[1], ty)?, ctx.src(&ops[2], ty)?);
            Ok(if f64_ {
                Op::F64 {
                    op: F64Op::from(op),
                    d,
                    a,
                    b,
                }
            } else {
                Op::F32 { op, d, a, b }
            })
        }
    }
}

pub(super) fn decode_mem(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
) -> DResult<Op> {
    want(ops, 2, opcode)?;
    let ty = ty_of(mods)?;
    let mut space = Space::Generic;
    let mut vec = 1u8;
    for m in &mods[..mods.len() - 1] {
        match *m {
            "global" => space = Space::Global,
            "shared" => space = Space::Shared,
            "param" => space = Space::Param,
            "nc" if base == "ld" => {}
            "v2" => vec = 2,
            "v4" => vec = 4,
            "weak" => {}
            _ => return Err(format!("unsupported modifier .{m} of `{opcode}`")),
        }
    }
    if ty == Ty::Pred {
        return Err(format!("unsupported `{opcode}`"));
    }
    let size = ty.bytes() as u8;
    let (regs_s, addr_s) = if base == "ld" {
        (&ops[0], &ops[1])
    } else {
        (&ops[1], &ops[0])
    };
    let names: Vec<&str> = if vec > 1 {
        regs_s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .ok_or_else(|| format!("vector operand expected in `{opcode}`"))?
            .split(',')
            .map(str::trim)
            .collect()
    } else {
        vec![regs_s.as_str()]
    };
    if names.len() != vec as usize {
        return Err(format!("`{opcode}` needs {vec} registers"));
    }
    let addr = ctx.addr(addr_s)?;
    if space == Space::Param && !matches!(addr.base, AddrBase::Param(_)) {
        return Err(format!("`{opcode}` from a non-parameter address {addr_s}"));
    }
    if base == "ld" {
        let mut d = [u32::MAX; 4];
        for (k, n) in names.iter().enumerate() {
            d[k] = if *n == "_" { u32::MAX } else { ctx.dst(n)? };
        }
        Ok(Op::Ld {
            space,
            size,
            vec,
            sign: ty.is_signed(),
            d,
            addr,
        })
    } else {
        let mut s = [Src::I(0); 4];
        for (k, n) in names.iter().enumerate() {
            s[k] = ctx.src(n, ty)?;
        }
        Ok(Op::St {
            space,
            size,
            vec,
            s,
            addr,
        })
    }
}
