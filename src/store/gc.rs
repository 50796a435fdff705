//! Garbage collection: expire try (and optionally release) keys, drop what
//! no key references, clear stale temp files.
//!
//! GC decides from the index alone, never from link counts. Expired keys go
//! in one transaction (`DELETE … RETURNING`), their layout entries are
//! removed before it commits. A blob is garbage when no `keys` row names it
//! *and* it is older than `gc_grace`: an upload touches every blob it is about
//! to link (writing it, or finding it already stored), so a blob an upload in
//! progress needs is always young. Each blob is checked and removed inside a
//! write transaction, so no upload can commit a row naming it meanwhile —
//! in this process or another. Layout entries the index does not name, and
//! temp files, are removed under the same grace.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};

use super::{Encoding, Namespace, Store};
use crate::error::Result;
use crate::keys::normalize;

/// What `delete` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    Key {
        namespace: Namespace,
        key: String,
    },
    /// Every key whose current content came from this upload.
    Upload(i64),
}

/// What a GC run removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// `(namespace, key)` of expired keys.
    pub expired: Vec<(String, String)>,
    /// Blobs no key references.
    pub blobs: Vec<PathBuf>,
    /// Bytes those blobs take on disk.
    pub blob_bytes: u64,
    /// Layout entries the index does not name.
    pub entries: Vec<PathBuf>,
    /// Stale temp files.
    pub temp: Vec<PathBuf>,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether a file was last modified before `cutoff`.
fn older_than(meta: &fs::Metadata, cutoff: SystemTime) -> bool {
    meta.modified().is_ok_and(|m| m < cutoff)
}

impl Store {
    /// Runs GC as of `now` (injectable, for tests). With `dry_run` it only reports.
    pub fn gc(&self, now: SystemTime, dry_run: bool) -> Result<GcReport> {
        let cfg = self.config();
        let grace_cutoff = now.checked_sub(cfg.gc_grace()).unwrap_or(UNIX_EPOCH);
        let mut report = GcReport::default();
        let try_cutoff = ms(now) - cfg.try_retention().as_millis() as i64;
        report.expired = self.expire(Namespace::Try, try_cutoff, dry_run)?;
        if let Some(keep) = cfg.release_retention() {
            let cutoff = ms(now) - keep.as_millis() as i64;
            report
                .expired
                .extend(self.expire(Namespace::Release, cutoff, dry_run)?);
        }
        report.entries = self.orphan_entries(grace_cutoff, dry_run)?;
        (report.blobs, report.blob_bytes) = self.orphan_blobs(grace_cutoff, dry_run)?;
        report.temp = self.stale_temp(grace_cutoff, dry_run)?;
        Ok(report)
    }

