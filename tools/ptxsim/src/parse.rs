//! PTX text to a [`Module`]: module-level variables, `.entry` parameter lists, register
//! declarations, labels, `.loc` line info, and every instruction decoded into an
//! [`Inst`] with register indices (see [`super::inst`]).
//!
//! The parser accepts the PTX that rustc's NVPTX backend emits and a hand-edited variant of
//! it. Anything it does not understand (an instruction, a modifier, a directive inside a
//! kernel) is an error naming it and its line: never a guess.

use std::collections::HashMap;

use super::inst::{
    Addr, AddrBase, Cmp, CmpTy, CvtOp, F32Op, F64Op, Inst, IntOp, Op, Rnd, Space, Special, Src, Ty,
    UnOp,
};

/// A parse or decode error: the PTX line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Line in the PTX text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PTX line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

type PResult<T> = std::result::Result<T, ParseError>;

fn err<T>(line: usize, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// A module-level `.global` variable: its bytes, placed in a global window at launch.
#[derive(Debug, Clone)]
pub struct GlobalVar {
    /// Symbol name.
    pub name: String,
    /// Initial bytes (zeros where the PTX gives no initialiser).
    pub bytes: Vec<u8>,
}

/// A `.shared` variable: static ones get fixed offsets, `.extern` ones alias the dynamic
/// region that follows them.
#[derive(Debug, Clone)]
pub struct SharedVar {
    /// Symbol name.
    pub name: String,
    /// Alignment in bytes.
    pub align: u32,
    /// Size in bytes (`None` for `.extern` arrays sized at launch).
    pub size: Option<u32>,
}

/// One `.param` of an `.entry`: `.param .align A .b8 name[S]` or `.param .u32 name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDecl {
    /// Size in bytes.
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
}

/// Where an instruction came from: its PTX line and the `.loc` in force there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePos {
    /// 1-based line in the PTX text.
    pub ptx_line: u32,
    /// `.loc file line` (file index of a `.file` directive), if any.
    pub loc: Option<(u32, u32)>,
}

/// One kernel entry point, decoded.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Entry name.
    pub name: String,
    /// Declared parameters in order.
    pub params: Vec<ParamDecl>,
    /// Byte offset of each parameter in the packed parameter buffer (each aligned).
    pub param_offsets: Vec<u32>,
    /// Total parameter bytes.
    pub param_bytes: u32,
    /// Registers per thread (all classes share one file of 64-bit slots).
    pub registers: u32,
    /// The decoded instructions.
    pub insts: Vec<Inst>,
    /// Source position of each instruction.
    pub pos: Vec<SourcePos>,
    /// The opcode text of each instruction (for statistics).
    pub opcodes: Vec<String>,
    /// `brx.idx` target tables (instruction indices).
    pub tables: Vec<Vec<u32>>,
}

/// A parsed PTX module.
#[derive(Debug, Clone, Default)]
pub struct Module {
    /// `.target` architecture.
    pub target: String,
    /// Kernel entries.
    pub kernels: Vec<Kernel>,
    /// Module-level `.global` variables.
    pub globals: Vec<GlobalVar>,
    /// Module-level `.shared` variables, in declaration order.
    pub shared: Vec<SharedVar>,
    /// `.file` index to path.
    pub files: HashMap<u32, String>,
}

impl Module {
    /// The kernel named `name`.
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// `file:line` of a `.loc`, if the file is known.
    pub fn source_line(&self, loc: Option<(u32, u32)>) -> Option<String> {
        let (file, line) = loc?;
        let path = self.files.get(&file)?;
        // Paths are absolute; keep the part from the workspace's crate folders on.
        let short = ["kernels-gpu/", "library/"]
            .iter()
            .find_map(|m| path.find(m).map(|i| &path[i..]))
            .unwrap_or(path);
        Some(format!("{short}:{line}"))
    }
}

/// Strips a `//` comment.
fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Parses a PTX module.
pub fn parse_module(text: &str) -> PResult<Module> {
    let lines: Vec<&str> = text.lines().collect();
    let mut m = Module::default();
    let mut i = 0;
    // Statement text accumulated across lines up to its `;` (module level).
    while i < lines.len() {
        let ln = i + 1;
        let line = strip_comment(lines[i]).trim();
        i += 1;
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            ".version" | ".address_size" => {}
            ".target" => {
                m.target = line[".target".len()..]
                    .split([',', ' ', '\t'])
                    .find(|w| !w.is_empty())
                    .unwrap_or("")
                    .to_string();
            }
            ".file" => {
                let idx: u32 = words
                    .get(1)
                    .and_then(|w| w.parse().ok())
                    .ok_or(ParseError {
                        line: ln,
                        message: format!("bad .file directive: {line}"),
                    })?;
                let path = line
                    .split('"')
                    .nth(1)
                    .ok_or(ParseError {
                        line: ln,
                        message: format!("bad .file directive: {line}"),
                    })?
                    .to_string();
                m.files.insert(idx, path);
            }
            _ if words.contains(&".entry") => {
                let (kernel, next) = parse_entry(&lines, i - 1)?;
                m.kernels.push(kernel);
                i = next;
            }
            _ if words.contains(&".func") => {
                // Device functions (rustc's panic handler) are skipped: a `call` to one
                // from a kernel is refused when the kernel is decoded.
                i = skip_body(&lines, i - 1)?;
            }
            _ if words.contains(&".shared") => m.shared.push(parse_shared(line, ln)?),
            _ if words.contains(&".global") => m.globals.push(parse_global(line, ln)?),
            _ => return err(ln, format!("unsupported module-level directive: {line}")),
        }
    }
    Ok(m)
}

