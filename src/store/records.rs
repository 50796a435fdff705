//! Queries behind the records API and pages: uploads, their members, files,
//! statistics. Filters arrive typed (see `filters`); SQL stays here.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::index::{KEY_COLUMNS, KeyRow};
use super::{Store, UploadRow};
use crate::error::Result;
use crate::filters::Op;
use crate::identity::Kind;

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
    /// Adds a clause whose every `?` is `value`.
    fn add(&mut self, clause: &str, value: Value) {
        self.params.push(value);
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.params.len())));
    }

    fn compare(&mut self, column: &str, conds: &[(Op, i64)]) {
        for (op, v) in conds {
            self.add(&format!("{column} {} ?", op.sql()), Value::Integer(*v));
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

const UPLOAD_COLUMNS: &str = "id, user, filename, size, download_url, try_symbols, status, http_status, \
     error, files_count, created_at, completed_at";

pub(crate) fn upload_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        id: r.get(0)?,
        user: r.get(1)?,
        filename: r.get(2)?,
        size: r.get(3)?,
        download_url: r.get(4)?,
        try_symbols: r.get(5)?,
        status: r.get(6)?,
        http_status: r.get(7)?,
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
                "instr(lower(user), lower(?)) > 0",
                Value::Text(user.clone()),
            );
        }
        w.compare("size", &sizes(&q.size));
        w.compare("created_at", &q.created_at);
        if let Some(t) = q.is_try {
            w.add("try_symbols = ?", Value::Integer(t as i64));
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
        self.db().read(|c| {
            let mut st = c.prepare_cached(
                "SELECT key, outcome, size, stored_size, blake3, debug_file, debug_id, code_file, code_id, \
                 generator, error FROM upload_members WHERE upload_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([upload_id], |r| {
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
            })?;
            rows.collect()
        })
    }

    /// A page of stored files, newest first.
    pub fn list_files(&self, q: &FileQuery) -> Result<Page<KeyRow>> {
        let mut w = Where::default();
        for part in &q.key {
            w.add("instr(k.key_norm, lower(?)) > 0", Value::Text(part.clone()));
        }
        if let Some(term) = &q.q {
            // Every `?` of a clause names the same parameter.
            w.add(
                "(instr(k.key_norm, lower(?)) > 0 OR k.debug_id = ? COLLATE NOCASE OR k.code_id = ? COLLATE NOCASE)",
                Value::Text(term.trim().to_string()),
            );
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
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Page<T>> {
        self.db().read(|c| {
            let total: u64 = c.query_row(count, params_from_iter(params), |r| r.get(0))?;
            let mut st = c.prepare(sql)?;
            let items = st
                .query_map(params_from_iter(params), map)?
                .collect::<rusqlite::Result<Vec<T>>>()?;
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
        self.db().read(|c| {
            c.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM keys k WHERE k.id = ?1"),
                [id],
                KeyRow::from_row,
            )
            .optional()
        })
    }

    /// The lookup keys that lead to a stored file.
    pub fn lookups_of(&self, key_id: i64) -> Result<Vec<String>> {
        self.db().read(|c| {
            let mut st =
                c.prepare_cached("SELECT lkey FROM lookup WHERE key_id = ?1 ORDER BY lkey")?;
            let rows = st.query_map([key_id], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The stored `.sym` (else any file) a debug file + debug id, or a code
    /// file + code id, names. Release before try.
    pub fn syminfo(&self, file: &str, id: &str) -> Result<Option<KeyRow>> {
        self.db().read(|c| {
            c.query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE \
                     (k.debug_file = ?1 COLLATE NOCASE AND k.debug_id = ?2 COLLATE NOCASE) \
                     OR (k.code_file = ?1 COLLATE NOCASE AND k.code_id = ?2 COLLATE NOCASE) \
                     ORDER BY k.kind = ?3 DESC, k.namespace = 'try', k.last_uploaded_at DESC LIMIT 1"
                ),
                params![file, id, Kind::Sym],
                KeyRow::from_row,
            )
            .optional()
        })
    }

    /// Counts and bytes. `today_start` is the start of the current UTC day in ms.
    pub fn stats(&self, today_start: i64) -> Result<Stats> {
        let day = 86_400_000;
        self.db().read(|c| {
            let uploads = |from: i64, to: i64| -> rusqlite::Result<u64> {
                c.query_row(
                    "SELECT COUNT(*) FROM uploads WHERE created_at >= ?1 AND created_at < ?2",
                    [from, to],
                    |r| r.get(0),
                )
            };
            let (files, files_bytes, stored_bytes): (u64, u64, u64) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(stored_size), 0) FROM keys",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let (blobs, blob_bytes): (u64, u64) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT blob, encoding, MAX(size) AS size \
                 FROM keys GROUP BY blob, encoding)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Stats {
                uploads_today: uploads(today_start, today_start + day)?,
                uploads_yesterday: uploads(today_start - day, today_start)?,
                uploads_30_days: uploads(today_start - 29 * day, today_start + day)?,
                files,
                files_bytes,
                blobs,
                blob_bytes,
                stored_bytes,
                missing: c.query_row("SELECT COUNT(*) FROM missing", [], |r| r.get(0))?,
            })
        })
    }
}
