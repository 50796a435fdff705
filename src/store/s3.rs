//! Blobs on an S3-compatible object store (`blob_store = "s3"`): Garage,
//! MinIO, Ceph RGW, AWS S3…, through the `object_store` crate.
//!
//! Objects are `<s3_prefix>objects/ab/cd/<blake3>[.gz]`, immutable and written
//! once, exactly the names of the local backend. A blob is encoded (gzip for
//! compressed kinds) into a temp file on the way in, hashed and checked, then
//! uploaded with a multipart put read from that file in parts, so memory stays
//! flat in blob size; a HEAD that finds the object skips the upload. Reads
//! stream ranged GETs. There is no layout tree: [`BlobStore::local_path`] is
//! `None`.
//!
//! The store's methods are blocking (they run on blocking threads); this
//! backend drives its requests on a small runtime of its own.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

use super::blobs::{
    BlobInfo, BlobRead, BlobStore, Encoding, ReadSeek, check_stored, encode_to_temp,
    stored_copy_to_temp,
};
use crate::error::{Error, Result};

/// Where the bucket is and how to reach it (the `s3_*` settings).
#[derive(Clone, Default)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub allow_http: bool,
    pub virtual_hosted: bool,
    /// How long a presigned URL stays valid.
    pub presign_ttl: std::time::Duration,
}

/// The secret never reaches a log or an error.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"REDACTED")
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("presign_ttl", &self.presign_ttl)
            .finish()
    }
}

/// Parts of a multipart upload.
const PART: usize = 8 << 20;

/// Blobs in a bucket.
pub struct S3Blobs {
    store: Arc<object_store::aws::AmazonS3>,
    presign_ttl: std::time::Duration,
    prefix: String,
    tmp: PathBuf,
    runtime: Arc<Runtime>,
}

/// The backend's runtime, shared with the readers it hands out (a download
/// may outlive the store it came from at shutdown). Whoever drops it last
/// shuts it down without waiting, an async context included.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until it is dropped")
            .handle()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// An `object_store` failure as an IO error that says what failed.
fn io_err(what: &str, e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            io::Error::new(io::ErrorKind::NotFound, format!("{what}: {e}"))
        }
        other => io::Error::other(format!("{what}: {other}")),
    }
}