/// Returns the index of the line after the `}` closing the body that starts at or after
/// `start`.
fn skip_body(lines: &[&str], start: usize) -> PResult<usize> {
    let mut depth = 0i32;
    let mut opened = false;
    for (k, raw) in lines.iter().enumerate().skip(start) {
        for ch in strip_comment(raw).chars() {
            match ch {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth == 0 {
            return Ok(k + 1);
        }
    }
    err(start + 1, "function body never closes")
}

fn parse_align(words: &[&str], ln: usize) -> PResult<u32> {
    match words.iter().position(|w| *w == ".align") {
        Some(p) => words
            .get(p + 1)
            .and_then(|w| w.parse().ok())
            .ok_or(ParseError {
                line: ln,
                message: "bad .align".into(),
            }),
        None => Ok(0),
    }
}

/// Element type of a declaration (`.b8`, `.u32`, `.f32`, ...): its size in bytes.
fn decl_elem_size(words: &[&str], ln: usize) -> PResult<u32> {
    for w in words {
        if let Some(ty) = w.strip_prefix('.')
            && let Some(t) = Ty::from_name(ty)
        {
            return Ok(t.bytes());
        }
    }
    err(ln, format!("no element type in `{}`", words.join(" ")))
}

/// `name[N]` or `name[]` or `name` with the element count.
fn decl_name(s: &str) -> (String, Option<u32>) {
    let s = s.trim_end_matches([';', ',']);
    match s.find('[') {
        Some(b) => {
            let count = s[b + 1..].trim_end_matches(']');
            (s[..b].to_string(), count.parse().ok())
        }
        None => (s.to_string(), Some(1)),
    }
}

fn parse_shared(line: &str, ln: usize) -> PResult<SharedVar> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let elem = decl_elem_size(&words, ln)?;
    let align = parse_align(&words, ln)?.max(elem);
    let (name, count) = decl_name(words.last().copied().unwrap_or(""));
    let is_extern = words.contains(&".extern");
    Ok(SharedVar {
        name,
        align,
        size: if is_extern {
            None
        } else {
            Some(
                count.ok_or(ParseError {
                    line: ln,
                    message: format!("shared array without a size: {line}"),
                })? * elem,
            )
        },
    })
}

fn parse_global(line: &str, ln: usize) -> PResult<GlobalVar> {
    let (decl, init) = match line.find('=') {
        Some(e) => (&line[..e], Some(line[e + 1..].trim().trim_end_matches(';'))),
        None => (line.trim_end_matches(';'), None),
    };
    let words: Vec<&str> = decl.split_whitespace().collect();
    let elem = decl_elem_size(&words, ln)?;
    let (name, count) = decl_name(words.last().copied().unwrap_or(""));
    let count = count.ok_or(ParseError {
        line: ln,
        message: format!("global without a size: {line}"),
    })?;
    let mut bytes = vec![0u8; (count * elem) as usize];
    if let Some(init) = init {
        let body = init.trim().trim_start_matches('{').trim_end_matches('}');
        for (k, v) in body.split(',').map(str::trim).enumerate() {
            let val = parse_int(v).ok_or(ParseError {
                line: ln,
                message: format!("unsupported initialiser element `{v}` (integers only)"),
            })?;
            let at = k * elem as usize;
            if at + elem as usize > bytes.len() {
                return err(ln, format!("initialiser of {name} longer than the array"));
            }
            bytes[at..at + elem as usize].copy_from_slice(&val.to_le_bytes()[..elem as usize]);
        }
    }
    Ok(GlobalVar { name, bytes })
}

/// Integer literal: decimal, `0x` hex, optional sign, optional `U` suffix.
fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('U');
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        u64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<u64>().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Registers of one kernel: name to slot.
struct Regs {
    map: HashMap<String, u32>,
    next: u32,
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
struct Stmt {
    text: String,
    line: usize,
    loc: Option<(u32, u32)>,
}

fn is_label_start(s: &str) -> Option<usize> {
    // `name:` at the start, name made of identifier characters.
    let end = s.find(':')?;
    let name = &s[..end];
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    ok.then_some(end)
}

/// Parameters with their names, in declaration order.
type NamedParams = Vec<(String, ParamDecl)>;

/// The name and declared parameters of the `.entry` starting at line index `start`, and
/// the index of the line holding the closing `)`.
fn parse_params(lines: &[&str], start: usize) -> PResult<(String, NamedParams, usize)> {
    let head = strip_comment(lines[start]);
    let after = head.split(".entry").nth(1).unwrap_or("").trim();
    let name = after.split('(').next().unwrap_or("").trim().to_string();
    if name.is_empty() {
        return err(start + 1, "entry without a name");
    }
    // Parameters up to `)`.
    let mut params = Vec::new();
    let mut k = start;
    let mut text = after.split_once('(').map(|x| x.1).unwrap_or("").to_string();
    loop {
        for piece in text.split(',') {
            let piece = piece.trim().trim_end_matches(')').trim();
            if piece.starts_with(".param") {
                let words: Vec<&str> = piece.split_whitespace().collect();
                let elem = decl_elem_size(&words, k + 1)?;
                let (_, count) = decl_name(words.last().copied().unwrap_or(""));
                let count = count.ok_or(ParseError {
                    line: k + 1,
                    message: format!("parameter without a size: {piece}"),
                })?;
                let align = parse_align(&words, k + 1)?.max(elem);
                params.push((
                    decl_name(words.last().copied().unwrap_or("")).0,
                    ParamDecl {
                        size: count * elem,
                        align,
                    },
                ));
            } else if !piece.is_empty() {
                return err(
                    k + 1,
                    format!("unsupported parameter declaration `{piece}`"),
                );
            }
        }
        if text.contains(')') {
            break;
        }
        k += 1;
        if k >= lines.len() {
            return err(start + 1, "parameter list never closes");
        }
        text = strip_comment(lines[k]).to_string();
    }
    Ok((name, params, k))
}

/// The declared parameters of every `.entry` of a PTX module, by entry name, without
/// decoding the kernels' bodies (what a CUDA launch checks its arguments against).
pub fn entry_params(text: &str) -> PResult<HashMap<String, Vec<ParamDecl>>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        if strip_comment(line)
            .split_whitespace()
            .any(|w| w == ".entry")
        {
            let (name, params, _) = parse_params(&lines, i)?;
            out.insert(name, params.into_iter().map(|p| p.1).collect());
        }
    }
    Ok(out)
}

