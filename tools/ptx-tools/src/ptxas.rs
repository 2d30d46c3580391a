//! Running `ptxas -v` and reading its per-function resource report.
//!
//! ptxas prints, on stderr, one block per function:
//! ```text
//! ptxas info    : Compiling entry function 'vector_add' for 'sm_80'
//! ptxas info    : Function properties for vector_add
//!     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 12 registers, used 0 barriers, 404 bytes cmem[0]
//! ```
//! Device functions that are not entries get a `Function properties` block only.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

use super::compile::SETUP_COMMAND;

/// Resource usage of one function, as `ptxas -v` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionResources {
    /// The function's PTX name.
    pub name: String,
    /// `true` for a kernel entry point (`.entry`), `false` for a device function.
    pub entry: bool,
    /// Registers per thread.
    pub registers: u32,
    /// Named barriers the kernel uses.
    pub barriers: u32,
    /// Bytes of registers spilled to local memory.
    pub spill_stores: u64,
    /// Bytes of spilled values loaded back.
    pub spill_loads: u64,
    /// Static shared memory per block in bytes (`smem`); dynamic shared memory is sized
    /// at launch and is not part of it.
    pub shared_bytes: u64,
    /// Per-thread stack frame in bytes.
    pub stack_frame: u64,
}

impl FunctionResources {
    /// `true` if ptxas spilled registers to local memory (stores or loads).
    pub fn spills(&self) -> bool {
        self.spill_stores > 0 || self.spill_loads > 0
    }
}

/// What one `ptxas -v` run reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PtxasReport {
    /// Functions in the order ptxas reported them.
    pub functions: Vec<FunctionResources>,
    /// `error` and `fatal` messages.
    pub errors: Vec<String>,
    /// `warning` messages.
    pub warnings: Vec<String>,
}

impl PtxasReport {
    /// The kernel entry points only.
    pub fn entries(&self) -> impl Iterator<Item = &FunctionResources> {
        self.functions.iter().filter(|f| f.entry)
    }

    /// The function named `name`, if ptxas reported it.
    pub fn function(&self, name: &str) -> Option<&FunctionResources> {
        self.functions.iter().find(|f| f.name == name)
    }

    fn function_mut(&mut self, name: &str) -> &mut FunctionResources {
        let index = match self.functions.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.functions.push(FunctionResources {
                    name: name.to_string(),
                    ..FunctionResources::default()
                });
                self.functions.len() - 1
            }
        };
        &mut self.functions[index]
    }
}

/// Parses the output of `ptxas -v` (stdout and stderr together).
///
/// Lines it does not know (compile times, `gmem`, register-limit notices) are skipped, so
/// a newer ptxas that adds lines still parses.
pub fn parse_verbose(output: &str) -> PtxasReport {
    let mut report = PtxasReport::default();
    // `Used ...` belongs to the entry being compiled; the `N bytes stack frame` line
    // belongs to the latest `Function properties for` header (entry or device function).
    let mut compiling: Option<String> = None;
    let mut properties_of: Option<String> = None;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some((severity, message)) = diagnostic(trimmed) {
            match severity {
                "info" => {
                    if let Some(name) = quoted_after(message, "Compiling entry function ") {
                        report.function_mut(name).entry = true;
                        compiling = Some(name.to_string());
                    } else if let Some(name) = message.strip_prefix("Function properties for ") {
                        let name = name.trim();
                        report.function_mut(name);
                        properties_of = Some(name.to_string());
                    } else if let Some(used) = message.strip_prefix("Used ")
                        && let Some(name) = &compiling
                    {
                        apply_used(report.function_mut(name), used);
                    }
                }
                "warning" => report.warnings.push(trimmed.to_string()),
                _ => report.errors.push(trimmed.to_string()),
            }
        } else if trimmed.contains("bytes stack frame")
            && let Some(name) = &properties_of
        {
            apply_frame(report.function_mut(name), trimmed);
        }
    }
    report
}

/// Splits `ptxas info    : msg`, `ptxas error   : msg` and `ptxas file.ptx, line 3; error
/// : msg` into the severity and the message.
fn diagnostic(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("ptxas")?;
    let (head, message) = rest.split_once(" : ").or_else(|| rest.split_once(": "))?;
    let severity = head.rsplit([' ', ';']).find(|w| !w.is_empty())?;
    let severity = match severity {
        "info" => "info",
        "warning" => "warning",
        "error" | "fatal" => "error",
        _ => return None,
    };
    Some((severity, message.trim()))
}

fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('\'')?;
    rest.split('\'').next()
}

/// Leading integer of `part` (`"12 registers"` gives 12).
fn leading_number(part: &str) -> Option<u64> {
    part.split_whitespace().next()?.parse().ok()
}

