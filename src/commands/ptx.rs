//! `lsoftmax ptx`: the margin kernels' side of the PTX report. The report itself (build,
//! ptxas, gate, SASS, grids, baseline) is [`ptx_tools::check`], which knows no kernel; this
//! module tells it which entries the margin crate must ship, how the layer launches each
//! kernel, which cuBLAS layout each GEMM computes, and the grids of one training problem.
//! `--sim` runs the margin kernels on the PTX interpreter instead ([`super::ptx_sim`]).

use std::io::Write;
use std::path::PathBuf;

use lsoftmax_host::backend::launch::{
    self, InputGradLaunch, KernelChoice, KernelVariant, LADDER_ENTRIES, LaunchPlan,
};
use lsoftmax_host::margin::{Margin, Mode};
use ptx_tools::check::{self, Failure, Grids, KernelSet, Request};

/// Kernel entry points the PTX must contain besides the kernel ladder's
/// ([`LADDER_ENTRIES`]): `lsoftmax ptx --check` fails if one is missing. Append new
/// kernels here.
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

/// `--sim`: run the margin kernels' PTX on the interpreter for one problem.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// Problem `(N, D, C)`.
    pub shape: (usize, usize, usize),
    /// Margin spec of the forward pass (parsed here: a bad spec is bad input).
    pub margin: String,
    /// Report only kernels whose entry name contains one of these (empty: all).
    pub kernels: Vec<String>,
    /// Interpret this PTX file instead of building the kernels.
    pub ptx: Option<PathBuf>,
}

/// Everything `lsoftmax ptx` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The build/report/gate request; `grids` is filled from `shape`.
    pub request: Request,
    /// `--shape N,D,C`: the grids of one training problem.
    pub shape: Option<(usize, usize, usize)>,
    /// `--sim`: run the interpreter instead of building and reporting.
    pub sim: Option<SimRequest>,
}

/// Runs `lsoftmax ptx`, writing the report to `out`: `Ok(true)` if everything passed,
/// `Ok(false)` if the gate failed.
pub fn run(opts: &Options, out: &mut dyn Write) -> Result<bool, Failure> {
    if let Some(sim) = &opts.sim {
        let margin = Margin::parse(&sim.margin).map_err(|e| Failure::BadInput(e.to_string()))?;
        let report = super::ptx_sim::report(sim.shape, margin, &sim.kernels, sim.ptx.as_deref())
            .map_err(host_failure)?;
        let _ = out.write_all(report.as_bytes());
        return Ok(true);
    }
    let mut request = opts.request.clone();
    request.grids = opts.shape.map(|(n, d, c)| Grids {
        problem: format!("N={n} D={d} C={c}"),
        grids: plans_for_shape(n, d, c)
            .map(|plans| {
                plans
                    .iter()
                    .map(|p| (p.kernel.to_string(), p.grid))
                    .collect()
            })
            .map_err(|e| e.to_string()),
    });
    check::run(&request, &margin_kernels(), out)
}

/// The margin crate's kernels as the report needs them.
pub fn margin_kernels() -> KernelSet<'static> {
    KernelSet {
        expected: EXPECTED_ENTRIES
            .iter()
            .chain(LADDER_ENTRIES)
            .copied()
            .collect(),
        expected_note: format!(
            "{} and the {} kernel-ladder entries",
            EXPECTED_ENTRIES.join(", "),
            LADDER_ENTRIES.len()
        ),
        block_shape: &launch::block_shape,
        cublas_layout: &cublas_layout,
    }
}

/// A failure of the layer's crate, by the exit status it calls for.
fn host_failure(e: lsoftmax_host::Error) -> Failure {
    match e {
        lsoftmax_host::Error::Toolchain { .. } => Failure::MissingTool(e.to_string()),
        _ => Failure::Other(e.to_string()),
    }
}

/// The cuBLAS layout whose computation a kernel family matches (row-major `X` N×D, `W`
/// C×D, cuBLAS column-major): forward `F = X·Wᵀ` is `Fᵀ = W·Xᵀ`, i.e. `op(A) = T` on
/// `W`'s column-major view and `op(B) = N` on `X`'s: `tn`; input grad `dX = G'·W` is
/// `dXᵀ = Wᵀ·G'ᵀ`: `nn`; weight grad `dW = G'ᵀ·X` is `dWᵀ = Xᵀ·G'`: `nt`.
pub fn cublas_layout(kernel: &str) -> Option<&'static str> {
    if kernel.starts_with("margin_forward") {
        Some("tn")
    } else if kernel.starts_with("margin_input_grad") {
        Some("nn")
    } else if kernel.starts_with("margin_weight_grad") {
        Some("nt")
    } else {
        None
    }
}

/// The launch plans of the crate's margin kernels for one problem: row norms, then per
/// kernel-ladder variant the forward, input-grad (as `SplitK::Auto` would launch it: the
/// direct kernel, or split-K's partial and reduce kernels) and weight-grad launches. The
/// grids do not depend on the margin or the mode.
pub fn plans_for_shape(n: usize, d: usize, c: usize) -> lsoftmax_host::Result<Vec<LaunchPlan>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ptx_tools::report::{self, ResourceReport};
    use ptx_tools::{occupancy, ptxas};

    #[test]
    fn layouts_pair_by_family_prefix() {
        assert_eq!(cublas_layout("margin_forward"), Some("tn"));
        assert_eq!(cublas_layout("margin_forward_128x128"), Some("tn"));
        assert_eq!(cublas_layout("margin_input_grad_splitk"), Some("nn"));
        assert_eq!(cublas_layout("margin_weight_grad"), Some("nt"));
        assert_eq!(cublas_layout("row_norms"), None);
    }

    #[test]
    fn waves_use_the_launch_plans_and_the_reported_occupancy() {
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
            occupancy: Some(occupancy::Occupancy {
                blocks_per_sm: blocks,
                fraction: 0.0,
                limiter: occupancy::Limiter::Registers,
            }),
        };
        saved
            .archs
            .insert("sm_80".into(), vec![row("margin_input_grad", 3)]);
        // input grad's output is N×D: 4096/64 × 512/64 = 64 × 8 = 512 blocks; A100 holds
        // 108 × 3 = 324 at once → 1.58 waves. No sm_90 rows: H100 has no number.
        let grids: Vec<_> = plans_for_shape(4096, 512, 10000)
            .unwrap()
            .iter()
            .map(|p| (p.kernel.to_string(), p.grid))
            .collect();
        let t = check::waves_table("N=4096 D=512 C=10000", &grids, &saved);
        let line = t.lines().find(|l| l.contains("margin_input_grad")).unwrap();
        assert!(
            line.contains("512 blocks") && line.contains("A100 1.58 waves"),
            "{line}"
        );
        assert!(line.contains("H100 - (no sm_90 occupancy"), "{line}");
        assert!(t.contains("static model"), "{t}");
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
    fn the_gate_requires_the_margin_and_ladder_entries() {
        let k = margin_kernels();
        assert!(k.expected.contains(&kernels_gpu::params::FORWARD_KERNEL));
        assert!(LADDER_ENTRIES.iter().all(|e| k.expected.contains(e)));
        assert!(k.expected_note.contains("kernel-ladder entries"));
    }
}
