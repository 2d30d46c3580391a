//! The Large-Margin Softmax layer on the host: margins, layer API, reference, backends.
//!
//! - [`layer`]: `forward`/`backward` of `F = X·Wᵀ` with a margin on the target logit.
//! - [`margin`]: the margin functions and β schedules.
//! - [`types`]: what every part shares: the [`Backend`] trait, the row cache and
//!   gradients that cross it, and the validation of its inputs.
//! - [`reference`](mod@reference): the CPU reference (`naive`, the definition of right), the fast
//!   CPU backend's computation, and the agreement check of any backend against `naive`.
//! - [`backend`]: the backends (cpu, emulated, ptx, cuda), the launch plans and argument
//!   ABI of the kernels, and the one launch pipeline the device backends share.
//! - [`operator`], [`gradcheck`]: operators with forward/backward, and their finite-difference
//!   check.
//! - [`npy_io`]: `.npy` input and output for `lsoftmax run`.
//!
//! # Layers
//! A module imports only from its own layer's files or the layers below, never upward, and
//! no chain of imports between files comes back to where it started:
//! ```text
//! gradcheck                            finite-difference check of operators
//! layer, operator                      the API callers use
//! backend (mod.rs: BackendKind)        choosing a backend by name
//! backend/{cpu, emulated, ptx, cuda/}  the backends; the device ones lend the pipeline a Device
//! backend/pipeline/                    forward/backward once, over the Device trait
//! backend/device                       the Device trait: what a device backend provides
//! backend/{launch, abi, flops}         launch plans, argument packing, FLOP counts
//! reference/{agreement, fast, naive}   the right answer, and the check against it
//! types                                Backend, RowCache, Grads, validation
//! margin, error, npy_io                margins (and their kernel parameters), errors, files
//! ```
//! Below the crate: `kernels-gpu` (kernels, parameter structs, emulator), `ptxsim` and
//! `ptx-tools`.
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