/// Rewrites a `.reg` declaration inside scope `depth` with fresh names, recording them.
fn scoped_declaration(
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
fn rename_scoped(text: &str, scopes: &[HashMap<String, String>]) -> String {
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

fn parse_entry(lines: &[&str], start: usize) -> PResult<(Kernel, usize)> {
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

struct DecodeCtx<'a> {
    regs: &'a HashMap<String, u32>,
    labels: &'a HashMap<String, u32>,
    params: &'a HashMap<String, (usize, u32)>,
    tables: &'a HashMap<String, u32>,
}

type DResult<T> = std::result::Result<T, String>;

/// Splits operands at top-level commas (not inside `[]` or `{}`).
fn split_operands(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(ch);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

impl DecodeCtx<'_> {
    fn reg(&self, s: &str) -> DResult<u32> {
        self.regs
            .get(s)
            .copied()
            .ok_or_else(|| format!("`{s}` is not a declared register"))
    }

    /// A source operand of type `ty`: register or immediate (masked to the type's width).
    fn src(&self, s: &str, ty: Ty) -> DResult<Src> {
        if s.starts_with('%') || self.regs.contains_key(s) {
            return self.reg(s).map(Src::R);
        }
        imm(s, ty).map(Src::I)
    }

    /// A register or `_` destination (`_` discards: a scratch slot past the file).
    fn dst(&self, s: &str) -> DResult<u32> {
        self.reg(s)
    }

    fn addr(&self, s: &str) -> DResult<Addr> {
        let inner = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .ok_or_else(|| format!("`{s}` is not an address [..]"))?
            .trim();
        let (base, off) = match inner.find(['+', '-']) {
            Some(p) if p > 0 => {
                let off = parse_int(&inner[p..].replace('+', ""))
                    .ok_or_else(|| format!("bad address offset in `{s}`"))?;
                (inner[..p].trim(), off as i64)
            }
            _ => (inner, 0),
        };
        let base = if base.starts_with('%') || self.regs.contains_key(base) {
            AddrBase::Reg(self.reg(base)?)
        } else if let Some(&(_, poff)) = self.params.get(base) {
            AddrBase::Param(poff)
        } else if base.chars().all(|c| c.is_ascii_digit()) {
            AddrBase::Abs(parse_int(base).unwrap_or(0))
        } else {
            AddrBase::Symbol(base.to_string())
        };
        Ok(Addr { base, off })
    }
}

/// Immediate of type `ty`: `0fXXXXXXXX` (f32 bits), `0dXXXXXXXXXXXXXXXX` (f64 bits), or an
/// integer (masked to the width of `ty`).
fn imm(s: &str, ty: Ty) -> DResult<u64> {
    if let Some(h) = s.strip_prefix("0f").or_else(|| s.strip_prefix("0F")) {
        let bits = u32::from_str_radix(h, 16).map_err(|_| format!("bad f32 literal `{s}`"))?;
        return match ty {
            Ty::F64 => Ok(f64::from(f32::from_bits(bits)).to_bits()),
            _ => Ok(u64::from(bits)),
        };
    }
    if let Some(h) = s.strip_prefix("0d").or_else(|| s.strip_prefix("0D")) {
        let bits = u64::from_str_radix(h, 16).map_err(|_| format!("bad f64 literal `{s}`"))?;
        return match ty {
            Ty::F32 => Err(format!("f64 literal `{s}` for an f32 operand")),
            _ => Ok(bits),
        };
    }
    let v = parse_int(s).ok_or_else(|| format!("unsupported operand `{s}`"))?;
    if ty.is_float() {
        return Err(format!(
            "integer literal `{s}` for a float operand (unsupported)"
        ));
    }
    Ok(ty.mask(v))
}

fn special(s: &str) -> Option<Special> {
    let (reg, dim) = s.split_once('.').unwrap_or((s, ""));
    let d = match dim {
        "x" => 0,
        "y" => 1,
        "z" => 2,
        "" => 0,
        _ => return None,
    };
    Some(match reg {
        "%tid" => Special::Tid(d),
        "%ntid" => Special::Ntid(d),
        "%ctaid" => Special::Ctaid(d),
        "%nctaid" => Special::Nctaid(d),
        "%laneid" if dim.is_empty() => Special::Lane,
        "%warpid" if dim.is_empty() => Special::Warp,
        _ => return None,
    })
}

/// The type suffix (last modifier) of an opcode.
fn ty_of(mods: &[&str]) -> DResult<Ty> {
    let last = mods.last().ok_or("missing type suffix")?;
    Ty::from_name(last).ok_or_else(|| format!("unsupported type .{last}"))
}

/// Fails unless every modifier is in `allowed`.
fn only(op: &str, mods: &[&str], allowed: &[&str]) -> DResult<()> {
    for m in mods {
        if !allowed.contains(m) && Ty::from_name(m).is_none() {
            return Err(format!("unsupported modifier .{m} of `{op}`"));
        }
    }
    Ok(())
}

fn rounding(mods: &[&str]) -> Option<Rnd> {
    mods.iter().find_map(|m| match *m {
        "rn" => Some(Rnd::Rn),
        "rz" => Some(Rnd::Rz),
        "rm" => Some(Rnd::Rm),
        "rp" => Some(Rnd::Rp),
        "rni" => Some(Rnd::Rni),
        "rzi" => Some(Rnd::Rzi),
        "rmi" => Some(Rnd::Rmi),
        "rpi" => Some(Rnd::Rpi),
        _ => None,
    })
}

fn want(ops: &[String], n: usize, op: &str) -> DResult<()> {
    if ops.len() == n {
        Ok(())
    } else {
        Err(format!("`{op}` takes {n} operands, found {}", ops.len()))
    }
}

/// Decodes one instruction statement (with an optional `@%p`/`@!%p` guard).
fn decode(ctx: &DecodeCtx, text: &str) -> DResult<(Inst, String)> {
    let mut text = text.trim();
    let mut guard = None;
    if let Some(rest) = text.strip_prefix('@') {
        let (g, tail) = rest
            .split_once(char::is_whitespace)
            .ok_or("guard without instruction")?;
        let (neg, name) = match g.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, g),
        };
        guard = Some((ctx.reg(name)?, neg));
        text = tail.trim();
    }
    let (opcode, rest) = match text.split_once(char::is_whitespace) {
        Some((o, r)) => (o, r.trim()),
        None => (text, ""),
    };
    let ops = split_operands(rest);
    let parts: Vec<&str> = opcode.split('.').collect();
    let base = parts[0];
    let mods = &parts[1..];
    let op = decode_op(ctx, opcode, base, mods, &ops)?;
    Ok((Inst { op, guard }, opcode.to_string()))
}

