//! One bucket prefix, one store. GC deletes every blob its index does not
//! name, so two stores given the same bucket and `s3_prefix` would collect
//! each other's blobs. The first store to open a prefix records its id in
//! `<prefix>store.json` and in its index (`store_meta`); a store whose index
//! holds another id, or none while the prefix is taken, refuses to open.

use super::sql::ConnExt;
use super::{Store, random_hex};
use crate::error::{Error, Result};
use crate::sql_params;

impl Store {
    /// Checks (and on first use records) that the bucket prefix is this
    /// store's; `adopt` (for `reindex --from-bucket`) makes this index that
    /// of the store whose blobs are there. Nothing to check on local disk.
    pub(crate) fn check_bucket_owner(&self, adopt: bool) -> Result<()> {
        let Some(s3) = self.settings.s3.as_ref() else {
            return Ok(());
        };
        // The bucket first, then the index: a new store's id is written to
        // the index before the bucket (below), so a daemon of the same store
        // starting at the same moment that finds the bucket claimed finds the
        // index claimed too.
        let theirs = self.blobs.owner().map_err(|e| self.blob_error(e))?;
        let ours = self.store_id()?;
        match (ours, theirs) {
            (Some(a), Some(b)) if a == b => Ok(()),
            // A prefix emptied or moved: this store's again.
            (Some(a), None) => self.blobs.set_owner(&a).map_err(|e| self.blob_error(e)),
            (None, None) => {
                // Daemons of one new store starting together: the first id
                // into the shared index wins, and every one of them writes
                // that one to the bucket.
                let id = self.claim_store_id(&random_hex(16))?;
                self.blobs.set_owner(&id).map_err(|e| self.blob_error(e))
            }
            (None, Some(b)) if adopt => self.set_store_id(&b),
            (ours, Some(b)) => Err(Error::Refused(format!(
                "bucket {:?} under s3_prefix {:?} holds the blobs of another store (id {b}; this \
                 index is {}): two stores sharing a bucket and prefix would collect each other's \
                 blobs. Give this store its own s3_prefix, or, if this index should be that \
                 store's (lost or restored), run `symdepot reindex --from-bucket`",
                s3.bucket,
                s3.prefix,
                ours.map_or_else(|| "new".to_string(), |a| format!("store {a}")),
            ))),
        }
    }

    pub(super) fn store_id(&self) -> Result<Option<String>> {
        self.meta("store_id")
    }

    /// Records `id` as the store's unless it has one already; answers the
    /// store's id either way.
    fn claim_store_id(&self, id: &str) -> Result<String> {
        self.db().writing(|c| {
            c.exec(
                "INSERT INTO store_meta (name, value) VALUES ('store_id', ?1) \
                 ON CONFLICT (name) DO NOTHING",
                &sql_params![id],
            )?;
            let row = c.one("SELECT value FROM store_meta WHERE name = 'store_id'", &[])?;
            Ok(row)
        })
    }

    pub(super) fn set_store_id(&self, id: &str) -> Result<()> {
        self.set_meta("store_id", id)
    }

    /// A fact about the store itself (`store_meta`).
    pub(super) fn meta(&self, name: &str) -> Result<Option<String>> {
        self.db().reading(|c| {
            let row = c.row(
                "SELECT value FROM store_meta WHERE name = ?1",
                &sql_params![name],
            )?;
            Ok(row.map(|r| r.get(0)).transpose()?)
        })
    }

    pub(super) fn delete_meta(&self, name: &str) -> Result<()> {
        self.db().writing(|c| {
            c.exec("DELETE FROM store_meta WHERE name = ?1", &sql_params![name])?;
            Ok(())
        })
    }

    pub(super) fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.db().writing(|c| {
            c.exec(
                "INSERT INTO store_meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &sql_params![name, value],
            )?;
            Ok(())
        })
    }
}
