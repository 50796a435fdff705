//! `export` and `import`: plain trees for removable media and for a
//! debugger's local symbol path, and ingest of existing trees.
//!
//! Export writes original (uncompressed) bytes, each file through a temp name
//! and a rename, in the layout the matching tool reads directly. Import
//! recognises a SymStore share (`000Admin`, `index2.txt`, `pingme.txt`), a
//! debuginfod-style tree (`buildid/<id>/debuginfo|executable`) or a Breakpad
//! tree (`<module>/<id>/<file>`), and ingests each file like an upload.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::identity::Kind;
use crate::ingest::{self, Report};
use crate::keys::normalize;
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
            let mut paths = vec![symstore_path(row)];
            paths.extend(ssqp_paths(row, lookups));
            if index2 {
                paths = paths.iter().map(|rel| two_tier(rel)).collect();
            }
            paths
        }
        ExportLayout::Debuginfod => lookups
            .iter()
            .filter_map(|l| l.strip_prefix("buildid:"))
            .map(|rest| PathBuf::from("buildid").join(rest))
            .collect(),
    }
}

/// A key's own path in a SymStore share: a PE under its code id (SymStore's
/// key), everything else under its key.
fn symstore_path(row: &KeyRow) -> PathBuf {
    let file = row.key.rsplit('/').next().unwrap_or(&row.key);
    match (row.kind, &row.code_id) {
        (Kind::Pe, Some(code)) => PathBuf::from(file).join(code).join(file),
        _ => PathBuf::from(&row.key),
    }
}

/// The SSQP keys of an ELF or Mach-O file (`<file>/elf-buildid-<id>/<file>`,
/// `_.debug/elf-buildid-sym-<id>/_.debug`, `<file>/mach-uuid-<uuid>/<file>`,
/// `_.dwarf/mach-uuid-sym-<uuid>/_.dwarf`), as the SymStore routes answer
/// them, with the file's own name in its own case.
fn ssqp_paths(row: &KeyRow, lookups: &[String]) -> Vec<PathBuf> {
    let file = row.key.rsplit('/').next().unwrap_or(&row.key);
    let lower = normalize(file);
    lookups
        .iter()
        .filter(|l| is_ssqp_key(l))
        .map(|l| {
            l.split('/')
                .map(|seg| if seg == lower { file } else { seg })
                .collect()
        })
        .collect()
}

/// Whether a three-segment key is an ELF or Mach-O SSQP key (any case).
fn is_ssqp_key(key: &str) -> bool {
    let segs: Vec<String> = key.split('/').map(str::to_ascii_lowercase).collect();
    segs.len() == 3 && (segs[1].starts_with("elf-buildid-") || segs[1].starts_with("mach-uuid-"))
}

/// A path of SymStore's two-tier tree: below the first two characters of
/// its first segment, lower-cased.
fn two_tier(rel: &Path) -> PathBuf {
    let first = rel
        .iter()
        .next()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    PathBuf::from(first.chars().take(2).collect::<String>()).join(rel)
}

/// What a plain export did.
#[derive(Debug, Default)]
pub struct ExportReport {
    /// Files written (each path once).
    pub files: u64,
    /// Keys the filter chose.
    pub keys: usize,
    /// Keys not exported because their path would leave the export folder.
    pub refused: Vec<String>,
}

/// Exports keys into `dir`, each path once; `progress` counts the files written.
pub fn export_tree(
    store: &Store,
    dir: &Path,
    layout: ExportLayout,
    filter: &ExportFilter,
    progress: &mut dyn Progress,
) -> anyhow::Result<ExportReport> {
    let rows = store.export_rows(filter)?;
    fs::create_dir_all(dir)?;
    if let ExportLayout::SymStore { index2: true } = layout {
        crate::zips::create_no_follow(&dir.join("index2.txt"))?;
    }
    let plan = plan_export(store, &rows, layout)?;
    progress.total(plan.files.len() as u64);
    for (rel, row) in &plan.files {
        let dest = dir.join(rel);
        make_real_dirs(dir, rel).with_context(|| format!("writing {}", dest.display()))?;
        write_file(&dest, &mut original(store, row)?)
            .with_context(|| format!("writing {}", dest.display()))?;
        progress.step();
    }
    Ok(ExportReport {
        files: plan.files.len() as u64,
        keys: rows.len(),
        refused: plan.refused,
    })
}

/// The files an export writes and the keys it refuses.
struct ExportPlan<'a> {
    /// Each relative path once (compared without case, as the server looks
    /// paths up), from the key the server answers it with: the one uploaded last.
    files: Vec<(PathBuf, &'a KeyRow)>,
    /// Keys a path of which would leave the export folder.
    refused: Vec<String>,
}

