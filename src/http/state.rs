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

/// `/symbolicate` requests answered at once (each may hold its body, its
/// jobs and up to `symbolicate::MAX_ANSWER_BYTES` of answer); others wait.
pub const SYMBOLICATIONS_AT_ONCE: usize = 4;

/// Memory kept for symbolication answers and stack walks waiting for their
/// clients (a client that reads slowly, or not at all, holds its share).
pub const ANSWER_ROOM: usize = 256 << 20;

/// The longest a request waits for its turn (503 with `Retry-After` after).
pub const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// Turns of `/symbolicate` (the API and its page).
    pub symbolications: tokio::sync::Semaphore,
    /// [`ANSWER_ROOM`] in KiB.
    pub answer_room: Arc<tokio::sync::Semaphore>,
    /// Makes missing `.sym` files from stored debug files.
    pub gensym: crate::symbolicate::gensym::SymGenerator,
    /// Turns of the download path's index lookups on the blocking pool.
    pub lookup_turns: tokio::sync::Semaphore,
}

/// Index lookups of the download path that run at once: one per core and one
/// more (for a lookup waiting on a page of the index from disk). More only
/// queue on the cores as threads, each handed over with a futex wake, and need
/// more SQLite connections than the pool keeps (opened and closed per
/// request): with 32 connections of cache misses on 2 cores, 4 at once gave a
/// p99 of 6–7 ms, 3 at once 3.5 ms, unbounded 12 ms. A lookup waiting for its
/// turn waits as a task, not a thread.
fn lookups_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
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
            symbolications: tokio::sync::Semaphore::new(SYMBOLICATIONS_AT_ONCE),
            answer_room: Arc::new(tokio::sync::Semaphore::new(ANSWER_ROOM >> 10)),
            lookup_turns: tokio::sync::Semaphore::new(lookups_at_once()),
            gensym,
        })
    }
}

/// A turn of `turns` for a request of `what`, waited for at most
/// [`TURN_WAIT`]; a 503 with `Retry-After` when none came (or at shutdown).
pub async fn turn<'a>(
    turns: &'a tokio::sync::Semaphore,
    what: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, crate::Error> {
    match tokio::time::timeout(TURN_WAIT, turns.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(crate::Error::Unavailable("shutting down".into())),
        Err(_) => Err(crate::Error::Unavailable(format!(
            "too many {what} at once; try again later"
        ))),
    }
}

/// Room for an answer of `bytes` waiting for its client, out of
/// [`ANSWER_ROOM`], waited for at most [`TURN_WAIT`] (a 503 after).
pub async fn answer_room(
    state: &AppState,
    bytes: usize,
) -> Result<tokio::sync::OwnedSemaphorePermit, crate::Error> {
    let kib = u32::try_from((bytes >> 10).clamp(1, ANSWER_ROOM >> 10)).unwrap_or(u32::MAX);
    let room = state.answer_room.clone().acquire_many_owned(kib);
    match tokio::time::timeout(TURN_WAIT, room).await {
        Ok(Ok(room)) => Ok(room),
        Ok(Err(_)) => Err(crate::Error::Unavailable("shutting down".into())),
        Err(_) => Err(crate::Error::Unavailable(
            "too many answers are waiting for their clients; try again later".into(),
        )),
    }
}

/// `resp`, an answer of about `len` bytes, sent once there is room for it
/// in the memory kept for answers waiting for their clients (a 503 when
/// there is none in time).
pub async fn held(
    state: &AppState,
    resp: http::Response<crate::http::body::Body>,
    len: usize,
) -> http::Response<crate::http::body::Body> {
    match answer_room(state, len).await {
        Ok(room) => {
            let (parts, inner) = resp.into_parts();
            http::Response::from_parts(parts, crate::http::body::holding(inner, room))
        }
        Err(e) => crate::http::error::json_error(&e),
    }
}
