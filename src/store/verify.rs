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
use super::sql::ConnExt;
use super::{Encoding, KeyRow, Namespace, NewKey, Progress, Store};
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
    /// Damaged keys found (repaired or not).
    pub damaged: u64,
    /// Damage `--repair` did not fix.
    pub unrepaired: u64,
    /// The damage itself, kept by [`Store::verify`] ([`Store::verify_with`]
    /// hands each to its caller instead, so a badly damaged store is not
    /// held in memory).
    pub damage: Vec<Damage>,
    /// Blobs moved to `quarantine/` by `--repair`.
    pub quarantined: Vec<PathBuf>,
    /// What GC would reclaim (whatever its age).
    pub reclaimable: GcReport,
}

impl VerifyReport {
    /// Counts `d` and hands it on.
    fn found(&mut self, d: Damage, on_damage: &mut dyn FnMut(Damage)) {
        self.damaged += 1;
        self.unrepaired += u64::from(!d.repaired);
        on_damage(d);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobState {
    Good,
    Missing,
    Corrupt,
    /// Not the stored size the index gives it (bytes on disk or in the bucket).
    WrongSize(u64),
}

impl BlobState {
    /// The damage, in words.
    fn problem(self, hash: &str, stored_size: u64) -> String {
        match self {
            BlobState::Good => format!("blob {hash} is intact"),
            BlobState::Missing => format!("blob {hash} is missing"),
            BlobState::Corrupt => format!("blob {hash} does not hash to its name"),
            BlobState::WrongSize(n) => {
                format!("blob {hash} is {n} bytes as stored; the index says {stored_size}")
            }
        }
    }
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

/// How `verify` checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Re-link entries that can be re-linked, quarantine corrupt blobs.
    pub repair: bool,
    /// Presence and sizes only: every blob is there with the stored size the
    /// index gives it, every layout entry is its blob's inode (or a file of
    /// that size); nothing is read or re-hashed.
    pub quick: bool,
}

/// Keys read from the index at a time: verify holds one page and the blob
/// being checked, never the whole index.
const VERIFY_PAGE: i64 = 5_000;

impl Store {
    /// Checks every key; with `repair`, re-links entries and quarantines corrupt blobs.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let opts = VerifyOptions {
            repair,
            quick: false,
        };
        let mut damage = Vec::new();
        let mut report = self.verify_with(opts, &mut |_| {}, &mut |d| damage.push(d))?;
        report.damage = damage;
        Ok(report)
    }

    /// Checks every key as `opts` says. Keys are read a page at a time in the
    /// order of their blob, so each blob is checked once, when its first key
    /// comes, and only the current blob's state is kept; `progress` is told
    /// the keys checked so far after each page, `on_damage` each damaged key
    /// as it is found.
    pub fn verify_with(
        &self,
        opts: VerifyOptions,
        progress: &mut dyn FnMut(u64),
        on_damage: &mut dyn FnMut(Damage),
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut current = BlobCheck::default();
        let mut after = (String::new(), 0i64);
        loop {
            let page = self.key_page(&after)?;
            let Some(last) = page.last() else { break };
            after = (last.blob.clone(), last.id);
            for row in &page {
                report.keys += 1;
                if current.blob != row.blob {
                    current = BlobCheck {
                        blob: row.blob.clone(),
                        ..BlobCheck::default()
                    };
                }
                if self.has_layout() {
                    self.verify_row(row, opts, &mut current, &mut report, on_damage)?;
                } else {
                    self.verify_row_blob_only(row, opts, &mut current, &mut report, on_damage)?;
                }
            }
            progress(report.keys);
            if (page.len() as i64) < VERIFY_PAGE {
                break;
            }
        }
        report.reclaimable = self.gc_far_future_dry()?;
        Ok(report)
    }

    /// How many keys the index holds.
    pub fn key_count(&self) -> Result<u64> {
        self.db()
            .reading(|c| Ok(c.one("SELECT COUNT(*) FROM keys", &[])?))
    }

    /// The page of keys after `(blob, id)`, in `(blob, id)` order: the rest
    /// of that blob's keys, then those of the blobs after it. (Two seeks on
    /// `keys_blob`: a row-value comparison would seek on the blob alone and
    /// scan a blob's keys from its first for every page.)
    fn key_page(&self, after: &(String, i64)) -> Result<Vec<KeyRow>> {
        let cols = super::index::KEY_COLUMNS;
        self.db().reading(|c| {
            let mut rows = c.rows(
                &format!(
                    "SELECT {cols} FROM keys k WHERE k.blob = ?1 AND k.id > ?2 \
                     ORDER BY k.id LIMIT ?3"
                ),
                &crate::sql_params![after.0.as_str(), after.1, VERIFY_PAGE],
            )?;
            let left = VERIFY_PAGE - rows.len() as i64;
            if left > 0 {
                rows.extend(c.rows(
                    &format!(
                        "SELECT {cols} FROM keys k WHERE k.blob > ?1 \
                         ORDER BY k.blob, k.id LIMIT ?2"
                    ),
                    &crate::sql_params![after.0.as_str(), left],
                )?);
            }
            Ok(rows
                .iter()
                .map(KeyRow::from_row)
                .collect::<std::result::Result<_, super::index::DbError>>()?)
        })
    }

