//! Content-addressed blobs: `objects/ab/cd/<blake3>` (kept as is) or
//! `objects/ab/cd/<blake3>.gz` (kept gzip-compressed).
//!
//! A blob is named by the BLAKE3 of its *original* bytes, whatever its
//! encoding, so identical content is stored once and skipping a known file
//! needs no compression. Writes go to a temp file in the store's filesystem,
//! are fsynced, renamed into place and the directory fsynced: a reader never
//! sees a partial blob.
//!
//! [`BlobStore`] is the seam for other backends (an S3-compatible object store
//! would implement it); the local layout tree is a feature of [`LocalBlobs`].

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::error::{Error, Result};

/// How a blob's bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
        }
    }

    pub fn parse(s: &str) -> Encoding {
        if s == "gzip" {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

/// A range of a blob's stored bytes, opened for reading.
pub enum BlobRead {
    /// A local file: the reader seeks to `start` and reads `len` bytes (the
    /// HTTP layer streams it with the runtime's file IO).
    File { file: File, start: u64, len: u64 },
    /// Any other backend: a reader already at the range's start, yielding
    /// exactly the range's bytes.
    Stream(Box<dyn Read + Send>),
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobRead::File { file, start, len } => f
                .debug_struct("File")
                .field("file", file)
                .field("start", start)
                .field("len", len)
                .finish(),
            BlobRead::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// One stored blob, as listed by [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub hash: String,
    pub encoding: Encoding,
    /// Bytes as kept (gzip for a gzip blob).
    pub stored_size: u64,
    /// When it was written or last touched ([`BlobStore::touch`]).
    pub modified: std::time::SystemTime,
}

/// Where blobs live: the seam a second backend (an S3-compatible object store)
/// implements. The store holds it as a trait object and never learns which
/// backend it has; the layout tree of hard links is a feature of local blobs
/// only ([`BlobStore::local_path`]).
///
/// Implementations must make `put` atomic and idempotent: after it returns the
/// blob is durable and complete; before, readers cannot see it; a blob that
/// exists is never replaced. Every method refuses a `hash` that is not a blob
/// name (64 lower-case hex digits).
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Whether the blob is stored.
    fn has(&self, hash: &str, enc: Encoding) -> bool;
    /// Stores the bytes `src` yields under `hash`, encoding them on the way;
    /// returns the stored size. Fails if the bytes do not hash to `hash`.
    fn put(&self, hash: &str, enc: Encoding, level: u32, src: &mut dyn Read) -> Result<u64>;
    /// Marks a stored blob as freshly used (GC's grace protects it) and returns
    /// its stored size; `None` if it is not stored.
    fn touch(&self, hash: &str, enc: Encoding) -> io::Result<Option<u64>>;
    /// Whether [`BlobStore::touch`] makes a blob young again. Where it cannot
    /// (immutable objects), the store pins the blob in the index instead.
    fn touch_refreshes(&self) -> bool {
        true
    }
    /// A stored blob's size and age; `None` if it is not stored.
    fn info(&self, hash: &str, enc: Encoding) -> io::Result<Option<BlobInfo>>;
    /// Opens the stored (possibly compressed) bytes.
    fn open(&self, hash: &str, enc: Encoding) -> io::Result<File>;
    /// Opens the stored bytes for reading here and there (an ELF file's
    /// section table), without fetching the whole blob first where the
    /// backend can read ranges.
    fn open_seekable(&self, hash: &str, enc: Encoding) -> io::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(self.open(hash, enc)?))
    }
    /// Opens `len` stored bytes from `start` for streaming to a client.
    fn open_range(&self, hash: &str, enc: Encoding, start: u64, len: u64) -> io::Result<BlobRead>;
    /// Reads a small blob whole and checks it against its name and sizes;
    /// damage is an `InvalidData` error, never bytes.
    fn read_checked(
        &self,
        hash: &str,
        enc: Encoding,
        size: u64,
        stored_size: u64,
    ) -> io::Result<Vec<u8>>;
    /// Puts back a blob that is missing (damaged ones are moved aside first)
    /// from a copy of its *stored* bytes, checked to hash to `hash`.
    fn put_stored(&self, hash: &str, enc: Encoding, stored: &mut dyn Read) -> Result<()>;
    /// Removes a blob (GC, once no row names it); a missing blob is not an error.
    fn delete(&self, hash: &str, enc: Encoding) -> io::Result<()>;
    /// Every stored blob.
    fn list(&self) -> io::Result<Vec<BlobInfo>>;
    /// Where the blob is on the local disk, for backends that have one (the
    /// layout tree links to it); `None` for remote backends.
    fn local_path(&self, hash: &str, enc: Encoding) -> Option<PathBuf>;
    /// Whether no blob is stored (stops at the first one found).
    fn is_empty(&self) -> io::Result<bool>;
    /// A URL a client may GET the stored bytes from directly, valid for a
    /// while, for backends that can make one; `None` otherwise.
    fn presigned_get(&self, _hash: &str, _enc: Encoding) -> io::Result<Option<String>> {
        Ok(None)
    }
    /// Moves a damaged blob aside (`verify --repair` on a backend without a
    /// layout tree to restore it from): it is no longer stored, so a re-upload
    /// of the file puts it back. Returns where it went.
    fn quarantine(&self, hash: &str, enc: Encoding) -> io::Result<String> {
        let _ = (hash, enc);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this blob store quarantines through its layout tree",
        ))
    }
    /// The id of the store these blobs belong to, as the backend records it
    /// (S3: `<prefix>store.json`); `None` when none is recorded.
    fn owner(&self) -> io::Result<Option<String>> {
        Ok(None)
    }
    /// Records the id of the store these blobs belong to.
    fn set_owner(&self, _store_id: &str) -> io::Result<()> {
        Ok(())
    }
    /// Whether the backend keeps upload manifests beside the blobs (S3: the
    /// bucket outlives the index, and `reindex --from-bucket` reads them back;
    /// local disk has the layout tree instead).
    fn keeps_manifests(&self) -> bool {
        false
    }
    /// Keeps the manifest of upload `upload_id`, never replacing another one.
    fn put_manifest(&self, _upload_id: i64, _json: Vec<u8>) -> io::Result<()> {
        Ok(())
    }
    /// The names and sizes of every manifest kept.
    fn manifest_names(&self) -> io::Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }
    /// A manifest's bytes, by a name [`BlobStore::manifest_names`] gave.
    fn get_manifest(&self, name: &str) -> io::Result<Vec<u8>> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no manifest {name}: this blob store keeps none"),
        ))
    }
}