/// `12 registers, used 1 barriers, 1024 bytes smem, 404 bytes cmem[0]`.
fn apply_used(f: &mut FunctionResources, used: &str) {
    for part in used.split(',').map(str::trim) {
        let part = part.strip_prefix("used ").unwrap_or(part);
        let Some(n) = leading_number(part) else {
            continue;
        };
        if part.ends_with(" registers") || part.ends_with(" register") {
            f.registers = u32::try_from(n).unwrap_or(u32::MAX);
        } else if part.ends_with(" barriers") || part.ends_with(" barrier") {
            f.barriers = u32::try_from(n).unwrap_or(u32::MAX);
        } else if part.ends_with(" bytes smem") {
            f.shared_bytes = n;
        }
    }
}

/// `0 bytes stack frame, 848 bytes spill stores, 944 bytes spill loads`.
fn apply_frame(f: &mut FunctionResources, line: &str) {
    for part in line.split(',').map(str::trim) {
        let Some(n) = leading_number(part) else {
            continue;
        };
        if part.ends_with("bytes stack frame") {
            f.stack_frame = n;
        } else if part.ends_with("bytes spill stores") {
            f.spill_stores = n;
        } else if part.ends_with("bytes spill loads") {
            f.spill_loads = n;
        }
    }
}

/// Finds ptxas: `$LSOFTMAX_PTXAS`, then the CUDA root that `scripts/setup-ptx-tools`
/// fills (`$LSOFTMAX_CUDA_TOOLS/cuda/bin/ptxas`, default
/// `~/.cache/lsoftmax/cuda-tools/cuda/bin/ptxas`), then `ptxas` on `PATH`.
pub fn find_ptxas() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LSOFTMAX_PTXAS") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Toolchain {
                tool: "ptxas".into(),
                message: format!(
                    "LSOFTMAX_PTXAS={} is not a file; unset it or run `{SETUP_COMMAND}`",
                    p.display()
                ),
            })
        };
    }
    let tools = match std::env::var_os("LSOFTMAX_CUDA_TOOLS") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/lsoftmax/cuda-tools")),
    };
    if let Some(candidate) = tools.map(|t| t.join("cuda/bin/ptxas"))
        && candidate.is_file()
    {
        return Ok(candidate);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("ptxas"))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| Error::Toolchain {
        tool: "ptxas".into(),
        message: format!(
            "not found (looked at $LSOFTMAX_PTXAS, $LSOFTMAX_CUDA_TOOLS/cuda/bin/ptxas and \
             PATH); install it with `{SETUP_COMMAND}`"
        ),
    })
}

/// Runs `ptxas -arch=<arch> -v <ptx> -o /dev/null` and parses its report.
///
/// A ptxas that runs and rejects the PTX is not an `Err`: its messages are in
/// [`PtxasReport::errors`]. `Err` means ptxas could not be run at all.
pub fn run(ptxas: &Path, ptx: &Path, arch: &str) -> Result<PtxasReport> {
    let null = Path::new(if cfg!(windows) { "NUL" } else { "/dev/null" });
    run_to(ptxas, ptx, arch, null)
}