    /// The rows naming a blob (the candidates `--repair` restores it from).
    fn rows_of_blob(&self, hash: &str, enc: Encoding) -> Result<Vec<KeyRow>> {
        self.db().reading(|c| {
            let rows = c.rows(
                &format!(
                    "SELECT {} FROM keys k WHERE k.blob = ?1 AND k.encoding = ?2 ORDER BY k.id",
                    super::index::KEY_COLUMNS
                ),
                &crate::sql_params![hash, enc.as_str()],
            )?;
            Ok(rows
                .iter()
                .map(KeyRow::from_row)
                .collect::<std::result::Result<_, super::index::DbError>>()?)
        })
    }

    /// One key of a store with a layout tree: its blob (checked once per
    /// blob and encoding), then its entry.
    fn verify_row(
        &self,
        row: &KeyRow,
        opts: VerifyOptions,
        current: &mut BlobCheck,
        report: &mut VerifyReport,
        on_damage: &mut dyn FnMut(Damage),
    ) -> Result<()> {
        let enc = row.encoding;
        let damage = |problem: String| Damage {
            namespace: row.namespace.as_str().to_string(),
            key: row.key.clone(),
            problem,
            repaired: false,
        };
        let Ok(blob_path) = self.blob_path(&row.blob, enc) else {
            report.found(
                damage(format!(
                    "the row names {:?}, which is not a blob name",
                    row.blob
                )),
                on_damage,
            );
            return Ok(());
        };
        let at = enc as usize;
        let state = match current.states[at] {
            Some(state) => state,
            None => {
                let state = if opts.quick {
                    match fs::metadata(&blob_path) {
                        Ok(m) if m.len() == row.stored_size => BlobState::Good,
                        Ok(m) => BlobState::WrongSize(m.len()),
                        Err(_) => BlobState::Missing,
                    }
                } else {
                    match original_hash(&blob_path, enc) {
                        Ok(h) if h == row.blob => BlobState::Good,
                        Ok(_) | Err(_) if blob_path.exists() => BlobState::Corrupt,
                        _ => BlobState::Missing,
                    }
                };
                report.blobs += 1;
                current.states[at] = Some(state);
                if state != BlobState::Good && opts.repair {
                    let from = self.restore_blob(row, enc, report)?;
                    current.restored[at] = from.map(|f| (state, f));
                }
                state
            }
        };
        if let Some((was, from)) = &current.restored[at] {
            let d = Damage {
                repaired: true,
                ..damage(format!(
                    "{}; restored from the intact copy {}",
                    was.problem(&row.blob, row.stored_size),
                    from.display()
                ))
            };
            report.found(d, on_damage);
        } else if state != BlobState::Good {
            report.found(damage(state.problem(&row.blob, row.stored_size)), on_damage);
            if opts.repair && state != BlobState::Missing && blob_path.exists() {
                report.quarantined.push(self.quarantine(&blob_path)?);
            }
            return Ok(());
        }
        let problem = match self.entry_path(row.namespace, &row.key) {
            Ok(entry) => entry_problem(&entry, &blob_path, row, opts.quick),
            Err(e) => Some(format!("the key cannot be a layout entry: {e}")),
        };
        if let Some(problem) = problem {
            let mut d = damage(problem);
            if opts.repair {
                self.relink(row.namespace, &row.key, &row.blob, enc)?;
                d.repaired = true;
            }
            report.found(d, on_damage);
        }
        Ok(())
    }

    /// One key of a store without a layout tree (S3): its blob is there and
    /// hashes to its name (or, quick, has its size). `repair` moves a corrupt
    /// blob to `quarantine/` in the bucket, so that a re-upload of the file
    /// puts it back (a missing one is put back by a re-upload as it is).
    fn verify_row_blob_only(
        &self,
        row: &KeyRow,
        opts: VerifyOptions,
        current: &mut BlobCheck,
        report: &mut VerifyReport,
        on_damage: &mut dyn FnMut(Damage),
    ) -> Result<()> {
        let at = row.encoding as usize;
        let state = match current.states[at] {
            Some(state) => state,
            None => {
                let mut state = self.streamed_blob_state(row, opts.quick)?;
                if opts.repair && state != BlobState::Good && state != BlobState::Missing {
                    // Read once more before anything is moved.
                    state = self.streamed_blob_state(row, opts.quick)?;
                }
                if opts.repair && state != BlobState::Good && state != BlobState::Missing {
                    // Out of the way of the re-upload that restores it.
                    let aside = self
                        .blobs()
                        .quarantine(&row.blob, row.encoding)
                        .map_err(|e| self.blob_error(e))?;
                    report.quarantined.push(PathBuf::from(aside));
                }
                report.blobs += 1;
                current.states[at] = Some(state);
                state
            }
        };
        if state != BlobState::Good {
            let d = Damage {
                namespace: row.namespace.as_str().to_string(),
                key: row.key.clone(),
                problem: state.problem(&row.blob, row.stored_size),
                repaired: false,
            };
            report.found(d, on_damage);
        }
        Ok(())
    }

