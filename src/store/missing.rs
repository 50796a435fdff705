//! The missing-symbols log: download misses counted per debug file and id.
//!
//! Misses are counted in memory on the request path (a mutex and a hash map,
//! no IO) and written in one transaction per flush by a background task, at
//! least every [`FLUSH_EVERY`]. The table is bounded: after each flush the
//! least recently seen rows beyond `missing_max_rows` are evicted. Storing a
//! key deletes the rows it answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::params;

use super::records::{PAGE_SIZE, Page};
use super::{Store, now_ms};
use crate::error::Result;

/// How often pending misses are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One miss as the client described it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Miss {
    pub debug_file: String,
    pub debug_id: String,
    pub code_file: String,
    pub code_id: String,
}

#[derive(Debug)]
struct Pending {
    miss: Miss,
    count: u64,
    first: i64,
    last: i64,
}

/// Misses not yet written.
#[derive(Debug, Default)]
pub struct MissingLog {
    pending: Mutex<HashMap<(String, String), Pending>>,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRow {
    pub debug_file: String,
    pub debug_id: String,
    pub code_file: String,
    pub code_id: String,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl MissingLog {
    /// Counts a miss. Cheap: no IO.
    pub fn record(&self, miss: Miss) {
        let now = now_ms();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending
            .entry((miss.debug_file.clone(), miss.debug_id.to_ascii_uppercase()))
            .or_insert_with(|| Pending {
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
        let mut conn = store.db().writer();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO missing (debug_file, debug_id, code_file, code_id, count, first_seen, last_seen) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (debug_file, debug_id) DO UPDATE SET \
                 count = count + excluded.count, last_seen = excluded.last_seen, \
                 code_file = CASE WHEN excluded.code_file <> '' THEN excluded.code_file ELSE code_file END, \
                 code_id = CASE WHEN excluded.code_id <> '' THEN excluded.code_id ELSE code_id END",
            )?;
            for p in &batch {
                let m = &p.miss;
                st.execute(params![
                    m.debug_file,
                    m.debug_id.to_ascii_uppercase(),
                    m.code_file,
                    m.code_id,
                    p.count,
                    p.first,
                    p.last
                ])?;
            }
            tx.execute(
                "DELETE FROM missing WHERE id IN (SELECT id FROM missing ORDER BY last_seen DESC, id DESC \
                 LIMIT -1 OFFSET ?1)",
                [max_rows],
            )?;
        }
        tx.commit()?;
        Ok(batch.len())
    }
}

const MISSING_COLUMNS: &str =
    "debug_file, debug_id, code_file, code_id, count, first_seen, last_seen";

fn missing_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MissingRow> {
    Ok(MissingRow {
        debug_file: r.get(0)?,
        debug_id: r.get(1)?,
        code_file: r.get(2)?,
        code_id: r.get(3)?,
        count: r.get(4)?,
        first_seen: r.get(5)?,
        last_seen: r.get(6)?,
    })
}

impl Store {
    /// A page of the report, most recently seen first.
    pub fn list_missing(&self, page: u64) -> Result<Page<MissingRow>> {
        let page = page.max(1);
        self.db().read(|c| {
            let total: u64 = c.query_row("SELECT COUNT(*) FROM missing", [], |r| r.get(0))?;
            let mut st = c.prepare_cached(&format!(
                "SELECT {MISSING_COLUMNS} FROM missing ORDER BY last_seen DESC, id DESC LIMIT ?1 OFFSET ?2"
            ))?;
            let items = st
                .query_map([PAGE_SIZE, (page - 1) * PAGE_SIZE], missing_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Page { items, total, page, has_next: page * PAGE_SIZE < total })
        })
    }

    /// Every row of the report (it is bounded), for the CSV.
    pub fn all_missing(&self) -> Result<Vec<MissingRow>> {
        self.db().read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MISSING_COLUMNS} FROM missing ORDER BY count DESC, last_seen DESC"
            ))?;
            let rows = st.query_map([], missing_from_row)?;
            rows.collect()
        })
    }
}
