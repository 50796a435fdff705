//! The store's door: the one place a path inside the data dir is made from
//! a key or a blob name.
//!
//! Keys arrive from member names, multipart file names, files' own
//! identities, layout trees being imported or reindexed, and index rows.
//! The rules upstream (`keys`) should already have refused anything that is
//! not three plain name segments; the door checks again, whatever it is
//! handed, so a missed rule cannot become a write, link, rename or delete
//! outside the store's own folders:
//! - a key must pass [`keys::check_key`] (three segments, none empty, `.`,
//!   `..`, or holding `/`, `\`, NUL or control characters), and the path
//!   built from it must be the namespace folder plus exactly three normal
//!   components;
//! - a blob name must be 64 lower-case hex digits;
//! - the folders between the namespace folder and an entry must be real
//!   folders: a symbolic link planted in the tree (pointing anywhere) is
//!   refused before anything is created, linked or removed through it.
//!
//! Walks of the trees ([`walk3`]) never follow symbolic links either.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::keys;

/// A path the door refused, as an error naming it and the rule.
fn refused(what: &str, rule: impl Into<String>) -> Error {
    Error::invalid(what, rule)
}

/// The path of `key` under the namespace folder `top`, after checking the
/// key and the shape of the result.
pub fn entry_path(top: &Path, key: &str) -> Result<PathBuf> {
    keys::check_key(key).map_err(|rule| refused(key, rule))?;
    let path = top.join(key);
    let rest = path
        .strip_prefix(top)
        .map_err(|_| refused(key, "the key does not stay inside the layout tree"))?;
    let normal = rest.components().all(|c| matches!(c, Component::Normal(_)));
    if !normal || rest.components().count() != 3 {
        return Err(refused(
            key,
            "the key does not name an entry three folders deep in the layout tree",
        ));
    }
    Ok(path)
}

/// Checks a blob name: the BLAKE3 of its content, 64 lower-case hex digits.
pub fn check_blob_name(hash: &str) -> Result<()> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(refused(
            hash,
            "blob names are 64 lower-case hex digits (a BLAKE3 hash)",
        ))
    }
}

