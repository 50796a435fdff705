//! Phase 1 of ingest: list a zip, apply every member rule, inflate and hash
//! every member under the limits, writing nothing to the store.
//!
//! Most members are identified from what passes by as they are inflated once:
//! their first 64 KiB (`.sym` headers, portable PDBs, kind sniffing) and their
//! last 1 KiB (a JS bundle's `//# debugId`); a source map over 64 KiB is
//! inflated a second time and read in one streaming pass. Only binary formats
//! whose ids can sit anywhere (ELF, Mach-O, PE, PDB) need the whole file at
//! hand: those members, when over 64 KiB, are *spooled* — inflated into a
//! `tmp/spool-*` file that identity reads and phase 2 writes the blob from.
//! Members of unknown kind are never spooled; phase 2 inflates them again.
//!
//! Spools are bounded twice. Their total for one upload is counted as they
//! are written against `max_spool_bytes` (413 naming it once passed), so a
//! small zip cannot fill the disk with inflated copies. And a spool holds no
//! open file between the phases: each is kept by its path only (a
//! [`tempfile::TempPath`], removed when dropped) and reopened when phase 2
//! reads it, so an upload of thousands of binaries needs no more descriptors
//! than it has workers. Every spool of a refused upload is removed with it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempPath;
use zip::read::{OwnedZipFileEntry, ZipReadOptions};
use zip::unstable::read::ZipIterable;

use super::Cancel;
use super::parallel::par_map;
use crate::error::{Error, Result};
use crate::identity::{self, Identity, Kind, PREFIX_LEN, TAIL_LEN};
use crate::keys::{
    MemberKey, MemberName, breakpad_sym_name, classify_auto, classify_member, identity_key,
    normalize,
};
use crate::settings::IngestLimits;
use crate::store::streams::KnownStream;

/// A reader over a shared file handle with its own position (positional
/// reads), so every worker reads the same open zip independently.
#[derive(Debug, Clone)]
pub struct SharedFile {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl SharedFile {
    pub fn open(path: &Path) -> io::Result<SharedFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SharedFile {
            file: Arc::new(file),
            pos: 0,
            len,
        })
    }
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

/// Where a member goes.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Under the key its path names (checked against its identity).
    Key(MemberKey),
    /// Under the key its own identity gives (`?layout=auto`); the file name.
    Auto(String),
}

impl Placement {
    /// The file name the member is identified by.
    pub fn file_name(&self) -> &str {
        match self {
            Placement::Key(key) => key.file(),
            Placement::Auto(file) => file,
        }
    }
}

/// A zip that passed listing: its entries and what the rules made of them.
#[derive(Debug)]
pub struct Listing {
    pub reader: SharedFile,
    pub entries: Vec<OwnedZipFileEntry>,
    /// Indices into `entries` of members to store, with where they go.
    pub members: Vec<(usize, Placement)>,
    /// Names of members ignored by rule.
    pub ignored: Vec<String>,
    /// Member streams hashed as the zip arrived (see [`super::prehash`]).
    pub prehashed: super::prehash::Prehashed,
}

impl Listing {
    /// The name of entry `i`, for messages.
    pub fn name(&self, i: usize) -> String {
        String::from_utf8_lossy(self.entries[i].name_raw()).into_owned()
    }

    /// Opens entry `i` for reading its inflated bytes.
    /// Whether member `i` is stored deflated (its stream is raw DEFLATE, as
    /// gzip's is).
    pub fn is_deflated(&self, i: usize) -> bool {
        self.entries[i].compression() == zip::CompressionMethod::Deflated
    }