/// [`run`], keeping the cubin ptxas writes at `cubin`.
pub fn run_to(ptxas: &Path, ptx: &Path, arch: &str, cubin: &Path) -> Result<PtxasReport> {
    let output = Command::new(ptxas)
        .arg(format!("-arch={arch}"))
        .arg("-v")
        .arg(ptx)
        .arg("-o")
        .arg(cubin)
        .output()
        .map_err(|e| Error::Toolchain {
            tool: "ptxas".into(),
            message: format!(
                "cannot run {} ({e}); install it with `{SETUP_COMMAND}`",
                ptxas.display()
            ),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut report = parse_verbose(&text);
    if !output.status.success() && report.errors.is_empty() {
        report.errors.push(format!(
            "ptxas exited with {} for {arch}: {}",
            output.status,
            text.trim()
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ptxas 12.9 (V12.9.86) `-arch=sm_80 -v -maxrregcount=24` on the kernels-gpu PTX:
    /// the register cap forces spills in `margin_forward`.
    const SPILLS_SM80: &str = "\
ptxas info    : Overriding maximum register limit 256 for 'vector_add' with  24 of maxrregcount option
ptxas info    : Overriding maximum register limit 256 for 'margin_forward' with  24 of maxrregcount option
ptxas info    : Overriding maximum register limit 256 for 'block_sum' with  24 of maxrregcount option
ptxas info    : 48 bytes gmem, 24 bytes cmem[4]
ptxas info    : Compiling entry function 'vector_add' for 'sm_80'
ptxas info    : Function properties for vector_add
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers, 404 bytes cmem[0]
ptxas info    : Compile time = 1.746 ms
ptxas info    : Compiling entry function 'margin_forward' for 'sm_80'
ptxas info    : Function properties for margin_forward
    272 bytes stack frame, 848 bytes spill stores, 944 bytes spill loads
ptxas info    : Used 24 registers, used 1 barriers, 272 bytes cumulative stack size, 528 bytes cmem[0], 36 bytes cmem[2]
ptxas info    : Compile time = 85.245 ms
ptxas info    : Compiling entry function 'block_sum' for 'sm_80'
ptxas info    : Function properties for block_sum
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 388 bytes cmem[0]
ptxas info    : Compile time = 2.172 ms
";

    /// ptxas 12.9 `-arch=sm_70 -v` on a hand-written kernel with a 1 KiB static
    /// `.shared` array.
    const SHARED_SM70: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 's' for 'sm_70'
ptxas info    : Function properties for s
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, used 1 barriers, 1024 bytes smem, 360 bytes cmem[0]
ptxas info    : Compile time = 1.200 ms
";

    /// ptxas 12.9 `-arch=sm_70 -v` on PTX built with line tables: the panic handler
    /// is a device function (properties, no `Used` line) ahead of the entries.
    const DEVICE_FUNCTION_SM70: &str = "\
ptxas info    : 48 bytes gmem
ptxas info    : Function properties for _RNvCseulmdZsCeCG_7___rustc17rust_begin_unwind
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compile time = 0.775 ms
ptxas info    : Compiling entry function 'block_sum' for 'sm_70'
ptxas info    : Function properties for block_sum
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 13 registers, used 1 barriers, 388 bytes cmem[0]
ptxas info    : Compile time = 1.025 ms
";

    /// ptxas 12.9 on PTX calling an undefined `.extern .func foo`.
    const UNRESOLVED_EXTERN: &str = "ptxas fatal   : Unresolved extern function 'foo'\n";

    /// ptxas 12.9 on PTX with LLVM's `.debug_aranges` section, which it cannot parse.
    const PARSE_ERROR: &str = "\
ptxas k70bad.ptx, line 11224; fatal   : Parsing error near '$L__sec_end0': syntax error
ptxas fatal   : Ptx assembly aborted due to errors
";

    /// CUDA 13.5's ptxas asked for Volta.
    const UNKNOWN_ARCH: &str =
        "ptxas fatal   : Value 'sm_70' is not defined for option 'gpu-name'\n";

    #[test]
    fn reads_registers_spills_and_frame_per_entry() {
        let r = parse_verbose(SPILLS_SM80);
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
        let names: Vec<_> = r.entries().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["vector_add", "margin_forward", "block_sum"]);
        assert_eq!(
            r.function("margin_forward").unwrap(),
            &FunctionResources {
                name: "margin_forward".into(),
                entry: true,
                registers: 24,
                barriers: 1,
                spill_stores: 848,
                spill_loads: 944,
                shared_bytes: 0,
                stack_frame: 272,
            }
        );
        let va = r.function("vector_add").unwrap();
        assert_eq!((va.registers, va.barriers, va.spills()), (12, 0, false));
        assert_eq!(r.function("block_sum").unwrap().registers, 10);
        assert!(r.function("margin_forward").unwrap().spills());
    }

    #[test]
    fn reads_static_shared_memory() {
        let r = parse_verbose(SHARED_SM70);
        let s = r.function("s").unwrap();
        assert_eq!((s.registers, s.shared_bytes, s.barriers), (8, 1024, 1));
    }

    #[test]
    fn device_functions_are_not_entries() {
        let r = parse_verbose(DEVICE_FUNCTION_SM70);
        assert_eq!(r.functions.len(), 2);
        let handler = &r.functions[0];
        assert!(handler.name.ends_with("rust_begin_unwind") && !handler.entry);
        let entries: Vec<_> = r
            .entries()
            .map(|f| (f.name.as_str(), f.registers))
            .collect();
        assert_eq!(entries, [("block_sum", 13)]);
    }

    #[test]
    fn collects_errors_in_both_formats() {
        let r = parse_verbose(UNRESOLVED_EXTERN);
        assert_eq!(
            r.errors,
            ["ptxas fatal   : Unresolved extern function 'foo'"]
        );
        assert!(r.functions.is_empty());
        let r = parse_verbose(PARSE_ERROR);
        assert_eq!(r.errors.len(), 2);
        assert!(r.errors[0].contains("line 11224") && r.errors[0].contains("Parsing error"));
        let r = parse_verbose(UNKNOWN_ARCH);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains("'sm_70' is not defined"));
    }

    /// ptxas 12.9 `-arch=sm_80 -v --warn-on-spills -maxrregcount=24`: spill warnings
    /// (also for a libdevice helper that is not an entry).
    const SPILL_WARNINGS: &str = "\
ptxas warning : Registers are spilled to local memory in function 'margin_forward', 848 bytes spill stores, 944 bytes spill loads
ptxas warning : Registers are spilled to local memory in function '__cuda_sm20_div_rn_f64_full', 144 bytes spill stores, 192 bytes spill loads
ptxas info    : 48 bytes gmem, 24 bytes cmem[4]
";

    #[test]
    fn warnings_are_kept_apart_from_errors() {
        let r = parse_verbose(SPILL_WARNINGS);
        assert!(r.errors.is_empty() && r.functions.is_empty(), "{r:?}");
        assert_eq!(r.warnings.len(), 2);
        assert!(r.warnings[1].contains("__cuda_sm20_div_rn_f64_full"));
    }
}
