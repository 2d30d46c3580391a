//! `lsoftmax ptx`: builds the kernels to PTX and prints ptxas's resource report per
//! kernel; `--check` is the CI gate over sm_70, sm_80 and sm_90.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::ptx::report::{self, ResourceReport};
use crate::ptx::{self, CHECK_ARCHS, CompileError, EXPECTED_ENTRIES, PtxOutput, compile, ptxas};

/// Build the kernels to PTX and report registers, spills, shared memory and stack per
/// kernel (ptxas -v).
///
/// Needs the nightly toolchain with rust-src and ptxas: `scripts/setup-ptx-tools`
/// installs both. Exit codes: 0 ok; 1 the PTX did not build, ptxas failed, a kernel
/// spills or an expected kernel is missing (--check); 2 a tool is missing or an argument
/// is wrong.
#[derive(Debug, ClapArgs)]
#[command(after_help = "Needs the nightly toolchain with rust-src, and ptxas: \
`scripts/setup-ptx-tools` installs both.\n\
Exit codes: 0 ok; 1 the PTX did not build, ptxas failed, a kernel spills, or (--check) \
an expected kernel entry is missing; 2 a tool is missing or an argument is wrong.")]
pub struct Args {
    /// GPU architecture to build and assemble for (ignored with --check).
    #[arg(long, default_value = "sm_80", value_parser = parse_arch)]
    arch: String,
    /// Keep Rust source lines in the PTX (.file/.loc directives) for profilers.
    #[arg(long)]
    line_info: bool,
    /// Also write the PTX to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// CI gate: build the PTX once for sm_70 and assemble it for sm_70, sm_80 and sm_90;
    /// fail on a ptxas error, any spill, or a missing expected kernel entry.
    #[arg(long)]
    check: bool,
    /// Save the report (every architecture) as JSON, e.g. before editing a kernel.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Compare with a report saved by --json and print what changed (registers, spills,
    /// stack, blocks per SM). Informational: it does not change the exit status.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Run the margin kernels' PTX on the CPU interpreter for one training problem of this
    /// shape and print warp-level statistics per kernel and PTX line (global sectors per
    /// request, shared bank conflicts, instruction counts). Needs no ptxas.
    #[arg(long, value_name = "N,D,C", value_parser = super::ptx_sim::parse_shape)]
    sim: Option<(usize, usize, usize)>,
    /// With --sim: report only kernels whose entry name contains this (repeatable).
    #[arg(long, value_name = "NAME", requires = "sim")]
    kernel: Vec<String>,
    /// With --sim: the margin of the forward pass.
    #[arg(
        long,
        value_name = "SPEC",
        default_value = "lsoftmax:m=4,beta=0",
        requires = "sim"
    )]
    margin: String,
    /// With --sim: interpret this PTX file instead of building the kernels.
    #[arg(long, value_name = "FILE", requires = "sim")]
    ptx: Option<PathBuf>,
}

fn parse_arch(s: &str) -> Result<String, String> {
    if compile::is_sm_arch(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not of the form sm_NN (e.g. sm_80)"))
    }
}

/// Runs `lsoftmax ptx`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Failure::MissingTool(message) | Failure::BadInput(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    /// A tool is absent: exit 2.
    MissingTool(String),
    /// A file given on the command line is unusable: exit 2.
    BadInput(String),
    /// The build or ptxas failed: exit 1.
    Other(String),
}

