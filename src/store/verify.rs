//! `verify` and `reindex`: check every indexed key against the disk, and
//! rebuild the index from the disk.
//!
//! Damage is an indexed key whose blob is missing or hashes wrong, or whose
//! layout entry is missing or holds other content. What an interrupted
//! upload leaves (temp files, blobs and entries no row names) is reclaimable
//! by GC, not damage.
//!
//! `--repair` first looks for an intact copy of a damaged or missing blob: a
//! layout entry of a key naming it that is a separate file (written as a copy
//! where the filesystem refused another hard link) and still hashes to the
//! blob's name. The damaged blob is quarantined and the copy put back in its
//! place; entries that were links to the damaged inode are then re-linked to
//! it. Without an intact copy, a corrupt blob is quarantined and the key stays
//! damaged until its file is uploaded again. Reindex reads the layout tree: each entry is matched to
//! its blob by inode (or, for a copy, by hashing it), its identity read
//! again, and its key committed afresh (which restarts its expiry clock).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;

use super::gc::{GcMode, GcReport, layout_entries};
use super::{Encoding, KeyRow, Namespace, NewKey, Store};
use crate::error::{Error, Result};
use crate::keys::{MemberName, classify_member};

/// One damaged key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub namespace: String,
    pub key: String,
    pub problem: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub keys: u64,
    pub blobs: u64,
    pub damage: Vec<Damage>,
    /// Blobs moved to `quarantine/` by `--repair`.
    pub quarantined: Vec<PathBuf>,
    /// What GC would reclaim (whatever its age).
    pub reclaimable: GcReport,
}

