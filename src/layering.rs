//! The direction of imports between the top-level modules of `src/`, checked by every
//! `cargo test`: imports run one way, from `cli` at the top down to `envfile` at the bottom,
//! so that each layer can be read, tested and changed without the ones above it.
//!
//! Every `src/**/*.rs` is read as text. In its code (comments and string literals left
//! out), each `crate::NAME`, each item of a `use crate::{a, b::c}` group and each
//! `super::` chain that climbs to the crate root names a top-level module. It is a text
//! scan rather than the compiler's view on purpose: code behind a `cfg` (another feature,
//! tests) imports as much as any other. The rules:
//!
//! 1. no cycle between top-level modules;
//! 2. `envfile`, the bottom layer, imports no other top-level module;
//! 3. nothing imports `cli` (only the crate roots, `lib.rs` and `main.rs`, name it);
//! 4. only the front ends, `cli` and `ui` (the dashboard), import `ops` (the operations the
//!    commands call), so that nothing below them reaches back up into them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Edges that still close a cycle on this branch and that the backend refactor removes.
/// They are left out of the cycle check only (the other rules still apply), and the test
/// fails once one of them is gone or closes no cycle any more, so that the list can only
/// shrink: empty it with that refactor. Nothing else belongs here.
const KNOWN_UNTIL_BACKEND_REFACTOR: &[(&str, &str)] = &[];

/// The bottom layer: it imports no other top-level module.
const BOTTOM: &str = "envfile";
/// The commands: no module imports them.
const TOP: &str = "cli";
/// The operations the commands call, and the only modules that may import them: the
/// command line and the dashboard (`ui`, a front end the command line starts).
const OPS: &str = "ops";
const OPS_USERS: &[&str] = &[TOP, "ui"];

/// Where a module names another: each file (from the crate root) and 1-based line.
type Sites = BTreeSet<(String, usize)>;
/// Top-level module -> the other top-level modules it names, each with where. Every module
/// is a key, also those that name none.
type Graph = BTreeMap<String, BTreeMap<String, Sites>>;

#[test]
fn imports_run_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = graph_of(root);
    // A scan that read nothing would keep every rule: make sure it read the crate.
    assert!(
        graph.contains_key(BOTTOM) && graph.get(TOP).is_some_and(|e| !e.is_empty()),
        "the scan of `{}` found no module `{BOTTOM}`, or no import in `{TOP}`: {graph:?}",
        root.join("src").display()
    );
    let problems = problems(&graph, KNOWN_UNTIL_BACKEND_REFACTOR);
    assert!(
        problems.is_empty(),
        "imports between top-level modules must run one way (see src/layering.rs):\n\n{}\n",
        problems.join("\n\n")
    );
}

#[test]
fn a_planted_cycle_is_found_and_named() {
    let graph = graph_from(&[
        ("a", "b", "src/a.rs", 3),
        ("b", "c", "src/b/mod.rs", 7),
        ("b", "c", "src/b/x.rs", 1),
        ("c", "a", "src/c.rs", 12),
        ("d", "a", "src/d.rs", 2),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, [["a", "b", "c", "a"]]);
    assert_eq!(
        found[0].1,
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );

    let p = problems(&graph, &[]);
    assert_eq!(p.len(), 1, "{p:#?}");
    for part in [
        "modules in a cycle: a, b, c",
        "cycle: a -> b -> c -> a",
        "b -> c at src/b/mod.rs:7, src/b/x.rs:1",
        "c -> a at src/c.rs:12",
    ] {
        assert!(p[0].contains(part), "`{part}` missing from:\n{}", p[0]);
    }

    // A known edge lifts the cycle it closes, and only that one.
    assert_eq!(problems(&graph, &[("c", "a")]), Vec::<String>::new());
    let mut two = graph.clone();
    add(&mut two, "d", "e", "src/d.rs", 5);
    add(&mut two, "e", "d", "src/e.rs", 6);
    let p = problems(&two, &[("c", "a")]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].contains("cycle: d -> e -> d"), "{}", p[0]);

    // A known edge that is gone, or that closes no cycle, must be deleted from the list.
    let p = problems(&graph, &[("c", "a"), ("a", "d"), ("d", "a")]);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].contains("`a -> d`") && p[0].contains("no longer exists"));
    assert!(p[1].contains("`d -> a`") && p[1].contains("closes no cycle"));
}

#[test]
fn the_bottom_top_and_ops_rules_name_each_offending_import() {
    let graph = graph_from(&[
        ("envfile", "state", "src/envfile/read.rs", 4),
        ("plan", "cli", "src/plan/mod.rs", 9),
        ("apply", "ops", "src/apply/mod.rs", 2),
        ("cli", "ops", "src/cli/mod.rs", 1),
        ("state", "output", "src/state/mod.rs", 1),
    ]);
    let p = problems(&graph, &[]);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p.iter().any(|m| m.contains("`envfile`")
        && m.contains("`state`")
        && m.contains("src/envfile/read.rs:4")));
    assert!(p
        .iter()
        .any(|m| m.contains("`plan` imports `cli`") && m.contains("src/plan/mod.rs:9")));
    assert!(p
        .iter()
        .any(|m| m.contains("`apply` imports `ops`") && m.contains("src/apply/mod.rs:2")));
}