    /// Member `i`'s compressed bytes, read (not inflated) from the zip.
    fn raw<'a>(
        &self,
        i: usize,
        reader: &'a mut SharedFile,
    ) -> Result<io::Take<&'a mut SharedFile>> {
        let start = self.data_start(i, reader)?;
        reader.seek(SeekFrom::Start(start))?;
        Ok(Read::take(reader, self.entries[i].compressed_size()))
    }

    /// Where member `i`'s compressed bytes start (its local header read).
    fn data_start(&self, i: usize, reader: &mut SharedFile) -> Result<u64> {
        let entry = &self.entries[i];
        let start = {
            let opened = (entry.as_ref())
                .with_reader(reader, ZipReadOptions::new())
                .map_err(|e| {
                    Error::invalid(self.name(i), format!("cannot be read from the zip: {e}"))
                })?;
            opened.data_start()
        };
        start.ok_or_else(|| Error::invalid(self.name(i), "its data cannot be found in the zip"))
    }

    /// A deflated member as a gzip stream: a gzip header, the member's own
    /// DEFLATE bytes, its CRC-32 and size (RFC 1952) — its compression kept,
    /// nothing compressed again.
    pub fn gzip_of<'a>(&self, i: usize, reader: &'a mut SharedFile) -> Result<impl Read + 'a> {
        let entry = &self.entries[i];
        // Magic, deflate, no flags, no time, no extra flags, unknown system.
        let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        let mut trailer = entry.crc32().to_le_bytes().to_vec();
        trailer.extend_from_slice(&(entry.size() as u32).to_le_bytes());
        let raw = self.raw(i, reader)?;
        Ok(io::Cursor::new(header)
            .chain(raw)
            .chain(io::Cursor::new(trailer)))
    }

    /// The name of member `i`'s compressed stream as a file named
    /// `file_name`: BLAKE3 over that name (identification reads it too), the
    /// compression method, CRC-32, sizes and the BLAKE3 of the compressed
    /// bytes (hashed as the zip arrived, else read now; never inflated). Two
    /// members of one stream inflate to the same bytes.
    pub fn stream_of(&self, i: usize, reader: &mut SharedFile, file_name: &str) -> Result<String> {
        let entry = &self.entries[i];
        let mut hasher = blake3::Hasher::new();
        hasher.update(
            format!(
                "zip-member-stream file={file_name:?} method={:?} crc32={:08x} size={} compressed={}\n",
                entry.compression(),
                entry.crc32(),
                entry.size(),
                entry.compressed_size()
            )
            .as_bytes(),
        );
        let start = self.data_start(i, reader)?;
        let data = match self.prehashed.data_hash(start, entry.compressed_size()) {
            Some(hash) => hash,
            None => self.hash_data(i, reader)?,
        };
        hasher.update(b"data=");
        hasher.update(&data);
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// BLAKE3 of member `i`'s compressed bytes, read from the zip.
    fn hash_data(&self, i: usize, reader: &mut SharedFile) -> Result<[u8; 32]> {
        let size = self.entries[i].compressed_size();
        let mut hasher = blake3::Hasher::new();
        // Read in large pieces: BLAKE3 hashes many chunks at once, and each
        // read is a system call.
        let mut raw = self.raw(i, reader)?;
        let mut buf = vec![0u8; (size as usize).clamp(1, 1 << 20)];
        let mut copied = 0u64;
        loop {
            let n = raw.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            copied += n as u64;
        }
        if copied != size {
            return Err(Error::invalid(self.name(i), "the zip ends inside it"));
        }
        Ok(*hasher.finalize().as_bytes())
    }

    pub fn open<'a>(&'a self, i: usize, reader: &'a mut SharedFile) -> Result<impl Read + 'a> {
        self.entries[i]
            .as_ref()
            .with_reader(reader, ZipReadOptions::new())
            .map_err(|e| Error::invalid(self.name(i), format!("cannot be read from the zip: {e}")))
    }
}

/// Reads the central directory and applies the name rules, in order, so the
/// first offending member is the one named.
pub fn list(path: &Path, limits: &IngestLimits, auto: bool) -> Result<Listing> {
    let reader = SharedFile::open(path)?;
    let mut iterable = ZipIterable::try_new(reader.clone(), zip::read::Config::default())
        .map_err(|e| Error::BadRequest(format!("the upload is not a valid zip file: {e}")))?;
    if iterable.len() as u64 > limits.max_members {
        return Err(Error::TooLarge(format!(
            "the zip holds {} members; the limit is {}",
            iterable.len(),
            limits.max_members
        )));
    }
    let mut listing = Listing {
        reader,
        entries: Vec::new(),
        members: Vec::new(),
        ignored: Vec::new(),
        prehashed: Default::default(),
    };
    let mut declared_total: u64 = 0;
    let files = iterable.files().map_err(|e| {
        Error::BadRequest(format!("the zip's central directory cannot be read: {e}"))
    })?;
    for entry in files {
        let entry = entry.map_err(|e| {
            Error::BadRequest(format!("the zip's central directory cannot be read: {e}"))
        })?;
        let entry = OwnedZipFileEntry::from(entry);
        let i = listing.entries.len();
        listing.entries.push(entry);
        let entry = &listing.entries[i];
        let name = listing.name(i);
        check_entry(entry, &name, limits)?;
        match placement(entry, auto).map_err(|rule| Error::invalid(&name, rule))? {
            // A folder of the archive is no member to report (Tecken skips them silently).
            None if entry.is_dir() => {}
            None => listing.ignored.push(name),
            Some(p) => {
                declared_total = declared_total.saturating_add(entry.size());
                listing.members.push((i, p));
            }
        }
    }
    check_overlaps(&listing)?;
    if declared_total > limits.max_uncompressed_bytes {
        return Err(Error::TooLarge(format!(
            "the zip declares {declared_total} uncompressed bytes; the limit is {}",
            limits.max_uncompressed_bytes
        )));
    }
    if listing.members.is_empty() {
        return Err(Error::BadRequest(if listing.entries.is_empty() {
            "the zip is empty".to_string()
        } else {
            "the zip holds no symbol files, only members ignored by rule".to_string()
        }));
    }
    Ok(listing)
}

