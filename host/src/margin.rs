//! Margin functions `g` applied to the target logit, their parsing, and β schedules.
//! The math is in `docs/math.md` (and MARGIN-MATH.md of the design notes).

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
}

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

    /// The same L-Softmax margin with another β (as a schedule anneals it); other variants
    /// are returned unchanged.
    pub fn with_beta(self, beta: f32) -> Result<Self> {
        match self {
            Margin::LSoftmax { m, .. } => Margin::lsoftmax(m, beta),
            other => Ok(other),
        }
    }

    /// Parses `plain`, `simplified:k=0.5` or `lsoftmax:m=2,beta=0.5` (β defaults to 0).
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
            _ => Err(bad(
                "unknown margin kind (expected plain, simplified or lsoftmax)",
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
        }
    }
}

impl std::str::FromStr for Margin {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Margin::parse(s)
    }
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
