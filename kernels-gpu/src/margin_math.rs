//! Device-side margin math: `ψ`, the forward epilogue at the target logit, and the two
//! floating-point primitives (`fma`, `sqrt`) that `core` lacks on stable.
//!
//! The epilogue follows `lsoftmax_host::reference::fast` operation for operation (f64 from
//! the f32 logit and the f64 norms, same evaluation order, same degenerate-row rule), so
//! the emulated kernels and the CPU backend differ only by the GEMM's summation order.

use crate::params::{ForwardParams, MarginKind};

/// `a·b + c` rounded once (`fma.rn.f32` on the GPU, the same operation on the host, so
/// the emulator reproduces the device's arithmetic bit for bit).
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_arch = "nvptx64")]
    {
        core::f32::math::mul_add(a, b, c)
    }
    #[cfg(not(target_arch = "nvptx64"))]
    {
        a.mul_add(b, c)
    }
}

/// `a·b + c` rounded once, f64.
#[inline(always)]
pub fn fma64(a: f64, b: f64, c: f64) -> f64 {
    #[cfg(target_arch = "nvptx64")]
    {
        core::f64::math::mul_add(a, b, c)
    }
    #[cfg(not(target_arch = "nvptx64"))]
    {
        a.mul_add(b, c)
    }
}

/// Correctly rounded `√v` (`sqrt.rn.f64` on the GPU).
#[inline(always)]
pub fn sqrt64(v: f64) -> f64 {
    #[cfg(target_arch = "nvptx64")]
    {
        core::f64::math::sqrt(v)
    }
    #[cfg(not(target_arch = "nvptx64"))]
    {
        v.sqrt()
    }
}

/// Rows with `‖x_i‖·‖w_{y_i}‖` below this use `g = z` (the smallest normal f32, as in the
/// host reference: below it `b/a` or `a/b` can overflow f32, at 0 the angle is undefined).
pub const DEGENERATE_NORM_PRODUCT: f64 = f32::MIN_POSITIVE as f64;

/// `cos(jπ/m)` for `j = 1..m` as the host computes it (`(j·π/m).cos()` in f64; bit
/// patterns checked by a test): the interval boundaries of `ψ`. `core` has no `cos`, and
/// using the host's exact values keeps the interval choice identical to the reference.
const BOUNDS_M2: [f64; 1] = [f64::from_bits(0x3c91_a626_3314_5c07)];
const BOUNDS_M3: [f64; 2] = [
    f64::from_bits(0x3fe0_0000_0000_0001),
    f64::from_bits(0xbfdf_ffff_ffff_fffc),
];
const BOUNDS_M4: [f64; 3] = [
    f64::from_bits(0x3fe6_a09e_667f_3bcd),
    f64::from_bits(0x3c91_a626_3314_5c07),
    f64::from_bits(0xbfe6_a09e_667f_3bcc),
];

/// `(ψ(c), dψ/dc)` for `c = cos θ` and margin `m ∈ 1..=4`: `k` = the number of boundaries
/// `cos(jπ/m)` above `c` (so `θ ∈ [kπ/m, (k+1)π/m]`), `ψ = (−1)^k·T_m(c) − 2k`,
/// `dψ/dc = (−1)^k·T_m'(c)`, with `T_1 = c`, `T_2 = 2c² − 1`, `T_3 = 4c³ − 3c`,
/// `T_4 = 8c⁴ − 8c² + 1`.
#[inline(always)]
pub fn psi(m: u32, c: f64) -> (f64, f64) {
    let bounds: &[f64] = match m {
        1 => &[],
        2 => &BOUNDS_M2,
        3 => &BOUNDS_M3,
        _ => &BOUNDS_M4,
    };
    let mut k = 0u32;
    for &b in bounds {
        if c < b {
            k += 1;
        }
    }
    let (t, dt) = match m {
        1 => (c, 1.0),
        2 => (2.0 * c * c - 1.0, 4.0 * c),
        3 => (4.0 * c * c * c - 3.0 * c, 12.0 * c * c - 3.0),
        _ => {
            let c2 = c * c;
            (8.0 * c2 * c2 - 8.0 * c2 + 1.0, 32.0 * c2 * c - 16.0 * c)
        }
    };
    let sign = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
    (sign * t - 2.0 * k as f64, sign * dt)
}

