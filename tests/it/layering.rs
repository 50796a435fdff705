//! The layering rules, checked over the source text.
//!
//! Two rules keep the core free of the things around it:
//! - the core (`store`, `ingest`, `identity`, `keys`, and the core's `error`)
//!   knows no HTTP: it names neither `crate::http`, `hyper`, nor `http::`;
//! - nothing outside `src/store/` names `rusqlite`: SQL stays in the store.
//!
//! The check is textual, so a comment naming a forbidden thing counts too; a
//! rule the code keeps is easy to keep in its comments as well.

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
const NO_SQL_RULE: &str = "nothing outside src/store/ names rusqlite";

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
    if !rel.starts_with("src/store/") && line.contains("rusqlite") {
        found.push(format!(
            "{rel}:{number}: names `rusqlite` (rule: {NO_SQL_RULE})\n    {}",
            line.trim()
        ));
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
    assert!(breaches("src/http/mod.rs", 1, "use hyper::server;").is_empty());
    assert!(breaches("src/identity/elf.rs", 1, "// see https://example.org").is_empty());
}
