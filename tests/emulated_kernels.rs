//! The margin kernels under the emulator, beyond the shared property test of
//! `backend_agreement.rs` (whose shapes stay below 73): several 64-tiles and several
//! 16-deep K stages in every kernel, bitwise reproducibility, strided input views, rows
//! whose squares overflow f32, the launch-limit error, shapes that are exact multiples of
//! the tile and stage, and the simplified margin at z = 0.
//!
//! Agreement uses `common::check_backend`: F, dX and dW against `reference::naive` (f64)
//! within `2·L·u·Σ|terms|` for a length-L f32 dot product (Higham §3.1; the kernels sum
//! each output sequentially with one fma per term, which meets the bound), plus the
//! margin-correction terms derived there. The kernels' norms are f64 like the reference's.

mod common;

use common::{Case, Layout, check_backend};
use lsoftmax::backend::{EmulatedBackend, EmulatedVariant, KernelChoice, KernelVariant, SplitK};
use lsoftmax::{Backend, Error, Margin, Mode, backward, forward_on};
use ndarray::{Array2, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// A problem with labels spread over all classes, every 7th x row zero (degenerate
/// under L-Softmax), and the last class's weights zero (degenerate for its rows).
fn problem(n: usize, d: usize, c: usize, margin: Margin, mode: Mode, seed: u64) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = random(&mut rng, n, d);
    let mut w = random(&mut rng, c, d);
    for i in (0..n).step_by(7) {
        x.row_mut(i).fill(0.0);
    }
    if c > 1 {
        w.row_mut(c - 1).fill(0.0);
    }
    let labels = (0..n).map(|_| rng.random_range(0..c)).collect();
    let dout = random(&mut rng, n, c);
    Case {
        x,
        w,
        labels,
        dout,
        margin,
        mode,
        layouts: [Layout::RowMajor; 3],
    }
}

fn all_margins() -> Vec<Margin> {
    let mut v = vec![Margin::plain(), Margin::simplified(0.3).unwrap()];
    for m in 1..=4 {
        v.push(Margin::lsoftmax(m, 0.0).unwrap());
    }
    v.push(Margin::lsoftmax(3, 2.5).unwrap());
    v.extend([
        Margin::sphereface(4, 0.0).unwrap(),
        Margin::cosface(30.0, 0.35).unwrap(),
        Margin::arcface(30.0, 0.5).unwrap(),
        Margin::combined(16.0, 1.5, 0.2, 0.1).unwrap(),
    ]);
    v
}

/// Shapes past one tile and one K stage in every kernel: forward tiles (N, C) over D,
/// input-grad (N, D) over C, weight-grad (C, D) over N. Primes, N ≠ D ≠ C.
#[test]
fn multi_tile_shapes_agree_with_naive_for_every_variant() {
    let shapes = [(131, 67, 97), (67, 131, 3), (5, 17, 149), (149, 1, 2)];
    for (s, &(n, d, c)) in shapes.iter().enumerate() {
        for (v, margin) in all_margins().into_iter().enumerate() {
            for mode in [Mode::Train, Mode::Infer] {
                // The big shapes once per variant in training; inference is the same GEMMs.
                if mode == Mode::Infer && v > 1 {
                    continue;
                }
                let case = problem(n, d, c, margin, mode, (s * 100 + v) as u64);
                if let Err(msg) = check_backend(&EmulatedBackend, &case) {
                    panic!("(N, D, C) = ({n}, {d}, {c}), {margin}, {mode:?}: {msg}");
                }
            }
        }
    }
}

/// Shapes whose K dimensions are exact multiples of the 16-deep stage (and whose sides
/// are exact multiples of the 64-wide tile): the K loop's last stage ends exactly at K,
/// where an off-by-one loop bound or prefetch guard shows (a ragged K hides it: the
/// extra stage would only add zero padding). Forward K = D, input-grad K = C,
/// weight-grad K = N.
#[test]
fn tile_multiple_shapes_agree_with_naive_for_every_variant() {
    let shapes = [(64, 48, 32), (64, 64, 64), (32, 16, 48), (16, 32, 80)];
    for (s, &(n, d, c)) in shapes.iter().enumerate() {
        for (v, margin) in all_margins().into_iter().enumerate() {
            for mode in [Mode::Train, Mode::Infer] {
                if mode == Mode::Infer && v > 1 {
                    continue;
                }
                let case = problem(n, d, c, margin, mode, (s * 100 + v + 50) as u64);
                if let Err(msg) = check_backend(&EmulatedBackend, &case) {
                    panic!("(N, D, C) = ({n}, {d}, {c}), {margin}, {mode:?}: {msg}");
                }
            }
        }
    }
}

