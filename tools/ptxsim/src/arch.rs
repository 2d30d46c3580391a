//! Facts of the GPU shared by the machine and the statistics, kept below both so neither
//! imports the other for them.

/// Threads per warp: the unit in which the statistics group lanes into requests.
pub const WARP: u32 = 32;
