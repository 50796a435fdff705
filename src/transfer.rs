//! `export` and `import`: plain trees for removable media and for a
//! debugger's local symbol path, and ingest of existing trees.
//!
//! Export writes original (uncompressed) bytes, each file through a temp name
//! and a rename, in the layout the matching tool reads directly. Import
//! recognises a SymStore share (`000Admin`, `index2.txt`, `pingme.txt`), a
//! debuginfod-style tree (`buildid/<id>/debuginfo|executable`) or a Breakpad
//! tree (`<module>/<id>/<file>`), and ingests each file like an upload.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::identity::Kind;
use crate::ingest::{self, Report};
pub use crate::store::ExportFilter;
use crate::store::{KeyRow, Namespace, Progress, Store};
use crate::zips::SplitZipWriter;

/// The tree an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLayout {
    /// `<module>/<id>/<file>`: `minidump-stackwalk --symbols-path`.
    Breakpad,
    /// `<file>/<SymStore key>/<file>` (two-tier with `index2.txt`): a SymStore share.
    SymStore { index2: bool },
    /// `buildid/<id>/debuginfo|executable`: a `file://` entry of `DEBUGINFOD_URLS`.
    Debuginfod,
}

/// The stored bytes of a key, decoded.
fn original(store: &Store, row: &KeyRow) -> io::Result<Box<dyn Read + Send>> {
    store.open_original(row)
}

