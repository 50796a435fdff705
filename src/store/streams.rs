//! Zip members' compressed streams already read: the blob each inflates to
//! and the identity read from it (migration 13). A member's stream is named by
//! BLAKE3 over its compression method, CRC-32, sizes and compressed bytes;
//! inflating is deterministic, so a stream seen before inflates to the same
//! blob, and a re-upload can skip an unchanged member without inflating it.
//! Rows are written only for streams that were inflated and hashed whole.
//! GC drops rows whose blob no key names.

use std::collections::HashMap;

use super::Store;
use super::index::now_ms;
use crate::error::Result;
use crate::identity::Identity;
use crate::sql_params;

/// What a known stream inflates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownStream {
    pub blob: String,
    pub identity: Identity,
}

impl Store {
    /// The known streams among `streams`. A row whose identity no longer
    /// reads (an older form) is left out: its member is inflated again.
    pub fn known_streams(&self, streams: &[String]) -> Result<HashMap<String, KnownStream>> {
        if streams.is_empty() {
            return Ok(HashMap::new());
        }
        self.db().reading(|c| {
            let mut known = HashMap::new();
            for stream in streams {
                let rows = c.rows(
                    "SELECT blob, identity FROM member_streams WHERE stream = ?1",
                    &sql_params![stream.as_str()],
                )?;
                let Some(row) = rows.first() else { continue };
                let (blob, identity): (String, String) = (row.get(0)?, row.get(1)?);
                if let Ok(identity) = serde_json::from_str(&identity) {
                    known.insert(stream.clone(), KnownStream { blob, identity });
                }
            }
            Ok(known)
        })
    }

    /// Remembers streams read whole: (stream, blob, identity), in one transaction.
    pub fn remember_streams(&self, read: &[(String, String, Identity)]) -> Result<()> {
        if read.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        self.db().writing(|c| {
            for (stream, blob, identity) in read {
                let identity = serde_json::to_string(identity)
                    .map_err(|e| crate::Error::Io(std::io::Error::other(e)))?;
                c.exec(
                    "INSERT INTO member_streams (stream, blob, identity, created_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    &sql_params![stream.as_str(), blob.as_str(), identity, now],
                )?;
            }
            Ok(())
        })
    }

    /// Forgets streams whose blob no key names (part of GC).
    pub(crate) fn forget_orphan_streams(&self) -> Result<u64> {
        self.db().writing(|c| {
            Ok(c.exec(
                "DELETE FROM member_streams WHERE NOT EXISTS \
                 (SELECT 1 FROM keys k WHERE k.blob = member_streams.blob)",
                &[],
            )?)
        })
    }
}
