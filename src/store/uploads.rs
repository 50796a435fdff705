//! Upload records: one row of `uploads` per upload, however it arrived (a
//! `POST /upload/`, the drop folder, `symdepot ingest`), said once here.
//!
//! [`Store::begin_upload`] writes the row as `running` and hands back an
//! [`UploadRecord`]; ingest names that record on each member it commits; the
//! upload then ends the record exactly once, by [`UploadRecord::finish`]
//! (`complete` with 201, or `failed` with the error's own status and the
//! message given for it) or, when its client went away, by
//! [`UploadRecord::abort`] (`aborted`, 499).

use super::records::{UPLOAD_COLUMNS, upload_from_row};
use super::sql::ConnExt;
use super::{Store, now_ms};
use crate::error::{Error, Result};
use crate::sql_params;

/// Fields of an upload record that are known when it starts.
#[derive(Debug, Clone, Default)]
pub struct UploadStart {
    pub user: String,
    pub token_id: Option<i64>,
    pub filename: Option<String>,
    pub download_url: Option<String>,
    pub try_symbols: bool,
}

/// A started upload record, `running` until it is finished or aborted. Made
/// only by [`Store::begin_upload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRecord {
    id: i64,
}

/// How an upload ended.
#[derive(Debug, Clone)]
pub enum UploadEnd<'a> {
    /// Every member was stored or skipped: `complete`, 201, with the number
    /// of files the upload holds.
    Complete { files_count: u64 },
    /// Refused or failed: `failed`, with the error's status ([`Error::status`])
    /// and `message`, what whoever made the upload was told; no files.
    Failed { error: &'a Error, message: String },
    /// Some files stored or skipped and others failed (a folder given to
    /// `symdepot ingest`): `failed`, with the status of `error` (the first
    /// failure) and `message`, and the number of files it did place.
    Partial {
        files_count: u64,
        error: &'a Error,
        message: String,
    },
}

/// Fields of an upload record set when it ends.
#[derive(Debug, Clone)]
pub struct UploadFinish<'a> {
    /// The uploaded file's name, once known (the name at the start stays otherwise).
    pub filename: Option<&'a str>,
    /// Upload by download: the URL (the one at the start stays otherwise).
    pub download_url: Option<&'a str>,
    pub size: u64,
    pub try_symbols: bool,
    pub end: UploadEnd<'a>,
}

/// One row of `uploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: i64,
    pub user: String,
    pub filename: Option<String>,
    pub size: u64,
    pub download_url: Option<String>,
    pub try_symbols: bool,
    pub status: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub files_count: u64,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

impl Store {
    /// Starts an upload record, `running`.
    pub fn begin_upload(&self, start: &UploadStart) -> Result<UploadRecord> {
        let id: i64 = self.db().writing(|c| {
            Ok(c.one(
                "INSERT INTO uploads (\"user\", token_id, filename, download_url, try_symbols, \
                 status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6) RETURNING id",
                &sql_params![
                    &start.user,
                    start.token_id,
                    start.filename.as_deref(),
                    start.download_url.as_deref(),
                    start.try_symbols,
                    now_ms()
                ],
            )?)
        })?;
        Ok(UploadRecord { id })
    }

    /// The record of the fetch that brought a fetched (`cache`) key: where
    /// it came from and when. `None` for an uploaded key.
    pub fn fetch_of(&self, key: &super::KeyRow) -> Result<Option<UploadRow>> {
        match (key.namespace, key.upload_id) {
            (super::Namespace::Cache, Some(u)) => self.upload(u),
            _ => Ok(None),
        }
    }

    /// The records of `.sym` files generated from the stored file `key`
    /// (uploads by `user` naming it), newest first, at most 20.
    pub fn generations_from(&self, user: &str, key: &str) -> Result<Vec<UploadRow>> {
        self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE \"user\" = ?1 AND filename = ?2 \
                     ORDER BY id DESC LIMIT 20"
                ),
                &sql_params![user, key],
            )?;
            Ok(rows
                .iter()
                .map(upload_from_row)
                .collect::<std::result::Result<_, _>>()?)
        })
    }

    /// An upload record as stored.
    pub fn upload(&self, id: i64) -> Result<Option<UploadRow>> {
        self.db().reading(|c| {
            let row = c.row(
                &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"),
                &sql_params![id],
            )?;
            Ok(row.as_ref().map(upload_from_row).transpose()?)
        })
    }
}

