//! The resource report (what `lsoftmax ptx` prints): one row per kernel entry and architecture
//! (ptxas's numbers plus the launch shape and theoretical occupancy), its JSON form, and
//! the comparison with a saved report, so a kernel edit shows what it cost.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::occupancy::{self, Occupancy};
use super::ptxas::PtxasReport;
use super::sass::report::SassRow;

/// One kernel on one architecture.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelRow {
    /// PTX entry name.
    pub kernel: String,
    /// Registers per thread (ptxas).
    pub registers: u32,
    /// Bytes spilled to local memory (ptxas).
    pub spill_stores: u64,
    /// Bytes of spills loaded back (ptxas).
    pub spill_loads: u64,
    /// Static shared memory per block, bytes (ptxas `smem`).
    pub static_shared: u64,
    /// Stack frame per thread, bytes (ptxas).
    pub stack: u64,
    /// Threads per block of the crate's launches (`None`: not launched by the crate's plans).
    pub threads_per_block: Option<u32>,
    /// Dynamic shared memory per block of those launches, bytes.
    pub dynamic_shared: Option<u32>,
    /// Theoretical occupancy (`None`: launch shape or architecture limits unknown).
    pub occupancy: Option<Occupancy>,
}

/// A whole report: rows per architecture, in the order the entries appear in the PTX.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceReport {
    /// `sm_XY` → rows.
    pub archs: BTreeMap<String, Vec<KernelRow>>,
    /// `sm_XY` → SASS rows (`lsoftmax ptx --sass`); absent from reports saved without it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sass: BTreeMap<String, Vec<SassRow>>,
}

