//! What each `lsoftmax` subcommand does, as library functions: `src/cli` parses the
//! arguments, calls one function here, prints what it returns and maps errors to exit
//! statuses. This is where the margin crate is composed with the generic tools: which
//! kernels the PTX gate requires and how the layer launches them ([`ptx`]), the margin
//! kernels on the PTX interpreter ([`ptx_sim`]), the layer on `.npy` files ([`run`]), the
//! gradient checks ([`gradcheck`]) and the CUDA timing for profilers ([`profile`]).

pub mod demo;
pub mod gradcheck;
pub mod profile;
pub mod ptx;
pub mod ptx_sim;
pub mod run;
