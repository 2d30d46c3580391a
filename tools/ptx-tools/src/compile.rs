//! Building the PTX of a kernel crate (`kernels-gpu` in this workspace): the nightly cargo
//! invocation for `nvptx64-nvidia-cuda`, and reading the `.entry` names back from the PTX.
//!
//! This file uses `std` only and refers to nothing else in the crate, so that a build
//! script can include it with `#[path = "../tools/ptx-tools/src/compile.rs"] mod compile;` and
//! build the same PTX the `lsoftmax ptx` command checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rustc target the kernels are compiled for.
pub const NVPTX_TARGET: &str = "nvptx64-nvidia-cuda";

/// The toolchain that builds the PTX (`-Zbuild-std` is nightly-only), pinned to a date:
/// the PTX (its `.version`, the code LLVM emits) and the features the kernel crate uses
/// depend on it. `scripts/setup-ptx-tools` reads this line to install the same toolchain.
/// `LSOFTMAX_NIGHTLY=<toolchain>` overrides it (unpinned; the `.version` check below
/// still applies).
pub const NIGHTLY: &str = "nightly-2026-05-20";

/// The rustc commit of [`NIGHTLY`] (`rustc -vV`'s commit-hash): a toolchain installed as
/// plain `nightly` with this commit is the same compiler and is used as is.
pub const NIGHTLY_COMMIT: &str = "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a";

/// Environment variable that overrides [`NIGHTLY`].
pub const NIGHTLY_ENV: &str = "LSOFTMAX_NIGHTLY";

/// The newest PTX ISA version the documented minimum driver can load, `(major, minor)`.
/// [`NIGHTLY`] (LLVM 22) writes `.version 7.0` for `sm_70`; PTX ISA 7.0 came with CUDA
/// 11.0 (NVIDIA's PTX ISA release history), whose Linux driver is R450. A PTX with a
/// higher `.version` fails to load on that driver with CUDA_ERROR_UNSUPPORTED_PTX_VERSION
/// (222), so the build refuses it ([`check_ptx_version`]) until this, [`MIN_DRIVER`] and
/// the README's "First GPU run" are raised together.
pub const MAX_PTX_ISA: (u32, u32) = (7, 0);

/// The driver [`MAX_PTX_ISA`] needs, for messages and the README.
pub const MIN_DRIVER: &str = "CUDA 11.0 (Linux driver R450, 450.51.06 or newer)";

/// Architecture of the module the CUDA backend embeds (host/build.rs) and the `ptx`
/// backend interprets: the lowest one the project checks with ptxas, so the driver can
/// JIT the module on every later GPU. `LSOFTMAX_PTX_ARCH` overrides it (see
/// [`embedded_arch`]).
pub const EMBEDDED_ARCH: &str = "sm_70";

/// [`EMBEDDED_ARCH`], or the value of `LSOFTMAX_PTX_ARCH` if set.
pub fn embedded_arch() -> String {
    std::env::var("LSOFTMAX_PTX_ARCH").unwrap_or_else(|_| EMBEDDED_ARCH.to_string())
}

/// The command that installs everything the PTX build and the ptxas check need.
pub const SETUP_COMMAND: &str = "scripts/setup-ptx-tools";

/// Environment variables a parent cargo (`cargo run`, a build script) sets and that
/// would leak its own toolchain, flags or target into the nested nightly build.
const LEAKED_ENV: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct PtxBuild {
    /// The `kernels-gpu` package directory (holds its `Cargo.toml`).
    pub kernels_dir: PathBuf,
    /// Cargo target directory of the nvptx build, kept apart from the host build so the
    /// two never invalidate each other (e.g. `target/nvptx`).
    pub target_dir: PathBuf,
    /// GPU architecture passed as `-C target-cpu`, e.g. `sm_80`. It also fixes the PTX
    /// `.target` line and the minimum PTX ISA version.
    pub arch: String,
    /// Emit `.file`/`.loc` directives (`-C debuginfo=line-tables-only`) so profilers can
    /// map SASS back to Rust source lines.
    pub line_info: bool,
}

/// The built PTX.
#[derive(Debug, Clone)]
pub struct PtxOutput {
    /// Where the PTX was written (inside the target directory).
    pub path: PathBuf,
    /// The PTX text.
    pub text: String,
}

