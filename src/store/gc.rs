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

use super::index::DbError;
use super::sql::{Conn, ConnExt, Row, Value};
use crate::sql_params;

use super::blobs::BlobInfo;
use super::{Encoding, Namespace, Store};
use crate::error::{Error, Result};
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
    /// Every key of a namespace (`symdepot delete --namespace cache`).
    Namespace(Namespace),
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
    /// Upload manifests that were owed and are now written (blobs on S3).
    pub manifests: usize,
}

/// Whether any row names the blob.
fn blob_referenced(c: &mut dyn Conn, hash: &str, enc: Encoding) -> Result<bool> {
    Ok(c.row(
        "SELECT 1 FROM keys WHERE blob = ?1 AND encoding = ?2 LIMIT 1",
        &sql_params![hash, enc.as_str()],
    )?
    .is_some())
}

/// `(namespace, key)` pairs of rows a query answers.
fn ns_keys(rows: &[Row]) -> std::result::Result<Vec<(String, String)>, DbError> {
    rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
}

/// Whether an upload pinned the blob since `cutoff_ms` (the grace cutoff):
/// young by its pin, as a file is by its modification time.
fn blob_pinned(c: &mut dyn Conn, hash: &str, enc: Encoding, cutoff_ms: i64) -> Result<bool> {
    Ok(c.row(
        "SELECT 1 FROM blob_pins WHERE blob = ?1 AND encoding = ?2 AND pinned_at >= ?3",
        &sql_params![hash, enc.as_str(), cutoff_ms],
    )?
    .is_some())
}

/// Refuses a run that would delete more than `max` (a share) of `total` blobs
/// the index never knew to be garbage.
fn check_delete_share(n: usize, total: usize, max: f64) -> Result<()> {
    if n == 0 || (n as f64) <= max * total as f64 {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "GC would delete {n} of the {total} stored blobs, more than gc_max_delete_fraction \
         ({:.0}%) allows in one run. If the index is older than the blobs (restored from a \
         backup) or was lost, run `symdepot reindex` first; if they really are garbage, run \
         `symdepot gc --force`. Nothing was deleted.",
        max * 100.0
    )))
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether a file was last modified before `cutoff`.
fn older_than(meta: &fs::Metadata, cutoff: SystemTime) -> bool {
    meta.modified().is_ok_and(|m| m < cutoff)
}

/// How a GC run may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Report what would go; change nothing.
    DryRun,
    /// Collect, unless the blobs to delete are more than
    /// `gc_max_delete_fraction` of the store ([`Error::Refused`], nothing deleted).
    Run,
    /// Collect whatever share it is (`symdepot gc --force`).
    Force,
}

impl Store {
    /// Runs GC as of `now` (injectable, for tests).
    ///
    /// Expiry goes first (it is the retention policy, and only removes rows and
    /// entries). Then the blobs no row names are counted before anything else is
    /// removed: if they are more than `gc_max_delete_fraction` of all blobs, an
    /// index that does not know the store (restored from an old backup, say) is
    /// more likely than that much garbage, and the run stops there.
    pub fn gc(&self, now: SystemTime, mode: GcMode) -> Result<GcReport> {
        let _maintenance = super::lock::MaintenanceLock::for_gc(self.root())?;
        // One daemon of a store at a time (several daemons share one index).
        let Some(_job) = self.db().try_job_lock(super::index::Job::Gc)? else {
            return Err(Error::Refused(
                "GC is running on another daemon of this store; nothing was done".into(),
            ));
        };
        let dry_run = mode == GcMode::DryRun;
        let settings = self.settings();
        let grace_cutoff = now.checked_sub(settings.gc_grace).unwrap_or(UNIX_EPOCH);
        let mut report = GcReport::default();
        if !dry_run {
            report.manifests = self.write_owed_manifests(ms(grace_cutoff))?;
        }
        let try_cutoff = ms(now) - settings.try_retention.as_millis() as i64;
        report.expired = self.expire(Namespace::Try, try_cutoff, dry_run)?;
        if let Some(keep) = settings.release_retention {
            let cutoff = ms(now) - keep.as_millis() as i64;
            report
                .expired
                .extend(self.expire(Namespace::Release, cutoff, dry_run)?);
        }
        let cache_cutoff = ms(now) - settings.cache_retention.as_millis() as i64;
        report.expired.extend(self.expire_cache(
            cache_cutoff,
            settings.cache_max_bytes,
            dry_run,
        )?);
        let (candidates, total) = self.orphan_blob_candidates(grace_cutoff)?;
        if mode == GcMode::Run {
            // Blobs the index let go of itself are garbage by its own account.
            let unknown = self.count_unreleased(&candidates)?;
            check_delete_share(unknown, total, settings.gc_max_delete_fraction)?;
        }
        report.entries = self.orphan_entries(grace_cutoff, dry_run)?;
        (report.blobs, report.blob_bytes) =
            self.remove_orphan_blobs(candidates, grace_cutoff, dry_run)?;
        if !dry_run {
            self.db().writing(|c| {
                c.exec(
                    "DELETE FROM blob_pins WHERE pinned_at < ?1",
                    &sql_params![ms(grace_cutoff)],
                )?;
                Ok(())
            })?;
            self.forget_orphan_streams()?;
        }
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
        let record = self.begin_upload(&start)?.id();
        let (sql, args): (&str, Vec<Value>) = match target {
            DeleteTarget::Key { namespace, key } => (
                "DELETE FROM keys WHERE namespace = ?1 AND key_norm = ?2 RETURNING namespace, key",
                vec![namespace.as_str().into(), normalize(key).into()],
            ),
            DeleteTarget::Upload(id) => (
                "DELETE FROM keys WHERE upload_id = ?1 RETURNING namespace, key",
                vec![(*id).into()],
            ),
            DeleteTarget::Namespace(ns) => (
                "DELETE FROM keys WHERE namespace = ?1 RETURNING namespace, key",
                vec![ns.as_str().into()],
            ),
        };
        let gone = self.db().writing(|c| {
            let gone = ns_keys(&c.rows(sql, &args)?)?;
            for (ns, key) in &gone {
                let ns = Namespace::parse(ns).unwrap_or(Namespace::Release);
                self.remove_entry_of_row(ns, key)?;
                c.exec(
                    "INSERT INTO upload_members (upload_id, key, outcome) VALUES (?1, ?2, 'deleted')",
                    &sql_params![record, key],
                )?;
            }
            c.exec(
                "UPDATE uploads SET status = 'deleted', http_status = 200, files_count = ?2, \
                 completed_at = ?3 WHERE id = ?1",
                &sql_params![record, gone.len(), super::now_ms()],
            )?;
            Ok(gone)
        })?;
        self.bump();
        Ok(gone.into_iter().map(|(_, k)| k).collect())
    }

