//! The kernels' launch ABI: the argument list of every margin kernel and the packing of
//! it into the bytes of the kernel's `.param` space. The CUDA backend hands the driver
//! pointers into these bytes; the `ptx` backend hands the interpreter the bytes
//! themselves. One function, [`pack`], does it for both, and checks every argument
//! against the size and alignment the PTX `.entry` declares.
//!
//! Layout (PTX ISA, "Kernel function parameters"): parameters follow each other in
//! declaration order, each at the next offset that is a multiple of its alignment.
//! A `#[repr(C)]` parameter struct is `.param .align 4 .b8 p[size]`; a view
//! (`device::{Global, GlobalMut}`) is `.param .align 8 .b8 p[16]` holding
//! `{u64 device address, u64 element count}`.

use kernels_gpu::params::{
    ForwardParams, GradParams, RowNormsParams, RowScaleParams, SplitKParams,
};

use crate::error::{Error, Result};
use ptxsim::ParamDecl;

/// The device-side ABI of `kernels_gpu::device::{Global, GlobalMut}`:
/// `{u64 device address, u64 element count}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct View {
    /// Device address of element 0.
    pub addr: u64,
    /// Element count.
    pub len: u64,
}

impl View {
    /// A view of no memory, for an argument the launch does not read.
    pub const EMPTY: View = View { addr: 0, len: 0 };
}

/// One kernel argument as the ABI sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Argument name, for error messages.
    pub name: &'static str,
    /// Its bytes, little-endian as on the GPU.
    pub bytes: Vec<u8>,
    /// Its alignment.
    pub align: u32,
}

impl Arg {
    /// A view argument: 16 bytes, align 8.
    pub fn view(name: &'static str, v: View) -> Arg {
        let mut bytes = v.addr.to_le_bytes().to_vec();
        bytes.extend_from_slice(&v.len.to_le_bytes());
        Arg {
            name,
            bytes,
            align: 8,
        }
    }

    /// A `#[repr(C)]` parameter struct of 4-byte fields: align 4.
    pub fn params<P: ParamStruct>(p: &P) -> Arg {
        let bytes: Vec<u8> = p.words().iter().flat_map(|w| w.to_le_bytes()).collect();
        debug_assert_eq!(bytes.len(), std::mem::size_of::<P>());
        Arg {
            name: "params",
            bytes,
            align: std::mem::align_of::<P>() as u32,
        }
    }
}

/// A kernel parameter struct made only of 4-byte fields (`u32`, `f32`, `#[repr(u32)]`
/// enums), serialised field by field in declaration order (its `#[repr(C)]` layout).
pub trait ParamStruct {
    /// The fields as 32-bit words.
    fn words(&self) -> Vec<u32>;
}

impl ParamStruct for ForwardParams {
    fn words(&self) -> Vec<u32> {
        vec![
            self.n,
            self.d,
            self.c,
            self.margin as u32,
            self.mode as u32,
            self.m,
            self.k.to_bits(),
            self.beta.to_bits(),
            self.s.to_bits(),
            self.m1.to_bits(),
            self.m2.to_bits(),
            self.m3.to_bits(),
        ]
    }
}

impl ParamStruct for RowScaleParams {
    fn words(&self) -> Vec<u32> {
        vec![self.rows, self.d, self.factor.to_bits()]
    }
}

impl ParamStruct for RowNormsParams {
    fn words(&self) -> Vec<u32> {
        vec![self.n, self.d, self.c]
    }
}

impl ParamStruct for GradParams {
    fn words(&self) -> Vec<u32> {
        vec![self.n, self.d, self.c]
    }
}

impl ParamStruct for SplitKParams {
    fn words(&self) -> Vec<u32> {
        let mut w = self.grad.words();
        w.extend([self.chunk, self.splits]);
        w
    }
}

// The serialisations above list every field: a field added to a struct changes its size
// and fails here at compile time until `words` lists it too.
const _: () = assert!(std::mem::size_of::<ForwardParams>() == 12 * 4);
const _: () = assert!(std::mem::size_of::<RowScaleParams>() == 3 * 4);
const _: () = assert!(std::mem::size_of::<RowNormsParams>() == 3 * 4);
const _: () = assert!(std::mem::size_of::<GradParams>() == 3 * 4);
const _: () = assert!(std::mem::size_of::<SplitKParams>() == 5 * 4);