/// Why the PTX could not be built.
#[derive(Debug)]
pub enum CompileError {
    /// A tool is missing or failed to start; `message` says how to install it.
    Missing {
        /// The tool (`rustup`, `nightly toolchain`, `rust-src`).
        tool: String,
        /// What is missing and the command that installs it.
        message: String,
    },
    /// Cargo ran and failed (a compile error in the kernels, a bad architecture, ...).
    Cargo {
        /// The command line, for rerunning it by hand.
        command: String,
        /// The tail of cargo's stderr.
        stderr: String,
    },
    /// Reading or writing a file.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The arguments cannot be right (e.g. an architecture that is not `sm_NN`).
    Invalid(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Missing { tool, message } => write!(f, "{tool}: {message}"),
            CompileError::Cargo { command, stderr } => {
                write!(f, "building the PTX failed: `{command}`\n{stderr}")
            }
            CompileError::Io { path, message } => write!(f, "{}: {message}", path.display()),
            CompileError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CompileError {}

/// The target directory of this build, from `OUT_DIR`, whose layout is
/// `<target>/<profile>/build/<package>-<hash>/out`, or
/// `<target>/<triple>/<profile>/build/<package>-<hash>/out` with `--target`: the fourth
/// ancestor, or the fifth when the fourth is the target triple (it is named like one and
/// holds no `CACHEDIR.TAG`, the tag cargo writes at the root of a target directory it
/// creates).
///
/// Only those two ancestors are candidates: a target directory nested in another one
/// (`CARGO_TARGET_DIR=target/stand-in`, made before cargo ran, so without a tag of its
/// own) must not resolve to the outer one.
///
/// Why not `CARGO_TARGET_DIR`: cargo resolves a relative one against the directory it was
/// started in, but build scripts run in the package's directory, so the same relative path
/// names another folder here (and `--target-dir` or `build.target-dir` do not show up in
/// the environment at all). `OUT_DIR` is always absolute.
pub fn cargo_target_dir(out_dir: &Path) -> PathBuf {
    let mut up = out_dir.ancestors().skip(4);
    let Some(plain) = up.next() else {
        return out_dir.to_path_buf();
    };
    let tagged = plain.join("CACHEDIR.TAG").is_file();
    match up.next() {
        Some(outer) if !tagged && is_target_triple(plain) => outer.to_path_buf(),
        _ => plain.to_path_buf(),
    }
}

/// Whether a directory is named like a target triple: `$TARGET` when cargo set it (build
/// scripts), else at least three `-`-separated parts (`x86_64-unknown-linux-gnu`,
/// `nvptx64-nvidia-cuda`).
fn is_target_triple(dir: &Path) -> bool {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    match std::env::var("TARGET") {
        Ok(triple) => name == triple,
        Err(_) => name.split('-').count() >= 3,
    }
}

/// Finds the `kernels-gpu` package from `start` or any of its ancestors: the directory
/// itself, or a workspace that has it as a `kernels-gpu/` subdirectory.
pub fn find_kernels_dir(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let is_kernels =
            dir.file_name().is_some_and(|n| n == "kernels-gpu") && dir.join("Cargo.toml").is_file();
        if is_kernels {
            return Some(dir.to_path_buf());
        }
        let sub = dir.join("kernels-gpu");
        sub.join("Cargo.toml").is_file().then_some(sub)
    })
}

