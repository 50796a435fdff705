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
//!
//! The caller may stop an ingest with a [`Cancel`] flag (the upload handler
//! sets it when its client goes away): both phases check it before each
//! member (and phase 1 between chunks of a large one), so the work ends soon
//! after with [`Error::Cancelled`], keeping what was committed.

pub mod batch;
pub mod inbox;
pub mod parallel;
pub mod prehash;
pub mod zipfile;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::keys::{MemberName, classify_auto, classify_member};
use crate::settings::IngestLimits;
use crate::store::{Encoding, MemberBytes, Namespace, NewKey, Outcome, Store, UploadEnd};
use zipfile::{Checked, Listing, Placement, SharedFile, Spool};

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
    /// Members inflated to be read (the others' compressed streams were
    /// known: read before and stored whole).
    pub inflated: usize,
    /// Members whose compressed stream was hashed as the zip arrived (not
    /// read from the zip again).
    pub hashed_on_arrival: usize,
}

impl Report {
    /// Adds another ingest's keys and counts to these.
    pub fn absorb(&mut self, other: Report) {
        self.uploaded_keys.extend(other.uploaded_keys);
        self.skipped_keys.extend(other.skipped_keys);
        self.ignored_keys.extend(other.ignored_keys);
        self.replaced_keys.extend(other.replaced_keys);
        self.inflated += other.inflated;
        self.hashed_on_arrival += other.hashed_on_arrival;
    }

    /// Members that were stored or skipped.
    pub fn files_count(&self) -> usize {
        self.uploaded_keys.len() + self.skipped_keys.len()
    }

    /// How an upload's record ends after `result`: complete with its files,
    /// or failed with the error's own text (an upload the server answers
    /// builds its ending with the message the client was told instead).
    pub fn record_end(result: &Result<Report>) -> UploadEnd<'_> {
        match result {
            Ok(r) => UploadEnd::Complete {
                files_count: r.files_count() as u64,
            },
            Err(e) => UploadEnd::Failed {
                error: e,
                message: e.to_string(),
            },
        }
    }
}

/// A flag that stops an ingest between members. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the ingest to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Error::Cancelled)` once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Cancelled(
                "the upload was abandoned by its client; the members committed so far are kept"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What every ingest needs: the store it commits to and the limits its
/// uploads are checked against (and how many threads do the work).
#[derive(Debug, Clone, Copy)]
pub struct Ingest<'a> {
    pub store: &'a Store,
    pub limits: &'a IngestLimits,
}

/// How members of an upload are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<module>/<debug_id>/<file>` paths, checked against each file's identity.
    Tecken,
    /// Any paths; each file goes where its own identity says (`?layout=auto`).
    Auto,
}

/// A file that arrived to be ingested.
#[derive(Debug)]
pub struct Arrived<'a> {
    pub path: &'a Path,
    /// What it arrived as (a multipart file name, a file of the drop folder).
    pub name: &'a str,
    /// Its member streams (a zip's), hashed as it arrived, if they were.
    pub prehashed: prehash::Prehashed,
}

impl<'a> Arrived<'a> {
    /// A file on disk, nothing hashed yet.
    pub fn file(path: &'a Path, name: &'a str) -> Arrived<'a> {
        Arrived {
            path,
            name,
            prehashed: prehash::Prehashed::default(),
        }
    }
}

/// Ingests an uploaded file: a zip, or with [`Layout::Auto`] also a single
/// loose debug file. Setting `cancel` stops it between members.
pub fn ingest_upload(
    to: Ingest<'_>,
    arrived: Arrived<'_>,
    ns: Namespace,
    upload_id: Option<i64>,
    layout: Layout,
    cancel: &Cancel,
) -> Result<Report> {
    let result = ingest_arrived(to, arrived, ns, upload_id, layout, cancel);
    match upload_id {
        Some(id) => keep_manifest(to.store, id, result),
        None => result,
    }
}