/// Packed parameter bytes and the offset of each argument in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    /// The `.param` space of the launch.
    pub bytes: Vec<u8>,
    /// Byte offset of each argument.
    pub offsets: Vec<usize>,
}

/// Lays `args` out as the kernel's `.param` space, after checking them against the
/// `.entry`'s declared parameters: same count, and per argument the same size and
/// alignment. A mismatch (a reordered, missing or resized argument) is an error naming
/// the kernel, the parameter and both sides.
pub fn pack(kernel: &str, args: &[Arg], declared: &[ParamDecl]) -> Result<Packed> {
    let fail = |message: String| Error::Backend {
        backend: "abi",
        message: format!("{kernel}: {message}"),
    };
    if args.len() != declared.len() {
        return Err(fail(format!(
            "the host passes {} arguments, the PTX .entry declares {} parameters",
            args.len(),
            declared.len()
        )));
    }
    let mut bytes = Vec::new();
    let mut offsets = Vec::with_capacity(args.len());
    for (i, (a, d)) in args.iter().zip(declared).enumerate() {
        if a.bytes.len() != d.size as usize || a.align != d.align {
            return Err(fail(format!(
                "argument {i} ({}) is {} bytes aligned to {}, but parameter {i} of the \
                 .entry is {} bytes aligned to {}",
                a.name,
                a.bytes.len(),
                a.align,
                d.size,
                d.align
            )));
        }
        let off = bytes.len().div_ceil(a.align as usize) * a.align as usize;
        bytes.resize(off, 0);
        offsets.push(off);
        bytes.extend_from_slice(&a.bytes);
    }
    Ok(Packed { bytes, offsets })
}

/// Errors unless every `(name, view length, length the parameters imply)` agrees: the
/// kernels index without bounds checks on the GPU.
fn check_lengths(kernel: &str, args: &[(&str, u64, u64)]) -> Result<()> {
    for &(name, have, want) in args {
        if have != want {
            return Err(Error::Backend {
                backend: "abi",
                message: format!(
                    "{kernel}: argument {name} holds {have} elements but the launch \
                     parameters need {want}"
                ),
            });
        }
    }
    Ok(())
}

/// Buffers of `row_norms`.
#[derive(Clone, Copy, Debug)]
pub struct RowNormsViews {
    /// N×D inputs.
    pub x: View,
    /// C×D weights.
    pub w: View,
    /// N f64 outputs.
    pub x_norms: View,
    /// C f64 outputs.
    pub w_norms: View,
}

/// `row_norms(params, x, w, x_norms, w_norms)`, lengths checked against the parameters.
pub fn row_norms_args(p: &RowNormsParams, v: &RowNormsViews) -> Result<Vec<Arg>> {
    let (n, d, c) = (u64::from(p.n), u64::from(p.d), u64::from(p.c));
    check_lengths(
        kernels_gpu::params::ROW_NORMS_KERNEL,
        &[
            ("x", v.x.len, n * d),
            ("w", v.w.len, c * d),
            ("x_norms", v.x_norms.len, n),
            ("w_norms", v.w_norms.len, c),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("x", v.x),
        Arg::view("w", v.w),
        Arg::view("x_norms", v.x_norms),
        Arg::view("w_norms", v.w_norms),
    ])
}

/// Buffers of `margin_forward`.
#[derive(Clone, Copy, Debug)]
pub struct ForwardViews {
    /// N×D inputs.
    pub x: View,
    /// C×D weights.
    pub w: View,
    /// N labels (u32).
    pub labels: View,
    /// N f64 norms (read only by L-Softmax training; else [`View::EMPTY`]).
    pub x_norms: View,
    /// C f64 norms (same).
    pub w_norms: View,
    /// N×C output.
    pub out: View,
    /// N cache `p`.
    pub p: View,
    /// N cache `α` scale.
    pub alpha_scale: View,
    /// N cache `γ` scale.
    pub gamma_scale: View,
}

/// Whether these forward parameters make the kernel read `x_norms`/`w_norms` (the
/// kernel-side twin of [`super::launch::needs_row_norms`]).
pub fn reads_norms(p: &ForwardParams) -> bool {
    use kernels_gpu::params::{KernelMode, MarginKind};
    (p.margin == MarginKind::LSoftmax && p.mode == KernelMode::Train) || p.margin.is_normalised()
}