/// Bytes of a local file header before its name.
const LOCAL_HEADER_LEN: u64 = 30;

/// Members must not share bytes: an archive whose entries overlap (one local
/// record listed under several names, the trick of non-recursive zip bombs)
/// is refused, naming the later of the two members.
fn check_overlaps(listing: &Listing) -> Result<()> {
    let mut spans: Vec<(u64, u64, usize)> = listing
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let start = e.header_start();
            let end = start
                .saturating_add(LOCAL_HEADER_LEN)
                .saturating_add(e.compressed_size());
            (start, end, i)
        })
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        if end > start {
            return Err(Error::invalid(
                listing.name(a.max(b)),
                format!(
                    "overlaps the member {:?} in the archive; members must not share bytes",
                    listing.name(a.min(b))
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a file is a zip whose every member follows Tecken's layout
/// (`<module>/<debug_id>/<file>`, or ignored by rule).
pub fn is_tecken_zip(path: &Path) -> bool {
    let Ok(reader) = SharedFile::open(path) else {
        return false;
    };
    let Ok(mut iterable) = ZipIterable::try_new(reader, zip::read::Config::default()) else {
        return false;
    };
    let Ok(files) = iterable.files() else {
        return false;
    };
    let mut any = false;
    for entry in files {
        let Ok(entry) = entry else { return false };
        match classify_member(entry.name_raw(), entry.is_dir()) {
            Ok(MemberName::Key(_)) => any = true,
            Ok(MemberName::Ignored) => {}
            Err(_) => return false,
        }
    }
    any
}

/// Where a member goes, or `None` if it is ignored by rule.
fn placement(entry: &OwnedZipFileEntry, auto: bool) -> Result<Option<Placement>, String> {
    if auto {
        return Ok(classify_auto(entry.name_raw(), entry.is_dir())?.map(Placement::Auto));
    }
    Ok(match classify_member(entry.name_raw(), entry.is_dir())? {
        MemberName::Ignored => None,
        MemberName::Key(key) => Some(Placement::Key(key)),
    })
}

fn check_entry(entry: &OwnedZipFileEntry, name: &str, limits: &IngestLimits) -> Result<()> {
    if entry.is_symlink() {
        return Err(Error::invalid(name, "symbolic links are not accepted"));
    }
    if entry.encrypted() {
        return Err(Error::invalid(name, "encrypted members are not accepted"));
    }
    if let Some(snippet) = limits
        .disallowed_snippets
        .iter()
        .find(|s| !s.is_empty() && name.contains(s.as_str()))
    {
        return Err(Error::invalid(
            name,
            format!("names containing {snippet:?} are not allowed here"),
        ));
    }
    Ok(())
}

/// A member that passed phase 1.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Index of the entry in the listing (of the first, if named twice).
    pub index: usize,
    pub key: MemberKey,
    pub hash: String,
    pub size: u64,
    pub identity: Identity,
    /// The inflated bytes of a binary member over 64 KiB, spooled in `tmp/` so
    /// phase 2 need not inflate it again (or the loose file itself); `None`:
    /// phase 2 inflates the member from the zip.
    pub spool: Option<Arc<Spool>>,
    /// The member's compressed stream when it was inflated and hashed here
    /// (to be remembered once stored); `None` for a stream known before (not
    /// inflated) and for loose files.
    pub stream: Option<String>,
}

/// Where a member's bytes can be read again without the zip. Neither form
/// holds an open file: phase 2 opens it when it writes the blob.
#[derive(Debug)]
pub enum Spool {
    /// A spool file in `tmp/`, removed when dropped.
    Temp(TempPath),
    /// A loose file given to ingest as it is.
    Path(std::path::PathBuf),
}

impl Spool {
    pub fn open(&self) -> io::Result<File> {
        match self {
            Spool::Temp(t) => File::open(t),
            Spool::Path(p) => File::open(p),
        }
    }
}

/// Running totals of one upload's phase 1, shared by its workers.
#[derive(Debug, Default)]
struct Totals {
    /// Inflated bytes (against `max_uncompressed_bytes`).
    inflated: AtomicU64,
    /// Bytes written to spool files (against `max_spool_bytes`).
    spooled: AtomicU64,
}

/// Where phase 1 gets its temp files (the store's [`crate::store::Store::temp_file`]):
/// a new file whose name starts with the prefix, removed when dropped.
pub type TempFiles<'a> = &'a (dyn Fn(&str) -> io::Result<tempfile::NamedTempFile> + Sync);

/// Which of a zip's member streams were read before, and what they hold
/// (the store's [`crate::store::Store::known_streams`]).
pub type KnownStreams<'a> = &'a (dyn Fn(&[String]) -> Result<HashMap<String, KnownStream>> + Sync);

/// Inflates and hashes every member in parallel, checks identities and
/// duplicates; a member whose compressed stream is `known` is not inflated
/// (its blob and identity are the known ones). Returns one `Checked` per
/// distinct key, in zip order. Setting `cancel` stops it between members and
/// between chunks of one.
pub fn check_all(
    listing: &Listing,
    limits: &IngestLimits,
    tmp: TempFiles<'_>,
    known: KnownStreams<'_>,
    cancel: &Cancel,
) -> Result<Vec<Checked>> {
    let ctx = Context {
        limits,
        tmp,
        cancel,
        totals: Totals::default(),
    };
    let streams = par_map(
        &listing.members,
        limits.workers,
        || listing.reader.clone(),
        |reader, (i, placement)| {
            cancel.check()?;
            listing.stream_of(*i, reader, placement.file_name())
        },
    )?;
    let known = known(&streams)?;
    let members: Vec<(&(usize, Placement), String)> = listing.members.iter().zip(streams).collect();
    let checked = par_map(
        &members,
        limits.workers,
        || listing.reader.clone(),
        |reader, ((i, placement), stream)| {
            check_member(
                listing,
                reader,
                *i,
                placement,
                stream,
                known.get(stream),
                &ctx,
            )
        },
    )?;
    dedupe(listing, checked)
}

/// What every member's check shares.
struct Context<'a> {
    limits: &'a IngestLimits,
    tmp: TempFiles<'a>,
    cancel: &'a Cancel,
    totals: Totals,
}

/// What one pass of inflating a member saw.
struct Inflated {
    hash: String,
    size: u64,
    /// Its first bytes: all of it when no larger than [`PREFIX_LEN`].
    prefix: Vec<u8>,
    /// Its last [`TAIL_LEN`] bytes.
    tail: Vec<u8>,
    /// The whole member, when it is a binary that needs random access.
    spool: Option<TempPath>,
}

fn check_member(
    listing: &Listing,
    reader: &mut SharedFile,
    i: usize,
    placement: &Placement,
    stream: &str,
    known: Option<&KnownStream>,
    ctx: &Context<'_>,
) -> Result<Checked> {
    ctx.cancel.check()?;
    let name = listing.name(i);
    if let Some(known) = known {
        // Read before and stored whole: its bytes and identity are known.
        let key = placed(&name, placement, &known.identity)?;
        return Ok(Checked {
            index: i,
            key,
            hash: known.blob.clone(),
            size: listing.entries[i].size(),
            identity: known.identity.clone(),
            spool: None,
            stream: None,
        });
    }
    let inflated = inflate(listing, reader, i, &name, ctx)?;
    let declared = listing.entries[i].size();
    if inflated.size != declared {
        return Err(Error::invalid(
            &name,
            format!(
                "the zip declares {declared} bytes for it but it holds {}",
                inflated.size
            ),
        ));
    }
    let identity = identify_inflated(listing, reader, i, &inflated, placement.file_name())?;
    let key = placed(&name, placement, &identity)?;
    Ok(Checked {
        index: i,
        key,
        hash: inflated.hash,
        size: inflated.size,
        identity,
        spool: inflated.spool.map(|p| Arc::new(Spool::Temp(p))),
        stream: Some(stream.to_string()),
    })
}

/// The key member `name` goes to: its own, once its identity agrees with it,
/// or the one its identity gives (a layout-free zip).
pub(crate) fn placed(name: &str, placement: &Placement, identity: &Identity) -> Result<MemberKey> {
    match placement {
        Placement::Key(key) => {
            check_identity(name, key, identity)?;
            Ok(key.clone())
        }
        Placement::Auto(file) => {
            auto_key(identity, file).map_err(|rule| Error::invalid(name, rule))
        }
    }
}

/// The identity of member `i`: read from its spool, from its bytes when it
/// is small, else from its ends (or, for JSON, a second streaming inflate).
fn identify_inflated(
    listing: &Listing,
    reader: &mut SharedFile,
    i: usize,
    inflated: &Inflated,
    file_name: &str,
) -> Result<Identity> {
    Ok(match &inflated.spool {
        Some(path) => identity::identify(File::open(path)?, file_name),
        None if inflated.prefix.len() <= PREFIX_LEN => {
            identity::identify_bytes(&inflated.prefix, file_name)
        }
        None => identity::identify_sequential(
            &inflated.prefix[..PREFIX_LEN],
            &inflated.tail,
            || listing.open(i, reader).ok(),
            file_name,
        ),
    })
}

/// Inflates member `i` once under the limits: hashes it, keeps its first and
/// last bytes, and spools it when its kind needs random access.
fn inflate(
    listing: &Listing,
    reader: &mut SharedFile,
    i: usize,
    name: &str,
    ctx: &Context<'_>,
) -> Result<Inflated> {
    let (limits, totals) = (ctx.limits, &ctx.totals);
    let compressed = listing.entries[i].compressed_size().max(1);
    let mut src = listing.open(i, reader)?;
    let mut hasher = blake3::Hasher::new();
    let mut prefix = Vec::new();
    let mut tail = Vec::new();
    let mut spool: Option<BufWriter<File>> = None;
    let mut spool_path: Option<TempPath> = None;
    let mut buf = vec![0u8; 256 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| Error::invalid(name, format!("cannot be inflated: {e}")))?;
        if n == 0 {
            break;
        }
        ctx.cancel.check()?;
        let chunk = &buf[..n];
        size += n as u64;
        check_limits(name, size, compressed, n as u64, limits, &totals.inflated)?;
        hasher.update(chunk);
        keep_tail(&mut tail, chunk);
        if let Some(w) = spool.as_mut() {
            count_spool(name, n as u64, limits, &totals.spooled)?;
            w.write_all(chunk)?;
            continue;
        }
        if prefix.len() > PREFIX_LEN {
            // Its kind is known and needs no more than its ends: the rest is only hashed.
            continue;
        }
        prefix.extend_from_slice(chunk);
        if prefix.len() > PREFIX_LEN && identity::sniff(&prefix[..PREFIX_LEN]).needs_random_access()
        {
            // A binary keeps its ids anywhere in the file: keep it all.
            count_spool(name, prefix.len() as u64, limits, &totals.spooled)?;
            let (file, path) = (ctx.tmp)("spool-")?.into_parts();
            spool_path = Some(path);
            let mut w = BufWriter::with_capacity(256 * 1024, file);
            w.write_all(&prefix)?;
            prefix.truncate(PREFIX_LEN);
            spool = Some(w);
        }
    }
    if let Some(w) = spool {
        // Flushed and closed here: the spool is kept by its path alone.
        w.into_inner().map_err(|e| e.into_error())?;
    }
    Ok(Inflated {
        hash: hasher.finalize().to_hex().to_string(),
        size,
        prefix,
        tail,
        spool: spool_path,
    })
}

/// Keeps the last [`TAIL_LEN`] bytes seen.
fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    if chunk.len() >= TAIL_LEN {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - TAIL_LEN..]);
        return;
    }
    tail.extend_from_slice(chunk);
    if tail.len() > TAIL_LEN {
        tail.drain(..tail.len() - TAIL_LEN);
    }
}

