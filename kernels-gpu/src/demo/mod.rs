//! Small kernels that exercise the device facade: a map, a shared-memory reduction with
//! barriers, and a tiled transpose through shared memory. Each comes with a host-side
//! `run` helper that launches it under the emulator.

pub mod block_sum;
pub mod transpose;
pub mod vector_add;