impl From<CompileError> for Failure {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Missing { .. } => Failure::MissingTool(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Toolchain { .. } => Failure::MissingTool(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

/// `Ok(true)` if everything passed.
fn run_inner(args: &Args) -> Result<bool, Failure> {
    if let Some(shape) = args.sim {
        let margin = crate::margin::Margin::parse(&args.margin)
            .map_err(|e| Failure::BadInput(e.to_string()))?;
        let report = super::ptx_sim::report(shape, margin, &args.kernel, args.ptx.as_deref())?;
        print!("{report}");
        return Ok(true);
    }
    // Read the baseline first: a bad file should not cost a PTX build.
    let baseline = match &args.baseline {
        Some(path) => Some(read_report(path)?),
        None => None,
    };
    // Look for ptxas first: a missing assembler should not cost a PTX build.
    let ptxas_path = ptxas::find_ptxas()?;
    let kernels_dir = ptx::locate_kernels_dir().map_err(|e| Failure::Other(e.to_string()))?;
    // --check builds for the lowest architecture only: PTX for `.target sm_70` is valid
    // input for every later architecture, and it is the module a driver would JIT on any
    // of them, so the gate checks the PTX that would ship.
    let build_arch = if args.check {
        CHECK_ARCHS[0]
    } else {
        &args.arch
    };
    let output = compile::build_ptx(&ptx::PtxBuild {
        target_dir: ptx::default_target_dir(&kernels_dir),
        kernels_dir,
        arch: build_arch.to_string(),
        line_info: args.line_info,
    })?;
    if let Some(out) = &args.out {
        std::fs::write(out, &output.text)
            .map_err(|e| Failure::Other(format!("{}: {e}", out.display())))?;
        println!("wrote {}", out.display());
    }
    let entries = ptx::ptx_entries(&output.text);
    let archs: Vec<&str> = if args.check {
        CHECK_ARCHS.to_vec()
    } else {
        vec![args.arch.as_str()]
    };
    println!(
        "PTX {} (.target {}, {} entries), ptxas {}",
        output.path.display(),
        ptx::ptx_target(&output.text).unwrap_or("?"),
        entries.len(),
        ptxas_path.display()
    );
    let mut all_ok = true;
    let mut saved = ResourceReport::default();
    for arch in archs {
        let report = ptxas::run(&ptxas_path, &output.path, arch)?;
        let rows = report::rows(arch, &report, &entries);
        print!("{}", report::table(arch, &rows));
        for name in entries.iter().filter(|e| report.function(e).is_none()) {
            println!("  {name}: not reported by ptxas");
        }
        for w in &report.warnings {
            println!("  {w}");
        }
        saved.archs.insert(arch.to_string(), rows);
        let expected: &[&str] = if args.check { EXPECTED_ENTRIES } else { &[] };
        let problems = ptx::gate_problems(&report, &entries, expected);
        for p in &problems {
            println!("  FAIL [{arch}] {p}");
        }
        all_ok &= problems.is_empty();
    }
    println!(
        "\nblocks/SM: theoretical occupancy of the crate's launch shape (threads, dynamic \
         shared memory) from the registers above; '-' where the launch shape or the \
         architecture's limits are not known."
    );
    if let Some(base) = &baseline {
        let changes = report::compare(base, &saved);
        let from = args.baseline.as_deref().map(Path::display);
        if changes.is_empty() {
            println!("compared with {}: no change", opt_path(from));
        } else {
            println!("compared with {}:", opt_path(from));
            for c in changes {
                println!("  {c}");
            }
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&saved)
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    if args.check {
        summary(all_ok, &output);
    }
    Ok(all_ok)
}

fn opt_path(p: Option<std::path::Display<'_>>) -> String {
    p.map_or_else(String::new, |p| p.to_string())
}

/// A report saved by `--json`; a missing or malformed file is a usage error (exit 2).
fn read_report(path: &Path) -> Result<ResourceReport, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::BadInput(format!("baseline {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::BadInput(format!(
            "baseline {}: not a report written by `lsoftmax ptx --json`: {e}",
            path.display()
        ))
    })
}

fn summary(ok: bool, output: &PtxOutput) {
    if ok {
        println!(
            "ptx check: OK ({} assembled for {} with no errors, no spills; expected \
             entries present: {})",
            output.path.display(),
            CHECK_ARCHS.join(", "),
            EXPECTED_ENTRIES.join(", ")
        );
    } else {
        println!("ptx check: FAILED (see FAIL lines above)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptx::SETUP_COMMAND;

    #[test]
    fn arch_argument_is_validated() {
        assert_eq!(parse_arch("sm_90").as_deref(), Ok("sm_90"));
        let e = parse_arch("ampere").unwrap_err();
        assert!(e.contains("\"ampere\""), "{e}");
    }

    #[test]
    fn setup_command_is_named_in_missing_tool_errors() {
        let f = Failure::from(CompileError::Missing {
            tool: "rust-src".into(),
            message: format!("install it with `{SETUP_COMMAND}`"),
        });
        assert!(matches!(f, Failure::MissingTool(m) if m.contains("scripts/setup-ptx-tools")));
    }

    #[test]
    fn table_rows_show_ptxas_numbers_and_dashes_for_unknown_launch_shapes() {
        let report = ptxas::parse_verbose(
            "ptxas info    : Compiling entry function 'k' for 'sm_80'\n\
             ptxas info    : Function properties for k\n    \
             8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n\
             ptxas info    : Used 40 registers, used 1 barriers, 512 bytes smem, 400 bytes cmem[0]\n",
        );
        let rows = report::rows("sm_80", &report, &["k".into(), "gone".into()]);
        assert_eq!(rows.len(), 1, "unreported entries have no row");
        let t = report::table("sm_80", &rows);
        let row = t
            .lines()
            .find(|l| l.trim_start().starts_with("k "))
            .unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols, ["k", "40", "4", "4", "512", "8", "-", "-", "-"]);
    }

    #[test]
    fn unusable_baselines_are_bad_input_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        assert!(
            matches!(read_report(&missing), Err(Failure::BadInput(m)) if m.contains("nope.json"))
        );
        let garbled = dir.path().join("bad.json");
        std::fs::write(&garbled, "{\"archs\": 3}").unwrap();
        assert!(matches!(read_report(&garbled),
            Err(Failure::BadInput(m)) if m.contains("bad.json") && m.contains("lsoftmax ptx --json")));
    }
}
