//! One kernel body: register declarations (with nested `{ }` scopes renamed apart),
//! labels, `.loc` line info, `brx.idx` tables; each statement decoded to an instruction.

use std::collections::HashMap;

use super::decode::decode;
use super::inst::{Inst, Op};
use super::module::{Kernel, SharedVar, SourcePos, parse_params, parse_shared, strip_comment};
use super::operands::DecodeCtx;
use super::{PResult, ParseError, err};

/// Registers of one kernel: name to slot.
pub(super) struct Regs {
    pub(super) map: HashMap<String, u32>,
    pub(super) next: u32,
}

impl Regs {
    fn declare(&mut self, decl: &str, ln: usize) -> PResult<()> {
        // `.reg .b32 %r<13>;` or `.reg .f32 %f1, %f2;`
        let words: Vec<&str> = decl.split_whitespace().collect();
        let names = words
            .iter()
            .skip(1)
            .filter(|w| !w.starts_with('.'))
            .flat_map(|w| w.split(','))
            .map(str::trim)
            .filter(|w| !w.is_empty());
        for name in names {
            if let Some(lt) = name.find('<') {
                let prefix = &name[..lt];
                let n: u32 =
                    name[lt + 1..]
                        .trim_end_matches('>')
                        .parse()
                        .map_err(|_| ParseError {
                            line: ln,
                            message: format!("bad register range {name}"),
                        })?;
                for k in 0..n {
                    self.map.insert(format!("{prefix}{k}"), self.next);
                    self.next += 1;
                }
            } else {
                self.map.insert(name.to_string(), self.next);
                self.next += 1;
            }
        }
        Ok(())
    }
}

/// One statement of a kernel body before decoding.
pub(super) struct Stmt {
    pub(super) text: String,
    pub(super) line: usize,
    pub(super) loc: Option<(u32, u32)>,
}

pub(super) fn is_label_start(s: &str) -> Option<usize> {
    // `name:` at the start, name made of identifier characters.
    let end = s.find(':')?;
    let name = &s[..end];
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    ok.then_some(end)
}

/// Rewrites a `.reg` declaration inside scope `depth` with fresh names, recording them.
pub(super) fn scoped_declaration(
    decl: &str,
    depth: usize,
    count: &mut usize,
    scopes: &mut [HashMap<String, String>],
) -> String {
    let mut out = Vec::new();
    for (i, word) in decl.split_whitespace().enumerate() {
        if i == 0 || word.starts_with('.') {
            out.push(word.to_string());
            continue;
        }
        let names: Vec<String> = word
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| {
                *count += 1;
                let fresh = format!("{n}%scope{depth}_{count}");
                scopes[depth - 1].insert(n.to_string(), fresh.clone());
                fresh
            })
            .collect();
        out.push(names.join(","));
    }
    out.join(" ")
}

