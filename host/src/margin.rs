//! Margin functions `g` applied to the target logit, their parsing, and β schedules.
//! The math is in `docs/math.md`.

use kernels_gpu::params::{ForwardParams, KernelMode, MarginKind};

use crate::error::{Error, Result};

/// Training or inference. In inference mode every variant is the plain layer `F = X·Wᵀ`
/// and its gradient is the plain fully-connected gradient: the margin is a training device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Apply the margin to the target logit `F[i, y_i]`.
    Train,
    /// Plain logits `F = X·Wᵀ`.
    Infer,
}

impl std::fmt::Display for Mode {
    /// `train` or `infer`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
        })
    }
}

/// The margin function `g` that replaces the target logit `z = w_{y_i}·x_i` in training.
///
/// Built only through the validating constructors [`Margin::simplified`] and
/// [`Margin::lsoftmax`] (the variants are `#[non_exhaustive]`, so other crates can match
/// them but not construct them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Margin {
    /// `g = z`.
    Plain,
    /// The source article's margin: `g = k·z` if `z > 0`, else `z`, with `0 < k <= 1`.
    #[non_exhaustive]
    Simplified {
        /// Factor applied to positive target logits.
        k: f32,
    },
    /// L-Softmax (Liu et al. 2016): with `a = ‖x_i‖`, `b = ‖w_{y_i}‖`, `c = cos θ = z/(a·b)`,
    /// `g = (β·z + a·b·ψ(c)) / (1 + β)`, `ψ(θ) = (−1)^k·cos(mθ) − 2k` on `θ ∈ [kπ/m, (k+1)π/m]`.
    /// Rows with `a·b = 0` use `g = z`.
    #[non_exhaustive]
    LSoftmax {
        /// Angular margin `m ∈ 1..=4`.
        m: u32,
        /// Blend toward the plain logit, `β >= 0` (annealed toward 0 during training).
        beta: f32,
    },
    /// CosFace / AM-Softmax (Wang et al. 2018): with `c = cos θ_ij` of the normalised
    /// vectors, `F_ij = S·c` for `j ≠ y_i` and `F_{i,y_i} = S·(c − M)`.
    #[non_exhaustive]
    CosFace {
        /// Scale `S > 0`.
        s: f32,
        /// Additive cosine margin `M ∈ [0, 2]`.
        m: f32,
    },
    /// ArcFace (Deng et al. 2019): `F_ij = S·cos θ_ij`, `F_{i,y_i} = S·cos(θ + M)` where
    /// `cos θ > cos(π − M)`, else insightface's fallback `S·(cos θ − M·sin M)`; `cos θ` is
    /// clamped to `1 − ε` above (`ε` = [`ANGLE_CLAMP`]). See `docs/math.md`.
    #[non_exhaustive]
    ArcFace {
        /// Scale `S > 0`.
        s: f32,
        /// Additive angular margin `M ∈ [0, π)`.
        m: f32,
    },
    /// insightface's combined margin: `F_{i,y_i} = S·(ψ(A·θ + B) − C)` with
    /// `ψ(φ) = (−1)^k·cos φ − 2k` on `φ ∈ [kπ, (k+1)π]` (equal to `cos φ` on `[0, π]`, a
    /// monotone extension beyond), non-targets `S·cos θ`; `cos θ` clamped to
    /// `[−1 + ε, 1 − ε]`.
    #[non_exhaustive]
    Combined {
        /// Scale `S > 0`.
        s: f32,
        /// Multiplicative angular margin `A ∈ (0, 4]`.
        m1: f32,
        /// Additive angular margin `B ∈ [0, π)`.
        m2: f32,
        /// Additive cosine margin `C ∈ [0, 2]`.
        m3: f32,
    },
    /// SphereFace / A-Softmax (Liu et al. 2017): weights normalised, features not:
    /// `F_ij = ‖x_i‖·cos θ_ij`, and the target is L-Softmax's `g` with `‖w‖ = 1`:
    /// `(β·‖x‖·cos θ + ‖x‖·ψ(cos θ)) / (1 + β)`.
    #[non_exhaustive]
    SphereFace {
        /// Angular margin `m ∈ 1..=4`.
        m: u32,
        /// Blend toward the plain logit, `β >= 0`.
        beta: f32,
    },
}