/// `true` if `arch` looks like `sm_NN` or `sm_NNa` (what `-C target-cpu` and
/// `ptxas -arch` both accept).
pub fn is_sm_arch(arch: &str) -> bool {
    let Some(rest) = arch.strip_prefix("sm_") else {
        return false;
    };
    let digits = rest.trim_end_matches(['a', 'f']);
    !digits.is_empty() && digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The toolchain to build with: `$LSOFTMAX_NIGHTLY` if set; else [`NIGHTLY`] if rustup
/// has it; else plain `nightly` if that is the same compiler ([`NIGHTLY_COMMIT`]); else an
/// error that says how to install the pinned one.
pub fn nightly_toolchain() -> Result<String, CompileError> {
    if let Ok(t) = std::env::var(NIGHTLY_ENV)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    if rustc_commit(NIGHTLY)?.is_some() {
        return Ok(NIGHTLY.to_string());
    }
    if rustc_commit("nightly")?.as_deref() == Some(NIGHTLY_COMMIT) {
        return Ok("nightly".to_string());
    }
    Err(CompileError::Missing {
        tool: "nightly toolchain".into(),
        message: format!(
            "the PTX is built with the pinned toolchain {NIGHTLY} (rustc commit \
             {NIGHTLY_COMMIT:.9}), which rustup does not have; install it with \
             `{SETUP_COMMAND}` (or `rustup toolchain install {NIGHTLY} --profile minimal \
             --component rust-src`), or set {NIGHTLY_ENV}=nightly to use another nightly \
             unpinned"
        ),
    })
}

/// The commit hash of `rustup run <toolchain> rustc -vV`, `None` if that toolchain is not
/// installed.
fn rustc_commit(toolchain: &str) -> Result<Option<String>, CompileError> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(|e| CompileError::Missing {
            tool: "rustup".into(),
            message: format!(
                "cannot run `rustup` ({e}); install Rust from https://rustup.rs, then run \
                 `{SETUP_COMMAND}`"
            ),
        })?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash:"))
        .map(|h| h.trim().to_string()))
}