/// Makes the folders of `rel` below `root` that do not exist, refusing any
/// that exists as a symbolic link or a file: an export writes only inside
/// its folder, whatever the folder already held.
fn make_real_dirs(root: &Path, rel: &Path) -> io::Result<()> {
    let mut dir = root.to_path_buf();
    for part in rel.parent().into_iter().flat_map(Path::components) {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is a symbolic link or a file; an export writes only into real folders \
                     below its target",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `src` to `dest` through a temp name in the same folder.
fn write_file(dest: &Path, src: &mut dyn Read) -> io::Result<u64> {
    let dir = dest.parent().expect("export paths have a parent");
    let mut tmp = tempfile::Builder::new()
        .prefix(".export-")
        .tempfile_in(dir)?;
    let n = io::copy(src, &mut io::BufWriter::new(tmp.as_file_mut()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(n)
}

/// The relative paths a key is exported under in a layout (none if it has
/// no place there). `lookups` are the key's lookup keys.
fn export_paths(row: &KeyRow, layout: ExportLayout, lookups: &[String]) -> Vec<PathBuf> {
    match layout {
        ExportLayout::Breakpad => vec![PathBuf::from(&row.key)],
        ExportLayout::SymStore { index2 } => {
            // A PE goes under its code id (SymStore's key); everything else under its key.
            let file = row.key.rsplit('/').next().unwrap_or(&row.key);
            let rel = match (row.kind, &row.code_id) {
                (Kind::Pe, Some(code)) => PathBuf::from(file).join(code).join(file),
                _ => PathBuf::from(&row.key),
            };
            if index2 {
                let first = rel
                    .iter()
                    .next()
                    .map(|s| s.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                vec![PathBuf::from(first.chars().take(2).collect::<String>()).join(rel)]
            } else {
                vec![rel]
            }
        }
        ExportLayout::Debuginfod => lookups
            .iter()
            .filter_map(|l| l.strip_prefix("buildid:"))
            .map(|rest| PathBuf::from("buildid").join(rest))
            .collect(),
    }
}

/// Exports keys into `dir`. Returns how many files were written;
/// `progress` counts the keys.
pub fn export_tree(
    store: &Store,
    dir: &Path,
    layout: ExportLayout,
    filter: &ExportFilter,
    progress: &mut dyn Progress,
) -> anyhow::Result<u64> {
    let rows = store.export_rows(filter)?;
    progress.total(rows.len() as u64);
    fs::create_dir_all(dir)?;
    if let ExportLayout::SymStore { index2: true } = layout {
        crate::zips::create_no_follow(&dir.join("index2.txt"))?;
    }
    let mut written = 0;
    for row in &rows {
        let lookups = if layout == ExportLayout::Debuginfod {
            store.lookups_of(row.id)?
        } else {
            Vec::new()
        };
        for rel in export_paths(row, layout, &lookups) {
            // Only plain names below `dir`: a key from an older index that the
            // store's door would refuse is not written anywhere.
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                tracing::warn!(
                    key = row.key,
                    "not exported: its path would leave the export folder"
                );
                continue;
            }
            let dest = dir.join(&rel);
            make_real_dirs(dir, &rel).with_context(|| format!("writing {}", dest.display()))?;
            write_file(&dest, &mut original(store, row)?)
                .with_context(|| format!("writing {}", dest.display()))?;
            written += 1;
        }
        progress.step();
    }
    Ok(written)
}

/// Exports keys as Tecken-layout zips of at most `max_bytes` of members each
/// (a single larger member gets a zip of its own). Returns the zips written;
/// `progress` counts the keys.
pub fn export_zips(
    store: &Store,
    dir: &Path,
    max_bytes: u64,
    filter: &ExportFilter,
    progress: &mut dyn Progress,
) -> anyhow::Result<Vec<PathBuf>> {
    let rows = store.export_rows(filter)?;
    progress.total(rows.len() as u64);
    fs::create_dir_all(dir)?;
    let mut zips = SplitZipWriter::new(dir, "symbols", max_bytes);
    for row in &rows {
        zips.add(&row.key, &mut original(store, row)?, row.size)?;
        progress.step();
    }
    Ok(zips.finish()?)
}

/// What kind of tree a folder holds.
fn tree_kind(dir: &Path) -> &'static str {
    if ["000Admin", "index2.txt", "pingme.txt"]
        .iter()
        .any(|m| dir.join(m).exists())
    {
        "symstore"
    } else if fs::symlink_metadata(dir.join("buildid")).is_ok_and(|m| m.is_dir()) {
        // A linked `buildid` is not followed (nor walked as a Breakpad tree).
        "debuginfod"
    } else {
        "breakpad"
    }
}

fn files_at_depth(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> io::Result<()> {
    // Symbolic links are not followed: an imported tree brings in only what is in it.
    let mut entries: Vec<(PathBuf, fs::FileType)> = fs::read_dir(dir)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, t) in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name == "000Admin" {
            continue;
        }
        if depth == 0 {
            if t.is_file() {
                out.push(p);
            }
        } else if t.is_dir() {
            files_at_depth(&p, depth - 1, out)?;
        }
    }
    Ok(())
}

/// Imports an existing tree. Returns the combined report and the files that
/// failed; `progress` counts the files.
pub fn import_tree(
    to: ingest::Ingest<'_>,
    dir: &Path,
    ns: Namespace,
    progress: &mut dyn Progress,
) -> anyhow::Result<(Report, Vec<(PathBuf, String)>)> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let kind = tree_kind(dir);
    let mut files = Vec::new();
    match kind {
        "symstore" if dir.join("index2.txt").exists() => files_at_depth(dir, 3, &mut files)?,
        "debuginfod" => files_at_depth(&dir.join("buildid"), 1, &mut files)?,
        _ => files_at_depth(dir, 2, &mut files)?,
    }
    // SymStore's pointers to files elsewhere are not symbol files.
    files.retain(|p| !p.ends_with("file.ptr") && !p.ends_with("refs.ptr"));
    progress.total(files.len() as u64);
    let (mut total, mut failed) = (Report::default(), Vec::new());
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = match kind {
            "debuginfod" => {
                let id = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                let id = id.unwrap_or_default();
                let file_name = if name == "debuginfo" {
                    format!("{id}.debug")
                } else {
                    id
                };
                ingest::ingest_file(to, &path, &file_name, ns, None)
            }
            _ => {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let segs: Vec<String> = rel
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                let key = segs[segs.len() - 3..].join("/");
                ingest::ingest_file_as(to, &path, &key, ns, None)
            }
        };
        match result {
            Ok(r) => {
                total.uploaded_keys.extend(r.uploaded_keys);
                total.skipped_keys.extend(r.skipped_keys);
            }
            Err(e) => failed.push((path, e.to_string())),
        }
        progress.step();
    }
    Ok((total, failed))
}