/// The margin at one target logit, as the kernels need it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetEpilogue {
    /// New target logit `g`.
    pub g: f32,
    /// `p` (the factor of `G_{i,y_i}` in `G'`).
    pub p: f32,
    /// `q·b/a`.
    pub alpha_scale: f32,
    /// `q·a/b`.
    pub gamma_scale: f32,
}

impl TargetEpilogue {
    /// `g = z`, `p = 1`, no norm terms: the plain layer, inference, degenerate rows.
    #[inline(always)]
    pub fn plain(z: f32) -> Self {
        TargetEpilogue {
            g: z,
            p: 1.0,
            alpha_scale: 0.0,
            gamma_scale: 0.0,
        }
    }
}

/// Training-mode margin at target logit `z` with `a = ‖x_i‖`, `b = ‖w_{y_i}‖` (only read
/// by L-Softmax): `g`, `p` and the cache scales `q·b/a`, `q·a/b`, where
/// `g = (β·z + a·b·ψ(c))/(1 + β)`, `p = (β + ψ'(c))/(1 + β)`, `q = (ψ(c) − c·ψ'(c))/(1 + β)`,
/// `c = clamp(z/(a·b), −1, 1)`; simplified: `g = k·z`, `p = k` for `z > 0`.
#[inline(always)]
pub fn train_epilogue(
    margin: MarginKind,
    k: f32,
    m: u32,
    beta: f32,
    z: f32,
    a: f64,
    b: f64,
) -> TargetEpilogue {
    match margin {
        // The cosine kinds' epilogue needs `S` and the margins: [`target_epilogue`].
        MarginKind::Plain | MarginKind::CosFace | MarginKind::ArcFace | MarginKind::Combined => {
            TargetEpilogue::plain(z)
        }
        MarginKind::Simplified => {
            if z > 0.0 {
                TargetEpilogue {
                    g: k * z,
                    p: k,
                    alpha_scale: 0.0,
                    gamma_scale: 0.0,
                }
            } else {
                TargetEpilogue::plain(z)
            }
        }
        MarginKind::LSoftmax | MarginKind::SphereFace => {
            let ab = a * b;
            if ab < DEGENERATE_NORM_PRODUCT {
                return TargetEpilogue::plain(z);
            }
            let zf = z as f64;
            let beta = beta as f64;
            let c = (zf / ab).clamp(-1.0, 1.0);
            let (psi, dpsi) = psi(m, c);
            let g = (beta * zf + ab * psi) / (1.0 + beta);
            let p = (beta + dpsi) / (1.0 + beta);
            let q = (psi - c * dpsi) / (1.0 + beta);
            TargetEpilogue {
                g: g as f32,
                p: p as f32,
                alpha_scale: (q * b / a) as f32,
                gamma_scale: (q * a / b) as f32,
            }
        }
    }
}

/// `ε` of the angular margins' clamp of `c = cos θ`: ArcFace uses `min(c, 1 − ε)`, the
/// combined margin `clamp(c, −1 + ε, 1 − ε)`. `dh/dc` grows like `1/sin θ`; at the clamp
/// it is at most `A/√(2ε − ε²) ≈ 2236·A`, and beyond it `h` is constant (derivative 0).
pub const ANGLE_CLAMP: f64 = 1e-7;

const PI: f64 = core::f64::consts::PI;
const HALF_PI: f64 = core::f64::consts::FRAC_PI_2;

/// `(sin t, cos t)` for `|t| ≤ π/2` (a little beyond is fine) by their Taylor series to
/// the `t^25` and `t^24` terms, in Horner form: truncation below `(π/2)^26/26! ≈ 3e-22`.
/// `core` has no `sin`/`cos`, and the GPU's own are f32 approximations.
#[inline(always)]
pub fn sin_cos_small(t: f64) -> (f64, f64) {
    let t2 = t * t;
    let mut s = 1.0f64;
    let mut c = 1.0f64;
    let mut n = 12u32;
    while n > 0 {
        let k = (2 * n) as f64;
        s = 1.0 - t2 / (k * (k + 1.0)) * s;
        c = 1.0 - t2 / ((k - 1.0) * k) * c;
        n -= 1;
    }
    (t * s, c)
}