/// `ε` of the angular margins' clamp of `cos θ` (ArcFace: `cos θ ≤ 1 − ε`; combined:
/// `|cos θ| ≤ 1 − ε`). There `dF/d cos θ`, which grows like `1/sin θ`, is at most about
/// `A/√(2ε) ≈ 2236·A`; beyond the clamp the target logit is constant in `cos θ` and its
/// derivative is exactly 0. The same constant as the kernels'.
pub const ANGLE_CLAMP: f64 = kernels_gpu::margin_math::ANGLE_CLAMP;

impl Margin {
    /// The plain layer, `g = z`.
    pub fn plain() -> Self {
        Margin::Plain
    }

    /// The simplified margin `g = k·z` for `z > 0`; `k` must lie in `(0, 1]`.
    pub fn simplified(k: f32) -> Result<Self> {
        if k.is_finite() && k > 0.0 && k <= 1.0 {
            Ok(Margin::Simplified { k })
        } else {
            Err(Error::InvalidK(k))
        }
    }

    /// L-Softmax with margin `m ∈ 1..=4` and `β` finite and `>= 0`.
    pub fn lsoftmax(m: u32, beta: f32) -> Result<Self> {
        if !(1..=4).contains(&m) {
            return Err(Error::InvalidM(m.into()));
        }
        check_beta(beta)?;
        Ok(Margin::LSoftmax { m, beta })
    }

    /// CosFace with scale `S > 0` (finite) and margin `M ∈ [0, 2]` (at `M = 2` the target
    /// logit lies below every non-target logit at every angle).
    pub fn cosface(s: f32, m: f32) -> Result<Self> {
        check_scale("cosface", s)?;
        check_range(
            "cosface",
            "m",
            m,
            0.0,
            2.0,
            "m must be finite and in [0, 2]",
        )?;
        Ok(Margin::CosFace { s, m })
    }

    /// ArcFace with scale `S > 0` and angular margin `M ∈ [0, π)`.
    pub fn arcface(s: f32, m: f32) -> Result<Self> {
        check_scale("arcface", s)?;
        check_range(
            "arcface",
            "m",
            m,
            0.0,
            std::f64::consts::PI,
            "m must be finite and in [0, pi)",
        )?;
        if f64::from(m) >= std::f64::consts::PI {
            return Err(Error::InvalidMarginParam {
                margin: "arcface",
                name: "m",
                value: m.into(),
                range: "m must be finite and in [0, pi)",
            });
        }
        Ok(Margin::ArcFace { s, m })
    }

    /// The combined margin `S·(cos(A·θ + B) − C)` with `S > 0`, `A ∈ (0, 4]`,
    /// `B ∈ [0, π)`, `C ∈ [0, 2]`.
    pub fn combined(s: f32, m1: f32, m2: f32, m3: f32) -> Result<Self> {
        check_scale("combined", s)?;
        check_range(
            "combined",
            "m1",
            m1,
            0.0,
            4.0,
            "m1 must be finite and in (0, 4]",
        )?;
        if m1 <= 0.0 {
            return Err(Error::InvalidMarginParam {
                margin: "combined",
                name: "m1",
                value: m1.into(),
                range: "m1 must be finite and in (0, 4]",
            });
        }
        let pi = std::f64::consts::PI;
        check_range(
            "combined",
            "m2",
            m2,
            0.0,
            pi,
            "m2 must be finite and in [0, pi)",
        )?;
        if f64::from(m2) >= pi {
            return Err(Error::InvalidMarginParam {
                margin: "combined",
                name: "m2",
                value: m2.into(),
                range: "m2 must be finite and in [0, pi)",
            });
        }
        check_range(
            "combined",
            "m3",
            m3,
            0.0,
            2.0,
            "m3 must be finite and in [0, 2]",
        )?;
        Ok(Margin::Combined { s, m1, m2, m3 })
    }

