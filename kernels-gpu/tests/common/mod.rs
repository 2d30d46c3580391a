//! Shared helpers of the emulator tests: every detector test is a pair of kernels, a
//! buggy one whose launch must fail with the right fault, and a correct twin whose
//! launch must succeed.
#![allow(dead_code)] // each test binary uses a subset

use kernels_gpu::emulator::{LaunchConfig, LaunchError};

/// A 1-D launch of `grid` blocks of `block` threads with `shared` bytes.
pub fn config_1d(grid: u32, block: u32, shared: usize) -> LaunchConfig {
    LaunchConfig {
        grid: (grid, 1, 1),
        block: (block, 1, 1),
        dynamic_shared_bytes: shared,
    }
}

/// The error of a launch that must fail, with its message checked for `parts`.
#[track_caller]
pub fn expect_fault(result: Result<(), LaunchError>, parts: &[&str]) -> LaunchError {
    let err = match result {
        Ok(()) => panic!("the buggy kernel's launch succeeded: the detector missed the bug"),
        Err(err) => err,
    };
    let message = err.to_string();
    for part in parts {
        assert!(
            message.contains(part),
            "error message lacks {part:?}:\n{message}"
        );
    }
    err
}

/// A launch that must succeed (the correct twin).
#[track_caller]
pub fn expect_clean(result: Result<(), LaunchError>) {
    if let Err(err) = result {
        panic!("the correct kernel was reported: {err}");
    }
}
