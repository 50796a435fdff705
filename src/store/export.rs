//! The query behind `export`: which keys an export takes. Writing the trees
//! and zips is `transfer`'s; the SQL stays here.

use super::Store;
use super::index::{DbError, KEY_COLUMNS, KeyRow};
use crate::error::Result;
use crate::sql_params;

/// Which keys an export takes.
#[derive(Debug, Clone)]
pub struct ExportFilter {
    /// Release, try, or cache (files fetched from upstreams).
    pub namespace: super::Namespace,
    pub upload: Option<i64>,
    /// Module (first key segment), any case.
    pub module: Option<String>,
    /// Only keys last uploaded at or after this time (Unix ms).
    pub since_ms: Option<i64>,
}

impl Store {
    /// The keys an export takes, in key order.
    pub fn export_rows(&self, f: &ExportFilter) -> Result<Vec<KeyRow>> {
        let ns = f.namespace.as_str();
        // The module's keys: the normalised key starts with it and a slash.
        let module = f
            .module
            .as_deref()
            .map(|m| format!("{}/", crate::keys::normalize(m)));
        self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE k.namespace = ?1 \
                     AND (CAST(?2 AS BIGINT) IS NULL OR k.upload_id = ?2) \
                     AND (CAST(?3 AS TEXT) IS NULL \
                     OR substr(k.key_norm, 1, length(CAST(?3 AS TEXT))) = CAST(?3 AS TEXT)) \
                     AND (CAST(?4 AS BIGINT) IS NULL OR k.last_uploaded_at >= ?4) ORDER BY k.key"
                ),
                &sql_params![ns, f.upload, module, f.since_ms],
            )?;
            Ok(rows
                .iter()
                .map(KeyRow::from_row)
                .collect::<std::result::Result<_, DbError>>()?)
        })
    }
}
