//! The import rule of docs/architecture.md, checked on the source text of every crate:
//! - no import loop between files of different folders (two files in different folders
//!   never reach each other through a chain of imports);
//! - inside a crate whose layers are listed below, an import goes only to its own layer or
//!   one below it.
//!
//! Across crates Cargo enforces the rule (a dependency cycle does not build); this test
//! covers the modules inside each crate. It reads `use` items and `crate::`/`super::`/
//! `self::` paths in code (comments, and so intra-doc links, are not imports), resolves
//! each to the file of the module it names (a `mod.rs` that re-exports a child depends on
//! that child), and reports the offending files by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A crate's source folder and its layers, top first: a file belongs to the first layer
/// with a prefix of its module path (`"backend/pipeline"` matches
/// `backend/pipeline/mod.rs` and `backend/pipeline/tests.rs`; `""` matches everything).
struct CrateLayers {
    src: &'static str,
    layers: &'static [&'static [&'static str]],
}

const CRATES: &[CrateLayers] = &[
    CrateLayers {
        src: "src",
        layers: &[&["main", "lib"], &["cli"], &["commands", "train"]],
    },
    // The order of host/src/lib.rs's "Layers" section.
    CrateLayers {
        src: "host/src",
        layers: &[
            &["lib"],
            &["gradcheck"],
            &["layer", "operator"],
            &["backend/mod"],
            &[
                "backend/cpu",
                "backend/emulated",
                "backend/ptx",
                "backend/cuda",
            ],
            &["backend/pipeline"],
            &["backend/device"],
            &["backend/launch", "backend/abi", "backend/flops"],
            &["reference"],
            &["types"],
            &["margin", "error", "npy_io"],
        ],
    },
    CrateLayers {
        src: "kernels-gpu/src",
        layers: &[
            &["lib"],
            &[
                "forward",
                "input_grad",
                "weight_grad",
                "row_norms",
                "normalise",
                "ladder",
                "demo",
            ],
            &["mainloop"],
            &["margin_math", "params"],
            &["device"],
            &["emulator/mod", "emulator/launch"],
            &[
                "emulator/views",
                "emulator/buffer",
                "emulator/shared",
                "emulator/sync",
                "emulator/pool",
            ],
            &["emulator/context"],
            &["emulator/config", "emulator/error"],
            &["device_copy"],
        ],
    },
    CrateLayers {
        src: "tools/ptxsim/src",
        layers: &[&["lib"], &["machine", "stats"], &["front"], &["arch"]],
    },
    CrateLayers {
        src: "tools/ptx-tools/src",
        layers: &[
            &["lib"],
            &["check"],
            &["report"],
            &["sass"],
            &["occupancy", "ptxas", "compile", "error", "workspace"],
        ],
    },
];

/// One source file: its module path (`["backend", "cuda", "mod"]` for
/// `backend/cuda/mod.rs`) and its text without comments.
struct SourceFile {
    rel: PathBuf,
    module: Vec<String>,
    code: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text with `//` and `/* */` comments blanked (string literals are rare enough in
/// import positions to be ignored).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut prev = ' ';
            for c in chars.by_ref() {
                if prev == '*' && c == '/' {
                    break;
                }
                prev = c;
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The byte offset just past the `}` that closes the `{` at `open` (the end of `code` if
/// it is never closed).
fn block_end(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The code without `#[cfg(test)] mod name { ... }` blocks: a unit-test module written
/// inside a file tests that file (its `super::` is the file itself) and is not part of the
/// layering. Test modules in files of their own (`mod tests;`) are checked like any file.
fn without_inline_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_inline_mod = trimmed.starts_with("mod ")
            && trimmed
                .find(['{', ';'])
                .is_some_and(|i| trimmed.as_bytes()[i] == b'{');
        if !is_inline_mod {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let open = after.find('{').expect("checked above");
        rest = &after[block_end(after, open)..];
    }
    out.push_str(rest);
    out
}

fn read_crate(src: &str) -> Vec<SourceFile> {
    let dir = Path::new(ROOT).join(src);
    let mut paths = Vec::new();
    rust_files(&dir, &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&dir).expect("under src").to_path_buf();
            let module = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            SourceFile {
                rel,
                module,
                code: without_inline_test_modules(&strip_comments(&text)),
            }
        })
        .collect()
}

/// The module a file defines, as a path of names: `backend/cuda/mod.rs` and
/// `backend/cuda.rs` both define `backend::cuda`; `lib.rs` and `main.rs` the crate root.
fn defined_module(module: &[String]) -> Vec<String> {
    match module.last().map(String::as_str) {
        Some("mod") => module[..module.len() - 1].to_vec(),
        Some("lib" | "main") if module.len() == 1 => Vec::new(),
        _ => module.to_vec(),
    }
}

/// Every `use` tree flattened into full paths (`use a::{b, c::d};` gives `a::b`, `a::c::d`).
fn use_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(pos) = find_use(rest) {
        let after = &rest[pos + 4..];
        let end = after.find(';').unwrap_or(after.len());
        flatten("", after[..end].trim(), &mut paths);
        rest = &after[end..];
    }
    paths
}

/// The code with every `use` item cut out (its paths are read by [`use_paths`]).
fn without_use_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(pos) = find_use(rest) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        rest = &after[after.find(';').map_or(after.len(), |e| e + 1)..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the next `use ` keyword that starts an item.
fn find_use(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("use ") {
        let at = from + i;
        let before = s[..at].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ';' || c == '}') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

fn flatten(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        // A leaf: `a::b`, `a::b as c`, `a::*`.
        None => {
            let leaf = tree.split_whitespace().next().unwrap_or("");
            out.push(format!("{prefix}{leaf}"));
        }
        Some(open) => {
            let head = format!("{prefix}{}", tree[..open].trim());
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        flatten(&head, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if !inner[start..].trim().is_empty() {
                flatten(&head, &inner[start..], out);
            }
        }
    }
}

/// `crate::a::b`, `super::x`, `self::y` paths written in code outside `use` items.
fn inline_paths(code: &str) -> Vec<String> {
    let code = &without_use_items(code);
    let mut paths = Vec::new();
    for keyword in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(keyword) {
            let at = from + i;
            let before = code[..at].chars().next_back();
            from = at + keyword.len();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            if path.contains("::") {
                paths.push(path.to_string());
            }
        }
    }
    paths
}

/// `path` as written in the module `here`, made absolute (segments from the crate root);
/// `None` for a path into another crate.
fn absolute(
    here: &[String],
    path: &str,
    by_module: &BTreeMap<Vec<String>, usize>,
) -> Option<Vec<String>> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = match *segments.first()? {
        "crate" => {
            segments.remove(0);
            Vec::new()
        }
        "self" => {
            segments.remove(0);
            here.to_vec()
        }
        "super" => {
            let mut base = here.to_vec();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
            base
        }
        // A child module of this one (`use child::x;` in a mod.rs), else another crate.
        first => {
            let mut child = here.to_vec();
            child.push(first.to_string());
            if !by_module.contains_key(&child) {
                return None;
            }
            here.to_vec()
        }
    };
    base.extend(segments.iter().map(|s| s.to_string()));
    Some(base)
}

/// The crate's modules by path, and for each file the names its `use` items bring into
/// its namespace (`use a::b::C;` maps `C` to `a::b::C`), so that `super::C` or
/// `crate::m::C` can be followed to the file that defines `C`.
struct Resolver {
    by_module: BTreeMap<Vec<String>, usize>,
    names: Vec<BTreeMap<String, Vec<String>>>,
}

impl Resolver {
    fn new(files: &[SourceFile]) -> Self {
        let by_module: BTreeMap<Vec<String>, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (defined_module(&f.module), i))
            .collect();
        let names = files
            .iter()
            .map(|f| {
                let here = defined_module(&f.module);
                use_paths(&f.code)
                    .iter()
                    .filter_map(|p| absolute(&here, p, &by_module))
                    .filter(|abs| abs.last().is_some_and(|n| n != "*" && n != "self"))
                    .map(|abs| (abs.last().cloned().unwrap_or_default(), abs))
                    .collect()
            })
            .collect();
        let mut resolver = Resolver { by_module, names };
        // `#[macro_export] macro_rules! m` is named `crate::m` wherever it is written.
        for f in files {
            let mut rest = f.code.as_str();
            while let Some(at) = rest.find("#[macro_export]") {
                rest = &rest[at..];
                if let Some(m) = rest.find("macro_rules!") {
                    let name: String = rest[m + "macro_rules!".len()..]
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let mut path = defined_module(&f.module);
                    path.push(name.clone());
                    if let Some(root) = resolver.by_module.get(&Vec::new()).copied() {
                        resolver.names[root].insert(name, path);
                    }
                }
                rest = &rest["#[macro_export]".len()..];
            }
        }
        resolver
    }