    /// Removes the layout entry of a row being deleted. A key the door refuses
    /// (a row written by an older version that did not check every segment)
    /// has its row deleted, but nothing on disk is touched through it.
    pub(super) fn remove_entry_of_row(&self, ns: Namespace, key: &str) -> Result<()> {
        match self.remove_entry(ns, key) {
            Err(Error::Invalid { rule, .. }) => {
                tracing::warn!(
                    key,
                    rule,
                    "row deleted; its key names no entry the store may touch"
                );
                Ok(())
            }
            other => other,
        }
    }

    /// Removes keys of `ns` last uploaded before `cutoff_ms`, index and layout.
    fn expire(
        &self,
        ns: Namespace,
        cutoff_ms: i64,
        dry_run: bool,
    ) -> Result<Vec<(String, String)>> {
        if dry_run {
            return self.db().reading(|c| {
                Ok(ns_keys(&c.rows(
                    "SELECT namespace, key FROM keys WHERE namespace = ?1 \
                     AND last_uploaded_at < ?2 ORDER BY key",
                    &sql_params![ns.as_str(), cutoff_ms],
                )?)?)
            });
        }
        let gone = self.db().writing(|c| {
            let gone = ns_keys(&c.rows(
                "DELETE FROM keys WHERE namespace = ?1 AND last_uploaded_at < ?2 \
                 RETURNING namespace, key",
                &sql_params![ns.as_str(), cutoff_ms],
            )?)?;
            for (_, key) in &gone {
                self.remove_entry_of_row(ns, key)?;
            }
            Ok(gone)
        })?;
        if !gone.is_empty() {
            self.bump();
        }
        Ok(gone)
    }

    /// Fetched files (`cache`) last asked for before `cutoff_ms`, then, while
    /// the cache takes more than `max_bytes`, the least recently used: index
    /// and layout. Their blobs go with the other garbage.
    fn expire_cache(
        &self,
        cutoff_ms: i64,
        max_bytes: Option<u64>,
        dry_run: bool,
    ) -> Result<Vec<(String, String)>> {
        let rows = self.db().reading(|c| {
            Ok(c.rows(
                "SELECT id, key, stored_size, COALESCE(last_accessed_at, last_uploaded_at) \
                 FROM keys WHERE namespace = 'cache' ORDER BY 4, 1",
                &[],
            )?)
        })?;
        let mut left: u64 = rows
            .iter()
            .map(|r| r.get::<i64>(2).map(|n| n.max(0) as u64))
            .sum::<std::result::Result<u64, DbError>>()?;
        let mut gone: Vec<(i64, String)> = Vec::new();
        for r in &rows {
            let used: i64 = r.get(3)?;
            if used >= cutoff_ms && max_bytes.is_none_or(|max| left <= max) {
                break;
            }
            gone.push((r.get(0)?, r.get(1)?));
            left = left.saturating_sub(r.get::<i64>(2)?.max(0) as u64);
        }
        let out: Vec<(String, String)> = gone
            .iter()
            .map(|(_, k)| (Namespace::Cache.as_str().to_string(), k.clone()))
            .collect();
        if dry_run || gone.is_empty() {
            return Ok(out);
        }
        self.db().writing(|c| {
            for (id, _) in &gone {
                let rows = c.rows(
                    "DELETE FROM keys WHERE id = ?1 AND namespace = 'cache' RETURNING key",
                    &sql_params![*id],
                )?;
                for r in &rows {
                    self.remove_entry_of_row(Namespace::Cache, &r.get::<String>(0)?)?;
                }
            }
            Ok(())
        })?;
        self.bump();
        Ok(out)
    }

