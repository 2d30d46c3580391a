//! The CFG, loop finder and stage mix on hand-written listings.

use std::collections::BTreeMap;

use super::cfg::{Loop, build_cfg, natural_loops};
use super::main_loop::*;
use super::{SassFunction, parse_listing};

/// Hand-written listings; the expectations below are counted by hand from them.
const FIXTURES: &str = include_str!("fixtures/loops.sass");

fn function(name: &str) -> SassFunction {
    parse_listing(FIXTURES)
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

fn main_loop(name: &str) -> MainLoop {
    match analyse(&function(name)) {
        Verdict::Main(m) => m,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn cfg_and_loops_of_a_nested_kernel() {
    let f = function("nested_stage");
    let cfg = build_cfg(&f.instructions);
    assert!(!cfg.has_indirect_branch);
    let loops = natural_loops(&cfg);
    // The stage loop and the inner loop; the `BRA self` spin after EXIT is unreachable
    // and not a loop.
    assert_eq!(loops.len(), 2, "{loops:?}");
    assert_eq!(loops[0].parent, None);
    assert_eq!(loops[1].parent, Some(0));
    assert!(loops[1].blocks.is_subset(&loops[0].blocks));
    let header = |l: &Loop| f.instructions[cfg.blocks[l.header].start].address;
    assert_eq!((header(&loops[0]), header(&loops[1])), (0x50, 0xe0));
}

#[test]
fn flat_stage_loop_is_one_stage_per_iteration() {
    let m = main_loop("flat_stage");
    assert_eq!(m.loop_span, (0x40, 0x250));
    assert_eq!(m.stage_span, m.loop_span);
    assert_eq!(
        (
            m.ffma_per_iteration,
            m.accumulators,
            m.k_steps_per_iteration,
            m.iterations_per_stage,
            m.k_steps_per_stage
        ),
        (16, 4, 4, 1, 4)
    );
    let s = &m.stage;
    assert_eq!((s.instructions, s.ffma, s.barriers), (34, 16, 2));
    assert_eq!(s.shared_loads, BTreeMap::from([(64, 8)]));
    assert_eq!(s.shared_stores, BTreeMap::from([(128, 2)]));
    assert_eq!(s.global_loads, BTreeMap::from([("LDG.128".to_string(), 2)]));
    assert_eq!(s.shared_load_bytes(), 64);
    assert_eq!(s.ffma_per_shared_byte(), Some(0.25));
    assert_eq!(s.ffma_per_shared_load(), Some(2.0));
    assert_eq!(s.local_loads + s.local_stores, 0);
}

#[test]
fn nested_loop_counts_the_inner_loop_trip_times() {
    let m = main_loop("nested_stage");
    assert_eq!(m.loop_span, (0xe0, 0x240));
    assert_eq!(m.stage_span, (0x50, 0x260));
    // 8 FFMA, 4 chain heads (the renamed R20 → R12 chain counts once): 2 k-steps per
    // iteration; the exit compares against 8: 4 iterations per stage.
    assert_eq!(
        (
            m.ffma_per_iteration,
            m.accumulators,
            m.k_steps_per_iteration,
            m.iterations_per_stage,
            m.k_steps_per_stage
        ),
        (8, 4, 2, 4, 8)
    );
    // The bounds-check compare in the inner loop (against a parameter) does not decide
    // the exit and does not disturb the trip count.
    // 11 stage-loop instructions (both sides of the prefetch branch) + 4 × 23.
    let s = &m.stage;
    assert_eq!((s.instructions, s.ffma, s.barriers), (103, 32, 2));
    assert_eq!(s.shared_loads, BTreeMap::from([(32, 32)]));
    assert_eq!(s.shared_stores, BTreeMap::from([(32, 2)]));
    assert_eq!(s.global_loads, BTreeMap::from([("LD.32".to_string(), 2)]));
    assert!((s.ffma_density() - 32.0 / 103.0).abs() < 1e-12);
}

#[test]
fn partially_unrolled_loop_beats_its_remainder() {
    let m = main_loop("unrolled_with_remainder");
    assert_eq!(m.loop_span, (0x50, 0x180));
    assert_eq!(
        m.stage_span, m.loop_span,
        "no barrier: one iteration is the stage"
    );
    assert_eq!(
        (m.ffma_per_iteration, m.accumulators, m.k_steps_per_stage),
        (8, 2, 4)
    );
    let s = &m.stage;
    assert_eq!((s.instructions, s.ffma, s.barriers), (20, 8, 0));
    assert_eq!(
        s.global_loads,
        BTreeMap::from([("LDG.32".to_string(), 4), ("LDG.64".to_string(), 4)])
    );
    assert!(s.shared_loads.is_empty() && s.ffma_per_shared_byte().is_none());
}

#[test]
fn versioned_loops_report_the_densest_copy_and_list_the_other() {
    // Two sibling copies of a 2-FFMA loop; the second has a bounds check (8
    // instructions instead of 6), like the edge-tile copy ptxas makes.
    let m = main_loop("versioned_loops");
    assert_eq!(m.loop_span, (0x10, 0x60));
    assert_eq!((m.stage.instructions, m.stage.ffma), (6, 2));
    assert_eq!(
        m.other_versions,
        [LoopVersion {
            loop_span: (0x70, 0xe0),
            instructions: 8,
            ffma_density: 0.25
        }]
    );
}

#[test]
fn refuses_ambiguous_and_dynamic_loops_with_the_reason() {
    let Verdict::Refused(m) = analyse(&function("nested_tie")) else {
        panic!("nested loops with equal own FFMA must be refused");
    };
    assert!(m.contains("ambiguous"), "{m}");
    assert!(m.contains("0x10..0xa0") && m.contains("0x30..0x70"), "{m}");

    let Verdict::Refused(m) = analyse(&function("nested_dynamic_trip")) else {
        panic!("a trip count read from a parameter must be refused");
    };
    assert!(
        m.contains("0xe0..0x240") && m.contains("0x50..0x260"),
        "{m}"
    );
    assert!(
        m.contains("1 compare(s) against a register or parameter"),
        "{m}"
    );
    assert!(m.contains("not static"), "{m}");
}

#[test]
fn kernels_without_an_ffma_loop_are_reported_as_such() {
    assert_eq!(analyse(&function("straight_line")), Verdict::NoFfmaLoop);
    let empty = SassFunction::default();
    assert_eq!(analyse(&empty), Verdict::NoFfmaLoop);
}

#[test]
fn predicates_are_named() {
    assert_eq!(predicate("!UP0"), Some("UP0"));
    assert_eq!(predicate("P3"), Some("P3"));
    for not in ["PT", "UPT", "R3", "0x10", "P"] {
        assert_eq!(predicate(not), None, "{not}");
    }
}

#[test]
fn operands_name_registers_only() {
    assert_eq!(register("R44.reuse"), Some("R44"));
    assert_eq!(register("-R3"), Some("R3"));
    assert_eq!(register("|R7|"), Some("R7"));
    for not in ["RZ", "R", "0x10", "c[0x0][0x160]", "UR4", "P0", "[R2.64]"] {
        assert_eq!(register(not), None, "{not}");
    }
}
