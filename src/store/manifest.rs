//! Upload manifests: with blobs on S3 the bucket outlives the index, so each
//! upload that committed members leaves `<s3_prefix>uploads/<id>.json`
//! beside the blobs, written after the index commit (an upload is answered
//! only once its manifest is kept). `symdepot reindex --from-bucket` reads
//! them back: keys and lookups are rebuilt (latest upload wins per key, as
//! the live index does), each upload's record comes back, and a new index
//! gives out upload ids after the highest one found. Losing the index then
//! loses tokens and the missing-symbols report, never a stored symbol.
//!
//! Local disk keeps no manifests: its layout tree is what `reindex` reads.

use std::io::Read;

use super::index::DbError;
use super::sql::{Conn, ConnExt};
use crate::sql_params;
use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};

use super::index::Namespace;
use super::{Encoding, NewKey, Progress, Store, normalize, upsert_key};
use crate::error::{Error, Result};
use crate::identity::{self, Identity, PREFIX_LEN};
use crate::keys::MemberKey;
use std::collections::BTreeMap;

/// The manifest format written; a reader refuses any other.
pub const FORMAT: u32 = 1;

/// One upload's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub upload: ManifestUpload,
    pub members: Vec<ManifestMember>,
}

/// The upload a manifest is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestUpload {
    pub id: i64,
    pub user: String,
    pub filename: Option<String>,
    pub try_symbols: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When the manifest was written (the upload's members were committed).
    pub written_at: i64,
}

/// A member the upload stored (or found already stored): everything its key
/// row holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestMember {
    pub key: String,
    pub namespace: String,
    /// `new`, `replaced` or `skipped` (already held exactly this content).
    pub outcome: String,
    pub blob: String,
    pub encoding: String,
    pub size: u64,
    pub stored_size: u64,
    pub kind: Option<String>,
    pub debug_file: Option<String>,
    pub debug_id: Option<String>,
    pub code_file: Option<String>,
    pub code_id: Option<String>,
    pub generator: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    /// The member's place in the index's commit order, and when it was
    /// committed (unix milliseconds): the later commit of a key wins a rebuild.
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub committed_at: Option<i64>,
}

/// The most a manifest may weigh (an upload holds at most `max_members`).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Upload ids a manifest may carry.
const MAX_UPLOAD_ID: i64 = 1 << 53;

/// What `reindex --from-bucket` did.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Keys in the rebuilt index.
    pub keys: u64,
    /// Upload records brought back.
    pub uploads: u64,
    /// Manifests or members left out, with why.
    pub skipped: Vec<(String, String)>,
}

impl Store {
    /// Keeps the manifest of an upload whose members are committed, where the
    /// blob store keeps manifests; nothing for an upload that committed none.
    /// An object store that fails is [`Error::Unavailable`]: the upload is
    /// not answered as done, and its retry (every member skipped) writes it.
    pub fn write_manifest(&self, upload_id: i64) -> Result<()> {
        if !self.blobs.keeps_manifests() {
            return Ok(());
        }
        let Some(manifest) = self.manifest_of(upload_id)? else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        self.blobs
            .put_manifest(upload_id, json)
            .map_err(|e| self.blob_error(e))?;
        self.db().writing(|c| {
            c.exec(
                "UPDATE uploads SET manifest_at = ?2 WHERE id = ?1",
                &sql_params![upload_id, super::now_ms()],
            )?;
            Ok(())
        })
    }

    /// Writes the manifests still owed: uploads that ended with members
    /// committed and no manifest kept (an object store that failed then), and
    /// uploads still `running` since before `stale_ms` (their process died
    /// between a commit and the manifest). GC runs it. Returns how many it wrote.
    pub fn write_owed_manifests(&self, stale_ms: i64) -> Result<usize> {
        if !self.blobs.keeps_manifests() {
            return Ok(0);
        }
        let owed: Vec<i64> = self.db().reading(|c| {
            let rows = c.rows(
                "SELECT u.id FROM uploads u WHERE u.manifest_at IS NULL \
                 AND (u.status <> 'running' OR u.created_at < ?1) \
                 AND EXISTS (SELECT 1 FROM upload_members m WHERE m.upload_id = u.id \
                 AND m.outcome IN ('new', 'replaced', 'skipped') AND m.namespace IS NOT NULL) \
                 ORDER BY u.id",
                &sql_params![stale_ms],
            )?;
            Ok(rows
                .iter()
                .map(|r| r.get(0))
                .collect::<std::result::Result<_, DbError>>()?)
        })?;
        for id in &owed {
            self.write_manifest(*id)?;
        }
        Ok(owed.len())
    }

