//! The SASS report (what `lsoftmax ptx --sass` prints): per kernel and architecture, the main K
//! loop's stage mix (module [`super::main_loop`]), the static peak bound
//! ([`super::model`]), the ratio to the matching cuBLAS kernel (the
//! anchors in `docs/sass/cublas-anchors.json`), the comparison with a saved report and the
//! CI gate on FFMA density.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::SassFunction;
use super::main_loop::{self, MainLoop, Mix, Verdict};
use super::model::{self, PeakBound, StageCounts};

/// Largest drop of FFMA density from the baseline that the gate accepts.
pub const DENSITY_TOLERANCE: f64 = 0.02;

/// Where the committed cuBLAS anchors live, relative to the workspace root.
pub const ANCHORS_PATH: &str = "docs/sass/cublas-anchors.json";

/// What the loop finder concluded, as saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopStatus {
    /// A main loop was found; the stage fields are set.
    MainLoop,
    /// No loop holds an FFMA: not GEMM-shaped (row norms, demo kernels).
    NoFfmaLoop,
    /// The finder refused; `note` says why.
    Refused,
}

/// One kernel on one architecture.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SassRow {
    /// Function name.
    pub kernel: String,
    /// Loop finder result.
    pub status: LoopStatus,
    /// Why the finder refused, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The main loop and one stage as executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_loop: Option<MainLoop>,
    /// FFMA / instructions of one stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffma_density: Option<f64>,
    /// FFMA per byte one thread loads from shared memory in one stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffma_per_shared_byte: Option<f64>,
    /// FFMA per shared-memory load instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffma_per_shared_load: Option<f64>,
    /// Static model: upper bound on the fraction of FP32 peak on this architecture's GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_bound: Option<PeakBound>,
    /// Instructions in the whole function.
    pub function_instructions: u64,
    /// `LDL` + `STL` instructions in the whole function (local memory: spills or stack).
    pub function_local_accesses: u64,
}

/// Analyses one function disassembled for `arch`.
pub fn row(arch: &str, f: &SassFunction) -> SassRow {
    let mut whole = Mix::default();
    for i in &f.instructions {
        whole.add(i, 1);
    }
    let mut row = SassRow {
        kernel: f.name.clone(),
        status: LoopStatus::NoFfmaLoop,
        note: None,
        main_loop: None,
        ffma_density: None,
        ffma_per_shared_byte: None,
        ffma_per_shared_load: None,
        peak_bound: None,
        function_instructions: whole.instructions,
        function_local_accesses: whole.local_loads + whole.local_stores,
    };
    match main_loop::analyse(f) {
        Verdict::NoFfmaLoop => {}
        Verdict::Refused(message) => {
            row.status = LoopStatus::Refused;
            row.note = Some(message);
        }
        Verdict::Main(main) => {
            let s = &main.stage;
            row.status = LoopStatus::MainLoop;
            row.ffma_density = Some(s.ffma_density());
            row.ffma_per_shared_byte = s.ffma_per_shared_byte();
            row.ffma_per_shared_load = s.ffma_per_shared_load();
            row.peak_bound = model::model(arch).and_then(|m| {
                let counts = StageCounts {
                    instructions: s.instructions,
                    ffma: s.ffma,
                    shared_accesses: s.shared_load_count()
                        + s.shared_store_count()
                        + s.async_copies(),
                };
                model::peak_bound(m, counts).map(|(fraction, limit)| PeakBound {
                    gpu: m.gpu.to_string(),
                    fraction,
                    limit,
                })
            });
            row.main_loop = Some(main);
        }
    }
    row
}

/// One cuBLAS kernel measured by `scripts/cublas-anchors`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// `tn`, `nn` or `nt`.
    pub layout: String,
    /// A short name for tables (`ampere_sgemm_128x128_tn`, `sm80_xmma 128x128x8 tn`).
    pub label: String,
    /// The analysis, as for the crate's kernels.
    pub row: SassRow,
}

/// The committed anchor file (other fields, the provenance, are kept in the file only).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Anchors {
    /// `sm_XY` → anchors.
    pub archs: BTreeMap<String, Vec<Anchor>>,
}

