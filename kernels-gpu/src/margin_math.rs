//! Device-side margin math: `ψ`, the forward epilogue at the target logit, and the two
//! floating-point primitives (`fma`, `sqrt`) that `core` lacks on stable.
//!
//! The epilogue follows `lsoftmax_host::reference::fast` operation for operation (f64 from
//! the f32 logit and the f64 norms, same evaluation order, same degenerate-row rule), so
//! the emulated kernels and the CPU backend differ only by the GEMM's summation order.

use crate::params::MarginKind;

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
        MarginKind::Plain => TargetEpilogue::plain(z),
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
        MarginKind::LSoftmax => {
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