    /// A blob's state, read through the backend as a stream. A backend that
    /// cannot answer fails the run (an outage is not damage).
    fn streamed_blob_state(&self, row: &KeyRow, quick: bool) -> Result<BlobState> {
        let (hash, enc) = (row.blob.as_str(), row.encoding);
        let Some(info) = self
            .blobs()
            .info(hash, enc)
            .map_err(|e| self.blob_error(e))?
        else {
            return Ok(BlobState::Missing);
        };
        if quick || info.stored_size != row.stored_size {
            return Ok(if info.stored_size == row.stored_size {
                BlobState::Good
            } else {
                BlobState::WrongSize(info.stored_size)
            });
        }
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
        row: &KeyRow,
        enc: Encoding,
        report: &mut VerifyReport,
    ) -> Result<Option<PathBuf>> {
        let source = self
            .rows_of_blob(&row.blob, enc)?
            .iter()
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
    /// Returns the number of keys indexed and the entries skipped (with why);
    /// `progress` counts the entries.
    pub fn reindex(&self, progress: &mut dyn Progress) -> Result<(u64, Vec<(PathBuf, String)>)> {
        // No GC while the index is being refilled (it would take what is not yet back).
        let _maintenance = super::lock::MaintenanceLock::for_reindex(self.root())?;
        if !self.has_layout() {
            return Err(Error::Refused(
                "reindex rebuilds the index from the layout tree, which only blob_store = local \
                 keeps; with blob_store = s3 run symdepot reindex --from-bucket"
                    .into(),
            ));
        }
        let by_inode = self.blobs_by_inode()?;
        let entries = self.all_layout_entries()?;
        progress.total(entries.len() as u64);
        self.db().writing(|c| super::wipe_keys(c))?;
        self.bump();
        let (mut indexed, mut skipped) = (0u64, Vec::new());
        for (ns, path, key) in entries {
            match self.reindex_entry(ns, &path, &key, &by_inode) {
                Ok(()) => indexed += 1,
                Err(why) => skipped.push((path, why)),
            }
            progress.step();
        }
        Ok((indexed, skipped))
    }

    /// Every stored blob by the inode of its file.
    fn blobs_by_inode(&self) -> Result<HashMap<(u64, u64), (String, Encoding)>> {
        let mut by_inode = HashMap::new();
        for b in self.blobs().list()? {
            let Ok(m) = fs::metadata(self.blob_path(&b.hash, b.encoding)?) else {
                continue;
            };
            by_inode.insert((m.dev(), m.ino()), (b.hash, b.encoding));
        }
        Ok(by_inode)
    }

    /// The layout tree's entries, every namespace's, with their keys.
    fn all_layout_entries(&self) -> Result<Vec<(Namespace, PathBuf, String)>> {
        let mut all = Vec::new();
        for ns in Namespace::ALL {
            let entries = layout_entries(&self.root().join(ns.as_str()))?;
            all.extend(entries.into_iter().map(|(path, key)| (ns, path, key)));
        }
        Ok(all)
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
/// What is wrong with a layout entry, if anything. Quick, a separate file
/// of the blob's stored size passes without being read.
fn entry_problem(
    entry: &std::path::Path,
    blob: &std::path::Path,
    row: &KeyRow,
    quick: bool,
) -> Option<String> {
    let Ok(em) = fs::symlink_metadata(entry) else {
        return Some("layout entry is missing".into());
    };
    let bm = fs::metadata(blob).ok()?;
    if em.ino() == bm.ino() && em.dev() == bm.dev() {
        return None;
    }
    let other = || Some("layout entry holds other content than its blob".into());
    if !em.is_file() || em.len() != row.stored_size {
        return other();
    }
    if quick {
        return None;
    }
    match original_hash(entry, row.encoding) {
        Ok(h) if h == row.blob => None,
        _ => other(),
    }
}

/// The blob whose keys are being checked: its state under each encoding,
/// found when its first key came, and the copy `--repair` restored it from.
#[derive(Default)]
struct BlobCheck {
    blob: String,
    states: [Option<BlobState>; 2],
    restored: [Option<(BlobState, PathBuf)>; 2],
}
