//! The decoded instruction set: compact enums with register indices, so that execution
//! never looks at text. Registers of every class live in one file of 64-bit slots per
//! thread; a 32-bit value is stored zero-extended, a predicate as 0 or 1.

/// A PTX scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Ty {
    B8,
    U8,
    S8,
    B16,
    U16,
    S16,
    B32,
    U32,
    S32,
    B64,
    U64,
    S64,
    F32,
    F64,
    Pred,
}

impl Ty {
    /// `u32` from `"u32"`; `None` for anything else (f16, bf16, ...: unsupported).
    pub fn from_name(s: &str) -> Option<Ty> {
        Some(match s {
            "b8" => Ty::B8,
            "u8" => Ty::U8,
            "s8" => Ty::S8,
            "b16" => Ty::B16,
            "u16" => Ty::U16,
            "s16" => Ty::S16,
            "b32" => Ty::B32,
            "u32" => Ty::U32,
            "s32" => Ty::S32,
            "b64" => Ty::B64,
            "u64" => Ty::U64,
            "s64" => Ty::S64,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }

    /// Size in bytes (a predicate counts as 1).
    pub fn bytes(self) -> u32 {
        match self {
            Ty::B8 | Ty::U8 | Ty::S8 | Ty::Pred => 1,
            Ty::B16 | Ty::U16 | Ty::S16 => 2,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 => 4,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 8,
        }
    }

    /// Signed integer type.
    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    /// f32 or f64.
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F32 | Ty::F64)
    }

    /// `v` truncated to this type's width (predicates to one bit).
    pub fn mask(self, v: u64) -> u64 {
        match self {
            Ty::Pred => u64::from(v != 0),
            _ if self.bytes() == 8 => v,
            _ => v & ((1u64 << (8 * self.bytes())) - 1),
        }
    }

    /// `v` (of this type's width) sign- or zero-extended to 64 bits as i128 value.
    fn widen(self, v: u64) -> i128 {
        let bits = 8 * self.bytes();
        if self.is_signed() && bits < 64 {
            let shift = 64 - bits;
            i128::from(((v << shift) as i64) >> shift)
        } else if self.is_signed() {
            i128::from(v as i64)
        } else {
            i128::from(self.mask(v))
        }
    }
}

/// A source operand: register slot or immediate bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// Register slot.
    R(u32),
    /// Immediate, already masked to the operand's width.
    I(u64),
}

/// The state space an access names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Generic address: global windows or the shared window.
    Generic,
    /// `.global`.
    Global,
    /// `.shared`: byte offset into the block's shared memory.
    Shared,
    /// `.param` (kernel parameters, read-only).
    Param,
}

/// Base of an address operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrBase {
    /// A register.
    Reg(u32),
    /// A kernel parameter (its byte offset in the parameter buffer).
    Param(u32),
    /// A module variable (resolved to its address at launch).
    Symbol(String),
    /// An absolute address.
    Abs(u64),
}

/// `[base+off]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    /// The base.
    pub base: AddrBase,
    /// Byte offset.
    pub off: i64,
}

/// Special registers (`%tid.x`, ...); the `u8` is the dimension 0..=2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    Lane,
    Warp,
}

/// Integer binary operations (width chosen by the instruction's `w64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum IntOp {
    Add,
    Sub,
    MulLo,
    MulHiU,
    MulHiS,
    And,
    Or,
    Xor,
    Shl,
    ShrU,
    ShrS,
    MinU,
    MinS,
    MaxU,
    MaxS,
    DivU,
    DivS,
    RemU,
    RemS,
}

/// Integer unary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum UnOp {
    Not,
    NotPred,
    Neg,
    Abs,
}

/// f32 operations, all IEEE round-to-nearest-even (Rust's own f32 arithmetic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum F32Op {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Neg,
    Abs,
    Sqrt,
    Rcp,
}

/// f64 operations (same set as [`F32Op`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum F64Op {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Neg,
    Abs,
    Sqrt,
    Rcp,
}

impl From<F32Op> for F64Op {
    fn from(op: F32Op) -> Self {
        match op {
            F32Op::Add => F64Op::Add,
            F32Op::Sub => F64Op::Sub,
            F32Op::Mul => F64Op::Mul,
            F32Op::Div => F64Op::Div,
            F32Op::Min => F64Op::Min,
            F32Op::Max => F64Op::Max,
            F32Op::Neg => F64Op::Neg,
            F32Op::Abs => F64Op::Abs,
            F32Op::Sqrt => F64Op::Sqrt,
            F32Op::Rcp => F64Op::Rcp,
        }
    }
}

/// Comparison of `setp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

