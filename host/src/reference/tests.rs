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

mod normalised {
    use super::super::{fast, naive};
    use crate::margin::{ANGLE_CLAMP, Margin, Mode};
    use ndarray::{Array2, array};
    use std::f64::consts::PI;

    /// Two-dimensional features at angle `theta` to the class-0 weight `(1, 0)` (length 2),
    /// plus a second class at 90°.
    fn at_angle(theta: f64) -> (Array2<f64>, Array2<f64>) {
        let x = array![[3.0 * theta.cos(), 3.0 * theta.sin()]];
        let w = array![[2.0, 0.0], [0.0, 0.5]];
        (x, w)
    }

    fn target(margin: Margin, theta: f64) -> f64 {
        let (x, w) = at_angle(theta);
        naive::forward(x.view(), w.view(), &[0], margin, Mode::Train)[[0, 0]]
    }

    /// The papers' formulas at hand-picked angles (‖x‖ = 3, ‖w‖ = 2, S = 10).
    #[test]
    fn targets_at_worked_angles() {
        let t = PI / 3.0; // cos θ = 1/2
        let cos = Margin::cosface(10.0, 0.35).unwrap();
        assert!((target(cos, t) - 10.0 * (0.5 - 0.35)).abs() < 1e-5);
        let arc = Margin::arcface(10.0, 0.5).unwrap();
        assert!((target(arc, t) - 10.0 * (t + 0.5).cos()).abs() < 1e-5);
        let comb = Margin::combined(10.0, 1.5, 0.2, 0.1).unwrap();
        assert!((target(comb, t) - 10.0 * ((1.5 * t + 0.2).cos() - 0.1)).abs() < 1e-5);
        // SphereFace m = 2, β = 0: ‖x‖·cos 2θ = 3·(−1/2).
        let sph = Margin::sphereface(2, 0.0).unwrap();
        assert!((target(sph, t) - -1.5).abs() < 1e-5);
        // Non-targets: S·cos θ and ‖x‖·cos θ; class 1 is at 90° − θ.
        let (x, w) = at_angle(t);
        let f = naive::forward(x.view(), w.view(), &[0], cos, Mode::Train);
        assert!((f[[0, 1]] - 10.0 * (PI / 2.0 - t).cos()).abs() < 1e-5);
        let f = naive::forward(x.view(), w.view(), &[0], sph, Mode::Train);
        assert!((f[[0, 1]] - 3.0 * (PI / 2.0 - t).cos()).abs() < 1e-5);
    }

    /// Inference mode: normalised logits without margin.
    #[test]
    fn inference_is_the_normalised_logit() {
        let (x, w) = at_angle(0.7);
        for m in [
            Margin::cosface(10.0, 0.35).unwrap(),
            Margin::arcface(10.0, 0.5).unwrap(),
            Margin::combined(10.0, 2.0, 0.2, 0.1).unwrap(),
        ] {
            let f = naive::forward(x.view(), w.view(), &[0], m, Mode::Infer);
            assert!((f[[0, 0]] - 10.0 * 0.7f64.cos()).abs() < 1e-12, "{m}");
        }
        let f = naive::forward(
            x.view(),
            w.view(),
            &[0],
            Margin::sphereface(4, 0.0).unwrap(),
            Mode::Infer,
        );
        assert!((f[[0, 0]] - 3.0 * 0.7f64.cos()).abs() < 1e-12);
    }

    /// combined(1, 0, M) is CosFace; combined(1, M, 0) is ArcFace for θ ≤ π − M (beyond,
    /// ArcFace falls back to cos θ − M·sin M and combined continues monotonically).
    #[test]
    fn combined_contains_cosface_and_arcface() {
        for i in 1..100 {
            let theta = PI * f64::from(i) / 100.0;
            let a = target(Margin::combined(10.0, 1.0, 0.0, 0.3).unwrap(), theta);
            let b = target(Margin::cosface(10.0, 0.3).unwrap(), theta);
            assert!((a - b).abs() < 1e-9, "θ {theta}: {a} vs {b}");
            let a = target(Margin::combined(10.0, 1.0, 0.5, 0.0).unwrap(), theta);
            let b = target(Margin::arcface(10.0, 0.5).unwrap(), theta);
            if theta < PI - 0.5 {
                assert!((a - b).abs() < 1e-9, "θ {theta}: {a} vs {b}");
            }
        }
    }

