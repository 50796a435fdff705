//! The missing-symbols log: download misses counted per debug file and id.
//!
//! Misses are counted in memory on the request path (a mutex and a hash map,
//! no IO) and written in one transaction per flush by a background task, at
//! least every [`FLUSH_EVERY`]. The table is bounded: after each flush the
//! least recently seen rows beyond `missing_max_rows` are evicted. Storing a
//! key deletes the rows it answers.
//!
//! Anyone may cause a miss, so what a miss records is bounded: [`Miss::new`]
//! refuses a debug file or id that no real client sends (too long, an id that
//! is not hex of a real id's length) and blanks a code file or code id that is
//! malformed. A row is then at most [`MAX_ROW_BYTES`] of text, and the table at
//! most `missing_max_rows` rows: the report's size is bounded in bytes too.
//! Between flushes at most that many distinct misses wait in memory; others
//! are dropped until the next flush.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::index::DbError;
use super::sql::{ConnExt, Row};
use crate::sql_params;

use super::records::{PAGE_SIZE, Page};
use super::{Store, now_ms};
use crate::error::Result;

/// How often pending misses are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Longest debug file or code file recorded, in bytes (a path segment's limit).
pub const MAX_FILE_NAME: usize = crate::keys::MAX_SEGMENT;

/// Most hex digits of a recorded id: build ids longer than 40 digits exist
/// (SHA-256 style), none longer than this.
pub const MAX_ID_HEX: usize = 80;

/// Prefixes of SSQP keys that carry an id (`elf-buildid-<hex>`, ...).
const ID_PREFIXES: [&str; 4] = [
    "elf-buildid-sym-",
    "elf-buildid-",
    "mach-uuid-sym-",
    "mach-uuid-",
];

/// The most text one row of the report holds: two file names and two ids
/// (the debug id with the longest SSQP prefix).
pub const MAX_ROW_BYTES: usize = 2 * MAX_FILE_NAME + 2 * (16 + MAX_ID_HEX);

/// One miss as the client described it, within the bounds above.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Miss {
    debug_file: String,
    debug_id: String,
    code_file: String,
    code_id: String,
}

impl Miss {
    /// A miss worth recording, or `None`: the debug file must be a plausible
    /// file name of at most [`MAX_FILE_NAME`] bytes and the debug id a real
    /// id ([`is_recordable_id`]). A code file or code id that is not
    /// plausible is recorded as empty rather than refusing the miss.
    pub fn new(debug_file: &str, debug_id: &str, code_file: &str, code_id: &str) -> Option<Miss> {
        if debug_file.is_empty() || !is_file_name(debug_file) || !is_recordable_id(debug_id) {
            return None;
        }
        let code_file = if is_file_name(code_file) {
            code_file
        } else {
            ""
        };
        let code_id = if is_code_id(code_id) { code_id } else { "" };
        Some(Miss {
            debug_file: debug_file.to_string(),
            debug_id: debug_id.to_ascii_uppercase(),
            code_file: code_file.to_string(),
            code_id: code_id.to_string(),
        })
    }

    /// A debuginfod miss: the file of `build_id` asked for as `role`
    /// (`debuginfo` or `executable`). Recorded in the report's columns as the
    /// path asked, `buildid/<id>/<role>`, for its debug file and the build id
    /// (lower-case, as debuginfod writes it) for its debug id, so the row says
    /// which build id and which file; storing a file of that build id clears
    /// it. `None` for a build id no real client sends.
    pub fn build_id(build_id: &str, role: &str) -> Option<Miss> {
        let id = build_id.to_ascii_lowercase();
        let hex = id.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || !is_recordable_id(&id) || !matches!(role, "debuginfo" | "executable") {
            return None;
        }
        Some(Miss {
            debug_file: format!("buildid/{id}/{role}"),
            debug_id: id,
            code_file: String::new(),
            code_id: String::new(),
        })
    }
}

/// A file name as clients send them: at most [`MAX_FILE_NAME`] bytes, no
/// control characters (empty is allowed; callers decide whether it may be).
fn is_file_name(s: &str) -> bool {
    s.len() <= MAX_FILE_NAME && !s.chars().any(char::is_control)
}

