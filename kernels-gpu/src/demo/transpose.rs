//! Tiled matrix transpose through shared memory.

use crate::device::{
    Global, GlobalMut, block_idx_x, block_idx_y, dynamic_shared, sync_threads, thread_idx_x,
    thread_idx_y,
};
use crate::kernel;

/// Side of the square tile a block transposes.
pub const TILE: u32 = 32;
/// Rows of threads per block: each thread moves `TILE / BLOCK_ROWS` elements.
pub const BLOCK_ROWS: u32 = 8;
/// Row pitch of the shared tile: one padding column so that reading a tile column hits
/// 32 different banks on the GPU instead of one.
pub const TILE_PITCH: u32 = TILE + 1;
/// Dynamic shared memory the kernel needs.
pub const SHARED_BYTES: usize = (TILE * TILE_PITCH) as usize * size_of::<f32>();

kernel! {
    /// `output[c * rows + r] = input[r * cols + c]`: transposes a row-major
    /// `rows x cols` matrix.
    ///
    /// Launch with blocks of `(TILE, BLOCK_ROWS)` threads, a grid of
    /// `(ceil(cols / TILE), ceil(rows / TILE))` blocks and [`SHARED_BYTES`] of dynamic
    /// shared memory. Each block loads a tile with reads coalesced along input rows,
    /// waits, and writes it transposed with writes coalesced along output rows.
    pub fn transpose(input: Global<f32>, output: GlobalMut<f32>, rows: u32, cols: u32) {
        transpose_tile(input, output, rows, cols, TILE_PITCH);
    }
}

kernel! {
    /// [`transpose`] without the padding column (shared row pitch [`TILE`]): reading a
    /// tile column hits one bank 32 times, a 32-way bank conflict on the GPU. Same
    /// results; a demonstration for the PTX backend's memory statistics
    /// (`lsoftmax ptx --sim`).
    pub fn transpose_naive(input: Global<f32>, output: GlobalMut<f32>, rows: u32, cols: u32) {
        transpose_tile(input, output, rows, cols, TILE);
    }
}

/// The body of both transposes; `pitch` is the shared tile's row pitch in floats.
#[inline(always)]
fn transpose_tile(input: Global<f32>, output: GlobalMut<f32>, rows: u32, cols: u32, pitch: u32) {
    let tile = dynamic_shared::<f32>();
    let (tx, ty) = (thread_idx_x(), thread_idx_y());
    // Global indices in usize: a grid of up to 2^31 - 1 blocks of TILE columns passes
    // 2^32, where u32 arithmetic would wrap onto another block's elements.
    let (rows_u, cols_u) = (rows as usize, cols as usize);
    let tile_u = TILE as usize;
    // Load: thread (tx, ty) reads input column `col`, rows `row0 + k * BLOCK_ROWS`.
    let col = block_idx_x() as usize * tile_u + tx as usize;
    let row0 = block_idx_y() as usize * tile_u + ty as usize;
    let mut k = 0;
    while k < TILE {
        let row = row0 + k as usize;
        if row < rows_u && col < cols_u {
            let v = input.get(row * cols_u + col);
            tile.set(((ty + k) * pitch + tx) as usize, v);
        }
        k += BLOCK_ROWS;
    }
    sync_threads();
    // Store: the block's tile lands at the mirrored block position; thread (tx, ty)
    // now writes output column `out_col` (an input row).
    let out_col = block_idx_y() as usize * tile_u + tx as usize;
    let out_row0 = block_idx_x() as usize * tile_u + ty as usize;
    let mut k = 0;
    while k < TILE {
        let out_row = out_row0 + k as usize;
        if out_row < cols_u && out_col < rows_u {
            let v = tile.get((tx * pitch + ty + k) as usize);
            output.set(out_row * rows_u + out_col, v);
        }
        k += BLOCK_ROWS;
    }
}

/// The transpose of the row-major `rows x cols` matrix `input`, on the emulator.
#[cfg(not(target_arch = "nvptx64"))]
pub fn run(input: &[f32], rows: u32, cols: u32) -> Result<Vec<f32>, crate::emulator::LaunchError> {
    use crate::emulator::{DeviceBuffer, LaunchConfig, launch};
    assert_eq!(
        input.len(),
        rows as usize * cols as usize,
        "input is rows x cols"
    );
    let config = LaunchConfig {
        grid: (cols.div_ceil(TILE), rows.div_ceil(TILE), 1),
        block: (TILE, BLOCK_ROWS, 1),
        dynamic_shared_bytes: SHARED_BYTES,
    };
    let din = DeviceBuffer::from_slice(input).named("input");
    let out = DeviceBuffer::<f32>::uninit(input.len()).named("output");
    let (vin, vout) = (din.view(), out.view_mut());
    launch(&config, "transpose", || transpose(vin, vout, rows, cols))?;
    Ok(out.to_vec())
}