/// Replaces identifiers declared in the open scopes (innermost first) by their fresh names.
pub(super) fn rename_scoped(text: &str, scopes: &[HashMap<String, String>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let fresh = scopes.iter().rev().find_map(|s| s.get(word.as_str()));
        out.push_str(fresh.map_or(word.as_str(), String::as_str));
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' || ch == '$' || ch == '%' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

pub(super) fn parse_entry(lines: &[&str], start: usize) -> PResult<(Kernel, usize)> {
    let (name, params, mut k) = parse_params(lines, start)?;
    // Body: from the `{` to the matching `}`.
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut labels: HashMap<String, u32> = HashMap::new();
    let mut regs = Regs {
        map: HashMap::new(),
        next: 0,
    };
    let mut local_shared: Vec<SharedVar> = Vec::new();
    // Renamings of the registers declared in each open `{ ... }` scope.
    let mut scopes: Vec<HashMap<String, String>> = Vec::new();
    let mut scoped_count = 0usize;
    let mut loc = None;
    let mut pending = String::new();
    let mut pending_line = 0;
    let mut opened = false;
    k += 1;
    let mut end = None;
    'lines: while k < lines.len() {
        let ln = k + 1;
        let mut line = strip_comment(lines[k]).trim();
        k += 1;
        if !opened {
            if line.starts_with('{') {
                opened = true;
                line = line[1..].trim();
            } else if line.is_empty() {
                continue;
            } else {
                return err(
                    ln,
                    format!("expected `{{` after the parameters, found `{line}`"),
                );
            }
        }
        loop {
            if line.is_empty() {
                continue 'lines;
            }
            if pending.is_empty() {
                if let Some(rest) = line.strip_prefix('}') {
                    // The end of a `{ ... }` scope (inline asm), or of the body.
                    if scopes.pop().is_some() {
                        line = rest.trim();
                        continue;
                    }
                    end = Some(k);
                    break 'lines;
                }
                if let Some(rest) = line.strip_prefix('{') {
                    scopes.push(HashMap::new());
                    line = rest.trim();
                    continue;
                }
                if let Some(rest) = line.strip_prefix(".loc") {
                    let nums: Vec<u32> = rest
                        .split_whitespace()
                        .filter_map(|w| w.parse().ok())
                        .collect();
                    loc = match nums.as_slice() {
                        [file, l, ..] if *l > 0 => Some((*file, *l)),
                        _ => None,
                    };
                    continue 'lines;
                }
                if let Some(colon) = is_label_start(line) {
                    labels.insert(line[..colon].to_string(), stmts.len() as u32);
                    line = line[colon + 1..].trim();
                    continue;
                }
                pending_line = ln;
            }
            match line.find(';') {
                Some(semi) => {
                    pending.push(' ');
                    pending.push_str(&line[..semi]);
                    let mut text = std::mem::take(&mut pending).trim().to_string();
                    line = line[semi + 1..].trim();
                    if text.starts_with(".reg") && !scopes.is_empty() {
                        // A register local to a scope gets a name of its own, so that
                        // blocks reusing a name (every inline asm's `ga`) do not clash.
                        let renamed =
                            scoped_declaration(&text, scopes.len(), &mut scoped_count, &mut scopes);
                        regs.declare(&renamed, pending_line)?;
                    } else if text.starts_with(".reg") {
                        regs.declare(&text, pending_line)?;
                    } else if text.starts_with(".shared") {
                        local_shared.push(parse_shared(&text, pending_line)?);
                    } else if text.starts_with(".pragma") {
                    } else {
                        if !scopes.is_empty() {
                            text = rename_scoped(&text, &scopes);
                        }
                        stmts.push(Stmt {
                            text,
                            line: pending_line,
                            loc,
                        });
                    }
                }
                None => {
                    pending.push(' ');
                    pending.push_str(line);
                    continue 'lines;
                }
            }
        }
    }
    let Some(end) = end else {
        return err(start + 1, format!("body of {name} never closes"));
    };
    if !local_shared.is_empty() {
        return err(
            start + 1,
            format!(
                "{name}: .shared declared inside a kernel (unsupported; declare it at module level)"
            ),
        );
    }
    // `.branchtargets` tables are statements too (`$L_brx_0: .branchtargets a, b;`):
    // pull them out, keeping the label of each.
    let mut table_names: HashMap<String, Vec<String>> = HashMap::new();
    let mut real: Vec<Stmt> = Vec::new();
    let mut remap: Vec<u32> = Vec::with_capacity(stmts.len() + 1);
    for s in stmts {
        remap.push(real.len() as u32);
        if let Some(rest) = s.text.strip_prefix(".branchtargets") {
            let label = labels
                .iter()
                .find(|(_, at)| **at as usize == remap.len() - 1)
                .map(|(l, _)| l.clone())
                .ok_or(ParseError {
                    line: s.line,
                    message: ".branchtargets without a label".into(),
                })?;
            table_names.insert(
                label,
                rest.split(',').map(|t| t.trim().to_string()).collect(),
            );
        } else {
            real.push(s);
        }
    }
    remap.push(real.len() as u32);
    for at in labels.values_mut() {
        *at = remap[*at as usize];
    }
    let mut offsets = Vec::new();
    let mut off = 0u32;
    let mut param_names = HashMap::new();
    for (i, (pname, p)) in params.iter().enumerate() {
        off = off.div_ceil(p.align) * p.align;
        offsets.push(off);
        param_names.insert(pname.clone(), (i, off));
        off += p.size;
    }
    let mut kernel = Kernel {
        name,
        params: params.iter().map(|p| p.1).collect(),
        param_offsets: offsets,
        param_bytes: off,
        registers: regs.next,
        insts: Vec::with_capacity(real.len()),
        pos: Vec::with_capacity(real.len()),
        opcodes: Vec::with_capacity(real.len()),
        tables: Vec::new(),
    };
    let mut table_index: HashMap<String, u32> = HashMap::new();
    for (label, targets) in &table_names {
        let mut t = Vec::new();
        for target in targets {
            t.push(*labels.get(target).ok_or(ParseError {
                line: start + 1,
                message: format!("branch target {target} is not a label"),
            })?);
        }
        table_index.insert(label.clone(), kernel.tables.len() as u32);
        kernel.tables.push(t);
    }
    let ctx = DecodeCtx {
        regs: &regs.map,
        labels: &labels,
        params: &param_names,
        tables: &table_index,
    };
    for s in &real {
        let (inst, opcode) = decode(&ctx, &s.text).map_err(|message| ParseError {
            line: s.line,
            message: format!("{message} (in `{}`)", s.text),
        })?;
        kernel.insts.push(inst);
        kernel.opcodes.push(opcode);
        kernel.pos.push(SourcePos {
            ptx_line: s.line as u32,
            loc: s.loc,
        });
    }
    // Falling off the end of a kernel is an implicit `ret`.
    kernel.insts.push(Inst {
        op: Op::Exit,
        guard: None,
    });
    kernel.opcodes.push("ret".into());
    kernel.pos.push(SourcePos {
        ptx_line: end as u32,
        loc: None,
    });
    Ok((kernel, end))
}
