//! The layering of `src/`, kept by a test (after rust-analyzer's tidy
//! tests): every `crate::…`, `super::…` and child-module path in every
//! file is resolved to the module it names, and
//!
//! - an arrow may only point down the layers (entry → transport → service
//!   → foundation) or sideways inside one layer;
//! - the two transports (`api`, `pxe`) never use each other;
//! - no circle of imports between the layer's modules (`service::provision`,
//!   `foundation::store`, …), nor between the files inside one module
//!   (a file may use its parent module's items; siblings may not use each
//!   other both ways).
//!
//! Each failure names the file and the path it uses. The checker itself is
//! tested on small made-up trees, so a checker that sees nothing fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 4] = ["entry", "transport", "service", "foundation"];

/// One source file: its module path (`["service", "provision", "run"]`)
/// and its text.
struct File {
    path: String,
    module: Vec<String>,
    text: String,
}

/// A use of another module: the file, the path as written and the module
/// it resolves to.
#[derive(Debug, Clone)]
struct Edge {
    file: String,
    written: String,
    from: Vec<String>,
    to: Vec<String>,
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn read_tree(root: &Path) -> Vec<File> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                if rel == Path::new("main.rs") {
                    continue; // the binary: a one-line call into entry::cli
                }
                out.push(File {
                    path: format!("src/{}", rel.display()),
                    module: module_of(&rel),
                    text: std::fs::read_to_string(&path).expect("read a source file"),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// `text` with comments and the insides of string and char literals blanked
/// (same length, newlines kept), so paths are only found in code.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in out.iter_mut().take(to).skip(from) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            // Raw string: r"…" or r#"…"#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..]
                .find(&close)
                .map_or(b.len(), |p| start + p + close.len());
            blank(&mut out, start, end.saturating_sub(close.len()));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            let close = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 boundaries of ASCII delimiters")
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The inline `mod name { … }` blocks of `code`: (start, end) byte spans.
fn inline_mods(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("mod ") {
        let at = from + p;
        from = at + 4;
        if at > 0 && is_ident_byte(b[at - 1]) {
            continue;
        }
        let mut j = at + 4;
        while j < b.len() && is_ident_byte(b[j]) {
            j += 1;
        }
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b'{') {
            continue; // `mod x;`: a file of its own
        }
        let mut depth = 0usize;
        let mut k = j;
        while k < b.len() {
            match b[k] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        spans.push((j, k));
    }
    spans
}

/// Expands the tree of one `use` (without `use` and `;`) into full paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        if let Some(open) = t.find('{') {
            let head = &t[..open];
            let inner = &t[open + 1..t.rfind('}').unwrap_or(t.len())];
            let mut depth = 0;
            let mut start = 0;
            let ib = inner.as_bytes();
            for (i, &c) in ib.iter().enumerate() {
                match c {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 0 => {
                        go(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&format!("{prefix}{head}"), &inner[start..], out);
        } else if !t.is_empty() {
            let t = t.split(" as ").next().unwrap_or(t);
            let t = t
                .split("as")
                .next()
                .filter(|_| t.contains("::"))
                .unwrap_or(t);
            out.push(format!("{prefix}{t}"));
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out.into_iter()
        .map(|p| p.trim_end_matches("::self").to_string())
        .collect()
}

/// Every module path a file uses: (position, path as written).
fn paths_in(code: &str) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut in_use = vec![false; b.len()];
    // `use …;` statements, expanded.
    let mut from = 0;
    while let Some(p) = code[from..].find("use ") {
        let at = from + p;
        from = at + 4;
        if at > 0 && is_ident_byte(b[at - 1]) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        for flag in in_use.iter_mut().take(at + end).skip(at) {
            *flag = true;
        }
        for path in expand_use(&code[at + 4..at + end]) {
            out.push((at, path));
        }
    }
    // Paths in code: crate::…, super::…, self::… outside `use`.
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(p) = code[from..].find(start) {
            let at = from + p;
            from = at + start.len();
            if in_use[at] || (at > 0 && (is_ident_byte(b[at - 1]) || b[at - 1] == b':')) {
                continue;
            }
            let mut end = at;
            while end < b.len() && (is_ident_byte(b[end]) || b[end] == b':') {
                end += 1;
            }
            out.push((at, code[at..end].trim_end_matches(':').to_string()));
        }
    }
    out
}

/// Resolves `written` (used in `file` at a place inside `depth` inline
/// modules) to the deepest module of `modules` it names.
fn resolve(
    written: &str,
    file: &[String],
    depth: usize,
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let segs: Vec<&str> = written.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, rest): (Vec<String>, &[&str]) = match segs.first().copied() {
        Some("crate") => (Vec::new(), &segs[1..]),
        Some("self") => (file.to_vec(), &segs[1..]),
        Some("super") => {
            let mut base = file.to_vec();
            let mut n = segs.iter().take_while(|s| **s == "super").count();
            // Inside an inline `mod tests { … }`, the first `super`s lead
            // back to the file's own module.
            let skip = n.min(depth);
            n -= skip;
            for _ in 0..n {
                base.pop()?;
            }
            (
                base,
                &segs[segs.iter().take_while(|s| **s == "super").count()..],
            )
        }
        Some(first) => {
            // A child module named without `self::` (2018 paths).
            let mut child = file.to_vec();
            child.push(first.to_string());
            if depth == 0 && modules.contains(&child) {
                (file.to_vec(), &segs[..])
            } else {
                return None; // an external crate or a local item
            }
        }
        None => return None,
    };
    let mut deepest = None;
    if modules.contains(&base) {
        deepest = Some(base.clone());
    }
    for s in rest {
        base.push(s.to_string());
        if modules.contains(&base) {
            deepest = Some(base.clone());
        }
    }
    deepest
}

fn edges(files: &[File]) -> Vec<Edge> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut out = Vec::new();
    for f in files {
        let code = code_only(&f.text);
        let mods = inline_mods(&code);
        for (at, written) in paths_in(&code) {
            let depth = mods.iter().filter(|(s, e)| *s < at && at < *e).count();
            if let Some(to) = resolve(&written, &f.module, depth, &modules) {
                if to != f.module {
                    out.push(Edge {
                        file: f.path.clone(),
                        written: written.clone(),
                        from: f.module.clone(),
                        to,
                    });
                }
            }
        }
    }
    out
}

fn rank(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().map(String::as_str) == Some(l))
}