fn run(
    backend: &dyn Backend,
    case: &Case,
) -> (Array2<f32>, Vec<Vec<f32>>, Array2<f32>, Array2<f32>) {
    let fwd = forward_on(
        backend,
        case.x.view(),
        case.w.view(),
        &case.labels,
        case.margin,
        case.mode,
    )
    .unwrap();
    let grads = backward(&fwd, case.dout.view()).unwrap();
    let cache = vec![
        fwd.cache.p.clone(),
        fwd.cache.alpha_scale.clone(),
        fwd.cache.gamma_scale.clone(),
    ];
    (fwd.out.clone(), cache, grads.dx, grads.dw)
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// Two runs give the same bits (no atomics, fixed summation order, γ reduced in order,
/// the projection's dot product reduced by a fixed tree).
#[test]
fn normalised_margins_are_bitwise_reproducible() {
    for margin in [
        Margin::arcface(30.0, 0.5).unwrap(),
        Margin::sphereface(3, 0.5).unwrap(),
    ] {
        let case = problem(70, 300, 67, margin, Mode::Train, 3);
        let a = run(&EmulatedBackend, &case);
        let b = run(&EmulatedBackend, &case);
        assert_eq!(bits(&a.0), bits(&b.0), "{margin}: F differs between runs");
        assert_eq!(bits(&a.2), bits(&b.2), "{margin}: dX differs between runs");
        assert_eq!(bits(&a.3), bits(&b.3), "{margin}: dW differs between runs");
    }
}

/// Zero rows of X and zero classes of W under the normalised margins: finite outputs,
/// the documented conventions (zero logits; zero gradient through a zero row's
/// normalisation), and agreement with the reference.
#[test]
fn normalised_margins_with_zero_rows_and_classes() {
    for margin in [
        Margin::cosface(30.0, 0.35).unwrap(),
        Margin::arcface(30.0, 0.5).unwrap(),
        Margin::combined(16.0, 1.5, 0.2, 0.1).unwrap(),
        Margin::sphereface(4, 0.0).unwrap(),
    ] {
        let mut case = problem(9, 20, 5, margin, Mode::Train, 21);
        case.x.row_mut(2).fill(0.0);
        case.w.row_mut(case.labels[4]).fill(0.0);
        let zero_class = case.labels[4];
        for backend in [
            &EmulatedBackend as &dyn Backend,
            &lsoftmax::backend::CpuBackend,
        ] {
            if let Err(msg) = check_backend(backend, &case) {
                panic!("{} {margin}: {msg}", backend.name());
            }
            let (f, _, dx, dw) = run(backend, &case);
            assert!(
                f.iter()
                    .chain(dx.iter())
                    .chain(dw.iter())
                    .all(|v| v.is_finite())
            );
            assert!(f.column(zero_class).iter().all(|&v| v == 0.0), "{margin}");
            assert!(dw.row(zero_class).iter().all(|&v| v == 0.0), "{margin}");
            if margin.feature_scale().is_some() {
                assert!(f.row(2).iter().all(|&v| v == 0.0), "{margin}");
                assert!(dx.row(2).iter().all(|&v| v == 0.0), "{margin}");
            }
        }
    }
}

/// Two runs give the same bits (no atomics, fixed summation order, γ reduced in order).
#[test]
fn results_are_bitwise_reproducible() {
    let case = problem(
        97,
        70,
        131,
        Margin::lsoftmax(4, 0.5).unwrap(),
        Mode::Train,
        7,
    );
    let a = run(&EmulatedBackend, &case);
    let b = run(&EmulatedBackend, &case);
    assert_eq!(bits(&a.0), bits(&b.0), "F differs between runs");
    for (ca, cb) in a.1.iter().zip(&b.1) {
        let (ba, bb): (Vec<u32>, Vec<u32>) = (
            ca.iter().map(|v| v.to_bits()).collect(),
            cb.iter().map(|v| v.to_bits()).collect(),
        );
        assert_eq!(ba, bb, "row cache differs between runs");
    }
    assert_eq!(bits(&a.2), bits(&b.2), "dX differs between runs");
    assert_eq!(bits(&a.3), bits(&b.3), "dW differs between runs");
    // The run did exercise the margin: some cache entries are not the plain ones.
    assert!(
        a.1[1].iter().any(|&s| s != 0.0),
        "no L-Softmax row in the test problem"
    );
}

/// Column-major and transposed views give the same bits as row-major inputs.
#[test]
fn strided_views_give_the_same_result() {
    let case = problem(
        40,
        23,
        19,
        Margin::lsoftmax(2, 1.0).unwrap(),
        Mode::Train,
        3,
    );
    let fortran = |a: &Array2<f32>| {
        let mut f = Array2::<f32>::zeros(a.dim().f());
        f.assign(a);
        f
    };
    let (xf, gf) = (fortran(&case.x), fortran(&case.dout));
    // W as the transpose of a D×C row-major array: a view with strides (1, C).
    let wt = case.w.t().to_owned();
    let w_view = wt.t();
    let fwd = forward_on(
        &EmulatedBackend,
        xf.view(),
        w_view,
        &case.labels,
        case.margin,
        case.mode,
    )
    .unwrap();
    let grads = backward(&fwd, gf.view()).unwrap();
    let want = run(&EmulatedBackend, &case);
    assert_eq!(bits(&fwd.out), bits(&want.0));
    assert_eq!(bits(&grads.dx), bits(&want.2));
    assert_eq!(bits(&grads.dw), bits(&want.3));
}

/// Entries around 1e20 have squares beyond f32's range: norms summed in f32 would be
/// infinite (cos θ = 0); the kernels' f64 norms keep L-Softmax right there.
#[test]
fn huge_rows_keep_their_angle() {
    let mut case = problem(9, 33, 5, Margin::lsoftmax(2, 0.0).unwrap(), Mode::Train, 11);
    case.x.row_mut(1).mapv_inplace(|v| v * 1e20);
    case.x.row_mut(4).mapv_inplace(|v| v * 3e19);
    check_backend(&EmulatedBackend, &case).unwrap();
}

/// Degenerate rows (x_i = 0, or w_{y_i} = 0) take the plain-layer cache, as on the CPU.
#[test]
fn degenerate_rows_use_the_plain_cache() {
    let case = problem(29, 16, 4, Margin::lsoftmax(4, 0.0).unwrap(), Mode::Train, 5);
    let (_, cache, _, _) = run(&EmulatedBackend, &case);
    let mut seen = 0;
    for (i, &y) in case.labels.iter().enumerate() {
        if i % 7 == 0 || y == 3 {
            seen += 1;
            assert_eq!(
                (cache[0][i], cache[1][i], cache[2][i]),
                (1.0, 0.0, 0.0),
                "row {i}"
            );
        }
    }
    assert!(seen > 4);
}

/// A problem beyond the grid limits is refused before launching, naming the size.
#[test]
fn oversized_batch_is_a_shape_error() {
    let n = 65_535 * 64 + 1;
    let x = Array2::<f32>::zeros((n, 1));
    let w = Array2::<f32>::ones((1, 1));
    let labels = vec![0; n];
    let err = forward_on(
        &variant(KernelVariant::Base, SplitK::Off),
        x.view(),
        w.view(),
        &labels,
        Margin::plain(),
        Mode::Infer,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Shape(_)) && err.to_string().contains("N = 4194241"),
        "{err}"
    );
}