/// A reader that can seek: what [`BlobStore::open_seekable`] gives.
pub trait ReadSeek: Read + io::Seek + Send {}

impl<T: Read + io::Seek + Send> ReadSeek for T {}

/// A reader that keeps its first IO error, for whoever reads through a
/// parser that swallows them (`object::ReadCache` answers `None` instead):
/// a stored file that cannot be read is then an outage, not "no such part".
pub struct Recorded<R> {
    inner: R,
    failed: Arc<Mutex<Option<io::Error>>>,
}

impl<R> std::fmt::Debug for Recorded<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded").finish_non_exhaustive()
    }
}

/// The first IO error a [`Recorded`] reader met, if any.
#[derive(Debug, Clone, Default)]
pub struct Failure(Arc<Mutex<Option<io::Error>>>);

impl Failure {
    pub fn take(&self) -> Option<io::Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// `inner`, keeping its first IO error for the [`Failure`] handed back.
pub fn recorded<R>(inner: R) -> (Recorded<R>, Failure) {
    let failure = Failure::default();
    let reader = Recorded {
        inner,
        failed: Arc::clone(&failure.0),
    };
    (reader, failure)
}

impl<R> Recorded<R> {
    fn keep<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
        }
        r
    }
}

impl<R: Read> Read for Recorded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.keep(r)
    }
}

impl<R: io::Seek> io::Seek for Recorded<R> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let r = self.inner.seek(to);
        self.keep(r)
    }
}

/// Blobs on the local disk under `<data dir>/objects`.
#[derive(Debug)]
pub struct LocalBlobs {
    objects: PathBuf,
    tmp: PathBuf,
}

impl LocalBlobs {
    pub fn new(objects: PathBuf, tmp: PathBuf) -> Self {
        LocalBlobs { objects, tmp }
    }

    /// The path of a blob; refused unless `hash` is a blob name (64 lower-case
    /// hex digits), whatever row or request it came from.
    pub fn path(&self, hash: &str, enc: Encoding) -> io::Result<PathBuf> {
        super::door::check_blob_name(hash)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let name = match enc {
            Encoding::Identity => hash.to_string(),
            Encoding::Gzip => format!("{hash}.gz"),
        };
        Ok(self.objects.join(&hash[0..2]).join(&hash[2..4]).join(name))
    }

