//! Host side of the Large-Margin Softmax kernel crate.
//!
//! - [`layer`]: `forward`/`backward` of `F = X·Wᵀ` with a margin on the target logit.
//! - [`margin`]: the margin functions and β schedules.
//! - [`reference`](mod@reference): the CPU reference (`naive`, the definition of right), the fast
//!   CPU backend, and the agreement check of any backend against `naive`.
//! - [`backend`]: the backend seam (cpu, emulated, cuda) and the launch plans of the kernels.
//! - [`operator`], [`gradcheck`]: operators with forward/backward, and their finite-difference
//!   check.
//! - [`npy_io`]: `.npy` input and output for `lsoftmax run`.
//! - [`ptx`]: the nvptx64 build of the kernels and the ptxas resource report.
//! - [`cli`]: the `lsoftmax` command.
//! - [`train`]: the toy model (digits, small MLP + margin layer) that checks the margin helps.

pub mod backend;
pub mod cli;
pub mod error;
pub mod gradcheck;
pub mod layer;
pub mod margin;
pub mod npy_io;
pub mod operator;
pub mod ptx;
pub mod ptxsim;
pub mod reference;
pub mod train;

pub use backend::Backend;
pub use error::{Error, Result};
pub use layer::{Forward, Grads, RowCache, backward, forward, forward_on};
pub use margin::{BetaSchedule, Margin, Mode};
