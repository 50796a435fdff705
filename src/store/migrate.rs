//! Moving a store to other engines: `symdepot migrate --to-config FILE`
//! copies this store (blobs, keys and their lookups, upload history, tokens,
//! missing symbols) into the store `FILE` describes — a single machine's
//! into S3 + PostgreSQL, or a cluster's back onto one disk.
//!
//! The source is only read, so its daemon keeps serving. The copy goes in an
//! order that leaves the target consistent at every moment: tokens and
//! records first (they name no blob), then keys a page at a time — each
//! page's blobs copied as stored (never recompressed; a blob already there is
//! not copied again) and, on local disk, linked into the layout tree, before
//! the one transaction that writes the page's rows. Rows are written by their
//! source ids (an upsert), so running it again — after an interruption, or to
//! catch up with what the source took meanwhile — copies only what is new or
//! changed and removes from the target the keys the source no longer has. It
//! ends with a verify of every key of the target.
//!
//! A target that already holds another store's symbols is refused: the
//! target's index remembers which store it is a copy of (`store_meta`).

use std::collections::{HashMap, HashSet};

use super::sql::{Conn, ConnExt, Row};
use super::{Encoding, Namespace, Store};
use crate::error::{Error, Result};
use crate::sql_params;

/// `store_meta` of a target: which store it is a copy of,
const COPY_OF: &str = "migrated_from";
/// that a run began and has not finished (the target refuses to serve),
pub(crate) const UNFINISHED: &str = "migration_unfinished";
/// and its highest ids when the last run finished (a target that moved
/// past them has served, and is not overwritten).
const COPIED_UP_TO: &str = "migrated_up_to";

/// Rows read and written per transaction unless told otherwise.
pub const DEFAULT_BATCH: u32 = 500;

/// A table copied row by row, keyed by `conflict` in the target.
struct Table {
    name: &'static str,
    cols: &'static [&'static str],
    conflict: &'static str,
}

const TOKENS: Table = Table {
    name: "tokens",
    cols: &[
        "id",
        "secret_hash",
        "permissions",
        "\"user\"",
        "note",
        "created_at",
        "expires_at",
        "revoked_at",
    ],
    conflict: "id",
};

/// `manifest_at` is not copied: a target that keeps manifests writes its own.
const UPLOADS: Table = Table {
    name: "uploads",
    cols: &[
        "id",
        "\"user\"",
        "token_id",
        "filename",
        "size",
        "download_url",
        "try_symbols",
        "status",
        "http_status",
        "error",
        "files_count",
        "created_at",
        "completed_at",
    ],
    conflict: "id",
};

const MEMBERS: Table = Table {
    name: "upload_members",
    cols: &[
        "id",
        "upload_id",
        "key",
        "outcome",
        "size",
        "stored_size",
        "blake3",
        "debug_file",
        "debug_id",
        "code_file",
        "code_id",
        "generator",
        "error",
        "namespace",
        "encoding",
        "kind",
        "os",
        "arch",
        "committed_at",
    ],
    conflict: "id",
};

const MISSING: Table = Table {
    name: "missing",
    cols: &[
        "debug_file",
        "debug_id",
        "code_file",
        "code_id",
        "count",
        "first_seen",
        "last_seen",
    ],
    conflict: "debug_file, debug_id",
};

const KEYS: Table = Table {
    name: "keys",
    cols: &[
        "id",
        "namespace",
        "key",
        "key_norm",
        "blob",
        "encoding",
        "size",
        "stored_size",
        "kind",
        "debug_file",
        "debug_id",
        "code_file",
        "code_id",
        "generator",
        "os",
        "arch",
        "upload_id",
        "created_at",
        "last_uploaded_at",
        "last_accessed_at",
    ],
    conflict: "id",
};

/// Positions in [`KEYS`]`.cols`.
const K_NAMESPACE: usize = 1;
const K_KEY: usize = 2;
const K_KEY_NORM: usize = 3;
const K_BLOB: usize = 4;
const K_ENCODING: usize = 5;

impl Table {
    /// A page of rows after source id `after`: the id first, then `cols`.
    fn select(&self) -> String {
        format!(
            "SELECT id, {} FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
            self.cols.join(", "),
            self.name
        )
    }