fn variant(variant: KernelVariant, split_k: SplitK) -> EmulatedVariant {
    EmulatedVariant {
        choice: KernelChoice { variant, split_k },
    }
}

/// Every variant sums each output over k in the same order with one fma per step (γ too),
/// so every variant gives the base variant's bits, on shapes that cross tiles and stages of every
/// variant: multiples of 16, 64 and 128, D and C not multiples of 4 (scalar global
/// loads) and multiples of 4 (128-bit global loads), ragged edges.
#[test]
fn every_variant_gives_the_base_variants_bits() {
    let shapes = [(130, 64, 136), (64, 130, 67), (17, 256, 128), (129, 33, 9)];
    for (s, &(n, d, c)) in shapes.iter().enumerate() {
        let margin = Margin::lsoftmax(3, 0.5).unwrap();
        let case = problem(n, d, c, margin, Mode::Train, 40 + s as u64);
        let base = run(&variant(KernelVariant::Base, SplitK::Off), &case);
        for v in KernelVariant::ALL.into_iter().skip(1) {
            let got = run(&variant(v, SplitK::Off), &case);
            let at = format!("variant {v}, (N, D, C) = ({n}, {d}, {c})");
            assert_eq!(bits(&got.0), bits(&base.0), "F, {at}");
            for (cg, cb) in got.1.iter().zip(&base.1) {
                let (bg, bb): (Vec<u32>, Vec<u32>) = (
                    cg.iter().map(|v| v.to_bits()).collect(),
                    cb.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(bg, bb, "row cache, {at}");
            }
            assert_eq!(bits(&got.2), bits(&base.2), "dX, {at}");
            assert_eq!(bits(&got.3), bits(&base.3), "dW, {at}");
        }
        check_backend(&variant(KernelVariant::Ldg, SplitK::Off), &case)
            .unwrap_or_else(|msg| panic!("ldg, ({n}, {d}, {c}): {msg}"));
    }
}

/// Split-K: agreement with the reference and the same bits on every run.
#[test]
fn split_k_agrees_and_is_bitwise_reproducible() {
    for (s, &(n, d, c, splits)) in [(67, 40, 200, 3), (128, 64, 1024, 4), (5, 130, 33, 2)]
        .iter()
        .enumerate()
    {
        let case = problem(
            n,
            d,
            c,
            Margin::lsoftmax(2, 0.0).unwrap(),
            Mode::Train,
            90 + s as u64,
        );
        let split = variant(KernelVariant::Ldg, SplitK::Force(splits));
        check_backend(&split, &case)
            .unwrap_or_else(|msg| panic!("({n}, {d}, {c}) in {splits} chunks: {msg}"));
        let a = run(&split, &case);
        let b = run(&split, &case);
        assert_eq!(bits(&a.2), bits(&b.2), "split-K dX differs between runs");
    }
}

/// The simplified margin's convention at its kink (`docs/math.md`): `p = 1`, `g = z` at
/// z = 0, tested where z is exactly 0 whatever the summation order: an all-zero x row
/// (its dX row is `Σ_j G_ij·w_j` with the plain `G`) and rows whose target class has a
/// zero weight row (that class's dW row is `Σ_i G_iy·x_i`, plain too). Those rows must
/// give the plain layer's bits exactly: the agreement bound would also accept the other
/// branch's `p = k` no longer (see `reference::agreement`), and this checks the bits.
#[test]
fn simplified_margin_takes_the_plain_branch_at_z_zero() {
    // 64 × 48 × 32 and a ragged shape: both tile-multiple and edge tiles.
    for (n, d, c) in [(64, 48, 32), (23, 17, 6)] {
        let mut case = problem(n, d, c, Margin::simplified(0.25).unwrap(), Mode::Train, 9);
        let zero_class = c - 1; // `problem` zeroes the last class's weights
        case.labels[1] = zero_class;
        case.labels[2] = zero_class;
        // Row 0 is all zero (`problem` zeroes every 7th row); make its target a live class.
        case.labels[0] = 0;
        let simplified = run(&EmulatedBackend, &case);
        let plain = run(
            &EmulatedBackend,
            &Case {
                margin: Margin::plain(),
                ..case.clone()
            },
        );
        let zero_rows: Vec<usize> = (0..n).filter(|i| i % 7 == 0).collect();
        for &i in zero_rows.iter().chain(&[1, 2]) {
            assert_eq!(simplified.1[0][i], 1.0, "p of row {i} (z = 0)");
            let y = case.labels[i];
            assert_eq!(
                simplified.0[[i, y]].to_bits(),
                0.0f32.to_bits(),
                "g of row {i}"
            );
        }
        for &i in &zero_rows {
            let (got, want) = (simplified.2.row(i), plain.2.row(i));
            assert!(
                got.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "({n}, {d}, {c}): dX row {i} (x_i = 0) is not the plain layer's"
            );
        }
        let (got, want) = (simplified.3.row(zero_class), plain.3.row(zero_class));
        assert!(
            got.iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "({n}, {d}, {c}): dW row {zero_class} (w = 0) is not the plain layer's"
        );
        // The margin is active elsewhere: some row has p = k.
        assert!(simplified.1[0].contains(&0.25), "no row with z > 0");
    }
}
