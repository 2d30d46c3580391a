//! Timing one kernel with CUDA events around repeated launches, and the random problems
//! it is timed on (`lsoftmax profile`).

use std::time::Duration;

use cust::event::{Event, EventFlags};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::context::State;
use super::error::cuda_err;
use crate::backend::flops::MarginKernel;
use crate::backend::launch::KernelChoice;
use crate::backend::pipeline::Staged;
use crate::error::{Error, Result};
use crate::margin::Margin;

/// Random inputs for `CudaBackend::time_kernel`: X, W, G uniform in `[-1, 1)`, labels
/// uniform in `0..C`, from a seeded ChaCha8 stream.
#[derive(Clone, Debug)]
pub struct Problem {
    /// N×D inputs.
    pub x: Array2<f32>,
    /// C×D weights.
    pub w: Array2<f32>,
    /// N labels in `0..C`.
    pub labels: Vec<usize>,
    /// N×C upstream gradient.
    pub g: Array2<f32>,
    /// The margin the forward applies.
    pub margin: Margin,
}

impl Problem {
    /// A random problem of shape (N, D, C); errors if any is 0.
    pub fn random(n: usize, d: usize, c: usize, margin: Margin, seed: u64) -> Result<Self> {
        if n == 0 || d == 0 || c == 0 {
            return Err(Error::Shape(format!(
                "empty problem: N = {n}, D = {d}, C = {c} (all must be >= 1)"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut uniform = |rows, cols| {
            Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0f32..1.0))
        };
        let (x, w, g) = (uniform(n, d), uniform(c, d), uniform(n, c));
        let labels = (0..n).map(|_| rng.random_range(0..c)).collect();
        Ok(Problem {
            x,
            w,
            labels,
            g,
            margin,
        })
    }
}

/// Times `iters` back-to-back launches of `kernel` on `problem` (already validated) on
/// the locked `state`: the inputs are staged by one training forward first, then CUDA
/// events recorded on the stream around the launches measure them.
pub(super) fn time_kernel(
    state: &mut State,
    choice: KernelChoice,
    kernel: MarginKernel,
    problem: &Problem,
    iters: u64,
) -> Result<Duration> {
    let inputs = (problem.x.view(), problem.w.view(), &problem.labels[..]);
    let mut staged = Staged::new(state, choice, inputs, problem.g.view(), problem.margin)?;
    let start = Event::new(EventFlags::DEFAULT).map_err(cuda_err("cuEventCreate"))?;
    let stop = Event::new(EventFlags::DEFAULT).map_err(cuda_err("cuEventCreate"))?;
    start
        .record(&staged.device().stream)
        .map_err(cuda_err("cuEventRecord"))?;
    for _ in 0..iters {
        staged.launch(kernel)?;
    }
    stop.record(&staged.device().stream)
        .map_err(cuda_err("cuEventRecord"))?;
    stop.synchronize()
        .map_err(cuda_err("running the timed kernels"))?;
    stop.elapsed(&start).map_err(cuda_err("cuEventElapsedTime"))
}