    /// The file that defines what the absolute path `abs` names: the longest module
    /// prefix, followed through the `use` items of that module (a re-export) when the next
    /// segment is a name it imports.
    fn file_of(&self, abs: &[String], depth: usize) -> Option<usize> {
        let n = (0..=abs.len())
            .rev()
            .find(|&n| self.by_module.contains_key(&abs[..n]))?;
        let file = self.by_module[&abs[..n]];
        if depth < 8 {
            if let Some(next) = abs.get(n).and_then(|name| self.names[file].get(name)) {
                let mut target = next.clone();
                target.extend_from_slice(&abs[n + 1..]);
                if target != abs {
                    return self.file_of(&target, depth + 1).or(Some(file));
                }
            }
        }
        Some(file)
    }
}

/// The code of a file split at inline modules (`mod name { ... }`): each piece with the
/// module path it is written in, relative to the file's module, so that a `super::` inside
/// an inline module means the file's module.
fn inline_modules(code: &str) -> Vec<(Vec<String>, String)> {
    let mut outer = String::with_capacity(code.len());
    let mut pieces = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("mod ") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + 4..];
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let tail = after.trim_start()[name.len()..].trim_start();
        let keyword = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !keyword || name.is_empty() || !tail.starts_with('{') {
            outer.push_str(&rest[..at + 4]);
            rest = after;
            continue;
        }
        outer.push_str(&rest[..at]);
        let open = at + 4 + (after.len() - tail.len());
        let end = block_end(rest, open);
        let body = &rest[open + 1..end.saturating_sub(1).max(open + 1)];
        for (mut path, piece) in inline_modules(body) {
            path.insert(0, name.clone());
            pieces.push((path, piece));
        }
        rest = &rest[end..];
    }
    outer.push_str(rest);
    pieces.insert(0, (Vec::new(), outer));
    pieces
}

