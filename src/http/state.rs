//! What every handler can reach: the store, the request path's settings, the
//! limits uploads are checked against, and the in-memory
//! state of the request path (uploads in flight, missing symbols not yet
//! written, metrics, the download path's caches).

use std::sync::Arc;

use crate::http::cache;
use crate::http::hit::Hit;
use crate::settings::{HttpSettings, IngestLimits};
use crate::store::Store;

/// `/stackwalk` walks at once; more wait their turn.
pub const STACKWALKS_AT_ONCE: usize = 2;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<Store>,
    /// What the request path reads, parsed once.
    pub http: HttpSettings,
    /// What uploads are checked against.
    pub ingest: IngestLimits,
    /// Download misses not yet written to the index.
    pub missing: crate::store::missing::MissingLog,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Recent lookups of the download path.
    pub lookups: cache::LookupCache<Hit>,
    /// Bytes of small blobs.
    pub blob_cache: cache::BlobCache,
    /// The upstreams asked on a miss.
    pub mirror: crate::http::mirror::Mirror,
    /// Fetched files served since the last flush.
    pub cache_access: crate::store::access::AccessLog,
    /// Parsed `.sym` files for symbolication.
    pub symbols: crate::symbolicate::cache::SymbolCache,
    /// Turns of `/stackwalk`.
    pub stackwalks: tokio::sync::Semaphore,
    /// Makes missing `.sym` files from stored debug files.
    pub gensym: crate::symbolicate::gensym::SymGenerator,
}

impl AppState {
    pub fn new(store: Arc<Store>, http: HttpSettings, ingest: IngestLimits) -> Arc<AppState> {
        let lookup_ttl = http.lookup_cache_ttl;
        let metrics = crate::metrics::Metrics::new();
        let gensym = crate::symbolicate::gensym::SymGenerator::new(
            http.max_sym_generations,
            http.max_sym_generation_bytes,
        );
        let symbols = crate::symbolicate::cache::SymbolCache::new(
            http.symbolication_cache_bytes,
            metrics.symbol_files_parsed.clone(),
        );
        let mirror = crate::http::mirror::Mirror::new(
            http.upstreams.clone(),
            store.clone(),
            ingest.clone(),
            http.max_upload_bytes,
            metrics.upstreams.clone(),
        );
        Arc::new(AppState {
            missing: crate::store::missing::MissingLog::new(store.settings().missing_max_rows),
            store,
            http,
            ingest,
            metrics,
            lookups: cache::LookupCache::new(100_000, lookup_ttl),
            blob_cache: cache::BlobCache::new(64 << 20),
            mirror,
            cache_access: Default::default(),
            symbols,
            stackwalks: tokio::sync::Semaphore::new(STACKWALKS_AT_ONCE),
            gensym,
        })
    }
}