    /// [`Table::select`] of the rows whose upload is at most `?3`.
    fn select_bounded(&self) -> String {
        format!(
            "SELECT id, {} FROM {} WHERE id > ?1 AND upload_id <= ?3 ORDER BY id LIMIT ?2",
            self.cols.join(", "),
            self.name
        )
    }

    /// The rows with ids from `?1` to `?2`, as [`Table::select`] reads them.
    fn select_range(&self) -> String {
        format!(
            "SELECT id, {} FROM {} WHERE id >= ?1 AND id <= ?2",
            self.cols.join(", "),
            self.name
        )
    }

    /// Inserts one row, or updates the target's row of the same key.
    fn upsert(&self) -> String {
        let params: Vec<String> = (1..=self.cols.len()).map(|i| format!("?{i}")).collect();
        let keyed: Vec<&str> = self.conflict.split(", ").collect();
        let set: Vec<String> = self
            .cols
            .iter()
            .filter(|c| !keyed.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
            self.name,
            self.cols.join(", "),
            params.join(", "),
            self.conflict,
            set.join(", ")
        )
    }
}

/// What a run copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub tokens: u64,
    pub uploads: u64,
    pub members: u64,
    pub missing: u64,
    pub keys: u64,
    /// Blobs copied by this run.
    pub blobs_copied: u64,
    /// Bytes those blobs take as stored.
    pub blob_bytes: u64,
    /// Blobs the target already had (an earlier run, or shared content).
    pub blobs_present: u64,
    /// Keys the target had that the source no longer has, removed.
    pub keys_removed: u64,
    /// Keys the target already held exactly as the source does.
    pub rows_unchanged: u64,
    /// Keys the closing verify checked in the target.
    pub verified: u64,
}

/// How far a run is, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct MigrateProgress<'a> {
    pub what: &'a str,
    pub done: u64,
    pub total: u64,
}

impl Store {
    /// Refuses to serve a store that is the target of an unfinished
    /// `migrate` (half a copy). Commands still open it (`verify`, `migrate`).
    pub fn check_not_half_copied(&self) -> Result<()> {
        match self.meta(UNFINISHED)? {
            None => Ok(()),
            Some(_) => Err(Error::Refused(format!(
                "this store is the target of an unfinished `symdepot migrate` (a copy of store \
                 {}); run that migrate again to finish it before serving",
                self.meta(COPY_OF)?.unwrap_or_default()
            ))),
        }
    }

