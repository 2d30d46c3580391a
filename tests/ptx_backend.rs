//! The `ptx` backend on the real PTX module: the demo kernels' results and warp-level
//! memory statistics against values computed by hand, and planted defects (a removed
//! `bar.sync`, a changed constant, an ABI mismatch) that must each fail.
//!
//! Needs the nightly toolchain with rust-src to build the PTX (`scripts/setup-ptx-tools`);
//! without it each test prints why it skipped and checks nothing (with
//! `LSOFTMAX_REQUIRE_PTX=1`, as in CI, it fails instead).

use lsoftmax::backend::abi::{self, Arg, View};
use lsoftmax::backend::{Backend, KernelChoice, KernelVariant, PtxBackend, SplitK};
use lsoftmax::ptxsim::Space;
use lsoftmax::ptxsim::{Geometry, KernelStats, SimOptions, Simulator, parse_module};
use lsoftmax::reference::agreement::{self, Problem};
use lsoftmax::{Margin, Mode};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The PTX module the CUDA backend embeds, or `None` (after saying why) without nightly.
fn module_text() -> Option<String> {
    static TEXT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let r = TEXT.get_or_init(|| {
        let arch = lsoftmax::ptx_tools::compile::embedded_arch();
        match lsoftmax::ptx_tools::build(&arch, true) {
            Ok(o) => Ok(o.text),
            // Only a missing toolchain skips (unless LSOFTMAX_REQUIRE_PTX=1, as in CI).
            Err(e @ lsoftmax::ptx_tools::Error::Toolchain { .. })
                if std::env::var_os("LSOFTMAX_REQUIRE_PTX").is_none() =>
            {
                Err(e.to_string())
            }
            Err(e) => panic!("the PTX does not build: {e}"),
        }
    });
    match r {
        Ok(t) => Some(t.clone()),
        Err(e) => {
            eprintln!("skipped: cannot build the PTX ({e}); run scripts/setup-ptx-tools");
            None
        }
    }
}

fn sim_of(text: &str) -> Simulator {
    Simulator::new(parse_module(text).expect("PTX parses")).expect("PTX loads")
}

fn params(sim: &Simulator, kernel: &str, args: &[Arg]) -> Vec<u8> {
    let entry = sim.module().kernel(kernel).expect("kernel in PTX");
    abi::pack(kernel, args, &entry.params).expect("ABI").bytes
}

fn u32_arg(v: u32) -> Arg {
    Arg {
        name: "u32",
        bytes: v.to_le_bytes().to_vec(),
        align: 4,
    }
}

fn stats_opts() -> SimOptions {
    SimOptions {
        stats: true,
        ..SimOptions::default()
    }
}

/// (requests, sectors or wavefronts, ideal wavefronts) summed over the kernel's
/// instructions that accessed `space`, loads or stores as selected by `opcode_has`.
fn totals(
    sim: &Simulator,
    kernel: &str,
    s: &KernelStats,
    space: Space,
    opcode_has: &str,
) -> (u64, u64, u64) {
    let k = sim.module().kernel(kernel).unwrap();
    let mut t = (0, 0, 0);
    for (pc, i) in s.per_inst.iter().enumerate() {
        if i.space == Some(space) && k.opcodes[pc].starts_with(opcode_has) {
            t.0 += i.requests;
            t.1 += if space == Space::Shared {
                i.wavefronts
            } else {
                i.sectors
            };
            t.2 += i.ideal_wavefronts;
        }
    }
    t
}

fn run_vector_add(sim: &mut Simulator, n: u32, stride: Option<u32>) -> (Vec<f32>, KernelStats) {
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..n).map(|i| 0.5 * i as f32).collect();
    let va = View {
        addr: sim.memory.alloc_f32("a", &a),
        len: n.into(),
    };
    let vb = View {
        addr: sim.memory.alloc_f32("b", &b),
        len: n.into(),
    };
    let out = View {
        addr: sim.memory.alloc_f32("out", &vec![-1.0; n as usize]),
        len: n.into(),
    };
    let mut args = vec![
        Arg::view("a", va),
        Arg::view("b", vb),
        Arg::view("out", out),
        u32_arg(n),
    ];
    let kernel = match stride {
        Some(s) => {
            args.push(u32_arg(s));
            "vector_add_strided"
        }
        None => "vector_add",
    };
    let p = params(sim, kernel, &args);
    let geometry = Geometry {
        grid: (n / 128, 1, 1),
        block: (128, 1, 1),
        shared_bytes: 0,
    };
    let report = sim
        .launch(kernel, geometry, &p, &stats_opts())
        .expect("launch");
    let got = sim.memory.read_f32(out.addr, n as usize).unwrap();
    let s = stride.unwrap_or(1) as usize;
    for (i, v) in got.iter().enumerate() {
        let want = if i % s == 0 { 1.5 * i as f32 } else { -1.0 };
        assert_eq!(*v, want, "{kernel} element {i}");
    }
    (got, report.stats.unwrap())
}

