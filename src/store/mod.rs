//! The store: the only module that touches the data dir or SQLite.
//!
//! A key is committed in three durable steps, in this order: the blob
//! (temp file, fsync, rename, directory fsync), then the layout entry (a hard
//! link at a temp name renamed over `<ns>/<module>/<id>/<file>`), then the
//! index row. A crash between steps leaves only things GC reclaims (an
//! unreferenced blob, an entry the index does not name), never a row without
//! its blob. Index changes to one key happen under the writer lock together
//! with its layout rename, so concurrent uploads of the same key leave the
//! entry and the row naming the same blob.

pub mod access;
pub mod blobs;
pub mod door;
pub mod export;
pub mod gc;
pub mod index;
pub mod lock;
pub mod manifest;
pub mod migrate;
pub mod migrations;
pub mod missing;
pub mod owner;
pub mod records;
pub mod s3;
pub mod slots;
pub mod sql;
pub mod streams;
pub mod tokens;
pub mod uploads;
pub mod verify;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sql_params;
use sql::{Conn, ConnExt};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::keys::normalize;
use crate::settings::StoreSettings;
pub use blobs::{BlobRead, BlobStore, Encoding, LocalBlobs, sync_dir};
pub use export::ExportFilter;
pub use index::{Db, DbError, KeyRow, Namespace, now_ms};
pub use slots::UploadSlot;
pub use uploads::{UploadEnd, UploadFinish, UploadRecord, UploadRow, UploadStart};

/// The index's file name in the data dir.
pub const INDEX_FILE: &str = "index.sqlite3";

/// What a long operation tells whoever runs it as it goes (the command line
/// draws a bar from it; the store knows no terminal).
pub trait Progress {
    /// The work is `total` steps, told again if more is found.
    fn total(&mut self, total: u64);
    /// One more step is done.
    fn step(&mut self);
}

/// Progress nobody follows.
#[derive(Debug, Default)]
pub struct Unwatched;

impl Progress for Unwatched {
    fn total(&mut self, _: u64) {}
    fn step(&mut self) {}
}

/// The facade over blobs, layout and index.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    settings: StoreSettings,
    /// The blob backend, behind its seam.
    blobs: Box<dyn BlobStore>,
    /// Whether keys have a layout tree of hard links (blobs on the local disk).
    layout: bool,
    db: Db,
    /// Bumped by every change to the keys in this process (caches compare it).
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// The index file as opened (device, inode): the heartbeat fails once the
    /// file on disk is another one, or gone.
    index_file: Option<(u64, u64)>,
    /// The last count of the keys' totals (see [`Store::key_totals`]).
    totals: records::TotalsKept,
    /// This process's temp folder (dropped last: it is removed when the store goes).
    temp: lock::ProcessTemp,
}

/// What committing one member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    New,
    Replaced,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::New => "new",
            Outcome::Replaced => "replaced",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Everything known about a member when it is committed.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub namespace: Namespace,
    pub key: &'a str,
    pub hash: &'a str,
    pub encoding: Encoding,
    pub size: u64,
    pub stored_size: u64,
    pub identity: &'a Identity,
}

/// Where a member's bytes come from when its blob is written.
pub enum MemberBytes<'a> {
    /// The original bytes (compressed on the way when the key's kind is).
    Original(Box<dyn Read + 'a>),
    /// A gzip stream of them (a zip member's deflate stream framed as gzip),
    /// kept as it is for a key stored as gzip; checked to inflate to the
    /// blob's name before it is kept.
    Gzip(Box<dyn Read + 'a>),
}

impl std::fmt::Debug for MemberBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberBytes::Original(_) => "MemberBytes::Original",
            MemberBytes::Gzip(_) => "MemberBytes::Gzip",
        })
    }
}

impl Store {
    /// Opens the data dir, creating its folders and index on first use.
    ///
    /// Refuses ([`Error::Refused`]) when the index is missing or empty while
    /// `objects/` holds blobs: every key would look unknown, and GC would take
    /// every blob. `symdepot reindex` rebuilds the index ([`Store::open_to_rebuild`]).
    ///
    /// The store keeps only its [`StoreSettings`], built here from `config`.
    pub fn open(config: Arc<Config>) -> Result<Store> {
        Self::open_with(StoreSettings::new(&config))
    }

