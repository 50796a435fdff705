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
    /// The stored debug files (ELF, PDB, Mach-O) whose debug id is `debug_id`,
    /// in the order a `.sym` is best made from them: release, then try where
    /// asked, then fetched files; PDBs first, then the largest (a debug file
    /// over its stripped binary).
    pub fn debug_files_of(&self, debug_id: &str, include_try: bool) -> Result<Vec<KeyRow>> {
        self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE lower(k.debug_id) = lower(?1) \
                     AND k.kind IN ('elf', 'pdb', 'macho') \
                     AND (k.namespace <> 'try' OR ?2 <> 0) \
                     ORDER BY CASE k.namespace WHEN 'release' THEN 0 WHEN 'try' THEN 1 ELSE 2 END, \
                     CASE k.kind WHEN 'pdb' THEN 0 ELSE 1 END, k.size DESC LIMIT 8"
                ),
                &sql_params![debug_id, i64::from(include_try)],
            )?;
            Ok(rows
                .iter()
                .map(KeyRow::from_row)
                .collect::<std::result::Result<_, DbError>>()?)
        })
    }

    /// Every stored debug file (ELF, PDB, Mach-O with a debug id) of release
    /// and fetched files, in key order.
    pub fn debug_files(&self) -> Result<Vec<KeyRow>> {
        self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE k.kind IN ('elf', 'pdb', 'macho') \
                     AND k.debug_id IS NOT NULL AND k.namespace <> 'try' ORDER BY k.key"
                ),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(KeyRow::from_row)
                .collect::<std::result::Result<_, DbError>>()?)
        })
    }

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
