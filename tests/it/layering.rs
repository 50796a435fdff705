//! The layering rules, checked over the source text.
//!
//! Two rules keep the core free of the things around it:
//! - the core (`store`, `ingest`, `identity`, `keys`, and the core's `error`)
//!   knows no HTTP: it names neither `crate::http`, `hyper`, nor `http::`;
//! - nothing outside `src/store/` names `rusqlite` or `postgres`: SQL stays in the store;
//! - nothing outside `src/store/` builds a path into the data dir: it names
//!   neither the data dir's folders and files (`objects`, `index.sqlite3`,
//!   `quarantine`, `daemon.lock`) nor joins onto `data_dir` or the store's root.
//!
//! The check is textual, so a comment naming a forbidden thing counts too; a
//! rule the code keeps is easy to keep in its comments as well.
//!
//! A third rule: the modules of `http`, of the daemon and `commands` import
//! one another without cycles (read from `crate::` and `super::` paths and
//! submodules named by their bare names; tests left out).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The core: files (or folders, ending in `/`) that must know no HTTP.
const CORE: &[&str] = &[
    "src/store/",
    "src/ingest/",
    "src/identity/",
    "src/keys.rs",
    "src/error.rs",
];

/// What the core must not name.
const HTTP_NAMES: &[&str] = &["crate::http", "hyper", "http::"];

const NO_HTTP_RULE: &str = "the core (store, ingest, identity, keys, error) knows no HTTP";
const NO_SQL_RULE: &str = "nothing outside src/store/ names an index engine's library";
const DOOR_RULE: &str = "nothing outside src/store/ builds a path into the data dir";

/// What only the store may name: the data dir's own folders and files, and
/// joins onto the data dir.
const DATA_DIR_NAMES: &[&str] = &[
    "\"objects\"",
    "\"objects/",
    "index.sqlite3",
    "\"quarantine\"",
    "\"quarantine/",
    "daemon.lock",
    "data_dir.join(",
    "root().join(",
];

/// Every `.rs` file under `dir`, as paths relative to the crate root with `/`.
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(root).expect("under the crate root");
            let rel = rel
                .iter()
                .map(|s| s.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
}

fn in_core(rel: &str) -> bool {
    CORE.iter().any(|c| {
        if c.ends_with('/') {
            rel.starts_with(c)
        } else {
            rel == *c
        }
    })
}

/// The rules `rel`'s `line` breaks, each as "file:line: what (rule: ...)".
fn breaches(rel: &str, number: usize, line: &str) -> Vec<String> {
    let mut found = Vec::new();
    if in_core(rel)
        && let Some(name) = HTTP_NAMES.iter().find(|n| line.contains(*n))
    {
        found.push(format!(
            "{rel}:{number}: names `{name}` (rule: {NO_HTTP_RULE})\n    {}",
            line.trim()
        ));
    }
    if !rel.starts_with("src/store/")
        && let Some(name) = DATA_DIR_NAMES.iter().find(|n| line.contains(*n))
    {
        found.push(format!(
            "{rel}:{number}: names `{name}` (rule: {DOOR_RULE})\n    {}",
            line.trim()
        ));
    }
    for engine in ["rusqlite", "postgres::"] {
        if !rel.starts_with("src/store/") && line.contains(engine) {
            found.push(format!(
                "{rel}:{number}: names `{engine}` (rule: {NO_SQL_RULE})\n    {}",
                line.trim()
            ));
        }
    }
    found
}

#[test]
fn the_core_knows_no_http_and_only_the_store_names_sql() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(root, &root.join("src"), &mut files);
    // A walk that found nothing would pass vacuously.
    for expected in ["src/store/mod.rs", "src/ingest/inbox.rs", "src/error.rs"] {
        assert!(
            files.iter().any(|(rel, _)| rel == expected),
            "{expected} was not among the sources read"
        );
    }
    let mut found = Vec::new();
    for (rel, path) in &files {
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for (i, line) in text.lines().enumerate() {
            found.extend(breaches(rel, i + 1, line));
        }
    }
    assert!(
        found.is_empty(),
        "{} line(s) break the layering rules:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_rules_catch_what_they_name() {
    assert_eq!(
        breaches("src/ingest/x.rs", 3, "use crate::http::error;").len(),
        1
    );
    assert_eq!(breaches("src/keys.rs", 1, "hyper::body").len(), 1);
    assert_eq!(
        breaches("src/transfer.rs", 1, "rusqlite::params![]").len(),
        1
    );
    assert!(breaches("src/store/index.rs", 1, "rusqlite::Connection").is_empty());
    assert_eq!(
        breaches(
            "src/http/handlers/download.rs",
            1,
            "cfg.data_dir.join(\"objects\")"
        )
        .len(),
        1
    );
    assert_eq!(
        breaches("src/commands.rs", 1, "dir.join(\"index.sqlite3\")").len(),
        1
    );
    assert!(breaches("src/store/mod.rs", 1, "root.join(\"objects\")").is_empty());
    assert!(breaches("src/http/mod.rs", 1, "use hyper::server;").is_empty());
    assert!(breaches("src/identity/elf.rs", 1, "// see https://example.org").is_empty());
}

