//! The main K loop of a GEMM-shaped kernel, found in its SASS, and the instruction mix of
//! one K stage as executed.
//!
//! Steps 1 (control-flow graph) and 2 (natural loops) are in [`super::cfg`].
//!
//! 3. **Main loop `L`.** The loop holding the most FFMA *in its own body* (its blocks minus
//!    those of loops nested in it). Counting the own body picks the innermost loop that
//!    does the arithmetic: an outer stage loop whose FFMA all sit in an inner loop owns
//!    none, and a partially unrolled loop beats its remainder loop. Sibling loops tied
//!    for the most FFMA are versions of one loop (the compiler duplicated it under a
//!    loop-invariant condition, e.g. full tiles without bounds checks and edge tiles with
//!    them): the copy whose stage has the highest FFMA density is reported and the others
//!    are listed. A tie between nested loops is refused as ambiguous; a function whose
//!    loops own no FFMA has no main loop.
//! 4. **Accumulators and k-steps.** An FFMA of `L` is an *accumulator chain head* when its
//!    addend register is not written earlier in `L`'s body (in address order from the
//!    header): the value comes from the previous iteration. Their number `A` is the
//!    thread tile (M×N outputs per thread); `L` runs `F_L / A` k-steps per iteration
//!    (`F_L` = FFMA in `L`); a k-step is one rank-1 update of the thread tile.
//! 5. **Stage loop `S`.** A K stage is what happens between two refills of the shared
//!    tiles, so `S` is the innermost loop containing `L` whose own body (outside `L`) holds
//!    a barrier (`BAR`); if there is none, `S = L`. When `S = L`, one stage is one
//!    iteration of `L`. When `L` is nested in `S`, `L` runs `T` times per stage, where
//!    `T = K / (F_L / A)` and `K` is the one constant that the compares (`ISETP`/`UISETP`
//!    with an immediate) deciding `L`'s exit test (traced back from the guard predicates
//!    of the branches that leave `L` or return to its header): the assumption is that the
//!    loop counter counts k-steps up to the stage depth. No such unique constant (or one
//!    that `F_L / A` does not divide) is refused.
//! 6. **Stage mix.** Every instruction of `S`'s body counted once, those of `L` (and of
//!    loops nested in `L`) `T` times: the steady state, where both sides of a branch
//!    inside the stage count (e.g. the prefetch that the last stage skips). Other loops in
//!    `S` count as one iteration.
//!
//! This is a static count; nothing here ran on a GPU.

use std::collections::{BTreeMap, BTreeSet};

use super::cfg::{Cfg, Loop, build_cfg, natural_loops};
use super::{Instruction, SassFunction};

/// Instruction counts of one K stage (or any region), by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mix {
    /// All instructions.
    pub instructions: u64,
    /// `FFMA`.
    pub ffma: u64,
    /// Shared-memory loads by width in bits (`LDS`).
    pub shared_loads: BTreeMap<u32, u64>,
    /// Shared-memory stores by width in bits (`STS`).
    pub shared_stores: BTreeMap<u32, u64>,
    /// Global loads by kind and width: `LDG.128`, `LD.32` (generic), `LDGSTS.128`.
    pub global_loads: BTreeMap<String, u64>,
    /// Barriers (`BAR`).
    pub barriers: u64,
    /// Local-memory loads (`LDL`).
    pub local_loads: u64,
    /// Local-memory stores (`STL`).
    pub local_stores: u64,
    /// Bytes moved by `LDL` and `STL` per thread.
    pub local_bytes: u64,
}

impl Mix {
    /// Adds `times` executions of `ins`.
    pub fn add(&mut self, ins: &Instruction, times: u64) {
        self.instructions += times;
        let width = ins.width_bits();
        match ins.base() {
            "FFMA" => self.ffma += times,
            "LDS" => *self.shared_loads.entry(width).or_default() += times,
            "STS" => *self.shared_stores.entry(width).or_default() += times,
            kind @ ("LDG" | "LD" | "LDGSTS") => {
                *self
                    .global_loads
                    .entry(format!("{kind}.{width}"))
                    .or_default() += times;
            }
            "BAR" => self.barriers += times,
            "LDL" => {
                self.local_loads += times;
                self.local_bytes += times * u64::from(width / 8);
            }
            "STL" => {
                self.local_stores += times;
                self.local_bytes += times * u64::from(width / 8);
            }
            _ => {}
        }
    }

