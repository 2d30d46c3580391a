//! Every relative link in README.md and docs/*.md resolves: the target file exists and,
//! for a `#anchor` into a Markdown file (the same file included), a heading of that file
//! produces the anchor under GitHub's rule. No network: http(s) and mailto links are
//! skipped. Intra-doc links of the Rust API are checked by `cargo doc` with warnings
//! denied (.ci/run); this test covers the prose.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A link found in a Markdown file: 1-based line number and the raw target.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// Replaces inline code spans (`` `...` ``, any number of backticks) by spaces, so that
/// text like `` `a[i](j)` `` is not taken for a link. Column positions are kept.
fn blank_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The span closes at the next run of exactly the same length.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for c in &mut out[i..j + run] {
                    *c = ' ';
                }
                i = j + run;
            }
            None => i += run,
        }
    }
    out.into_iter().collect()
}

/// Whether a line opens or closes a fenced code block (``` or ~~~, up to 3 spaces indent).
fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    line.len() - t.len() <= 3 && (t.starts_with("```") || t.starts_with("~~~"))
}

/// The link targets of a Markdown text: inline links and images `[text](target)`,
/// `![alt](target "title")`, `[text](<target>)`, and reference definitions
/// `[label]: target`. Fenced code blocks and inline code spans are skipped.
fn extract_links(markdown: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut in_fence = false;
    for (index, raw) in markdown.lines().enumerate() {
        let line_no = index + 1;
        if is_fence(raw) {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let line = blank_code_spans(raw);
        // Reference definition: `[label]: target`.
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find("]:")
            && !trimmed[..close].contains("](")
        {
            let rest = trimmed[close + 2..].trim();
            if let Some(target) = first_token(rest) {
                links.push(Link {
                    line: line_no,
                    target,
                });
            }
            continue;
        }
        let bytes = line.as_bytes();
        let mut from = 0;
        while let Some(pos) = line[from..].find("](") {
            let start = from + pos + 2;
            // The target ends at the parenthesis that balances the opening one.
            let mut depth = 1;
            let mut end = None;
            for (k, &b) in bytes.iter().enumerate().skip(start) {
                match b {
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(k);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { break };
            if let Some(target) = first_token(line[start..end].trim()) {
                links.push(Link {
                    line: line_no,
                    target,
                });
            }
            from = end + 1;
        }
    }
    links
}

/// The destination part of a link body: `<dest>` or the text up to the first blank (a
/// title may follow).
fn first_token(body: &str) -> Option<String> {
    if let Some(rest) = body.strip_prefix('<') {
        return rest.find('>').map(|e| rest[..e].to_string());
    }
    body.split_whitespace().next().map(str::to_string)
}

/// The anchor GitHub gives a heading text: inline markup and punctuation dropped (letters,
/// digits, '-', '_' and spaces kept), lowercased, spaces turned into '-'.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the ATX headings of a Markdown text produce, with GitHub's `-1`, `-2`
/// suffixes for repeated headings. Headings inside fenced code blocks do not count.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if is_fence(line) {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let t = line.trim_start();
        if line.len() - t.len() > 3 {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&level) {
            continue;
        }
        let text = &t[level..];
        if !(text.is_empty() || text.starts_with(' ') || text.starts_with('\t')) {
            continue;
        }
        // A closing sequence of '#' is not part of the heading.
        let text = text.trim().trim_end_matches('#').trim_end();
        // Link markup in a heading keeps only its text: `[a](b)` reads as `a`.
        let text = strip_link_targets(text);
        let base = slug(&text);
        let n = seen.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        out.insert(anchor);
    }
    out
}

/// Removes the `(target)` part of inline links so that only their text is slugged.
fn strip_link_targets(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find("](") {
        out.push_str(&rest[..pos + 1]);
        match rest[pos + 2..].find(')') {
            Some(e) => rest = &rest[pos + 2 + e + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the `%XX` escapes a link path may hold (`%20` for a space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a target leaves the repository (a URL scheme): not checked here.
fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:")
        || lower.contains("://")
}

/// Checks every relative link of `file` (whose text is `text`); `read` gives the text of
/// another Markdown file for its anchors. Returns one message per broken link, naming the
/// file, line and link.
fn check_file(
    file: &Path,
    display: &str,
    text: &str,
    read: &mut dyn FnMut(&Path) -> Option<String>,
) -> Vec<String> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut errors = Vec::new();
    for link in extract_links(text) {
        if is_external(&link.target) {
            continue;
        }
        let (path_part, anchor) = match link.target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (link.target.as_str(), None),
        };
        let where_ = format!("{display}:{}: link `{}`", link.line, link.target);
        let (target_path, target_text) = if path_part.is_empty() {
            (file.to_path_buf(), Some(text.to_string()))
        } else {
            let p = dir.join(percent_decode(path_part));
            if !p.exists() {
                errors.push(format!("{where_}: no file {}", p.display()));
                continue;
            }
            let is_md = p.extension().is_some_and(|e| e == "md");
            let t = if is_md && anchor.is_some() {
                read(&p)
            } else {
                None
            };
            (p, t)
        };
        let Some(anchor) = anchor else { continue };
        let is_md = target_path.extension().is_some_and(|e| e == "md");
        if !is_md {
            continue;
        }
        let Some(target_text) = target_text else {
            errors.push(format!("{where_}: cannot read {}", target_path.display()));
            continue;
        };
        if !anchors(&target_text).contains(&percent_decode(anchor).to_lowercase()) {
            errors.push(format!(
                "{where_}: no heading of {} gives the anchor `#{anchor}`",
                target_path.display()
            ));
        }
    }
    errors
}

/// README.md and every docs/*.md of the repository.
fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn readme_and_docs_links_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut read = |p: &Path| fs::read_to_string(p).ok();
    let mut errors = Vec::new();
    let mut checked = 0;
    for file in doc_files(root) {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let display = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        checked += extract_links(&text)
            .iter()
            .filter(|l| !is_external(&l.target))
            .count();
        errors.extend(check_file(&file, &display, &text, &mut read));
    }
    assert!(
        checked > 0,
        "no relative link found: is the extractor broken?"
    );
    assert!(
        errors.is_empty(),
        "{} broken link(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Two commands"), "two-commands");
    assert_eq!(
        slug("What `cargo run --release` prints"),
        "what-cargo-run---release-prints"
    );
    assert_eq!(
        slug("SASS report: what the GPU executes, next to cuBLAS"),
        "sass-report-what-the-gpu-executes-next-to-cublas"
    );
    assert_eq!(
        slug("The margin family: SphereFace, CosFace, ArcFace, combined margin"),
        "the-margin-family-sphereface-cosface-arcface-combined-margin"
    );
    assert_eq!(
        slug("Finding the main K loop (`sass_loops.rs`)"),
        "finding-the-main-k-loop-sass_loopsrs"
    );
    let a = anchors("# A\n## A\n```\n# not a heading\n```\n### B ##\n");
    assert_eq!(
        a,
        ["a", "a-1", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>()
    );
}

#[test]
fn extractor_finds_links_and_skips_code() {
    let text = "See [a](docs/a.md#x) and ![img](images/p.png \"t\").\n\
                `[not](a link)` and\n\
                ```\n[nor](this)\n```\n\
                [ref]: other.md\n\
                [web](https://example.com) [mail](mailto:a@b.c) [same](#here)\n";
    let got: Vec<(usize, String)> = extract_links(text)
        .into_iter()
        .map(|l| (l.line, l.target))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "docs/a.md#x".to_string()),
            (1, "images/p.png".to_string()),
            (6, "other.md".to_string()),
            (7, "https://example.com".to_string()),
            (7, "mailto:a@b.c".to_string()),
            (7, "#here".to_string()),
        ]
    );
}

/// The check must be able to fail: a missing file, a missing anchor in another file and a
/// missing same-file anchor are each reported with file, line and link; good links and
/// external ones are not.
#[test]
fn broken_links_are_reported() {
    let dir = std::env::temp_dir().join(format!("doc_links_test_{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other.md");
    fs::write(&other, "# Other page\n## Real section\n").unwrap();
    let page = dir.join("page.md");
    let text = "# Page\n\
                [ok](other.md#real-section) [ok too](#page) [web](https://nowhere.invalid/x)\n\
                [gone](missing.md)\n\
                [bad anchor](other.md#no-such-section)\n\
                [bad local](#nowhere)\n";
    fs::write(&page, text).unwrap();
    let mut read = |p: &Path| fs::read_to_string(p).ok();
    let errors = check_file(&page, "page.md", text, &mut read);
    fs::remove_dir_all(&dir).ok();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("page.md:3: link `missing.md`: no file"));
    assert!(errors[1].starts_with("page.md:4: link `other.md#no-such-section`: no heading"));
    assert!(errors[2].starts_with("page.md:5: link `#nowhere`: no heading"));
}