    /// SphereFace (A-Softmax) with margin `m ∈ 1..=4` and `β` finite and `>= 0`.
    pub fn sphereface(m: u32, beta: f32) -> Result<Self> {
        if !(1..=4).contains(&m) {
            return Err(Error::InvalidM(m.into()));
        }
        check_beta(beta)?;
        Ok(Margin::SphereFace { m, beta })
    }

    /// Whether the layer normalises its operands (CosFace, ArcFace, combined: both `x`
    /// and `w`; SphereFace: `w` only). Then the logits depend on the norms everywhere,
    /// not only at the target, also in inference mode.
    pub fn is_normalised(&self) -> bool {
        matches!(
            self,
            Margin::CosFace { .. }
                | Margin::ArcFace { .. }
                | Margin::Combined { .. }
                | Margin::SphereFace { .. }
        )
    }

    /// `S` for the margins that rescale `x_i` to length `S` (CosFace, ArcFace, combined);
    /// `None` for the others (SphereFace keeps `‖x_i‖`).
    pub fn feature_scale(&self) -> Option<f32> {
        match *self {
            Margin::CosFace { s, .. } | Margin::ArcFace { s, .. } | Margin::Combined { s, .. } => {
                Some(s)
            }
            _ => None,
        }
    }

    /// The same L-Softmax or SphereFace margin with another β (as a schedule anneals it);
    /// other variants are returned unchanged.
    pub fn with_beta(self, beta: f32) -> Result<Self> {
        match self {
            Margin::LSoftmax { m, .. } => Margin::lsoftmax(m, beta),
            Margin::SphereFace { m, .. } => Margin::sphereface(m, beta),
            other => Ok(other),
        }
    }

    /// Parses `plain`, `simplified:k=0.5`, `lsoftmax:m=2,beta=0.5` (β defaults to 0),
    /// `cosface:s=30,m=0.35`, `arcface:s=30,m=0.5`, `combined:s=30,m1=1,m2=0.3,m3=0.2`,
    /// `sphereface:m=4[,beta=B]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::MarginSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (kind, params) = match spec.trim().split_once(':') {
            Some((kind, params)) => (kind.trim(), params.trim()),
            None => (spec.trim(), ""),
        };
        let mut pairs = Vec::new();
        for item in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(&format!("expected key=value, found {item:?}")))?;
            let value: f64 = value.trim().parse().map_err(|_| {
                bad(&format!(
                    "value of {} is not a number: {:?}",
                    key.trim(),
                    value.trim()
                ))
            })?;
            pairs.push((key.trim(), value));
        }
        let take = |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let allow_only = |allowed: &[&str]| -> Result<()> {
            match pairs.iter().find(|(k, _)| !allowed.contains(k)) {
                Some((k, _)) => Err(bad(&format!(
                    "unknown parameter {k:?} for {kind} (allowed: {allowed:?})"
                ))),
                None => Ok(()),
            }
        };
        match kind {
            "plain" => {
                allow_only(&[])?;
                Ok(Margin::Plain)
            }
            "simplified" => {
                allow_only(&["k"])?;
                let k =
                    take("k").ok_or_else(|| bad("simplified needs k, e.g. simplified:k=0.5"))?;
                Margin::simplified(k as f32)
            }
            "lsoftmax" => {
                allow_only(&["m", "beta"])?;
                let m =
                    take("m").ok_or_else(|| bad("lsoftmax needs m, e.g. lsoftmax:m=2,beta=0.5"))?;
                if m.fract() != 0.0 || !m.is_finite() {
                    return Err(bad(&format!("m must be an integer, found {m}")));
                }
                if !(1.0..=4.0).contains(&m) {
                    return Err(Error::InvalidM(m as i64));
                }
                let beta = take("beta").unwrap_or(0.0);
                check_beta_f64(beta)?;
                Margin::lsoftmax(m as u32, beta as f32)
            }
            "sphereface" => {
                allow_only(&["m", "beta"])?;
                let m = take("m")
                    .ok_or_else(|| bad("sphereface needs m, e.g. sphereface:m=4,beta=0.5"))?;
                if m.fract() != 0.0 || !m.is_finite() {
                    return Err(bad(&format!("m must be an integer, found {m}")));
                }
                if !(1.0..=4.0).contains(&m) {
                    return Err(Error::InvalidM(m as i64));
                }
                let beta = take("beta").unwrap_or(0.0);
                check_beta_f64(beta)?;
                Margin::sphereface(m as u32, beta as f32)
            }
            "cosface" | "arcface" => {
                allow_only(&["s", "m"])?;
                let example = if kind == "cosface" {
                    "cosface:s=30,m=0.35"
                } else {
                    "arcface:s=30,m=0.5"
                };
                let s = take("s").ok_or_else(|| bad(&format!("{kind} needs s, e.g. {example}")))?;
                let m = take("m").ok_or_else(|| bad(&format!("{kind} needs m, e.g. {example}")))?;
                let name: &'static str = if kind == "cosface" {
                    "cosface"
                } else {
                    "arcface"
                };
                let (s, m) = (to_f32(name, "s", s)?, to_f32(name, "m", m)?);
                if kind == "cosface" {
                    Margin::cosface(s, m)
                } else {
                    Margin::arcface(s, m)
                }
            }
            "combined" => {
                allow_only(&["s", "m1", "m2", "m3"])?;
                let need = |name: &str| {
                    take(name).ok_or_else(|| {
                        bad(&format!(
                            "combined needs {name}, e.g. combined:s=30,m1=1,m2=0.3,m3=0.2"
                        ))
                    })
                };
                let (s, m1, m2, m3) = (need("s")?, need("m1")?, need("m2")?, need("m3")?);
                Margin::combined(
                    to_f32("combined", "s", s)?,
                    to_f32("combined", "m1", m1)?,
                    to_f32("combined", "m2", m2)?,
                    to_f32("combined", "m3", m3)?,
                )
            }
            _ => Err(bad(
                "unknown margin kind (expected plain, simplified, lsoftmax, cosface, arcface, \
                 combined or sphereface)",
            )),
        }
    }
}

