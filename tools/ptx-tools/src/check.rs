//! The whole `ptx` report of a kernel crate in one call: build its PTX, run ptxas per
//! architecture, print the resource table, gate it (`check`), add the SASS report, the
//! grids of one problem shape, the comparison with a saved report, and save it as JSON.
//!
//! Nothing here knows a particular kernel: the caller passes a [`KernelSet`] (the entries
//! the gate requires, each kernel's launch shape, the cuBLAS layout it computes) and, for
//! the grid table, its launch grids. Output goes to a writer as it is produced, so a
//! failure half-way leaves what was printed before it; write errors (a closed pipe) are
//! ignored.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::compile::{self, CompileError, PtxBuild, PtxOutput};
use crate::ptxas::{self, PtxasReport};
use crate::report::{self, ResourceReport};
use crate::sass::report::{self as sass_report, Anchors, SassRow};
use crate::sass::{self, model};
use crate::workspace::{CHECK_ARCHS, default_target_dir, locate_kernels_dir};

/// Architectures the SASS report disassembles unless the request names one: the two the
/// static model and the cuBLAS anchors describe.
pub const SASS_ARCHS: &[&str] = &["sm_80", "sm_90"];

/// What to build, report and gate (the options of `lsoftmax ptx`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Architecture to build and assemble for (default sm_80; with `sass`, the one to
    /// disassemble; ignored with `check`).
    pub arch: Option<String>,
    /// Keep `.file`/`.loc` line info in the PTX (always on with `check`).
    pub line_info: bool,
    /// Also write the PTX here.
    pub out: Option<PathBuf>,
    /// The gate: build for the lowest of [`CHECK_ARCHS`] with line info, assemble for all
    /// of them, fail on a ptxas error, a spill, or a missing expected entry.
    pub check: bool,
    /// Save the report as JSON here.
    pub json: Option<PathBuf>,
    /// Compare with a report saved by `json` (with `check` and `sass`: an FFMA density
    /// drop of more than [`sass_report::DENSITY_TOLERANCE`] fails).
    pub baseline: Option<PathBuf>,
    /// Add the SASS report (main K loop, stage mix, static peak bound, cuBLAS ratio).
    pub sass: bool,
    /// Analyse these `cuobjdump -sass` listings (`(arch, file)`) instead of building.
    pub sass_listing: Vec<(String, PathBuf)>,
    /// cuBLAS anchors file (default: [`sass_report::ANCHORS_PATH`] in the workspace).
    pub anchors: Option<PathBuf>,
    /// Print each kernel's grid for one problem and its waves at the reported occupancy.
    pub grids: Option<Grids>,
}

/// A kernel and its grid `(x, y, z)` in blocks.
pub type KernelGrid = (String, (u32, u32, u32));

/// The launch grids of one problem, for the waves table.
#[derive(Debug, Clone)]
pub struct Grids {
    /// The problem, as the title shows it (e.g. `N=4096 D=512 C=10000`).
    pub problem: String,
    /// Each kernel's grid `(x, y, z)` in blocks, or why the problem cannot be planned
    /// (reported as bad input when the table is due).
    pub grids: Result<Vec<KernelGrid>, String>,
}

/// What a kernel crate tells the report about its kernels.
pub struct KernelSet<'a> {
    /// Entries the gate requires in the PTX (and compiled by ptxas).
    pub expected: Vec<&'a str>,
    /// How the gate's success line names them, e.g. `a, b and the 9 ladder entries`.
    pub expected_note: String,
    /// A kernel's launch shape `(threads per block, dynamic shared bytes)`, `None` for a
    /// kernel the crate does not launch (no occupancy).
    pub block_shape: &'a dyn Fn(&str) -> Option<(u32, u32)>,
    /// The cuBLAS layout (`tn`, `nn`, `nt`) a kernel's GEMM matches, for the anchor ratio.
    pub cublas_layout: &'a dyn Fn(&str) -> Option<&'static str>,
}