/// The modules whose imports must form no cycle: those of `http` and the
/// daemon, and the commands that start it.
fn acyclic_scope(module: &str) -> bool {
    ["http", "daemon"]
        .iter()
        .any(|top| module == *top || module.starts_with(&format!("{top}::")))
        || module == "commands"
}

/// `src/http/handlers/mod.rs` → `http::handlers`.
fn module_of(rel: &str) -> String {
    let path = rel.trim_start_matches("src/").trim_end_matches(".rs");
    let path = path.strip_suffix("/mod").unwrap_or(path);
    path.replace('/', "::")
}

/// The longest prefix of `path` (under `base`) that is a known module.
fn resolve(base: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len()).rev().find_map(|k| {
        let name = parts[..k].join("::");
        let full = if base.is_empty() {
            name
        } else {
            format!("{base}::{name}")
        };
        known.contains(&full).then_some(full)
    })
}

/// The modules `module`'s text (its tests left out) names: by `crate::`
/// paths, by `super::` paths, and its own submodules by their bare names.
fn references(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut found = BTreeSet::new();
    let paths = |prefix: &str| -> Vec<String> {
        text.match_indices(prefix)
            .filter(|(i, _)| {
                !text[..*i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            })
            .map(|(i, _)| {
                text[i + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect::<String>()
                    .trim_end_matches(':')
                    .to_string()
            })
            .collect()
    };
    for path in paths("crate::") {
        found.extend(resolve("", &path, known));
    }
    for path in paths("super::") {
        found.insert(resolve(parent, &path, known).unwrap_or_else(|| parent.to_string()));
    }
    for child in known
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{module}::")))
    {
        if !child.contains("::") && !paths(&format!("{child}::")).is_empty() {
            found.insert(format!("{module}::{child}"));
        }
    }
    found.remove(module);
    found
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

/// The import graph of the modules in the acyclic scope, among themselves.
fn scoped_graph(sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
    sources
        .iter()
        .filter(|(m, _)| acyclic_scope(m))
        .map(|(m, text)| {
            let refs = references(m, text, &known);
            (
                m.clone(),
                refs.into_iter().filter(|r| acyclic_scope(r)).collect(),
            )
        })
        .collect()
}

#[test]
fn the_http_modules_and_the_daemon_import_one_another_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(root, &root.join("src"), &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(rel, path)| (module_of(rel), fs::read_to_string(path).unwrap()))
        .collect();
    let graph = scoped_graph(&sources);
    assert!(
        graph["http::server"].contains("http::handlers")
            && graph["daemon"].contains("daemon::background"),
        "the import graph was not read: {graph:?}"
    );
    if let Some(found) = cycle(&graph) {
        panic!("modules import one another: {}", found.join(" → "));
    }
}

#[test]
fn the_cycle_check_catches_what_it_names() {
    let sources = |cache: &str| {
        vec![
            (
                "http".to_string(),
                "pub mod cache;\npub mod handlers;".to_string(),
            ),
            ("http::cache".to_string(), cache.to_string()),
            (
                "http::handlers".to_string(),
                "pub mod download;".to_string(),
            ),
            (
                "http::handlers::download".to_string(),
                "use crate::http::cache::{Found, SMALL_BLOB};".to_string(),
            ),
            ("store".to_string(), String::new()),
        ]
    };
    let graph = scoped_graph(&sources("use crate::store::KeyRow;"));
    assert!(cycle(&graph).is_none(), "{graph:?}");
    let graph = scoped_graph(&sources("use crate::http::handlers::download::Hit;"));
    assert_eq!(
        cycle(&graph).expect("a cycle").len(),
        3,
        "cache → download → cache"
    );
    let daemon = vec![
        (
            "commands".to_string(),
            "crate::daemon::Daemon::start".to_string(),
        ),
        ("daemon".to_string(), "crate::commands::DRAIN".to_string()),
    ];
    assert!(cycle(&scoped_graph(&daemon)).is_some());
    let child = vec![
        (
            "http::handlers".to_string(),
            "pub mod api;\napi::api(state)".to_string(),
        ),
        (
            "http::handlers::api".to_string(),
            "use super::dispatch;".to_string(),
        ),
    ];
    assert!(
        cycle(&scoped_graph(&child)).is_some(),
        "a child naming its parent"
    );
}
