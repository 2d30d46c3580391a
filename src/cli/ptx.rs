//! `lsoftmax ptx`: builds the kernels to PTX and prints ptxas's resource report per
//! kernel; `--check` is the CI gate over sm_70, sm_80 and sm_90; `--sass` adds the SASS
//! report (main K loop, one stage's instruction mix, static peak bound, cuBLAS ratio).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args as ClapArgs;

use lsoftmax_host::backend::launch::{
    self, InputGradLaunch, KernelChoice, KernelVariant, LaunchPlan,
};
use ptx_tools::report::{self, ResourceReport};
use ptx_tools::sass_report::{self, Anchors, SassRow};
use ptx_tools::{self, CHECK_ARCHS, CompileError, PtxOutput, compile, ptxas, sass, sass_model};

/// Kernel entry points the PTX must contain: `lsoftmax ptx --check` fails if one is
/// missing. One place for the whole list; append new kernels here.
pub const EXPECTED_ENTRIES: &[&str] = &[
    "vector_add",
    "block_sum",
    "transpose",
    // The margin kernels, by the names the launch plans use (backend/launch.rs).
    kernels_gpu::params::ROW_NORMS_KERNEL,
    kernels_gpu::params::FORWARD_KERNEL,
    kernels_gpu::params::INPUT_GRAD_KERNEL,
    kernels_gpu::params::WEIGHT_GRAD_KERNEL,
    // The normalisation kernels of CosFace, ArcFace, combined, SphereFace.
    kernels_gpu::params::ROW_SCALE_KERNEL,
    kernels_gpu::params::ROW_PROJECT_KERNEL,
];

/// Architectures `--sass` disassembles unless `--arch` names one: the two the static model
/// and the cuBLAS anchors describe.
pub const SASS_ARCHS: &[&str] = &["sm_80", "sm_90"];

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

