//! The three margin kernels on the CUDA device, every kernel variant (rung of the kernel
//! ladder) and cuBLAS SGEMM on the same GEMM, timed with CUDA events.
//!
//! Each criterion sample launches one kernel back to back (`iter_custom`) between two
//! events recorded on the backend's stream, so uploads and host work are not timed. The
//! inputs are prepared outside the events: X, W, G uniform in [-1, 1), labels uniform,
//! the row norms and, for the gradients, one training forward (L-Softmax m = 4, β = 0).
//! Benchmark ids are `KERNEL/VARIANT/N.._D.._C..` and `KERNEL/cublas/…`: pass a filter
//! to run some (`cargo bench --features cuda --bench cuda_kernels -- /ldg/`).
//!
//! cuBLAS runs through `cudarc` (loaded at run time) in the device's primary context,
//! which cust's backend also uses: the same device memory kind, the same clocks. Its
//! GEMMs are the kernels' GEMMs without the margin terms: `F = X·Wᵀ`, `dX = G·W`,
//! `dW = Gᵀ·X`, row-major, so the ratio printed at the end (kernel time / SGEMM time,
//! median of 5 event-timed runs of 20 launches each) is what the margin kernels cost
//! over the vendor GEMM.
//!
//! Throughput is in FLOPs, so criterion's `elem/s` reads as FLOP/s (a fused multiply-add
//! counts 2):
//! - `margin_forward`:     2·N·D·C
//! - `margin_input_grad`:  2·N·C·D + 2·N·D
//! - `margin_weight_grad`: 2·N·C·D + 2·C·D
//!
//! Run: `cargo bench --features cuda --bench cuda_kernels`. Without a usable device (or
//! without cuBLAS for the baseline) it prints `skipped: …` and exits 0. (Linking needs
//! the driver's libcuda.so: on a machine without an NVIDIA driver the bench does not
//! build.)

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use lsoftmax::Margin;
use lsoftmax::backend::cuda::{CudaBackend, Problem};
use lsoftmax::backend::{KernelChoice, KernelVariant, MarginKernel};

/// (N, D, C): batches of 256 and 1024, D = 512, from 1000 classes to a large vocabulary.
const SHAPES: [(usize, usize, usize); 6] = [
    (256, 512, 1000),
    (256, 512, 16_384),
    (256, 512, 100_000),
    (1024, 512, 1000),
    (1024, 512, 16_384),
    (1024, 512, 100_000),
];

fn main() {
    let mut cuda = match CudaBackend::new() {
        Ok(cuda) => cuda,
        Err(e @ lsoftmax::Error::BackendUnavailable { .. }) => {
            println!("skipped: no CUDA device ({e})");
            return;
        }
        Err(e) => fail(&e),
    };
    let blas = match Sgemm::new() {
        Ok(b) => Some(b),
        Err(e) => {
            println!("skipped: the cuBLAS baseline ({e}); timing the kernels only");
            None
        }
    };
    let margin = Margin::lsoftmax(4, 0.0).unwrap_or_else(|e| fail(&e));
    println!("cuda_kernels on {}", cuda.device_name());
    let mut criterion = Criterion::default().configure_from_args();
    let mut ratios = Vec::new();
    for (n, d, c) in SHAPES {
        let problem = Problem::random(n, d, c, margin, 7).unwrap_or_else(|e| fail(&e));
        let operands = blas.as_ref().map(|b| b.upload(&problem));
        for kernel in MarginKernel::ALL {
            let mut group = criterion.benchmark_group(kernel.entry_name());
            // Whole FLOPs: fractional ones do not occur for these shapes.
            group.throughput(Throughput::Elements(kernel.flops(n, d, c) as u64));
            let shape = format!("N{n}_D{d}_C{c}");
            let sgemm = match (&blas, &operands) {
                (Some(b), Some(Ok(ops))) => {
                    let id = BenchmarkId::new("cublas", &shape);
                    group.bench_function(id, |bch| {
                        bch.iter_custom(|iters| {
                            b.time(kernel, ops, (n, d, c), iters)
                                .unwrap_or_else(|e| fail(&e))
                        })
                    });
                    Some(median(|| b.time(kernel, ops, (n, d, c), 20)))
                }
                (_, Some(Err(e))) => {
                    println!("skipped: cuBLAS on {shape} ({e})");
                    None
                }
                _ => None,
            };
            for variant in KernelVariant::ALL {
                cuda = cuda.with_kernels(KernelChoice::variant(variant));
                let id = BenchmarkId::new(variant.name(), &shape);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        cuda.time_kernel(kernel, &problem, iters)
                            .unwrap_or_else(|e| fail(&e))
                    })
                });
                if let Some(base) = sgemm {
                    let ours = median(|| {
                        cuda.time_kernel(kernel, &problem, 20)
                            .map_err(|e| e.to_string())
                    });
                    ratios.push((kernel, variant, shape.clone(), ours / base));
                }
            }
            group.finish();
        }
    }
    criterion.final_summary();
    if !ratios.is_empty() {
        println!("\nkernel time / cuBLAS SGEMM time (median of 5 × 20 launches, CUDA events):");
        for (kernel, variant, shape, r) in ratios {
            println!(
                "  {:<20} {:<9} {shape:<20} {r:.2}",
                kernel.entry_name(),
                variant.name()
            );
        }
    }
}