/// Why the report stopped, by the exit status it calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A tool is absent: exit 2.
    MissingTool(String),
    /// A file or value given by the caller is unusable: exit 2.
    BadInput(String),
    /// The build or ptxas failed: exit 1.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::MissingTool(m) | Failure::BadInput(m) | Failure::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

impl From<CompileError> for Failure {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Missing { .. } => Failure::MissingTool(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Toolchain { .. } => Failure::MissingTool(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

/// Writes a line, ignoring write errors: a closed pipe (`| head`) must not stop the gate.
macro_rules! say {
    ($out:expr) => {{
        let _ = writeln!($out);
    }};
    ($out:expr, $($t:tt)*) => {{
        let _ = writeln!($out, $($t)*);
    }};
}

/// Writes text as it is, ignoring write errors.
fn put(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
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

/// Runs the report `req` asks for over the kernels of the workspace's kernel crate,
/// writing to `out`. `Ok(true)` if everything passed, `Ok(false)` if the gate failed.
pub fn run(req: &Request, kernels: &KernelSet, out: &mut dyn Write) -> Result<bool, Failure> {
    // Read the baseline first: a bad file should not cost a PTX build.
    let baseline = match &req.baseline {
        Some(path) => Some(read_report(path)?),
        None => None,
    };
    if !req.sass_listing.is_empty() {
        return listings_only(req, kernels, baseline.as_ref(), out);
    }
    // Look for the tools first: a missing one should not cost a PTX build.
    let ptxas_path = ptxas::find_ptxas()?;
    let cuobjdump = if req.sass {
        Some(sass::find_cuobjdump(&ptxas_path)?)
    } else {
        None
    };
    let anchors = if req.sass { read_anchors(req)? } else { None };
    let kernels_dir = locate_kernels_dir().map_err(|e| Failure::Other(e.to_string()))?;
    // `check` and `sass` build for the lowest architecture only: PTX for `.target sm_70`
    // is valid input for every later architecture, and it is the module a CUDA backend
    // embeds and a driver would JIT on any of them, so both look at the PTX that ships.
    let build_arch = if req.check || req.sass {
        CHECK_ARCHS[0]
    } else {
        req.arch.as_deref().unwrap_or("sm_80")
    };
    // The gate looks at the PTX that ships, which keeps line info; ptxas allocates
    // registers differently for it than for the PTX without `.loc` lines (measured with
    // ptxas 12.9, margin_input_grad on sm_90: 71 registers without, 66 with).
    let line_info = req.line_info || req.check;
    let output = compile::build_ptx(&PtxBuild {
        target_dir: default_target_dir(&kernels_dir),
        kernels_dir,
        arch: build_arch.to_string(),
        line_info,
    })?;
    if let Some(path) = &req.out {
        std::fs::write(path, &output.text)
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        say!(out, "wrote {}", path.display());
    }
    let entries = compile::ptx_entries(&output.text);
    let sass_archs: Vec<String> = match (&req.arch, req.sass) {
        (_, false) => Vec::new(),
        (Some(a), true) if !req.check => vec![a.clone()],
        _ => SASS_ARCHS.iter().map(|a| a.to_string()).collect(),
    };
    let mut archs: Vec<String> = if req.check {
        CHECK_ARCHS.iter().map(|a| a.to_string()).collect()
    } else if req.sass {
        sass_archs.clone()
    } else {
        vec![req.arch.clone().unwrap_or_else(|| "sm_80".into())]
    };
    for a in &sass_archs {
        if !archs.contains(a) {
            archs.push(a.clone());
        }
    }
    say!(
        out,
        "PTX {} (.target {}, {} entries, {}), ptxas {}",
        output.path.display(),
        compile::ptx_target(&output.text).unwrap_or("?"),
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
        let rows = report::rows(arch, &report, &entries, kernels.block_shape);
        put(out, &report::table(arch, &rows));
        for name in entries.iter().filter(|e| report.function(e).is_none()) {
            say!(out, "  {name}: not reported by ptxas");
        }
        for w in &report.warnings {
            say!(out, "  {w}");
        }
        saved.archs.insert(arch.to_string(), rows);
        let expected: &[&str] = if req.check { &kernels.expected } else { &[] };
        let problems = gate_problems(&report, &entries, expected);
        for p in &problems {
            say!(out, "  FAIL [{arch}] {p}");
        }
        all_ok &= problems.is_empty();
        if let (true, Some(cuobjdump), true) = (wants_sass, &cuobjdump, report.errors.is_empty()) {
            let listing = sass::disassemble(cuobjdump, &cubin)?;
            let functions = sass::parse_listing(&listing);
            // Every `.entry`, in PTX order: new kernels need no list to update here.
            let rows: Vec<SassRow> = entries
                .iter()
                .filter_map(|e| functions.iter().find(|f| &f.name == e))
                .map(|f| sass_report::row(arch, f))
                .collect();
            for e in entries
                .iter()
                .filter(|e| !functions.iter().any(|f| &f.name == *e))
            {
                say!(out, "  {e}: not in the disassembly of {}", cubin.display());
            }
            sass_tables.push_str(&sass_report::table(
                arch,
                &rows,
                anchors.as_ref(),
                kernels.cublas_layout,
            ));
            saved.sass.insert(arch.to_string(), rows);
        }
    }
    say!(
        out,
        "\nblocks/SM: theoretical occupancy of the crate's launch shape (threads, dynamic \
         shared memory) from the registers above; '-' where the launch shape or the \
         architecture's limits are not known."
    );
    if req.sass {
        put(out, &sass_tables);
        say!(out, "\n{}", sass_report::LEGEND);
        print_anchors(out, anchors.as_ref(), &sass_archs);
    }
    if let Some(grids) = &req.grids {
        let list = grids.grids.clone().map_err(Failure::BadInput)?;
        put(out, &waves_table(&grids.problem, &list, &saved));
    }
    if let Some(base) = &baseline {
        let changes = report::compare(base, &saved);
        let (sass_changes, sass_failures) = sass_report::compare(&base.sass, &saved.sass);
        let from = req
            .baseline
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string());
        if changes.is_empty() && sass_changes.is_empty() {
            say!(out, "compared with {from}: no change");
        } else {
            say!(out, "compared with {from}:");
            for c in changes.iter().chain(&sass_changes) {
                say!(out, "  {c}");
            }
        }
        if req.check && req.sass {
            for f in &sass_failures {
                say!(out, "  FAIL {f}");
            }
            all_ok &= sass_failures.is_empty();
        }
    }
    write_json(req, &saved, out)?;
    if req.check {
        summary(
            out,
            all_ok,
            &output,
            &kernels.expected_note,
            req.sass && req.baseline.is_some(),
        );
    }
    Ok(all_ok)
}

/// Analyses given disassemblies (no build, no ptxas).
fn listings_only(
    req: &Request,
    kernels: &KernelSet,
    baseline: Option<&ResourceReport>,
    out: &mut dyn Write,
) -> Result<bool, Failure> {
    let anchors = read_anchors(req)?;
    let mut saved = ResourceReport::default();
    for (arch, path) in &req.sass_listing {
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
        put(
            out,
            &sass_report::table(arch, rows, anchors.as_ref(), kernels.cublas_layout),
        );
    }
    say!(out, "\n{}", sass_report::LEGEND);
    if let Some(base) = baseline {
        let (lines, _) = sass_report::compare(&base.sass, &saved.sass);
        for l in lines {
            say!(out, "  {l}");
        }
    }
    write_json(req, &saved, out)?;
    Ok(true)
}

fn write_json(req: &Request, saved: &ResourceReport, out: &mut dyn Write) -> Result<(), Failure> {
    if let Some(path) = &req.json {
        let text = serde_json::to_string_pretty(saved)
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        say!(out, "wrote {}", path.display());
    }
    Ok(())
}

/// The anchors of `req.anchors` (an unreadable file is bad input) or the workspace's
/// committed file (absent: `None`, the ratio column shows `-`).
fn read_anchors(req: &Request) -> Result<Option<Anchors>, Failure> {
    let (path, required) = match &req.anchors {
        Some(p) => (p.clone(), true),
        None => match locate_kernels_dir() {
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

fn print_anchors(out: &mut dyn Write, anchors: Option<&Anchors>, archs: &[String]) {
    let Some(anchors) = anchors else {
        say!(
            out,
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
        let table = sass_report::table(arch, &rows, None, &|_| None);
        // Reuse the kernel table, titled as the anchors.
        put(
            out,
            &table.replacen(
                &format!("{arch} SASS"),
                &format!(
                    "cuBLAS anchors ({}), {arch} SASS",
                    sass_report::ANCHORS_PATH
                ),
                1,
            ),
        );
    }
}

/// Each kernel's grid for one problem and its waves at the occupancy in `saved`:
/// `blocks / (SMs × blocks per SM)` on each GPU of [`model::MODELS`].
pub fn waves_table(problem: &str, grids: &[KernelGrid], saved: &ResourceReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nshape {problem}: grid per kernel and waves (blocks / (SMs x blocks per SM \
         at the occupancy above); static model)"
    );
    for (kernel, grid) in grids {
        let blocks = u64::from(grid.0) * u64::from(grid.1) * u64::from(grid.2);
        let mut cells = Vec::new();
        for m in model::MODELS {
            let per_sm = saved
                .archs
                .get(m.arch)
                .and_then(|rows| rows.iter().find(|r| &r.kernel == kernel))
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
            kernel,
            grid.0,
            grid.1,
            grid.2,
            blocks,
            cells.join("   ")
        );
    }
    s
}

/// A report saved by `json`; a missing or malformed file is bad input.
pub fn read_report(path: &Path) -> Result<ResourceReport, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::BadInput(format!("baseline {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::BadInput(format!(
            "baseline {}: not a report written by `lsoftmax ptx --json`: {e}",
            path.display()
        ))
    })
}

fn summary(out: &mut dyn Write, ok: bool, output: &PtxOutput, expected: &str, density_gate: bool) {
    if ok {
        say!(
            out,
            "ptx check: OK ({} assembled for {} with no errors, no spills; expected \
             entries present: {expected}{})",
            output.path.display(),
            CHECK_ARCHS.join(", "),
            if density_gate {
                "; no FFMA density dropped by more than 0.02 from the baseline"
            } else {
                ""
            }
        );
    } else {
        say!(out, "ptx check: FAILED (see FAIL lines above)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::SETUP_COMMAND;
    use crate::ptxas::FunctionResources;

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
    fn setup_command_is_named_in_missing_tool_errors() {
        let f = Failure::from(CompileError::Missing {
            tool: "rust-src".into(),
            message: format!("install it with `{SETUP_COMMAND}`"),
        });
        assert!(matches!(f, Failure::MissingTool(m) if m.contains("scripts/setup-ptx-tools")));
    }

    #[test]
    fn waves_use_the_given_grids_and_the_reported_occupancy() {
        let mut saved = ResourceReport::default();
        let row = |kernel: &str, blocks| report::KernelRow {
            kernel: kernel.into(),
            registers: 64,
            spill_stores: 0,
            spill_loads: 0,
            static_shared: 0,
            stack: 0,
            threads_per_block: Some(256),
            dynamic_shared: Some(0),
            occupancy: Some(crate::occupancy::Occupancy {
                blocks_per_sm: blocks,
                fraction: 0.0,
                limiter: crate::occupancy::Limiter::Registers,
            }),
        };
        saved.archs.insert("sm_80".into(), vec![row("k", 3)]);
        // 64 × 8 = 512 blocks; A100 holds 108 × 3 = 324 at once → 1.58 waves. No sm_90
        // rows: H100 has no number.
        let t = waves_table("N=1", &[("k".into(), (64, 8, 1))], &saved);
        let line = t.lines().find(|l| l.contains(" k ")).unwrap();
        assert!(
            line.contains("512 blocks") && line.contains("A100 1.58 waves"),
            "{line}"
        );
        assert!(line.contains("H100 - (no sm_90 occupancy"), "{line}");
        assert!(
            t.contains("shape N=1:") && t.contains("static model"),
            "{t}"
        );
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