/// Counts `n` more spooled bytes against `max_spool_bytes`.
fn count_spool(name: &str, n: u64, limits: &IngestLimits, spooled: &AtomicU64) -> Result<()> {
    let sum = spooled.fetch_add(n, Ordering::Relaxed) + n;
    if sum > limits.max_spool_bytes {
        return Err(Error::TooLarge(format!(
            "the zip's binary members need more than {} bytes of temporary space to be checked \
             (max_spool_bytes; limit reached at member {name:?})",
            limits.max_spool_bytes
        )));
    }
    Ok(())
}

fn check_limits(
    name: &str,
    size: u64,
    compressed: u64,
    n: u64,
    limits: &IngestLimits,
    total: &AtomicU64,
) -> Result<()> {
    if size > (1 << 20) && size / compressed >= limits.max_compression_ratio {
        return Err(Error::TooLarge(format!(
            "member {name:?} inflates more than {}:1, over the compression ratio limit",
            limits.max_compression_ratio
        )));
    }
    let sum = total.fetch_add(n, Ordering::Relaxed) + n;
    if sum > limits.max_uncompressed_bytes {
        return Err(Error::TooLarge(format!(
            "the zip inflates to more than {} bytes (limit reached at member {name:?})",
            limits.max_uncompressed_bytes
        )));
    }
    Ok(())
}