impl std::fmt::Display for Margin {
    /// The spec form accepted by [`Margin::parse`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Margin::Plain => write!(f, "plain"),
            Margin::Simplified { k } => write!(f, "simplified:k={k}"),
            Margin::LSoftmax { m, beta } => write!(f, "lsoftmax:m={m},beta={beta}"),
            Margin::CosFace { s, m } => write!(f, "cosface:s={s},m={m}"),
            Margin::ArcFace { s, m } => write!(f, "arcface:s={s},m={m}"),
            Margin::Combined { s, m1, m2, m3 } => {
                write!(f, "combined:s={s},m1={m1},m2={m2},m3={m3}")
            }
            Margin::SphereFace { m, beta } => write!(f, "sphereface:m={m},beta={beta}"),
        }
    }
}

impl std::str::FromStr for Margin {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Margin::parse(s)
    }
}

/// `S` finite and `> 0`.
fn check_scale(margin: &'static str, s: f32) -> Result<()> {
    if s.is_finite() && s > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidMarginParam {
            margin,
            name: "s",
            value: s.into(),
            range: "s must be finite and > 0",
        })
    }
}

/// `lo <= v <= hi`, finite.
fn check_range(
    margin: &'static str,
    name: &'static str,
    v: f32,
    lo: f64,
    hi: f64,
    range: &'static str,
) -> Result<()> {
    let x = f64::from(v);
    if v.is_finite() && x >= lo && x <= hi {
        Ok(())
    } else {
        Err(Error::InvalidMarginParam {
            margin,
            name,
            value: x,
            range,
        })
    }
}

/// A parsed f64 as f32, refusing values that f32 turns into 0 or ∞ (`s=1e-50`, `s=1e40`)
/// or NaN, so the error names the value the user wrote.
fn to_f32(margin: &'static str, name: &'static str, v: f64) -> Result<f32> {
    let f = v as f32;
    let changed_kind = (v != 0.0 && f == 0.0) || (v.is_finite() && !f.is_finite());
    if v.is_nan() || changed_kind {
        return Err(Error::InvalidMarginParam {
            margin,
            name,
            value: v,
            range: "not representable as an f32 (it would round to 0 or overflow)",
        });
    }
    Ok(f)
}

fn check_beta(beta: f32) -> Result<()> {
    check_beta_f64(beta.into())
}