/// The layer's module of a path: its first two segments (`service::power`).
fn unit(module: &[String]) -> Vec<String> {
    module.iter().take(2).cloned().collect()
}

/// Arrows that point up a layer or between the transports.
fn layer_violations(edges: &[Edge]) -> Vec<String> {
    let mut out = Vec::new();
    for e in edges {
        let (Some(from), Some(to)) = (rank(&e.from), rank(&e.to)) else {
            continue;
        };
        if to < from {
            out.push(format!(
                "{} uses {} ({} → {}: points up a layer)",
                e.file, e.written, LAYERS[from], LAYERS[to]
            ));
        } else if from == 1 && to == 1 && unit(&e.from) != unit(&e.to) {
            out.push(format!(
                "{} uses {} (transport {} → transport {}: the transports never use each other)",
                e.file,
                e.written,
                e.from.get(1).map_or("", String::as_str),
                e.to.get(1).map_or("", String::as_str)
            ));
        }
    }
    out
}

/// Strongly connected parts (more than one node) of a graph.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    // Kosaraju, small graphs.
    let nodes: Vec<Vec<String>> = graph
        .keys()
        .cloned()
        .chain(graph.values().flatten().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        seen: &mut BTreeSet<Vec<String>>,
        order: &mut Vec<Vec<String>>,
    ) {
        if !seen.insert(n.clone()) {
            return;
        }
        for m in g.get(n).into_iter().flatten() {
            visit(m, g, seen, order);
        }
        order.push(n.clone());
    }
    for n in &nodes {
        visit(n, graph, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (a, bs) in graph {
        for b in bs {
            reversed.entry(b.clone()).or_default().insert(a.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for n in order.iter().rev() {
        if assigned.contains(n) {
            continue;
        }
        let mut part = Vec::new();
        let mut stack = vec![n.clone()];
        while let Some(m) = stack.pop() {
            if !assigned.insert(m.clone()) {
                continue;
            }
            part.push(m.clone());
            for p in reversed.get(&m).into_iter().flatten() {
                stack.push(p.clone());
            }
        }
        if part.len() > 1 {
            part.sort();
            out.push(part);
        }
    }
    out
}

fn name(m: &[String]) -> String {
    m.join("::")
}

/// Circles between the layer's modules, and between files of one module
/// (a file using its own ancestors does not count).
fn circle_violations(edges: &[Edge]) -> Vec<String> {
    let mut out = Vec::new();
    let mut units: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut files: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for e in edges {
        let (a, b) = (unit(&e.from), unit(&e.to));
        if a != b {
            units.entry(a).or_default().insert(b);
        }
        if !e.from.starts_with(&e.to) {
            files
                .entry(e.from.clone())
                .or_default()
                .insert(e.to.clone());
        }
    }
    let witness = |part: &[Vec<String>], by_unit: bool| -> Vec<String> {
        edges
            .iter()
            .filter(|e| {
                let (a, b) = if by_unit {
                    (unit(&e.from), unit(&e.to))
                } else {
                    (e.from.clone(), e.to.clone())
                };
                a != b && part.contains(&a) && part.contains(&b)
            })
            .map(|e| format!("{} uses {}", e.file, e.written))
            .collect()
    };
    for part in circles(&units) {
        out.push(format!(
            "modules in a circle: {} ({})",
            part.iter().map(|m| name(m)).collect::<Vec<_>>().join(" ↔ "),
            witness(&part, true).join("; ")
        ));
    }
    // Circles across modules were named above; here, those inside one.
    for part in circles(&files)
        .into_iter()
        .filter(|p| p.iter().all(|m| unit(m) == unit(&p[0])))
    {
        out.push(format!(
            "files in a circle: {} ({})",
            part.iter().map(|m| name(m)).collect::<Vec<_>>().join(" ↔ "),
            witness(&part, false).join("; ")
        ));
    }
    out
}

fn check(files: &[File]) -> Vec<String> {
    let e = edges(files);
    let mut out = layer_violations(&e);
    out.extend(circle_violations(&e));
    out
}

#[test]
fn layers_point_down_and_no_module_is_in_a_circle() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&root);
    for f in &files {
        if f.module.is_empty() {
            continue; // lib.rs
        }
        assert!(
            rank(&f.module).is_some(),
            "{} is outside the four layers (src/entry, src/transport, src/service, src/foundation): put it in the layer it belongs to",
            f.path
        );
    }
    let e = edges(&files);
    // The checker sees the real arrows (a blind checker would pass anything).
    assert!(
        e.iter()
            .any(|e| name(&e.from) == "service::provision::run"
                && name(&e.to) == "foundation::store"),
        "the checker found no use of the store by provisioning: it is not reading the code"
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "layering broken:\n  {}",
        problems.join("\n  ")
    );
}

fn tree(files: &[(&str, &str)]) -> Vec<File> {
    files
        .iter()
        .map(|(path, text)| File {
            path: format!("src/{path}"),
            module: module_of(Path::new(path)),
            text: text.to_string(),
        })
        .collect()
}

#[test]
fn the_checker_names_an_upward_import_a_transport_pair_and_circles() {
    let files = tree(&[
        ("lib.rs", "pub mod foundation; pub mod service; pub mod transport;"),
        ("foundation/mod.rs", "pub mod store;"),
        (
            "foundation/store.rs",
            "use crate::service::app::App; // the bad one\nfn f() { let _ = \"crate::transport::api\"; }",
        ),
        ("service/mod.rs", "pub mod app; pub mod power; pub mod scan;"),
        ("service/app.rs", "use crate::foundation::store;"),
        ("service/power.rs", "fn f() { crate::service::scan::go(); }"),
        ("service/scan.rs", "use super::power::{self, x};"),
        ("transport/mod.rs", "pub mod api; pub mod pxe;"),
        ("transport/api/mod.rs", "mod a; mod b;\nuse crate::transport::pxe::http;"),
        ("transport/api/a.rs", "use super::b::thing;"),
        (
            "transport/api/b.rs",
            "use super::{a::other, Call};\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::a;\n}",
        ),
        ("transport/pxe/mod.rs", "pub mod http;"),
        ("transport/pxe/http.rs", "use crate::service::app::App;"),
    ]);
    let problems = check(&files);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("src/foundation/store.rs uses crate::service::app::App (foundation → service: points up a layer)"),
        "{problems:#?}"
    );
    assert!(
        has("src/transport/api/mod.rs uses crate::transport::pxe::http (transport api → transport pxe"),
        "{problems:#?}"
    );
    assert!(
        has("modules in a circle: foundation::store ↔ service::app"),
        "{problems:#?}"
    );
    assert!(
        has("modules in a circle: service::power ↔ service::scan"),
        "{problems:#?}"
    );
    assert!(
        has("files in a circle: transport::api::a ↔ transport::api::b"),
        "{problems:#?}"
    );
    // What must not be flagged: a path inside a string or a comment, a
    // child using its parent, `super` inside a file's test module, an
    // arrow down, a transport using a service.
    assert!(
        !has("crate::transport::api\"") && !has("the bad one"),
        "{problems:#?}"
    );
    assert!(!has("b.rs uses super::super::a ("), "{problems:#?}");
    assert!(
        !has("src/service/app.rs uses crate::foundation::store ("),
        "{problems:#?}"
    );
    assert!(!has("src/transport/pxe/http.rs"), "{problems:#?}");
    assert_eq!(problems.len(), 5, "{problems:#?}");
}