impl S3Blobs {
    /// Connects to the bucket and checks that it answers (a missing bucket,
    /// wrong credentials or an unreachable endpoint fail here, naming the setting).
    pub fn connect(s: &S3Settings, tmp: PathBuf) -> Result<S3Blobs> {
        // A few quick retries: an unreachable store is an outage to report, not to wait out.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(20),
            ..object_store::RetryConfig::default()
        };
        // No time limit on a whole request (a large blob to a slow client takes
        // what it takes); connecting is bounded.
        let client = object_store::ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(std::time::Duration::from_secs(5));
        // From the environment first: session tokens and other credential sources.
        crate::tls::use_ring();
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_client_options(client)
            .with_retry(retry)
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_allow_http(s.allow_http)
            .with_virtual_hosted_style_request(s.virtual_hosted);
        if !s.endpoint.is_empty() {
            b = b.with_endpoint(&s.endpoint);
        }
        if !s.access_key_id.is_empty() {
            b = b.with_access_key_id(&s.access_key_id);
        }
        if !s.secret_access_key.is_empty() {
            b = b.with_secret_access_key(&s.secret_access_key);
        }
        let store = b.build().map_err(|e| {
            Error::Refused(format!(
                "s3_*: the object store settings are not usable: {e}"
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("symdepot-s3")
            .enable_all()
            .build()?;
        let blobs = S3Blobs {
            store: Arc::new(store),
            presign_ttl: s.presign_ttl,
            prefix: match s.prefix.trim_start_matches('/') {
                "" => String::new(),
                p if p.ends_with('/') => p.to_string(),
                p => format!("{p}/"),
            },
            tmp,
            runtime: Arc::new(Runtime(Some(runtime))),
        };
        blobs.check_reachable(s)?;
        Ok(blobs)
    }

    /// One LIST of the blob folder: answers unless the bucket, credentials,
    /// region or endpoint are wrong.
    fn check_reachable(&self, s: &S3Settings) -> Result<()> {
        let prefix = ObjectPath::from(format!("{}objects", self.prefix));
        let first = self.block_on(async { self.store.list(Some(&prefix)).next().await });
        match first {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                tracing::error!(error = %e, "the object store refused a listing of the bucket");
                Err(Error::Refused(format!(
                    "s3_endpoint {:?}, s3_bucket {:?}, s3_region {:?}: the object store does not \
                     answer a listing of the bucket ({}); check the endpoint, bucket, region and \
                     credentials",
                    s.endpoint,
                    s.bucket,
                    s.region,
                    short_reason(&e)
                )))
            }
        }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.handle().block_on(f)
    }

    /// The object name of a blob; refused unless `hash` is a blob name.
    fn object(&self, hash: &str, enc: Encoding) -> io::Result<ObjectPath> {
        super::door::check_blob_name(hash)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let ext = if enc == Encoding::Gzip { ".gz" } else { "" };
        Ok(ObjectPath::from(format!(
            "{}objects/{}/{}/{hash}{ext}",
            self.prefix,
            &hash[0..2],
            &hash[2..4]
        )))
    }

    /// Uploads a file's bytes as the object, in parts read one at a time.
    fn upload(&self, object: &ObjectPath, file: &mut File) -> io::Result<()> {
        file.rewind()?;
        self.block_on(async {
            let upload = self
                .store
                .put_multipart(object)
                .await
                .map_err(|e| io_err("starting an upload", e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            let written: io::Result<()> = async {
                loop {
                    let n = read_full(file, &mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.wait_for_capacity(2)
                        .await
                        .map_err(|e| io_err("uploading", e))?;
                    w.write(&buf[..n]);
                }
            }
            .await;
            if let Err(e) = written {
                // No parts left behind in the bucket.
                let _ = w.abort().await;
                return Err(e);
            }
            w.finish()
                .await
                .map_err(|e| io_err("finishing an upload", e))?;
            Ok(())
        })
    }

    fn get_all(&self, object: &ObjectPath) -> io::Result<Bytes> {
        self.block_on(async {
            let got = self
                .store
                .get(object)
                .await
                .map_err(|e| io_err("reading a blob", e))?;
            got.bytes().await.map_err(|e| io_err("reading a blob", e))
        })
    }
}

/// A manifest's name: `<upload id>.json` or `<upload id>.<16 hex>.json`.
fn check_manifest_name(name: &str) -> io::Result<()> {
    let ok = name.strip_suffix(".json").is_some_and(|stem| {
        let mut parts = stem.splitn(2, '.');
        let id = parts.next().unwrap_or("");
        let tail = parts.next().unwrap_or("0");
        !id.is_empty()
            && id.len() <= 19
            && id.bytes().all(|b| b.is_ascii_digit())
            && !tail.is_empty()
            && tail.len() <= 16
            && tail.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an upload manifest's name"),
        ))
    }
}

/// What kind of failure an object-store error is, without its text (which
/// can name hosts and carry the store's answer).
fn short_reason(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::NotFound { .. } => "not found",
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => "credentials refused",
        _ => "no usable answer",
    }
}

/// Reads until `buf` is full or the reader ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A ranged GET read as a blocking reader, one chunk at a time.
struct RangeReader {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    runtime: Arc<Runtime>,
    chunk: Bytes,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.handle().block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(io_err("reading a blob", e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// An object read here and there by ranged GETs of at least [`WINDOW`]
/// bytes, the last one kept: reading an ELF file's headers and section table
/// costs a few requests, not the whole object.
struct SeekableObject {
    store: Arc<object_store::aws::AmazonS3>,
    runtime: Arc<Runtime>,
    object: ObjectPath,
    size: u64,
    pos: u64,
    /// The bytes last fetched and where they start.
    window: (u64, Bytes),
}

/// The least a [`SeekableObject`] fetches at once.
const WINDOW: u64 = 64 << 10;

impl Read for SeekableObject {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let (start, bytes) = &self.window;
        let inside = self.pos >= *start && self.pos < start + bytes.len() as u64;
        if !inside {
            let len = (buf.len() as u64).max(WINDOW).min(self.size - self.pos);
            let got = self.fetch(self.pos..self.pos + len)?;
            if got.is_empty() {
                return Ok(0);
            }
            if len > WINDOW {
                // A large read goes straight to its reader, not kept twice.
                let n = got.len().min(buf.len());
                buf[..n].copy_from_slice(&got[..n]);
                self.pos += n as u64;
                return Ok(n);
            }
            self.window = (self.pos, got);
        }
        let (start, bytes) = &self.window;
        let from = (self.pos - start) as usize;
        let n = buf.len().min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl SeekableObject {
    fn fetch(&self, range: std::ops::Range<u64>) -> io::Result<Bytes> {
        self.runtime
            .handle()
            .block_on(self.store.get_range(&self.object, range))
            .map_err(|e| io_err("reading a blob", e))
    }
}

impl Seek for SeekableObject {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let pos = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.size.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a seek before the start")
        })?;
        Ok(self.pos)
    }
}

impl S3Blobs {
    /// Puts an encoded, checked temp file as the blob's object unless the
    /// object is already there; returns the stored size.
    fn put_encoded(
        &self,
        hash: &str,
        enc: Encoding,
        object: &ObjectPath,
        tmp: tempfile::NamedTempFile,
    ) -> io::Result<u64> {
        let stored = tmp.as_file().metadata()?.len();
        if let Some(found) = self.info(hash, enc)? {
            return Ok(found.stored_size);
        }
        let mut file = tmp.reopen()?;
        if stored < PART as u64 {
            // One request for the common small blob.
            let mut bytes = Vec::with_capacity(stored as usize);
            file.read_to_end(&mut bytes)?;
            self.block_on(self.store.put(object, bytes.into()))
                .map_err(|e| io_err("storing a blob", e))?;
        } else {
            self.upload(object, &mut file)?;
        }
        Ok(stored)
    }
}

impl BlobStore for S3Blobs {
    fn has(&self, hash: &str, enc: Encoding) -> bool {
        self.info(hash, enc).is_ok_and(|i| i.is_some())
    }

    fn put(&self, hash: &str, enc: Encoding, level: u32, src: &mut dyn Read) -> Result<u64> {
        let object = self.object(hash, enc)?;
        let tmp = encode_to_temp(&self.tmp, hash, enc, level, src)?;
        self.put_encoded(hash, enc, &object, tmp).map_err(|e| {
            // The detail (endpoint, bucket, the store's answer) goes to the log only.
            tracing::error!(blob = hash, error = %e, "the blob store (the object store) did not take a blob");
            Error::Unavailable("the blob store (the object store) did not take a blob".into())
        })
    }

    fn touch(&self, hash: &str, enc: Encoding) -> io::Result<Option<u64>> {
        // Objects are immutable: the store pins the blob in the index first.
        Ok(self.info(hash, enc)?.map(|i| i.stored_size))
    }

    fn touch_refreshes(&self) -> bool {
        false
    }

    fn info(&self, hash: &str, enc: Encoding) -> io::Result<Option<BlobInfo>> {
        let object = self.object(hash, enc)?;
        match self.block_on(self.store.head(&object)) {
            Ok(meta) => Ok(Some(BlobInfo {
                hash: hash.to_string(),
                encoding: enc,
                stored_size: meta.size,
                modified: SystemTime::from(meta.last_modified),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err("looking a blob up", e)),
        }
    }

    fn open(&self, hash: &str, enc: Encoding) -> io::Result<File> {
        // Whole, into a temp file: for readers that seek (sections, export).
        let object = self.object(hash, enc)?;
        let mut tmp = tempfile::tempfile_in(&self.tmp)?;
        let mut reader = self.range_reader(&object, None)?;
        io::copy(&mut reader, &mut tmp)?;
        tmp.rewind()?;
        Ok(tmp)
    }

    fn open_seekable(&self, hash: &str, enc: Encoding) -> io::Result<Box<dyn ReadSeek>> {
        let object = self.object(hash, enc)?;
        let size = self
            .block_on(self.store.head(&object))
            .map_err(|e| io_err("reading a blob", e))?
            .size;
        Ok(Box::new(SeekableObject {
            store: Arc::clone(&self.store),
            runtime: Arc::clone(&self.runtime),
            object,
            size,
            pos: 0,
            window: (0, Bytes::new()),
        }))
    }

    fn open_range(&self, hash: &str, enc: Encoding, start: u64, len: u64) -> io::Result<BlobRead> {
        let object = self.object(hash, enc)?;
        Ok(BlobRead::Stream(Box::new(
            self.range_reader(&object, Some(start..start + len))?,
        )))
    }

    fn read_checked(
        &self,
        hash: &str,
        enc: Encoding,
        size: u64,
        stored_size: u64,
    ) -> io::Result<Vec<u8>> {
        let bytes = self.get_all(&self.object(hash, enc)?)?;
        if bytes.len() as u64 != stored_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {hash} is damaged: its size does not match the index"),
            ));
        }
        check_stored(hash, enc, size, &bytes)?;
        Ok(bytes.to_vec())
    }

    fn put_stored(&self, hash: &str, enc: Encoding, stored: &mut dyn Read) -> Result<()> {
        let object = self.object(hash, enc)?;
        let copy = stored_copy_to_temp(&self.tmp, hash, enc, stored)?;
        self.upload(&object, &mut copy.reopen()?)?;
        Ok(())
    }

    fn delete(&self, hash: &str, enc: Encoding) -> io::Result<()> {
        let object = self.object(hash, enc)?;
        match self.block_on(self.store.delete(&object)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err("deleting a blob", e)),
        }
    }

    fn list(&self) -> io::Result<Vec<BlobInfo>> {
        let prefix = ObjectPath::from(format!("{}objects", self.prefix));
        let metas: Vec<object_store::ObjectMeta> = self.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&prefix));
            while let Some(m) = stream.next().await {
                out.push(m.map_err(|e| io_err("listing blobs", e))?);
            }
            Ok::<_, io::Error>(out)
        })?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                let (hash, encoding) = match name.strip_suffix(".gz") {
                    Some(h) => (h.to_string(), Encoding::Gzip),
                    None => (name, Encoding::Identity),
                };
                super::door::check_blob_name(&hash).ok()?;
                Some(BlobInfo {
                    hash,
                    encoding,
                    stored_size: m.size,
                    modified: SystemTime::from(m.last_modified),
                })
            })
            .collect())
    }

    fn local_path(&self, _hash: &str, _enc: Encoding) -> Option<PathBuf> {
        None
    }

    fn presigned_get(&self, hash: &str, enc: Encoding) -> io::Result<Option<String>> {
        use object_store::signer::Signer;
        let object = self.object(hash, enc)?;
        // The object store client's own request method type, named by its text.
        let get = "GET".parse().expect("GET is a request method");
        let url = self
            .block_on(self.store.signed_url(get, &object, self.presign_ttl))
            .map_err(|e| io_err("signing a URL", e))?;
        Ok(Some(url.to_string()))
    }

    fn quarantine(&self, hash: &str, enc: Encoding) -> io::Result<String> {
        let object = self.object(hash, enc)?;
        let name = object.filename().unwrap_or_default().to_string();
        // Never over an earlier quarantined copy.
        let aside = ObjectPath::from(format!(
            "{}quarantine/{name}.{}",
            self.prefix,
            super::now_ms()
        ));
        self.block_on(async {
            self.store
                .copy(&object, &aside)
                .await
                .map_err(|e| io_err("copying a damaged blob aside", e))?;
            self.store
                .delete(&object)
                .await
                .map_err(|e| io_err("removing a damaged blob", e))
        })?;
        Ok(aside.to_string())
    }

    fn owner(&self) -> io::Result<Option<String>> {
        let object = ObjectPath::from(format!("{}store.json", self.prefix));
        let bytes = match self.get_all(&object) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["store_id"].as_str().map(str::to_string))
            .map(Some)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{object} is not a symdepot store marker"),
                )
            })
    }

    fn set_owner(&self, store_id: &str) -> io::Result<()> {
        let object = ObjectPath::from(format!("{}store.json", self.prefix));
        let json = serde_json::json!({ "format": 1, "store_id": store_id }).to_string();
        self.block_on(self.store.put(&object, json.into_bytes().into()))
            .map_err(|e| io_err("writing the store marker", e))?;
        Ok(())
    }

    fn keeps_manifests(&self) -> bool {
        true
    }

    fn put_manifest(&self, upload_id: i64, json: Vec<u8>) -> io::Result<()> {
        let mut object = ObjectPath::from(format!("{}uploads/{upload_id}.json", self.prefix));
        self.block_on(async {
            // An upload id the index gave out before (a lost index rebuilt
            // without its history): the older manifest stays.
            let taken = match self.store.head(&object).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(io_err("looking for an upload manifest", e)),
            };
            if taken {
                let suffix = super::random_hex(8);
                object =
                    ObjectPath::from(format!("{}uploads/{upload_id}.{suffix}.json", self.prefix));
            }
            self.store
                .put(&object, json.into())
                .await
                .map_err(|e| io_err("writing an upload manifest", e))
        })?;
        Ok(())
    }

    fn manifest_names(&self) -> io::Result<Vec<(String, u64)>> {
        let prefix = ObjectPath::from(format!("{}uploads", self.prefix));
        self.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&prefix));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| io_err("listing upload manifests", e))?;
                // Compared part by part, as the object store names them.
                let Some(rest) = meta.location.prefix_match(&prefix) else {
                    continue;
                };
                let rest: Vec<_> = rest.collect();
                if let [name] = rest.as_slice()
                    && check_manifest_name(name.as_ref()).is_ok()
                {
                    out.push((name.as_ref().to_string(), meta.size));
                }
            }
            Ok(out)
        })
    }

    fn get_manifest(&self, name: &str) -> io::Result<Vec<u8>> {
        check_manifest_name(name)?;
        let object = ObjectPath::from(format!("{}uploads/{name}", self.prefix));
        Ok(self.get_all(&object)?.to_vec())
    }

    fn is_empty(&self) -> io::Result<bool> {
        let prefix = ObjectPath::from(format!("{}objects", self.prefix));
        match self.block_on(async { self.store.list(Some(&prefix)).next().await }) {
            None => Ok(true),
            Some(Ok(_)) => Ok(false),
            Some(Err(e)) => Err(io_err("listing blobs", e)),
        }
    }
}

impl S3Blobs {
    fn range_reader(
        &self,
        object: &ObjectPath,
        range: Option<std::ops::Range<u64>>,
    ) -> io::Result<RangeReader> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .block_on(self.store.get_opts(object, options))
            .map_err(|e| io_err("reading a blob", e))?;
        Ok(RangeReader {
            stream: got.into_stream(),
            runtime: Arc::clone(&self.runtime),
            chunk: Bytes::new(),
        })
    }
}
