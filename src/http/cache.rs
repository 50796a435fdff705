//! In-memory caches on the download path, so that a hot hit costs no
//! SQLite query and no file read (benchmarks.md, figure 1).
//!
//! - [`LookupCache`]: what a lookup found (a row, a redirect, or nothing),
//!   tagged with the store's write generation: any commit, delete, expiry or
//!   reindex in this process makes every entry stale at once. Entries also
//!   expire after [`LOOKUP_TTL`], which bounds how long a change made by
//!   another process (the command line) goes unseen.
//! - [`BlobCache`]: the stored bytes of small blobs. Blobs are content-
//!   addressed and never change, so entries never go stale; the cache is
//!   bounded in bytes and evicts the least recently used.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

use crate::store::KeyRow;

/// How long a cached lookup is trusted without a write in this process.
pub const LOOKUP_TTL: Duration = Duration::from_secs(2);

/// Blobs up to this size are kept in memory.
pub const SMALL_BLOB: u64 = 256 * 1024;

/// What a three-segment lookup found.
#[derive(Debug, Clone)]
pub enum Found {
    Key(Arc<KeyRow>),
    Redirect(Arc<KeyRow>),
    Miss,
}

/// A cached lookup: the store generation, when, and what was found.
type Entry = (u64, Instant, Found);

/// Lookup results by (lookup key, include try).
#[derive(Debug)]
pub struct LookupCache {
    map: Mutex<LruCache<(String, bool), Entry>>,
}

impl LookupCache {
    pub fn new(entries: usize) -> Self {
        let cap = NonZeroUsize::new(entries.max(1)).expect("at least one");
        LookupCache {
            map: Mutex::new(LruCache::new(cap)),
        }
    }

    /// A fresh entry for this key at this store generation.
    pub fn get(&self, key: &str, include_try: bool, generation: u64) -> Option<Found> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let k = (key.to_string(), include_try);
        match map.get(&k) {
            Some((g, at, found)) if *g == generation && at.elapsed() < LOOKUP_TTL => {
                Some(found.clone())
            }
            Some(_) => {
                map.pop(&k);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: &str, include_try: bool, generation: u64, found: Found) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.put(
            (key.to_string(), include_try),
            (generation, Instant::now(), found),
        );
    }
}

/// Bytes by (hash, encoding), and their total.
type Blobs = (LruCache<(String, String), Bytes>, u64);

/// Stored bytes of small blobs by (hash, encoding), bounded in total bytes.
#[derive(Debug)]
pub struct BlobCache {
    inner: Mutex<Blobs>,
    max_bytes: u64,
}

impl BlobCache {
    pub fn new(max_bytes: u64) -> Self {
        BlobCache {
            inner: Mutex::new((LruCache::unbounded(), 0)),
            max_bytes,
        }
    }

    pub fn get(&self, hash: &str, encoding: &str) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .0
            .get(&(hash.to_string(), encoding.to_string()))
            .cloned()
    }

    pub fn put(&self, hash: &str, encoding: &str, bytes: Bytes) {
        if bytes.len() as u64 > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let len = bytes.len() as u64;
        if let Some(old) = inner.0.put((hash.to_string(), encoding.to_string()), bytes) {
            inner.1 -= old.len() as u64;
        }
        inner.1 += len;
        while inner.1 > self.max_bytes {
            match inner.0.pop_lru() {
                Some((_, b)) => inner.1 -= b.len() as u64,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_go_stale_with_a_new_generation() {
        let c = LookupCache::new(10);
        c.put("a/b/c", false, 1, Found::Miss);
        assert!(matches!(c.get("a/b/c", false, 1), Some(Found::Miss)));
        assert!(c.get("a/b/c", true, 1).is_none());
        assert!(c.get("a/b/c", false, 2).is_none());
        assert!(
            c.get("a/b/c", false, 1).is_none(),
            "a stale entry is dropped"
        );
    }

    #[test]
    fn blobs_are_bounded_in_bytes() {
        let c = BlobCache::new(10);
        c.put("a", "gzip", Bytes::from_static(b"123456"));
        c.put("b", "gzip", Bytes::from_static(b"123456"));
        assert!(c.get("a", "gzip").is_none(), "the least recently used went");
        assert_eq!(c.get("b", "gzip").as_deref(), Some(&b"123456"[..]));
        c.put(
            "big",
            "identity",
            Bytes::from_static(b"more than ten bytes"),
        );
        assert!(c.get("big", "identity").is_none());
    }
}