/// The files (indices) a file imports: each path resolved to the file that defines it.
fn imports(files: &[SourceFile], index: usize) -> BTreeSet<usize> {
    let resolver = Resolver::new(files);
    let mut targets = BTreeSet::new();
    for (inner, code) in inline_modules(&files[index].code) {
        let mut here = defined_module(&files[index].module);
        here.extend(inner);
        targets.extend(
            use_paths(&code)
                .into_iter()
                .chain(inline_paths(&code))
                .filter_map(|p| absolute(&here, &p, &resolver.by_module))
                .filter_map(|abs| resolver.file_of(&abs, 0))
                .filter(|&t| t != index),
        );
    }
    targets
}

fn folder(file: &SourceFile) -> PathBuf {
    file.rel.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Strongly connected components of the import graph (Tarjan), as sets of file indices.
fn cycles(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.edges[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let n = edges.len();
    let mut t = Tarjan {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.found
}

/// The layer of a file: the position of the first layer with a prefix of its module path.
fn layer_of(layers: &[&[&str]], module: &[String]) -> Option<usize> {
    let path = module.join("/");
    layers.iter().position(|layer| {
        layer
            .iter()
            .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
    })
}

/// Every violation of the rule in one crate, one line each.
fn violations(krate: &CrateLayers) -> Vec<String> {
    check(krate.src, &read_crate(krate.src), krate.layers)
}

/// The rule applied to `files` of the crate in folder `src`.
fn check(src: &str, files: &[SourceFile], layers: &[&[&str]]) -> Vec<String> {
    let edges: Vec<BTreeSet<usize>> = (0..files.len()).map(|i| imports(files, i)).collect();
    let name = |i: usize| format!("{src}/{}", files[i].rel.display());
    let mut problems = Vec::new();
    for component in cycles(&edges) {
        let folders: BTreeSet<PathBuf> = component.iter().map(|&i| folder(&files[i])).collect();
        if folders.len() > 1 {
            let mut names: Vec<String> = component.iter().map(|&i| name(i)).collect();
            names.sort();
            problems.push(format!(
                "import loop across folders: {}",
                names.join(" <-> ")
            ));
        }
    }
    for (from, targets) in edges.iter().enumerate() {
        let Some(from_layer) = layer_of(layers, &files[from].module) else {
            problems.push(format!(
                "{} is in no layer of tests/layering.rs",
                name(from)
            ));
            continue;
        };
        for &to in targets {
            match layer_of(layers, &files[to].module) {
                Some(to_layer) if to_layer < from_layer => problems.push(format!(
                    "upward import: {} (layer {from_layer}) imports {} (layer {to_layer})",
                    name(from),
                    name(to)
                )),
                _ => {}
            }
        }
    }
    problems
}

#[test]
fn imports_go_downward_and_never_loop_between_folders() {
    let problems: Vec<String> = CRATES.iter().flat_map(violations).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn paths_are_found_in_use_trees_and_code_but_not_comments() {
    let code = strip_comments(
        "use crate::{a::b, c::{d, e as f}};\n// use crate::nope;\n/// [`crate::doc`]\n\
         fn g() { super::h::i(); let x = crate::j::K; }\n",
    );
    assert_eq!(
        use_paths(&code),
        ["crate::a::b", "crate::c::d", "crate::c::e"]
    );
    let mut inline = inline_paths(&code);
    inline.sort();
    assert_eq!(inline, ["crate::j::K", "super::h::i"]);
}

/// The checker finds a planted loop between folders and a planted upward import.
#[test]
fn a_loop_between_folders_and_an_upward_import_are_reported() {
    let file = |rel: &str, code: &str| SourceFile {
        rel: PathBuf::from(rel),
        module: PathBuf::from(rel)
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect(),
        code: code.to_string(),
    };
    let files = [
        file("lib.rs", "pub mod a; pub mod b;"),
        file("a/mod.rs", "use crate::b::y;"),
        file("b/mod.rs", "mod y; pub use y::*;"),
        file("b/y.rs", "use crate::a::X;"),
    ];
    let edges: Vec<BTreeSet<usize>> = (0..files.len()).map(|i| imports(&files, i)).collect();
    assert_eq!(edges[1], BTreeSet::from([3]), "a -> b/y");
    assert_eq!(edges[2], BTreeSet::from([3]), "b re-exports y");
    assert_eq!(edges[3], BTreeSet::from([1]), "b/y -> a");

    let problems = check("src", &files, &[&["lib"], &["a"], &["b"]]);
    assert_eq!(
        problems,
        [
            "import loop across folders: src/a/mod.rs <-> src/b/y.rs",
            "upward import: src/b/y.rs (layer 2) imports src/a/mod.rs (layer 1)",
        ]
    );
    // With b above a, only the loop is left.
    let problems = check("src", &files, &[&["lib"], &["b"], &["a"]]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[1].starts_with("upward import: src/a/mod.rs"),
        "{problems:?}"
    );
    // Without the edge back, nothing.
    let mut fixed = files;
    fixed[3].code.clear();
    assert!(check("src", &fixed, &[&["lib"], &["a"], &["b"]]).is_empty());
}