#[test]
fn the_scan_reads_code_only_and_follows_groups_and_super() {
    // As if in `src/x.rs`. Spelt `KRATE` here so that a grep of `src/` for imports does
    // not take this text for this module's own.
    let src = r##"//! KRATE::cli in a doc comment
use KRATE::{apply, backend::{ssh, docker}, envfile::Env};
use KRATE::state as st; // KRATE::ops
/* KRATE::ops /* nested */ KRATE::ops */
fn f() -> &'static str { let _q = '"'; let _e = '\''; "KRATE::ops \" KRATE::ops" }
pub(crate) fn g() { KRATE::plan::x(); let _ = r#"KRATE::ops"#; let _ = b"KRATE::ops"; }
use super::boxes;
mod tests {
    use super::super::{
        snapshot,
        self,
    };
    use super::f;
}
"##;
    let refs = references(
        &code_only(&src.replace("KRATE", "crate")),
        &["x".to_string()],
    );
    let want: Vec<(String, usize)> = [
        ("apply", 2),
        ("backend", 2),
        ("envfile", 2),
        ("state", 3),
        ("plan", 6),
        ("boxes", 7),
        ("snapshot", 10),
        ("self", 11),
    ]
    .iter()
    .map(|(m, l)| (m.to_string(), *l))
    .collect();
    assert_eq!(refs, want);
    // From `src/a/b.rs` two `super`s reach the root; from `src/a/b/c.rs` they stay in `a`.
    let deep = references(
        &code_only("use super::super::y;\n"),
        &["a".into(), "b".into()],
    );
    assert_eq!(deep, [("y".to_string(), 1)]);
    let inside = references(
        &code_only("use super::super::y;\n"),
        &["a".into(), "b".into(), "c".into()],
    );
    assert!(inside.is_empty(), "{inside:?}");
}

