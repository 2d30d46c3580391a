//! Facade of the margin-softmax crate: re-exports the host library (layer API, references,
//! backends, tools) and the kernel crate, so tests, benches and users need one dependency.
pub use kernels_gpu as kernels;
pub use lsoftmax_host::*;