impl Cmp {
    /// From the modifier name.
    pub fn from_name(s: &str) -> Option<Cmp> {
        Some(match s {
            "eq" => Cmp::Eq,
            "ne" => Cmp::Ne,
            "lt" => Cmp::Lt,
            "le" => Cmp::Le,
            "gt" => Cmp::Gt,
            "ge" => Cmp::Ge,
            "lo" => Cmp::Lo,
            "ls" => Cmp::Ls,
            "hi" => Cmp::Hi,
            "hs" => Cmp::Hs,
            "equ" => Cmp::Equ,
            "neu" => Cmp::Neu,
            "ltu" => Cmp::Ltu,
            "leu" => Cmp::Leu,
            "gtu" => Cmp::Gtu,
            "geu" => Cmp::Geu,
            "num" => Cmp::Num,
            "nan" => Cmp::Nan,
            _ => return None,
        })
    }

    /// Whether PTX defines this comparison for the type.
    pub fn valid_for(self, ty: CmpTy) -> bool {
        use Cmp::*;
        match ty {
            CmpTy::B32 | CmpTy::B64 => matches!(self, Eq | Ne),
            CmpTy::U32 | CmpTy::U64 | CmpTy::S32 | CmpTy::S64 => {
                matches!(self, Eq | Ne | Lt | Le | Gt | Ge | Lo | Ls | Hi | Hs)
            }
            CmpTy::F32 | CmpTy::F64 => !matches!(self, Lo | Ls | Hi | Hs),
        }
    }
}

/// Operand type of `setp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CmpTy {
    B32,
    B64,
    U32,
    U64,
    S32,
    S64,
    F32,
    F64,
}

impl CmpTy {
    /// The comparison type of a scalar type.
    pub fn of(t: Ty) -> Option<CmpTy> {
        Some(match t {
            Ty::B32 => CmpTy::B32,
            Ty::B64 => CmpTy::B64,
            Ty::U32 => CmpTy::U32,
            Ty::U64 => CmpTy::U64,
            Ty::S32 => CmpTy::S32,
            Ty::S64 => CmpTy::S64,
            Ty::F32 => CmpTy::F32,
            Ty::F64 => CmpTy::F64,
            _ => return None,
        })
    }
}

/// Rounding modifier of `cvt` and float instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Rnd {
    Rn,
    Rz,
    Rm,
    Rp,
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

/// A validated `cvt.<rnd>.<sat>.<dst>.<src>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CvtOp {
    dst: Ty,
    src: Ty,
    rnd: Option<Rnd>,
    sat: bool,
}

impl CvtOp {
    /// Checks the combination against the subset implemented exactly.
    pub fn new(dst: Ty, src: Ty, rnd: Option<Rnd>, sat: bool) -> Result<CvtOp, String> {
        let bad = |why: &str| {
            Err(format!(
                "unsupported cvt{}{}.{dst:?}.{src:?}: {why}",
                rnd.map(|r| format!(".{r:?}").to_lowercase())
                    .unwrap_or_default(),
                if sat { ".sat" } else { "" }
            )
            .to_lowercase())
        };
        if dst == Ty::Pred || src == Ty::Pred {
            return bad("predicates");
        }
        match (dst.is_float(), src.is_float()) {
            (false, false) => {
                if rnd.is_some() {
                    return bad("rounding on an integer conversion");
                }
            }
            (true, false) => {
                // Integer to float: exact for f64 from 32-bit, else round to nearest.
                if rnd != Some(Rnd::Rn) || sat {
                    return bad("only .rn from integers");
                }
            }
            (false, true) => {
                if !matches!(rnd, Some(Rnd::Rni | Rnd::Rzi | Rnd::Rmi | Rnd::Rpi)) || sat {
                    return bad("float to integer needs .rni/.rzi/.rmi/.rpi (no .sat)");
                }
            }
            (true, true) => {
                if sat {
                    return bad(".sat on floats");
                }
                match (dst, src) {
                    (Ty::F32, Ty::F64) if rnd == Some(Rnd::Rn) => {}
                    (Ty::F64, Ty::F32) if rnd.is_none() => {}
                    (a, b)
                        if a == b
                            && matches!(rnd, Some(Rnd::Rni | Rnd::Rzi | Rnd::Rmi | Rnd::Rpi)) => {}
                    _ => return bad("only f64->f32 .rn, f32->f64, and same-type integer rounding"),
                }
            }
        }
        Ok(CvtOp { dst, src, rnd, sat })
    }

