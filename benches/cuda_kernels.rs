//! The three margin kernels on the CUDA device, timed with CUDA events.
//!
//! Each sample launches one kernel back to back (criterion's `iter_custom`) between two
//! events recorded on the backend's stream, so uploads and host work are not timed. The
//! inputs are prepared outside the events: X, W, G uniform in [-1, 1), labels uniform,
//! the row norms and, for the gradients, one training forward (L-Softmax m = 4, β = 0).
//!
//! Throughput is in FLOPs, so criterion's `elem/s` reads as FLOP/s (a fused multiply-add
//! counts 2):
//! - `margin_forward`:     2·N·D·C
//! - `margin_input_grad`:  2·N·C·D + 2·N·D
//! - `margin_weight_grad`: 2·N·C·D + 2·C·D
//!
//! Run: `cargo bench --features cuda --bench cuda_kernels`. Without a usable device it
//! prints `skipped: no CUDA device (reason)` and exits 0. (Linking needs the driver's
//! libcuda.so: on a machine without an NVIDIA driver the bench does not build.)

use criterion::{BenchmarkId, Criterion, Throughput};
use lsoftmax::Margin;
use lsoftmax::backend::MarginKernel;
use lsoftmax::backend::cuda::{CudaBackend, Problem};

/// (N, D, C): a mid-sized batch, and a large-vocabulary one where C dominates.
const SHAPES: [(usize, usize, usize); 2] = [(512, 512, 1024), (1024, 512, 16_384)];

fn main() {
    let cuda = match CudaBackend::new() {
        Ok(cuda) => cuda,
        Err(e @ lsoftmax::Error::BackendUnavailable { .. }) => {
            println!("skipped: no CUDA device ({e})");
            return;
        }
        Err(e) => fail(&e),
    };
    let margin = match Margin::lsoftmax(4, 0.0) {
        Ok(m) => m,
        Err(e) => fail(&e),
    };
    println!("cuda_kernels on {}", cuda.device_name());
    let mut criterion = Criterion::default().configure_from_args();
    for kernel in MarginKernel::ALL {
        println!(
            "{}: FLOPs = {}; criterion's elem/s are FLOP/s",
            kernel.entry_name(),
            kernel.flops_formula()
        );
        let mut group = criterion.benchmark_group(kernel.entry_name());
        for (n, d, c) in SHAPES {
            let problem = Problem::random(n, d, c, margin, 7).unwrap_or_else(|e| fail(&e));
            // Whole FLOPs: fractional ones do not occur for these shapes.
            group.throughput(Throughput::Elements(kernel.flops(n, d, c) as u64));
            let id = BenchmarkId::from_parameter(format!("N{n}_D{d}_C{c}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    cuda.time_kernel(kernel, &problem, iters)
                        .unwrap_or_else(|e| fail(&e))
                })
            });
        }
        group.finish();
    }
    criterion.final_summary();
}

/// A CUDA error in the middle of a run: report it and stop with status 1.
fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}
