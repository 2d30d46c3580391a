//! Hand-computed values and cross-checks of the two ψ formulations.

use super::{fast, naive};
use crate::margin::Margin;
use std::f64::consts::PI;

/// ψ at points worked out by hand from `ψ(θ) = (−1)^k·cos(mθ) − 2k`, `θ ∈ [kπ/m, (k+1)π/m]`.
#[test]
fn psi_hand_values() {
    // (m, θ in degrees, ψ)
    let cases = [
        (1, 60.0, 0.5),   // k = 0: cos 60°
        (2, 60.0, -0.5),  // k = 0: cos 120°
        (2, 120.0, -1.5), // k = 1: −cos 240° − 2 = 0.5 − 2
        (3, 90.0, -2.0),  // k = 1: −cos 270° − 2
        (4, 180.0, -7.0), // k = 3: −cos 720° − 6
        (4, 0.0, 1.0),    // k = 0: cos 0
        (4, 30.0, -0.5),  // k = 0: cos 120°
    ];
    for (m, deg, want) in cases {
        let c = (deg * PI / 180.0_f64).cos();
        let (a, _) = naive::psi_from_angle(m, c);
        let (b, _) = fast::psi(m, c);
        assert!(
            (a - want).abs() < 1e-12,
            "naive ψ(m={m}, θ={deg}°) = {a}, want {want}"
        );
        assert!(
            (b - want).abs() < 1e-12,
            "fast ψ(m={m}, θ={deg}°) = {b}, want {want}"
        );
    }
}

/// The interval search of `fast` (comparisons with cos(jπ/m)) and the angle form of
/// `naive` (acos, floor) agree everywhere, including on both sides of every boundary.
#[test]
fn psi_formulations_agree_on_a_dense_grid_and_at_boundaries() {
    for m in 1..=4u32 {
        let mut points: Vec<f64> = (0..=20_000).map(|i| -1.0 + f64::from(i) * 1e-4).collect();
        for j in 1..m {
            let c = (f64::from(j) * PI / f64::from(m)).cos();
            points.extend([c - 1e-9, c, c + 1e-9]);
        }
        for c in points {
            let (p1, d1) = naive::psi_from_angle(m, c);
            let (p2, d2) = fast::psi(m, c);
            // acos loses ~1e-8 relative accuracy near |c| = 1; ψ is smooth there.
            assert!(
                (p1 - p2).abs() < 1e-7,
                "ψ(m={m}, c={c}): naive {p1}, fast {p2}"
            );
            assert!(
                (d1 - d2).abs() < 1e-7,
                "ψ'(m={m}, c={c}): naive {d1}, fast {d2}"
            );
        }
    }
}

/// ψ is continuous and decreasing in θ, with a continuous derivative in c.
#[test]
fn psi_is_continuous_and_monotone() {
    for m in 1..=4u32 {
        let mut prev = f64::INFINITY;
        for i in 0..=10_000 {
            let theta = PI * f64::from(i) / 10_000.0;
            let (p, _) = fast::psi(m, theta.cos());
            assert!(p <= prev + 1e-12, "ψ increases at m={m}, θ={theta}");
            assert!(
                prev == f64::INFINITY || prev - p < 0.01,
                "ψ jumps at m={m}, θ={theta}"
            );
            prev = p;
        }
    }
}

/// g for a worked example: x = (3, 4), w = (1, 0): a = 5, b = 1, z = 3, c = 0.6.
/// m = 2, β = 1: θ < 90° so k = 0, ψ = 2c² − 1 = −0.28, g = (3 + 5·(−0.28))/2 = 0.8.
#[test]
fn lsoftmax_worked_example() {
    let t = naive::target_logit(Margin::lsoftmax(2, 1.0).unwrap(), 3.0, 5.0, 1.0);
    assert!((t.g - 0.8).abs() < 1e-12, "g = {}", t.g);
    // p = (β + ψ')/(1 + β) = (1 + 4·0.6)/2 = 1.7; q = (ψ − cψ')/(1 + β) = (−0.28 − 1.44)/2 = −0.86
    assert!((t.p - 1.7).abs() < 1e-12, "p = {}", t.p);
    assert!((t.q + 0.86).abs() < 1e-12, "q = {}", t.q);
}

/// Degenerate rows (‖x‖·‖w‖ = 0) use g = z with the plain gradient.
#[test]
fn degenerate_row_is_plain() {
    let t = naive::target_logit(Margin::lsoftmax(4, 0.0).unwrap(), 0.0, 0.0, 2.0);
    assert_eq!((t.g, t.p, t.q), (0.0, 1.0, 0.0));
}

/// The simplified margin's convention at its kink: `g = z`, `p = 1` at z = 0 exactly
/// (MARGIN-MATH.md), `g = k·z`, `p = k` just above.
#[test]
fn simplified_margin_at_z_zero_is_plain() {
    let margin = Margin::simplified(0.25).unwrap();
    let t = naive::target_logit(margin, 0.0, 0.0, 1.0);
    assert_eq!((t.g, t.p, t.q), (0.0, 1.0, 0.0));
    let t = naive::target_logit(margin, 1e-300, 1.0, 1.0);
    assert_eq!((t.g, t.p), (0.25e-300, 0.25));
}