/// The key a file's own identity gives it, for layout-free uploads.
pub fn auto_key(id: &Identity, file: &str) -> Result<MemberKey, String> {
    let no_id = || {
        format!(
            "this {} file carries no id of its own, so it cannot be placed by identity; \
             upload it in the <module>/<debug_id>/<file> layout",
            match id.kind {
                Kind::Unknown => "unrecognised",
                kind => kind.as_str(),
            }
        )
    };
    match id.kind {
        Kind::Pe => identity_key(file, id.code_id.as_deref().ok_or_else(no_id)?, file),
        Kind::Sym => {
            // Named as Breakpad clients ask for it, whatever the upload called it.
            let debug_file = id.debug_file.as_deref().ok_or_else(no_id)?;
            identity_key(
                debug_file,
                id.debug_id.as_deref().ok_or_else(no_id)?,
                &breakpad_sym_name(debug_file),
            )
        }
        Kind::Pdb | Kind::PortablePdb => {
            let ssqp = id
                .ids
                .first()
                .and_then(|r| r.ssqp_id.as_deref())
                .ok_or_else(no_id)?;
            identity_key(file, ssqp, file)
        }
        Kind::Elf | Kind::MachO | Kind::SourceMap | Kind::Js => {
            identity_key(file, id.debug_id.as_deref().ok_or_else(no_id)?, file)
        }
        Kind::Unknown => Err(no_id()),
    }
}