/// [`ingest_upload`] without the manifest.
fn ingest_arrived(
    to: Ingest<'_>,
    arrived: Arrived<'_>,
    ns: Namespace,
    upload_id: Option<i64>,
    layout: Layout,
    cancel: &Cancel,
) -> Result<Report> {
    let path = arrived.path;
    if layout == Layout::Auto && !is_zip(path)? {
        ingest_file(to, path, arrived.name, ns, upload_id)
    } else {
        ingest_zip(to, path, ns, upload_id, layout, cancel, arrived.prehashed)
    }
}

/// Writes the manifest of what upload `id` committed (blobs on S3): an upload
/// is done once it is kept; a failed one keeps whatever it committed too.
fn keep_manifest<T>(store: &Store, id: i64, result: Result<T>) -> Result<T> {
    match &result {
        Ok(_) => store.write_manifest(id)?,
        Err(_) => {
            if let Err(e) = store.write_manifest(id) {
                tracing::error!(upload_id = id, error = %e, "no manifest for a failed upload's members");
            }
        }
    }
    result
}

fn is_zip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut std::fs::File::open(path)?, &mut magic)?;
    Ok(n == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06"))
}

/// Ingests a zip. Setting `cancel` stops it between members.
pub fn ingest_zip(
    to: Ingest<'_>,
    path: &Path,
    ns: Namespace,
    upload_id: Option<i64>,
    layout: Layout,
    cancel: &Cancel,
    prehashed: prehash::Prehashed,
) -> Result<Report> {
    let store = to.store;
    let mut listing = zipfile::list(path, to.limits, layout == Layout::Auto)?;
    listing.prehashed = prehashed;
    let checked = zipfile::check_all(
        &listing,
        to.limits,
        &|p| store.temp_file(p),
        &|streams| store.known_streams(streams),
        cancel,
    )?;
    let report = commit_all(to, Some(&listing), &checked, ns, upload_id, cancel)?;
    // Streams inflated here are known from now on: a re-upload skips them
    // without inflating.
    let read: Vec<_> = (checked.iter())
        .filter_map(|c| Some((c.stream.clone()?, c.hash.clone(), c.identity.clone())))
        .collect();
    if let Err(e) = store.remember_streams(&read) {
        tracing::warn!(error = %e, "the upload's member streams could not be remembered");
    }
    if let Some(id) = upload_id {
        for name in &listing.ignored {
            store.record_member_outcome(id, name, "ignored", None)?;
        }
    }
    Ok(Report {
        ignored_keys: listing.ignored.clone(),
        inflated: read.len(),
        hashed_on_arrival: listing.prehashed.used(),
        ..report
    })
}

