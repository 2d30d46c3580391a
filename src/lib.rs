//! The `lsoftmax` command and the toy model, over the margin layer ([`lsoftmax_host`]),
//! the kernels ([`kernels`]), the PTX interpreter ([`ptxsim`]) and the PTX tools
//! ([`ptx_tools`]).
//!
//! - [`cli`]: argument parsing and printing of every subcommand.
//! - [`commands`]: what each subcommand does, as library functions (the margin kernels
//!   composed with the generic PTX tools).
//! - [`train`]: the toy model (digits, small MLP + margin layer) that checks the margin
//!   helps, and its plots.
//!
//! The layer's API is re-exported at the top, so tests, benches and users need one
//! dependency.
pub use kernels_gpu as kernels;
pub use lsoftmax_host::*;
pub use ptx_tools;
pub use ptxsim;

pub mod cli;
pub mod commands;
pub mod train;
