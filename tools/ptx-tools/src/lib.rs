//! The PTX of a Rust kernel crate (`kernels-gpu` in this workspace) and what it costs:
//! ptxas resources, occupancy, and the SASS of its main loops. Nothing here knows the
//! margin kernels; callers pass their entry names and launch shapes.
//!
//! - [`compile`]: the nightly `nvptx64-nvidia-cuda` build (std only, so a build script
//!   can `#[path]`-include it) and the `.entry` names of a PTX module.
//! - [`ptxas`]: `ptxas -v`, parsed per function: registers, spills, shared memory,
//!   stack frame, errors.
//! - [`occupancy`]: theoretical occupancy from registers, block size and shared memory.
//! - [`report`]: the per-kernel rows `lsoftmax ptx` prints, saves as JSON and compares.
//! - [`sass`]: `ptxas` to a cubin, `cuobjdump -sass`, the listing parsed.
//! - [`sass_loops`]: control-flow graph, natural loops, the main K loop and one stage's
//!   instruction mix.
//! - [`sass_model`]: the static upper bound on the fraction of FP32 peak.
//! - [`sass_report`]: the rows of `lsoftmax ptx --sass`, cuBLAS anchors, the density gate.
//!
//! Tools: `scripts/setup-ptx-tools` installs the nightly `rust-src`, ptxas, cuobjdump and
//! nvdisasm.

use std::path::{Path, PathBuf};

pub use error::{Error, Result};

pub mod compile;
mod error;
pub mod occupancy;
pub mod ptxas;
pub mod report;
pub mod sass;
pub mod sass_loops;
pub mod sass_model;
pub mod sass_report;

pub use compile::{CompileError, PtxBuild, PtxOutput, SETUP_COMMAND, ptx_entries, ptx_target};
pub use ptxas::{FunctionResources, PtxasReport};

/// Architectures the ptxas gate assembles for: Volta, Ampere, Hopper.
pub const CHECK_ARCHS: &[&str] = &["sm_70", "sm_80", "sm_90"];

impl From<CompileError> for Error {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Missing { tool, message } => Error::Toolchain { tool, message },
            CompileError::Cargo { .. } => Error::Toolchain {
                tool: "cargo (nightly, nvptx64)".into(),
                message: e.to_string(),
            },
            CompileError::Io { path, message } => Error::File {
                path: path.display().to_string(),
                message,
            },
            CompileError::Invalid(message) => Error::Toolchain {
                tool: "ptx build".into(),
                message,
            },
        }
    }
}

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
                      lsoftmax-host sources; run from inside the workspace"
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