#[test]
fn vector_add_sectors_per_request_match_hand_counts() {
    let Some(text) = module_text() else { return };
    let mut sim = sim_of(&text);
    let n = 4096;
    // Coalesced: 128 warps, each load/store instruction one request of 32 consecutive
    // floats = 128 bytes = 4 sectors.
    let (_, s) = run_vector_add(&mut sim, n, None);
    assert_eq!(
        totals(&sim, "vector_add", &s, Space::Global, "ld"),
        (2 * 128, 2 * 128 * 4, 0)
    );
    assert_eq!(
        totals(&sim, "vector_add", &s, Space::Global, "st"),
        (128, 128 * 4, 0)
    );
    // Stride 2: 2048 active threads = 64 warps, each spanning 256 bytes = 8 sectors.
    let (_, s) = run_vector_add(&mut sim, n, Some(2));
    let k = "vector_add_strided";
    assert_eq!(
        totals(&sim, k, &s, Space::Global, "ld"),
        (2 * 64, 2 * 64 * 8, 0)
    );
    assert_eq!(totals(&sim, k, &s, Space::Global, "st"), (64, 64 * 8, 0));
    // Stride 8: lanes 32 bytes apart, one sector each: 16 warps, 32 sectors per request.
    let (_, s) = run_vector_add(&mut sim, n, Some(8));
    assert_eq!(
        totals(&sim, k, &s, Space::Global, "ld"),
        (2 * 16, 2 * 16 * 32, 0)
    );
}

fn run_transpose(
    sim: &mut Simulator,
    kernel: &str,
    rows: u32,
    cols: u32,
    shared: u32,
) -> Result<KernelStats, String> {
    let input: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let vi = View {
        addr: sim.memory.alloc_f32("input", &input),
        len: input.len() as u64,
    };
    let vo = View {
        addr: sim.memory.alloc_f32("output", &vec![0.0; input.len()]),
        len: input.len() as u64,
    };
    let p = params(
        sim,
        kernel,
        &[
            Arg::view("input", vi),
            Arg::view("output", vo),
            u32_arg(rows),
            u32_arg(cols),
        ],
    );
    let geometry = Geometry {
        grid: (cols.div_ceil(32), rows.div_ceil(32), 1),
        block: (32, 8, 1),
        shared_bytes: shared,
    };
    let report = sim
        .launch(kernel, geometry, &p, &stats_opts())
        .map_err(|e| e.to_string())?;
    let out = sim.memory.read_f32(vo.addr, input.len()).unwrap();
    for r in 0..rows {
        for c in 0..cols {
            let (got, want) = (out[(c * rows + r) as usize], input[(r * cols + c) as usize]);
            if got != want {
                return Err(format!("{kernel}: output[{c}][{r}] = {got}, want {want}"));
            }
        }
    }
    Ok(report.stats.unwrap())
}

#[test]
fn transpose_bank_conflicts_match_hand_counts() {
    let Some(text) = module_text() else { return };
    let mut sim = sim_of(&text);
    let shared = 32 * 33 * 4;
    // 64×64: 4 blocks of 8 warps, each warp stores 4 tile rows and loads 4 tile columns.
    let requests = 4 * 8 * 4;
    let s = run_transpose(&mut sim, "transpose", 64, 64, shared).unwrap();
    // Padded pitch 33: a column read hits banks (33·tx + c) mod 32, all different.
    assert_eq!(
        totals(&sim, "transpose", &s, Space::Shared, "ld"),
        (requests, requests, requests)
    );
    assert_eq!(
        totals(&sim, "transpose", &s, Space::Shared, "st"),
        (requests, requests, requests)
    );
    // Global side: rows of 32 floats, 4 sectors per request.
    assert_eq!(
        totals(&sim, "transpose", &s, Space::Global, "ld"),
        (requests, 4 * requests, 0)
    );
    assert_eq!(
        totals(&sim, "transpose", &s, Space::Global, "st"),
        (requests, 4 * requests, 0)
    );
    // Naive pitch 32: a column read hits one bank with 32 different words.
    let s = run_transpose(&mut sim, "transpose_naive", 64, 64, shared).unwrap();
    assert_eq!(
        totals(&sim, "transpose_naive", &s, Space::Shared, "ld"),
        (requests, 32 * requests, requests)
    );
    assert_eq!(
        totals(&sim, "transpose_naive", &s, Space::Shared, "st"),
        (requests, requests, requests)
    );
}