    /// Deletes keys (all of `ns`, by key, case-insensitively; or every key an
    /// upload stored), index and layout, and records it as an upload by `user`
    /// with one `deleted` member per key. Blobs go at the next GC.
    pub fn delete_keys(&self, target: &DeleteTarget, user: &str) -> Result<Vec<String>> {
        let start = super::UploadStart {
            user: user.to_string(),
            ..super::UploadStart::default()
        };
        let record = self.begin_upload(&start)?;
        let mut conn = self.db().writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (sql, args): (&str, Vec<rusqlite::types::Value>) = match target {
            DeleteTarget::Key { namespace, key } => (
                "DELETE FROM keys WHERE namespace = ?1 AND key_norm = ?2 RETURNING namespace, key",
                vec![namespace.as_str().to_string().into(), normalize(key).into()],
            ),
            DeleteTarget::Upload(id) => (
                "DELETE FROM keys WHERE upload_id = ?1 RETURNING namespace, key",
                vec![(*id).into()],
            ),
        };
        let gone: Vec<(String, String)> = {
            let mut st = tx.prepare(sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (ns, key) in &gone {
            let ns = if ns == "try" {
                Namespace::Try
            } else {
                Namespace::Release
            };
            remove_file_and_empty_parents(
                &self.entry_path(ns, key),
                &self.root().join(ns.as_str()),
            )?;
            tx.execute(
                "INSERT INTO upload_members (upload_id, key, outcome) VALUES (?1, ?2, 'deleted')",
                params![record, key],
            )?;
        }
        tx.execute(
            "UPDATE uploads SET status = 'deleted', http_status = 200, files_count = ?2, completed_at = ?3 WHERE id = ?1",
            params![record, gone.len(), super::now_ms()],
        )?;
        tx.commit()?;
        self.bump();
        Ok(gone.into_iter().map(|(_, k)| k).collect())
    }

    /// Removes keys of `ns` last uploaded before `cutoff_ms`, index and layout.
    fn expire(
        &self,
        ns: Namespace,
        cutoff_ms: i64,
        dry_run: bool,
    ) -> Result<Vec<(String, String)>> {
        if dry_run {
            return self.db().read(|c| {
                let mut st = c.prepare(
                    "SELECT namespace, key FROM keys WHERE namespace = ?1 AND last_uploaded_at < ?2 ORDER BY key",
                )?;
                let rows = st.query_map(params![ns.as_str(), cutoff_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            });
        }
        let mut conn = self.db().writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let gone: Vec<(String, String)> = {
            let mut st = tx.prepare(
                "DELETE FROM keys WHERE namespace = ?1 AND last_uploaded_at < ?2 RETURNING namespace, key",
            )?;
            let rows = st.query_map(params![ns.as_str(), cutoff_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (_, key) in &gone {
            remove_file_and_empty_parents(
                &self.entry_path(ns, key),
                &self.root().join(ns.as_str()),
            )?;
        }
        tx.commit()?;
        if !gone.is_empty() {
            self.bump();
        }
        Ok(gone)
    }

    /// Layout entries no row names, older than the grace cutoff.
    fn orphan_entries(&self, cutoff: SystemTime, dry_run: bool) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for ns in [Namespace::Release, Namespace::Try] {
            let top = self.root().join(ns.as_str());
            for (path, key) in layout_entries(&top)? {
                let meta = fs::symlink_metadata(&path)?;
                if !older_than(&meta, cutoff) {
                    continue;
                }
                let indexed = self
                    .db()
                    .key_row(ns, &normalize(&key))?
                    .is_some_and(|row| row.key == key);
                if indexed {
                    continue;
                }
                if !dry_run {
                    remove_file_and_empty_parents(&path, &top)?;
                }
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Blobs no row references, older than the grace cutoff.
    fn orphan_blobs(&self, cutoff: SystemTime, dry_run: bool) -> Result<(Vec<PathBuf>, u64)> {
        let objects = self.root().join("objects");
        let (mut out, mut bytes) = (Vec::new(), 0);
        for (path, hash, enc) in blob_files(&objects)? {
            let meta = fs::metadata(&path)?;
            if !older_than(&meta, cutoff) {
                continue;
            }
            let mut conn = self.db().writer();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let referenced = tx
                .query_row(
                    "SELECT 1 FROM keys WHERE blob = ?1 AND encoding = ?2 LIMIT 1",
                    params![hash, enc.as_str()],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !referenced {
                if !dry_run {
                    remove_file_and_empty_parents(&path, &objects)?;
                }
                bytes += meta.len();
                out.push(path);
            }
            tx.commit()?;
        }
        Ok((out, bytes))
    }

    /// Temp files older than the grace cutoff.
    fn stale_temp(&self, cutoff: SystemTime, dry_run: bool) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.tmp_dir())? {
            let entry = entry?;
            if !older_than(&entry.metadata()?, cutoff) {
                continue;
            }
            let path = entry.path();
            if !dry_run {
                let res = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                ignore_missing(res)?;
            }
            out.push(path);
        }
        Ok(out)
    }
}

fn ignore_missing(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes a file, then its parent folders up to (not including) `top` while they are empty.
pub(crate) fn remove_file_and_empty_parents(path: &Path, top: &Path) -> io::Result<()> {
    ignore_missing(fs::remove_file(path))?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == top || !d.starts_with(top) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Every `<module>/<id>/<file>` entry under a layout tree, with its key.
pub(crate) fn layout_entries(top: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for m in read_dir_sorted(top)? {
        for i in read_dir_sorted(&m)? {
            for f in read_dir_sorted(&i)? {
                if fs::symlink_metadata(&f)?.is_file() {
                    let key = f
                        .strip_prefix(top)
                        .unwrap_or(&f)
                        .to_string_lossy()
                        .into_owned();
                    out.push((f, key));
                }
            }
        }
    }
    Ok(out)
}

/// Every blob file under `objects/`, with its hash and encoding.
pub(crate) fn blob_files(objects: &Path) -> io::Result<Vec<(PathBuf, String, Encoding)>> {
    let mut out = Vec::new();
    for a in read_dir_sorted(objects)? {
        for b in read_dir_sorted(&a)? {
            for f in read_dir_sorted(&b)? {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (hash, enc) = match name.strip_suffix(".gz") {
                    Some(h) => (h.to_string(), Encoding::Gzip),
                    None => (name, Encoding::Identity),
                };
                if hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit()) {
                    out.push((f, hash, enc));
                }
            }
        }
    }
    Ok(out)
}

/// The entries of a folder (none if it does not exist), sorted.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut v: Vec<PathBuf> = rd.map(|e| e.map(|e| e.path())).collect::<io::Result<_>>()?;
    v.sort();
    Ok(v)
}
