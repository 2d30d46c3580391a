//! Operands of one instruction: registers, immediates, addresses, special registers, and
//! the modifier helpers the decoder shares.

use std::collections::HashMap;

use super::inst::{Addr, AddrBase, Rnd, Special, Src, Ty};
use super::module::parse_int;

pub(super) struct DecodeCtx<'a> {
    pub(super) regs: &'a HashMap<String, u32>,
    pub(super) labels: &'a HashMap<String, u32>,
    pub(super) params: &'a HashMap<String, (usize, u32)>,
    pub(super) tables: &'a HashMap<String, u32>,
}

pub(super) type DResult<T> = std::result::Result<T, String>;

/// Splits operands at top-level commas (not inside `[]` or `{}`).
pub(super) fn split_operands(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(ch);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

impl DecodeCtx<'_> {
    pub(super) fn reg(&self, s: &str) -> DResult<u32> {
        self.regs
            .get(s)
            .copied()
            .ok_or_else(|| format!("`{s}` is not a declared register"))
    }

    /// A source operand of type `ty`: register or immediate (masked to the type's width).
    pub(super) fn src(&self, s: &str, ty: Ty) -> DResult<Src> {
        if s.starts_with('%') || self.regs.contains_key(s) {
            return self.reg(s).map(Src::R);
        }
        imm(s, ty).map(Src::I)
    }

    /// A register or `_` destination (`_` discards: a scratch slot past the file).
    pub(super) fn dst(&self, s: &str) -> DResult<u32> {
        self.reg(s)
    }

    pub(super) fn addr(&self, s: &str) -> DResult<Addr> {
        let inner = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .ok_or_else(|| format!("`{s}` is not an address [..]"))?
            .trim();
        let (base, off) = match inner.find(['+', '-']) {
            Some(p) if p > 0 => {
                let off = parse_int(&inner[p..].replace('+', ""))
                    .ok_or_else(|| format!("bad address offset in `{s}`"))?;
                (inner[..p].trim(), off as i64)
            }
            _ => (inner, 0),
        };
        let base = if base.starts_with('%') || self.regs.contains_key(base) {
            AddrBase::Reg(self.reg(base)?)
        } else if let Some(&(_, poff)) = self.params.get(base) {
            AddrBase::Param(poff)
        } else if base.chars().all(|c| c.is_ascii_digit()) {
            AddrBase::Abs(parse_int(base).unwrap_or(0))
        } else {
            AddrBase::Symbol(base.to_string())
        };
        Ok(Addr { base, off })
    }
}

/// Immediate of type `ty`: `0fXXXXXXXX` (f32 bits), `0dXXXXXXXXXXXXXXXX` (f64 bits), or an
/// integer (masked to the width of `ty`).
pub(super) fn imm(s: &str, ty: Ty) -> DResult<u64> {
    if let Some(h) = s.strip_prefix("0f").or_else(|| s.strip_prefix("0F")) {
        let bits = u32::from_str_radix(h, 16).map_err(|_| format!("bad f32 literal `{s}`"))?;
        return match ty {
            Ty::F64 => Ok(f64::from(f32::from_bits(bits)).to_bits()),
            _ => Ok(u64::from(bits)),
        };
    }
    if let Some(h) = s.strip_prefix("0d").or_else(|| s.strip_prefix("0D")) {
        let bits = u64::from_str_radix(h, 16).map_err(|_| format!("bad f64 literal `{s}`"))?;
        return match ty {
            Ty::F32 => Err(format!("f64 literal `{s}` for an f32 operand")),
            _ => Ok(bits),
        };
    }
    let v = parse_int(s).ok_or_else(|| format!("unsupported operand `{s}`"))?;
    if ty.is_float() {
        return Err(format!(
            "integer literal `{s}` for a float operand (unsupported)"
        ));
    }
    Ok(ty.mask(v))
}

pub(super) fn special(s: &str) -> Option<Special> {
    let (reg, dim) = s.split_once('.').unwrap_or((s, ""));
    let d = match dim {
        "x" => 0,
        "y" => 1,
        "z" => 2,
        "" => 0,
        _ => return None,
    };
    Some(match reg {
        "%tid" => Special::Tid(d),
        "%ntid" => Special::Ntid(d),
        "%ctaid" => Special::Ctaid(d),
        "%nctaid" => Special::Nctaid(d),
        "%laneid" if dim.is_empty() => Special::Lane,
        "%warpid" if dim.is_empty() => Special::Warp,
        _ => return None,
    })
}

/// The type suffix (last modifier) of an opcode.
pub(super) fn ty_of(mods: &[&str]) -> DResult<Ty> {
    let last = mods.last().ok_or("missing type suffix")?;
    Ty::from_name(last).ok_or_else(|| format!("unsupported type .{last}"))
}

/// Fails unless every modifier is in `allowed`.
pub(super) fn only(op: &str, mods: &[&str], allowed: &[&str]) -> DResult<()> {
    for m in mods {
        if !allowed.contains(m) && Ty::from_name(m).is_none() {
            return Err(format!("unsupported modifier .{m} of `{op}`"));
        }
    }
    Ok(())
}

pub(super) fn rounding(mods: &[&str]) -> Option<Rnd> {
    mods.iter().find_map(|m| match *m {
        "rn" => Some(Rnd::Rn),
        "rz" => Some(Rnd::Rz),
        "rm" => Some(Rnd::Rm),
        "rp" => Some(Rnd::Rp),
        "rni" => Some(Rnd::Rni),
        "rzi" => Some(Rnd::Rzi),
        "rmi" => Some(Rnd::Rmi),
        "rpi" => Some(Rnd::Rpi),
        _ => None,
    })
}

pub(super) fn want(ops: &[String], n: usize, op: &str) -> DResult<()> {
    if ops.len() == n {
        Ok(())
    } else {
        Err(format!("`{op}` takes {n} operands, found {}", ops.len()))
    }
}
