//! Queries behind the records API and pages: uploads, their members, files,
//! statistics. Filters arrive typed (see `filters`); SQL stays here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::index::{DbError, KEY_COLUMNS, KeyRow};
use super::sql::{ConnExt, Row, Value};
use super::{Store, UploadRow};
use crate::error::Result;
use crate::filters::Op;
use crate::identity::Kind;
use crate::sql_params;

/// Rows per page of every list.
pub const PAGE_SIZE: u64 = 100;

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u64,
    pub has_next: bool,
}

/// The order of the uploads list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadSort {
    #[default]
    CreatedAt,
    CompletedAt,
    Size,
    User,
    FilesCount,
}

impl UploadSort {
    pub fn parse(s: &str) -> Option<UploadSort> {
        Some(match s {
            "created_at" => UploadSort::CreatedAt,
            "completed_at" => UploadSort::CompletedAt,
            "size" => UploadSort::Size,
            "user" => UploadSort::User,
            "files_count" => UploadSort::FilesCount,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            UploadSort::CreatedAt => "created_at",
            UploadSort::CompletedAt => "completed_at",
            UploadSort::Size => "size",
            UploadSort::User => "user",
            UploadSort::FilesCount => "files_count",
        }
    }
}

/// Filters of `/api/uploads/`.
#[derive(Debug, Clone, Default)]
pub struct UploadQuery {
    /// Case-insensitive substring of the user.
    pub user: Option<String>,
    pub size: Vec<(Op, u64)>,
    pub created_at: Vec<(Op, i64)>,
    pub is_try: Option<bool>,
    pub sort: UploadSort,
    /// Oldest (smallest) first instead of newest (largest) first.
    pub reverse: bool,
    pub page: u64,
}

/// Filters of `/api/uploads/files/`.
#[derive(Debug, Clone, Default)]
pub struct FileQuery {
    /// Case-insensitive substrings of the key, all of which must match.
    pub key: Vec<String>,
    /// A search term: a substring of the key, or exactly a debug id, code id or build id.
    pub q: Option<String>,
    pub size: Vec<(Op, u64)>,
    pub created_at: Vec<(Op, i64)>,
    pub is_try: Option<bool>,
    pub page: u64,
}

/// What happened to one member of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub key: String,
    pub outcome: String,
    pub size: Option<u64>,
    pub stored_size: Option<u64>,
    pub blake3: Option<String>,
    pub debug_file: Option<String>,
    pub debug_id: Option<String>,
    pub code_file: Option<String>,
    pub code_id: Option<String>,
    pub generator: Option<String>,
    pub error: Option<String>,
}

/// Totals for `/api/stats/` and the home page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub uploads_today: u64,
    pub uploads_yesterday: u64,
    pub uploads_30_days: u64,
    pub files: u64,
    pub files_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub stored_bytes: u64,
    pub missing: u64,
}

impl Stats {
    /// Bytes not stored twice because identical content is kept once.
    pub fn dedup_saved_bytes(&self) -> u64 {
        self.files_bytes.saturating_sub(self.blob_bytes)
    }
}