#[test]
fn sanitizer_checks_name_kernel_thread_line_and_address() {
    let Some(text) = module_text() else { return };
    let mut sim = sim_of(&text);
    // Shared memory one row short of the tile.
    let e = run_transpose(&mut sim, "transpose", 64, 64, 31 * 33 * 4).unwrap_err();
    assert!(
        e.contains("out-of-bounds shared") && e.contains("PTX line") && e.contains(".rs:"),
        "{e}"
    );
    // A vector_add whose n exceeds its buffers.
    let a = View {
        addr: sim.memory.alloc_f32("a", &[1.0; 100]),
        len: 100,
    };
    let p = params(
        &sim,
        "vector_add",
        &[
            Arg::view("a", a),
            Arg::view("b", a),
            Arg::view("out", a),
            u32_arg(128),
        ],
    );
    let g = Geometry {
        grid: (1, 1, 1),
        block: (128, 1, 1),
        shared_bytes: 0,
    };
    let e = sim
        .launch("vector_add", g, &p, &SimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("out-of-bounds global read") && e.contains("`a` (400 bytes)"),
        "{e}"
    );
    assert!(
        e.contains("thread (100, 0, 0)") && e.contains("PTX line") && e.contains(".rs:"),
        "{e}"
    );
}

fn random_problem(
    n: usize,
    d: usize,
    c: usize,
    seed: u64,
) -> (Array2<f32>, Array2<f32>, Vec<usize>, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u = |r, k| Array2::from_shape_simple_fn((r, k), || rng.random_range(-1.0f32..1.0));
    let (x, w, g) = (u(n, d), u(c, d), u(n, c));
    let labels = (0..n).map(|i| (i * 7) % c).collect();
    (x, w, labels, g)
}

/// `Ok` if the backend agrees with the reference on a two-tile L-Softmax problem.
fn agrees(backend: &dyn Backend) -> Result<(), String> {
    let (x, w, labels, g) = random_problem(70, 40, 72, 7);
    let problem = Problem {
        x: x.view(),
        w: w.view(),
        labels: &labels,
        dout: g.view(),
        margin: Margin::lsoftmax(3, 1.0).unwrap(),
        mode: Mode::Train,
    };
    let a = agreement::check_backend(backend, &problem).map_err(|e| e.to_string())?;
    match a.violation() {
        None => Ok(()),
        Some(v) => Err(v.to_string()),
    }
}

/// The text of `kernel`'s `.entry` in `ptx` with `edit` applied to it only.
fn edit_entry(ptx: &str, kernel: &str, edit: impl Fn(&str) -> String) -> String {
    let start = ptx.find(&format!(".entry {kernel}(")).expect("entry");
    let end = start + ptx[start..].find("\n}\n").expect("entry end");
    let edited = edit(&ptx[start..end]);
    assert_ne!(edited, ptx[start..end], "the planted edit changed nothing");
    format!("{}{}{}", &ptx[..start], edited, &ptx[end..])
}

/// The base variant (the kernels the planted edits below are written against).
fn base() -> KernelChoice {
    KernelChoice {
        variant: KernelVariant::Base,
        split_k: SplitK::Off,
    }
}

#[test]
fn the_unmodified_module_agrees() {
    let Some(text) = module_text() else { return };
    let b = PtxBackend::from_ptx(&text, "built").unwrap();
    agrees(&b).unwrap();
    assert!(b.instructions_executed() > 1_000_000);
}

#[test]
fn planted_removed_barrier_fails() {
    let Some(text) = module_text() else { return };
    // The default variant's three GEMM kernels, and the base ones.
    let mut cases: Vec<(&str, KernelChoice)> = Vec::new();
    for variant in [KernelChoice::default().variant, KernelVariant::Base] {
        let choice = KernelChoice {
            variant,
            split_k: SplitK::Off,
        };
        cases.extend(variant.entries().into_iter().map(|k| (k, choice)));
    }
    for (kernel, choice) in cases {
        // Remove the first `bar.sync` of the kernel.
        let planted = edit_entry(&text, kernel, |e| e.replacen("bar.sync \t0;", "", 1));
        let b = PtxBackend::from_ptx(&planted, "planted")
            .unwrap()
            .with_kernels(choice);
        let e = agrees(&b).expect_err(kernel);
        assert!(
            e.contains("race") || e.contains("differ") || e.contains("exceeds"),
            "{kernel}: {e}"
        );
    }
    let planted = edit_entry(&text, "transpose", |e| e.replacen("bar.sync \t0;", "", 1));
    let mut sim = sim_of(&planted);
    let e = run_transpose(&mut sim, "transpose", 64, 64, 32 * 33 * 4).unwrap_err();
    assert!(e.contains("shared-memory race"), "{e}");
}