/// `(cos r, sin r)` for `r ∈ [0, π]` (by `t = r − π/2`).
#[inline(always)]
pub fn cos_sin_half_turn(r: f64) -> (f64, f64) {
    let (st, ct) = sin_cos_small(r - HALF_PI);
    (-st, ct)
}

/// `asin x` for `|x| ≤ 1/2`: its series `Σ (2n)!/(4ⁿ (n!)² (2n + 1))·x^(2n+1)` to 30 terms
/// (the next is below `0.25^30 ≈ 1e-18` of `x`).
#[inline(always)]
fn asin_small(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0u32;
    while n < 30 {
        let a = (2 * n + 1) as f64;
        term *= x2 * a * a / ((a + 1.0) * (a + 2.0));
        sum += term;
        n += 1;
    }
    sum
}

/// `acos c` for `c ∈ [−1, 1]`: `π/2 − asin c` on `|c| ≤ 1/2`, else by the half-angle
/// identities `acos c = 2·asin √((1 − c)/2)` and `acos c = π − 2·asin √((1 + c)/2)`.
#[inline(always)]
pub fn acos(c: f64) -> f64 {
    if c > 0.5 {
        2.0 * asin_small(sqrt64((1.0 - c) * 0.5))
    } else if c < -0.5 {
        PI - 2.0 * asin_small(sqrt64((1.0 + c) * 0.5))
    } else {
        HALF_PI - asin_small(c)
    }
}

/// ArcFace's target per unit scale, `(h, dh/dc)` at `c = cos θ` with margin `M`:
/// `c₁ = min(c, 1 − ε)`; `h = cos(θ₁ + M) = c₁·cos M − sin θ₁·sin M` where
/// `c₁ > cos(π − M) = −cos M`, else insightface's fallback `h = c₁ − M·sin M`;
/// `dh/dc = cos M + c₁·sin M / sin θ₁` resp. 1, and 0 above the clamp (`c > 1 − ε`).
#[inline(always)]
pub fn arcface_target(c: f64, m: f64) -> (f64, f64) {
    let (cos_m, sin_m) = cos_sin_half_turn(m);
    let clamped = c > 1.0 - ANGLE_CLAMP;
    let c1 = if clamped { 1.0 - ANGLE_CLAMP } else { c };
    if c1 > -cos_m {
        let sin_t = sqrt64((1.0 - c1) * (1.0 + c1));
        let h = c1 * cos_m - sin_t * sin_m;
        let dh = if clamped {
            0.0
        } else {
            cos_m + c1 * sin_m / sin_t
        };
        (h, dh)
    } else {
        (c1 - m * sin_m, 1.0)
    }
}

/// The combined margin's target per unit scale, `(h, dh/dc)` at `c = cos θ`:
/// `c₁ = clamp(c, −1 + ε, 1 − ε)`, `θ = acos c₁`, `φ = A·θ + B`, `k = ⌊φ/π⌋`,
/// `r = φ − kπ`, `h = ψ(φ) − C = cos r − 2k − C` (`ψ(φ) = (−1)^k cos φ − 2k`), and
/// `dh/dc = A·sin r / sin θ` (0 outside the clamp).
#[inline(always)]
pub fn combined_target(c: f64, a: f64, b: f64, cm: f64) -> (f64, f64) {
    let lo = -1.0 + ANGLE_CLAMP;
    let hi = 1.0 - ANGLE_CLAMP;
    let clamped = !(c >= lo && c <= hi);
    let c1 = if c > hi {
        hi
    } else if c < lo {
        lo
    } else {
        c
    };
    let theta = acos(c1);
    let sin_t = sqrt64((1.0 - c1) * (1.0 + c1));
    let phi = a * theta + b;
    // φ ≥ 0 (A > 0, B ≥ 0), so truncation is the floor.
    let k = (phi / PI) as u32;
    let r = phi - k as f64 * PI;
    let (cos_r, sin_r) = cos_sin_half_turn(r);
    let h = cos_r - 2.0 * k as f64 - cm;
    let dh = if clamped { 0.0 } else { a * sin_r / sin_t };
    (h, dh)
}

