//! With the `cuda` feature: builds the kernels' PTX (nightly rustc, nvptx64, `.loc` line
//! info) into `OUT_DIR/kernels.ptx`, which `src/backend/cuda/module.rs` embeds. Without the
//! feature it does nothing.
//!
//! The build is the one `lsoftmax ptx` runs: the same source file does it, and the nested
//! cargo works in `<target dir>/nvptx` of this build's own target directory (found from
//! `OUT_DIR`, so `--target-dir`, `CARGO_TARGET_DIR` (relative or absolute) and
//! `build.target-dir` all work), which is `lsoftmax ptx`'s directory too when both use the
//! default target dir or the same absolute `CARGO_TARGET_DIR`.

use std::path::{Path, PathBuf};

// Only the build entry point is used here; the file's PTX inspection helpers serve
// `lsoftmax ptx`.
#[allow(dead_code)]
#[path = "../tools/ptx-tools/src/compile.rs"]
mod compile;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    if let Err(message) = build() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent folder", manifest_dir.display()))?;
    let kernels_dir = workspace.join("kernels-gpu");
    for watched in ["src", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            kernels_dir.join(watched).display()
        );
    }
    println!("cargo:rerun-if-changed=../tools/ptx-tools/src/compile.rs");
    println!("cargo:rerun-if-env-changed=LSOFTMAX_PTX_ARCH");
    println!("cargo:rerun-if-env-changed={}", compile::NIGHTLY_ENV);

    // The same architecture the `ptx` backend interprets (`LSOFTMAX_PTX_ARCH` overrides).
    let arch = compile::embedded_arch();
    let target_dir = compile::cargo_target_dir(&out_dir).join("nvptx");
    let ptx = compile::build_ptx(&compile::PtxBuild {
        kernels_dir,
        target_dir,
        arch,
        line_info: true,
    })
    .map_err(explain)?;
    // `build_ptx` already kept only the line tables (`keep_line_tables_only`): the
    // `.target ..., debug` LLVM writes would make the driver's JIT compile unoptimised.
    write(&out_dir.join("kernels.ptx"), &ptx.text)
}

/// The compile error, with the commands that fix a missing toolchain spelled out.
fn explain(e: compile::CompileError) -> String {
    let fix = match &e {
        compile::CompileError::Missing { .. } => format!(
            "\nThe `cuda` feature builds the kernels to PTX with the pinned nightly toolchain \
             ({}) and its rust-src. Fix: run `{}` (or `rustup toolchain install {} --profile \
             minimal --component rust-src`).",
            compile::NIGHTLY,
            compile::SETUP_COMMAND,
            compile::NIGHTLY
        ),
        _ => String::new(),
    };
    format!("building the kernels' PTX for the cuda feature: {e}{fix}")
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