/// Median over 5 runs of a timing, seconds.
fn median(mut time: impl FnMut() -> Result<Duration, String>) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| time().unwrap_or_else(|e| fail(&e)).as_secs_f64())
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

/// cuBLAS on the device's primary context, with its own stream.
struct Sgemm {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
}

/// Device copies of one problem's X, W, G and an output region for each GEMM.
struct Operands {
    x: CudaSlice<f32>,
    w: CudaSlice<f32>,
    g: CudaSlice<f32>,
    out: RefCell<CudaSlice<f32>>,
}

impl Sgemm {
    fn new() -> Result<Self, String> {
        let ctx = CudaContext::new(0).map_err(|e| format!("primary context: {e}"))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cublasCreate: {e}"))?;
        Ok(Sgemm { stream, blas })
    }

    fn upload(&self, p: &Problem) -> Result<Operands, String> {
        let host = |a: &ndarray::Array2<f32>| a.iter().copied().collect::<Vec<f32>>();
        let (n, d) = p.x.dim();
        let c = p.w.nrows();
        let err = |e: cudarc::driver::DriverError| e.to_string();
        Ok(Operands {
            x: self.stream.clone_htod(&host(&p.x)).map_err(err)?,
            w: self.stream.clone_htod(&host(&p.w)).map_err(err)?,
            g: self.stream.clone_htod(&host(&p.g)).map_err(err)?,
            out: RefCell::new(
                self.stream
                    .alloc_zeros::<f32>((n * c).max(n * d).max(c * d))
                    .map_err(err)?,
            ),
        })
    }

    /// `iters` back-to-back SGEMMs of `kernel`'s GEMM between two events. cuBLAS is
    /// column-major: a row-major R×S matrix is its S×R transpose there.
    fn time(
        &self,
        kernel: MarginKernel,
        ops: &Operands,
        (n, d, c): (usize, usize, usize),
        iters: u64,
    ) -> Result<Duration, String> {
        let i = |v: usize| v as i32;
        // (transa, transb, m, n, k, A, lda, B, ldb, ldc) for C_cm = op(A)·op(B).
        let (ta, tb, m, nn, k, a, lda, b, ldb, ldc) = match kernel {
            // Fᵀ (C×N) = Wᵀ_cm… : W_cm is D×C, X_cm is D×N: Fᵀ = W_cmᵀ·X_cm.
            MarginKernel::Forward => (CUBLAS_OP_T, CUBLAS_OP_N, c, n, d, &ops.w, d, &ops.x, d, c),
            // dXᵀ (D×N) = W_cm (D×C) · G_cm (C×N).
            MarginKernel::InputGrad => (CUBLAS_OP_N, CUBLAS_OP_N, d, n, c, &ops.w, d, &ops.g, c, d),
            // dWᵀ (D×C) = X_cm (D×N) · G_cmᵀ (N×C).
            MarginKernel::WeightGrad => {
                (CUBLAS_OP_N, CUBLAS_OP_T, d, c, n, &ops.x, d, &ops.g, c, d)
            }
        };
        let cfg = GemmConfig {
            transa: ta,
            transb: tb,
            m: i(m),
            n: i(nn),
            k: i(k),
            alpha: 1.0f32,
            lda: i(lda),
            ldb: i(ldb),
            beta: 0.0f32,
            ldc: i(ldc),
        };
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let err = |e: cudarc::driver::DriverError| e.to_string();
        let mut out = ops.out.borrow_mut();
        let start = self.stream.record_event(flags).map_err(err)?;
        for _ in 0..iters {
            // SAFETY: the operands hold N×D, C×D and N×C floats and `out` at least the
            // largest output; the leading dimensions above are those of these row-major
            // buffers read column-major, so cuBLAS stays inside them.
            unsafe { self.blas.gemm(cfg, a, b, &mut *out) }.map_err(|e| e.to_string())?;
        }
        let stop = self.stream.record_event(flags).map_err(err)?;
        let ms = start.elapsed_ms(&stop).map_err(err)?;
        Ok(Duration::from_secs_f64(f64::from(ms) / 1e3))
    }
}

/// A CUDA error in the middle of a run: report it and stop with status 1.
fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}
