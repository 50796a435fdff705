//! The query behind `export`: which keys an export takes. Writing the trees
//! and zips is `transfer`'s; the SQL stays here.

use super::Store;
use super::index::{KEY_COLUMNS, KeyRow};
use crate::error::Result;

/// Which keys an export takes.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub is_try: bool,
    pub upload: Option<i64>,
    /// Module (first key segment), any case.
    pub module: Option<String>,
    /// Only keys last uploaded at or after this time (Unix ms).
    pub since_ms: Option<i64>,
}

impl Store {
    /// The keys an export takes, in key order.
    pub fn export_rows(&self, f: &ExportFilter) -> Result<Vec<KeyRow>> {
        self.db().read(|c| {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM keys k WHERE k.namespace = ?1 AND (?2 IS NULL OR k.upload_id = ?2) \
                 AND (?3 IS NULL OR instr(k.key_norm, lower(?3) || '/') = 1) \
                 AND (?4 IS NULL OR k.last_uploaded_at >= ?4) ORDER BY k.key"
            );
            let mut st = c.prepare(&sql)?;
            let ns = if f.is_try { "try" } else { "release" };
            let rows = st.query_map(
                rusqlite::params![ns, f.upload, f.module, f.since_ms],
                KeyRow::from_row,
            )?;
            rows.collect()
        })
    }
}