/// Rows for `entries` (PTX order) from one ptxas run for `arch`; entries ptxas did not
/// report are left out (the gate reports them). `block_shape` gives a kernel's launch
/// shape, `(threads per block, dynamic shared bytes)`, as the caller's launch plans use
/// it (`None`: the caller does not launch it, so no occupancy).
pub fn rows(
    arch: &str,
    report: &PtxasReport,
    entries: &[String],
    block_shape: impl Fn(&str) -> Option<(u32, u32)>,
) -> Vec<KernelRow> {
    let limits = occupancy::limits(arch);
    entries
        .iter()
        .filter_map(|name| report.function(name))
        .map(|f| {
            let shape = block_shape(&f.name);
            let occupancy = match (shape, limits) {
                (Some((threads, dynamic)), Some(l)) => {
                    let shared = u32::try_from(f.shared_bytes)
                        .unwrap_or(u32::MAX)
                        .saturating_add(dynamic);
                    Some(occupancy::occupancy(&l, f.registers, threads, shared))
                }
                _ => None,
            };
            KernelRow {
                kernel: f.name.clone(),
                registers: f.registers,
                spill_stores: f.spill_stores,
                spill_loads: f.spill_loads,
                static_shared: f.shared_bytes,
                stack: f.stack_frame,
                threads_per_block: shape.map(|s| s.0),
                dynamic_shared: shape.map(|s| s.1),
                occupancy,
            }
        })
        .collect()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn occupancy_cell(o: Option<&Occupancy>) -> String {
    o.map_or_else(
        || "-".to_string(),
        |o| {
            format!(
                "{} ({:.1}%, {})",
                o.blocks_per_sm,
                100.0 * o.fraction,
                o.limiter
            )
        },
    )
}

/// The table printed for one architecture.
pub fn table(arch: &str, rows: &[KernelRow]) -> String {
    let width = rows
        .iter()
        .map(|r| r.kernel.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = String::new();
    let _ = writeln!(s, "\n{arch}");
    let _ = writeln!(
        s,
        "  {:<width$}  {:>4}  {:>9}  {:>8}  {:>7}  {:>5}  {:>7}  {:>8}  blocks/SM (occupancy, limited by)",
        "kernel", "regs", "spill st", "spill ld", "smem(B)", "stack", "threads", "dyn smem",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "  {:<width$}  {:>4}  {:>9}  {:>8}  {:>7}  {:>5}  {:>7}  {:>8}  {}",
            r.kernel,
            r.registers,
            r.spill_stores,
            r.spill_loads,
            r.static_shared,
            r.stack,
            opt(r.threads_per_block),
            opt(r.dynamic_shared),
            occupancy_cell(r.occupancy.as_ref())
        );
    }
    s
}

/// Lines describing what changed from `baseline` to `current`, per architecture and
/// kernel present in both; plus kernels that appeared or disappeared.
pub fn compare(baseline: &ResourceReport, current: &ResourceReport) -> Vec<String> {
    let mut lines = Vec::new();
    for (arch, now) in &current.archs {
        let Some(before) = baseline.archs.get(arch) else {
            lines.push(format!("{arch}: not in the baseline"));
            continue;
        };
        for r in now {
            let Some(b) = before.iter().find(|b| b.kernel == r.kernel) else {
                lines.push(format!("{arch} {}: new kernel", r.kernel));
                continue;
            };
            let mut changes = Vec::new();
            let mut num = |what: &str, old: u64, new: u64| {
                if old != new {
                    changes.push(format!(
                        "{what} {old} -> {new} ({:+})",
                        new as i64 - old as i64
                    ));
                }
            };
            num("registers", b.registers.into(), r.registers.into());
            num("spill stores", b.spill_stores, r.spill_stores);
            num("spill loads", b.spill_loads, r.spill_loads);
            num("static smem", b.static_shared, r.static_shared);
            num("stack", b.stack, r.stack);
            if b.occupancy.map(|o| o.blocks_per_sm) != r.occupancy.map(|o| o.blocks_per_sm) {
                changes.push(format!(
                    "blocks/SM {} -> {}",
                    occupancy_cell(b.occupancy.as_ref()),
                    occupancy_cell(r.occupancy.as_ref())
                ));
            }
            if !changes.is_empty() {
                lines.push(format!("{arch} {}: {}", r.kernel, changes.join(", ")));
            }
        }
        for b in before {
            if !now.iter().any(|r| r.kernel == b.kernel) {
                lines.push(format!("{arch} {}: gone", b.kernel));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptxas::parse_verbose;

    const PTXAS: &str = "\
ptxas info    : Compiling entry function 'margin_forward' for 'sm_80'
ptxas info    : Function properties for margin_forward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 76 registers, used 1 barriers, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'vector_add' for 'sm_80'
ptxas info    : Function properties for vector_add
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, 384 bytes cmem[0]
";

    fn entries() -> Vec<String> {
        vec!["vector_add".into(), "margin_forward".into()]
    }

    /// The launch shape a caller would give: `margin_forward` as the margin layer's plans
    /// launch it, `vector_add` not launched.
    fn shape(kernel: &str) -> Option<(u32, u32)> {
        (kernel == "margin_forward").then_some((256, 8448))
    }

    #[test]
    fn rows_carry_launch_shape_and_occupancy_for_the_crates_kernels() {
        let rows = rows("sm_80", &parse_verbose(PTXAS), &entries(), shape);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kernel, "vector_add");
        assert_eq!(rows[0].occupancy, None);
        let f = &rows[1];
        assert_eq!((f.registers, f.threads_per_block), (76, Some(256)));
        assert_eq!(f.occupancy.map(|o| o.blocks_per_sm), Some(3));
        let t = table("sm_80", &rows);
        assert!(t.contains("3 (37.5%, registers)"), "{t}");
        // An architecture without limits gets no occupancy.
        assert!(rows_for("sm_61")[1].occupancy.is_none());
    }

    fn rows_for(arch: &str) -> Vec<KernelRow> {
        rows(arch, &parse_verbose(PTXAS), &entries(), shape)
    }

    #[test]
    fn comparison_names_every_change_and_round_trips_through_json() {
        let mut base = ResourceReport::default();
        base.archs.insert("sm_80".into(), rows_for("sm_80"));
        let json = serde_json::to_string(&base).unwrap();
        let back: ResourceReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, base);
        assert!(compare(&base, &back).is_empty());

        let mut now = base.clone();
        let rows = now.archs.get_mut("sm_80").unwrap();
        rows[1].registers = 96;
        rows[1].occupancy = rows[1]
            .occupancy
            .map(|_| occupancy::occupancy(&occupancy::limits("sm_80").unwrap(), 96, 256, 8448));
        rows.remove(0);
        let lines = compare(&base, &now);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("margin_forward: registers 76 -> 96 (+20)"),
            "{lines:?}"
        );
        assert!(lines[0].contains("blocks/SM 3 (37.5%, registers) -> 2 (25.0%, registers)"));
        assert_eq!(lines[1], "sm_80 vector_add: gone");
    }
}