fn int_op(base: &str, mods: &[&str], ty: Ty) -> DResult<IntOp> {
    let signed = ty.is_signed();
    Ok(match (base, mods.first().copied()) {
        ("add", _) => IntOp::Add,
        ("sub", _) => IntOp::Sub,
        ("mul", Some("lo")) => IntOp::MulLo,
        ("mul", Some("hi")) if signed => IntOp::MulHiS,
        ("mul", Some("hi")) => IntOp::MulHiU,
        ("and", _) => IntOp::And,
        ("or", _) => IntOp::Or,
        ("xor", _) => IntOp::Xor,
        ("shl", _) => IntOp::Shl,
        ("shr", _) if signed => IntOp::ShrS,
        ("shr", _) => IntOp::ShrU,
        ("min", _) if signed => IntOp::MinS,
        ("min", _) => IntOp::MinU,
        ("max", _) if signed => IntOp::MaxS,
        ("max", _) => IntOp::MaxU,
        ("div", _) if signed => IntOp::DivS,
        ("div", _) => IntOp::DivU,
        ("rem", _) if signed => IntOp::RemS,
        ("rem", _) => IntOp::RemU,
        _ => return Err(format!("unsupported integer operation {base}")),
    })
}

fn decode_op(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
) -> DResult<Op> {
    match base {
        "mov" => {
            only(opcode, mods, &[])?;
            want(ops, 2, opcode)?;
            let ty = ty_of(mods)?;
            let (d, a) = (&ops[0], &ops[1]);
            if let Some(inner) = d.strip_prefix('{') {
                let regs: Vec<&str> = inner
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect();
                if ty != Ty::B64 || regs.len() != 2 {
                    return Err(format!("unsupported unpacking `{opcode}`"));
                }
                return Ok(Op::Unpack {
                    lo: ctx.dst(regs[0])?,
                    hi: ctx.dst(regs[1])?,
                    a: ctx.src(a, ty)?,
                });
            }
            let d = ctx.dst(d)?;
            if let Some(inner) = a.strip_prefix('{') {
                let regs: Vec<&str> = inner
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect();
                if ty != Ty::B64 || regs.len() != 2 {
                    return Err(format!("unsupported packing `{opcode}`"));
                }
                return Ok(Op::Pack {
                    d,
                    lo: ctx.src(regs[0], Ty::B32)?,
                    hi: ctx.src(regs[1], Ty::B32)?,
                });
            }
            if a.starts_with('%') && !ctx.regs.contains_key(a.as_str()) {
                let s = special(a).ok_or_else(|| format!("unsupported special register `{a}`"))?;
                return Ok(Op::MovSpecial { d, s });
            }
            if a.starts_with('%')
                || ctx.regs.contains_key(a.as_str())
                || a.starts_with('-')
                || a.starts_with(|c: char| c.is_ascii_digit())
            {
                return Ok(Op::Mov {
                    d,
                    a: ctx.src(a, ty)?,
                });
            }
            // The address of a variable in its own state space.
            Ok(Op::MovSymbol {
                d,
                symbol: a.to_string(),
            })
        }
        "add" | "sub" | "mul" | "min" | "max" | "div" | "rem" | "and" | "or" | "xor" | "shl"
        | "shr" | "neg" | "abs" | "not" | "mad" | "fma" | "sqrt" | "rcp" => {
            let ty = ty_of(mods)?;
            if ty.is_float() {
                return decode_float(ctx, opcode, base, mods, ops, ty);
            }
            decode_int(ctx, opcode, base, mods, ops, ty)
        }
        "bfe" => {
            only(opcode, mods, &[])?;
            want(ops, 4, opcode)?;
            let ty = ty_of(mods)?;
            if !matches!(ty, Ty::U32 | Ty::S32 | Ty::U64 | Ty::S64) {
                return Err(format!("unsupported `{opcode}`"));
            }
            Ok(Op::Bfe {
                signed: ty.is_signed(),
                w64: ty.bytes() == 8,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], Ty::U32)?,
                c: ctx.src(&ops[3], Ty::U32)?,
            })
        }
        "shf" => {
            only(opcode, mods, &["l", "r", "wrap", "clamp"])?;
            want(ops, 4, opcode)?;
            let left = mods.contains(&"l");
            let wrap = mods.contains(&"wrap");
            Ok(Op::Shf {
                left,
                wrap,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], Ty::B32)?,
                b: ctx.src(&ops[2], Ty::B32)?,
                c: ctx.src(&ops[3], Ty::B32)?,
            })
        }
        "setp" => {
            want(ops, 3, opcode)?;
            if mods.len() != 2 {
                return Err(format!(
                    "unsupported setp form `{opcode}` (boolean combining operand)"
                ));
            }
            if ops[0].contains('|') {
                return Err(format!("unsupported second destination in `{opcode}`"));
            }
            let ty = ty_of(mods)?;
            let cmp = Cmp::from_name(mods[0])
                .ok_or_else(|| format!("unsupported comparison .{}", mods[0]))?;
            let cty =
                CmpTy::of(ty).ok_or_else(|| format!("unsupported comparison type .{}", mods[1]))?;
            if !cmp.valid_for(cty) {
                return Err(format!(
                    "comparison .{} is not defined for .{}",
                    mods[0], mods[1]
                ));
            }
            Ok(Op::Setp {
                cmp,
                ty: cty,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], ty)?,
            })
        }
        "selp" => {
            want(ops, 4, opcode)?;
            only(opcode, mods, &[])?;
            let ty = ty_of(mods)?;
            Ok(Op::Selp {
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], ty)?,
                p: ctx.reg(&ops[3])?,
            })
        }
        "cvt" => {
            want(ops, 2, opcode)?;
            let n = mods.len();
            if n < 2 {
                return Err(format!("`{opcode}` needs two types"));
            }
            let dst = Ty::from_name(mods[n - 2])
                .ok_or_else(|| format!("unsupported type .{}", mods[n - 2]))?;
            let src = Ty::from_name(mods[n - 1])
                .ok_or_else(|| format!("unsupported type .{}", mods[n - 1]))?;
            only(
                opcode,
                &mods[..n - 2],
                &["rn", "rz", "rm", "rp", "rni", "rzi", "rmi", "rpi", "sat"],
            )?;
            let cvt = CvtOp::new(dst, src, rounding(mods), mods.contains(&"sat"))?;
            Ok(Op::Cvt {
                cvt,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], src)?,
            })
        }
        "cvta" => {
            want(ops, 2, opcode)?;
            let to = mods.first() == Some(&"to");
            let space = mods.get(usize::from(to)).copied().unwrap_or("");
            let sp = match space {
                "global" => Space::Global,
                "shared" => Space::Shared,
                _ => return Err(format!("unsupported cvta space .{space}")),
            };
            if mods.len() != usize::from(to) + 2 || !matches!(mods.last(), Some(&"u64")) {
                return Err(format!("unsupported cvta form `{opcode}` (u64 only)"));
            }
            Ok(Op::Cvta {
                to,
                space: sp,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], Ty::U64)?,
            })
        }
        "ld" | "st" => decode_mem(ctx, opcode, base, mods, ops),
        "bra" => {
            only(opcode, mods, &["uni"])?;
            want(ops, 1, opcode)?;
            let target = *ctx
                .labels
                .get(ops[0].as_str())
                .ok_or_else(|| format!("unknown label {}", ops[0]))?;
            Ok(Op::Bra { target })
        }
        "brx" => {
            if mods != ["idx"] && mods != ["idx", "uni"] {
                return Err(format!("unsupported `{opcode}`"));
            }
            want(ops, 2, opcode)?;
            let table = *ctx
                .tables
                .get(ops[1].as_str())
                .ok_or_else(|| format!("{} is not a .branchtargets label", ops[1]))?;
            Ok(Op::BrxIdx {
                idx: ctx.src(&ops[0], Ty::U32)?,
                table,
            })
        }
        "bar" | "barrier" => {
            if !(mods == ["sync"] || mods.is_empty() && base == "bar") {
                return Err(format!("unsupported barrier `{opcode}`"));
            }
            if ops.len() != 1 || ops[0] != "0" {
                return Err(format!(
                    "unsupported barrier operands `{}` (only barrier 0 with the whole block)",
                    ops.join(", ")
                ));
            }
            Ok(Op::Bar)
        }
        "ret" | "exit" => {
            only(opcode, mods, &["uni"])?;
            Ok(Op::Exit)
        }
        "trap" => Ok(Op::Trap),
        "cp" => decode_cp_async(ctx, opcode, mods, ops),
        _ => Err(format!("unsupported instruction `{opcode}`")),
    }
}