    /// Every target logit decreases in θ; ArcFace jumps down at θ = π − M by
    /// `cos M + M·sin M − 1` (times S); the combined margin's extension is continuous.
    #[test]
    fn monotone_in_theta_with_the_documented_jump() {
        let margins = [
            Margin::cosface(10.0, 0.35).unwrap(),
            Margin::arcface(10.0, 0.5).unwrap(),
            Margin::combined(10.0, 2.5, 0.4, 0.1).unwrap(),
            Margin::sphereface(4, 0.0).unwrap(),
        ];
        for m in margins {
            let mut prev = f64::INFINITY;
            for i in 0..=20_000 {
                let theta = PI * f64::from(i) / 20_000.0;
                let v = target(m, theta);
                assert!(v <= prev + 1e-9, "{m} increases at θ {theta}");
                let jump_ok =
                    matches!(m, Margin::ArcFace { .. }) && (theta - (PI - 0.5)).abs() < 1e-3;
                assert!(
                    prev == f64::INFINITY || prev - v < 0.05 || jump_ok,
                    "{m} jumps at θ {theta}"
                );
                prev = v;
            }
        }
        let arc = Margin::arcface(10.0, 0.5).unwrap();
        let jump = target(arc, PI - 0.5 - 1e-9) - target(arc, PI - 0.5 + 1e-9);
        let want = 10.0 * (0.5f64.cos() + 0.5 * 0.5f64.sin() - 1.0);
        assert!((jump - want).abs() < 1e-6, "jump {jump}, want {want}");
    }

    /// ArcFace and combined near θ = 0: the clamp makes the target constant for
    /// cos θ > 1 − ε (derivative exactly 0), and the gradient stays finite just inside.
    #[test]
    fn angle_clamp_gives_finite_exact_gradients() {
        for m in [
            Margin::arcface(10.0, 0.5).unwrap(),
            Margin::combined(10.0, 1.2, 0.3, 0.0).unwrap(),
        ] {
            let (h, dh) = naive::cosine_target(m, 1.0);
            let (h_in, dh_in) = naive::cosine_target(m, 1.0 - ANGLE_CLAMP);
            assert_eq!(dh, 0.0, "{m}");
            assert_eq!(h, h_in, "{m}");
            assert!(
                dh_in.is_finite() && dh_in > 100.0 && dh_in < 1e4,
                "{m}: {dh_in}"
            );
            // Aligned x and w (θ = 0): finite F, and both backends' gradients finite and equal.
            let x = array![[1.5f32, 0.0, 0.0]];
            let w = array![[2.0f32, 0.0, 0.0], [0.0, 1.0, 0.0]];
            let g = array![[1.0f32, 0.5]];
            let (out, cache) = fast::forward(x.view(), w.view(), &[0], m, Mode::Train);
            assert!(out.iter().all(|v| v.is_finite()));
            let grads = fast::backward(x.view(), w.view(), &[0], &cache, g.view());
            let (x64, w64, g64) = (x.mapv(f64::from), w.mapv(f64::from), g.mapv(f64::from));
            let (dx, dw) =
                naive::backward(x64.view(), w64.view(), &[0], m, Mode::Train, g64.view());
            for (a, b) in grads
                .dx
                .iter()
                .zip(dx.iter())
                .chain(grads.dw.iter().zip(dw.iter()))
            {
                assert!(
                    a.is_finite() && (f64::from(*a) - b).abs() < 1e-5,
                    "{m}: {a} vs {b}"
                );
            }
        }
    }

    /// The CPU backend's kernel-math epilogue (series acos/cos) and the reference's std
    /// forms agree on a dense grid of cos θ, including both sides of ArcFace's threshold.
    #[test]
    fn fast_and_naive_targets_agree_on_a_grid() {
        let margins = [
            Margin::cosface(1.0, 0.35).unwrap(),
            Margin::arcface(1.0, 0.5).unwrap(),
            Margin::arcface(1.0, 2.0).unwrap(),
            Margin::combined(1.0, 1.35, 0.25, 0.1).unwrap(),
            Margin::combined(1.0, 4.0, 3.0, 2.0).unwrap(),
        ];
        for m in margins {
            let p = crate::margin::forward_params(0, 0, 0, m, Mode::Train);
            for i in 0..=4000 {
                let c = -1.0 + f64::from(i) / 2000.0;
                let (h, dh) = naive::cosine_target(m, c);
                let e = kernels_gpu::margin_math::target_epilogue(&p, c as f32, 1.0, 1.0);
                let c32 = f64::from(c as f32);
                let (h32, dh32) = naive::cosine_target(m, c32);
                // Compare at the f32 input the epilogue saw; g and p are rounded to f32.
                assert!(
                    (f64::from(e.g) - h32).abs() <= 1e-6 * (1.0 + h32.abs()),
                    "{m} c {c}: {} vs {h32}",
                    e.g
                );
                assert!(
                    (f64::from(e.p) - dh32).abs() <= 1e-5 * (1.0 + dh32.abs()),
                    "{m} c {c}: {} vs {dh32}",
                    e.p
                );
                let _ = (h, dh);
            }
        }
        let _ = fast::row_norms;
    }
}

/// The simplified margin's convention at its kink: `g = z`, `p = 1` at z = 0 exactly
/// (`docs/math.md`), `g = k·z`, `p = k` just above.
#[test]
fn simplified_margin_at_z_zero_is_plain() {
    let margin = Margin::simplified(0.25).unwrap();
    let t = naive::target_logit(margin, 0.0, 0.0, 1.0);
    assert_eq!((t.g, t.p, t.q), (0.0, 1.0, 0.0));
    let t = naive::target_logit(margin, 1e-300, 1.0, 1.0);
    assert_eq!((t.g, t.p), (0.25e-300, 0.25));
}
