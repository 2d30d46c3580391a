//! `lsoftmax ptx`: builds the kernels to PTX and prints ptxas's resource report per
//! kernel; `--check` is the CI gate over sm_70, sm_80 and sm_90.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::ptx::{
    self, CHECK_ARCHS, CompileError, EXPECTED_ENTRIES, PtxOutput, PtxasReport, compile, ptxas,
};

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
        Err(Failure::MissingTool(message)) => {
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
    for arch in archs {
        let report = ptxas::run(&ptxas_path, &output.path, arch)?;
        print!("{}", table(arch, &report, &entries));
        let expected: &[&str] = if args.check { EXPECTED_ENTRIES } else { &[] };
        let problems = ptx::gate_problems(&report, &entries, expected);
        for p in &problems {
            println!("  FAIL [{arch}] {p}");
        }
        all_ok &= problems.is_empty();
    }
    if args.check {
        summary(all_ok, &output);
    }
    Ok(all_ok)
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

/// One row per kernel entry of the PTX, in PTX order.
fn table(arch: &str, report: &PtxasReport, entries: &[String]) -> String {
    let mut s = String::new();
    let width = entries.iter().map(String::len).max().unwrap_or(6).max(6);
    let _ = writeln!(s, "\n{arch}");
    let _ = writeln!(
        s,
        "  {:<width$}  {:>9}  {:>15}  {:>14}  {:>11}  {:>11}",
        "kernel", "registers", "spill stores(B)", "spill loads(B)", "shared(B)", "stack(B)"
    );
    for name in entries {
        match report.function(name) {
            Some(f) => {
                let _ = writeln!(
                    s,
                    "  {:<width$}  {:>9}  {:>15}  {:>14}  {:>11}  {:>11}",
                    f.name,
                    f.registers,
                    f.spill_stores,
                    f.spill_loads,
                    f.shared_bytes,
                    f.stack_frame
                );
            }
            None => {
                let _ = writeln!(s, "  {name:<width$}  (not reported by ptxas)");
            }
        }
    }
    for w in &report.warnings {
        let _ = writeln!(s, "  {w}");
    }
    s
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
    fn table_shows_every_entry_and_marks_unreported_ones() {
        let report = ptxas::parse_verbose(
            "ptxas info    : Compiling entry function 'k' for 'sm_80'\n\
             ptxas info    : Function properties for k\n    \
             8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n\
             ptxas info    : Used 40 registers, used 1 barriers, 512 bytes smem, 400 bytes cmem[0]\n",
        );
        let t = table("sm_80", &report, &["k".into(), "gone".into()]);
        let row = t
            .lines()
            .find(|l| l.trim_start().starts_with("k "))
            .unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols, ["k", "40", "4", "4", "512", "8"]);
        assert!(t.contains("gone") && t.contains("not reported"));
    }
}