fn decode_cp_async(ctx: &DecodeCtx, opcode: &str, mods: &[&str], ops: &[String]) -> DResult<Op> {
    match mods {
        ["async", "commit_group"] => Ok(Op::CpAsyncCommit),
        ["async", "wait_all"] => Ok(Op::CpAsyncWait { n: 0 }),
        ["async", "wait_group"] => {
            want(ops, 1, opcode)?;
            let n = parse_int(&ops[0]).ok_or_else(|| format!("bad group count {}", ops[0]))?;
            Ok(Op::CpAsyncWait { n: n as u32 })
        }
        ["async", "ca" | "cg", "shared", "global"] => {
            if ops.len() != 3 {
                return Err(format!(
                    "unsupported `{opcode}` form (only dst, src, cp-size without src-size)"
                ));
            }
            let size = parse_int(&ops[2]).ok_or_else(|| format!("bad copy size {}", ops[2]))?;
            if ![4, 8, 16].contains(&size) || (mods[1] == "cg" && size != 16) {
                return Err(format!("copy size {size} not allowed for `{opcode}`"));
            }
            Ok(Op::CpAsync {
                dst: ctx.addr(&ops[0])?,
                src: ctx.addr(&ops[1])?,
                size: size as u8,
            })
        }
        _ => Err(format!("unsupported instruction `{opcode}`")),
    }
}