/// The import graph of the crate at `root`.
fn graph_of(root: &Path) -> Graph {
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let paths: Vec<(PathBuf, Vec<String>)> = files
        .into_iter()
        .map(|f| {
            let path = module_path(f.strip_prefix(&src).expect("under src/"));
            (f, path)
        })
        .collect();
    let mut graph = Graph::new();
    for (_, path) in &paths {
        if let Some(top) = path.first() {
            graph.entry(top.clone()).or_default();
        }
    }
    for (file, path) in &paths {
        // The crate roots declare the modules; they are no layer.
        let Some(from) = path.first() else { continue };
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", file.display()));
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (to, line) in references(&code_only(&text), path) {
            if &to != from && graph.contains_key(&to) {
                graph
                    .get_mut(from)
                    .expect("every module is a key")
                    .entry(to)
                    .or_default()
                    .insert((shown.clone(), line));
            }
        }
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`apply/snap.rs` -> `apply::snap`, `apply/mod.rs`
/// -> `apply`); empty for the crate roots.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let root = parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main");
    if root || parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// `src` with comments and string and character literals blanked out: what is left is
/// code, and newlines are kept so that lines still count.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let at = |i: usize| c.get(i).copied();
    let ident = |ch: Option<char>| ch.is_some_and(|ch| ch.is_alphanumeric() || ch == '_');
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, from: usize, to: usize| {
        for &ch in &c[from..to.min(n)] {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < n {
        let start = i;
        if c[i] == '/' && at(i + 1) == Some('/') {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == Some('*') {
            // Block comments nest.
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(hashes) =
            raw_string_start(&c, i).filter(|_| !ident(i.checked_sub(1).and_then(at)))
        {
            // r"..", r#".."#, br".." end at the quote followed by as many `#`.
            i = c[i..]
                .iter()
                .position(|&ch| ch == '"')
                .map_or(n, |q| i + q + 1);
            while i < n && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == Some('#'))) {
                i += 1;
            }
            i = (i + 1 + hashes).min(n);
        } else if c[i] == '"' {
            i += 1;
            while i < n && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(n);
        } else if c[i] == '\'' && at(i + 1) == Some('\\') {
            // An escaped character: '\n', '\'', '\u{..}'.
            i += 3;
            while i < n && c[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(n);
        } else if c[i] == '\'' && at(i + 2) == Some('\'') {
            // A character, '"' included; anything else after `'` is a lifetime.
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    out
}

/// How many `#` a raw string starting at `i` has (`r"`, `r#"`, `br##"`...), if one does.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    let r = match (c.get(i), c.get(i + 1)) {
        (Some('r'), _) => i + 1,
        (Some('b'), Some('r')) => i + 2,
        _ => return None,
    };
    let hashes = c[r..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(r + hashes) == Some(&'"')).then_some(hashes)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Open,
    Close,
    Comma,
    Other,
}

/// The tokens of code, each with its 1-based line; only what paths and modules need.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let tok = if ch == '\n' {
            line += 1;
            i += 1;
            continue;
        } else if ch.is_whitespace() {
            i += 1;
            continue;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
            continue;
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            i += 1;
            Tok::Sep
        } else if ch == '{' {
            Tok::Open
        } else if ch == '}' {
            Tok::Close
        } else if ch == ',' {
            Tok::Comma
        } else {
            Tok::Other
        };
        out.push((tok, line));
        i += 1;
    }
    out
}

/// The names `code` reaches at the crate root, each with its line, in order: what follows
/// `crate::`, each item of a `crate::{..}` group, and the same after a `super::` chain
/// that climbs out of `path` (the file's module path) to the root. Names that are no
/// module (items of `lib.rs`) are left for the caller to drop.
fn references(code: &str, path: &[String]) -> Vec<(String, usize)> {
    let t = tokens(code);
    let is = |k: usize, tok: &Tok| t.get(k).is_some_and(|(x, _)| x == tok);
    let word = |k: usize, w: &str| matches!(t.get(k), Some((Tok::Ident(x), _)) if x == w);
    let mut out = Vec::new();
    let mut depth = 0;
    // Brace depth inside each inline `mod name { .. }`: `super` climbs out of those too.
    let mut inline: Vec<usize> = Vec::new();
    for i in 0..t.len() {
        match &t[i].0 {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            // An inline `mod name {`, not `mod name;`.
            Tok::Ident(w)
                if w == "mod"
                    && matches!(t.get(i + 1), Some((Tok::Ident(_), _)))
                    && is(i + 2, &Tok::Open) =>
            {
                inline.push(depth + 1);
            }
            // Only where a path starts: `a::crate` and `a::super` are no paths.
            Tok::Ident(w) if (w == "crate" || w == "super") && !(i > 0 && is(i - 1, &Tok::Sep)) => {
                // `crate::` starts at the root; each `super::` climbs one module, out of
                // the inline ones first and then out of the file's own path.
                let (j, level) = if w == "crate" {
                    if !is(i + 1, &Tok::Sep) {
                        continue;
                    }
                    (i + 2, 0)
                } else {
                    let mut j = i;
                    let mut level = path.len() + inline.len();
                    while word(j, "super") && is(j + 1, &Tok::Sep) {
                        level = level.saturating_sub(1);
                        j += 2;
                    }
                    if j == i {
                        continue;
                    }
                    (j, level)
                };
                if level == 0 {
                    targets(&t, j, &mut out);
                }
            }
            _ => {}
        }
    }
    out
}

/// The first segment at `j` of a path from the crate root, or of each item of a group.
fn targets(t: &[(Tok, usize)], j: usize, out: &mut Vec<(String, usize)>) {
    match t.get(j) {
        Some((Tok::Ident(name), line)) => out.push((name.clone(), *line)),
        Some((Tok::Open, _)) => {
            let mut depth = 0;
            let mut item_start = false;
            for (tok, line) in &t[j..] {
                match tok {
                    Tok::Open => {
                        depth += 1;
                        item_start = depth == 1;
                        continue;
                    }
                    Tok::Close => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Comma if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    Tok::Ident(name) if depth == 1 && item_start => {
                        out.push((name.clone(), *line));
                    }
                    _ => {}
                }
                item_start = false;
            }
        }
        _ => {}
    }
}

/// The cycles of `graph`, by group of modules that all reach each other: the shortest way
/// round through each module of the group (by name, each cycle once), and the group.
fn cycles(graph: &Graph) -> Vec<(Vec<Vec<String>>, BTreeSet<String>)> {
    let reach: BTreeMap<&str, BTreeSet<&str>> = graph
        .keys()
        .map(|m| (m.as_str(), reachable(graph, m)))
        .collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if seen.contains(m.as_str()) || !reach[m.as_str()].contains(m.as_str()) {
            continue;
        }
        let group: BTreeSet<String> = reach[m.as_str()]
            .iter()
            .filter(|n| reach[**n].contains(m.as_str()))
            .map(|n| n.to_string())
            .collect();
        seen.extend(reach[m.as_str()].iter().filter(|n| group.contains(**n)));
        let mut ways: Vec<Vec<String>> = Vec::new();
        for start in &group {
            let way = shortest_cycle(graph, start, &group);
            if !ways.iter().any(|w| same_cycle(w, &way)) {
                ways.push(way);
            }
        }
        out.push((ways, group));
    }
    out
}

