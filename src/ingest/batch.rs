//! Several files ingested as one upload: a folder given to `symdepot ingest`.
//!
//! Each file is a zip or a loose debug file placed by its own identity. A
//! file that fails is recorded against the upload as a `failed` member named
//! by its path, and the others go on. The upload's manifest (blobs on S3) is
//! written once, after the last file.

use std::path::PathBuf;

use super::{Arrived, Cancel, Ingest, Layout, Report, ingest_arrived, keep_manifest};
use crate::error::{Error, Result};
use crate::store::{Namespace, UploadEnd};

/// What ingesting several files as one upload did.
#[derive(Debug, Default)]
pub struct Batch {
    /// The files' reports, combined.
    pub report: Report,
    /// The files that failed, each with its error.
    pub failed: Vec<(PathBuf, Error)>,
    /// How many files were given.
    pub files: usize,
    /// Their bytes, all together.
    pub size: u64,
}

impl Batch {
    /// How the upload's record ends: complete with the files placed, or
    /// failed naming the first file that failed, still counting those placed.
    pub fn record_end(&self) -> UploadEnd<'_> {
        let files_count = self.report.files_count() as u64;
        match self.failed.first() {
            None => UploadEnd::Complete { files_count },
            Some((path, error)) => UploadEnd::Partial {
                files_count,
                error,
                message: self.failure_message(path, error),
            },
        }
    }

    /// A lone file's error as it is; for several files, how many failed and the first.
    fn failure_message(&self, first: &std::path::Path, error: &Error) -> String {
        if self.files == 1 {
            return error.to_string();
        }
        format!(
            "{} of {} files could not be ingested; the first: {}: {error}",
            self.failed.len(),
            self.files,
            first.display()
        )
    }
}

/// Ingests `files` as the one upload `upload_id`: zips and loose files,
/// placed by identity. A file that fails does not stop the others;
/// `progress` counts the files.
pub fn ingest_batch(
    to: Ingest<'_>,
    files: &[PathBuf],
    ns: Namespace,
    upload_id: Option<i64>,
    progress: &mut dyn crate::store::Progress,
) -> Result<Batch> {
    let mut batch = Batch {
        files: files.len(),
        ..Batch::default()
    };
    for file in files {
        batch.size += std::fs::metadata(file).map_or(0, |m| m.len());
        match ingest_one(to, file, ns, upload_id) {
            Ok(r) => batch.report.absorb(r),
            Err(e) => {
                note_failure(to, file, &e, upload_id);
                batch.failed.push((file.clone(), e));
            }
        }
        progress.step();
    }
    match upload_id {
        Some(id) => keep_manifest(to.store, id, Ok(batch)),
        None => Ok(batch),
    }
}

/// One file of a batch, named by its own file name.
fn ingest_one(
    to: Ingest<'_>,
    file: &std::path::Path,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Report> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let arrived = Arrived::file(file, &name);
    ingest_arrived(to, arrived, ns, upload_id, Layout::Auto, &Cancel::default())
}

/// Records a file that failed as a `failed` member of the upload, by its path.
pub(crate) fn note_failure(
    to: Ingest<'_>,
    file: &std::path::Path,
    e: &Error,
    upload_id: Option<i64>,
) {
    let Some(id) = upload_id else { return };
    let path = file.display().to_string();
    if let Err(err) = (to.store).record_member_outcome(id, &path, "failed", Some(&e.to_string())) {
        tracing::warn!(upload_id = id, file = path, error = %err, "could not record a failed file");
    }
}