/// What makes a ptxas run fail the gate, one message per problem: ptxas errors, any
/// spill, and any name of `expected` that is not an `.entry` of the PTX (`entries`) or
/// that ptxas did not compile.
pub fn gate_problems(report: &PtxasReport, entries: &[String], expected: &[&str]) -> Vec<String> {
    let mut problems: Vec<String> = report.errors.clone();
    for f in report.functions.iter().filter(|f| f.spills()) {
        problems.push(format!(
            "{} spills: {} bytes stores, {} bytes loads",
            f.name, f.spill_stores, f.spill_loads
        ));
    }
    for name in expected {
        if !entries.iter().any(|e| e == name) {
            problems.push(format!("expected kernel entry `{name}` is not in the PTX"));
        } else if report.errors.is_empty() && report.function(name).is_none_or(|f| !f.entry) {
            problems.push(format!("ptxas did not report entry `{name}`"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, spill_stores: u64) -> FunctionResources {
        FunctionResources {
            name: name.into(),
            entry: true,
            registers: 10,
            spill_stores,
            ..FunctionResources::default()
        }
    }

    #[test]
    fn entries_are_read_from_ptx() {
        // Excerpt of the kernels-gpu PTX built for sm_70 by nightly rustc.
        let ptx = "\
.version 7.0
.target sm_70
.address_size 64

.extern .shared .align 8 .b8 gpu_launch_sized_workgroup_mem[];

.visible .entry block_sum(
\t.param .align 8 .b8 block_sum_param_0[16],
)
{
}
\t// .globl\ttranspose
.visible .entry transpose(
\t.param .u32 transpose_param_2
)
.func helper()
";
        assert_eq!(ptx_entries(ptx), ["block_sum", "transpose"]);
        assert_eq!(ptx_target(ptx), Some("sm_70"));
    }

    #[test]
    fn line_tables_survive_and_debug_mode_goes() {
        // Shape of nightly rustc's PTX with `-C debuginfo=line-tables-only`, abridged.
        let ptx = "\
.version 7.8
.target sm_90, debug
.address_size 64

.visible .entry vector_add(
)
{
\t.loc\t24 8 0
\tret;
}
\t.file\t24 \"/work/main/kernels-gpu/src/demo/vector_add.rs\"
\t.section\t.debug_abbrev
\t{
.b8 1
\t}
\t.section\t.debug_info
\t{
.b32 11349
\t}
\t.section\t.debug_macinfo\t{\t}
";
        let stripped = compile::keep_line_tables_only(ptx);
        assert!(stripped.contains("\n.target sm_90\n"), "{stripped}");
        assert!(stripped.contains(".loc\t24 8 0") && stripped.contains(".file\t24"));
        assert!(!stripped.contains(".section") && !stripped.contains(".b32 11349"));
        assert!(
            stripped.trim_end().ends_with("vector_add.rs\""),
            "{stripped}"
        );
        assert_eq!(compile::keep_line_tables_only(&stripped), stripped);
        assert_eq!(ptx_entries(&stripped), ["vector_add"]);
    }

    #[test]
    fn gate_flags_spills_missing_entries_and_errors() {
        let entries = vec!["a".to_string(), "b".to_string()];
        let clean = PtxasReport {
            functions: vec![entry("a", 0), entry("b", 0)],
            ..PtxasReport::default()
        };
        assert!(gate_problems(&clean, &entries, &["a", "b"]).is_empty());

        let spilled = PtxasReport {
            functions: vec![entry("a", 8), entry("b", 0)],
            ..PtxasReport::default()
        };
        let p = gate_problems(&spilled, &entries, &["a", "b"]);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("a spills: 8 bytes"), "{p:?}");

        let p = gate_problems(&clean, &entries, &["a", "c"]);
        assert_eq!(p, ["expected kernel entry `c` is not in the PTX"]);

        let failed = PtxasReport {
            errors: vec!["ptxas fatal   : Unresolved extern function 'foo'".into()],
            ..PtxasReport::default()
        };
        let p = gate_problems(&failed, &entries, &["a"]);
        assert_eq!(p, ["ptxas fatal   : Unresolved extern function 'foo'"]);
    }

    #[test]
    fn arch_names_are_validated() {
        for ok in ["sm_70", "sm_80", "sm_90", "sm_90a", "sm_100"] {
            assert!(compile::is_sm_arch(ok), "{ok}");
        }
        for bad in ["", "sm_", "sm80", "compute_80", "sm_8x", "sm_80; rm"] {
            assert!(!compile::is_sm_arch(bad), "{bad}");
        }
    }

    #[test]
    fn kernels_dir_is_found_from_the_workspace_and_inside_it() {
        let host = Path::new(env!("CARGO_MANIFEST_DIR"));
        let found = compile::find_kernels_dir(host).expect("workspace has kernels-gpu");
        assert!(found.ends_with("kernels-gpu"));
        assert_eq!(
            compile::find_kernels_dir(&found.join("src")).as_deref(),
            Some(found.as_path())
        );
    }

    #[test]
    fn bad_arch_is_an_error_naming_it() {
        let e = compile::build_ptx(&PtxBuild {
            kernels_dir: PathBuf::from("kernels-gpu"),
            target_dir: std::env::temp_dir(),
            arch: "volta".into(),
            line_info: false,
        })
        .unwrap_err();
        assert!(e.to_string().contains("\"volta\""), "{e}");
    }
}
