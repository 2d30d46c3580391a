//! The CPU backend (`reference::fast`) against the bare GEMMs it is built on.
//!
//! Goal: the margin work — validation, norms, the per-row epilogue, the
//! diagonal corrections — costs at most 20% over the GEMMs of the same shapes.
//! Single thread: ndarray's matrixmultiply runs on one thread unless its `threading`
//! feature is on, which this crate does not enable.
//!
//! Run: `cargo bench --bench cpu_layer`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lsoftmax::{Margin, Mode, backward, forward};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn random(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// `A·B` into a fresh array, as the layer allocates its outputs.
fn gemm(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    c
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_layer");
    group.sample_size(10);
    for (n, d, classes) in [(256usize, 512usize, 10_000usize), (1024, 512, 1000)] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x = random(n, d, &mut rng);
        let w = random(classes, d, &mut rng);
        let g = random(n, classes, &mut rng);
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..classes)).collect();
        let margin = Margin::lsoftmax(4, 0.0).unwrap();
        let shape = format!("N{n}_D{d}_C{classes}");

        group.bench_function(BenchmarkId::new("bare_gemm_forward", &shape), |b| {
            b.iter(|| black_box(gemm(x.view(), w.t())))
        });
        group.bench_function(BenchmarkId::new("layer_forward_lsoftmax_m4", &shape), |b| {
            b.iter(|| {
                black_box(
                    forward(x.view(), w.view(), &labels, margin, Mode::Train)
                        .unwrap()
                        .out,
                )
            })
        });
        group.bench_function(
            BenchmarkId::new("bare_gemm_forward_backward", &shape),
            |b| {
                b.iter(|| {
                    let f = gemm(x.view(), w.t());
                    let dx = gemm(g.view(), w.view());
                    let dw = gemm(g.t(), x.view());
                    black_box((f, dx, dw))
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("layer_forward_backward_lsoftmax_m4", &shape),
            |b| {
                b.iter(|| {
                    let fwd = forward(x.view(), w.view(), &labels, margin, Mode::Train).unwrap();
                    let grads = backward(&fwd, g.view()).unwrap();
                    black_box((fwd.out, grads))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