    /// Shared-memory loads (instructions).
    pub fn shared_load_count(&self) -> u64 {
        self.shared_loads.values().sum()
    }

    /// Shared-memory stores (instructions).
    pub fn shared_store_count(&self) -> u64 {
        self.shared_stores.values().sum()
    }

    /// Bytes one thread loads from shared memory: Σ count × width / 8.
    pub fn shared_load_bytes(&self) -> u64 {
        self.shared_loads
            .iter()
            .map(|(w, n)| n * u64::from(w / 8))
            .sum()
    }

    /// `LDGSTS` (asynchronous global → shared copies), all widths.
    pub fn async_copies(&self) -> u64 {
        self.global_loads
            .iter()
            .filter(|(k, _)| k.starts_with("LDGSTS."))
            .map(|(_, n)| n)
            .sum()
    }

    /// FFMA / instructions.
    pub fn ffma_density(&self) -> f64 {
        ratio(self.ffma, self.instructions)
    }

    /// FFMA per byte loaded from shared memory (per thread).
    pub fn ffma_per_shared_byte(&self) -> Option<f64> {
        let bytes = self.shared_load_bytes();
        (bytes > 0).then(|| self.ffma as f64 / bytes as f64)
    }

    /// FFMA per shared-memory load instruction.
    pub fn ffma_per_shared_load(&self) -> Option<f64> {
        let loads = self.shared_load_count();
        (loads > 0).then(|| self.ffma as f64 / loads as f64)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The main loop of a function and its stage.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MainLoop {
    /// Byte address of `L`'s header and of its last instruction.
    pub loop_span: (u64, u64),
    /// Byte address span of the stage loop `S` (equal to `loop_span` when `S = L`).
    pub stage_span: (u64, u64),
    /// FFMA in one iteration of `L`.
    pub ffma_per_iteration: u64,
    /// Accumulator chain heads in `L` (the thread tile, M×N).
    pub accumulators: u64,
    /// k-steps per iteration of `L` (`ffma_per_iteration / accumulators`).
    pub k_steps_per_iteration: u64,
    /// Iterations of `L` per stage (1 when `S = L`).
    pub iterations_per_stage: u64,
    /// k-steps per stage (the stage depth).
    pub k_steps_per_stage: u64,
    /// One stage as executed.
    pub stage: Mix,
    /// Other copies of the main loop (loop versioning), not reported above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_versions: Vec<LoopVersion>,
}

/// A copy of the main loop that the compiler made under a loop-invariant condition and
/// that the report did not pick (a lower FFMA density).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoopVersion {
    /// Byte address span of the copy.
    pub loop_span: (u64, u64),
    /// Instructions of its stage.
    pub instructions: u64,
    /// Its stage's FFMA density.
    pub ffma_density: f64,
}

/// What the loop finder concluded for one function.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A main loop and its stage.
    Main(MainLoop),
    /// No loop owns an FFMA (row norms, demo kernels): nothing GEMM-shaped to report.
    NoFfmaLoop,
    /// The finder cannot decide; the message says why.
    Refused(String),
}

/// Blocks of `l` minus those of loops nested in it.
fn own_blocks(loops: &[Loop], l: usize) -> BTreeSet<usize> {
    let mut own = loops[l].blocks.clone();
    for (k, other) in loops.iter().enumerate() {
        if k != l && other.parent == Some(l) {
            own.retain(|b| !other.blocks.contains(b));
        }
    }
    own
}