/// Buffers of `row_scale` (`out = factor·v/‖v‖` per row) and `row_project` (its backward,
/// `dv` from `dv_scaled`).
#[derive(Clone, Copy, Debug)]
pub struct RowScaleViews {
    /// rows×D input rows.
    pub v: View,
    /// rows f64 norms.
    pub norms: View,
    /// rows×D gradient of the scaled rows (`row_project` only; else [`View::EMPTY`]).
    pub dv_scaled: View,
    /// rows×D output.
    pub out: View,
}

/// `row_scale(params, v, norms, out)`, lengths checked against the parameters.
pub fn row_scale_args(p: &RowScaleParams, v: &RowScaleViews) -> Result<Vec<Arg>> {
    let (r, d) = (u64::from(p.rows), u64::from(p.d));
    check_lengths(
        kernels_gpu::params::ROW_SCALE_KERNEL,
        &[
            ("v", v.v.len, r * d),
            ("norms", v.norms.len, r),
            ("out", v.out.len, r * d),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("v", v.v),
        Arg::view("norms", v.norms),
        Arg::view("out", v.out),
    ])
}

/// `row_project(params, v, norms, dv_scaled, dv)`, lengths checked against the parameters.
pub fn row_project_args(p: &RowScaleParams, v: &RowScaleViews) -> Result<Vec<Arg>> {
    let (r, d) = (u64::from(p.rows), u64::from(p.d));
    check_lengths(
        kernels_gpu::params::ROW_PROJECT_KERNEL,
        &[
            ("v", v.v.len, r * d),
            ("norms", v.norms.len, r),
            ("dv_scaled", v.dv_scaled.len, r * d),
            ("dv", v.out.len, r * d),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("v", v.v),
        Arg::view("norms", v.norms),
        Arg::view("dv_scaled", v.dv_scaled),
        Arg::view("dv", v.out),
    ])
}

/// `margin_forward(params, x, w, labels, x_norms, w_norms, out, p, alpha_scale,
/// gamma_scale)`, lengths checked against the parameters.
pub fn forward_args(p: &ForwardParams, v: &ForwardViews) -> Result<Vec<Arg>> {
    let (n, d, c) = (u64::from(p.n), u64::from(p.d), u64::from(p.c));
    let norm_len = |len: u64| if reads_norms(p) { len } else { 0 };
    check_lengths(
        kernels_gpu::params::FORWARD_KERNEL,
        &[
            ("x", v.x.len, n * d),
            ("w", v.w.len, c * d),
            ("labels", v.labels.len, n),
            ("x_norms", v.x_norms.len, norm_len(n)),
            ("w_norms", v.w_norms.len, norm_len(c)),
            ("out", v.out.len, n * c),
            ("p", v.p.len, n),
            ("alpha_scale", v.alpha_scale.len, n),
            ("gamma_scale", v.gamma_scale.len, n),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("x", v.x),
        Arg::view("w", v.w),
        Arg::view("labels", v.labels),
        Arg::view("x_norms", v.x_norms),
        Arg::view("w_norms", v.w_norms),
        Arg::view("out", v.out),
        Arg::view("p", v.p),
        Arg::view("alpha_scale", v.alpha_scale),
        Arg::view("gamma_scale", v.gamma_scale),
    ])
}

/// Buffers of the two gradient kernels.
#[derive(Clone, Copy, Debug)]
pub struct GradViews {
    /// N×C upstream gradient.
    pub g: View,
    /// N×D inputs.
    pub x: View,
    /// C×D weights.
    pub w: View,
    /// N labels.
    pub labels: View,
    /// N cache `p`.
    pub p: View,
    /// N `α` (input grad) or `γ` (weight grad) scale.
    pub scale: View,
    /// The output: N×D `dx` or C×D `dw`.
    pub out: View,
}

/// `margin_input_grad(params, g, w, x, labels, p, alpha_scale, dx)`.
pub fn input_grad_args(p: &GradParams, v: &GradViews) -> Result<Vec<Arg>> {
    let (n, d, c) = (u64::from(p.n), u64::from(p.d), u64::from(p.c));
    check_lengths(
        kernels_gpu::params::INPUT_GRAD_KERNEL,
        &[
            ("g", v.g.len, n * c),
            ("w", v.w.len, c * d),
            ("x", v.x.len, n * d),
            ("labels", v.labels.len, n),
            ("p", v.p.len, n),
            ("alpha_scale", v.scale.len, n),
            ("dx", v.out.len, n * d),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("g", v.g),
        Arg::view("w", v.w),
        Arg::view("x", v.x),
        Arg::view("labels", v.labels),
        Arg::view("p", v.p),
        Arg::view("alpha_scale", v.scale),
        Arg::view("dx", v.out),
    ])
}