impl From<ptx_tools::Error> for Failure {
    fn from(e: ptx_tools::Error) -> Self {
        match e {
            ptx_tools::Error::Toolchain { .. } => Failure::MissingTool(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

impl From<lsoftmax_host::Error> for Failure {
    fn from(e: lsoftmax_host::Error) -> Self {
        match e {
            lsoftmax_host::Error::Toolchain { .. } => Failure::MissingTool(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

/// `Ok(true)` if everything passed.
fn run_inner(args: &Args) -> Result<bool, Failure> {
    if let Some(shape) = args.sim {
        let margin = lsoftmax_host::margin::Margin::parse(&args.margin)
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
    if !args.sass_listing.is_empty() {
        return listings_only(args, baseline.as_ref());
    }
    // Look for the tools first: a missing one should not cost a PTX build.
    let ptxas_path = ptxas::find_ptxas()?;
    let cuobjdump = if args.sass {
        Some(sass::find_cuobjdump(&ptxas_path)?)
    } else {
        None
    };
    let anchors = if args.sass { read_anchors(args)? } else { None };
    let kernels_dir = ptx_tools::locate_kernels_dir().map_err(|e| Failure::Other(e.to_string()))?;
    // --check and --sass build for the lowest architecture only: PTX for `.target sm_70`
    // is valid input for every later architecture, and it is the module the CUDA backend
    // embeds and a driver would JIT on any of them, so both look at the PTX that ships.
    let build_arch = if args.check || args.sass {
        CHECK_ARCHS[0]
    } else {
        args.arch.as_deref().unwrap_or("sm_80")
    };
    // --check gates the PTX that ships: the CUDA backend embeds the line-info build
    // (host/build.rs), and ptxas allocates registers differently for it than for the PTX
    // without `.loc` lines (measured with ptxas 12.9, margin_input_grad on sm_90: 71 registers without, 66 with).
    let line_info = args.line_info || args.check;
    let output = compile::build_ptx(&ptx_tools::PtxBuild {
        target_dir: ptx_tools::default_target_dir(&kernels_dir),
        kernels_dir,
        arch: build_arch.to_string(),
        line_info,
    })?;
    if let Some(out) = &args.out {
        std::fs::write(out, &output.text)
            .map_err(|e| Failure::Other(format!("{}: {e}", out.display())))?;
        println!("wrote {}", out.display());
    }
    let entries = ptx_tools::ptx_entries(&output.text);
    let sass_archs: Vec<String> = match (&args.arch, args.sass) {
        (_, false) => Vec::new(),
        (Some(a), true) if !args.check => vec![a.clone()],
        _ => SASS_ARCHS.iter().map(|a| a.to_string()).collect(),
    };
    let mut archs: Vec<String> = if args.check {
        CHECK_ARCHS.iter().map(|a| a.to_string()).collect()
    } else if args.sass {
        sass_archs.clone()
    } else {
        vec![args.arch.clone().unwrap_or_else(|| "sm_80".into())]
    };
    for a in &sass_archs {
        if !archs.contains(a) {
            archs.push(a.clone());
        }
    }
    println!(
        "PTX {} (.target {}, {} entries, {}), ptxas {}",
        output.path.display(),
        ptx_tools::ptx_target(&output.text).unwrap_or("?"),
        entries.len(),
        if line_info {
            "with line info: the PTX the CUDA backend embeds"
        } else {
            "without line info"
        },
        ptxas_path.display()
    );
    let mut all_ok = true;
    let mut saved = ResourceReport::default();
    let mut sass_tables = String::new();
    for arch in &archs {
        let wants_sass = sass_archs.contains(arch);
        let cubin = output.path.with_extension(format!("{arch}.cubin"));
        let report = if wants_sass {
            ptxas::run_to(&ptxas_path, &output.path, arch, &cubin)?
        } else {
            ptxas::run(&ptxas_path, &output.path, arch)?
        };
        let rows = report::rows(arch, &report, &entries, launch::block_shape);
        print!("{}", report::table(arch, &rows));
        for name in entries.iter().filter(|e| report.function(e).is_none()) {
            println!("  {name}: not reported by ptxas");
        }
        for w in &report.warnings {
            println!("  {w}");
        }
        saved.archs.insert(arch.to_string(), rows);
        // Rung 0's kernels and the kernel ladder's variants (backend/launch.rs).
        let expected: Vec<&str> = if args.check {
            EXPECTED_ENTRIES
                .iter()
                .chain(lsoftmax_host::backend::launch::LADDER_ENTRIES)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let problems = ptx_tools::gate_problems(&report, &entries, &expected);
        for p in &problems {
            println!("  FAIL [{arch}] {p}");
        }
        all_ok &= problems.is_empty();
        if let (true, Some(cuobjdump), true) = (wants_sass, &cuobjdump, report.errors.is_empty()) {
            let listing = sass::disassemble(cuobjdump, &cubin)?;
            let functions = sass::parse_listing(&listing);
            // Every `.entry`, in PTX order: the kernel ladder adds variants without a list
            // to update here.
            let rows: Vec<SassRow> = entries
                .iter()
                .filter_map(|e| functions.iter().find(|f| &f.name == e))
                .map(|f| sass_report::row(arch, f))
                .collect();
            for e in entries
                .iter()
                .filter(|e| !functions.iter().any(|f| &f.name == *e))
            {
                println!("  {e}: not in the disassembly of {}", cubin.display());
            }
            sass_tables.push_str(&sass_report::table(arch, &rows, anchors.as_ref()));
            saved.sass.insert(arch.to_string(), rows);
        }
    }
    println!(
        "\nblocks/SM: theoretical occupancy of the crate's launch shape (threads, dynamic \
         shared memory) from the registers above; '-' where the launch shape or the \
         architecture's limits are not known."
    );
    if args.sass {
        print!("{sass_tables}");
        println!("\n{}", sass_report::LEGEND);
        print_anchors(anchors.as_ref(), &sass_archs);
    }
    if let Some(shape) = args.shape {
        print!(
            "{}",
            waves_table(shape, &saved).map_err(|e| Failure::BadInput(e.to_string()))?
        );
    }
    if let Some(base) = &baseline {
        let changes = report::compare(base, &saved);
        let (sass_changes, sass_failures) = sass_report::compare(&base.sass, &saved.sass);
        let from = opt_path(args.baseline.as_deref().map(Path::display));
        if changes.is_empty() && sass_changes.is_empty() {
            println!("compared with {from}: no change");
        } else {
            println!("compared with {from}:");
            for c in changes.iter().chain(&sass_changes) {
                println!("  {c}");
            }
        }
        if args.check && args.sass {
            for f in &sass_failures {
                println!("  FAIL {f}");
            }
            all_ok &= sass_failures.is_empty();
        }
    }
    write_json(args, &saved)?;
    if args.check {
        summary(all_ok, &output, args.sass && args.baseline.is_some());
    }
    Ok(all_ok)
}

/// `--sass-listing`: analyse given disassemblies (no build, no ptxas).
fn listings_only(args: &Args, baseline: Option<&ResourceReport>) -> Result<bool, Failure> {
    let anchors = read_anchors(args)?;
    let mut saved = ResourceReport::default();
    for (arch, path) in &args.sass_listing {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::BadInput(format!("{}: {e}", path.display())))?;
        let functions = sass::parse_listing(&text);
        if functions.is_empty() {
            return Err(Failure::BadInput(format!(
                "{}: no `Function :` section; expected the output of `cuobjdump -sass`",
                path.display()
            )));
        }
        let rows = functions.iter().map(|f| sass_report::row(arch, f));
        saved.sass.entry(arch.clone()).or_default().extend(rows);
    }
    for (arch, rows) in &saved.sass {
        print!("{}", sass_report::table(arch, rows, anchors.as_ref()));
    }
    println!("\n{}", sass_report::LEGEND);
    if let Some(base) = baseline {
        let (lines, _) = sass_report::compare(&base.sass, &saved.sass);
        for l in lines {
            println!("  {l}");
        }
    }
    write_json(args, &saved)?;
    Ok(true)
}

fn write_json(args: &Args, saved: &ResourceReport) -> Result<(), Failure> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(saved)
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The anchors from `--anchors` (an unreadable file is bad input) or the workspace's
/// committed file (absent: `None`, the ratio column shows `-`).
fn read_anchors(args: &Args) -> Result<Option<Anchors>, Failure> {
    let (path, required) = match &args.anchors {
        Some(p) => (p.clone(), true),
        None => match ptx_tools::locate_kernels_dir() {
            Ok(k) => (
                k.parent().unwrap_or(&k).join(sass_report::ANCHORS_PATH),
                false,
            ),
            Err(_) => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if !required => return Ok(None),
        Err(e) => {
            return Err(Failure::BadInput(format!(
                "anchors {}: {e}",
                path.display()
            )));
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Failure::BadInput(format!(
            "anchors {}: not a file written by scripts/cublas-anchors: {e}",
            path.display()
        ))
    })
}

fn print_anchors(anchors: Option<&Anchors>, archs: &[String]) {
    let Some(anchors) = anchors else {
        println!(
            "cuBLAS anchors: {} not found (scripts/cublas-anchors makes it)",
            sass_report::ANCHORS_PATH
        );
        return;
    };
    for arch in archs {
        let Some(list) = anchors.archs.get(arch) else {
            continue;
        };
        // The anchors' kernel names run to 120 characters: show the script's labels.
        let rows: Vec<SassRow> = list
            .iter()
            .map(|a| SassRow {
                kernel: format!("{} ({})", a.label, a.layout),
                ..a.row.clone()
            })
            .collect();
        let table = sass_report::table(arch, &rows, None);
        // Reuse the kernel table, titled as the anchors.
        print!(
            "{}",
            table.replacen(
                &format!("{arch} SASS"),
                &format!(
                    "cuBLAS anchors ({}), {arch} SASS",
                    sass_report::ANCHORS_PATH
                ),
                1
            )
        );
    }
}

/// `--shape`: each planned kernel's grid and its waves at the reported occupancy.
fn waves_table(
    (n, d, c): (usize, usize, usize),
    saved: &ResourceReport,
) -> lsoftmax_host::Result<String> {
    use std::fmt::Write as _;
    let plans = plans_for_shape(n, d, c)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nshape N={n} D={d} C={c}: grid per kernel and waves (blocks / (SMs x blocks per SM \
         at the occupancy above); static model)"
    );
    for plan in &plans {
        let blocks = u64::from(plan.grid.0) * u64::from(plan.grid.1) * u64::from(plan.grid.2);
        let mut cells = Vec::new();
        for m in sass_model::MODELS {
            let per_sm = saved
                .archs
                .get(m.arch)
                .and_then(|rows| rows.iter().find(|r| r.kernel == plan.kernel))
                .and_then(|r| r.occupancy)
                .map(|o| o.blocks_per_sm);
            cells.push(match per_sm {
                Some(k) if k > 0 => {
                    let capacity = u64::from(m.sms) * u64::from(k);
                    format!(
                        "{} {:.2} waves ({} SMs x {k})",
                        m.gpu,
                        blocks as f64 / capacity as f64,
                        m.sms
                    )
                }
                _ => format!("{} - (no {} occupancy in this run)", m.gpu, m.arch),
            });
        }
        let _ = writeln!(
            s,
            "  {:<32} grid {:>6} x {:>5} x {:>2} = {:>8} blocks   {}",
            plan.kernel,
            plan.grid.0,
            plan.grid.1,
            plan.grid.2,
            blocks,
            cells.join("   ")
        );
    }
    Ok(s)
}

/// The launch plans of the crate's margin kernels for one problem: row norms, then per
/// kernel-ladder variant the forward, input-grad (as `SplitK::Auto` would launch it: the
/// direct kernel, or split-K's partial and reduce kernels) and weight-grad launches. The
/// grids do not depend on the margin or the mode.
fn plans_for_shape(n: usize, d: usize, c: usize) -> lsoftmax_host::Result<Vec<LaunchPlan>> {
    use lsoftmax_host::margin::{Margin, Mode};
    let mut plans = vec![launch::row_norms_plan(n, d, c)?.plan];
    for variant in KernelVariant::ALL {
        plans.push(launch::forward_launch(n, d, c, Margin::Plain, Mode::Train, variant)?.plan);
        match launch::input_grad_launch(n, d, c, KernelChoice::variant(variant))? {
            InputGradLaunch::Direct(l) => plans.push(l.plan),
            InputGradLaunch::Split {
                partial, reduce, ..
            } => {
                plans.push(partial.plan);
                plans.push(reduce.plan);
            }
        }
        plans.push(launch::weight_grad_launch(n, d, c, variant)?.plan);
    }
    // Several variants share the split-K kernels: list each kernel once.
    let mut seen = std::collections::BTreeSet::new();
    plans.retain(|p| seen.insert(p.kernel));
    Ok(plans)
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

fn summary(ok: bool, output: &PtxOutput, density_gate: bool) {
    if ok {
        println!(
            "ptx check: OK ({} assembled for {} with no errors, no spills; expected \
             entries present: {} and the {} kernel-ladder entries{})",
            output.path.display(),
            CHECK_ARCHS.join(", "),
            EXPECTED_ENTRIES.join(", "),
            lsoftmax_host::backend::launch::LADDER_ENTRIES.len(),
            if density_gate {
                "; no FFMA density dropped by more than 0.02 from the baseline"
            } else {
                ""
            }
        );
    } else {
        println!("ptx check: FAILED (see FAIL lines above)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptx_tools::SETUP_COMMAND;

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

    #[test]
    fn waves_use_the_launch_plans_and_the_reported_occupancy() {
        let mut saved = ResourceReport::default();
        let occupancy = |blocks| {
            Some(ptx_tools::occupancy::Occupancy {
                blocks_per_sm: blocks,
                fraction: 0.0,
                limiter: ptx_tools::occupancy::Limiter::Registers,
            })
        };
        let row = |kernel: &str, blocks| report::KernelRow {
            kernel: kernel.into(),
            registers: 64,
            spill_stores: 0,
            spill_loads: 0,
            static_shared: 0,
            stack: 0,
            threads_per_block: Some(256),
            dynamic_shared: Some(0),
            occupancy: occupancy(blocks),
        };
        saved
            .archs
            .insert("sm_80".into(), vec![row("margin_input_grad", 3)]);
        // input grad's output is N×D: 4096/64 × 512/64 = 64 × 8 = 512 blocks; A100 holds
        // 108 × 3 = 324 at once → 1.58 waves. No sm_90 rows: H100 has no number.
        let t = waves_table((4096, 512, 10000), &saved).unwrap();
        let line = t.lines().find(|l| l.contains("margin_input_grad")).unwrap();
        assert!(
            line.contains("512 blocks") && line.contains("A100 1.58 waves"),
            "{line}"
        );
        assert!(line.contains("H100 - (no sm_90 occupancy"), "{line}");
        assert!(t.contains("static model"), "{t}");
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
        let rows = report::rows(
            "sm_80",
            &report,
            &["k".into(), "gone".into()],
            launch::block_shape,
        );
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