/// Register name of an operand (`R12`, `-R12`, `|R3|`, `R44.reuse`), `None` for
/// anything that is not a general register (`RZ`, immediates, constants).
pub(super) fn register(operand: &str) -> Option<&str> {
    let o = operand
        .trim_start_matches(['-', '|', '!'])
        .trim_end_matches('|');
    let o = o.split('.').next()?;
    (o.starts_with('R') && o != "RZ" && o[1..].chars().all(|c| c.is_ascii_digit()) && o.len() > 1)
        .then_some(o)
}

/// Register numbers an instruction writes: its first operand when that is a register
/// (SASS puts destinations first), widened to consecutive registers for 64- and 128-bit
/// loads and `.WIDE` integer products.
fn destinations(ins: &Instruction) -> std::ops::Range<u32> {
    let none = 0..0;
    if matches!(
        ins.base(),
        "STS" | "STG" | "ST" | "STL" | "BAR" | "BRA" | "EXIT" | "LDGSTS" | "RED" | "ATOM"
    ) {
        return none;
    }
    let Some(first) = ins.operands.first().and_then(|o| register(o)) else {
        return none;
    };
    let Ok(n) = first[1..].parse::<u32>() else {
        return none;
    };
    let count = if ins.base().starts_with("LD") {
        (ins.width_bits() / 32).max(1)
    } else if ins.opcode.split('.').any(|m| m == "WIDE") {
        2
    } else {
        1
    };
    n..n + count
}

fn span(instructions: &[Instruction], cfg: &Cfg, blocks: &BTreeSet<usize>) -> (u64, u64) {
    let first = blocks
        .iter()
        .map(|&b| cfg.blocks[b].start)
        .min()
        .unwrap_or(0);
    let last = blocks
        .iter()
        .map(|&b| cfg.blocks[b].end - 1)
        .max()
        .unwrap_or(0);
    (instructions[first].address, instructions[last].address)
}

/// Instruction indices of `blocks`, in address order starting at `header`'s block (the
/// order one iteration runs them in a loop laid out header-first).
fn iteration_order(cfg: &Cfg, blocks: &BTreeSet<usize>, header: usize) -> Vec<usize> {
    let mut order: Vec<usize> = blocks.iter().copied().filter(|&b| b >= header).collect();
    order.extend(blocks.iter().copied().filter(|&b| b < header));
    order
        .into_iter()
        .flat_map(|b| cfg.blocks[b].start..cfg.blocks[b].end)
        .collect()
}