    /// Layout entries no row names, older than the grace cutoff.
    fn orphan_entries(&self, cutoff: SystemTime, dry_run: bool) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for ns in Namespace::ALL {
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
                    super::door::remove_entry(&top, &path)?;
                }
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Blobs no row references, no upload pins and older than the grace
    /// cutoff (path, hash, encoding, size), and how many blobs there are in
    /// all. Changes nothing.
    fn orphan_blob_candidates(&self, cutoff: SystemTime) -> Result<(Vec<BlobInfo>, usize)> {
        let blobs = self.blobs().list()?;
        let total = blobs.len();
        let mut out = Vec::new();
        for b in blobs {
            if b.modified < cutoff
                && !self.db().reading(|c| {
                    Ok(blob_referenced(c, &b.hash, b.encoding)?
                        || blob_pinned(c, &b.hash, b.encoding, ms(cutoff))?)
                })?
            {
                out.push(b);
            }
        }
        Ok((out, total))
    }

    /// How many of these blobs the index never let go of (no `released` row).
    fn count_unreleased(&self, blobs: &[BlobInfo]) -> Result<usize> {
        self.db().reading(|c| {
            let mut n = 0;
            for b in blobs {
                let released = c.row(
                    "SELECT 1 FROM released WHERE blob = ?1 AND encoding = ?2",
                    &sql_params![&b.hash, b.encoding.as_str()],
                )?;
                if released.is_none() {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// Removes the candidate blobs that are still unreferenced. Each is checked
    /// and removed inside a write transaction, so no upload commits a row
    /// naming it meanwhile (an upload touches or pins a blob before linking
    /// it, so a blob it needs is also young again or pinned).
    fn remove_orphan_blobs(
        &self,
        candidates: Vec<BlobInfo>,
        cutoff: SystemTime,
        dry_run: bool,
    ) -> Result<(Vec<PathBuf>, u64)> {
        let (mut out, mut bytes) = (Vec::new(), 0);
        for b in candidates {
            if !dry_run {
                let removed = self.db().writing(|c| {
                    // Touched by an upload since it was listed: it is needed again.
                    let young = self
                        .blobs()
                        .info(&b.hash, b.encoding)?
                        .is_none_or(|now| now.modified >= cutoff);
                    if young
                        || blob_referenced(c, &b.hash, b.encoding)?
                        || blob_pinned(c, &b.hash, b.encoding, ms(cutoff))?
                    {
                        return Ok(false);
                    }
                    self.blobs().delete(&b.hash, b.encoding)?;
                    c.exec(
                        "DELETE FROM released WHERE blob = ?1 AND encoding = ?2",
                        &sql_params![&b.hash, b.encoding.as_str()],
                    )?;
                    Ok(true)
                })?;
                if !removed {
                    continue;
                }
            }
            bytes += b.stored_size;
            out.push(self.blob_display(&b));
        }
        Ok((out, bytes))
    }

    /// How a blob is named in a report: its path where it has one.
    fn blob_display(&self, b: &BlobInfo) -> PathBuf {
        self.blobs()
            .local_path(&b.hash, b.encoding)
            .unwrap_or_else(|| PathBuf::from(&b.hash))
    }

    /// Temp files and the temp folders of processes that are gone, older than the grace cutoff.
    fn stale_temp(&self, cutoff: SystemTime, dry_run: bool) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root().join("tmp"))? {
            let entry = entry?;
            let path = entry.path();
            // A live process's temp folder (this one's too) is its own business.
            if super::lock::ProcessTemp::is_live(&path) || !older_than(&entry.metadata()?, cutoff) {
                continue;
            }
            if !dry_run {
                let res = if entry.file_type()?.is_dir() {
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

/// Every `<module>/<id>/<file>` entry under a layout tree, with its key.
/// Symbolic links are neither followed nor listed (see [`super::door::walk3`]).
pub(crate) fn layout_entries(top: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    super::door::walk3(top)
}