fn decode_int(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
    ty: Ty,
) -> DResult<Op> {
    let w64 = ty.bytes() == 8;
    if ty.bytes() == 2
        && matches!(
            base,
            "add"
                | "sub"
                | "mul"
                | "and"
                | "or"
                | "xor"
                | "shl"
                | "shr"
                | "min"
                | "max"
                | "div"
                | "rem"
        )
        && (base != "mul" || mods.first() == Some(&"lo"))
    {
        only(opcode, mods, if base == "mul" { &["lo"] } else { &[] })?;
        want(ops, 3, opcode)?;
        let bty = if matches!(base, "shl" | "shr") {
            Ty::U32
        } else {
            ty
        };
        return Ok(Op::Int16 {
            op: int_op(base, mods, ty)?,
            d: ctx.dst(&ops[0])?,
            a: ctx.src(&ops[1], ty)?,
            b: ctx.src(&ops[2], bty)?,
        });
    }
    if ty.bytes() < 4 && ty != Ty::Pred {
        return Err(format!("unsupported 8/16-bit integer operation `{opcode}`"));
    }
    match base {
        "not" | "neg" | "abs" => {
            only(opcode, mods, &[])?;
            want(ops, 2, opcode)?;
            let op = match base {
                "not" if ty == Ty::Pred => UnOp::NotPred,
                "not" => UnOp::Not,
                "neg" => UnOp::Neg,
                _ => UnOp::Abs,
            };
            Ok(Op::IntUn {
                op,
                w64,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
            })
        }
        "mad" => {
            want(ops, 4, opcode)?;
            let (d, a, b, c) = (&ops[0], &ops[1], &ops[2], &ops[3]);
            match mods.first().copied() {
                Some("lo") => {
                    only(opcode, mods, &["lo"])?;
                    Ok(Op::MadLo {
                        w64,
                        d: ctx.dst(d)?,
                        a: ctx.src(a, ty)?,
                        b: ctx.src(b, ty)?,
                        c: ctx.src(c, ty)?,
                    })
                }
                Some("wide") if !w64 => {
                    only(opcode, mods, &["wide"])?;
                    let wide = if ty.is_signed() { Ty::S64 } else { Ty::U64 };
                    Ok(Op::MadWide {
                        signed: ty.is_signed(),
                        d: ctx.dst(d)?,
                        a: ctx.src(a, ty)?,
                        b: ctx.src(b, ty)?,
                        c: ctx.src(c, wide)?,
                    })
                }
                _ => Err(format!("unsupported `{opcode}`")),
            }
        }
        "mul" if mods.first() == Some(&"wide") => {
            only(opcode, mods, &["wide"])?;
            want(ops, 3, opcode)?;
            if w64 {
                return Err(format!("unsupported `{opcode}` (64-bit wide)"));
            }
            Ok(Op::MulWide {
                signed: ty.is_signed(),
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], ty)?,
            })
        }
        _ => {
            let allowed: &[&str] = if base == "mul" { &["lo", "hi"] } else { &[] };
            only(opcode, mods, allowed)?;
            if base == "mul" && !(mods.contains(&"lo") || mods.contains(&"hi")) {
                return Err(format!("`{opcode}` needs .lo, .hi or .wide"));
            }
            want(ops, 3, opcode)?;
            if ty == Ty::Pred && !matches!(base, "and" | "or" | "xor") {
                return Err(format!("unsupported predicate operation `{opcode}`"));
            }
            let op = int_op(base, mods, ty)?;
            // Shift amounts are always .u32.
            let bty = if matches!(base, "shl" | "shr") {
                Ty::U32
            } else {
                ty
            };
            Ok(Op::Int {
                op,
                w64,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], ty)?,
                b: ctx.src(&ops[2], bty)?,
            })
        }
    }
}