#[test]
fn planted_changed_constant_fails() {
    let Some(text) = module_text() else { return };
    // The offset of the B stage in shared memory (TILE_K · SHARED_STRIDE · 4 = 4224 bytes)
    // moved by one float in the forward kernel's loads: wrong products, no fault.
    let planted = edit_entry(&text, "margin_forward", |e| {
        e.lines()
            .map(|l| {
                if l.contains("ld.shared") {
                    l.replace("+4224]", "+4228]")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let b = PtxBackend::from_ptx(&planted, "planted")
        .unwrap()
        .with_kernels(base());
    let e = agrees(&b).unwrap_err();
    assert!(!e.contains("race"), "{e}");
}

#[test]
fn planted_abi_mismatches_fail() {
    let Some(text) = module_text() else { return };
    // The PTX declares a parameter struct 4 bytes smaller than the one the host packs.
    let size = std::mem::size_of::<lsoftmax::kernels::params::ForwardParams>();
    let planted = edit_entry(&text, "margin_forward", |e| {
        e.replace(
            &format!("margin_forward_param_0[{size}]"),
            &format!("margin_forward_param_0[{}]", size - 4),
        )
    });
    let b = PtxBackend::from_ptx(&planted, "planted")
        .unwrap()
        .with_kernels(base());
    let e = agrees(&b).unwrap_err();
    assert!(
        e.contains(&format!("argument 0 (params) is {size} bytes"))
            && e.contains(&format!("{} bytes", size - 4)),
        "{e}"
    );
    // One parameter fewer in the PTX (the last view dropped).
    let planted = edit_entry(&text, "margin_input_grad", |e| {
        e.replace(",\n\t.param .align 8 .b8 margin_input_grad_param_7[16]", "")
    });
    let b = PtxBackend::from_ptx(&planted, "planted");
    let e = match b {
        Ok(b) => agrees(&b.with_kernels(base())).unwrap_err(),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("declares 7 parameters") || e.contains("margin_input_grad_param_7"),
        "{e}"
    );
    // The host swaps two views of equal size (x and w): sizes and alignments match, so
    // only the results (or the bounds checks) can tell.
    let b = PtxBackend::from_ptx(&text, "built").unwrap();
    let (n, d, c) = (70usize, 40usize, 72usize);
    let (x, w, labels, _) = random_problem(n, d, c, 3);
    let plan =
        lsoftmax::backend::launch::forward_plan(n, d, c, Margin::plain(), Mode::Infer).unwrap();
    let mut sim = b.simulator();
    let xs: Vec<f32> = x.iter().copied().collect();
    let ws: Vec<f32> = w.iter().copied().collect();
    let ls: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let view = |addr, len: usize| View {
        addr,
        len: len as u64,
    };
    let views = abi::ForwardViews {
        x: view(sim.memory.alloc_f32("x", &xs), n * d),
        w: view(sim.memory.alloc_f32("w", &ws), c * d),
        labels: view(sim.memory.alloc_u32("labels", &ls), n),
        x_norms: View::EMPTY,
        w_norms: View::EMPTY,
        out: view(sim.memory.alloc("out", vec![0; n * c * 4]), n * c),
        p: view(sim.memory.alloc("p", vec![0; n * 4]), n),
        alpha_scale: view(sim.memory.alloc("alpha", vec![0; n * 4]), n),
        gamma_scale: view(sim.memory.alloc("gamma", vec![0; n * 4]), n),
    };
    let mut args = abi::forward_args(&plan.params, &views).unwrap();
    args.swap(1, 2);
    let res = b.launch(&mut sim, &plan.plan, &args);
    let reference = x.dot(&w.t());
    let got = sim.memory.read_f32(views.out.addr, n * c).unwrap();
    let wrong = got
        .iter()
        .zip(reference.iter())
        .any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(res.is_err() || wrong, "swapped x and w went unnoticed");
}