impl VerifyReport {
    /// Damage `--repair` did not fix.
    pub fn unrepaired(&self) -> usize {
        self.damage.iter().filter(|d| !d.repaired).count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobState {
    Good,
    Missing,
    Corrupt,
}

/// BLAKE3 of the original bytes of a stored file.
fn original_hash(path: &std::path::Path, enc: Encoding) -> io::Result<String> {
    let file = fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let reader: Box<dyn Read> = match enc {
        Encoding::Gzip => Box::new(GzDecoder::new(io::BufReader::new(file))),
        Encoding::Identity => Box::new(file),
    };
    io::copy(
        &mut io::BufReader::with_capacity(256 * 1024, reader),
        &mut hasher,
    )?;
    Ok(hasher.finalize().to_hex().to_string())
}

impl Store {
    /// Checks every key; with `repair`, re-links entries and quarantines corrupt blobs.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let rows: Vec<KeyRow> = self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {} FROM keys k ORDER BY k.id",
                    super::index::KEY_COLUMNS
                ),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(KeyRow::from_row)
                .collect::<std::result::Result<_, super::index::DbError>>()?)
        })?;
        let mut report = VerifyReport {
            keys: rows.len() as u64,
            ..VerifyReport::default()
        };
        if !self.has_layout() {
            return self.verify_blobs_only(&rows, report, repair);
        }
        let mut blobs: HashMap<(String, Encoding), BlobState> = HashMap::new();
        // Damaged blobs `--repair` tried to restore: how each was found, and the copy used.
        let mut restored: HashMap<(String, Encoding), Option<(BlobState, PathBuf)>> =
            HashMap::new();
        for row in &rows {
            let enc = row.encoding;
            let Ok(blob_path) = self.blob_path(&row.blob, enc) else {
                report.damage.push(Damage {
                    namespace: row.namespace.as_str().to_string(),
                    key: row.key.clone(),
                    problem: format!("the row names {:?}, which is not a blob name", row.blob),
                    repaired: false,
                });
                continue;
            };
            let id = (row.blob.clone(), row.encoding);
            let state =
                *blobs
                    .entry(id.clone())
                    .or_insert_with(|| match original_hash(&blob_path, enc) {
                        Ok(h) if h == row.blob => BlobState::Good,
                        Ok(_) | Err(_) if blob_path.exists() => BlobState::Corrupt,
                        _ => BlobState::Missing,
                    });
            let ns = row.namespace;
            if state != BlobState::Good && repair && !restored.contains_key(&id) {
                let from = self.restore_blob(&rows, row, enc, &mut report)?;
                restored.insert(id.clone(), from.map(|f| (state, f)));
            }
            let restored_from = restored.get(&id).and_then(Option::as_ref);
            let state = if restored_from.is_some() {
                BlobState::Good
            } else {
                state
            };
            if let Some((was, from)) = restored_from {
                report.damage.push(Damage {
                    namespace: row.namespace.as_str().to_string(),
                    key: row.key.clone(),
                    problem: format!(
                        "blob {} {}; restored from the intact copy {}",
                        row.blob,
                        if *was == BlobState::Missing {
                            "is missing"
                        } else {
                            "does not hash to its name"
                        },
                        from.display()
                    ),
                    repaired: true,
                });
            }
            let damage = |problem: String| Damage {
                namespace: row.namespace.as_str().to_string(),
                key: row.key.clone(),
                problem,
                repaired: false,
            };
            match state {
                BlobState::Missing => report
                    .damage
                    .push(damage(format!("blob {} is missing", row.blob))),
                BlobState::Corrupt => {
                    report.damage.push(damage(format!(
                        "blob {} does not hash to its name",
                        row.blob
                    )));
                    if repair && blob_path.exists() {
                        report.quarantined.push(self.quarantine(&blob_path)?);
                    }
                }
                BlobState::Good => {
                    let problem = match self.entry_path(ns, &row.key) {
                        Ok(entry) => entry_problem(&entry, &blob_path, &row.blob, enc),
                        Err(e) => Some(format!("the key cannot be a layout entry: {e}")),
                    };
                    if let Some(problem) = problem {
                        let mut d = damage(problem);
                        if repair {
                            self.relink(ns, &row.key, &row.blob, enc)?;
                            d.repaired = true;
                        }
                        report.damage.push(d);
                    }
                }
            }
        }
        report.blobs = blobs.len() as u64;
        report.reclaimable = self.gc_far_future_dry()?;
        Ok(report)
    }

    /// `verify` for a backend without a layout tree (S3): every blob a row
    /// names is there and hashes to its name. Damage is reported; `repair`
    /// moves a corrupt blob to `quarantine/` in the bucket, so that a re-upload
    /// of the file puts it back (a missing one is put back by a re-upload as it is).
    fn verify_blobs_only(
        &self,
        rows: &[KeyRow],
        mut report: VerifyReport,
        repair: bool,
    ) -> Result<VerifyReport> {
        let mut states: HashMap<(String, Encoding), BlobState> = HashMap::new();
        for row in rows {
            let id = (row.blob.clone(), row.encoding);
            let state = match states.get(&id) {
                Some(state) => *state,
                None => {
                    let mut state = self.streamed_blob_state(&row.blob, row.encoding)?;
                    if repair && state == BlobState::Corrupt {
                        // Read once more before anything is moved.
                        state = self.streamed_blob_state(&row.blob, row.encoding)?;
                    }
                    if repair && state == BlobState::Corrupt {
                        // Out of the way of the re-upload that restores it.
                        let aside = self
                            .blobs()
                            .quarantine(&row.blob, row.encoding)
                            .map_err(|e| self.blob_error(e))?;
                        report.quarantined.push(PathBuf::from(aside));
                    }
                    states.insert(id, state);
                    state
                }
            };
            let problem = match state {
                BlobState::Good => continue,
                BlobState::Missing => format!("blob {} is missing", row.blob),
                BlobState::Corrupt => format!("blob {} does not hash to its name", row.blob),
            };
            report.damage.push(Damage {
                namespace: row.namespace.as_str().to_string(),
                key: row.key.clone(),
                problem,
                repaired: false,
            });
        }
        report.blobs = states.len() as u64;
        report.reclaimable = self.gc_far_future_dry()?;
        Ok(report)
    }

    /// A blob's state, read through the backend as a stream. A backend that
    /// cannot answer fails the run (an outage is not damage).
    fn streamed_blob_state(&self, hash: &str, enc: Encoding) -> Result<BlobState> {
        let Some(info) = self
            .blobs()
            .info(hash, enc)
            .map_err(|e| self.blob_error(e))?
        else {
            return Ok(BlobState::Missing);
        };
        if info.stored_size == 0 {
            // An empty stored file is an empty original only when kept as it is.
            let empty = enc == Encoding::Identity && blake3::hash(b"").to_hex().as_str() == hash;
            return Ok(if empty {
                BlobState::Good
            } else {
                BlobState::Corrupt
            });
        }
        let reader: Box<dyn Read> = match self
            .blobs()
            .open_range(hash, enc, 0, info.stored_size)
            .map_err(|e| self.blob_error(e))?
        {
            super::BlobRead::Stream(reader) => reader,
            super::BlobRead::File { file, .. } => Box::new(file),
        };
        let mut hasher = blake3::Hasher::new();
        // A store that stops answering midway is an outage, not damage: only
        // bytes that arrived and do not inflate or hash right are.
        let (reader, failure) = super::blobs::recorded(reader);
        let mut reader: Box<dyn Read> = match enc {
            Encoding::Gzip => Box::new(GzDecoder::new(io::BufReader::new(reader))),
            Encoding::Identity => Box::new(reader),
        };
        let copied = io::copy(&mut reader, &mut hasher);
        if let Some(e) = failure.take() {
            return Err(self.blob_error(e));
        }
        Ok(match copied {
            Ok(_) if hasher.finalize().to_hex().as_str() == hash => BlobState::Good,
            _ => BlobState::Corrupt,
        })
    }

    /// Everything GC would reclaim, whatever its age (nothing is changed).
    fn gc_far_future_dry(&self) -> Result<GcReport> {
        let far = SystemTime::now() + Duration::from_secs(100 * 365 * 86_400);
        let mut r = self.gc(far, GcMode::DryRun)?;
        // Expiry is not a matter of integrity.
        r.expired.clear();
        Ok(r)
    }

    /// Puts back the blob `row` names from an intact layout entry of any key
    /// naming it (a copy; a hard link to a damaged blob is damaged too). The
    /// damaged blob, if any, is quarantined first. Returns the entry used.
    fn restore_blob(
        &self,
        rows: &[KeyRow],
        row: &KeyRow,
        enc: Encoding,
        report: &mut VerifyReport,
    ) -> Result<Option<PathBuf>> {
        let source = rows
            .iter()
            .filter(|r| r.blob == row.blob && r.encoding == row.encoding)
            .filter_map(|r| self.entry_path(r.namespace, &r.key).ok())
            // A plain file in the tree, never one behind a symbolic link.
            .filter(|entry| fs::symlink_metadata(entry).is_ok_and(|m| m.is_file()))
            .find(|entry| original_hash(entry, enc).is_ok_and(|h| h == row.blob));
        let Some(source) = source else {
            return Ok(None);
        };
        let blob = self.blob_path(&row.blob, enc)?;
        if blob.exists() {
            report.quarantined.push(self.quarantine(&blob)?);
        }
        self.blobs()
            .put_stored(&row.blob, enc, &mut fs::File::open(&source)?)?;
        Ok(Some(source))
    }

    fn quarantine(&self, blob: &std::path::Path) -> Result<PathBuf> {
        let dir = self.root().join("quarantine");
        fs::create_dir_all(&dir)?;
        let dest = dir.join(blob.file_name().unwrap_or_default());
        fs::rename(blob, &dest)?;
        Ok(dest)
    }

    fn relink(&self, ns: Namespace, key: &str, hash: &str, enc: Encoding) -> Result<()> {
        let _ = self.remove_entry(ns, key);
        self.link_entry(ns, key, hash, enc)
    }

    /// Rebuilds `keys` and `lookup` from the layout tree and `objects/`.
    /// Returns the number of keys indexed and the entries skipped (with why).
    pub fn reindex(&self) -> Result<(u64, Vec<(PathBuf, String)>)> {
        // No GC while the index is being refilled (it would take what is not yet back).
        let _maintenance = super::lock::MaintenanceLock::for_reindex(self.root())?;
        if !self.has_layout() {
            return Err(Error::Refused(
                "reindex rebuilds the index from the layout tree, which only blob_store = local \
                 keeps; with blob_store = s3 run symdepot reindex --from-bucket"
                    .into(),
            ));
        }
        let mut by_inode: HashMap<(u64, u64), (String, Encoding)> = HashMap::new();
        for b in self.blobs().list()? {
            let Ok(m) = fs::metadata(self.blob_path(&b.hash, b.encoding)?) else {
                continue;
            };
            by_inode.insert((m.dev(), m.ino()), (b.hash, b.encoding));
        }
        self.db().writing(|c| super::wipe_keys(c))?;
        self.bump();
        let (mut indexed, mut skipped) = (0u64, Vec::new());
        for ns in Namespace::ALL {
            for (path, key) in layout_entries(&self.root().join(ns.as_str()))? {
                match self.reindex_entry(ns, &path, &key, &by_inode) {
                    Ok(()) => indexed += 1,
                    Err(why) => skipped.push((path, why)),
                }
            }
        }
        Ok((indexed, skipped))
    }

    fn reindex_entry(
        &self,
        ns: Namespace,
        path: &std::path::Path,
        key: &str,
        by_inode: &HashMap<(u64, u64), (String, Encoding)>,
    ) -> std::result::Result<(), String> {
        let file = key.rsplit('/').next().unwrap_or(key).to_string();
        let parsed = match classify_member(key.as_bytes(), false) {
            Ok(MemberName::Key(parsed)) => parsed,
            Ok(MemberName::Ignored) => return Err("ignored by the member rules".into()),
            Err(rule) => return Err(rule),
        };
        let meta = fs::metadata(path).map_err(|e| e.to_string())?;
        let (hash, enc) = match by_inode.get(&(meta.dev(), meta.ino())) {
            Some(found) => found.clone(),
            None => {
                // A copy (EMLINK) or a file put there by hand: hash it and store its blob.
                let enc = self.encoding_for(key);
                let hash = original_hash(path, enc).map_err(|e| format!("unreadable: {e}"))?;
                if !self.blobs().has(&hash, enc) {
                    let f = fs::File::open(path).map_err(|e| e.to_string())?;
                    let mut src: Box<dyn Read> = match enc {
                        Encoding::Gzip => Box::new(GzDecoder::new(f)),
                        Encoding::Identity => Box::new(f),
                    };
                    self.ensure_blob(&hash, enc, &mut src)
                        .map_err(|e| e.to_string())?;
                }
                (hash, enc)
            }
        };
        let blob = self.blob_path(&hash, enc).map_err(|e| e.to_string())?;
        let (identity, size) = self
            .identify_blob(&hash, enc, &file)
            .map_err(|e| e.to_string())?;
        let stored_size = fs::metadata(&blob).map_err(|e| e.to_string())?.len();
        let key = parsed.key();
        let new = NewKey {
            namespace: ns,
            key: &key,
            hash: &hash,
            encoding: enc,
            size,
            stored_size,
            identity: &identity,
        };
        self.commit_key(None, &new).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// What is wrong with a layout entry, if anything.
fn entry_problem(
    entry: &std::path::Path,
    blob: &std::path::Path,
    hash: &str,
    enc: Encoding,
) -> Option<String> {
    let Ok(em) = fs::symlink_metadata(entry) else {
        return Some("layout entry is missing".into());
    };
    let bm = fs::metadata(blob).ok()?;
    if em.ino() == bm.ino() && em.dev() == bm.dev() {
        return None;
    }
    match original_hash(entry, enc) {
        Ok(h) if h == hash => None,
        _ => Some("layout entry holds other content than its blob".into()),
    }
}