/// Whether `id` has the shape of an id a client looks files up by: hex of 8
/// to [`MAX_ID_HEX`] digits (Breakpad and PDB ids are 32–40, PE code ids
/// 9–16, ELF build ids 16–64), optionally after an SSQP prefix such as
/// `elf-buildid-`.
pub fn is_recordable_id(id: &str) -> bool {
    let lower = id.to_ascii_lowercase();
    let hex = ID_PREFIXES
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    (8..=MAX_ID_HEX).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A code id: empty, or hex of at most [`MAX_ID_HEX`] digits.
fn is_code_id(s: &str) -> bool {
    s.len() <= MAX_ID_HEX && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug)]
struct Pending {
    miss: Miss,
    count: u64,
    first: i64,
    last: i64,
}

/// Misses not yet written.
#[derive(Debug)]
pub struct MissingLog {
    pending: Mutex<HashMap<(String, String), Pending>>,
    /// Most distinct misses held between two flushes.
    max_pending: usize,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRow {
    pub id: i64,
    pub debug_file: String,
    pub debug_id: String,
    pub code_file: String,
    pub code_id: String,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl MissingLog {
    /// A log that holds at most `max_pending` distinct misses between flushes
    /// (the report's row limit is the natural choice).
    pub fn new(max_pending: u64) -> MissingLog {
        MissingLog {
            pending: Mutex::default(),
            max_pending: usize::try_from(max_pending).unwrap_or(usize::MAX),
        }
    }

    /// Counts a miss. Cheap: no IO. A new miss is dropped while
    /// `max_pending` others wait for the next flush.
    pub fn record(&self, miss: Miss) {
        let now = now_ms();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (miss.debug_file.clone(), miss.debug_id.clone());
        if pending.len() >= self.max_pending && !pending.contains_key(&key) {
            return;
        }
        let entry = pending.entry(key).or_insert_with(|| Pending {
            miss,
            count: 0,
            first: now,
            last: now,
        });
        entry.count += 1;
        entry.last = now;
    }

    /// Whether there is anything to write.
    pub fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Writes pending misses in one transaction, then evicts beyond `max_rows`.
    pub fn flush(&self, store: &Store, max_rows: u64) -> Result<usize> {
        let batch: Vec<Pending> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().map(|(_, p)| p).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        store.db().writing(|c| {
            for p in &batch {
                let m = &p.miss;
                c.exec(
                    "INSERT INTO missing (debug_file, debug_id, code_file, code_id, count, \
                     first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (debug_file, debug_id) DO UPDATE SET \
                     count = missing.count + excluded.count, last_seen = excluded.last_seen, \
                     code_file = CASE WHEN excluded.code_file <> '' THEN excluded.code_file \
                     ELSE missing.code_file END, \
                     code_id = CASE WHEN excluded.code_id <> '' THEN excluded.code_id \
                     ELSE missing.code_id END",
                    &sql_params![
                        &m.debug_file,
                        &m.debug_id,
                        &m.code_file,
                        &m.code_id,
                        p.count,
                        p.first,
                        p.last
                    ],
                )?;
            }
            c.exec(
                "DELETE FROM missing WHERE id NOT IN (SELECT id FROM missing \
                 ORDER BY last_seen DESC, id DESC LIMIT ?1)",
                &sql_params![max_rows],
            )?;
            Ok(())
        })?;
        Ok(batch.len())
    }
}

const MISSING_COLUMNS: &str =
    "id, debug_file, debug_id, code_file, code_id, count, first_seen, last_seen";

fn missing_from_row(r: &Row) -> std::result::Result<MissingRow, DbError> {
    Ok(MissingRow {
        id: r.get(0)?,
        debug_file: r.get(1)?,
        debug_id: r.get(2)?,
        code_file: r.get(3)?,
        code_id: r.get(4)?,
        count: r.get(5)?,
        first_seen: r.get(6)?,
        last_seen: r.get(7)?,
    })
}

/// Where the next chunk of the whole report starts: after this row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingCursor {
    count: u64,
    last_seen: i64,
    id: i64,
}

impl MissingRow {
    /// The cursor that continues the report after this row.
    pub fn cursor(&self) -> MissingCursor {
        MissingCursor {
            count: self.count,
            last_seen: self.last_seen,
            id: self.id,
        }
    }
}

impl Store {
    /// A page of the report, most recently seen first.
    pub fn list_missing(&self, page: u64) -> Result<Page<MissingRow>> {
        let page = page.max(1);
        self.db().reading(|c| {
            let total: u64 = c.one("SELECT COUNT(*) FROM missing", &[])?;
            let items = c
                .rows(
                    &format!(
                        "SELECT {MISSING_COLUMNS} FROM missing ORDER BY last_seen DESC, id DESC \
                         LIMIT ?1 OFFSET ?2"
                    ),
                    &sql_params![PAGE_SIZE, (page - 1) * PAGE_SIZE],
                )?
                .iter()
                .map(missing_from_row)
                .collect::<std::result::Result<Vec<_>, DbError>>()?;
            Ok(Page {
                items,
                total,
                page,
                has_next: page * PAGE_SIZE < total,
            })
        })
    }

