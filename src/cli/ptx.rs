//! `lsoftmax ptx`: builds the kernels to PTX and prints ptxas's resource report per
//! kernel; `--check` is the CI gate over sm_70, sm_80 and sm_90; `--sass` adds the SASS
//! report (main K loop, one stage's instruction mix, static peak bound, cuBLAS ratio);
//! `--sim` runs the margin kernels on the PTX interpreter. The arguments are parsed here;
//! the report is [`crate::commands::ptx`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::commands::ptx::{self as command, Options, SimRequest};
use ptx_tools::check::{Failure, Request};
use ptx_tools::compile;

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
an expected kernel entry is missing or (--check --sass --baseline) a kernel's FFMA density \
dropped by more than 0.02; 2 a tool is missing or an argument is wrong.\n\
The SASS report is a static model (instruction counts), never a timing.")]
pub struct Args {
    /// GPU architecture to build and assemble for (default sm_80; with --sass, the
    /// architecture to disassemble, default sm_80 and sm_90; ignored with --check).
    #[arg(long, value_parser = parse_arch)]
    arch: Option<String>,
    /// Keep Rust source lines in the PTX (.file/.loc directives) for profilers; always on
    /// with --check, which gates the PTX the CUDA backend embeds.
    #[arg(long)]
    line_info: bool,
    /// Also write the PTX to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// CI gate: build the PTX the CUDA backend embeds (sm_70, with line info) and assemble
    /// it for sm_70, sm_80 and sm_90; fail on a ptxas error, any spill, or a missing
    /// expected kernel entry.
    #[arg(long)]
    check: bool,
    /// Save the report (every architecture) as JSON, e.g. before editing a kernel.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Compare with a report saved by --json and print what changed (registers, spills,
    /// stack, blocks per SM; with --sass the stage mix). Informational, except with
    /// --check --sass: then a kernel whose FFMA density dropped by more than 0.02 fails.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// SASS report: assemble the shipping PTX (.target sm_70) for sm_80 and sm_90 (or
    /// --arch), disassemble it with cuobjdump, find each kernel's main K loop and count
    /// one K stage as executed. A static model, not a timing.
    #[arg(long)]
    sass: bool,
    /// Grid of each kernel for a problem of N rows, D features, C classes, and its waves
    /// on an A100 (108 SMs, sm_80 occupancy) and an H100 (132 SMs, sm_90 occupancy).
    #[arg(long, value_name = "N,D,C", value_parser = parse_shape)]
    shape: Option<(usize, usize, usize)>,
    /// Analyse an existing `cuobjdump -sass` listing instead of building (repeatable;
    /// ARCH=FILE, e.g. sm_80=cublas.sass); used by scripts/cublas-anchors.
    #[arg(long, value_name = "ARCH=FILE", value_parser = parse_listing_arg)]
    sass_listing: Vec<(String, PathBuf)>,
    /// The cuBLAS anchors to compare with (default: docs/sass/cublas-anchors.json in the
    /// workspace).
    #[arg(long, value_name = "FILE")]
    anchors: Option<PathBuf>,
    /// Run the margin kernels' PTX on the CPU interpreter for one training problem of this
    /// shape and print warp-level statistics per kernel and PTX line (global sectors per
    /// request, shared bank conflicts, instruction counts). Needs no ptxas.
    #[arg(long, value_name = "N,D,C", value_parser = parse_shape)]
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

fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [n, d, c] = parts.as_slice() else {
        return Err(format!(
            "{s:?} is not N,D,C (three sizes, e.g. 4096,512,10000)"
        ));
    };
    let size = |name: &str, v: &str| match v.parse::<usize>() {
        Ok(x) if x > 0 => Ok(x),
        _ => Err(format!("{name} = {v:?} in {s:?} is not a positive integer")),
    };
    Ok((size("N", n)?, size("D", d)?, size("C", c)?))
}

fn parse_listing_arg(s: &str) -> Result<(String, PathBuf), String> {
    let (arch, file) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ARCH=FILE (e.g. sm_80=cublas.sass)"))?;
    Ok((parse_arch(arch)?, PathBuf::from(file)))
}

fn parse_arch(s: &str) -> Result<String, String> {
    if compile::is_sm_arch(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not of the form sm_NN (e.g. sm_80)"))
    }
}

/// Runs `lsoftmax ptx`: exit 0 if everything passed, 1 if the gate or the build failed,
/// 2 on a missing tool or bad input.
pub fn run(args: Args) -> ExitCode {
    let opts = Options {
        request: Request {
            arch: args.arch,
            line_info: args.line_info,
            out: args.out,
            check: args.check,
            json: args.json,
            baseline: args.baseline,
            sass: args.sass,
            sass_listing: args.sass_listing,
            anchors: args.anchors,
            grids: None,
        },
        shape: args.shape,
        sim: args.sim.map(|shape| SimRequest {
            shape,
            margin: args.margin,
            kernels: args.kernel,
            ptx: args.ptx,
        }),
    };
    match command::run(&opts, &mut std::io::stdout().lock()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_argument_is_validated() {
        assert_eq!(parse_arch("sm_90").as_deref(), Ok("sm_90"));
        let e = parse_arch("ampere").unwrap_err();
        assert!(e.contains("\"ampere\""), "{e}");
    }

    #[test]
    fn shape_and_listing_arguments_are_validated() {
        assert_eq!(parse_shape("4096, 512,10000"), Ok((4096, 512, 10000)));
        let e = parse_shape("4096,512").unwrap_err();
        assert!(e.contains("N,D,C"), "{e}");
        let e = parse_shape("4096,0,10").unwrap_err();
        assert!(e.contains("D = \"0\""), "{e}");
        let e = parse_shape("4096,x,10").unwrap_err();
        assert!(e.contains("D = \"x\""), "{e}");
        assert_eq!(
            parse_listing_arg("sm_90=a/b.sass"),
            Ok(("sm_90".to_string(), PathBuf::from("a/b.sass")))
        );
        assert!(
            parse_listing_arg("a.sass")
                .unwrap_err()
                .contains("ARCH=FILE")
        );
        assert!(
            parse_listing_arg("hopper=a.sass")
                .unwrap_err()
                .contains("\"hopper\"")
        );
    }
}