fn plan_export<'a>(
    store: &Store,
    rows: &'a [KeyRow],
    layout: ExportLayout,
) -> anyhow::Result<ExportPlan<'a>> {
    let mut files: BTreeMap<String, (PathBuf, &KeyRow)> = BTreeMap::new();
    let mut refused = Vec::new();
    for row in rows {
        for rel in export_paths(row, layout, &lookups_for(store, row, layout)?) {
            // Only plain names below the folder: a key from an older index that
            // the store's door would refuse is not written anywhere.
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                tracing::warn!(
                    key = row.key,
                    "not exported: its path would leave the export folder"
                );
                if refused.last() != Some(&row.key) {
                    refused.push(row.key.clone());
                }
                continue;
            }
            match files.entry(rel.to_string_lossy().to_lowercase()) {
                Entry::Vacant(v) => {
                    v.insert((rel, row));
                }
                Entry::Occupied(mut o) if o.get().1.last_uploaded_at < row.last_uploaded_at => {
                    o.insert((rel, row));
                }
                Entry::Occupied(_) => {}
            }
        }
    }
    Ok(ExportPlan {
        files: files.into_values().collect(),
        refused,
    })
}

/// The lookup keys a layout places a key by (none for Breakpad's).
fn lookups_for(store: &Store, row: &KeyRow, layout: ExportLayout) -> anyhow::Result<Vec<String>> {
    let wanted = match layout {
        ExportLayout::Breakpad => false,
        ExportLayout::SymStore { .. } => matches!(row.kind, Kind::Elf | Kind::MachO),
        ExportLayout::Debuginfod => true,
    };
    Ok(if wanted {
        store.lookups_of(row.id)?
    } else {
        Vec::new()
    })
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

/// Imports an existing tree as the upload `upload_id` (its members recorded,
/// and its manifest written after the last file, so a store whose blobs are on
/// S3 can rebuild a lost index with them). Returns the combined report and the
/// files that failed; `progress` counts the files.
pub fn import_tree(
    to: ingest::Ingest<'_>,
    dir: &Path,
    ns: Namespace,
    upload_id: Option<i64>,
    progress: &mut dyn Progress,
) -> anyhow::Result<ingest::batch::Batch> {
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
    // Files under their own keys first: an SSQP path is often another name
    // of one of them.
    files.sort_by_key(|p| is_ssqp_key(&last_segments(dir, p)));
    // SymStore's pointers to files elsewhere are not symbol files.
    files.retain(|p| !p.ends_with("file.ptr") && !p.ends_with("refs.ptr"));
    progress.total(files.len() as u64);
    let mut batch = ingest::batch::Batch {
        files: files.len(),
        ..Default::default()
    };
    for path in files {
        batch.size += fs::metadata(&path).map_or(0, |m| m.len());
        match import_file(to, dir, kind, &path, ns, upload_id) {
            Ok(r) => batch.report.absorb(r),
            Err(e) => {
                ingest::batch::note_failure(to, &path, &e, upload_id);
                batch.failed.push((path, e));
            }
        }
        progress.step();
    }
    if let Some(id) = upload_id {
        to.store.write_manifest(id)?;
    }
    Ok(batch)
}

/// The last three segments of a file's path below `dir`: the key it sits under.
fn last_segments(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    let segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    segs[segs.len().saturating_sub(3)..].join("/")
}

/// Imports one file of a tree of `kind`.
fn import_file(
    to: ingest::Ingest<'_>,
    dir: &Path,
    kind: &str,
    path: &Path,
    ns: Namespace,
    upload_id: Option<i64>,
) -> crate::error::Result<Report> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "file.ptr" || name == "refs.ptr" {
        return Ok(Report::default());
    }
    let key = last_segments(dir, path);
    match kind {
        "debuginfod" => ingest::ingest_file(to, path, &debuginfod_name(path, &name), ns, upload_id),
        _ if is_ssqp_key(&key) => import_ssqp(to, path, &key, ns, upload_id),
        _ => ingest::ingest_file_as(to, path, &key, ns, upload_id),
    }
}

/// The name a file of `buildid/<id>/debuginfo|executable` is placed by.
fn debuginfod_name(path: &Path, name: &str) -> String {
    let id = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "debuginfo" {
        format!("{id}.debug")
    } else {
        id
    }
}

/// A file under an ELF or Mach-O SSQP key: nothing to do when the store
/// already answers that key with these bytes in this namespace (the file came
/// in under its own key); else placed by its identity, named by the key's file
/// name (`<id>.debug` or `<uuid>.dwarf` for `_.debug` and `_.dwarf`).
fn import_ssqp(
    to: ingest::Ingest<'_>,
    path: &Path,
    key: &str,
    ns: Namespace,
    upload_id: Option<i64>,
) -> crate::error::Result<Report> {
    if let Some(row) = to.store.lookup(&normalize(key), ns == Namespace::Try)?
        && row.namespace == ns
        && row.blob == blake3_of(path)?
    {
        return Ok(Report {
            skipped_keys: vec![row.key],
            ..Report::default()
        });
    }
    let (file, id) = key.split_once('/').unwrap_or((key, ""));
    let id = id.split('/').next().unwrap_or("").to_ascii_lowercase();
    let name = match file.to_ascii_lowercase().as_str() {
        "_.debug" => format!("{}.debug", id.trim_start_matches("elf-buildid-sym-")),
        "_.dwarf" => format!("{}.dwarf", id.trim_start_matches("mach-uuid-sym-")),
        _ => file.to_string(),
    };
    ingest::ingest_file(to, path, &name, ns, upload_id)
}

/// The BLAKE3 of a file's bytes: the name of its blob.
fn blake3_of(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut io::BufReader::new(fs::File::open(path)?), &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}