/// Ingests one loose debug file, placed by its own identity. `file_name` is
/// whatever the file arrived as (a multipart file name, a file in the drop
/// folder, a path given to `ingest`): it passes the same rules as a member
/// name of a layout-free zip, and only its last segment is kept.
pub fn ingest_file(
    to: Ingest<'_>,
    path: &Path,
    file_name: &str,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Report> {
    match classify_auto(file_name.as_bytes(), false)
        .map_err(|rule| Error::invalid(file_name, rule))?
    {
        Some(file) => ingest_single(to, path, &Placement::Auto(file), ns, upload_id),
        None => Ok(Report {
            ignored_keys: vec![file_name.to_string()],
            ..Report::default()
        }),
    }
}

/// Ingests one file under a `<module>/<debug_id>/<file>` key, checked against
/// its identity like a zip member.
pub fn ingest_file_as(
    to: Ingest<'_>,
    path: &Path,
    key: &str,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Report> {
    match classify_member(key.as_bytes(), false).map_err(|rule| Error::invalid(key, rule))? {
        MemberName::Key(k) => ingest_single(to, path, &Placement::Key(k), ns, upload_id),
        MemberName::Ignored => Ok(Report {
            ignored_keys: vec![key.to_string()],
            ..Report::default()
        }),
    }
}

fn ingest_single(
    to: Ingest<'_>,
    path: &Path,
    placement: &Placement,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Report> {
    let file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let size = std::io::copy(
        &mut std::io::BufReader::with_capacity(256 * 1024, &file),
        &mut hasher,
    )?;
    let (name, file_name) = match placement {
        Placement::Key(k) => (k.key(), k.file().to_string()),
        Placement::Auto(f) => (f.clone(), f.clone()),
    };
    let identity = crate::identity::identify(std::fs::File::open(path)?, &file_name);
    let key = zipfile::placed(&name, placement, &identity)?;
    let checked = Checked {
        index: 0,
        key,
        hash: hasher.finalize().to_hex().to_string(),
        size,
        identity,
        spool: Some(std::sync::Arc::new(Spool::Path(path.to_path_buf()))),
        stream: None,
    };
    let never = Cancel::default();
    commit_all(
        to,
        None,
        std::slice::from_ref(&checked),
        ns,
        upload_id,
        &never,
    )
}

/// Phase 2 over every checked member, in parallel.
fn commit_all(
    to: Ingest<'_>,
    listing: Option<&Listing>,
    checked: &[Checked],
    ns: Namespace,
    upload_id: Option<i64>,
    cancel: &Cancel,
) -> Result<Report> {
    let store = to.store;
    // Unchanged content first, all in one transaction; then the rest in parallel.
    let keys: Vec<String> = checked.iter().map(|m| m.key.key()).collect();
    let unchanged: Vec<NewKey<'_>> = checked
        .iter()
        .zip(&keys)
        .map(|(m, key)| NewKey {
            namespace: ns,
            key,
            hash: &m.hash,
            encoding: store.encoding_for(key),
            size: m.size,
            stored_size: 0,
            identity: &m.identity,
        })
        .collect();
    let skipped = store.skip_unchanged(upload_id, &unchanged)?;
    let rest: Vec<&Checked> = checked
        .iter()
        .zip(&skipped)
        .filter(|(_, s)| !**s)
        .map(|(m, _)| m)
        .collect();
    let mut done = parallel::par_map(
        &rest,
        to.limits.workers,
        || listing.map(|l| l.reader.clone()),
        |reader, member| {
            cancel.check()?;
            commit_member(store, listing.zip(reader.as_mut()), member, ns, upload_id)
        },
    )?
    .into_iter();
    let outcomes = skipped.iter().map(|s| {
        if *s {
            Outcome::Skipped
        } else {
            done.next().expect("one per member")
        }
    });
    let mut report = Report::default();
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
    Ok(report)
}

/// Phase 2 for one member: skip, or store the blob and commit the key.
fn commit_member(
    store: &Store,
    zip: Option<(&Listing, &mut SharedFile)>,
    member: &Checked,
    ns: Namespace,
    upload_id: Option<i64>,
) -> Result<Outcome> {
    let key = member.key.key();
    let new = NewKey {
        namespace: ns,
        key: &key,
        hash: &member.hash,
        encoding: store.encoding_for(&key),
        size: member.size,
        stored_size: 0,
        identity: &member.identity,
    };
    store.store_member(upload_id, &new, || -> Result<MemberBytes<'_>> {
        match (&member.spool, zip) {
            (Some(spool), _) => Ok(MemberBytes::Original(Box::new(spool.open()?))),
            // A deflated member of a key stored as gzip keeps its own
            // compression: framed as gzip, never compressed again.
            (None, Some((listing, reader)))
                if new.encoding == Encoding::Gzip && listing.is_deflated(member.index) =>
            {
                Ok(MemberBytes::Gzip(Box::new(
                    listing.gzip_of(member.index, reader)?,
                )))
            }
            (None, Some((listing, reader))) => Ok(MemberBytes::Original(Box::new(
                listing.open(member.index, reader)?,
            ))),
            (None, None) => Err(Error::Io(std::io::Error::other(
                "a member has no source to read",
            ))),
        }
    })
}