fn decode_float(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
    ty: Ty,
) -> DResult<Op> {
    let rnd = rounding(mods);
    // Rounding: IEEE round-to-nearest-even only (Rust's float operations), required where
    // PTX requires a rounding modifier.
    let needs_rn = matches!(base, "div" | "sqrt" | "rcp" | "fma" | "mad");
    match rnd {
        Some(Rnd::Rn) => {}
        None if !needs_rn => {}
        None => {
            return Err(format!(
                "`{opcode}` without .rn (approximate forms are unsupported)"
            ));
        }
        Some(_) => return Err(format!("unsupported rounding in `{opcode}` (only .rn)")),
    }
    only(opcode, mods, &["rn"])?;
    let f64_ = ty == Ty::F64;
    let d = ctx.dst(&ops[0])?;
    match base {
        "neg" | "abs" | "sqrt" | "rcp" => {
            want(ops, 2, opcode)?;
            let a = ctx.src(&ops[1], ty)?;
            let op = match base {
                "neg" => F32Op::Neg,
                "abs" => F32Op::Abs,
                "sqrt" => F32Op::Sqrt,
                _ => F32Op::Rcp,
            };
            Ok(if f64_ {
                Op::F64 {
                    op: op.into(),
                    d,
                    a,
                    b: Src::I(0),
                }
            } else {
                Op::F32 {
                    op,
                    d,
                    a,
                    b: Src::I(0),
                }
            })
        }
        "fma" | "mad" => {
            want(ops, 4, opcode)?;
            let (a, b, c) = (
                ctx.src(&ops[1], ty)?,
                ctx.src(&ops[2], ty)?,
                ctx.src(&ops[3], ty)?,
            );
            Ok(if f64_ {
                Op::Fma64 { d, a, b, c }
            } else {
                Op::Fma32 { d, a, b, c }
            })
        }
        _ => {
            want(ops, 3, opcode)?;
            let op = match base {
                "add" => F32Op::Add,
                "sub" => F32Op::Sub,
                "mul" => F32Op::Mul,
                "div" => F32Op::Div,
                "min" => F32Op::Min,
                "max" => F32Op::Max,
                _ => return Err(format!("unsupported float operation `{opcode}`")),
            };
            let (a, b) = (ctx.src(&ops[1], ty)?, ctx.src(&ops[2], ty)?);
            Ok(if f64_ {
                Op::F64 {
                    op: F64Op::from(op),
                    d,
                    a,
                    b,
                }
            } else {
                Op::F32 { op, d, a, b }
            })
        }
    }
}

