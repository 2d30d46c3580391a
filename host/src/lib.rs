//! The Large-Margin Softmax layer on the host: margins, layer API, reference, backends.
//!
//! - [`layer`]: `forward`/`backward` of `F = X·Wᵀ` with a margin on the target logit.
//! - [`margin`]: the margin functions and β schedules.
//! - [`reference`](mod@reference): the CPU reference (`naive`, the definition of right), the fast
//!   CPU backend, and the agreement check of any backend against `naive`.
//! - [`backend`]: the backend seam (cpu, emulated, cuda) and the launch plans of the kernels.
//! - [`operator`], [`gradcheck`]: operators with forward/backward, and their finite-difference
//!   check.
//! - [`npy_io`]: `.npy` input and output for `lsoftmax run`.
//!
//! The PTX interpreter ([`ptxsim`]) and the PTX build and reports ([`ptx_tools`]) are crates
//! of their own under `tools/`; the `lsoftmax` command and the toy model are the root
//! package.

pub mod backend;
pub mod error;
pub mod gradcheck;
pub mod layer;
pub mod margin;
pub mod npy_io;
pub mod operator;
pub mod reference;
pub mod types;

pub use backend::Backend;
pub use error::{Error, Result};
pub use layer::{Forward, Grads, RowCache, backward, forward, forward_on};
pub use margin::{BetaSchedule, Margin, Mode};