    /// The manifest of an upload, from its record; `None` when it committed nothing.
    pub fn manifest_of(&self, upload_id: i64) -> Result<Option<Manifest>> {
        self.db().reading(|c| {
            let upload = c.row(
                "SELECT id, \"user\", filename, try_symbols, created_at FROM uploads WHERE id = ?1",
                &sql_params![upload_id],
            )?;
            let Some(u) = upload else {
                return Ok(None);
            };
            let upload = ManifestUpload {
                id: u.get(0)?,
                user: u.get(1)?,
                filename: u.get(2)?,
                try_symbols: u.get(3)?,
                created_at: u.get(4)?,
                written_at: super::now_ms(),
            };
            let rows = c.rows(
                "SELECT key, namespace, outcome, blake3, encoding, size, stored_size, kind, \
                 debug_file, debug_id, code_file, code_id, generator, os, arch, id, committed_at \
                 FROM upload_members WHERE upload_id = ?1 \
                 AND outcome IN ('new', 'replaced', 'skipped') \
                 AND namespace IS NOT NULL AND blake3 IS NOT NULL ORDER BY id",
                &sql_params![upload_id],
            )?;
            let members = rows
                .iter()
                .map(|r| {
                    Ok(ManifestMember {
                        key: r.get(0)?,
                        namespace: r.get(1)?,
                        outcome: r.get(2)?,
                        blob: r.get(3)?,
                        encoding: r.get(4)?,
                        size: r.get(5)?,
                        stored_size: r.get(6)?,
                        kind: r.get(7)?,
                        debug_file: r.get(8)?,
                        debug_id: r.get(9)?,
                        code_file: r.get(10)?,
                        code_id: r.get(11)?,
                        generator: r.get(12)?,
                        os: r.get(13)?,
                        arch: r.get(14)?,
                        seq: r.get(15)?,
                        committed_at: r.get(16)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, DbError>>()?;
            Ok((!members.is_empty()).then_some(Manifest {
                format: FORMAT,
                upload,
                members,
            }))
        })
    }

    /// Rebuilds `keys` and `lookup` from the upload manifests in the bucket
    /// and brings back each upload's record, all in one transaction: every
    /// manifest is read and checked and every file identified again from its
    /// stored bytes before anything changes. The latest commit of each key
    /// wins. A member whose blob is no longer in the bucket (deleted and
    /// collected) is left out; an object store that fails stops the rebuild
    /// with nothing changed. Refused while a daemon holds the data dir.
    /// `progress` counts the manifests read, then the files identified.
    pub fn reindex_from_bucket(&self, progress: &mut dyn Progress) -> Result<Rebuilt> {
        // No GC while the index is being refilled (it would take what is not yet back).
        let _maintenance = super::lock::MaintenanceLock::for_reindex(self.root())?;
        let _daemon = super::lock::DaemonLock::acquire(self.root())?;
        if !self.blobs.keeps_manifests() {
            return Err(Error::Refused(
                "reindex --from-bucket reads the upload manifests that only blob_store = s3 \
                 keeps; on local disk run symdepot reindex"
                    .into(),
            ));
        }
        // The index becomes that of the store whose blobs these are.
        self.check_bucket_owner(true)?;
        let mut out = Rebuilt::default();
        let manifests = self.read_manifests(&mut out, progress)?;
        if manifests.is_empty() && !self.blobs.is_empty().map_err(|e| self.blob_error(e))? {
            return Err(Error::Refused(
                "the bucket holds blobs but no readable upload manifest (uploads/<id>.json) \
                 under s3_prefix: nothing to rebuild from, and nothing was changed"
                    .into(),
            ));
        }
        // The latest commit of each key, as in the live index.
        let mut latest: BTreeMap<(String, String), (&Manifest, &ManifestMember)> = BTreeMap::new();
        for m in &manifests {
            for x in &m.members {
                let slot = (x.namespace.clone(), normalize(&x.key));
                let newer = latest
                    .get(&slot)
                    .is_none_or(|(pm, px)| commit_order(pm, px) <= commit_order(m, x));
                if newer {
                    latest.insert(slot, (m, x));
                }
            }
        }
        // The manifests read (kept or skipped), then the files to identify.
        progress.total((manifests.len() + out.skipped.len() + latest.len()) as u64);
        let mut rows = Vec::new();
        for (m, x) in latest.into_values() {
            match self.prepare_member(m, x)? {
                Ok(row) => rows.push(row),
                Err(why) => {
                    let what = format!("{} (upload {})", x.key, m.upload.id);
                    out.skipped.push((what, why));
                }
            }
            progress.step();
        }
        out.uploads = self.db().writing(|c| {
            super::wipe_keys(c)?;
            let mut uploads = 0;
            for m in &manifests {
                if restore_upload(c, m)? {
                    uploads += 1;
                }
            }
            if c.engine() == super::sql::Engine::Postgres {
                // Records came back with their ids: new ones are numbered after them.
                c.exec(
                    "SELECT setval(pg_get_serial_sequence('uploads', 'id'), \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM uploads), false)",
                    &[],
                )?;
            }
            for r in &rows {
                let new = NewKey {
                    namespace: r.namespace,
                    key: &r.key,
                    hash: &r.hash,
                    encoding: r.encoding,
                    size: r.size,
                    stored_size: r.stored_size,
                    identity: &r.identity,
                };
                upsert_key(c, Some(r.upload_id), &new, &normalize(&r.key), r.at)?;
            }
            Ok(uploads)
        })?;
        self.bump();
        out.keys = self.key_count()?;
        Ok(out)
    }

    /// Reads and checks every manifest in the bucket; those that are too
    /// large or unreadable go to `out.skipped`.
    fn read_manifests(
        &self,
        out: &mut Rebuilt,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Manifest>> {
        let names = self
            .blobs
            .manifest_names()
            .map_err(|e| self.blob_error(e))?;
        progress.total(names.len() as u64);
        let mut manifests = Vec::new();
        for (name, size) in names {
            match self.read_manifest(&name, size)? {
                Ok(m) => manifests.push(m),
                Err(why) => out.skipped.push((name, why)),
            }
            progress.step();
        }
        Ok(manifests)
    }

    /// One manifest, read and checked. The outer error is an outage; the
    /// inner one says why the manifest is left out.
    fn read_manifest(
        &self,
        name: &str,
        size: u64,
    ) -> Result<std::result::Result<Manifest, String>> {
        if size > MAX_MANIFEST_BYTES {
            return Ok(Err(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let bytes = self
            .blobs
            .get_manifest(name)
            .map_err(|e| self.blob_error(e))?;
        Ok(parse_manifest(name, &bytes))
    }

    /// Checks a member and identifies its stored file. The outer error is
    /// an outage (stop, change nothing); the inner one says why the member
    /// is left out.
    fn prepare_member(
        &self,
        m: &Manifest,
        x: &ManifestMember,
    ) -> Result<std::result::Result<Restored, String>> {
        let Some(ns) = Namespace::parse(&x.namespace) else {
            return Ok(Err(format!("unknown namespace {:?}", x.namespace)));
        };
        let enc = match x.encoding.as_str() {
            "identity" | "gzip" => Encoding::parse(&x.encoding),
            other => return Ok(Err(format!("unknown encoding {other:?}"))),
        };
        // The rule every stored key passed, however it was placed.
        let segs: Vec<&str> = x.key.split('/').collect();
        let parsed = match segs[..] {
            [module, id, file] => match MemberKey::new(module, id, file) {
                Ok(k) => k,
                Err(rule) => return Ok(Err(rule)),
            },
            _ => return Ok(Err("not a <module>/<debug_id>/<file> key".into())),
        };
        if let Err(e) = super::door::check_blob_name(&x.blob) {
            return Ok(Err(e.to_string()));
        }
        let Some(stored) = self
            .blobs
            .info(&x.blob, enc)
            .map_err(|e| self.blob_error(e))?
        else {
            return Ok(Err("its blob is no longer in the bucket".into()));
        };
        let key = parsed.key();
        let file = key.rsplit('/').next().unwrap_or(&key).to_string();
        let (identity, size) = match self.identify_blob(&x.blob, enc, &file) {
            Ok(found) => found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err("its blob is no longer in the bucket".into()));
            }
            // A gzip blob that does not inflate is damage, not an outage.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                ) =>
            {
                return Ok(Err(format!("its blob is damaged: {e}")));
            }
            Err(e) => return Err(self.blob_error(e)),
        };
        Ok(Ok(Restored {
            namespace: ns,
            key,
            hash: x.blob.clone(),
            encoding: enc,
            size,
            stored_size: stored.stored_size,
            identity,
            upload_id: m.upload.id,
            at: x.committed_at.unwrap_or(m.upload.written_at),
        }))
    }

    /// A stored blob's identity (read from its bytes, as at upload) and its
    /// inflated size.
    pub(crate) fn identify_blob(
        &self,
        hash: &str,
        enc: Encoding,
        file_name: &str,
    ) -> std::io::Result<(Identity, u64)> {
        let f = self.blobs.open(hash, enc)?;
        match enc {
            Encoding::Identity => {
                let size = f.metadata()?.len();
                Ok((identity::identify(f, file_name), size))
            }
            Encoding::Gzip => {
                let mut gz = GzDecoder::new(f);
                let mut prefix = Vec::new();
                (&mut gz).take(PREFIX_LEN as u64).read_to_end(&mut prefix)?;
                let rest = std::io::copy(&mut gz, &mut std::io::sink())?;
                Ok((
                    identity::identify_bytes(&prefix, file_name),
                    prefix.len() as u64 + rest,
                ))
            }
        }
    }
}

/// A member checked and identified, ready to be indexed again.
struct Restored {
    namespace: Namespace,
    key: String,
    hash: String,
    encoding: Encoding,
    size: u64,
    stored_size: u64,
    identity: Identity,
    upload_id: i64,
    at: i64,
}

/// Where a member's commit falls in the index's history: by time, then by
/// upload and commit sequence.
fn commit_order(m: &Manifest, x: &ManifestMember) -> (i64, i64, i64) {
    (
        x.committed_at.unwrap_or(m.upload.written_at),
        m.upload.id,
        x.seq,
    )
}

/// A manifest read back and checked: its format, its upload id (the one its
/// name carries, within bounds) and numbers the index can hold.
fn parse_manifest(name: &str, bytes: &[u8]) -> std::result::Result<Manifest, String> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    if m.format != FORMAT {
        return Err(format!("manifest format {} is unknown", m.format));
    }
    let named: Option<i64> = name.split('.').next().and_then(|id| id.parse().ok());
    if named != Some(m.upload.id) || !(1..=MAX_UPLOAD_ID).contains(&m.upload.id) {
        return Err(format!(
            "upload id {} does not match the manifest's name or is out of range",
            m.upload.id
        ));
    }
    let too_big = |n: u64| i64::try_from(n).is_err();
    if m.members
        .iter()
        .any(|x| too_big(x.size) || too_big(x.stored_size))
    {
        return Err("a member's size is out of range".into());
    }
    Ok(m)
}

/// Brings back an upload's record and members, unless the index has one of
/// that id. Returns whether it did.
fn restore_upload(c: &mut dyn Conn, m: &Manifest) -> Result<bool> {
    let u = &m.upload;
    let added = c.exec(
        "INSERT INTO uploads (id, \"user\", filename, try_symbols, status, http_status, \
         files_count, created_at, completed_at, manifest_at) \
         VALUES (?1, ?2, ?3, ?4, 'complete', 201, ?5, ?6, ?7, ?7) ON CONFLICT DO NOTHING",
        &sql_params![
            u.id,
            &u.user,
            u.filename.as_deref(),
            u.try_symbols,
            m.members.len(),
            u.created_at,
            u.written_at
        ],
    )?;
    if added == 1 {
        for x in &m.members {
            c.exec(
                "INSERT INTO upload_members (upload_id, key, outcome, size, stored_size, blake3, \
                 debug_file, debug_id, code_file, code_id, generator, namespace, encoding, kind, \
                 os, arch, committed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
                 ?12, ?13, ?14, ?15, ?16, ?17)",
                &sql_params![
                    u.id,
                    &x.key,
                    &x.outcome,
                    x.size,
                    x.stored_size,
                    &x.blob,
                    x.debug_file.as_deref(),
                    x.debug_id.as_deref(),
                    x.code_file.as_deref(),
                    x.code_id.as_deref(),
                    x.generator.as_deref(),
                    &x.namespace,
                    &x.encoding,
                    x.kind.as_deref(),
                    x.os.as_deref(),
                    x.arch.as_deref(),
                    x.committed_at
                ],
            )?;
        }
    }
    Ok(added == 1)
}