impl Anchors {
    /// The anchor for `layout` on `arch`.
    pub fn get(&self, arch: &str, layout: &str) -> Option<&Anchor> {
        self.archs.get(arch)?.iter().find(|a| a.layout == layout)
    }
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// `128×32b` for 128 accesses 32 bits wide, joined with `+`.
fn widths(m: &BTreeMap<u32, u64>) -> String {
    if m.is_empty() {
        return "0".into();
    }
    m.iter()
        .map(|(w, n)| format!("{n}×{w}b"))
        .collect::<Vec<_>>()
        .join("+")
}

fn global_loads(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "0".into();
    }
    m.iter()
        .map(|(k, n)| format!("{n}×{k}"))
        .collect::<Vec<_>>()
        .join("+")
}

/// The table printed for one architecture; `anchors` adds the ratio column, matching each
/// kernel to the anchor of the cuBLAS layout (`tn`, `nn`, `nt`) `cublas_layout` gives it.
pub fn table(
    arch: &str,
    rows: &[SassRow],
    anchors: Option<&Anchors>,
    cublas_layout: &dyn Fn(&str) -> Option<&'static str>,
) -> String {
    let width = rows
        .iter()
        .map(|r| r.kernel.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let gpu = model::model(arch).map_or("no model for this architecture", |m| m.gpu);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{arch} SASS, one K stage as executed (static count; bound = static model, {gpu})"
    );
    let _ = writeln!(
        s,
        "  {:<width$}  {:>5}  {:>6}  {:>5}  {:>7}  {:>12}  {:>10}  {:>14}  {:>3}  {:>6}  {:>6}  {:>5}  {:>13}  vs cuBLAS (density ratio)",
        "kernel",
        "k/stg",
        "instr",
        "FFMA",
        "density",
        "LDS",
        "STS",
        "global loads",
        "BAR",
        "F/LDS",
        "F/B",
        "local",
        "peak bound",
    );
    for r in rows {
        let Some(m) = &r.main_loop else {
            let what = match r.status {
                LoopStatus::NoFfmaLoop => "no FFMA loop (not GEMM-shaped)".to_string(),
                _ => format!("refused: {}", r.note.as_deref().unwrap_or("?")),
            };
            let _ = writeln!(s, "  {:<width$}  {what}", r.kernel);
            continue;
        };
        let st = &m.stage;
        let bound = r.peak_bound.as_ref().map_or_else(
            || "-".to_string(),
            |b| format!("{:.2} ({})", b.fraction, b.limit),
        );
        let versus = cublas_layout(&r.kernel)
            .zip(anchors)
            .and_then(|(layout, a)| a.get(arch, layout))
            .and_then(|a| {
                let base = a.row.ffma_density?;
                let own = r.ffma_density?;
                Some(format!("{:.2}× {} ({:.3})", own / base, a.label, base))
            })
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "  {:<width$}  {:>5}  {:>6}  {:>5}  {:>7.3}  {:>12}  {:>10}  {:>14}  {:>3}  {:>6}  {:>6}  {:>5}  {:>13}  {versus}",
            r.kernel,
            m.k_steps_per_stage,
            st.instructions,
            st.ffma,
            st.ffma_density(),
            widths(&st.shared_loads),
            widths(&st.shared_stores),
            global_loads(&st.global_loads),
            st.barriers,
            cell(r.ffma_per_shared_load, 1),
            cell(r.ffma_per_shared_byte, 2),
            st.local_loads + st.local_stores,
            bound,
        );
        if !m.other_versions.is_empty() {
            let others: Vec<String> = m
                .other_versions
                .iter()
                .map(|v| {
                    format!(
                        "{:#x}..{:#x} ({} instr, density {:.3})",
                        v.loop_span.0, v.loop_span.1, v.instructions, v.ffma_density
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "    {}: also {} other cop{} of the main loop (the compiler versioned it under a \
                 loop-invariant condition, e.g. edge tiles; the densest copy is shown): {}",
                r.kernel,
                others.len(),
                if others.len() == 1 { "y" } else { "ies" },
                others.join(", ")
            );
        }
    }
    s
}

/// The lines explaining the table's columns.
pub const LEGEND: &str = "\
SASS columns: k/stg = k-steps per stage (FFMA per iteration / accumulators, times the inner \
loop's trip count); instr, FFMA, LDS, STS, global loads, BAR, local (LDL+STL) = instructions \
per thread in one stage as executed (n×Wb = n accesses W bits wide); density = FFMA/instr; \
F/LDS = FFMA per shared load; F/B = FFMA per shared byte loaded; peak bound = static model \
(docs/sass-model.md): upper bound on the fraction of FP32 peak the mix allows (limited by \
fp32, issue or shared). Not a timing: nothing ran on a GPU.";

/// Differences in the SASS rows from `baseline` to `current` (informational lines) and
/// the gate's failures: a kernel whose FFMA density dropped by more than
/// [`DENSITY_TOLERANCE`], or that had a main loop and lost it.
pub fn compare(
    baseline: &BTreeMap<String, Vec<SassRow>>,
    current: &BTreeMap<String, Vec<SassRow>>,
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (arch, now) in current {
        let Some(before) = baseline.get(arch) else {
            lines.push(format!("{arch} SASS: not in the baseline"));
            continue;
        };
        for r in now {
            let Some(b) = before.iter().find(|b| b.kernel == r.kernel) else {
                lines.push(format!("{arch} {}: new kernel (SASS)", r.kernel));
                continue;
            };
            let mut changes = Vec::new();
            if let (Some(x), Some(y)) = (&b.main_loop, &r.main_loop) {
                let mut num = |what: &str, old: u64, new: u64| {
                    if old != new {
                        changes.push(format!("{what} {old} -> {new}"));
                    }
                };
                num("k/stage", x.k_steps_per_stage, y.k_steps_per_stage);
                num("instructions", x.stage.instructions, y.stage.instructions);
                num("FFMA", x.stage.ffma, y.stage.ffma);
                num(
                    "shared loads",
                    x.stage.shared_load_count(),
                    y.stage.shared_load_count(),
                );
                num(
                    "local accesses",
                    x.stage.local_loads + x.stage.local_stores,
                    y.stage.local_loads + y.stage.local_stores,
                );
            }
            match (b.ffma_density, r.ffma_density) {
                (Some(old), Some(new)) => {
                    if (old - new).abs() >= 5e-4 {
                        changes.push(format!(
                            "FFMA density {old:.3} -> {new:.3} ({:+.3})",
                            new - old
                        ));
                    }
                    if new < old - DENSITY_TOLERANCE {
                        failures.push(format!(
                            "[{arch}] {}: FFMA density dropped from {old:.3} to {new:.3} \
                             (more than {DENSITY_TOLERANCE})",
                            r.kernel
                        ));
                    }
                }
                (Some(old), None) => {
                    changes.push(format!("main loop lost (density was {old:.3})"));
                    failures.push(format!(
                        "[{arch}] {}: had a main loop with FFMA density {old:.3}, now {}",
                        r.kernel,
                        r.note.as_deref().unwrap_or("no FFMA loop")
                    ));
                }
                (None, Some(new)) => changes.push(format!("main loop found (density {new:.3})")),
                (None, None) => {}
            }
            if !changes.is_empty() {
                lines.push(format!("{arch} {}: {}", r.kernel, changes.join(", ")));
            }
        }
        for b in before {
            if !now.iter().any(|r| r.kernel == b.kernel) {
                lines.push(format!("{arch} {}: gone (SASS)", b.kernel));
            }
        }
    }
    (lines, failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sass::model::Limit;
    use crate::sass::parse_listing;

    fn rows(arch: &str) -> Vec<SassRow> {
        parse_listing(include_str!("fixtures/loops.sass"))
            .iter()
            .map(|f| row(arch, f))
            .collect()
    }

    fn find<'a>(rows: &'a [SassRow], name: &str) -> &'a SassRow {
        rows.iter().find(|r| r.kernel == name).unwrap()
    }

    #[test]
    fn rows_carry_density_and_the_static_bound() {
        let r80 = rows("sm_80");
        let flat = find(&r80, "flat_stage");
        assert_eq!(flat.status, LoopStatus::MainLoop);
        assert!((flat.ffma_density.unwrap() - 16.0 / 34.0).abs() < 1e-12);
        // A100: FP32 16/2 = 8 cycles, issue 34/4 = 8.5, shared 8 LDS + 2 STS = 10 → 0.8.
        let b = flat.peak_bound.as_ref().unwrap();
        assert_eq!((b.gpu.as_str(), b.limit), ("A100", Limit::Shared));
        assert!((b.fraction - 0.8).abs() < 1e-12);
        // H100: FP32 4 cycles against shared 10 → 0.4.
        let h = find(&rows("sm_90"), "flat_stage")
            .peak_bound
            .clone()
            .unwrap();
        assert!((h.fraction - 0.4).abs() < 1e-12 && h.gpu == "H100");
        // No model for sm_86: counts, no bound.
        assert!(find(&rows("sm_86"), "flat_stage").peak_bound.is_none());
        assert_eq!(find(&r80, "straight_line").status, LoopStatus::NoFfmaLoop);
        let refused = find(&r80, "nested_tie");
        assert_eq!(refused.status, LoopStatus::Refused);
        assert!(refused.note.as_deref().unwrap().contains("ambiguous"));

        let table = table("sm_80", &r80, None, &|_| None);
        assert!(
            table.contains("static count; bound = static model, A100"),
            "{table}"
        );
        assert!(table.contains("no FFMA loop"), "{table}");
        assert!(table.contains("refused: ambiguous"), "{table}");
        assert!(
            table.contains("versioned_loops: also 1 other copy of the main loop"),
            "{table}"
        );
        assert!(
            table.contains("0x70..0xe0 (8 instr, density 0.250)"),
            "{table}"
        );
        assert!(
            table.contains("8×64b") && table.contains("2×LDG.128"),
            "{table}"
        );
    }

    #[test]
    fn ratio_to_the_anchor_of_the_same_layout_and_arch() {
        let mut r = rows("sm_80");
        r.retain(|r| r.kernel == "flat_stage");
        r[0].kernel = "my_gemm".into();
        // The caller says which cuBLAS layout its kernel computes.
        let layout = |k: &str| (k == "my_gemm").then_some("tn");
        let mut anchor = r[0].clone();
        anchor.kernel = "ampere_sgemm_128x128_tn".into();
        anchor.ffma_density = Some(0.94117647);
        let anchors = Anchors {
            archs: BTreeMap::from([(
                "sm_80".to_string(),
                vec![Anchor {
                    layout: "tn".into(),
                    label: "ampere_sgemm_128x128_tn".into(),
                    row: anchor,
                }],
            )]),
        };
        let json = serde_json::to_string(&anchors).unwrap();
        assert_eq!(serde_json::from_str::<Anchors>(&json).unwrap(), anchors);
        let t = table("sm_80", &r, Some(&anchors), &layout);
        // 0.4706 / 0.9412 = 0.50.
        assert!(t.contains("0.50× ampere_sgemm_128x128_tn (0.941)"), "{t}");
        // No anchor on sm_90: no ratio.
        assert!(!table("sm_90", &r, Some(&anchors), &layout).contains("ampere_sgemm"));
    }

    #[test]
    fn gate_fails_on_a_density_drop_beyond_tolerance_or_a_lost_loop() {
        let base = BTreeMap::from([("sm_80".to_string(), rows("sm_80"))]);
        let (lines, failures) = compare(&base, &base);
        assert!(
            lines.is_empty() && failures.is_empty(),
            "{lines:?} {failures:?}"
        );

        let mut now = base.clone();
        let flat = now
            .get_mut("sm_80")
            .unwrap()
            .iter_mut()
            .find(|r| r.kernel == "flat_stage")
            .unwrap();
        let old = flat.ffma_density.unwrap();
        flat.ffma_density = Some(old - 0.019);
        let (lines, failures) = compare(&base, &now);
        assert!(failures.is_empty(), "within tolerance: {failures:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("FFMA density 0.471 -> 0.452"),
            "{lines:?}"
        );

        let flat = now
            .get_mut("sm_80")
            .unwrap()
            .iter_mut()
            .find(|r| r.kernel == "flat_stage")
            .unwrap();
        flat.ffma_density = Some(old - 0.021);
        let (_, failures) = compare(&base, &now);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("[sm_80] flat_stage: FFMA density dropped"));

        let lost = now
            .get_mut("sm_80")
            .unwrap()
            .iter_mut()
            .find(|r| r.kernel == "nested_stage")
            .unwrap();
        lost.ffma_density = None;
        lost.main_loop = None;
        lost.status = LoopStatus::Refused;
        lost.note = Some("ambiguous main loop".into());
        let (_, failures) = compare(&base, &now);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[1].contains("nested_stage") && failures[1].contains("ambiguous"));

        // A new kernel and a vanished one are reported, not failed.
        let mut renamed = base.clone();
        renamed.get_mut("sm_80").unwrap()[0].kernel = "flat_stage_v2".into();
        let (lines, failures) = compare(&base, &renamed);
        assert!(failures.is_empty());
        assert!(
            lines
                .iter()
                .any(|l| l.contains("flat_stage_v2: new kernel"))
        );
        assert!(lines.iter().any(|l| l.contains("flat_stage: gone")));
    }
}