fn decode_mem(
    ctx: &DecodeCtx,
    opcode: &str,
    base: &str,
    mods: &[&str],
    ops: &[String],
) -> DResult<Op> {
    want(ops, 2, opcode)?;
    let ty = ty_of(mods)?;
    let mut space = Space::Generic;
    let mut vec = 1u8;
    for m in &mods[..mods.len() - 1] {
        match *m {
            "global" => space = Space::Global,
            "shared" => space = Space::Shared,
            "param" => space = Space::Param,
            "nc" if base == "ld" => {}
            "v2" => vec = 2,
            "v4" => vec = 4,
            "weak" => {}
            _ => return Err(format!("unsupported modifier .{m} of `{opcode}`")),
        }
    }
    if ty == Ty::Pred {
        return Err(format!("unsupported `{opcode}`"));
    }
    let size = ty.bytes() as u8;
    let (regs_s, addr_s) = if base == "ld" {
        (&ops[0], &ops[1])
    } else {
        (&ops[1], &ops[0])
    };
    let names: Vec<&str> = if vec > 1 {
        regs_s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .ok_or_else(|| format!("vector operand expected in `{opcode}`"))?
            .split(',')
            .map(str::trim)
            .collect()
    } else {
        vec![regs_s.as_str()]
    };
    if names.len() != vec as usize {
        return Err(format!("`{opcode}` needs {vec} registers"));
    }
    let addr = ctx.addr(addr_s)?;
    if space == Space::Param && !matches!(addr.base, AddrBase::Param(_)) {
        return Err(format!("`{opcode}` from a non-parameter address {addr_s}"));
    }
    if base == "ld" {
        let mut d = [u32::MAX; 4];
        for (k, n) in names.iter().enumerate() {
            d[k] = if *n == "_" { u32::MAX } else { ctx.dst(n)? };
        }
        Ok(Op::Ld {
            space,
            size,
            vec,
            sign: ty.is_signed(),
            d,
            addr,
        })
    } else {
        let mut s = [Src::I(0); 4];
        for (k, n) in names.iter().enumerate() {
            s[k] = ctx.src(n, ty)?;
        }
        Ok(Op::St {
            space,
            size,
            vec,
            s,
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_instruction_names_it_and_its_line() {
        let ptx = ".version 7.0\n.target sm_70\n.address_size 64\n\
.visible .entry k(\n\t.param .u32 k_param_0\n)\n{\n\t.reg .b32 %r<3>;\n\
\tld.param.b32 %r1, [k_param_0];\n\tpopc.b32 %r2, %r1;\n\tret;\n}\n";
        let e = parse_module(ptx).unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        assert!(e.message.contains("popc.b32"), "{e}");
        let e = parse_module(&ptx.replace("popc.b32 %r2, %r1", "add.rz.f32 %r2, %r1, %r1"))
            .unwrap_err();
        assert!(e.message.contains("rounding"), "{e}");
        let e = parse_module(&ptx.replace("popc.b32 %r2, %r1", "add.ftz.f32 %r2, %r1, %r1"))
            .unwrap_err();
        assert!(e.message.contains(".ftz"), "{e}");
    }

    #[test]
    fn params_globals_and_labels() {
        let ptx = ".version 7.0\n.target sm_70\n\
.global .align 8 .b8 tab[8] = {1, 2, 3, 4, 5, 6, 7, 8};\n\
.extern .shared .align 8 .b8 dyn[];\n\
.visible .entry k(\n\t.param .align 4 .b8 k_param_0[12],\n\t.param .align 8 .b8 k_param_1[16],\n\t.param .u32 k_param_2\n)\n{\n\
\t.reg .pred %p<2>;\n\t.reg .b32 %r<3>;\n\t.loc 1 5 3\n$L0:\n\tld.param.b32 %r1, [k_param_2];\n\
\tsetp.eq.b32 %p1, %r1, 0;\n\t@!%p1 bra $L0;\n\tret;\n}\n\t.file 1 \"/x/kernels-gpu/src/a.rs\"\n";
        let m = parse_module(ptx).unwrap();
        let k = m.kernel("k").unwrap();
        assert_eq!(
            k.params,
            [
                ParamDecl { size: 12, align: 4 },
                ParamDecl { size: 16, align: 8 },
                ParamDecl { size: 4, align: 4 }
            ]
        );
        assert_eq!(k.param_offsets, [0, 16, 32]);
        assert_eq!(k.param_bytes, 36);
        assert_eq!(m.globals[0].bytes, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.shared[0].size, None);
        assert!(matches!(
            k.insts[0].op,
            Op::Ld {
                space: Space::Param,
                addr: Addr {
                    base: AddrBase::Param(32),
                    ..
                },
                ..
            }
        ));
        assert!(matches!(k.insts[2].op, Op::Bra { target: 0 }));
        assert_eq!(k.insts[2].guard.map(|g| g.1), Some(true));
        assert_eq!(
            m.source_line(k.pos[0].loc).as_deref(),
            Some("kernels-gpu/src/a.rs:5")
        );
    }
}