    /// Reads a small blob whole and checks it: `stored_size` bytes on disk
    /// whose original bytes (inflated, for a gzip blob) are `size` long and
    /// hash to its name. Damage is an `InvalidData` error, never bytes.
    fn read_checked_file(
        &self,
        hash: &str,
        enc: Encoding,
        size: u64,
        stored_size: u64,
    ) -> io::Result<Vec<u8>> {
        let damaged = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {hash} is damaged on disk: {what}"),
            )
        };
        let file = File::open(self.path(hash, enc)?)?;
        if file.metadata()?.len() != stored_size {
            return Err(damaged("its size does not match the index"));
        }
        let mut bytes = Vec::with_capacity(stored_size as usize);
        file.take(stored_size).read_to_end(&mut bytes)?;
        check_stored(hash, enc, size, &bytes)?;
        Ok(bytes)
    }

    /// See [`BlobStore::put_stored`].
    fn put_stored_file(&self, hash: &str, enc: Encoding, stored: &mut dyn Read) -> Result<()> {
        let tmp = stored_copy_to_temp(&self.tmp, hash, enc, stored)?;
        let dest = self.path(hash, enc)?;
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir)?;
        tmp.persist_noclobber(&dest).map_err(|e| e.error)?;
        sync_dir(dir)?;
        Ok(())
    }
}

impl BlobStore for LocalBlobs {
    fn has(&self, hash: &str, enc: Encoding) -> bool {
        self.path(hash, enc).is_ok_and(|p| p.is_file())
    }