    /// Up to `limit` rows of the whole report, most asked for first, after
    /// `after` (from the start when `None`). The CSV reads the report in
    /// such chunks so that neither it nor a reader connection is held for
    /// the whole transfer; a row whose count changes meanwhile may move past
    /// the cursor and be left out of that transfer.
    pub fn missing_chunk(
        &self,
        after: Option<MissingCursor>,
        limit: u64,
    ) -> Result<Vec<MissingRow>> {
        let order = "ORDER BY count DESC, last_seen DESC, id DESC LIMIT ?4";
        let (count, last, id) = match after {
            Some(a) => (Some(a.count), Some(a.last_seen), Some(a.id)),
            None => (None, None, None),
        };
        self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {MISSING_COLUMNS} FROM missing \
                     WHERE CAST(?1 AS BIGINT) IS NULL OR (count, last_seen, id) < (?1, ?2, ?3) {order}"
                ),
                &sql_params![count, last, id, limit],
            )?;
            Ok(rows
                .iter()
                .map(missing_from_row)
                .collect::<std::result::Result<_, DbError>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_of_real_shapes_are_recordable() {
        for id in [
            "C3B913878AFB017237A4A08B325905C70",
            "c3b913878afb017237a4a08b325905c7",
            "5CF0A9B1c5f2000",
            "elf-buildid-0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
            "ELF-BUILDID-SYM-0a0a0a0a0a0a0a0a",
            "mach-uuid-0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_recordable_id(id), "{id}");
        }
        let too_long = "a".repeat(MAX_ID_HEX + 1);
        for id in [
            "",
            "abc",
            "not-hex-at-all",
            "C3B913878AFB017237A4A08B325905CZ0",
            &too_long,
        ] {
            assert!(!is_recordable_id(id), "{id}");
        }
    }

    #[test]
    fn a_debuginfod_miss_is_recorded_as_the_path_asked_and_its_build_id() {
        let miss = Miss::build_id("0A0B0C0D0E0F1011", "executable").unwrap();
        assert_eq!(miss.debug_file, "buildid/0a0b0c0d0e0f1011/executable");
        assert_eq!(miss.debug_id, "0a0b0c0d0e0f1011");
        assert!(Miss::build_id("0a0b0c0d0e0f1011", "source").is_none());
        assert!(Miss::build_id("elf-buildid-0a0b0c0d0e0f1011", "debuginfo").is_none());
        assert!(Miss::build_id(&"ab".repeat(MAX_ID_HEX), "debuginfo").is_none());
    }

    #[test]
    fn a_miss_keeps_within_its_bounds() {
        let long = "a".repeat(MAX_FILE_NAME + 1);
        let id = "C3B913878AFB017237A4A08B325905C70";
        assert_eq!(Miss::new(&long, id, "", ""), None);
        assert_eq!(Miss::new("", id, "", ""), None);
        assert_eq!(Miss::new("a\tb.pdb", id, "", ""), None);
        let m = Miss::new("a.pdb", &id.to_lowercase(), &long, "5cf0a9b1c5f2000").unwrap();
        assert_eq!((m.debug_id.as_str(), m.code_file.as_str()), (id, ""));
        assert_eq!(m.code_id, "5cf0a9b1c5f2000");
        let m = Miss::new("a.pdb", id, "a.dll", "xyz").unwrap();
        assert_eq!((m.code_file.as_str(), m.code_id.as_str()), ("a.dll", ""));
    }

    #[test]
    fn new_misses_wait_only_up_to_the_limit() {
        let log = MissingLog::new(2);
        let miss = |f: &str| Miss::new(f, "C3B913878AFB017237A4A08B325905C70", "", "").unwrap();
        log.record(miss("a.pdb"));
        log.record(miss("b.pdb"));
        log.record(miss("c.pdb"));
        log.record(miss("a.pdb"));
        let pending = log.pending.lock().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(
            pending[&("a.pdb".to_string(), miss("a.pdb").debug_id)].count,
            2
        );
    }
}
