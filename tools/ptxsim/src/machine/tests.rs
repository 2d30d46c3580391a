//! Interpreter tests: arithmetic, conversions, and every check naming where it fired.

use super::*;
use crate::parse_module;

/// A module with one kernel `k(u64 out, u32 n)` whose body is `body`.
fn module(body: &str) -> Simulator {
    let ptx = format!(
        ".version 7.0\n.target sm_70\n.address_size 64\n\
         .extern .shared .align 4 .b8 smem[];\n\
         .visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u32 k_param_1\n)\n{{\n\
         \t.reg .pred %p<4>;\n\t.reg .b32 %r<16>;\n\t.reg .b64 %rd<8>;\n\
         \t.loc 1 7 0\n\
         \tld.param.u64 %rd1, [k_param_0];\n\tld.param.u32 %r1, [k_param_1];\n\
         \tmov.u32 %r2, %tid.x;\n\tmul.wide.u32 %rd2, %r2, 4;\n\tadd.s64 %rd3, %rd1, %rd2;\n\
         {body}\n\tret;\n}}\n\t.file 1 \"/w/kernels-gpu/src/t.rs\"\n"
    );
    Simulator::new(parse_module(&ptx).unwrap()).unwrap()
}

#[allow(clippy::result_large_err)]
fn run(sim: &mut Simulator, threads: u32, shared: u32, n: u32) -> Result<Vec<u32>, SimError> {
    let out = sim.memory.alloc("out", vec![0; 4 * threads as usize]);
    let mut params = out.to_le_bytes().to_vec();
    params.extend_from_slice(&n.to_le_bytes());
    params.extend_from_slice(&[0; 4]);
    let g = Geometry {
        grid: (1, 1, 1),
        block: (threads, 1, 1),
        shared_bytes: shared,
    };
    let opts = SimOptions {
        max_steps_per_thread: 10_000,
        stats: false,
    };
    sim.launch("k", g, &params[..12], &opts)?;
    let b = sim.memory.read(out, 4 * threads as usize).unwrap();
    Ok(b.chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[test]
fn float_arithmetic_rounds_like_ieee_and_fma_is_fused() {
    // a = 1 + 2^-23, a·a - (1 + 2^-22) is 2^-46 only if the product is not rounded.
    let mut sim = module(
        "\tmov.b32 %r3, 0f34000000;\n\tadd.rn.f32 %r4, %r3, 0f3F800000;\n\
         \tmul.rn.f32 %r5, %r4, %r4;\n\tfma.rn.f32 %r6, %r4, %r4, 0fBF800002;\n\
         \tsetp.eq.u32 %p1, %r2, 0;\n\tselp.b32 %r7, %r6, %r5, %p1;\n\
         \tst.global.u32 [%rd3], %r7;",
    );
    let out = run(&mut sim, 2, 0, 0).unwrap();
    let a = 1.0f32 + f32::EPSILON;
    assert_eq!(
        f32::from_bits(out[0]),
        a.mul_add(a, -(1.0 + 2.0 * f32::EPSILON))
    );
    assert_eq!(f32::from_bits(out[0]), 2.0f32.powi(-46));
    assert_eq!(f32::from_bits(out[1]), a * a);
}

#[test]
fn conversions_saturate_and_round_as_ptx_says() {
    let mut sim = module(
        "\tcvt.rzi.s32.f32 %r3, 0f4F800000;\n\tcvt.rni.s32.f32 %r4, 0f40200000;\n\
         \tcvt.rmi.s32.f32 %r5, 0fBFC00000;\n\tcvt.rzi.u32.f32 %r6, 0f7FC00000;\n\
         \tsetp.eq.u32 %p1, %r2, 0;\n\tsetp.eq.u32 %p2, %r2, 1;\n\tsetp.eq.u32 %p3, %r2, 2;\n\
         \tselp.b32 %r7, %r3, %r6, %p1;\n\tselp.b32 %r7, %r4, %r7, %p2;\n\tselp.b32 %r7, %r5, %r7, %p3;\n\
         \tst.global.u32 [%rd3], %r7;",
    );
    let out = run(&mut sim, 4, 0, 0).unwrap();
    // 2^32 saturates to i32::MAX; 2.5 rounds to even 2; floor(-1.5) = -2; NaN gives 0.
    assert_eq!(out, [i32::MAX as u32, 2, (-2i32) as u32, 0]);
}

#[test]
fn out_of_bounds_global_store_names_thread_line_source_and_buffer() {
    let mut sim = module("\tst.global.u32 [%rd3+4], %r2;");
    let e = run(&mut sim, 4, 0, 0).unwrap_err();
    assert_eq!(e.thread, Some((3, 0, 0)));
    assert_eq!(e.address.map(|a| a & 0xfff), Some(16));
    let text = e.to_string();
    assert!(
        text.contains("out-of-bounds global write") && text.contains("`out` (16 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("PTX line 19") && text.contains("kernels-gpu/src/t.rs:7"),
        "{text}"
    );
}

#[test]
fn shared_races_need_a_barrier_between_write_and_read() {
    // Each thread writes its word, then reads its neighbour's.
    let body = |barrier: &str| {
        format!(
            "\tmul.wide.u32 %rd4, %r2, 4;\n\tst.shared.u32 [%rd4], %r2;\n{barrier}\
             \tadd.s32 %r3, %r2, 1;\n\trem.u32 %r3, %r3, %r1;\n\tmul.wide.u32 %rd5, %r3, 4;\n\
             \tld.shared.u32 %r4, [%rd5];\n\tst.global.u32 [%rd3], %r4;"
        )
    };
    let mut sim = module(&body("\tbar.sync 0;\n"));
    assert_eq!(run(&mut sim, 4, 16, 4).unwrap(), [1, 2, 3, 0]);
    let mut sim = module(&body(""));
    let e = run(&mut sim, 4, 16, 4).unwrap_err().to_string();
    assert!(e.contains("shared-memory race"), "{e}");
    // Three threads' words do not fit 8 bytes of shared memory.
    let mut sim = module(&body("\tbar.sync 0;\n"));
    let e = run(&mut sim, 4, 8, 4).unwrap_err().to_string();
    assert!(
        e.contains("out-of-bounds shared write of 4 bytes at offset 8"),
        "{e}"
    );
}

#[test]
fn divergent_barriers_and_endless_loops_are_reported() {
    let mut sim = module(
        "\tsetp.eq.u32 %p1, %r2, 0;\n\t@%p1 bra $L_skip;\n\tbar.sync 0;\n$L_skip:\n\
         \tst.global.u32 [%rd3], %r2;",
    );
    let e = run(&mut sim, 4, 0, 0).unwrap_err().to_string();
    assert!(
        e.contains("barrier divergence") && e.contains("exited"),
        "{e}"
    );
    let mut sim = module("$L_loop:\n\tbra.uni $L_loop;");
    let e = run(&mut sim, 1, 0, 0).unwrap_err().to_string();
    assert!(e.contains("step limit"), "{e}");
}

#[test]
fn vector_loads_and_cp_async_move_the_right_words() {
    // Thread 0 copies out[0..4] (16 bytes) to shared with cp.async, waits, and reads
    // it back as a v4 into out[0..4] shifted by one lane: out[i] = in[(i+1) % 4].
    let mut sim = module(
        "\tsetp.ne.u32 %p1, %r2, 0;\n\t@%p1 bra $L_end;\n\
         \tmov.u64 %rd4, smem;\n\tcp.async.cg.shared.global [%rd4], [%rd1], 16;\n\
         \tcp.async.commit_group;\n\tcp.async.wait_group 0;\n\
         \tld.shared.v4.u32 {%r3, %r4, %r5, %r6}, [smem];\n\
         \tst.global.v4.u32 [%rd1], {%r4, %r5, %r6, %r3};\n$L_end:",
    );
    let out = sim.memory.alloc(
        "out",
        [7u32, 8, 9, 10]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    );
    let mut params = out.to_le_bytes().to_vec();
    params.extend_from_slice(&0u32.to_le_bytes());
    let g = Geometry {
        grid: (1, 1, 1),
        block: (2, 1, 1),
        shared_bytes: 16,
    };
    sim.launch("k", g, &params, &SimOptions::default()).unwrap();
    let b = sim.memory.read(out, 16).unwrap();
    let got: Vec<u32> = b
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, [8, 9, 10, 7]);
}

#[test]
fn parameter_bytes_must_match_the_entry() {
    let mut sim = module("");
    let g = Geometry {
        grid: (1, 1, 1),
        block: (1, 1, 1),
        shared_bytes: 0,
    };
    let e = sim
        .launch("k", g, &[0; 8], &SimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("8 parameter bytes given, the .entry declares 12"),
        "{e}"
    );
}