/// A file that names its own identity must agree with the path it was uploaded under.
pub(crate) fn check_identity(name: &str, key: &MemberKey, id: &Identity) -> Result<()> {
    if id.kind == Kind::Sym {
        let (file, did) = (
            id.debug_file.as_deref().unwrap_or(""),
            id.debug_id.as_deref().unwrap_or(""),
        );
        if !did.eq_ignore_ascii_case(key.debug_id()) {
            return Err(Error::invalid(
                name,
                format!(
                    "the MODULE line's debug id {did} does not match the path's debug id {}",
                    key.debug_id()
                ),
            ));
        }
        if normalize(file) != normalize(key.module()) {
            return Err(Error::invalid(
                name,
                format!(
                    "the MODULE line's debug file {file:?} does not match the path's module {:?}",
                    key.module()
                ),
            ));
        }
        return Ok(());
    }
    if !id.has_id() {
        return Ok(());
    }
    let mut accepted = id.debug_ids();
    accepted.extend(id.code_id.as_deref());
    accepted.extend(id.ids.iter().filter_map(|r| r.ssqp_id.as_deref()));
    if accepted
        .iter()
        .any(|a| a.eq_ignore_ascii_case(key.debug_id()))
    {
        return Ok(());
    }
    Err(Error::invalid(
        name,
        format!(
            "the path's debug id {} does not match the id embedded in this {} file ({})",
            key.debug_id(),
            id.kind,
            accepted.join(" or ")
        ),
    ))
}

/// Keeps one member per key: the same key twice with identical content is
/// processed once; with different content it rejects the zip.
fn dedupe(listing: &Listing, checked: Vec<Checked>) -> Result<Vec<Checked>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Checked> = Vec::with_capacity(checked.len());
    for c in checked {
        let norm = normalize(&c.key.key());
        match seen.get(&norm) {
            Some(&j) if out[j].hash == c.hash => {}
            Some(&j) => {
                return Err(Error::invalid(
                    listing.name(c.index),
                    format!(
                        "appears twice with different content (also as {:?})",
                        listing.name(out[j].index)
                    ),
                ));
            }
            None => {
                seen.insert(norm, out.len());
                out.push(c);
            }
        }
    }
    Ok(out)
}