    fn put(&self, hash: &str, enc: Encoding, level: u32, src: &mut dyn Read) -> Result<u64> {
        let dest = self.path(hash, enc)?;
        let tmp = encode_to_temp(&self.tmp, hash, enc, level, src)?;
        let file = tmp.as_file();
        file.sync_all()?;
        let stored = file.metadata()?.len();
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir)?;
        // Never replace a blob: layout entries are hard links to the inode that is there.
        // A concurrent writer of the same content may have won; its blob is complete.
        match tmp.persist_noclobber(&dest) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(fs::metadata(&dest)?.len());
            }
            Err(e) => return Err(e.error.into()),
        }
        sync_dir(dir)?;
        Ok(stored)
    }

    fn touch(&self, hash: &str, enc: Encoding) -> io::Result<Option<u64>> {
        let path = self.path(hash, enc)?;
        match File::open(&path) {
            Ok(f) => {
                f.set_modified(std::time::SystemTime::now())?;
                Ok(Some(f.metadata()?.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn info(&self, hash: &str, enc: Encoding) -> io::Result<Option<BlobInfo>> {
        match fs::metadata(self.path(hash, enc)?) {
            Ok(m) => Ok(Some(BlobInfo {
                hash: hash.to_string(),
                encoding: enc,
                stored_size: m.len(),
                modified: m.modified()?,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, hash: &str, enc: Encoding) -> io::Result<File> {
        File::open(self.path(hash, enc)?)
    }

    fn open_range(&self, hash: &str, enc: Encoding, start: u64, len: u64) -> io::Result<BlobRead> {
        Ok(BlobRead::File {
            file: self.open(hash, enc)?,
            start,
            len,
        })
    }

    fn read_checked(
        &self,
        hash: &str,
        enc: Encoding,
        size: u64,
        stored_size: u64,
    ) -> io::Result<Vec<u8>> {
        self.read_checked_file(hash, enc, size, stored_size)
    }

    fn put_stored(&self, hash: &str, enc: Encoding, stored: &mut dyn Read) -> Result<()> {
        self.put_stored_file(hash, enc, stored)
    }

    fn delete(&self, hash: &str, enc: Encoding) -> io::Result<()> {
        let path = self.path(hash, enc)?;
        super::door::remove_entry(&self.objects, &path).map_err(|e| match e {
            Error::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }

    fn list(&self) -> io::Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        for (path, rel) in super::door::walk3(&self.objects)? {
            let name = rel.rsplit('/').next().unwrap_or_default();
            let (hash, encoding) = match name.strip_suffix(".gz") {
                Some(h) => (h, Encoding::Gzip),
                None => (name, Encoding::Identity),
            };
            if super::door::check_blob_name(hash).is_err() {
                continue;
            }
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(BlobInfo {
                hash: hash.to_string(),
                encoding,
                stored_size: meta.len(),
                modified: meta.modified()?,
            });
        }
        Ok(out)
    }

    fn local_path(&self, hash: &str, enc: Encoding) -> Option<PathBuf> {
        self.path(hash, enc).ok()
    }

    fn is_empty(&self) -> io::Result<bool> {
        Ok(!super::door::any_file3(&self.objects)?)
    }
}

/// Writes the bytes `src` yields to a new temp file in `tmp`, encoded as `enc`
/// (gzip at `level`), hashing them on the way; fails, leaving nothing, unless
/// they hash to `hash`. The file is not yet synced.
pub(crate) fn encode_to_temp(
    tmp: &Path,
    hash: &str,
    enc: Encoding,
    level: u32,
    src: &mut dyn Read,
) -> Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new().prefix("blob-").tempfile_in(tmp)?;
    let mut hasher = blake3::Hasher::new();
    let mut hashing = HashingReader {
        inner: src,
        hasher: &mut hasher,
    };
    let w = BufWriter::with_capacity(256 * 1024, file.as_file());
    match enc {
        Encoding::Identity => {
            let mut w = w;
            io::copy(&mut hashing, &mut w)?;
            w.into_inner().map_err(|e| e.into_error())?;
        }
        Encoding::Gzip => {
            let mut gz = GzEncoder::new(w, Compression::new(level));
            io::copy(&mut hashing, &mut gz)?;
            gz.finish()?.flush()?;
        }
    }
    let actual = hasher.finalize().to_hex();
    if actual.as_str() != hash {
        return Err(Error::Io(io::Error::other(format!(
            "content changed while storing: expected BLAKE3 {hash}, read {actual}"
        ))));
    }
    Ok(file)
}

/// Copies a blob's *stored* bytes (gzip for a gzip blob) to a new temp file
/// in `tmp`, synced, and checks as it reads them back that their original
/// bytes hash to `hash`; fails, leaving nothing, otherwise.
pub(crate) fn stored_copy_to_temp(
    tmp: &Path,
    hash: &str,
    enc: Encoding,
    stored: &mut dyn Read,
) -> Result<tempfile::NamedTempFile> {
    let copy = tempfile::Builder::new().prefix("blob-").tempfile_in(tmp)?;
    io::copy(stored, &mut copy.as_file())?;
    copy.as_file().sync_all()?;
    let mut check = blake3::Hasher::new();
    let file = io::BufReader::new(File::open(copy.path())?);
    match enc {
        Encoding::Identity => io::copy(&mut { file }, &mut check)?,
        Encoding::Gzip => io::copy(&mut flate2::read::GzDecoder::new(file), &mut check)?,
    };
    if check.finalize().to_hex().as_str() != hash {
        return Err(Error::Io(io::Error::other(format!(
            "the copy of blob {hash} does not hash to its name"
        ))));
    }
    Ok(copy)
}

/// Checks a small blob's stored bytes: their original bytes (inflated, for a
/// gzip blob) are `size` long and hash to `hash`. Damage is `InvalidData`.
pub(crate) fn check_stored(hash: &str, enc: Encoding, size: u64, bytes: &[u8]) -> io::Result<()> {
    let damaged = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob {hash} is damaged: {what}"),
        )
    };
    let mut hasher = blake3::Hasher::new();
    let original = match enc {
        Encoding::Identity => {
            hasher.update(bytes);
            bytes.len() as u64
        }
        Encoding::Gzip => {
            let mut gz = flate2::read::GzDecoder::new(bytes).take(size.saturating_add(1));
            io::copy(&mut gz, &mut hasher).map_err(|e| damaged(&e.to_string()))?
        }
    };
    if original != size || hasher.finalize().to_hex().as_str() != hash {
        return Err(damaged("its content does not hash to its name"));
    }
    Ok(())
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: &'a mut blake3::Hasher,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// fsyncs a directory so a rename or link in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn storing_existing_content_keeps_the_blob_inode() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let blobs = LocalBlobs::new(dir.path().join("objects"), dir.path().join("tmp"));
        let data = b"MODULE Linux x86 AB f\n".repeat(100);
        let hash = blake3::hash(&data).to_hex().to_string();
        let first = blobs.put(&hash, Encoding::Gzip, 6, &mut &data[..]).unwrap();
        let ino = fs::metadata(blobs.path(&hash, Encoding::Gzip).unwrap())
            .unwrap()
            .ino();
        let second = blobs.put(&hash, Encoding::Gzip, 6, &mut &data[..]).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            fs::metadata(blobs.path(&hash, Encoding::Gzip).unwrap())
                .unwrap()
                .ino(),
            ino
        );
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn content_that_does_not_match_its_hash_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let blobs = LocalBlobs::new(dir.path().join("objects"), dir.path().join("tmp"));
        let wrong = blake3::hash(b"other").to_hex().to_string();
        assert!(
            blobs
                .put(&wrong, Encoding::Identity, 6, &mut &b"data"[..])
                .is_err()
        );
        assert!(!blobs.has(&wrong, Encoding::Identity));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