/// The target epilogue of every kind, training mode: [`train_epilogue`] for the
/// unnormalised kinds, else the normalised kinds on `z̃ = x̃_i·ŵ_{y_i}` with the raw norms
/// `a = ‖x_i‖`, `b = ‖w_{y_i}‖`:
/// - degenerate (`a` or `b` below [`DEGENERATE_NORM_PRODUCT`]): plain, `g = z̃`;
/// - CosFace, ArcFace, combined: `c = z̃/S`, `g = S·h(c)`, `p = h'(c)`, no norm terms
///   (the operands are already normalised; the normalisation's backward is separate);
/// - SphereFace: L-Softmax's `g, p, q` at `z̃` with `a` and `b = 1`.
#[inline(always)]
pub fn target_epilogue(p: &ForwardParams, z: f32, a: f64, b: f64) -> TargetEpilogue {
    if !p.margin.is_normalised() {
        return train_epilogue(p.margin, p.k, p.m, p.beta, z, a, b);
    }
    if a < DEGENERATE_NORM_PRODUCT || b < DEGENERATE_NORM_PRODUCT {
        return TargetEpilogue::plain(z);
    }
    if p.margin == MarginKind::SphereFace {
        return train_epilogue(MarginKind::LSoftmax, p.k, p.m, p.beta, z, a, 1.0);
    }
    let s = p.s as f64;
    let c = z as f64 / s;
    let (h, dh) = match p.margin {
        MarginKind::CosFace => (c - p.m3 as f64, 1.0),
        MarginKind::ArcFace => arcface_target(c, p.m2 as f64),
        _ => combined_target(c, p.m1 as f64, p.m2 as f64, p.m3 as f64),
    };
    TargetEpilogue {
        g: (s * h) as f32,
        p: dh as f32,
        alpha_scale: 0.0,
        gamma_scale: 0.0,
    }
}

#[cfg(all(test, not(target_arch = "nvptx64")))]
mod tests {
    use super::*;

    /// The boundary table holds exactly the host's `cos(jπ/m)`.
    #[test]
    fn bounds_are_the_hosts_cosines() {
        let tables: [&[f64]; 3] = [&BOUNDS_M2, &BOUNDS_M3, &BOUNDS_M4];
        for (m, table) in (2u32..=4).zip(tables) {
            for (j, &b) in (1..m).zip(table) {
                let want = (f64::from(j) * core::f64::consts::PI / f64::from(m)).cos();
                assert_eq!(b.to_bits(), want.to_bits(), "m = {m}, j = {j}");
            }
        }
    }

    /// ψ(cos θ) = (−1)^k cos(mθ) − 2k, evaluated by angle, at points inside every interval.
    #[test]
    fn psi_matches_its_angle_form() {
        for m in 1u32..=4 {
            for step in 0..=64 {
                let theta = core::f64::consts::PI * f64::from(step) / 64.0;
                let kk = ((theta * f64::from(m) / core::f64::consts::PI).floor() as u32).min(m - 1);
                let sign = if kk.is_multiple_of(2) { 1.0 } else { -1.0 };
                let want = sign * (f64::from(m) * theta).cos() - 2.0 * f64::from(kk);
                let (got, _) = psi(m, theta.cos());
                assert!(
                    (got - want).abs() < 1e-12,
                    "m {m} θ {theta}: {got} vs {want}"
                );
            }
        }
    }

    /// ψ' is the derivative of ψ: central differences away from the boundaries.
    #[test]
    fn dpsi_is_the_derivative() {
        for m in 1u32..=4 {
            for &c in &[-0.93, -0.6, -0.31, -0.05, 0.12, 0.4, 0.66, 0.95] {
                let h = 1e-6;
                let fd = (psi(m, c + h).0 - psi(m, c - h).0) / (2.0 * h);
                let (_, d) = psi(m, c);
                assert!((fd - d).abs() < 1e-5, "m {m} c {c}: {fd} vs {d}");
            }
        }
    }

    #[test]
    fn series_match_std() {
        for i in 0..=2000 {
            let c = -1.0 + 2.0 * f64::from(i) / 2000.0;
            assert!(
                (acos(c) - c.acos()).abs() < 1e-15,
                "acos {c}: {} vs {}",
                acos(c),
                c.acos()
            );
            let r = core::f64::consts::PI * f64::from(i) / 2000.0;
            let (co, si) = cos_sin_half_turn(r);
            assert!(
                (co - r.cos()).abs() < 1e-15 && (si - r.sin()).abs() < 1e-15,
                "r {r}"
            );
        }
    }