/// Makes the folders of an entry (from [`entry_path`]) that do not exist,
/// refusing any that exists as something other than a real folder (a
/// symbolic link, a file).
pub fn make_entry_dirs(top: &Path, entry: &Path) -> Result<()> {
    for dir in entry_dirs(top, entry) {
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_a_folder(&dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                Ok(()) => {}
                // Made meanwhile by another writer: check what it is.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::symlink_metadata(&dir)?.is_dir() {
                        return Err(not_a_folder(&dir));
                    }
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Checks that the folders of an entry that exist are real folders; `false`
/// when one is missing (so the entry cannot exist either).
pub fn entry_dirs_are_real(top: &Path, entry: &Path) -> Result<bool> {
    for dir in entry_dirs(top, entry) {
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_a_folder(&dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Removes an entry (from [`entry_path`]) and then its folders while they are
/// empty, never through a symbolic link.
pub fn remove_entry(top: &Path, entry: &Path) -> Result<()> {
    if !entry_dirs_are_real(top, entry)? {
        return Ok(());
    }
    match fs::remove_file(entry) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    for dir in entry_dirs(top, entry).iter().rev() {
        if fs::remove_dir(dir).is_err() {
            break;
        }
    }
    Ok(())
}

/// The two folders between `top` and an entry: `<module>`, `<module>/<id>`.
fn entry_dirs(top: &Path, entry: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = entry
        .ancestors()
        .skip(1)
        .take_while(|d| *d != top && d.starts_with(top))
        .map(Path::to_path_buf)
        .collect();
    dirs.reverse();
    dirs
}

/// A folder of the layout tree that is not a real folder: the store's own
/// state is wrong (500, not the client's fault); the log has the path, the
/// message names only the folder below the tree.
fn not_a_folder(dir: &Path) -> Error {
    let below: PathBuf = dir
        .iter()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    tracing::error!(path = %dir.display(), "a folder of the layout tree is a symbolic link or a file");
    Error::Io(io::Error::other(format!(
        "the layout tree's folder {} is a symbolic link or a file; the store writes and \
         deletes only inside its own folders",
        below.display()
    )))
}

/// Every file three real folders deep under `top` (`<a>/<b>/<file>`), with its
/// relative path; symbolic links are neither followed nor listed.
pub fn walk3(top: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for a in top_children(top)? {
        for b in real_children(&a, true)? {
            for f in real_children(&b, false)? {
                let rel = f.strip_prefix(top).unwrap_or(&f);
                out.push((f.clone(), rel.to_string_lossy().into_owned()));
            }
        }
    }
    Ok(out)
}

/// Whether any regular file sits three real folders deep under `top`
/// (stops at the first one found).
pub fn any_file3(top: &Path) -> io::Result<bool> {
    for a in top_children(top)? {
        for b in real_children(&a, true)? {
            if !real_children(&b, false)?.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The real folders in a tree's top folder (`objects/`, `release/`, `try/`).
/// The top folder itself may be a link the operator made (to put blobs on
/// another disk): it is followed, so the blobs behind it are still counted
/// and walked; nothing below it is.
fn top_children(top: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::metadata(top) {
        Ok(m) if m.is_dir() => real_children(&top.canonicalize()?, true).map(|v| {
            v.into_iter()
                .filter_map(|p| p.file_name().map(|n| top.join(n)))
                .collect()
        }),
        Ok(_) => Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The real folders (`dirs`) or regular files (`!dirs`) in a folder, sorted;
/// none if it does not exist or is not a real folder.
fn real_children(dir: &Path, dirs: bool) -> io::Result<Vec<PathBuf>> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if (dirs && t.is_dir()) || (!dirs && t.is_file()) {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_never_make_a_path() {
        let top = Path::new("/data/release");
        for key in [
            "../../../../VICTIM.txt",
            "x.pdb/ABC/../../../../VICTIM.txt",
            "a/b/c/d",
            "a/b",
            "/etc/passwd/x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/b\\..\\..\\c/d",
            "a/b/c\0",
            "",
            "..",
        ] {
            assert!(entry_path(top, key).is_err(), "{key:?}");
        }
        assert_eq!(
            entry_path(top, "xul.pdb/ABC/xul.sym").unwrap(),
            Path::new("/data/release/xul.pdb/ABC/xul.sym")
        );
    }

    /// Whatever the key, a path the door gives is the namespace folder plus
    /// three plain names: keys drawn from an alphabet of every character that
    /// matters to a path (and some that do not), 200 000 of them.
    #[test]
    fn no_key_of_any_shape_escapes_the_tree() {
        const ALPHABET: &[&str] = &[
            "a", "B", "0", ".", "..", "/", "\\", "\0", "\u{202E}", " ", "~", "%2e", "\n", "é",
        ];
        let top = Path::new("/data/try");
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            // Three runs of pieces joined by `/`: the pieces add or break segments.
            let key = (0..3)
                .map(|_| {
                    let len = next(4);
                    (0..len)
                        .map(|_| ALPHABET[next(ALPHABET.len())])
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("/");
            if let Ok(path) = entry_path(top, &key) {
                accepted += 1;
                assert_confined(top, &path, &key);
            }
        }
        assert!(
            accepted > 1_000,
            "the generator reaches valid keys too: {accepted}"
        );
    }

    /// The property the fuzz target checks too.
    fn assert_confined(top: &Path, path: &Path, key: &str) {
        let rest = path.strip_prefix(top).expect("inside the tree");
        let parts: Vec<_> = rest.components().collect();
        assert_eq!(parts.len(), 3, "{key:?}");
        assert!(
            parts
                .iter()
                .all(|c| matches!(c, Component::Normal(n) if *n != ".." && *n != ".")),
            "{key:?}"
        );
    }

    #[test]
    fn blob_names_are_hashes() {
        assert!(check_blob_name(&"a".repeat(64)).is_ok());
        for bad in ["../../etc/passwd", &"A".repeat(64), &"a".repeat(63), ""] {
            assert!(check_blob_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_symlinked_folder_in_the_tree_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let top = dir.path().join("release");
        fs::create_dir_all(&top).unwrap();
        std::os::unix::fs::symlink(outside.path(), top.join("evil")).unwrap();
        fs::create_dir_all(outside.path().join("ABC")).unwrap();
        fs::write(outside.path().join("ABC/f"), b"precious").unwrap();
        let entry = entry_path(&top, "evil/ABC/f").unwrap();
        assert!(make_entry_dirs(&top, &entry).is_err());
        assert!(remove_entry(&top, &entry).is_err());
        assert!(walk3(&top).unwrap().is_empty());
        assert_eq!(fs::read(outside.path().join("ABC/f")).unwrap(), b"precious");
        // A real tree works.
        let ok = entry_path(&top, "m/ABC/f").unwrap();
        make_entry_dirs(&top, &ok).unwrap();
        fs::write(&ok, b"x").unwrap();
        assert_eq!(walk3(&top).unwrap().len(), 1);
        remove_entry(&top, &ok).unwrap();
        assert!(!top.join("m").exists());
    }
}
