//! The kernel crate of this workspace and where its PTX is built: the glue between
//! [`compile`](crate::compile), which takes explicit folders, and the callers that only
//! know they run somewhere inside the workspace. The gate's architectures live here too.

use std::path::{Path, PathBuf};

use crate::compile::{self, PtxBuild, PtxOutput};
use crate::error::{Error, Result};

/// Architectures the ptxas gate assembles for: Volta, Ampere, Hopper.
pub const CHECK_ARCHS: &[&str] = &["sm_70", "sm_80", "sm_90"];

/// The `kernels-gpu` package: searched from the current directory upwards, then next to
/// this crate's sources (where `cargo run` from anywhere in the workspace finds it).
pub fn locate_kernels_dir() -> Result<PathBuf> {
    let from_cwd = std::env::current_dir()
        .ok()
        .and_then(|cwd| compile::find_kernels_dir(&cwd));
    from_cwd
        .or_else(|| compile::find_kernels_dir(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .ok_or_else(|| Error::File {
            path: "kernels-gpu/Cargo.toml".into(),
            message: "not found in the current directory, its parents, or next to the \
                      ptx-tools sources; run from inside the workspace"
                .into(),
        })
}

/// The nvptx cargo target directory: `$CARGO_TARGET_DIR/nvptx` if that is set, else
/// `target/nvptx` in the workspace that holds `kernels_dir`.
pub fn default_target_dir(kernels_dir: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("nvptx"),
        None => kernels_dir
            .parent()
            .unwrap_or(kernels_dir)
            .join("target")
            .join("nvptx"),
    }
}

/// Builds the workspace's kernels to PTX for `arch` (see [`compile::build_ptx`]).
pub fn build(arch: &str, line_info: bool) -> Result<PtxOutput> {
    let kernels_dir = locate_kernels_dir()?;
    let target_dir = default_target_dir(&kernels_dir);
    Ok(compile::build_ptx(&PtxBuild {
        kernels_dir,
        target_dir,
        arch: arch.to_string(),
        line_info,
    })?)
}
