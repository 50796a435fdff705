//! In-memory caches on the download path, so that a hot hit costs no
//! SQLite query and no file read (benchmarks.md, figure 1).
//!
//! - [`LookupCache`]: what a lookup found (a prepared hit, a redirect, or nothing),
//!   tagged with the store's write generation: any commit, delete, expiry or
//!   reindex in this process (or announced by another daemon of the store)
//!   makes every entry stale at once. Entries also expire after
//!   `lookup_cache_ttl` (default 2 s), which bounds how long a change made by
//!   another process (the command line, a lost announcement) goes unseen.
//! - [`BlobCache`]: the stored bytes of small blobs. Blobs are content-
//!   addressed and never change, so entries never go stale; the cache is
//!   bounded in bytes and evicts the least recently used.
//!
//! The lookup cache is generic over what a hit is prepared as (the download
//! path's `Hit`), so this module depends on no handler.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

use crate::store::{Encoding, KeyRow};

/// Blobs up to this size are kept in memory.
pub const SMALL_BLOB: u64 = 256 * 1024;

/// What a three-segment lookup found: a stored key prepared as an `H`, the
/// key of a code-id redirect, or nothing.
#[derive(Debug)]
pub enum Found<H> {
    Key(Arc<H>),
    Redirect(Arc<KeyRow>),
    Miss,
}

// Not derived: cloning shares the `Arc`s and asks nothing of `H`.
impl<H> Clone for Found<H> {
    fn clone(&self) -> Self {
        match self {
            Found::Key(hit) => Found::Key(hit.clone()),
            Found::Redirect(row) => Found::Redirect(row.clone()),
            Found::Miss => Found::Miss,
        }
    }
}

/// A cached lookup: the store generation, when, and what was found.
type Entry<H> = (u64, Instant, Found<H>);

/// Lookup results by lookup key: one map for release-only lookups and one
/// for lookups that include try files, so a probe borrows the key and
/// allocates nothing.
#[derive(Debug)]
pub struct LookupCache<H> {
    maps: Mutex<[LruCache<String, Entry<H>>; 2]>,
    ttl: Duration,
}

impl<H> LookupCache<H> {
    /// A cache of at most `entries` lookups of each kind, each trusted for `ttl`.
    pub fn new(entries: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(entries.max(1)).expect("at least one");
        LookupCache {
            maps: Mutex::new([LruCache::new(cap), LruCache::new(cap)]),
            ttl,
        }
    }

    /// A fresh entry for this key at this store generation.
    pub fn get(&self, key: &str, include_try: bool, generation: u64) -> Option<Found<H>> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let map = &mut maps[usize::from(include_try)];
        match map.get(key) {
            Some((g, at, found)) if *g == generation && at.elapsed() < self.ttl => {
                Some(found.clone())
            }
            Some(_) => {
                map.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: &str, include_try: bool, generation: u64, found: Found<H>) {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps[usize::from(include_try)].put(key.to_string(), (generation, Instant::now(), found));
    }
}

/// A blob's BLAKE3 and how its bytes are kept.
pub type BlobId = ([u8; 32], Encoding);

/// Bytes by blob, and their total.
type Blobs = (LruCache<BlobId, Bytes>, u64);

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

    pub fn get(&self, id: &BlobId) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get(id).cloned()
    }

    pub fn put(&self, id: BlobId, bytes: Bytes) {
        if bytes.len() as u64 > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let len = bytes.len() as u64;
        if let Some(old) = inner.0.put(id, bytes) {
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
        let c = LookupCache::<()>::new(10, Duration::from_secs(3600));
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
        let (a, b, big) = (
            ([1; 32], Encoding::Gzip),
            ([2; 32], Encoding::Gzip),
            ([3; 32], Encoding::Identity),
        );
        c.put(a, Bytes::from_static(b"123456"));
        c.put(b, Bytes::from_static(b"123456"));
        assert!(c.get(&a).is_none(), "the least recently used went");
        assert_eq!(c.get(&b).as_deref(), Some(&b"123456"[..]));
        assert!(
            c.get(&([2; 32], Encoding::Identity)).is_none(),
            "encodings are kept apart"
        );
        c.put(big, Bytes::from_static(b"more than ten bytes"));
        assert!(c.get(&big).is_none());
    }
}