    /// [`Store::open`] with its settings already built.
    pub fn open_with(settings: StoreSettings) -> Result<Store> {
        let store = Self::open_to_rebuild(settings)?;
        // Another store's prefix first: a new index there is no lost index.
        store.check_bucket_owner(false)?;
        store.check_index_holds_the_store()?;
        Ok(store)
    }

    /// Opens the target of `migrate`: another store's copy, perhaps half
    /// made (blobs copied before the rows that name them), so it is not held
    /// to the lost-index check; it must still own its bucket prefix.
    pub fn open_to_migrate(settings: StoreSettings) -> Result<Store> {
        let store = Self::open_to_rebuild(settings)?;
        store.check_bucket_owner(false)?;
        Ok(store)
    }

    /// Opens the data dir whatever state its index is in, for `reindex`.
    pub fn open_to_rebuild(settings: StoreSettings) -> Result<Store> {
        use std::os::unix::fs::MetadataExt;
        let root = settings.data_dir.clone();
        for dir in ["objects", "release", "try", "cache", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let index = root.join(INDEX_FILE);
        let (db, index_file) = match &settings.database {
            Some(pg) => (Db::open_postgres(&pg.url, pg.pool_size)?, None),
            None => {
                let db = Db::open(&index)?;
                let meta = fs::metadata(&index)?;
                (db, Some((meta.dev(), meta.ino())))
            }
        };
        let temp = lock::ProcessTemp::create(&root.join("tmp"))?;
        let blobs: Box<dyn BlobStore> = match &settings.s3 {
            Some(s3) => Box::new(s3::S3Blobs::connect(s3, temp.path().to_path_buf())?),
            None => Box::new(LocalBlobs::new(
                root.join("objects"),
                temp.path().to_path_buf(),
            )),
        };
        let layout = settings.s3.is_none();
        Ok(Store {
            root,
            settings,
            blobs,
            layout,
            db,
            generation: Default::default(),
            index_file,
            totals: Default::default(),
            temp,
        })
    }

    /// Whether the index knows nothing (no key, upload, token or blob it let
    /// go of): a new index, or one recreated after the old one was lost.
    fn index_is_new(&self) -> Result<bool> {
        self.db.reading(|c| {
            let known: i64 = c.one(
                "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM keys LIMIT 1) AS k) \
                 + (SELECT COUNT(*) FROM (SELECT 1 FROM uploads LIMIT 1) AS u) \
                 + (SELECT COUNT(*) FROM (SELECT 1 FROM tokens LIMIT 1) AS t) \
                 + (SELECT COUNT(*) FROM (SELECT 1 FROM released LIMIT 1) AS r)",
                &[],
            )?;
            Ok(known == 0)
        })
    }

    /// Refuses an index that knows nothing while blobs are stored.
    fn check_index_holds_the_store(&self) -> Result<()> {
        if self.index_is_new()? && !self.blobs.is_empty()? {
            let how = if self.layout {
                "run `symdepot reindex` to rebuild it from the blobs and the layout tree"
            } else {
                "run `symdepot reindex --from-bucket` to rebuild it from the upload manifests"
            };
            return Err(Error::Refused(format!(
                "the index {} is missing or empty but the blob store holds blobs; {how}",
                self.root.join(INDEX_FILE).display()
            )));
        }
        Ok(())
    }

    /// Checks that the index answers real queries, is still the file this
    /// process opened, and holds the store (for `/__heartbeat__`).
    pub fn check_index(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        if let Some(opened) = self.index_file {
            let index = self.root.join(INDEX_FILE);
            let meta = fs::metadata(&index).map_err(|e| {
                Error::Refused(format!("the index {} is gone: {e}", index.display()))
            })?;
            if (meta.dev(), meta.ino()) != opened {
                return Err(Error::Refused(format!(
                    "the index {} was replaced since this process opened it; restart it",
                    index.display()
                )));
            }
        }
        // Reads the header, the schema and a page of every table, on a new connection.
        let version = self.db.check_schema()?;
        if version != self.db.schema_version_expected() {
            return Err(Error::Refused(format!(
                "the index is at schema version {version}, this process expects {}",
                self.db.schema_version_expected()
            )));
        }
        self.check_index_holds_the_store()
    }

    /// What the store was opened with.
    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Follows the other daemons of the store (an index on PostgreSQL): each
    /// change of keys they commit moves this store's write generation on, so
    /// lookup caches drop what they hold at once (their short lifetime covers
    /// a notification connection that is down). Nothing on SQLite.
    pub fn follow_other_daemons(&self) {
        self.db.follow_changes(Arc::downgrade(&self.generation));
    }

    /// The write generation: changes whenever keys change in this process
    /// (or, followed, in another daemon of the store).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks a change to the keys (after it is committed).
    pub(crate) fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        // The other daemons of the store (if any) hear of it.
        self.db.announce_change();
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    /// An IO error of the blob backend: a remote store that fails is
    /// unavailable (503, retry later), a local disk's error is what it is.
    /// A blob store failure as the error a caller answers with: on a remote
    /// backend an outage ([`Error::Unavailable`], details only in the log).
    pub(crate) fn blob_error(&self, e: io::Error) -> Error {
        if self.layout {
            e.into()
        } else {
            tracing::error!(error = %e, "the object store failed");
            Error::Unavailable("the blob store (the object store) does not answer".into())
        }
    }

    /// Whether keys have a layout tree (blobs on the local disk).
    pub(crate) fn has_layout(&self) -> bool {
        self.layout
    }

    /// A blob's path on the local disk, for the layout tree (a local-disk
    /// feature) and the checks of `verify` and `reindex`.
    pub(crate) fn blob_path(&self, hash: &str, enc: Encoding) -> io::Result<PathBuf> {
        door::check_blob_name(hash)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.blobs.local_path(hash, enc).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the layout tree needs blobs on the local disk",
            )
        })
    }

    /// This process's folder for temp files (upload bodies, spools, blobs and
    /// links being written): `tmp/proc-*`, locked while the process lives.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.temp.path().to_path_buf()
    }

    /// A new temp file in this process's temp folder, on the data dir's
    /// filesystem, named `<prefix>…` and removed when dropped (blocking).
    /// A folder of this process's temp space (removed when dropped).
    pub fn temp_dir(&self, prefix: &str) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.temp.path())
    }

    pub fn temp_file(&self, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(self.temp.path())
    }

    /// Removes the temp folders of processes that are gone (called when the
    /// daemon starts, before it serves). Live processes' folders stay.
    pub fn clear_temp(&self) -> Result<usize> {
        lock::ProcessTemp::clear_abandoned(&self.root.join("tmp"))
    }

    /// Checks that the data dir accepts writes (for `/__heartbeat__`).
    pub fn check_writable(&self) -> Result<()> {
        let f = tempfile::Builder::new()
            .prefix("heartbeat-")
            .tempfile_in(self.tmp_dir())?;
        drop(f);
        Ok(())
    }

    /// The encoding new content under this key is stored with.
    ///
    /// (A member's bytes come as they are, or already gzip-encoded:
    /// [`MemberBytes`].)
    pub fn encoding_for(&self, key: &str) -> Encoding {
        if self.settings.compresses(key) {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// Stores a blob unless it is already there; returns its stored size. The
    /// first half of [`Store::store_member`] (public for tests of what lies
    /// between the halves: a blob stored, its key not yet committed).
    pub fn ensure_blob(&self, hash: &str, enc: Encoding, src: &mut dyn Read) -> Result<u64> {
        self.ensure_blob_from(hash, enc, || Ok(MemberBytes::Original(Box::new(src))))
    }

    /// [`Store::ensure_blob`] that opens its source only when the blob is not stored.
    fn ensure_blob_from<'a>(
        &self,
        hash: &str,
        enc: Encoding,
        source: impl FnOnce() -> Result<MemberBytes<'a>>,
    ) -> Result<u64> {
        // Fresh again: GC leaves young blobs alone, and this one is about to
        // be linked. An object cannot be made young again: it is pinned
        // instead, and looked for once more after the pin is committed (GC
        // checks pins in the same write transaction as it deletes, so the
        // blob found then stays until the key names it).
        let found = self
            .blobs
            .touch(hash, enc)
            .map_err(|e| self.blob_error(e))?;
        if let Some(stored) = found {
            if self.blobs.touch_refreshes() {
                return Ok(stored);
            }
            self.pin_blob(hash, enc)?;
            if let Some(stored) = self.blobs.info(hash, enc).map_err(|e| self.blob_error(e))? {
                return Ok(stored.stored_size);
            }
        }
        // A blob written now is young.
        match source()? {
            MemberBytes::Gzip(mut gz) if enc == Encoding::Gzip => {
                // Kept as it came (checked to inflate to its name), never
                // compressed again. A writer of the same blob may have won.
                if let Err(e) = self.blobs.put_stored(hash, enc, &mut gz)
                    && !self.blobs.has(hash, enc)
                {
                    return Err(e);
                }
                let info = self.blobs.info(hash, enc).map_err(|e| self.blob_error(e))?;
                info.map(|i| i.stored_size).ok_or_else(|| {
                    Error::Io(io::Error::other(format!(
                        "blob {hash} vanished once stored"
                    )))
                })
            }
            MemberBytes::Gzip(_) => Err(Error::Io(io::Error::other(
                "gzip bytes offered for a blob not stored as gzip",
            ))),
            MemberBytes::Original(mut src) => {
                self.blobs
                    .put(hash, enc, self.settings.compression_level, &mut src)
            }
        }
    }

    /// Pins a stored blob as of now, for every daemon's GC: what a fresh
    /// modification time is to a blob on local disk (young for `gc_grace`).
    fn pin_blob(&self, hash: &str, enc: Encoding) -> Result<()> {
        self.db.writing(|c| {
            c.exec(
                "INSERT INTO blob_pins (blob, encoding, pinned_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (blob, encoding) DO UPDATE SET pinned_at = excluded.pinned_at",
                &sql_params![hash, enc.as_str(), now_ms()],
            )?;
            Ok(())
        })
    }

    /// The size a blob takes on disk (0 if it is not stored).
    pub fn stored_size(&self, hash: &str, enc: Encoding) -> u64 {
        self.blobs
            .info(hash, enc)
            .ok()
            .flatten()
            .map_or(0, |b| b.stored_size)
    }

    /// A URL the client may fetch a stored key's bytes (as kept) from directly,
    /// where the backend makes them (presigned object-store URLs).
    pub fn presigned_get(&self, row: &KeyRow) -> io::Result<Option<String>> {
        self.blobs.presigned_get(&row.blob, row.encoding)
    }

    /// The row a lookup key points at: release first, then try if asked.
    pub fn lookup(&self, lkey: &str, include_try: bool) -> Result<Option<KeyRow>> {
        self.db.lookup(lkey, include_try)
    }

    /// A stored key's bytes as kept (gzip for compressed kinds), read whole
    /// and checked against the blob's name: damage is an error, never data.
    /// For small blobs only (the caller bounds `row.stored_size`).
    pub fn read_blob_checked(&self, row: &KeyRow) -> io::Result<Vec<u8>> {
        self.blobs
            .read_checked(&row.blob, row.encoding, row.size, row.stored_size)
    }

    /// Opens `len` bytes from `start` of a stored key's bytes as kept, for
    /// streaming to a client whatever the backend.
    pub fn open_blob_range(&self, row: &KeyRow, start: u64, len: u64) -> io::Result<BlobRead> {
        self.blobs.open_range(&row.blob, row.encoding, start, len)
    }

    /// Opens a stored key's bytes as kept, to read here and there (ranged
    /// reads where the backend has them, never the whole blob first).
    pub fn open_blob_seekable(&self, row: &KeyRow) -> io::Result<Box<dyn blobs::ReadSeek>> {
        self.blobs.open_seekable(&row.blob, row.encoding)
    }

    /// A stored key's original bytes (inflated when kept as gzip), as a stream.
    pub fn open_original(&self, row: &KeyRow) -> io::Result<Box<dyn io::Read + Send>> {
        let f = self.blobs.open(&row.blob, row.encoding)?;
        Ok(match row.encoding {
            Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(io::BufReader::new(f))),
            Encoding::Identity => Box::new(io::BufReader::new(f)),
        })
    }

    /// Opens a stored key's bytes as kept (gzip for compressed kinds), whole.
    pub fn open_blob(&self, row: &KeyRow) -> io::Result<fs::File> {
        self.blobs.open(&row.blob, row.encoding)
    }

    /// Whether the key already holds exactly this content and its blob is
    /// there (a cheap pre-check; [`Store::commit_key`] decides again under the
    /// writer lock).
    pub fn holds(&self, ns: Namespace, key: &str, hash: &str) -> Result<bool> {
        Ok(self
            .db
            .key_row(ns, &normalize(key))?
            .is_some_and(|row| row.blob == hash && self.blobs.has(hash, row.encoding)))
    }

    /// Stores one member: the one commit verb of ingest. Skips content the
    /// key already holds; otherwise stores the blob (reading `source` only
    /// when the blob is not already stored) and commits the key — blob durable,
    /// then layout entry, then index rows. `new.stored_size` is worked out
    /// here. A failure is recorded against the upload as a `failed` member.
    pub fn store_member<'a>(
        &self,
        upload_id: Option<i64>,
        new: &NewKey<'_>,
        source: impl FnOnce() -> Result<MemberBytes<'a>>,
    ) -> Result<Outcome> {
        let result = self.store_member_inner(upload_id, new, source);
        if let (Err(e), Some(id)) = (&result, upload_id) {
            let _ = self.record_member_outcome(id, new.key, "failed", Some(&e.to_string()));
        }
        result
    }

    fn store_member_inner<'a>(
        &self,
        upload_id: Option<i64>,
        new: &NewKey<'_>,
        source: impl FnOnce() -> Result<MemberBytes<'a>>,
    ) -> Result<Outcome> {
        let mut new = NewKey {
            stored_size: self.stored_size(new.hash, new.encoding),
            ..new.clone()
        };
        if self.holds(new.namespace, new.key, new.hash)?
            && let Some(outcome) = self.commit_key_held(upload_id, &new, true)?
        {
            return Ok(outcome);
        }
        new.stored_size = self.ensure_blob_from(new.hash, new.encoding, source)?;
        self.commit_key(upload_id, &new)?.ok_or_else(|| {
            Error::Io(io::Error::other(
                "the blob vanished before its key was committed",
            ))
        })
    }

    /// Records every key that already holds exactly this content (blob and
    /// layout entry in place) as skipped, in one transaction: a re-upload costs
    /// one commit, not one per member. Returns, per key, whether it was skipped;
    /// the others go through [`Store::commit_key`].
    pub fn skip_unchanged(&self, upload_id: Option<i64>, keys: &[NewKey<'_>]) -> Result<Vec<bool>> {
        // Which keys hold this content with their blob and entry in place,
        // asked before the writer lock is taken (a HEAD each on S3). Safe: a
        // blob a row names is never collected, and the commit below skips a
        // key only if its row is still the one read here with that content
        // (anything that changes an entry changes or deletes its row).
        let in_place = |new: &NewKey<'_>| -> Result<Option<KeyRow>> {
            Ok(self
                .db
                .key_row(new.namespace, &normalize(new.key))?
                .filter(|row| row.blob == new.hash && self.row_in_place(new.namespace, row)))
        };
        // On every core: each is a read of the index and a look at the disk.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let piece = keys.len().div_ceil(cores).max(64);
        let unchanged: Vec<Option<KeyRow>> = std::thread::scope(|scope| {
            let pieces: Vec<_> = keys
                .chunks(piece)
                .map(|part| scope.spawn(move || part.iter().map(in_place).collect::<Vec<_>>()))
                .collect();
            pieces
                .into_iter()
                .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect::<Result<_>>()
        })?;
        if unchanged.iter().all(Option::is_none) {
            return Ok(vec![false; keys.len()]);
        }
        self.db.writing(|c| {
            let now = now_ms();
            let mut out = Vec::with_capacity(keys.len());
            for (new, row) in keys.iter().zip(unchanged) {
                let skip = match &row {
                    Some(row) => {
                        c.exec(
                            "UPDATE keys SET last_uploaded_at = ?1 \
                             WHERE id = ?2 AND blob = ?3 AND encoding = ?4",
                            &sql_params![now, row.id, row.blob.as_str(), row.encoding.as_str()],
                        )? == 1
                    }
                    None => false,
                };
                if let (true, Some(row), Some(upload_id)) = (skip, &row, upload_id) {
                    let recorded = NewKey {
                        encoding: row.encoding,
                        stored_size: row.stored_size,
                        ..new.clone()
                    };
                    record_member(
                        c,
                        upload_id,
                        new.key,
                        Outcome::Skipped.as_str(),
                        Some(&recorded),
                        None,
                    )?;
                }
                out.push(skip);
            }
            Ok(out)
        })
    }

    /// Whether a row's blob is stored and, with a layout tree, its entry is
    /// that blob (the entry's inode is the blob's: one look at each).
    fn row_in_place(&self, ns: Namespace, row: &KeyRow) -> bool {
        if self.layout {
            self.entry_is_blob(ns, &row.key, &row.blob, row.encoding)
        } else {
            self.blobs.has(&row.blob, row.encoding)
        }
    }

    /// The second half of [`Store::store_member`].
    /// Commits a key whose blob is durable: links the layout entry, then
    /// writes the index rows and the upload member record in one transaction.
    /// Answers `None`, changing nothing, when the key needs the blob and the
    /// blob is not stored (the caller stores it and commits again).
    pub fn commit_key(&self, upload_id: Option<i64>, new: &NewKey<'_>) -> Result<Option<Outcome>> {
        self.commit_key_held(upload_id, new, false)
    }

    /// [`Store::commit_key`]; `held`: the key was seen holding this very blob,
    /// and the blob there, just before (a skip then asks the blob store
    /// nothing under the writer lock: a blob a row names is never collected).
    fn commit_key_held(
        &self,
        upload_id: Option<i64>,
        new: &NewKey<'_>,
        held: bool,
    ) -> Result<Option<Outcome>> {
        // The door's rule before any query: the index never sees a key the
        // store would not place (whichever blob store and engine).
        crate::keys::check_key(new.key).map_err(|rule| Error::invalid(new.key, rule))?;
        let key_norm = normalize(new.key);
        let outcome = self.db.writing(|c| {
            let existing = index::key_row(c, new.namespace, &key_norm)?;
            let now = now_ms();
            // Even a skip needs the blob: a re-upload restores a blob lost or
            // quarantined. A skip keeps the row's encoding, whatever the upload's.
            let kept = existing.as_ref().filter(|row| {
                row.blob == new.hash && (held || self.blobs.has(&row.blob, row.encoding))
            });
            if kept.is_none() && !self.blobs.has(new.hash, new.encoding) {
                return Ok(None);
            }
            let (outcome, recorded) = match (kept, &existing) {
                (Some(row), _) => {
                    self.link_entry(new.namespace, &row.key, &row.blob, row.encoding)?;
                    c.exec(
                        "UPDATE keys SET last_uploaded_at = ?1 WHERE id = ?2",
                        &sql_params![now, row.id],
                    )?;
                    let recorded = NewKey {
                        encoding: row.encoding,
                        stored_size: row.stored_size,
                        ..new.clone()
                    };
                    (Outcome::Skipped, recorded)
                }
                (None, Some(row)) => {
                    self.link_entry(new.namespace, &row.key, new.hash, new.encoding)?;
                    upsert_key(c, upload_id, new, &key_norm, now)?;
                    (Outcome::Replaced, new.clone())
                }
                (None, None) => {
                    self.link_entry(new.namespace, new.key, new.hash, new.encoding)?;
                    upsert_key(c, upload_id, new, &key_norm, now)?;
                    (Outcome::New, new.clone())
                }
            };
            if let Some(upload_id) = upload_id {
                record_member(
                    c,
                    upload_id,
                    new.key,
                    outcome.as_str(),
                    Some(&recorded),
                    None,
                )?;
            }
            Ok(Some(outcome))
        })?;
        if outcome.is_some_and(|o| o != Outcome::Skipped) {
            self.bump();
        }
        Ok(outcome)
    }

    /// Whether the layout entry of a key is (a link to) this blob.
    fn entry_is_blob(&self, ns: Namespace, key: &str, hash: &str, enc: Encoding) -> bool {
        use std::os::unix::fs::MetadataExt;
        if !self.layout {
            return true;
        }
        let (Ok(entry), Ok(blob)) = (self.entry_path(ns, key), self.blob_path(hash, enc)) else {
            return false;
        };
        match (fs::symlink_metadata(entry), fs::metadata(blob)) {
            (Ok(e), Ok(b)) => e.ino() == b.ino() && e.dev() == b.dev(),
            _ => false,
        }
    }

    /// Places `<ns>/<key>` as a hard link to the blob (a copy where the
    /// filesystem refuses another link), atomically replacing what was there;
    /// an entry that already is the blob is left as it is. The key and the
    /// folders it passes through are checked at the door first.
    pub(crate) fn link_entry(
        &self,
        ns: Namespace,
        key: &str,
        hash: &str,
        enc: Encoding,
    ) -> Result<()> {
        let top = self.ns_dir(ns);
        let entry = door::entry_path(&top, key)?;
        if !self.layout || self.entry_is_blob(ns, key, hash, enc) {
            return Ok(());
        }
        door::make_entry_dirs(&top, &entry)?;
        let tmp = self.temp_link(&self.blob_path(hash, enc)?)?;
        fs::rename(&tmp, &entry)?;
        // Dropping `tmp` removes the temp name if it is still there (a rename
        // onto another link to the same file changes nothing and keeps both).
        drop(tmp);
        sync_dir(entry.parent().expect("entries are three folders deep"))?;
        Ok(())
    }

    /// A new temp name in this process's temp folder for `blob`: a hard link,
    /// or a synced copy where the filesystem refuses another link (`EMLINK`).
    /// The name is removed when the returned path is dropped, on every path
    /// out of the caller, failures included.
    fn temp_link(&self, blob: &Path) -> Result<tempfile::TempPath> {
        let tmp = tempfile::TempPath::try_from_path(
            self.tmp_dir().join(format!("link-{}", random_hex(8))),
        )?;
        match fs::hard_link(blob, &tmp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                fs::copy(blob, &tmp)?;
                fs::File::open(&tmp)?.sync_all()?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(tmp)
    }

    /// The folder of a namespace's layout tree.
    pub(crate) fn ns_dir(&self, ns: Namespace) -> PathBuf {
        self.root.join(ns.as_str())
    }

    /// The path of a key's layout entry, checked at the door.
    pub fn entry_path(&self, ns: Namespace, key: &str) -> Result<PathBuf> {
        door::entry_path(&self.ns_dir(ns), key)
    }

    /// Removes a key's layout entry and its folders while empty, checked at the door.
    pub(crate) fn remove_entry(&self, ns: Namespace, key: &str) -> Result<()> {
        if !self.layout {
            return Ok(());
        }
        let top = self.ns_dir(ns);
        door::remove_entry(&top, &door::entry_path(&top, key)?)
    }

    /// Records what happened to a member that was not committed as a key.
    pub fn record_member_outcome(
        &self,
        upload_id: i64,
        key: &str,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<()> {
        self.db
            .writing(|c| record_member(c, upload_id, key, outcome, None, error))
    }
}

/// Inserts the key, or updates its row (keeping its first spelling and
/// creation time), then rewrites its lookup rows.
fn upsert_key(
    c: &mut dyn Conn,
    upload_id: Option<i64>,
    new: &NewKey<'_>,
    key_norm: &str,
    now: i64,
) -> Result<()> {
    let id = &new.identity;
    let key_id: i64 = c.one(
        "INSERT INTO keys (namespace, key, key_norm, blob, encoding, size, stored_size, kind, \
         debug_file, debug_id, code_file, code_id, generator, os, arch, upload_id, created_at, \
         last_uploaded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
         ?15, ?16, ?17, ?17) \
         ON CONFLICT (namespace, key_norm) DO UPDATE SET blob = excluded.blob, \
         encoding = excluded.encoding, size = excluded.size, stored_size = excluded.stored_size, \
         kind = excluded.kind, debug_file = excluded.debug_file, debug_id = excluded.debug_id, \
         code_file = excluded.code_file, code_id = excluded.code_id, generator = excluded.generator, \
         os = excluded.os, arch = excluded.arch, upload_id = excluded.upload_id, \
         last_uploaded_at = excluded.last_uploaded_at \
         RETURNING id",
        &sql_params![
            new.namespace.as_str(),
            new.key,
            key_norm,
            new.hash,
            new.encoding.as_str(),
            new.size,
            new.stored_size,
            id.kind.as_str(),
            id.debug_file.as_deref(),
            id.debug_id.as_deref(),
            id.code_file.as_deref(),
            id.code_id.as_deref(),
            id.generator.as_deref(),
            id.os.as_deref(),
            id.arch.as_deref(),
            upload_id,
            now
        ],
    )?;
    c.exec("DELETE FROM lookup WHERE key_id = ?1", &sql_params![key_id])?;
    clear_missing(c, new)?;
    insert_lookups(c, key_id, new.namespace, key_norm, id)
}

