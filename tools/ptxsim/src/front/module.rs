//! Module-level parsing: directives, `.global` and `.shared` variables, `.entry`
//! parameter lists; kernel bodies are handed to the body parser.

use std::collections::HashMap;

use super::body::parse_entry;
use super::inst::{Inst, Ty};
use super::{PResult, ParseError, err};

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
pub(super) fn strip_comment(line: &str) -> &str {
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
pub(super) fn skip_body(lines: &[&str], start: usize) -> PResult<usize> {
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

pub(super) fn parse_align(words: &[&str], ln: usize) -> PResult<u32> {
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
pub(super) fn decl_elem_size(words: &[&str], ln: usize) -> PResult<u32> {
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
pub(super) fn decl_name(s: &str) -> (String, Option<u32>) {
    let s = s.trim_end_matches([';', ',']);
    match s.find('[') {
        Some(b) => {
            let count = s[b + 1..].trim_end_matches(']');
            (s[..b].to_string(), count.parse().ok())
        }
        None => (s.to_string(), Some(1)),
    }
}

pub(super) fn parse_shared(line: &str, ln: usize) -> PResult<SharedVar> {
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

pub(super) fn parse_global(line: &str, ln: usize) -> PResult<GlobalVar> {
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
pub(super) fn parse_int(s: &str) -> Option<u64> {
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

/// Parameters with their names, in declaration order.
pub(super) type NamedParams = Vec<(String, ParamDecl)>;

/// The name and declared parameters of the `.entry` starting at line index `start`, and
/// the index of the line holding the closing `)`.
pub(super) fn parse_params(lines: &[&str], start: usize) -> PResult<(String, NamedParams, usize)> {
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
