//! The upload pipeline: a zip on disk in, committed keys out.
//!
//! Two phases make "all-or-nothing validation" and "finished work sticks"
//! both true. Phase 1 ([`zipfile`]) lists the zip, applies every member rule,
//! and inflates and hashes every member in parallel under the size, count and
//! ratio limits, writing nothing to the store. Only when every member passed
//! does phase 2 run: for each distinct key, in parallel, it skips content the
//! key already holds, otherwise re-inflates the member straight into a blob
//! (compressing kinds that are stored compressed, and only if that blob is not
//! already stored) and commits the key. Each key is committed on its own, so
//! an interrupted upload keeps every finished member and a retry skips them.

pub mod parallel;
pub mod zipfile;

use std::path::Path;

use crate::error::{Error, Result};
use crate::store::{Namespace, NewKey, Outcome, Store};
use zipfile::{Checked, Listing, SharedFile};

/// What an ingest did, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Keys newly stored or replaced.
    pub uploaded_keys: Vec<String>,
    /// Keys that already held identical content.
    pub skipped_keys: Vec<String>,
    /// Member names ignored by rule.
    pub ignored_keys: Vec<String>,
    /// Keys replaced (also in `uploaded_keys`).
    pub replaced_keys: Vec<String>,
}

impl Report {
    /// Members that were stored or skipped.
    pub fn files_count(&self) -> usize {
        self.uploaded_keys.len() + self.skipped_keys.len()
    }
}

/// Ingests a zip in the `<module>/<debug_id>/<file>` layout.
pub fn ingest_zip(
    store: &Store,
    path: &Path,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Report> {
    let cfg = store.config();
    let listing = zipfile::list(path, cfg)?;
    let checked = zipfile::check_all(&listing, cfg, &store.tmp_dir())?;
    let outcomes = parallel::par_map(
        &checked,
        cfg.workers(),
        || listing.reader.clone(),
        |reader, member| commit_member(store, &listing, reader, member, ns, upload_id),
    )?;
    let mut report = Report {
        ignored_keys: listing.ignored.clone(),
        ..Report::default()
    };
    for (member, outcome) in checked.iter().zip(outcomes) {
        let key = member.key.key();
        match outcome {
            Outcome::Skipped => report.skipped_keys.push(key),
            Outcome::Replaced => {
                report.replaced_keys.push(key.clone());
                report.uploaded_keys.push(key);
            }
            Outcome::New => report.uploaded_keys.push(key),
        }
    }
    if let Some(id) = upload_id {
        for name in &report.ignored_keys {
            store.record_member_outcome(id, name, "ignored", None)?;
        }
    }
    Ok(report)
}

/// Phase 2 for one member: skip, or store the blob and commit the key.
fn commit_member(
    store: &Store,
    listing: &Listing,
    reader: &mut SharedFile,
    member: &Checked,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Outcome> {
    let key = member.key.key();
    let enc = store.encoding_for(&key);
    let mut new = NewKey {
        namespace: ns,
        key: &key,
        hash: &member.hash,
        encoding: enc,
        size: member.size,
        stored_size: std::fs::metadata(store.blobs().path(&member.hash, enc))
            .map_or(0, |m| m.len()),
        identity: &member.identity,
    };
    if store.holds(ns, &key, &member.hash)?
        && let Some(outcome) = store.commit_key(upload_id, &new)?
    {
        return Ok(outcome);
    }
    let result = (|| {
        new.stored_size = match &member.spool {
            Some(spool) => store.ensure_blob(&member.hash, enc, &mut spool.reopen()?)?,
            None => {
                store.ensure_blob(&member.hash, enc, &mut listing.open(member.index, reader)?)?
            }
        };
        store.commit_key(upload_id, &new)?.ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "the blob vanished before its key was committed",
            ))
        })
    })();
    if let (Err(e), Some(id)) = (&result, upload_id) {
        let _ = store.record_member_outcome(id, &key, "failed", Some(&e.to_string()));
    }
    result
}