/// Empties `keys` and `lookup` for a rebuild, leaving `released` as it was:
/// the rows' own trigger would record every blob as let go of, and GC
/// deletes those without its share limit while the rebuild may yet leave
/// some keys out.
pub(crate) fn wipe_keys(c: &mut dyn Conn) -> Result<()> {
    c.batch(
        "CREATE TEMP TABLE released_before AS SELECT blob, encoding FROM released; \
         DELETE FROM lookup; DELETE FROM keys; \
         DELETE FROM released WHERE NOT EXISTS (SELECT 1 FROM released_before b \
         WHERE b.blob = released.blob AND b.encoding = released.encoding); \
         DROP TABLE released_before;",
    )?;
    Ok(())
}

/// A stored key is no longer missing: by its path, its debug and code identity, its build id.
fn clear_missing(c: &mut dyn Conn, new: &NewKey<'_>) -> Result<()> {
    let mut segs = new.key.split('/');
    let (module, debug_id) = (segs.next().unwrap_or(""), segs.next().unwrap_or(""));
    let id = new.identity;
    let sql = "DELETE FROM missing WHERE \
         (lower(debug_file) = lower(?1) AND lower(debug_id) = lower(?2)) \
         OR (code_file <> '' AND lower(code_file) = lower(?3) AND lower(code_id) = lower(?4)) \
         OR lower(debug_id) = lower(?5)";
    c.exec(
        sql,
        &sql_params![
            module,
            debug_id,
            id.code_file.as_deref().unwrap_or(""),
            id.code_id.as_deref().unwrap_or(""),
            id.build_id.as_deref().unwrap_or("-")
        ],
    )?;
    if let (Some(f), Some(d)) = (&id.debug_file, &id.debug_id) {
        c.exec(sql, &sql_params![f, d, "", "", "-"])?;
    }
    Ok(())
}