    #[test]
    fn angular_targets_match_their_angle_forms() {
        for i in 1..1000 {
            let theta = core::f64::consts::PI * f64::from(i) / 1000.0;
            let c = theta.cos();
            if !(-1.0 + ANGLE_CLAMP..=1.0 - ANGLE_CLAMP).contains(&c) {
                continue;
            }
            let m = 0.5f64;
            let (h, _) = arcface_target(c, m);
            let want = if theta + m < core::f64::consts::PI {
                (theta + m).cos()
            } else {
                c - m * m.sin()
            };
            // Near θ = π − M the branch test on c may differ from the one on θ.
            if (theta + m - core::f64::consts::PI).abs() > 1e-12 {
                assert!((h - want).abs() < 1e-14, "arcface θ {theta}: {h} vs {want}");
            }
            let (h, _) = combined_target(c, 1.5, 0.3, 0.2);
            let phi = 1.5 * theta + 0.3;
            let k = (phi / core::f64::consts::PI).floor();
            let sign = if (k as u32).is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            let want = sign * phi.cos() - 2.0 * k - 0.2;
            assert!(
                (h - want).abs() < 1e-13,
                "combined θ {theta}: {h} vs {want}"
            );
        }
    }

    #[test]
    fn angular_derivatives_are_the_derivatives() {
        for &c in &[-0.95, -0.7, -0.3, 0.05, 0.4, 0.8, 0.97] {
            let hh = 1e-6;
            for (name, f) in [
                (
                    "arcface",
                    (|c| arcface_target(c, 0.5)) as fn(f64) -> (f64, f64),
                ),
                ("combined", |c| combined_target(c, 1.35, 0.25, 0.1)),
                ("combined A=3", |c| combined_target(c, 3.0, 0.0, 0.0)),
            ] {
                let fd = (f(c + hh).0 - f(c - hh).0) / (2.0 * hh);
                let d = f(c).1;
                assert!(
                    (fd - d).abs() < 1e-6 * (1.0 + d.abs()),
                    "{name} c {c}: {fd} vs {d}"
                );
            }
        }
        // Beyond the clamp the target is constant and its derivative 0.
        assert_eq!(arcface_target(1.0, 0.5).1, 0.0);
        assert_eq!(
            arcface_target(1.0, 0.5).0,
            arcface_target(1.0 - ANGLE_CLAMP, 0.5).0
        );
        assert_eq!(combined_target(-1.0, 2.0, 0.1, 0.0).1, 0.0);
    }

    /// Degenerate rows and the simplified kink follow the host convention.
    #[test]
    fn epilogue_conventions() {
        let e = train_epilogue(MarginKind::LSoftmax, 1.0, 4, 0.0, 0.0, 0.0, 2.0);
        assert_eq!(e, TargetEpilogue::plain(0.0));
        let e = train_epilogue(MarginKind::Simplified, 0.5, 1, 0.0, 2.0, 0.0, 0.0);
        assert_eq!((e.g, e.p), (1.0, 0.5));
        let e = train_epilogue(MarginKind::Simplified, 0.5, 1, 0.0, -2.0, 0.0, 0.0);
        assert_eq!(e, TargetEpilogue::plain(-2.0));
        // At the kink z = 0 the plain branch: p = 1, g = z.
        let e = train_epilogue(MarginKind::Simplified, 0.5, 1, 0.0, 0.0, 0.0, 0.0);
        assert_eq!(e, TargetEpilogue::plain(0.0));
        // m = 2, θ = 60°: c = 1/2, ψ = cos 120° = −1/2; a = 2, b = 1, z = 1, β = 0:
        // g = a·b·ψ = −1, p = ψ' = 4c = 2, q = ψ − c·ψ' = −3/2.
        let e = train_epilogue(MarginKind::LSoftmax, 1.0, 2, 0.0, 1.0, 2.0, 1.0);
        assert!(
            (e.g - -1.0).abs() < 1e-6 && (e.p - 2.0).abs() < 1e-6,
            "{e:?}"
        );
        assert!((e.alpha_scale - -0.75).abs() < 1e-6, "{e:?}");
        assert!((e.gamma_scale - -3.0).abs() < 1e-6, "{e:?}");
    }
}
