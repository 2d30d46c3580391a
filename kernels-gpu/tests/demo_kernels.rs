//! The demo kernels under the emulator agree with plain CPU code on odd sizes (not
//! multiples of the block), with every check on.

use kernels_gpu::demo::{block_sum, transpose, vector_add};
use kernels_gpu::emulator::{DeviceBuffer, LaunchConfig, LaunchOptions, launch_with_options};
use proptest::prelude::*;

fn values(len: impl Into<proptest::collection::SizeRange>) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-1.0f32..1.0, len)
}

proptest! {
    // Each case is a launch of up to a few 256-thread blocks: keep the count small.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn vector_add_matches_cpu((a, b) in (1usize..1500).prop_flat_map(|n| (values(n), values(n)))) {
        let out = vector_add::run(&a, &b).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn block_sum_matches_cpu(
        input in values(1usize..1200),
        block in prop::sample::select(vec![32u32, 64, 128, 256]),
    ) {
        let partial = block_sum::run(&input, block).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let chunks: Vec<&[f32]> = input.chunks(block as usize).collect();
        prop_assert_eq!(partial.len(), chunks.len());
        for (got, chunk) in partial.iter().zip(chunks) {
            let expected: f64 = chunk.iter().map(|&v| f64::from(v)).sum();
            // Tree order vs sequential: f32 rounding of up to `block` terms of |v| <= 1.
            let bound = 1e-6 * chunk.len() as f64 * chunk.len().ilog2().max(1) as f64;
            prop_assert!((f64::from(*got) - expected).abs() <= bound,
                "partial {got} vs {expected} (bound {bound})");
        }
    }

    #[test]
    fn transpose_matches_cpu(
        (rows, cols, m) in (1u32..80, 1u32..80)
            .prop_flat_map(|(r, c)| (Just(r), Just(c), values((r * c) as usize)))
    ) {
        let out = transpose::run(&m, rows, cols).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for r in 0..rows as usize {
            for c in 0..cols as usize {
                prop_assert_eq!(out[c * rows as usize + r], m[r * cols as usize + c]);
            }
        }
    }
}

/// The transpose under perturbed schedules: its single barrier is all that orders the
/// tile's writes before its reads, so any missing ordering would show up here.
#[test]
fn transpose_is_race_free_under_perturbed_schedules() {
    let (rows, cols) = (45u32, 37u32);
    let m: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let input = DeviceBuffer::from_slice(&m);
    for seed in 0..4 {
        let out = DeviceBuffer::<f32>::uninit(m.len());
        let (vin, vout) = (input.view(), out.view_mut());
        let config = LaunchConfig {
            grid: (
                cols.div_ceil(transpose::TILE),
                rows.div_ceil(transpose::TILE),
                1,
            ),
            block: (transpose::TILE, transpose::BLOCK_ROWS, 1),
            dynamic_shared_bytes: transpose::SHARED_BYTES,
        };
        let options = LaunchOptions {
            schedule_seed: Some(seed),
            ..LaunchOptions::default()
        };
        launch_with_options(&config, &options, "transpose", || {
            transpose::transpose(vin, vout, rows, cols)
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let out = out.to_vec();
        for r in 0..rows as usize {
            for c in 0..cols as usize {
                assert_eq!(out[c * rows as usize + r], m[r * cols as usize + c]);
            }
        }
    }
}
