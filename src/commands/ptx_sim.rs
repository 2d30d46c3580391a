//! `lsoftmax ptx --sim N,D,C`: the margin kernels' PTX run by the interpreter on one
//! random training problem (forward, then both gradients), with warp-level statistics
//! per kernel and per PTX line: requests and 32-byte sectors of global accesses, bank
//! conflicts of shared accesses, dynamic instruction counts by class. Counted exactly on
//! the simulated execution (see [`ptxsim::stats`]); nothing here is a timing of a
//! GPU.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lsoftmax_host::backend::ptx::LaunchStats;
use lsoftmax_host::backend::{Backend, PtxBackend};
use lsoftmax_host::error::{Error, Result};
use lsoftmax_host::margin::{Margin, Mode};
use ptxsim::SimOptions;
use ptxsim::Space;

/// Runs the three passes and returns the printed report. `kernels` filters the entries
/// reported (substring match on the entry name; empty: all).
pub fn report(
    shape: (usize, usize, usize),
    margin: Margin,
    kernels: &[String],
    ptx_file: Option<&Path>,
) -> Result<String> {
    let backend = match ptx_file {
        Some(p) => PtxBackend::from_file(p)?,
        None => PtxBackend::new()?,
    };
    let (n, d, c) = shape;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut uniform =
        |r, k| Array2::from_shape_simple_fn((r, k), || rng.random_range(-1.0f32..1.0));
    let (x, w, g) = (uniform(n, d), uniform(c, d), uniform(n, c));
    let labels: Vec<usize> = (0..n).map(|i| (i * 7919) % c).collect();
    let passes = |b: &PtxBackend| -> Result<()> {
        let (_, cache) = b.forward(x.view(), w.view(), &labels, margin, Mode::Train)?;
        b.backward(x.view(), w.view(), &labels, &cache, g.view())?;
        Ok(())
    };
    // First without statistics: the interpreter's own speed.
    let start = Instant::now();
    passes(&backend)?;
    let secs = start.elapsed().as_secs_f64();
    let executed = backend.instructions_executed();
    let backend = backend.with_options(SimOptions {
        stats: true,
        ..SimOptions::default()
    });
    passes(&backend)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "PTX {} on the interpreter: N = {n}, D = {d}, C = {c}, margin {margin}, training \
         forward + backward\n{executed} thread-level PTX instructions in {secs:.2} s = {:.1} \
         M instructions/s (one core, statistics off)\n",
        backend.origin(),
        executed as f64 / secs.max(1e-9) / 1e6
    );
    let all = backend.take_stats();
    let chosen: Vec<&LaunchStats> = all
        .iter()
        .filter(|s| kernels.is_empty() || kernels.iter().any(|k| s.kernel.contains(k.as_str())))
        .collect();
    if chosen.is_empty() {
        return Err(Error::Backend {
            backend: "ptx",
            message: format!(
                "no launched kernel matches {kernels:?}; launched: {}",
                all.iter()
                    .map(|s| s.kernel.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    for s in chosen {
        kernel_section(&mut out, &backend, s);
    }
    let _ = writeln!(
        out,
        "Model: requests are warp-level executions of a memory instruction (lanes grouped by \
         warp and execution count); sectors are distinct 32-byte segments; shared wavefronts \
         are the most distinct 4-byte words one of 32 banks serves, ideal = distinct bytes / \
         128. Exact for the simulated execution, not a measurement of a GPU."
    );
    Ok(out)
}

fn kernel_section(out: &mut String, backend: &PtxBackend, s: &LaunchStats) {
    let module = backend.module();
    let Some(k) = module.kernel(&s.kernel) else {
        return;
    };
    let classes = s.stats.by_class();
    let warp_total: u64 = classes.iter().map(|c| c.2).sum();
    let _ = writeln!(
        out,
        "== {}: {} thread instructions, {} warp instructions",
        s.kernel, s.instructions, warp_total
    );
    let _ = writeln!(out, "  {:<12} {:>14} {:>12}", "class", "thread", "warp");
    for (class, t, w) in classes.iter().filter(|c| c.1 > 0) {
        let _ = writeln!(out, "  {:<12} {t:>14} {w:>12}", class.name());
    }
    let _ = writeln!(
        out,
        "  {:>8}  {:<34} {:<22} {:>9} {:>12} {:>16}",
        "PTX line", "source", "instruction", "requests", "sectors/req", "wavefronts/req"
    );
    for (pc, st) in s.stats.per_inst.iter().enumerate() {
        let Some(space) = st.space else { continue };
        if st.requests == 0 {
            continue;
        }
        let pos = k.pos[pc];
        let src = module.source_line(pos.loc).unwrap_or_else(|| "-".into());
        let src = if src.len() > 34 {
            format!("…{}", &src[src.len() - 33..])
        } else {
            src
        };
        let req = st.requests as f64;
        let (sectors, waves) = match space {
            Space::Shared => (
                "-".to_string(),
                format!(
                    "{:.2} (ideal {:.2})",
                    st.wavefronts as f64 / req,
                    st.ideal_wavefronts as f64 / req
                ),
            ),
            _ => (format!("{:.2}", st.sectors as f64 / req), "-".to_string()),
        };
        let _ = writeln!(
            out,
            "  {:>8}  {:<34} {:<22} {:>9} {:>12} {:>16}",
            pos.ptx_line, src, k.opcodes[pc], st.requests, sectors, waves
        );
    }
    out.push('\n');
}