/// Checks that the nightly toolchain ([`nightly_toolchain`]) and its `rust-src` are
/// installed, so that a missing tool gives an install command rather than a page of cargo
/// errors. Returns the toolchain's name.
pub fn check_nightly() -> Result<String, CompileError> {
    let toolchain = nightly_toolchain()?;
    let out = Command::new("rustup")
        .args(["run", &toolchain, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(|e| CompileError::Missing {
            tool: "rustup".into(),
            message: format!(
                "cannot run `rustup` ({e}); install Rust from https://rustup.rs, then run \
                 `{SETUP_COMMAND}`"
            ),
        })?;
    if !out.status.success() {
        return Err(CompileError::Missing {
            tool: "nightly toolchain".into(),
            message: format!(
                "`rustup run {toolchain} rustc` failed ({}); install it with `{SETUP_COMMAND}`",
                // rustup's first line says what is wrong; the rest can be a backtrace.
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
            ),
        });
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let library = sysroot.join("lib/rustlib/src/rust/library/Cargo.toml");
    if !library.is_file() {
        return Err(CompileError::Missing {
            tool: "rust-src".into(),
            message: format!(
                "{} is missing: -Zbuild-std needs the nightly rust-src component; install it \
                 with `{SETUP_COMMAND}` (or `rustup component add rust-src --toolchain \
                 {toolchain}`)",
                library.display()
            ),
        });
    }
    Ok(toolchain)
}

/// The PTX ISA version of a module's `.version` directive (`.version 8.4` gives `(8, 4)`).
pub fn ptx_isa_version(ptx: &str) -> Option<(u32, u32)> {
    ptx.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(".version")?;
        let (major, minor) = rest.trim().split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// Errors unless the PTX's `.version` is at most [`MAX_PTX_ISA`]: a newer ISA would build
/// here and fail to load on a driver the README says is enough.
pub fn check_ptx_version(ptx: &str) -> Result<(), CompileError> {
    let Some(version) = ptx_isa_version(ptx) else {
        return Err(CompileError::Invalid(
            "the PTX has no `.version` directive".into(),
        ));
    };
    if version > MAX_PTX_ISA {
        return Err(CompileError::Invalid(format!(
            "the PTX says .version {}.{}, newer than {}.{}, the newest that the documented \
             minimum driver ({MIN_DRIVER}) loads; a different nightly than {NIGHTLY} or a \
             newer -C target-cpu raised it. Use the pinned toolchain, or raise MAX_PTX_ISA, \
             MIN_DRIVER and the README's minimum driver together.",
            version.0, version.1, MAX_PTX_ISA.0, MAX_PTX_ISA.1
        )));
    }
    Ok(())
}

/// Builds the kernels crate to PTX and returns it.
///
/// Runs `rustup run nightly cargo rustc --release --target nvptx64-nvidia-cuda
/// -Zbuild-std=core --lib -- -C target-cpu=<arch> --emit=asm=<path>,link`, with
/// `panic = "abort"` (there is no unwinding on the GPU) and, with `line_info`,
/// `-C debuginfo=line-tables-only -Z no-generate-arange-section` (LLVM's NVPTX
/// `.debug_aranges` section does not parse in ptxas: "Parsing error near
/// '$L__sec_end0'"), then [`keep_line_tables_only`].
pub fn build_ptx(build: &PtxBuild) -> Result<PtxOutput, CompileError> {
    if !is_sm_arch(&build.arch) {
        return Err(CompileError::Invalid(format!(
            "GPU architecture {:?} is not of the form sm_NN (e.g. sm_80)",
            build.arch
        )));
    }
    let toolchain = check_nightly()?;
    // The nested cargo runs rustc in the kernels' workspace, so a relative `--emit` path
    // would land elsewhere than the relative target dir cargo resolves: make both absolute
    // (against this process's working directory, as cargo does with CARGO_TARGET_DIR).
    let absolute = |p: &Path| -> Result<PathBuf, CompileError> {
        if p.is_absolute() {
            return Ok(p.to_path_buf());
        }
        std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .map_err(|e| CompileError::Io {
                path: p.to_path_buf(),
                message: format!("resolving against the working directory: {e}"),
            })
    };
    let build = &PtxBuild {
        kernels_dir: absolute(&build.kernels_dir)?,
        target_dir: absolute(&build.target_dir)?,
        ..build.clone()
    };
    let manifest = build.kernels_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(CompileError::Io {
            path: manifest,
            message: "not found: expected the kernels-gpu package here".into(),
        });
    }
    let ptx_dir = build.target_dir.join("ptx");
    std::fs::create_dir_all(&ptx_dir).map_err(|e| CompileError::Io {
        path: ptx_dir.clone(),
        message: e.to_string(),
    })?;
    // One output path per configuration and per kernels package (workspaces may share a
    // CARGO_TARGET_DIR): cargo only reruns rustc when the arguments or sources change, so
    // a fresh build must find its own earlier output in place.
    let suffix = if build.line_info { "-lineinfo" } else { "" };
    let package = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        build.kernels_dir.hash(&mut h);
        h.finish() & 0xffff_ffff
    };
    let path = ptx_dir.join(format!(
        "kernels_gpu-{}{suffix}-{package:08x}.ptx",
        build.arch
    ));

    run_cargo(build, &toolchain, &manifest, &path, false)?;
    if !path.is_file() {
        // The build was fresh but someone removed the PTX: an extra (unused) cfg changes
        // rustc's arguments, which makes cargo rerun it.
        run_cargo(build, &toolchain, &manifest, &path, true)?;
    }
    let mut text = std::fs::read_to_string(&path).map_err(|e| CompileError::Io {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if build.line_info {
        let stripped = keep_line_tables_only(&text);
        if stripped != text {
            std::fs::write(&path, &stripped).map_err(|e| CompileError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?;
            text = stripped;
        }
    }
    check_ptx_version(&text)?;
    Ok(PtxOutput { path, text })
}

/// Turns LLVM's debug PTX into optimised PTX with line tables: keeps the `.file`/`.loc`
/// directives, drops the `.section .debug_*` blocks and the `, debug` modifier of
/// `.target`.
///
/// Why: with debug info LLVM writes `.target sm_80, debug`, and ptxas then compiles
/// without optimisation, as `-G` does (measured with ptxas 12.9 on `margin_forward` for
/// sm_90: 152 registers instead of 76). Line tables alone are what `ptxas -lineinfo` and
/// the driver's JIT line-info option use; the `.debug_*` sections are required only by
/// the `debug` modifier (without it, ptxas rejects nothing and optimises as usual).
/// Idempotent, so a PTX that cargo did not rebuild can be passed through again.
pub fn keep_line_tables_only(ptx: &str) -> String {
    let mut out = String::with_capacity(ptx.len());
    let mut in_section = false;
    for line in ptx.lines() {
        let trimmed = line.trim();
        if in_section {
            in_section = trimmed != "}";
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(".section")
            && rest.trim_start().starts_with(".debug_")
        {
            // `.section .debug_macinfo { }` opens and closes on one line.
            in_section = !trimmed.ends_with('}');
            continue;
        }
        if let Some(target) = trimmed.strip_prefix(".target") {
            let archs: Vec<&str> = target
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty() && *w != "debug")
                .collect();
            out.push_str(".target ");
            out.push_str(&archs.join(", "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn run_cargo(
    build: &PtxBuild,
    toolchain: &str,
    manifest: &Path,
    out: &Path,
    force: bool,
) -> Result<(), CompileError> {
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        toolchain,
        "cargo",
        "rustc",
        "--lib",
        "--release",
        "--target",
    ])
    .arg(NVPTX_TARGET)
    .arg("-Zbuild-std=core")
    .arg("--manifest-path")
    .arg(manifest)
    .arg("--target-dir")
    .arg(&build.target_dir)
    .args(["--config", "profile.release.panic=\"abort\""])
    .arg("--")
    .arg(format!("-Ctarget-cpu={}", build.arch))
    .arg(format!("--emit=asm={},link", out.display()));
    if build.line_info {
        cmd.args([
            "-Cdebuginfo=line-tables-only",
            "-Zno-generate-arange-section",
        ]);
    }
    if force {
        cmd.args(["--cfg", "lsoftmax_ptx_rebuild"]);
    }
    for var in LEAKED_ENV {
        cmd.env_remove(var);
    }
    let command = format!("{cmd:?}").replace('"', "");
    let output = cmd.output().map_err(|e| CompileError::Missing {
        tool: "rustup".into(),
        message: format!("cannot run `rustup` ({e}); install Rust from https://rustup.rs"),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if stderr.contains("rust-src") {
        return Err(CompileError::Missing {
            tool: "rust-src".into(),
            message: format!("{tail}\ninstall it with `{SETUP_COMMAND}`"),
        });
    }
    Err(CompileError::Cargo {
        command,
        stderr: tail,
    })
}

/// The kernel entry points of a PTX module: the names of its `.entry` directives
/// (`.visible .entry vector_add(` gives `vector_add`), in file order.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == ".entry")?;
            let name = words.next()?;
            let name = name.split('(').next().unwrap_or(name).trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The `.target` architecture a PTX module was generated for (`sm_70` from
/// `.target sm_70`).
pub fn ptx_target(ptx: &str) -> Option<&str> {
    ptx.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(".target")?;
        rest.split([',', ' ', '\t']).find(|w| !w.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ptx_version_is_read_and_checked_against_the_documented_driver() {
        let ptx = |v: &str| format!("//\n// comment\n\n.version {v}\n.target sm_70\n");
        assert_eq!(ptx_isa_version(&ptx("7.0")), Some((7, 0)));
        assert_eq!(ptx_isa_version(&ptx("8.10")), Some((8, 10)));
        assert_eq!(ptx_isa_version(".target sm_70\n"), None);
        assert!(check_ptx_version(&ptx("7.0")).is_ok());
        assert!(check_ptx_version(&ptx("6.5")).is_ok());
        let err = check_ptx_version(&ptx("7.1")).unwrap_err().to_string();
        assert!(
            err.contains(".version 7.1") && err.contains(MIN_DRIVER),
            "{err}"
        );
        assert!(check_ptx_version(&ptx("8.0")).is_err());
        assert!(check_ptx_version(".target sm_70\n").is_err());
    }

    #[test]
    fn the_target_dir_is_found_from_out_dir() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("rel/target-gpu");
        for triple in [None, Some("x86_64-unknown-linux-gnu")] {
            let mut out = target.clone();
            if let Some(t) = triple {
                out.push(t);
            }
            out.push("release/build/lsoftmax-host-0123abcd/out");
            std::fs::create_dir_all(&out).unwrap();
            assert_eq!(cargo_target_dir(&out), target, "{triple:?}, no tag");
            std::fs::write(
                target.join("CACHEDIR.TAG"),
                "Signature: 8a477f597d28d172789f06886806bc55",
            )
            .unwrap();
            assert_eq!(cargo_target_dir(&out), target, "{triple:?}, tagged");
            std::fs::remove_file(target.join("CACHEDIR.TAG")).unwrap();
        }
    }

    #[test]
    fn a_target_dir_nested_in_a_tagged_one_is_not_the_outer_one() {
        // CARGO_TARGET_DIR=target/stand-in, created by a script before cargo (no tag),
        // inside the workspace's tagged target/.
        let root = tempfile::tempdir().unwrap();
        let outer = root.path().join("target");
        let inner = outer.join("stand-in");
        let out = inner.join("debug/build/lsoftmax-host-0123abcd/out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(
            outer.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        assert_eq!(cargo_target_dir(&out), inner);
    }
}