fn insert_lookups(
    c: &mut dyn Conn,
    key_id: i64,
    ns: Namespace,
    key_norm: &str,
    id: &Identity,
) -> Result<()> {
    for lkey in crate::identity::lookup::lookup_keys(key_norm, id) {
        c.exec(
            "INSERT INTO lookup (lkey, namespace, key_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
            &sql_params![lkey, ns.as_str(), key_id],
        )?;
    }
    Ok(())
}

fn record_member(
    c: &mut dyn Conn,
    upload_id: i64,
    key: &str,
    outcome: &str,
    new: Option<&NewKey<'_>>,
    error: Option<&str>,
) -> Result<()> {
    let id = new.map(|n| n.identity);
    c.exec(
        "INSERT INTO upload_members (upload_id, key, outcome, size, stored_size, blake3, debug_file, \
         debug_id, code_file, code_id, generator, error, namespace, encoding, kind, os, arch, \
         committed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        &sql_params![
            upload_id,
            key,
            outcome,
            new.map(|n| n.size),
            new.map(|n| n.stored_size),
            new.map(|n| n.hash),
            id.and_then(|i| i.debug_file.as_deref()),
            id.and_then(|i| i.debug_id.as_deref()),
            id.and_then(|i| i.code_file.as_deref()),
            id.and_then(|i| i.code_id.as_deref()),
            id.and_then(|i| i.generator.as_deref()),
            error,
            new.map(|n| n.namespace.as_str()),
            new.map(|n| n.encoding.as_str()),
            id.map(|i| i.kind.as_str()),
            id.and_then(|i| i.os.as_deref()),
            id.and_then(|i| i.arch.as_deref()),
            new.map(|_| now_ms()),
        ],
    )?;
    Ok(())
}

/// `n` random bytes from the OS RNG, as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random number generator is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
