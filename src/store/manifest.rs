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

use flate2::read::GzDecoder;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::index::Namespace;
use super::{Encoding, NewKey, Store, normalize, upsert_key};
use crate::error::{Error, Result};
use crate::identity::{self, Identity, PREFIX_LEN};
use crate::keys::{MemberName, classify_member};

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
}

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
            .map_err(|e| self.blob_error(e))
    }

    /// The manifest of an upload, from its record; `None` when it committed nothing.
    pub fn manifest_of(&self, upload_id: i64) -> Result<Option<Manifest>> {
        self.db().read(|c| {
            let upload = c
                .query_row(
                    "SELECT id, user, filename, try_symbols, created_at FROM uploads WHERE id = ?1",
                    [upload_id],
                    |r| {
                        Ok(ManifestUpload {
                            id: r.get(0)?,
                            user: r.get(1)?,
                            filename: r.get(2)?,
                            try_symbols: r.get(3)?,
                            created_at: r.get(4)?,
                            written_at: super::now_ms(),
                        })
                    },
                )
                .optional()?;
            let Some(upload) = upload else {
                return Ok(None);
            };
            let mut stmt = c.prepare(
                "SELECT key, namespace, outcome, blake3, encoding, size, stored_size, kind, \
                 debug_file, debug_id, code_file, code_id, generator, os, arch \
                 FROM upload_members WHERE upload_id = ?1 \
                 AND outcome IN ('new', 'replaced', 'skipped') \
                 AND namespace IS NOT NULL AND blake3 IS NOT NULL ORDER BY id",
            )?;
            let members = stmt
                .query_map([upload_id], |r| {
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
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((!members.is_empty()).then_some(Manifest {
                format: FORMAT,
                upload,
                members,
            }))
        })
    }

    /// Rebuilds `keys` and `lookup` from the upload manifests in the bucket,
    /// oldest upload first, and brings back each upload's record. A member
    /// whose blob is no longer in the bucket (deleted and collected) is left
    /// out; every file is identified again from its stored bytes.
    pub fn reindex_from_bucket(&self) -> Result<Rebuilt> {
        // No GC while the index is being refilled (it would take what is not yet back).
        let _maintenance = super::lock::MaintenanceLock::for_reindex(self.root())?;
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
        let mut manifests = Vec::new();
        for name in self
            .blobs
            .manifest_names()
            .map_err(|e| self.blob_error(e))?
        {
            let bytes = self
                .blobs
                .get_manifest(&name)
                .map_err(|e| self.blob_error(e))?;
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) if m.format == FORMAT => manifests.push(m),
                Ok(m) => out
                    .skipped
                    .push((name, format!("manifest format {} is unknown", m.format))),
                Err(e) => out.skipped.push((name, format!("not a manifest: {e}"))),
            }
        }
        manifests.sort_by_key(|m| (m.upload.id, m.upload.written_at));
        self.db()
            .writer()
            .execute_batch("DELETE FROM lookup; DELETE FROM keys;")?;
        self.bump();
        // The latest upload of each key wins, as in the live index.
        let mut latest = std::collections::BTreeMap::new();
        for m in &manifests {
            if self.restore_upload(m)? {
                out.uploads += 1;
            }
            for member in &m.members {
                latest.insert(
                    (member.namespace.as_str(), normalize(&member.key)),
                    (m, member),
                );
            }
        }
        for (m, member) in latest.into_values() {
            if let Err(why) = self.restore_member(m, member) {
                let what = format!("{} (upload {})", member.key, m.upload.id);
                out.skipped.push((what, why));
            }
        }
        self.bump();
        out.keys = self
            .db()
            .read(|c| c.query_row("SELECT COUNT(*) FROM keys", [], |r| r.get(0)))?;
        Ok(out)
    }

    /// Brings back an upload's record and members, unless the index has one
    /// of that id. Returns whether it did.
    fn restore_upload(&self, m: &Manifest) -> Result<bool> {
        let mut conn = self.db().writer();
        let tx = conn.transaction()?;
        let u = &m.upload;
        let added = tx.execute(
            "INSERT OR IGNORE INTO uploads (id, user, filename, try_symbols, status, http_status, \
             files_count, created_at, completed_at) VALUES (?1, ?2, ?3, ?4, 'complete', 201, ?5, ?6, ?7)",
            params![
                u.id,
                u.user,
                u.filename,
                u.try_symbols,
                m.members.len(),
                u.created_at,
                u.written_at
            ],
        )?;
        if added == 1 {
            let mut stmt = tx.prepare(
                "INSERT INTO upload_members (upload_id, key, outcome, size, stored_size, blake3, \
                 debug_file, debug_id, code_file, code_id, generator, namespace, encoding, kind, \
                 os, arch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16)",
            )?;
            for x in &m.members {
                stmt.execute(params![
                    u.id,
                    x.key,
                    x.outcome,
                    x.size,
                    x.stored_size,
                    x.blob,
                    x.debug_file,
                    x.debug_id,
                    x.code_file,
                    x.code_id,
                    x.generator,
                    x.namespace,
                    x.encoding,
                    x.kind,
                    x.os,
                    x.arch
                ])?;
            }
        }
        tx.commit()?;
        Ok(added == 1)
    }

    /// Indexes one manifest member again, checked as an upload's member is.
    fn restore_member(&self, m: &Manifest, x: &ManifestMember) -> std::result::Result<(), String> {
        let ns = Namespace::parse(&x.namespace)
            .ok_or_else(|| format!("unknown namespace {:?}", x.namespace))?;
        let enc = match x.encoding.as_str() {
            "identity" | "gzip" => Encoding::parse(&x.encoding),
            other => return Err(format!("unknown encoding {other:?}")),
        };
        let parsed = match classify_member(x.key.as_bytes(), false) {
            Ok(MemberName::Key(parsed)) => parsed,
            Ok(MemberName::Ignored) => return Err("ignored by the member rules".into()),
            Err(rule) => return Err(rule),
        };
        super::door::check_blob_name(&x.blob).map_err(|e| e.to_string())?;
        let stored = self
            .blobs
            .info(&x.blob, enc)
            .map_err(|e| format!("the object store failed: {e}"))?;
        let Some(stored) = stored else {
            return Err("its blob is no longer in the bucket".into());
        };
        let key = parsed.key();
        let file = key.rsplit('/').next().unwrap_or(&key).to_string();
        let (identity, size) = self
            .identify_blob(&x.blob, enc, &file)
            .map_err(|e| format!("unreadable: {e}"))?;
        let new = NewKey {
            namespace: ns,
            key: &key,
            hash: &x.blob,
            encoding: enc,
            size,
            stored_size: stored.stored_size,
            identity: &identity,
        };
        let mut conn = self.db().writer();
        let tx = conn
            .transaction()
            .map_err(|e| format!("the index failed: {e}"))?;
        upsert_key(
            &tx,
            Some(m.upload.id),
            &new,
            &normalize(&key),
            m.upload.written_at,
        )
        .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| format!("the index failed: {e}"))?;
        Ok(())
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