fn check_beta_f64(beta: f64) -> Result<()> {
    if beta.is_finite() && beta >= 0.0 && beta <= f32::MAX as f64 {
        Ok(())
    } else {
        Err(Error::InvalidBeta(beta))
    }
}

/// How β decays over training iterations; both conventions of the published implementations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BetaSchedule {
    /// The paper's Caffe layer: `β(t) = max(β_min, β_base · (1 + γ·t)^(−power))`.
    PowerDecay {
        /// `β_base`, the value at `t = 0`.
        base: f64,
        /// `γ`, the time scale.
        gamma: f64,
        /// Decay exponent.
        power: f64,
        /// Floor `β_min`.
        min: f64,
    },
    /// The MXNet port: `β(t) = max(β_min, β_0 · scale^t)` (multiply by `scale` after each step).
    Multiplicative {
        /// `β_0`, the value at `t = 0`.
        start: f64,
        /// Factor per step, in `(0, 1]`.
        scale: f64,
        /// Floor `β_min`.
        min: f64,
    },
}

impl BetaSchedule {
    /// Power decay, validated: all finite, `base, gamma, power, min >= 0`.
    pub fn power_decay(base: f64, gamma: f64, power: f64, min: f64) -> Result<Self> {
        let all = [base, gamma, power, min];
        if all.iter().all(|v| v.is_finite() && *v >= 0.0) {
            Ok(BetaSchedule::PowerDecay {
                base,
                gamma,
                power,
                min,
            })
        } else {
            Err(Error::BetaSchedule(format!(
                "power decay needs finite base, gamma, power, min >= 0; got base={base}, gamma={gamma}, power={power}, min={min}"
            )))
        }
    }

    /// Multiplicative decay, validated: `start, min` finite and `>= 0`, `scale` in `(0, 1]`.
    pub fn multiplicative(start: f64, scale: f64, min: f64) -> Result<Self> {
        let ok = start.is_finite() && start >= 0.0 && min.is_finite() && min >= 0.0;
        if ok && scale > 0.0 && scale <= 1.0 {
            Ok(BetaSchedule::Multiplicative { start, scale, min })
        } else {
            Err(Error::BetaSchedule(format!(
                "multiplicative decay needs start, min finite and >= 0 and 0 < scale <= 1; got start={start}, scale={scale}, min={min}"
            )))
        }
    }

    /// The paper's example: base 1000, γ 2.5e-5, power 35, β_min 0.
    pub fn caffe_default() -> Self {
        BetaSchedule::PowerDecay {
            base: 1000.0,
            gamma: 2.5e-5,
            power: 35.0,
            min: 0.0,
        }
    }

    /// The MXNet example: β 100, scale 0.99, β_min 0.
    pub fn mxnet_default() -> Self {
        BetaSchedule::Multiplicative {
            start: 100.0,
            scale: 0.99,
            min: 0.0,
        }
    }

    /// β at iteration `t` (0-based).
    pub fn beta(&self, t: u64) -> f64 {
        match *self {
            BetaSchedule::PowerDecay {
                base,
                gamma,
                power,
                min,
            } => (base * (1.0 + gamma * t as f64).powf(-power)).max(min),
            BetaSchedule::Multiplicative { start, scale, min } => {
                // powi would overflow the exponent type for long runs; powf is exact enough.
                (start * scale.powf(t as f64)).max(min)
            }
        }
    }
}