/// Finds the main loop of `f` and counts one stage (see the module docs).
pub fn analyse(f: &SassFunction) -> Verdict {
    let ins = &f.instructions;
    let cfg = build_cfg(ins);
    let loops = natural_loops(&cfg);
    let ffma_in = |blocks: &BTreeSet<usize>| -> u64 {
        blocks
            .iter()
            .flat_map(|&b| &ins[cfg.blocks[b].start..cfg.blocks[b].end])
            .filter(|i| i.base() == "FFMA")
            .count() as u64
    };
    let own: Vec<u64> = (0..loops.len())
        .map(|l| ffma_in(&own_blocks(&loops, l)))
        .collect();
    let Some(best) = own.iter().copied().max().filter(|&m| m > 0) else {
        return Verdict::NoFfmaLoop;
    };
    let winners: Vec<usize> = (0..loops.len()).filter(|&l| own[l] == best).collect();
    let spans = |ls: &[usize]| -> String {
        ls.iter()
            .map(|&l| {
                let (a, b) = span(ins, &cfg, &loops[l].blocks);
                format!("{a:#x}..{b:#x}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let nested_tie = winners.iter().any(|&a| {
        winners
            .iter()
            .any(|&b| a != b && loops[a].blocks.is_subset(&loops[b].blocks))
    });
    if nested_tie {
        return Verdict::Refused(format!(
            "ambiguous main loop: nested loops {} each hold {best} FFMA in their own body",
            spans(&winners)
        ));
    }
    // Sibling loops with the same FFMA are versions of one loop: the compiler duplicated it
    // under a loop-invariant condition (full tiles without bounds checks, edge tiles with
    // them). The copy with the highest FFMA density is reported; the others are listed.
    let mut versions: Vec<MainLoop> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    for &w in &winners {
        match stage_of(ins, &cfg, &loops, w) {
            Ok(m) => versions.push(m),
            Err(e) => refusals.push(e),
        }
    }
    if versions.is_empty() {
        return Verdict::Refused(refusals.join("; "));
    }
    let best_at = (0..versions.len())
        .max_by(|&a, &b| {
            versions[a]
                .stage
                .ffma_density()
                .total_cmp(&versions[b].stage.ffma_density())
                .then(b.cmp(&a))
        })
        .unwrap_or(0);
    let mut main = versions.swap_remove(best_at);
    versions.sort_by_key(|v| v.loop_span);
    main.other_versions = versions
        .iter()
        .map(|v| LoopVersion {
            loop_span: v.loop_span,
            instructions: v.stage.instructions,
            ffma_density: v.stage.ffma_density(),
        })
        .collect();
    Verdict::Main(main)
}

/// The stage of main loop `main` (steps 4 to 6 of the module docs); `Err` says why it
/// cannot be normalised.
fn stage_of(
    ins: &[Instruction],
    cfg: &Cfg,
    loops: &[Loop],
    main: usize,
) -> Result<MainLoop, String> {
    let main_blocks = &loops[main].blocks;
    let loop_span = span(ins, cfg, main_blocks);

    // Accumulator chain heads: FFMA whose addend was not written earlier in the iteration.
    let mut written: BTreeSet<u32> = BTreeSet::new();
    let mut accumulators = 0u64;
    let mut ffma_per_iteration = 0u64;
    for k in iteration_order(cfg, main_blocks, loops[main].header) {
        let i = &ins[k];
        if i.base() == "FFMA" {
            ffma_per_iteration += 1;
            let addend = i.operands.get(3).and_then(|o| register(o));
            if let Some(n) = addend.and_then(|r| r[1..].parse::<u32>().ok())
                && !written.contains(&n)
            {
                accumulators += 1;
            }
        }
        written.extend(destinations(i));
    }
    let at = |s: (u64, u64)| format!("{:#x}..{:#x}", s.0, s.1);
    if accumulators == 0 {
        return Err(format!(
            "main loop {} has {ffma_per_iteration} FFMA but no accumulator (every addend is \
             computed in the iteration), so no k-step can be defined",
            at(loop_span)
        ));
    }
    if !ffma_per_iteration.is_multiple_of(accumulators) {
        return Err(format!(
            "main loop {}: {ffma_per_iteration} FFMA per iteration is not a multiple of its \
             {accumulators} accumulators, so it does not run whole k-steps",
            at(loop_span)
        ));
    }
    let k_steps_per_iteration = ffma_per_iteration / accumulators;

    // Stage loop: the innermost loop containing L whose own body holds a barrier.
    let has_barrier = |l: usize| {
        own_blocks(loops, l)
            .iter()
            .flat_map(|&b| &ins[cfg.blocks[b].start..cfg.blocks[b].end])
            .any(|i| i.base() == "BAR")
    };
    let mut stage_loop = main;
    let mut cursor = Some(main);
    while let Some(l) = cursor {
        if has_barrier(l) {
            stage_loop = l;
            break;
        }
        cursor = loops[l].parent;
    }
    let iterations_per_stage = if stage_loop == main {
        1
    } else {
        match stage_constant(ins, cfg, main_blocks, loops[main].header) {
            Ok(depth) if depth.is_multiple_of(k_steps_per_iteration) && depth > 0 => {
                depth / k_steps_per_iteration
            }
            Ok(depth) => {
                return Err(format!(
                    "main loop {} runs {k_steps_per_iteration} k-steps per iteration, which \
                     does not divide the constant {depth} its exit compares against",
                    at(loop_span)
                ));
            }
            Err(found) => {
                return Err(format!(
                    "main loop {} is nested in the stage loop {} and its trip count is not \
                     static: its exit is decided by {found}, not by one constant",
                    at(loop_span),
                    at(span(ins, cfg, &loops[stage_loop].blocks))
                ));
            }
        }
    };
    let mut stage = Mix::default();
    for &b in &loops[stage_loop].blocks {
        let times = if main_blocks.contains(&b) {
            iterations_per_stage
        } else {
            1
        };
        for i in &ins[cfg.blocks[b].start..cfg.blocks[b].end] {
            stage.add(i, times);
        }
    }
    Ok(MainLoop {
        loop_span,
        stage_span: span(ins, cfg, &loops[stage_loop].blocks),
        ffma_per_iteration,
        accumulators,
        k_steps_per_iteration,
        iterations_per_stage,
        k_steps_per_stage: k_steps_per_iteration * iterations_per_stage,
        stage,
        other_versions: Vec::new(),
    })
}

/// Predicate register name of an operand (`P1`, `!UP0`), `None` for `PT`/`UPT` and
/// anything else.
pub(super) fn predicate(operand: &str) -> Option<&str> {
    let p = operand.trim().trim_start_matches('!');
    let digits = p.strip_prefix("UP").or_else(|| p.strip_prefix('P'))?;
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then_some(p)
}

/// The loop bound: the one immediate tested by the compares (`ISETP`/`UISETP`) that decide
/// whether the loop of header `header` goes on. Those are found by following, backwards
/// through one iteration, the guard predicate of every conditional branch that leaves the
/// loop or returns to its header, through the instructions that write it (`PLOP3`,
/// chained compares, `.EX` halves); compares elsewhere in the body (bounds checks) do not
/// count. `Err` describes what was found instead.
fn stage_constant(
    ins: &[Instruction],
    cfg: &Cfg,
    blocks: &BTreeSet<usize>,
    header: usize,
) -> Result<u64, String> {
    let order = iteration_order(cfg, blocks, header);
    let header_address = ins[cfg.blocks[header].start].address;
    let inside = |address: u64| {
        blocks.iter().any(|&b| {
            ins[cfg.blocks[b].start].address <= address
                && address <= ins[cfg.blocks[b].end - 1].address
        })
    };
    let mut constants = BTreeSet::new();
    let mut non_constant = 0;
    for (pos, &k) in order.iter().enumerate() {
        let branch = &ins[k];
        let Some(target) = branch.branch_target() else {
            continue;
        };
        let Some(guard) = branch.guard.as_deref().and_then(predicate) else {
            continue;
        };
        if target != header_address && inside(target) {
            continue;
        }
        // Walk back from the branch; each tracked predicate's nearest writer decides it.
        let mut tracked: BTreeSet<String> = BTreeSet::from([guard.to_string()]);
        for &j in order[..pos].iter().rev() {
            let i = &ins[j];
            let Some(dest) = i.operands.first().and_then(|o| predicate(o)) else {
                continue;
            };
            if !tracked.remove(dest) {
                continue;
            }
            // Predicate sources (after the destination): chained `.AND P0` inputs, PLOP3
            // inputs, the `.EX` half's low-half result.
            for o in &i.operands[1..] {
                if let Some(p) = predicate(o) {
                    tracked.insert(p.to_string());
                }
            }
            let is_compare = matches!(i.base(), "ISETP" | "UISETP");
            let high_half = i.opcode.split('.').any(|m| m == "EX");
            if is_compare && !high_half {
                let immediate = i.operands.iter().find_map(|o| {
                    let o = o.trim();
                    o.strip_prefix("0x")
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .or_else(|| o.parse::<u64>().ok())
                });
                match immediate {
                    Some(v) => {
                        constants.insert(v);
                    }
                    None => non_constant += 1,
                }
            }
            if tracked.is_empty() {
                break;
            }
        }
    }
    match (constants.len(), non_constant) {
        (1, 0) => Ok(*constants.first().unwrap_or(&0)),
        (0, 0) => Err("no compare".into()),
        _ => Err(format!(
            "{non_constant} compare(s) against a register or parameter and the constants \
             {constants:?}"
        )),
    }
}