/// WHERE clauses and their parameters.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    /// Adds a clause whose every `?` is `value`. A NUL (which no stored text
    /// holds, and PostgreSQL text cannot) is dropped from a search.
    fn add(&mut self, clause: &str, value: Value) {
        let value = match value {
            Value::Text(t) if t.contains('\0') => Value::Text(t.replace('\0', "")),
            other => other,
        };
        self.params.push(value);
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.params.len())));
    }

    fn compare(&mut self, column: &str, conds: &[(Op, i64)]) {
        for (op, v) in conds {
            self.add(&format!("{column} {} ?", op.sql()), Value::Int(*v));
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn sizes(v: &[(Op, u64)]) -> Vec<(Op, i64)> {
    v.iter().map(|(op, n)| (*op, *n as i64)).collect()
}

fn offset(page: u64) -> u64 {
    page.max(1).saturating_sub(1) * PAGE_SIZE
}

/// `text` as a `LIKE` pattern matching itself anywhere (`\\` escapes).
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(crate) const UPLOAD_COLUMNS: &str = "id, \"user\", filename, size, download_url, try_symbols, \
     status, http_status, error, files_count, created_at, completed_at";

pub(crate) fn upload_from_row(r: &Row) -> std::result::Result<UploadRow, DbError> {
    Ok(UploadRow {
        id: r.get(0)?,
        user: r.get(1)?,
        filename: r.get(2)?,
        size: r.get(3)?,
        download_url: r.get(4)?,
        try_symbols: r.get(5)?,
        status: r.get(6)?,
        http_status: r.get::<Option<i64>>(7)?.and_then(|s| u16::try_from(s).ok()),
        error: r.get(8)?,
        files_count: r.get(9)?,
        created_at: r.get(10)?,
        completed_at: r.get(11)?,
    })
}

impl Store {
    /// A page of uploads, newest first unless reversed.
    pub fn list_uploads(&self, q: &UploadQuery) -> Result<Page<UploadRow>> {
        let mut w = Where::default();
        if let Some(user) = &q.user {
            w.add(
                "lower(\"user\") LIKE lower(?) ESCAPE '\\'",
                Value::Text(contains_pattern(user)),
            );
        }
        w.compare("size", &sizes(&q.size));
        w.compare("created_at", &q.created_at);
        if let Some(t) = q.is_try {
            w.add("try_symbols = ?", Value::Int(t as i64));
        }
        let order = if q.reverse { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads {} ORDER BY {} {order}, id {order} LIMIT {PAGE_SIZE} OFFSET {}",
            w.sql(),
            q.sort.column(),
            offset(q.page)
        );
        let count = format!("SELECT COUNT(*) FROM uploads {}", w.sql());
        self.page(&sql, &count, &w.params, q.page, upload_from_row)
    }

    /// The members of one upload, in the order they were recorded.
    pub fn upload_members(&self, upload_id: i64) -> Result<Vec<MemberRow>> {
        self.db().reading(|c| {
            let rows = c.rows(
                "SELECT key, outcome, size, stored_size, blake3, debug_file, debug_id, code_file, \
                 code_id, generator, error FROM upload_members WHERE upload_id = ?1 ORDER BY id",
                &sql_params![upload_id],
            )?;
            let members = rows
                .iter()
                .map(|r| {
                    Ok(MemberRow {
                        key: r.get(0)?,
                        outcome: r.get(1)?,
                        size: r.get(2)?,
                        stored_size: r.get(3)?,
                        blake3: r.get(4)?,
                        debug_file: r.get(5)?,
                        debug_id: r.get(6)?,
                        code_file: r.get(7)?,
                        code_id: r.get(8)?,
                        generator: r.get(9)?,
                        error: r.get(10)?,
                    })
                })
                .collect::<std::result::Result<_, DbError>>()?;
            Ok(members)
        })
    }

    /// A page of stored files, newest first.
    pub fn list_files(&self, q: &FileQuery) -> Result<Page<KeyRow>> {
        let mut w = Where::default();
        for part in &q.key {
            w.add(
                "k.key_norm LIKE ? ESCAPE '\\'",
                Value::Text(contains_pattern(&crate::keys::normalize(part))),
            );
        }
        if let Some(term) = &q.q {
            let term = term.trim();
            w.params
                .push(Value::Text(contains_pattern(&crate::keys::normalize(term))));
            let pattern = w.params.len();
            w.params.push(Value::Text(term.to_string()));
            let exact = w.params.len();
            w.clauses.push(format!(
                "(k.key_norm LIKE ?{pattern} ESCAPE '\\' \
                 OR lower(k.debug_id) = lower(?{exact}) OR lower(k.code_id) = lower(?{exact}))"
            ));
        }
        w.compare("k.size", &sizes(&q.size));
        w.compare("k.created_at", &q.created_at);
        if let Some(t) = q.is_try {
            w.add(
                "k.namespace = ?",
                Value::Text(if t { "try" } else { "release" }.into()),
            );
        }
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys k {} ORDER BY k.last_uploaded_at DESC, k.id DESC LIMIT {PAGE_SIZE} OFFSET {}",
            w.sql(),
            offset(q.page)
        );
        let count = format!("SELECT COUNT(*) FROM keys k {}", w.sql());
        self.page(&sql, &count, &w.params, q.page, KeyRow::from_row)
    }

    fn page<T>(
        &self,
        sql: &str,
        count: &str,
        params: &[Value],
        page: u64,
        map: fn(&Row) -> std::result::Result<T, DbError>,
    ) -> Result<Page<T>> {
        self.db().reading(|c| {
            let total: u64 = c.one(count, params)?;
            let items = c
                .rows(sql, params)?
                .iter()
                .map(map)
                .collect::<std::result::Result<Vec<T>, DbError>>()?;
            let page = page.max(1);
            Ok(Page {
                items,
                total,
                page,
                has_next: page * PAGE_SIZE < total,
            })
        })
    }

    /// One stored file by row id.
    pub fn key_by_id(&self, id: i64) -> Result<Option<KeyRow>> {
        self.db().reading(|c| {
            let row = c.row(
                &format!("SELECT {KEY_COLUMNS} FROM keys k WHERE k.id = ?1"),
                &sql_params![id],
            )?;
            Ok(row.as_ref().map(KeyRow::from_row).transpose()?)
        })
    }

    /// The lookup keys that lead to a stored file.
    pub fn lookups_of(&self, key_id: i64) -> Result<Vec<String>> {
        self.db().reading(|c| {
            let rows = c.rows(
                "SELECT lkey FROM lookup WHERE key_id = ?1 ORDER BY lkey",
                &sql_params![key_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| r.get(0))
                .collect::<std::result::Result<_, DbError>>()?)
        })
    }

    /// The stored `.sym` (else any file) a debug file + debug id, or a code
    /// file + code id, names. Release before try.
    pub fn syminfo(&self, file: &str, id: &str) -> Result<Option<KeyRow>> {
        self.db().reading(|c| {
            let row = c.row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE \
                     (lower(k.debug_file) = lower(?1) AND lower(k.debug_id) = lower(?2)) \
                     OR (lower(k.code_file) = lower(?1) AND lower(k.code_id) = lower(?2)) \
                     ORDER BY k.kind = ?3 DESC, CASE k.namespace WHEN 'release' THEN 0 WHEN 'try' THEN 1 \
                     ELSE 2 END, k.last_uploaded_at DESC LIMIT 1"
                ),
                &sql_params![file, id, Kind::Sym.as_str()],
            )?;
            Ok(row.as_ref().map(KeyRow::from_row).transpose()?)
        })
    }

    /// Counts and bytes. `today_start` is the start of the current UTC day in ms.
    /// Uploads and misses are counted afresh; the totals of the keys come
    /// from [`Store::key_totals`].
    pub fn stats(&self, today_start: i64) -> Result<Stats> {
        let day = 86_400_000;
        let (uploads_today, uploads_yesterday, uploads_30_days, missing) =
            self.db().reading(|c| {
                let mut uploads = |from: i64, to: i64| -> std::result::Result<u64, DbError> {
                    c.one(
                        "SELECT COUNT(*) FROM uploads WHERE created_at >= ?1 AND created_at < ?2",
                        &sql_params![from, to],
                    )
                };
                Ok((
                    uploads(today_start, today_start + day)?,
                    uploads(today_start - day, today_start)?,
                    uploads(today_start - 29 * day, today_start + day)?,
                    c.one("SELECT COUNT(*) FROM missing", &[])?,
                ))
            })?;
        let t = self.key_totals()?;
        Ok(Stats {
            uploads_today,
            uploads_yesterday,
            uploads_30_days,
            files: t.files,
            files_bytes: t.files_bytes,
            blobs: t.blobs,
            blob_bytes: t.blob_bytes,
            stored_bytes: t.stored_bytes,
            missing,
        })
    }

    /// The totals of the keys. They read every key, so they are counted
    /// when first asked for and kept: a count is reused while the keys have
    /// not changed, and on a store where counting takes longer than
    /// [`SLOW_TOTALS`] it is reused after they change too, until
    /// [`Store::refresh_totals`] (the daemon's timer) counts again — after
    /// the first, pages and `/metrics` never wait for a count of millions of
    /// keys. Counts run one at a time.
    pub fn key_totals(&self) -> Result<KeyTotals> {
        let generation = self.generation();
        if let Some(kept) = self.totals.usable(generation) {
            return Ok(kept);
        }
        self.count_totals(generation)
    }

    /// Counts the totals again if they were asked for while out of date
    /// (nothing is counted for nobody: not at start, not for a store whose
    /// totals no one looks at).
    pub fn refresh_totals(&self) -> Result<()> {
        let generation = self.generation();
        if self.totals.asked.swap(false, Ordering::AcqRel)
            && self.totals.current(generation).is_none()
        {
            self.count_totals(generation)?;
        }
        Ok(())
    }

    fn count_totals(&self, generation: u64) -> Result<KeyTotals> {
        let _one = self
            .totals
            .counting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Counted while this one waited.
        if let Some(kept) = self.totals.current(generation) {
            return Ok(kept);
        }
        let started = Instant::now();
        let totals = self.db().reading(|c| {
            let files = c
                .row(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(stored_size), 0) AS BIGINT) FROM keys",
                    &[],
                )?
                .ok_or_else(|| DbError::other("no totals"))?;
            let blobs = c
                .row(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM \
                     (SELECT blob, encoding, MAX(size) AS size FROM keys GROUP BY blob, encoding) AS b",
                    &[],
                )?
                .ok_or_else(|| DbError::other("no totals"))?;
            Ok(KeyTotals {
                files: files.get(0)?,
                files_bytes: files.get(1)?,
                stored_bytes: files.get(2)?,
                blobs: blobs.get(0)?,
                blob_bytes: blobs.get(1)?,
            })
        })?;
        let mut kept = self.totals.kept.lock().unwrap_or_else(|e| e.into_inner());
        *kept = Some(Counted {
            totals,
            generation,
            took: started.elapsed(),
        });
        Ok(totals)
    }
}