impl UploadRecord {
    /// The record's id: what the upload's members are recorded under, and
    /// what its client is told.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Ends the record: `complete` (201) or `failed` (the error's status).
    pub fn finish(&self, store: &Store, fin: &UploadFinish<'_>) -> Result<()> {
        let (status, http_status, error, files_count) = match &fin.end {
            UploadEnd::Complete { files_count } => ("complete", 201, None, *files_count),
            UploadEnd::Failed { error, message } => ("failed", error.status(), Some(message), 0),
            UploadEnd::Partial {
                files_count,
                error,
                message,
            } => ("failed", error.status(), Some(message), *files_count),
        };
        store.db().writing(|c| {
            Ok(c.exec(
                "UPDATE uploads SET status = ?2, http_status = ?3, error = ?4, size = ?5, \
                 files_count = ?6, try_symbols = ?7, completed_at = ?8, \
                 filename = COALESCE(?9, filename), download_url = COALESCE(?10, download_url) \
                 WHERE id = ?1",
                &sql_params![
                    self.id,
                    status,
                    u32::from(http_status),
                    error.map(String::as_str),
                    fin.size,
                    files_count,
                    fin.try_symbols,
                    now_ms(),
                    fin.filename,
                    fin.download_url
                ],
            )?)
        })?;
        Ok(())
    }

    /// Ends the record of a file the server stored itself (fetched from an
    /// upstream, generated): no file name, no URL, not try; once complete, its
    /// manifest is written.
    pub fn finish_own(&self, store: &Store, size: u64, end: UploadEnd<'_>) -> Result<()> {
        let complete = matches!(end, UploadEnd::Complete { .. });
        let fin = UploadFinish {
            filename: None,
            download_url: None,
            size,
            try_symbols: false,
            end,
        };
        self.finish(store, &fin)?;
        if complete {
            store.write_manifest(self.id)?;
        }
        Ok(())
    }

    /// Ends the record of an upload its client abandoned: `aborted` (499), with
    /// `files_count` the members committed before the work stopped. A record
    /// that already ended is left as it is.
    pub fn abort(&self, store: &Store, size: u64, error: &str) -> Result<()> {
        let ended = store.db().writing(|c| {
            Ok(c.exec(
                "UPDATE uploads SET status = 'aborted', http_status = 499, error = ?2, \
                 size = CASE WHEN size > ?3 THEN size ELSE ?3 END, completed_at = ?4, \
                 files_count = (SELECT COUNT(*) FROM upload_members WHERE upload_id = ?1 \
                 AND outcome IN ('new', 'replaced', 'skipped')) \
                 WHERE id = ?1 AND status = 'running'",
                &sql_params![self.id, error, size, now_ms()],
            )?)
        })?;
        // What it committed before its client left stays, so its manifest too.
        if ended == 1
            && let Err(e) = store.write_manifest(self.id)
        {
            tracing::error!(upload_id = self.id, error = %e, "no manifest for an aborted upload's members");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;

    fn store(dir: &std::path::Path) -> Store {
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        Store::open(Arc::new(config)).expect("a store")
    }

    fn finish(end: UploadEnd<'_>) -> UploadFinish<'_> {
        UploadFinish {
            filename: Some("x.zip"),
            download_url: None,
            size: 10,
            try_symbols: false,
            end,
        }
    }

    #[test]
    fn a_record_ends_complete_failed_or_aborted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let start = UploadStart {
            user: "u".into(),
            ..UploadStart::default()
        };
        let ok = store.begin_upload(&start).unwrap();
        assert_eq!(store.upload(ok.id()).unwrap().unwrap().status, "running");
        ok.finish(&store, &finish(UploadEnd::Complete { files_count: 3 }))
            .unwrap();
        let row = store.upload(ok.id()).unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.http_status),
            ("complete", Some(201))
        );
        assert_eq!((row.files_count, row.error), (3, None));
        assert_eq!(row.filename.as_deref(), Some("x.zip"));

        let bad = store.begin_upload(&start).unwrap();
        let error = Error::TooLarge("too big".into());
        let end = UploadEnd::Failed {
            error: &error,
            message: "told".into(),
        };
        bad.finish(&store, &finish(end)).unwrap();
        // An ended record stays as it ended.
        bad.abort(&store, 99, "gone").unwrap();
        let row = store.upload(bad.id()).unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.http_status),
            ("failed", Some(413))
        );
        assert_eq!((row.files_count, row.error.as_deref()), (0, Some("told")));

        let gone = store.begin_upload(&start).unwrap();
        gone.abort(&store, 99, "gone").unwrap();
        let row = store.upload(gone.id()).unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.http_status),
            ("aborted", Some(499))
        );
        assert_eq!((row.size, row.files_count), (99, 0));
    }
}