/// `margin_weight_grad(params, g, x, w, labels, p, gamma_scale, dw)`.
pub fn weight_grad_args(p: &GradParams, v: &GradViews) -> Result<Vec<Arg>> {
    let (n, d, c) = (u64::from(p.n), u64::from(p.d), u64::from(p.c));
    check_lengths(
        kernels_gpu::params::WEIGHT_GRAD_KERNEL,
        &[
            ("g", v.g.len, n * c),
            ("x", v.x.len, n * d),
            ("w", v.w.len, c * d),
            ("labels", v.labels.len, n),
            ("p", v.p.len, n),
            ("gamma_scale", v.scale.len, n),
            ("dw", v.out.len, c * d),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("g", v.g),
        Arg::view("x", v.x),
        Arg::view("w", v.w),
        Arg::view("labels", v.labels),
        Arg::view("p", v.p),
        Arg::view("gamma_scale", v.scale),
        Arg::view("dw", v.out),
    ])
}

/// Buffers of the split-K input gradient (both of its kernels).
#[derive(Clone, Copy, Debug)]
pub struct SplitKViews {
    /// N×C upstream gradient.
    pub g: View,
    /// N×D inputs.
    pub x: View,
    /// C×D weights.
    pub w: View,
    /// N labels.
    pub labels: View,
    /// N cache `p`.
    pub p: View,
    /// N `α` scale.
    pub alpha_scale: View,
    /// `splits·N·D` partial sums.
    pub partial: View,
    /// N×D output.
    pub dx: View,
}

/// `margin_input_grad_splitk(params, g, w, labels, p, partial)`.
pub fn splitk_partial_args(p: &SplitKParams, v: &SplitKViews) -> Result<Vec<Arg>> {
    let q = &p.grad;
    let (n, d, c) = (u64::from(q.n), u64::from(q.d), u64::from(q.c));
    check_lengths(
        kernels_gpu::params::SPLITK_KERNEL,
        &[
            ("g", v.g.len, n * c),
            ("w", v.w.len, c * d),
            ("labels", v.labels.len, n),
            ("p", v.p.len, n),
            ("partial", v.partial.len, u64::from(p.splits) * n * d),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("g", v.g),
        Arg::view("w", v.w),
        Arg::view("labels", v.labels),
        Arg::view("p", v.p),
        Arg::view("partial", v.partial),
    ])
}

/// `margin_input_grad_splitk_reduce(params, g, x, labels, alpha_scale, partial, dx)`.
pub fn splitk_reduce_args(p: &SplitKParams, v: &SplitKViews) -> Result<Vec<Arg>> {
    let q = &p.grad;
    let (n, d, c) = (u64::from(q.n), u64::from(q.d), u64::from(q.c));
    check_lengths(
        kernels_gpu::params::SPLITK_REDUCE_KERNEL,
        &[
            ("g", v.g.len, n * c),
            ("x", v.x.len, n * d),
            ("labels", v.labels.len, n),
            ("alpha_scale", v.alpha_scale.len, n),
            ("partial", v.partial.len, u64::from(p.splits) * n * d),
            ("dx", v.dx.len, n * d),
        ],
    )?;
    Ok(vec![
        Arg::params(p),
        Arg::view("g", v.g),
        Arg::view("x", v.x),
        Arg::view("labels", v.labels),
        Arg::view("alpha_scale", v.alpha_scale),
        Arg::view("partial", v.partial),
        Arg::view("dx", v.dx),
    ])
}

/// One launch's arguments, typed: the kernel's parameter struct and its buffers. A device
/// that hands the kernel bytes (CUDA, the PTX interpreter) packs [`KernelArgs::args`]; the
/// emulator calls the kernel's Rust function with the typed values.
#[derive(Clone, Copy, Debug)]
pub enum KernelArgs {
    /// `row_norms`.
    RowNorms(RowNormsParams, RowNormsViews),
    /// `row_scale`.
    RowScale(RowScaleParams, RowScaleViews),
    /// `row_project`.
    RowProject(RowScaleParams, RowScaleViews),
    /// `margin_forward*`.
    Forward(ForwardParams, ForwardViews),
    /// `margin_input_grad*` (not split).
    InputGrad(GradParams, GradViews),
    /// `margin_weight_grad*`.
    WeightGrad(GradParams, GradViews),
    /// `margin_input_grad_splitk`.
    SplitKPartial(SplitKParams, SplitKViews),
    /// `margin_input_grad_splitk_reduce`.
    SplitKReduce(SplitKParams, SplitKViews),
}