/// What every key adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyTotals {
    pub files: u64,
    pub files_bytes: u64,
    pub stored_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// A count of the totals that takes longer is reused until the daemon's
/// timer counts again ([`Store::refresh_totals`]).
pub const SLOW_TOTALS: Duration = Duration::from_millis(200);

/// The last count of the totals, and the lock that keeps counts one at a time.
#[derive(Debug, Default)]
pub(crate) struct TotalsKept {
    kept: Mutex<Option<Counted>>,
    counting: Mutex<()>,
    /// An out-of-date count was answered since the timer last looked.
    asked: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    totals: KeyTotals,
    /// The store's write generation when counted.
    generation: u64,
    took: Duration,
}

impl TotalsKept {
    fn last(&self) -> Option<Counted> {
        *self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last count, if the keys have not changed since.
    fn current(&self, generation: u64) -> Option<KeyTotals> {
        self.last()
            .filter(|c| c.generation == generation)
            .map(|c| c.totals)
    }

    /// The last count, if current or too slow to repeat on a request (then
    /// noted as asked for, for the timer).
    fn usable(&self, generation: u64) -> Option<KeyTotals> {
        let last = self.last()?;
        if last.generation == generation {
            return Some(last.totals);
        }
        (last.took >= SLOW_TOTALS).then(|| {
            self.asked.store(true, Ordering::Release);
            last.totals
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(took_ms: u64) -> TotalsKept {
        let kept = TotalsKept::default();
        *kept.kept.lock().unwrap() = Some(Counted {
            totals: KeyTotals {
                files: 7,
                ..KeyTotals::default()
            },
            generation: 1,
            took: Duration::from_millis(took_ms),
        });
        kept
    }

    #[test]
    fn a_quick_count_is_repeated_once_keys_change_a_slow_one_is_reused() {
        let quick = kept(5);
        assert_eq!(quick.usable(1).map(|t| t.files), Some(7));
        assert_eq!(quick.usable(2), None);
        let slow = kept(SLOW_TOTALS.as_millis() as u64 + 1);
        assert!(!slow.asked.load(Ordering::Acquire));
        assert_eq!(slow.usable(1).map(|t| t.files), Some(7));
        assert!(
            !slow.asked.load(Ordering::Acquire),
            "current: nothing to count"
        );
        assert_eq!(slow.usable(2).map(|t| t.files), Some(7));
        // Out of date and answered: the timer counts again.
        assert!(slow.asked.load(Ordering::Acquire));
        assert_eq!(slow.current(2), None);
        assert_eq!(TotalsKept::default().usable(0), None);
    }
}