/// The forward kernel's parameters for `margin` and `mode` on an `n×d` by `c×d` problem
/// (sizes already checked to fit `u32`): the margin as the kernels'
/// [`MarginKind`] and its parameters (unused ones at their neutral values).
pub fn forward_params(n: u32, d: u32, c: u32, margin: Margin, mode: Mode) -> ForwardParams {
    let mut p = ForwardParams {
        n,
        d,
        c,
        margin: MarginKind::Plain,
        mode: match mode {
            Mode::Train => KernelMode::Train,
            Mode::Infer => KernelMode::Infer,
        },
        m: 1,
        k: 1.0,
        beta: 0.0,
        s: 1.0,
        m1: 1.0,
        m2: 0.0,
        m3: 0.0,
    };
    match margin {
        Margin::Plain => {}
        Margin::Simplified { k } => {
            p.margin = MarginKind::Simplified;
            p.k = k;
        }
        Margin::LSoftmax { m, beta } => {
            p.margin = MarginKind::LSoftmax;
            (p.m, p.beta) = (m, beta);
        }
        Margin::SphereFace { m, beta } => {
            p.margin = MarginKind::SphereFace;
            (p.m, p.beta) = (m, beta);
        }
        Margin::CosFace { s, m } => {
            p.margin = MarginKind::CosFace;
            (p.s, p.m3) = (s, m);
        }
        Margin::ArcFace { s, m } => {
            p.margin = MarginKind::ArcFace;
            (p.s, p.m2) = (s, m);
        }
        Margin::Combined { s, m1, m2, m3 } => {
            p.margin = MarginKind::Combined;
            (p.s, p.m1, p.m2, p.m3) = (s, m1, m2, m3);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_reject_out_of_range_values() {
        assert!(Margin::simplified(0.5).is_ok());
        assert!(Margin::simplified(1.0).is_ok());
        for k in [0.0, -0.1, 1.0001, f32::NAN, f32::INFINITY] {
            let err = Margin::simplified(k).unwrap_err();
            assert!(err.to_string().contains(&format!("k = {k}")), "{err}");
        }
        for m in [0, 5, 100] {
            let err = Margin::lsoftmax(m, 0.0).unwrap_err();
            assert!(err.to_string().contains(&format!("m = {m}")), "{err}");
        }
        for beta in [-1.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                Margin::lsoftmax(2, beta),
                Err(Error::InvalidBeta(_))
            ));
        }
    }

    #[test]
    fn parse_accepts_documented_specs_and_round_trips() {
        assert_eq!(Margin::parse("plain").unwrap(), Margin::Plain);
        assert_eq!(
            Margin::parse("simplified:k=0.5").unwrap(),
            Margin::simplified(0.5).unwrap()
        );
        assert_eq!(
            Margin::parse(" lsoftmax: m=2 , beta=0.5 ").unwrap(),
            Margin::lsoftmax(2, 0.5).unwrap()
        );
        assert_eq!(
            Margin::parse("lsoftmax:m=4").unwrap(),
            Margin::lsoftmax(4, 0.0).unwrap()
        );
        for m in [
            Margin::Plain,
            Margin::simplified(0.25).unwrap(),
            Margin::lsoftmax(3, 7.5).unwrap(),
        ] {
            assert_eq!(Margin::parse(&m.to_string()).unwrap(), m);
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let cases = [
            ("softmax", "unknown margin kind"),
            ("simplified", "needs k"),
            ("simplified:k=abc", "not a number"),
            ("simplified:k=2", "k = 2"),
            ("simplified:q=0.5", "unknown parameter \"q\""),
            ("lsoftmax:m=2.5", "integer"),
            ("lsoftmax:m=7", "m = 7"),
            ("lsoftmax:m=2,beta=-1", "beta = -1"),
            ("lsoftmax:m=2,beta", "expected key=value"),
            ("plain:k=1", "unknown parameter"),
        ];
        for (spec, needle) in cases {
            let msg = Margin::parse(spec).unwrap_err().to_string();
            assert!(
                msg.contains(needle),
                "{spec:?} gave {msg:?}, expected to mention {needle:?}"
            );
        }
    }

    #[test]
    fn normalised_margins_parse_validate_and_round_trip() {
        assert_eq!(
            Margin::parse("cosface:s=30,m=0.35").unwrap(),
            Margin::cosface(30.0, 0.35).unwrap()
        );
        assert_eq!(
            Margin::parse("arcface: m=0.5, s=64").unwrap(),
            Margin::arcface(64.0, 0.5).unwrap()
        );
        assert_eq!(
            Margin::parse("combined:s=30,m1=1,m2=0.3,m3=0.2").unwrap(),
            Margin::combined(30.0, 1.0, 0.3, 0.2).unwrap()
        );
        assert_eq!(
            Margin::parse("sphereface:m=4").unwrap(),
            Margin::sphereface(4, 0.0).unwrap()
        );
        for m in [
            Margin::cosface(30.0, 0.35).unwrap(),
            Margin::arcface(64.0, 0.5).unwrap(),
            Margin::combined(30.0, 1.35, 0.25, 0.1).unwrap(),
            Margin::sphereface(3, 7.5).unwrap(),
        ] {
            assert!(m.is_normalised());
            assert_eq!(Margin::parse(&m.to_string()).unwrap(), m);
        }
        assert_eq!(
            Margin::cosface(30.0, 0.3).unwrap().feature_scale(),
            Some(30.0)
        );
        assert_eq!(Margin::sphereface(2, 0.0).unwrap().feature_scale(), None);
        assert!(!Margin::lsoftmax(2, 0.0).unwrap().is_normalised());
        // β annealing reaches SphereFace.
        assert_eq!(
            Margin::sphereface(4, 100.0)
                .unwrap()
                .with_beta(1.0)
                .unwrap(),
            Margin::sphereface(4, 1.0).unwrap()
        );
        let cases = [
            ("cosface:s=0,m=0.35", "s = 0"),
            ("cosface:s=-1,m=0.35", "s = -1"),
            ("cosface:s=nan,m=0.35", "s = NaN"),
            ("cosface:s=inf,m=0.35", "s = inf"),
            ("cosface:s=1e40,m=0.35", "not representable"),
            ("cosface:s=30,m=2.5", "m = 2.5"),
            ("cosface:s=30,m=-0.1", "m = -0.1"),
            ("cosface:s=30", "needs m"),
            ("cosface:m=0.3", "needs s"),
            ("arcface:s=30,m=3.2", "m = 3.2"),
            ("arcface:s=30,m=NaN", "m = NaN"),
            ("arcface:s=30,m=0.5,k=1", "unknown parameter \"k\""),
            ("combined:s=30,m1=0,m2=0.3,m3=0.2", "m1 = 0"),
            ("combined:s=30,m1=5,m2=0.3,m3=0.2", "m1 = 5"),
            ("combined:s=30,m1=1,m2=4,m3=0.2", "m2 = 4"),
            ("combined:s=30,m1=1,m2=0.3,m3=3", "m3 = 3"),
            ("combined:s=30,m1=1,m2=0.3", "needs m3"),
            ("sphereface:m=5", "m = 5"),
            ("sphereface:m=1.5", "integer"),
            ("sphereface:m=2,beta=-1", "beta = -1"),
        ];
        for (spec, needle) in cases {
            let msg = Margin::parse(spec).unwrap_err().to_string();
            assert!(
                msg.contains(needle),
                "{spec:?} gave {msg:?}, expected to mention {needle:?}"
            );
        }
        assert!(Margin::arcface(1.0, std::f32::consts::PI).is_err());
        assert!(Margin::combined(1.0, 1.0, 0.0, f32::NAN).is_err());
    }

    #[test]
    fn beta_schedules_follow_their_formulas() {
        // Caffe example: β(t) = 1000·(1 + 2.5e-5·t)^(−35); at t = 40000, 1 + γt = 2.
        let caffe = BetaSchedule::caffe_default();
        assert_eq!(caffe.beta(0), 1000.0);
        assert!((caffe.beta(40_000) - 1000.0 / 2f64.powi(35)).abs() < 1e-15);
        let floored = BetaSchedule::power_decay(1000.0, 2.5e-5, 35.0, 5.0).unwrap();
        assert_eq!(floored.beta(40_000), 5.0);
        // MXNet example: β(t) = 100·0.99^t, floored.
        let mx = BetaSchedule::mxnet_default();
        assert!((mx.beta(2) - 100.0 * 0.99 * 0.99).abs() < 1e-12);
        let mx_floor = BetaSchedule::multiplicative(100.0, 0.5, 3.0).unwrap();
        assert_eq!(mx_floor.beta(10), 3.0);
        assert!(BetaSchedule::multiplicative(1.0, 1.5, 0.0).is_err());
        assert!(BetaSchedule::power_decay(-1.0, 1.0, 1.0, 0.0).is_err());
    }
}
