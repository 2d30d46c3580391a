//! The control-flow graph of a SASS function and its natural loops.
//!
//! 1. **Control-flow graph.** Basic blocks start at the function entry, at every direct
//!    branch target and after every branch or `EXIT`; edges follow [`Flow`].
//! 2. **Natural loops.** Dominators by the iterative algorithm of Cooper, Harvey and
//!    Kennedy ("A Simple, Fast Dominance Algorithm", 2001); an edge `u → h` where `h`
//!    dominates `u` is a back edge; the loop of header `h` is `h` plus every block that
//!    reaches a back edge's source without passing `h` (back edges to one header make one
//!    loop). Loop `A` is nested in `B` when `A`'s blocks are a strict subset of `B`'s.

use std::collections::{BTreeMap, BTreeSet};

use super::{Flow, Instruction};

/// A basic block: instructions `start..end` (indices into the function's instructions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// First instruction index.
    pub start: usize,
    /// One past the last instruction index.
    pub end: usize,
    /// Successor block indices.
    pub successors: Vec<usize>,
}

/// The control-flow graph of one function.
#[derive(Clone, Debug)]
pub struct Cfg {
    /// Blocks in address order; block 0 is the entry.
    pub blocks: Vec<Block>,
    /// `true` if an indirect branch (`BRX`) hides some edges.
    pub has_indirect_branch: bool,
}

/// Builds the CFG of `instructions` (address order, as printed).
pub fn build_cfg(instructions: &[Instruction]) -> Cfg {
    let index_of = |address: u64| {
        instructions
            .binary_search_by_key(&address, |i| i.address)
            .ok()
    };
    let mut leaders = BTreeSet::new();
    if !instructions.is_empty() {
        leaders.insert(0);
    }
    let mut has_indirect_branch = false;
    for (k, ins) in instructions.iter().enumerate() {
        match ins.flow() {
            Flow::Next => {}
            Flow::Branch { target, .. } => {
                if let Some(t) = index_of(target) {
                    leaders.insert(t);
                }
                leaders.insert(k + 1);
            }
            Flow::Indirect => {
                has_indirect_branch = true;
                leaders.insert(k + 1);
            }
            Flow::Stop => {
                leaders.insert(k + 1);
            }
        }
    }
    let starts: Vec<usize> = leaders
        .into_iter()
        .filter(|&s| s < instructions.len())
        .collect();
    let block_of = |k: usize| starts.partition_point(|&s| s <= k) - 1;
    let mut blocks = Vec::with_capacity(starts.len());
    for (b, &start) in starts.iter().enumerate() {
        let end = starts.get(b + 1).copied().unwrap_or(instructions.len());
        let last = &instructions[end - 1];
        let mut successors = Vec::new();
        let fall = |s: &mut Vec<usize>| {
            if end < instructions.len() {
                s.push(b + 1);
            }
        };
        match last.flow() {
            Flow::Next => fall(&mut successors),
            Flow::Branch {
                target,
                falls_through,
            } => {
                if let Some(t) = index_of(target) {
                    successors.push(block_of(t));
                }
                if falls_through {
                    fall(&mut successors);
                }
            }
            Flow::Indirect | Flow::Stop => {}
        }
        successors.dedup();
        blocks.push(Block {
            start,
            end,
            successors,
        });
    }
    Cfg {
        blocks,
        has_indirect_branch,
    }
}

/// Immediate dominators (`None` for the entry and for unreachable blocks).
fn immediate_dominators(cfg: &Cfg) -> Vec<Option<usize>> {
    let n = cfg.blocks.len();
    if n == 0 {
        return Vec::new();
    }
    // Reverse post-order from the entry, iteratively.
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    let mut stack = vec![(0usize, 0usize)];
    seen[0] = true;
    while let Some((b, next)) = stack.pop() {
        if let Some(&s) = cfg.blocks[b].successors.get(next) {
            stack.push((b, next + 1));
            if !seen[s] {
                seen[s] = true;
                stack.push((s, 0));
            }
        } else {
            order.push(b);
        }
    }
    order.reverse();
    let mut rpo = vec![usize::MAX; n];
    for (k, &b) in order.iter().enumerate() {
        rpo[b] = k;
    }
    let mut predecessors = vec![Vec::new(); n];
    for (b, block) in cfg.blocks.iter().enumerate() {
        for &s in &block.successors {
            predecessors[s].push(b);
        }
    }
    let mut idom: Vec<Option<usize>> = vec![None; n];
    idom[0] = Some(0);
    let intersect = |idom: &[Option<usize>], mut a: usize, mut b: usize| {
        while a != b {
            while rpo[a] > rpo[b] {
                a = idom[a].unwrap_or(0);
            }
            while rpo[b] > rpo[a] {
                b = idom[b].unwrap_or(0);
            }
        }
        a
    };
    let mut changed = true;
    while changed {
        changed = false;
        for &b in order.iter().skip(1) {
            let mut new: Option<usize> = None;
            for &p in &predecessors[b] {
                if idom[p].is_none() {
                    continue;
                }
                new = Some(match new {
                    None => p,
                    Some(q) => intersect(&idom, p, q),
                });
            }
            if new.is_some() && idom[b] != new {
                idom[b] = new;
                changed = true;
            }
        }
    }
    idom[0] = None;
    idom
}

fn dominates(idom: &[Option<usize>], a: usize, mut b: usize) -> bool {
    loop {
        if a == b {
            return true;
        }
        match idom[b] {
            Some(p) => b = p,
            None => return false,
        }
    }
}

/// A natural loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loop {
    /// Header block.
    pub header: usize,
    /// Blocks of the loop (header included), ascending.
    pub blocks: BTreeSet<usize>,
    /// Index (in the loop list) of the smallest loop strictly containing this one.
    pub parent: Option<usize>,
}

/// The natural loops of `cfg`, outermost first (larger bodies before smaller).
pub fn natural_loops(cfg: &Cfg) -> Vec<Loop> {
    let idom = immediate_dominators(cfg);
    let mut bodies: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut predecessors = vec![Vec::new(); cfg.blocks.len()];
    for (b, block) in cfg.blocks.iter().enumerate() {
        for &s in &block.successors {
            predecessors[s].push(b);
        }
    }
    for (u, block) in cfg.blocks.iter().enumerate() {
        let reachable = u == 0 || idom[u].is_some();
        for &h in &block.successors {
            if !reachable || !dominates(&idom, h, u) {
                continue;
            }
            let body = bodies.entry(h).or_insert_with(|| BTreeSet::from([h]));
            let mut work = vec![u];
            while let Some(x) = work.pop() {
                if body.insert(x) {
                    work.extend(predecessors[x].iter().copied());
                }
            }
        }
    }
    let mut loops: Vec<Loop> = bodies
        .into_iter()
        .map(|(header, blocks)| Loop {
            header,
            blocks,
            parent: None,
        })
        .collect();
    loops.sort_by_key(|l| (std::cmp::Reverse(l.blocks.len()), l.header));
    for i in 0..loops.len() {
        loops[i].parent = (0..i).rev().find(|&j| {
            loops[j].blocks.len() > loops[i].blocks.len()
                && loops[i].blocks.is_subset(&loops[j].blocks)
        });
    }
    loops
}
