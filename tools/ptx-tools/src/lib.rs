//! What a Rust GPU kernel crate's PTX costs, without a GPU: builds the crate for
//! `nvptx64-nvidia-cuda` with the nightly toolchain, runs `ptxas -v` (registers, spills,
//! shared memory, stack), computes theoretical occupancy, and reads the SASS to find each
//! kernel's main K loop and count one K stage's instruction mix against a static model.
//! Nothing here knows a particular kernel: callers pass their entry names, launch shapes
//! and the cuBLAS layout their GEMMs compute ([`check::KernelSet`]).
//!
//! - [`compile`]: the nightly `nvptx64-nvidia-cuda` build (std only, so a build script
//!   can `#[path]`-include it) and the `.entry` names of a PTX module.
//! - [`ptxas`]: `ptxas -v`, parsed per function: registers, spills, shared memory,
//!   stack frame, errors.
//! - [`occupancy`]: theoretical occupancy from registers, block size and shared memory.
//! - [`report`]: the per-kernel resource rows, their JSON form and their comparison.
//! - [`sass`]: `ptxas` to a cubin, `cuobjdump -sass`, the listing parsed; under it
//!   [`sass::cfg`] (control-flow graph, natural loops), [`sass::main_loop`] (the main K
//!   loop and one stage's instruction mix), [`sass::model`] (the static upper bound on the
//!   fraction of FP32 peak) and [`sass::report`] (the SASS rows, cuBLAS anchors, the
//!   density gate).
//! - `workspace`: where the kernel crate and its nvptx target folder are, the build of it
//!   with them, and the architectures the gate assembles for (re-exported here).
//! - [`check`]: all of it in one call, as a command prints it: build, ptxas per
//!   architecture, the gate, the SASS report, launch grids, baseline comparison, JSON.
//!
//! Tools: `scripts/setup-ptx-tools` installs the nightly `rust-src`, ptxas, cuobjdump and
//! nvdisasm.

pub use error::{Error, Result};

pub mod check;
pub mod compile;
mod error;
pub mod occupancy;
pub mod ptxas;
pub mod report;
pub mod sass;
mod workspace;

pub use compile::{CompileError, PtxBuild, PtxOutput, SETUP_COMMAND, ptx_entries, ptx_target};
pub use ptxas::{FunctionResources, PtxasReport};
pub use workspace::{CHECK_ARCHS, build, default_target_dir, locate_kernels_dir};

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

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