    /// Applies the conversion to the source bits.
    pub fn apply(self, v: u64) -> u64 {
        let CvtOp { dst, src, rnd, sat } = self;
        match (dst.is_float(), src.is_float()) {
            (false, false) => {
                let x = src.widen(v);
                if sat {
                    let bits = 8 * dst.bytes();
                    let (lo, hi) = if dst.is_signed() {
                        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
                    } else {
                        (0, (1i128 << bits) - 1)
                    };
                    dst.mask(x.clamp(lo, hi) as u64)
                } else {
                    dst.mask(x as u64)
                }
            }
            (true, false) => {
                let x = src.widen(v);
                // `as` from i128 rounds to nearest-even, as .rn requires.
                match dst {
                    Ty::F32 => u64::from((x as f32).to_bits()),
                    _ => (x as f64).to_bits(),
                }
            }
            (false, true) => {
                let f = match src {
                    Ty::F32 => f64::from(f32::from_bits(v as u32)),
                    _ => f64::from_bits(v),
                };
                let r = round(f, rnd);
                // Float to integer saturates and maps NaN to 0 (PTX), as `as` does.
                let out = match dst {
                    Ty::S8 => r as i8 as u64,
                    Ty::S16 => r as i16 as u64,
                    Ty::S32 => r as i32 as u64,
                    Ty::S64 => r as i64 as u64,
                    Ty::U8 | Ty::B8 => u64::from(r as u8),
                    Ty::U16 | Ty::B16 => u64::from(r as u16),
                    Ty::U32 | Ty::B32 => u64::from(r as u32),
                    _ => r as u64,
                };
                dst.mask(out)
            }
            (true, true) => match (dst, src) {
                (Ty::F32, Ty::F64) => u64::from((f64::from_bits(v) as f32).to_bits()),
                (Ty::F64, Ty::F32) => f64::from(f32::from_bits(v as u32)).to_bits(),
                (Ty::F32, _) => {
                    u64::from((round(f64::from(f32::from_bits(v as u32)), rnd) as f32).to_bits())
                }
                _ => round(f64::from_bits(v), rnd).to_bits(),
            },
        }
    }
}

fn round(f: f64, rnd: Option<Rnd>) -> f64 {
    match rnd {
        Some(Rnd::Rni) => f.round_ties_even(),
        Some(Rnd::Rmi) => f.floor(),
        Some(Rnd::Rpi) => f.ceil(),
        _ => f.trunc(),
    }
}

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Mov {
        d: u32,
        a: Src,
    },
    MovSpecial {
        d: u32,
        s: Special,
    },
    /// Address of a module variable (global: its generic address; shared: its offset).
    MovSymbol {
        d: u32,
        symbol: String,
    },
    Pack {
        d: u32,
        lo: Src,
        hi: Src,
    },
    Unpack {
        lo: u32,
        hi: u32,
        a: Src,
    },
    Int {
        op: IntOp,
        w64: bool,
        d: u32,
        a: Src,
        b: Src,
    },
    /// 16-bit integer operation (`.u16`, `.s16`, `.b16`), computed on the sign- or
    /// zero-extended values and truncated to 16 bits.
    Int16 {
        op: IntOp,
        d: u32,
        a: Src,
        b: Src,
    },
    /// `bfe.{u,s}{32,64} d, a, pos, len`.
    Bfe {
        signed: bool,
        w64: bool,
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    IntUn {
        op: UnOp,
        w64: bool,
        d: u32,
        a: Src,
    },
    MulWide {
        signed: bool,
        d: u32,
        a: Src,
        b: Src,
    },
    MadLo {
        w64: bool,
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    MadWide {
        signed: bool,
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    Shf {
        left: bool,
        wrap: bool,
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    F32 {
        op: F32Op,
        d: u32,
        a: Src,
        b: Src,
    },
    F64 {
        op: F64Op,
        d: u32,
        a: Src,
        b: Src,
    },
    Fma32 {
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    Fma64 {
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    Setp {
        cmp: Cmp,
        ty: CmpTy,
        d: u32,
        a: Src,
        b: Src,
    },
    Selp {
        d: u32,
        a: Src,
        b: Src,
        p: u32,
    },
    Cvt {
        cvt: CvtOp,
        d: u32,
        a: Src,
    },
    Cvta {
        to: bool,
        space: Space,
        d: u32,
        a: Src,
    },
    /// `u32::MAX` in `d` discards that element.
    Ld {
        space: Space,
        size: u8,
        vec: u8,
        sign: bool,
        d: [u32; 4],
        addr: Addr,
    },
    St {
        space: Space,
        size: u8,
        vec: u8,
        s: [Src; 4],
        addr: Addr,
    },
    CpAsync {
        dst: Addr,
        src: Addr,
        size: u8,
    },
    CpAsyncCommit,
    CpAsyncWait {
        n: u32,
    },
    Bra {
        target: u32,
    },
    BrxIdx {
        idx: Src,
        table: u32,
    },
    Bar,
    Exit,
    Trap,
}

/// An instruction with its guard predicate (`@%p` or `@!%p`: register and negation).
#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    /// The operation.
    pub op: Op,
    /// Guard: predicate register and whether it is negated.
    pub guard: Option<(u32, bool)>,
}

/// Class of an instruction for dynamic counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Class {
    Int,
    Fp32,
    Fp64,
    Convert,
    Predicate,
    LoadGlobal,
    StoreGlobal,
    LoadShared,
    StoreShared,
    LoadParam,
    Control,
    Barrier,
    Move,
}

impl Class {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Int => "int",
            Class::Fp32 => "fp32",
            Class::Fp64 => "fp64",
            Class::Convert => "convert",
            Class::Predicate => "setp/selp",
            Class::LoadGlobal => "ld global",
            Class::StoreGlobal => "st global",
            Class::LoadShared => "ld shared",
            Class::StoreShared => "st shared",
            Class::LoadParam => "ld param",
            Class::Control => "control",
            Class::Barrier => "barrier",
            Class::Move => "mov",
        }
    }
}