impl KernelArgs {
    /// The argument list in the kernel's parameter order, every buffer length checked
    /// against the parameters (the `*_args` builders of this module).
    pub fn args(&self) -> Result<Vec<Arg>> {
        match self {
            KernelArgs::RowNorms(p, v) => row_norms_args(p, v),
            KernelArgs::RowScale(p, v) => row_scale_args(p, v),
            KernelArgs::RowProject(p, v) => row_project_args(p, v),
            KernelArgs::Forward(p, v) => forward_args(p, v),
            KernelArgs::InputGrad(p, v) => input_grad_args(p, v),
            KernelArgs::WeightGrad(p, v) => weight_grad_args(p, v),
            KernelArgs::SplitKPartial(p, v) => splitk_partial_args(p, v),
            KernelArgs::SplitKReduce(p, v) => splitk_reduce_args(p, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(size: u32, align: u32) -> ParamDecl {
        ParamDecl { size, align }
    }

    #[test]
    fn views_and_structs_pack_in_declaration_order() {
        let p = GradParams { n: 1, d: 2, c: 3 };
        let args = vec![
            Arg::params(&p),
            Arg::view(
                "a",
                View {
                    addr: 0x1000,
                    len: 7,
                },
            ),
        ];
        let packed = pack("k", &args, &[decl(12, 4), decl(16, 8)]).unwrap();
        assert_eq!(packed.offsets, [0, 16]);
        assert_eq!(packed.bytes.len(), 32);
        assert_eq!(&packed.bytes[..12], &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&packed.bytes[16..24], &0x1000u64.to_le_bytes());
        assert_eq!(&packed.bytes[24..], &7u64.to_le_bytes());
    }

    #[test]
    fn planted_order_size_and_alignment_mismatches_fail() {
        let p = GradParams { n: 1, d: 2, c: 3 };
        let v = Arg::view("a", View::EMPTY);
        // Order: a view where the struct belongs.
        let e = pack(
            "k",
            &[v.clone(), Arg::params(&p)],
            &[decl(12, 4), decl(16, 8)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("argument 0 (a) is 16 bytes aligned to 8"), "{e}");
        // Size: the PTX struct has a field the host lacks.
        let e = pack("k", &[Arg::params(&p)], &[decl(16, 4)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameter 0 of the .entry is 16 bytes"), "{e}");
        // Alignment.
        let e = pack("k", std::slice::from_ref(&v), &[decl(16, 4)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("aligned to 4"), "{e}");
        // Count.
        let e = pack("k", &[v], &[]).unwrap_err().to_string();
        assert!(e.contains("passes 1 arguments"), "{e}");
    }

    #[test]
    fn forward_params_serialise_in_field_order() {
        let p = ForwardParams {
            n: 1,
            d: 2,
            c: 3,
            margin: kernels_gpu::params::MarginKind::LSoftmax,
            mode: kernels_gpu::params::KernelMode::Infer,
            m: 4,
            k: 0.5,
            beta: 2.0,
            s: 30.0,
            m1: 1.5,
            m2: 0.25,
            m3: 0.125,
        };
        assert_eq!(
            p.words(),
            [
                1,
                2,
                3,
                2,
                1,
                4,
                0.5f32.to_bits(),
                2.0f32.to_bits(),
                30.0f32.to_bits(),
                1.5f32.to_bits(),
                0.25f32.to_bits(),
                0.125f32.to_bits()
            ]
        );
        let r = RowScaleParams {
            rows: 7,
            d: 5,
            factor: 30.0,
        };
        assert_eq!(r.words(), [7, 5, 30.0f32.to_bits()]);
    }

    #[test]
    fn lengths_are_checked_against_the_parameters() {
        let p = GradParams { n: 2, d: 3, c: 4 };
        let v = |len| View { addr: 0x10, len };
        let views = GradViews {
            g: v(8),
            x: v(6),
            w: v(12),
            labels: v(2),
            p: v(2),
            scale: v(2),
            out: v(5),
        };
        let e = input_grad_args(&p, &views).unwrap_err().to_string();
        assert!(
            e.contains("dx holds 5 elements but the launch parameters need 6"),
            "{e}"
        );
    }
}