/// Whether two cycles (`a -> b -> a`) are the same way round from different starts.
fn same_cycle(a: &[String], b: &[String]) -> bool {
    let (a, b) = (&a[1..], &b[1..]);
    a.len() == b.len() && (0..a.len()).any(|k| a[k..].iter().chain(&a[..k]).eq(b))
}

/// The modules reachable from `from` in one step or more.
fn reachable<'g>(graph: &'g Graph, from: &str) -> BTreeSet<&'g str> {
    let mut out = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([from]);
    while let Some(m) = queue.pop_front() {
        for next in graph.get(m).into_iter().flat_map(|e| e.keys()) {
            if out.insert(next.as_str()) {
                queue.push_back(next);
            }
        }
    }
    out
}

/// The shortest path from `start` back to itself inside `group` (which it must close in).
fn shortest_cycle(graph: &Graph, start: &str, group: &BTreeSet<String>) -> Vec<String> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue: VecDeque<&str> = VecDeque::from([start]);
    while let Some(m) = queue.pop_front() {
        for next in graph[m].keys().filter(|n| group.contains(*n)) {
            if next == start {
                let mut back = vec![start.to_string(), m.to_string()];
                let mut at = m;
                while at != start {
                    at = prev[at];
                    back.push(at.to_string());
                }
                back.reverse();
                return back;
            }
            if !prev.contains_key(next.as_str()) {
                prev.insert(next.as_str(), m);
                queue.push_back(next);
            }
        }
    }
    unreachable!("`{start}` is in a group of modules that reach each other")
}

/// Every way `graph` breaks the rules, one message each (none when it keeps them). The
/// `known` edges are left out of the cycle check, and each must still close a cycle.
fn problems(graph: &Graph, known: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let all_cycles = cycles(graph);
    for (from, to) in known {
        let edge = format!("`{from} -> {to}`");
        if !graph.get(*from).is_some_and(|e| e.contains_key(*to)) {
            out.push(format!(
                "KNOWN_UNTIL_BACKEND_REFACTOR lists {edge}, which no longer exists: delete the entry"
            ));
        } else if !all_cycles
            .iter()
            .any(|(_, group)| group.contains(*from) && group.contains(*to))
        {
            out.push(format!(
                "KNOWN_UNTIL_BACKEND_REFACTOR lists {edge}, which closes no cycle any more: delete the entry"
            ));
        }
    }

    let mut rest = graph.clone();
    for (from, to) in known {
        if let Some(e) = rest.get_mut(*from) {
            e.remove(*to);
        }
    }
    for (ways, group) in cycles(&rest) {
        let mut m = format!(
            "modules in a cycle: {}",
            group.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let mut edges: Vec<(&String, &String)> = Vec::new();
        for way in &ways {
            m.push_str(&format!("\n  cycle: {}", way.join(" -> ")));
            for pair in way.windows(2) {
                if !edges.contains(&(&pair[0], &pair[1])) {
                    edges.push((&pair[0], &pair[1]));
                }
            }
        }
        m.push_str("\n  through:");
        for (from, to) in edges {
            m.push_str(&format!(
                "\n    {from} -> {to} at {}",
                sites(&rest[from][to])
            ));
        }
        m.push_str(
            "\n  cut imports until they run one way: move what the lower module uses down \
             into it, or pass it in",
        );
        out.push(m);
    }

    for (to, at) in graph.get(BOTTOM).into_iter().flatten() {
        out.push(format!(
            "`{BOTTOM}` is the bottom layer and imports no other top-level module, but it \
             imports `{to}` at {}",
            sites(at)
        ));
    }
    for (from, edges) in graph {
        if let Some(at) = edges.get(TOP) {
            out.push(format!(
                "`{from}` imports `{TOP}` at {}: nothing imports the commands; move what it \
                 uses below them",
                sites(at)
            ));
        }
        if let Some(at) = edges
            .get(OPS)
            .filter(|_| !OPS_USERS.contains(&from.as_str()))
        {
            out.push(format!(
                "`{from}` imports `{OPS}` at {}: only {} may; what it uses belongs below `{OPS}`",
                sites(at),
                OPS_USERS
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

fn sites(at: &Sites) -> String {
    at.iter()
        .map(|(file, line)| format!("{file}:{line}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A graph from `(from, to, file, line)` edges, for the self-tests.
fn graph_from(edges: &[(&str, &str, &str, usize)]) -> Graph {
    let mut g = Graph::new();
    for (from, to, file, line) in edges {
        add(&mut g, from, to, file, *line);
    }
    g
}

fn add(g: &mut Graph, from: &str, to: &str, file: &str, line: usize) {
    g.entry(to.to_string()).or_default();
    g.entry(from.to_string())
        .or_default()
        .entry(to.to_string())
        .or_default()
        .insert((file.to_string(), line));
}
