//! Parsed `.sym` files, kept in memory up to a number of bytes (the files'
//! sizes), least recently used out first, and parsed once however many
//! requests wait for the same file.
//!
//! Entries are named by blob: a key uploaded again with other content is
//! another entry, never a stale one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use breakpad_symbols::SymbolFile;

use crate::store::{KeyRow, Store};

/// A parse in progress, awaited by every request that needs the same file.
type Parsing = Arc<tokio::sync::OnceCell<Arc<SymbolFile>>>;

/// Parsed `.sym` files by blob, bounded by `max_bytes` of `.sym` text.
pub struct SymbolCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    /// Counts each parse (`/metrics`).
    parsed: prometheus_client::metrics::counter::Counter,
}

struct Inner {
    lru: lru::LruCache<String, (Arc<SymbolFile>, u64)>,
    bytes: u64,
    parsing: HashMap<String, Parsing>,
    parses: u64,
}

impl std::fmt::Debug for SymbolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("SymbolCache")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &inner.bytes)
            .field("files", &inner.lru.len())
            .finish()
    }
}

impl SymbolCache {
    pub fn new(
        max_bytes: u64,
        parsed: prometheus_client::metrics::counter::Counter,
    ) -> SymbolCache {
        SymbolCache {
            max_bytes,
            parsed,
            inner: Mutex::new(Inner {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                parsing: HashMap::new(),
                parses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many files were parsed since the start.
    pub fn parses(&self) -> u64 {
        self.lock().parses
    }

    /// The parsed symbols of the `.sym` key `row`: from memory, or parsed on a
    /// blocking thread (once, whoever else waits for it).
    pub async fn get(&self, store: &Arc<Store>, row: &KeyRow) -> crate::Result<Arc<SymbolFile>> {
        let cell = {
            let mut inner = self.lock();
            if let Some((sym, _)) = inner.lru.get(&row.blob) {
                return Ok(sym.clone());
            }
            inner.parsing.entry(row.blob.clone()).or_default().clone()
        };
        // The parse runs on a task of its own: a request that goes away does
        // not abandon it half way (the next one would start it again).
        let (store2, row2, cell2) = (store.clone(), row.clone(), cell.clone());
        let parsing = tokio::spawn(async move {
            cell2
                .get_or_try_init(|| async move {
                    tokio::task::spawn_blocking(move || parse(&store2, &row2))
                        .await
                        .map_err(|e| crate::Error::Io(std::io::Error::other(e)))?
                })
                .await
                .cloned()
        });
        let parsed = parsing
            .await
            .unwrap_or_else(|e| Err(crate::Error::Io(std::io::Error::other(e))));
        let mut inner = self.lock();
        if let Some(c) = inner.parsing.get(&row.blob)
            && Arc::ptr_eq(c, &cell)
        {
            inner.parsing.remove(&row.blob);
            if let Ok(sym) = &parsed {
                inner.parses += 1;
                self.parsed.inc();
                if row.size <= self.max_bytes {
                    inner.bytes += row.size;
                    inner.lru.put(row.blob.clone(), (sym.clone(), row.size));
                    while inner.bytes > self.max_bytes {
                        match inner.lru.pop_lru() {
                            Some((_, (_, size))) => inner.bytes -= size,
                            None => break,
                        }
                    }
                }
            }
        }
        parsed
    }
}

/// Parses a stored `.sym` as it is read (never whole in memory).
fn parse(store: &Store, row: &KeyRow) -> crate::Result<Arc<SymbolFile>> {
    let reader = store.open_original(row).map_err(|e| store.blob_error(e))?;
    let sym = SymbolFile::parse(reader, |_| ()).map_err(|e| {
        crate::Error::invalid(&row.key, format!("the stored .sym does not parse: {e}"))
    })?;
    Ok(Arc::new(sym))
}
