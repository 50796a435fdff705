//! When fetched files (`cache`) were last asked for, for GC's retention and
//! its least-recently-used eviction. Downloads only note the key in memory;
//! the daemon writes what was noted in one transaction per flush (every
//! second, and at shutdown), never a write per download.

use std::collections::HashSet;
use std::sync::Mutex;

use super::Store;
use super::sql::Conn;
use crate::error::Result;
use crate::sql_params;

/// Keys noted between two flushes at most; more are dropped until the next
/// flush (the retention is days, a missed second of accesses changes nothing).
const MAX_PENDING: usize = 100_000;

/// Cached keys asked for since the last flush.
#[derive(Debug, Default)]
pub struct AccessLog {
    pending: Mutex<HashSet<i64>>,
}

impl AccessLog {
    /// Notes that the cached key `id` was served.
    pub fn record(&self, id: i64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < MAX_PENDING {
            p.insert(id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Writes the noted keys' last access as now; blocking. Returns how many.
    pub fn flush(&self, store: &Store) -> Result<usize> {
        let ids: Vec<i64> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let now = super::now_ms();
        store.db().writing(|c: &mut dyn Conn| {
            for id in &ids {
                c.exec(
                    "UPDATE keys SET last_accessed_at = ?1 WHERE id = ?2 AND namespace = 'cache'",
                    &sql_params![now, *id],
                )?;
            }
            Ok(())
        })?;
        Ok(ids.len())
    }
}
