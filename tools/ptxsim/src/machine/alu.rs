//! Integer arithmetic, comparisons and address-space classification on register bits.

use super::memory::SHARED_WINDOW;
use crate::front::inst::{Cmp, CmpTy, IntOp, Space};

/// The space an access really goes to, and the address within it: generic addresses in
/// the shared window become shared offsets.
pub(super) fn classify(space: Space, a: u64) -> (Space, u64) {
    match space {
        Space::Generic if (SHARED_WINDOW..SHARED_WINDOW + (1 << 32)).contains(&a) => {
            (Space::Shared, a - SHARED_WINDOW)
        }
        Space::Generic => (Space::Global, a),
        s => (s, a),
    }
}

pub(super) fn int32(op: IntOp, a: u32, b: u32) -> Option<u64> {
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

pub(super) fn int64(op: IntOp, a: u64, b: u64) -> Option<u64> {
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

pub(super) fn compare(cmp: Cmp, ty: CmpTy, a: u64, b: u64) -> bool {
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