    /// Copies this store into `to` (see the module docs); resumable, and
    /// verified at the end. `progress` hears after every batch.
    pub fn migrate_to(
        &self,
        to: &Store,
        batch: u32,
        progress: &mut dyn FnMut(MigrateProgress<'_>),
    ) -> Result<MigrateReport> {
        let page = i64::from(batch.max(1));
        self.claim_target(to)?;
        // Until the copy is whole and verified, the target refuses to serve.
        to.set_meta(UNFINISHED, "1")?;
        let mut report = MigrateReport {
            tokens: self.copy_table(to, &TOKENS, page, None, progress)?,
            uploads: self.copy_table(to, &UPLOADS, page, None, progress)?,
            ..MigrateReport::default()
        };
        // Members of uploads that began after the uploads were copied wait
        // for the next run (their upload row must be there first).
        let last_upload = to.max_id("uploads")?;
        report.members = self.copy_table(to, &MEMBERS, page, Some(last_upload), progress)?;
        report.missing = self.copy_table(to, &MISSING, page, None, progress)?;
        report.keys = self.copy_keys(to, &mut report, page, progress)?;
        report.keys_removed = self.remove_keys_gone(to, page)?;
        to.write_owed_manifests(super::now_ms())?;
        to.bump();
        let verify = to.verify(false)?;
        if let Some(d) = verify.damage.first() {
            return Err(Error::Refused(format!(
                "migrate: the copy did not verify: {} damaged key(s) in the target, the first {:?} \
                 ({}); run `symdepot verify --repair` on the target (it moves damaged blobs \
                 aside), then `symdepot migrate` again to copy them anew",
                verify.damage.len(),
                d.key,
                d.problem
            )));
        }
        report.verified = verify.keys;
        to.set_meta(COPIED_UP_TO, &to.id_marks()?)?;
        to.delete_meta(UNFINISHED)?;
        Ok(report)
    }

    /// Makes `to` this store's copy, or refuses a target that holds another
    /// store's symbols, is this very store, or has taken writes of its own
    /// since the last run (a run now would overwrite them).
    fn claim_target(&self, to: &Store) -> Result<()> {
        let ours = match self.store_id()? {
            Some(id) => id,
            None => {
                let id = super::random_hex(16);
                self.set_store_id(&id)?;
                id
            }
        };
        if to.store_id()?.as_deref() == Some(ours.as_str()) {
            return Err(Error::Refused(
                "migrate: the target configuration names this same store (its index and blobs); \
                 give --to-config another database_url or blob store"
                    .into(),
            ));
        }
        match to.meta(COPY_OF)? {
            Some(id) if id == ours => {}
            _ if to.index_is_new()? => return to.set_meta(COPY_OF, &ours),
            Some(other) => {
                return Err(Error::Refused(format!(
                    "migrate: the target store is a copy of another store (id {other}, this one \
                     is {ours}); nothing was copied"
                )));
            }
            None => {
                return Err(Error::Refused(
                    "migrate: the target store already holds keys, uploads or tokens of its own; \
                     migrate copies into a new store (or one it copied into before); nothing was \
                     copied"
                        .into(),
                ));
            }
        }
        // (An interrupted run moved the ids on itself; the target could not
        // serve since.)
        if let Some(marks) = to.meta(COPIED_UP_TO)?
            && to.meta(UNFINISHED)?.is_none()
            && to.id_marks()? != marks
        {
            return Err(Error::Refused(format!(
                "migrate: the target has taken uploads, keys or tokens of its own since the last \
                 `symdepot migrate` finished (it has served; ids then {marks}, now {}); running \
                 it again would overwrite them. Nothing was copied",
                to.id_marks()?
            )));
        }
        Ok(())
    }

    /// The highest id of each table a store's own writes move on.
    fn id_marks(&self) -> Result<String> {
        let mut marks = Vec::new();
        for table in ["uploads", "upload_members", "keys", "tokens"] {
            marks.push(format!("{table}={}", self.max_id(table)?));
        }
        Ok(marks.join(" "))
    }

    fn max_id(&self, table: &str) -> Result<i64> {
        self.db().reading(|c| {
            Ok(c.one(
                &format!("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM {table}"),
                &[],
            )?)
        })
    }

    /// Copies a table that names no blob, a batch per transaction; with
    /// `parents`, only rows whose `upload_id` is at most that.
    fn copy_table(
        &self,
        to: &Store,
        t: &Table,
        page_rows: i64,
        parents: Option<i64>,
        progress: &mut dyn FnMut(MigrateProgress<'_>),
    ) -> Result<u64> {
        let total = self.count_rows(t.name)?;
        let select = match parents {
            Some(_) => t.select_bounded(),
            None => t.select(),
        };
        let upsert = t.upsert();
        let (mut after, mut seen, mut done) = (0i64, 0u64, 0u64);
        loop {
            let args = match parents {
                Some(max) => sql_params![after, page_rows, max].to_vec(),
                None => sql_params![after, page_rows].to_vec(),
            };
            let page = self.db().reading(|c| Ok(c.rows(&select, &args)?))?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.get(0)?;
            let n = to.db().writing(|c| {
                let mut n = 0u64;
                for row in &page {
                    c.exec(&upsert, &row.0[1..])?;
                    n += 1;
                }
                if t.cols[0] == "id" {
                    advance_sequence(c, t.name)?;
                }
                Ok(n)
            })?;
            done += n;
            seen += page.len() as u64;
            progress(MigrateProgress {
                what: t.name,
                done: seen,
                total,
            });
        }
        Ok(done)
    }

    /// Copies keys a batch at a time: blobs (and layout entries), then rows
    /// and lookups in one transaction; a key the target already holds as
    /// the source does is left as it is. Answers how many keys the source has.
    fn copy_keys(
        &self,
        to: &Store,
        report: &mut MigrateReport,
        page_rows: i64,
        progress: &mut dyn FnMut(MigrateProgress<'_>),
    ) -> Result<u64> {
        let total = self.count_rows("keys")?;
        let (select, upsert) = (KEYS.select(), KEYS.upsert());
        let in_range = KEYS.select_range();
        let (mut after, mut seen) = (0i64, 0u64);
        loop {
            let (page, lookups) = self.db().reading(|c| {
                let page = c.rows(&select, &sql_params![after, page_rows])?;
                let lookups = match (page.first(), page.last()) {
                    (Some(first), Some(last)) => c.rows(
                        "SELECT lkey, namespace, key_id FROM lookup \
                         WHERE key_id >= ?1 AND key_id <= ?2",
                        &sql_params![first.get::<i64>(0)?, last.get::<i64>(0)?],
                    )?,
                    _ => Vec::new(),
                };
                Ok((page, lookups))
            })?;
            let (Some(first), Some(last)) = (page.first(), page.last()) else {
                break;
            };
            let (lo, hi): (i64, i64) = (first.get(0)?, last.get(0)?);
            after = hi;
            // What the target holds of this range already.
            let held: HashMap<i64, Row> = to.db().reading(|c| {
                let rows = c.rows(&in_range, &sql_params![lo, hi])?;
                Ok(rows
                    .into_iter()
                    .map(|r| Ok((r.get(0)?, r)))
                    .collect::<std::result::Result<_, super::index::DbError>>()?)
            })?;
            let mut changed = Vec::new();
            for row in &page {
                let same = held.get(&row.get::<i64>(0)?) == Some(row);
                self.copy_key_blob(to, row, report)
                    .map_err(|e| key_error(row, e))?;
                if !same {
                    changed.push(row);
                }
            }
            let changed_ids: HashSet<i64> = changed
                .iter()
                .map(|r| r.get(0))
                .collect::<std::result::Result<_, _>>()?;
            to.db().writing(|c| {
                for row in &changed {
                    self.write_key_row(to, c, row, &upsert)?;
                }
                for l in lookups
                    .iter()
                    .filter(|l| l.get::<i64>(2).is_ok_and(|id| changed_ids.contains(&id)))
                {
                    c.exec(
                        "INSERT INTO lookup (lkey, namespace, key_id) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (lkey, namespace, key_id) DO NOTHING",
                        &l.0,
                    )?;
                }
                advance_sequence(c, "keys")
            })?;
            report.rows_unchanged += (page.len() - changed.len()) as u64;
            seen += page.len() as u64;
            progress(MigrateProgress {
                what: "keys",
                done: seen,
                total,
            });
        }
        Ok(seen)
    }

    /// Writes one key row into the target (`c`, its write transaction),
    /// replacing what the target had under its id or its name, layout
    /// entries of keys that made way included, and its lookups.
    fn write_key_row(&self, to: &Store, c: &mut dyn Conn, row: &Row, upsert: &str) -> Result<()> {
        let id: i64 = row.get(0)?;
        let new = (
            row.get::<String>(1 + K_NAMESPACE)?,
            row.get::<String>(1 + K_KEY)?,
        );
        // The row under this id before (SQLite may give a deleted key's id
        // to the next), and the same key under another id (deleted and
        // stored again): their entries go unless they are this key's own.
        let mut gone = c.rows(
            "SELECT namespace, key FROM keys WHERE id = ?1",
            &sql_params![id],
        )?;
        gone.extend(c.rows(
            "DELETE FROM keys WHERE namespace = ?1 AND key_norm = ?2 AND id <> ?3 \
             RETURNING namespace, key",
            &[
                row.0[1 + K_NAMESPACE].clone(),
                row.0[1 + K_KEY_NORM].clone(),
                id.into(),
            ],
        )?);
        for g in &gone {
            let old: (String, String) = (g.get(0)?, g.get(1)?);
            if old != new {
                let ns = Namespace::parse(&old.0).unwrap_or(Namespace::Release);
                to.remove_entry_of_row(ns, &old.1)?;
            }
        }
        c.exec(upsert, &row.0[1..])?;
        c.exec("DELETE FROM lookup WHERE key_id = ?1", &sql_params![id])?;
        Ok(())
    }

    /// Puts a key's blob into the target as stored (unless it is there) and,
    /// where the target keeps a layout tree, links the key's entry to it.
    fn copy_key_blob(&self, to: &Store, row: &Row, report: &mut MigrateReport) -> Result<()> {
        let (ns, key, hash, enc): (String, String, String, String) = (
            row.get(1 + K_NAMESPACE)?,
            row.get(1 + K_KEY)?,
            row.get(1 + K_BLOB)?,
            row.get(1 + K_ENCODING)?,
        );
        let enc = Encoding::parse(&enc);
        let ns = Namespace::parse(&ns).unwrap_or(Namespace::Release);
        if to.blobs.has(&hash, enc) {
            report.blobs_present += 1;
        } else {
            let mut stored = self
                .blobs
                .open_seekable(&hash, enc)
                .map_err(|e| self.blob_error(e))?;
            to.blobs.put_stored(&hash, enc, &mut stored)?;
            report.blobs_copied += 1;
            report.blob_bytes += to.stored_size(&hash, enc);
        }
        if to.layout && !to.entry_is_blob(ns, &key, &hash, enc) {
            to.link_entry(ns, &key, &hash, enc)?;
        }
        Ok(())
    }

    /// Removes from `to` the keys (rows and layout entries) this store no
    /// longer has, a batch of the target's ids at a time.
    fn remove_keys_gone(&self, to: &Store, page_rows: i64) -> Result<u64> {
        let ids_in = |s: &Store, lo: i64, hi: i64| -> Result<HashSet<i64>> {
            s.db().reading(|c| {
                let rows = c.rows(
                    "SELECT id FROM keys WHERE id >= ?1 AND id <= ?2",
                    &sql_params![lo, hi],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| r.get(0))
                    .collect::<std::result::Result<_, _>>()?)
            })
        };
        let (mut after, mut removed) = (0i64, 0u64);
        loop {
            let ids: Vec<i64> = to.db().reading(|c| {
                let rows = c.rows(
                    "SELECT id FROM keys WHERE id > ?1 ORDER BY id LIMIT ?2",
                    &sql_params![after, page_rows],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| r.get(0))
                    .collect::<std::result::Result<_, _>>()?)
            })?;
            let (Some(&lo), Some(&hi)) = (ids.first(), ids.last()) else {
                break;
            };
            after = hi;
            let kept = ids_in(self, lo, hi)?;
            let gone: Vec<i64> = ids.into_iter().filter(|id| !kept.contains(id)).collect();
            if gone.is_empty() {
                continue;
            }
            to.db().writing(|c| {
                for id in &gone {
                    let rows = c.rows(
                        "DELETE FROM keys WHERE id = ?1 RETURNING namespace, key",
                        &sql_params![*id],
                    )?;
                    for r in &rows {
                        let (ns, key): (String, String) = (r.get(0)?, r.get(1)?);
                        let ns = Namespace::parse(&ns).unwrap_or(Namespace::Release);
                        to.remove_entry_of_row(ns, &key)?;
                    }
                }
                Ok(())
            })?;
            removed += gone.len() as u64;
        }
        Ok(removed)
    }

    fn count_rows(&self, table: &str) -> Result<u64> {
        self.db().reading(|c| {
            let n: i64 = c.one(
                &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"),
                &[],
            )?;
            Ok(n as u64)
        })
    }
}

/// A failure copying one key, naming it (the run stops there; the key can
/// be repaired or deleted in the source before the next run).
fn key_error(row: &Row, e: Error) -> Error {
    let key: String = row.get(1 + K_KEY).unwrap_or_default();
    let ns: String = row.get(1 + K_NAMESPACE).unwrap_or_default();
    Error::Refused(format!(
        "migrate: cannot copy {ns} key {key:?}: {e} (repair or delete it in the source, then \
         run `symdepot migrate` again)"
    ))
}

/// Moves a PostgreSQL id sequence past the ids rows arrived with, so the
/// next row the target makes gets an id of its own (after every batch: a
/// daemon started on a half-made copy must not collide). Nothing on SQLite,
/// which numbers new rows after the highest id itself.
fn advance_sequence(c: &mut dyn Conn, table: &str) -> Result<()> {
    if c.engine() == super::sql::Engine::Postgres {
        c.exec(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            ),
            &[],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upsert_updates_every_column_but_its_key() {
        let sql = MISSING.upsert();
        assert!(sql.starts_with("INSERT INTO missing (debug_file, debug_id, code_file"));
        assert!(sql.contains("ON CONFLICT (debug_file, debug_id) DO UPDATE SET code_file"));
        assert!(!sql.contains("debug_id = excluded"));
        assert!(TOKENS.upsert().contains("\"user\" = excluded.\"user\""));
        assert_eq!(KEYS.cols[K_BLOB], "blob");
        assert_eq!(KEYS.cols[K_KEY_NORM], "key_norm");
    }
}
