//! The daemon's background work, started and stopped in one place.
//!
//! Three timers run while the daemon serves: the missing-symbols flusher,
//! which writes the misses counted in memory on the download path to the
//! index every [`FLUSH_EVERY`]; the totals counter, which every
//! [`TOTALS_EVERY`] counts the keys' totals again if an out-of-date count was
//! answered meanwhile (a store where counting is slow answers pages and
//! `/metrics` from its last count); and
//! the periodic GC (every `gc_interval`, when it is on). [`Background::start`]
//! spawns them; [`Background::shutdown`] stops
//! them, waits for a run in progress to end, and writes the misses still
//! pending, once the server has finished its in-flight requests. Dropping a
//! `Background` without shutting it down stops the timers too, but writes
//! nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::state::AppState;
use crate::store::Store;
use crate::store::gc::GcMode;
use crate::store::missing::FLUSH_EVERY;

/// The daemon's timers: owned here, stopped on shutdown or drop.
#[derive(Debug)]
pub struct Background {
    state: Arc<AppState>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts the missing-symbols flusher and, when `gc_interval` is set, the GC timer.
    pub fn start(state: &Arc<AppState>, gc_interval: Option<Duration>) -> Background {
        let stop = CancellationToken::new();
        let mut tasks = vec![
            tokio::spawn(flush_every(state.clone(), stop.clone())),
            tokio::spawn(count_totals_every(state.store.clone(), stop.clone())),
        ];
        if let Some(every) = gc_interval {
            tasks.push(tokio::spawn(gc_every(
                state.store.clone(),
                every,
                stop.clone(),
            )));
        }
        Background {
            state: state.clone(),
            stop,
            tasks,
        }
    }

    /// Stops the timers, waits for a run in progress, then writes the misses
    /// not yet flushed.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        flush_missing(&self.state).await;
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Flushes the missing-symbols log every [`FLUSH_EVERY`] until stopped.
async fn flush_every(state: Arc<AppState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => flush_missing(&state).await,
            _ = stop.cancelled() => return,
        }
    }
}

/// Writes pending missing-symbol counts and cached files' last accesses
/// on a blocking thread.
async fn flush_missing(state: &Arc<AppState>) {
    if !state.cache_access.is_empty() {
        let st = state.clone();
        let flushed = tokio::task::spawn_blocking(move || st.cache_access.flush(&st.store)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "could not write when fetched files were last asked for");
        }
    }
    if state.missing.is_empty() {
        return;
    }
    let st = state.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        st.missing
            .flush(&st.store, st.store.settings().missing_max_rows)
    })
    .await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "could not write missing-symbol counts");
    }
}

/// How often the keys' totals are counted again (when keys changed).
pub const TOTALS_EVERY: Duration = Duration::from_secs(60);

/// Counts the keys' totals again, if asked for, every [`TOTALS_EVERY`] until stopped.
async fn count_totals_every(store: Arc<Store>, stop: CancellationToken) {
    let first = tokio::time::Instant::now() + TOTALS_EVERY;
    let mut tick = tokio::time::interval_at(first, TOTALS_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let store = store.clone();
                let counted = tokio::task::spawn_blocking(move || store.refresh_totals()).await;
                if let Ok(Err(e)) = counted {
                    tracing::warn!(error = %e, "could not count the store's totals");
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// Runs GC every `every` on a blocking thread until stopped.
async fn gc_every(store: Arc<Store>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => gc_once(store.clone()).await,
            _ = stop.cancelled() => return,
        }
    }
}

/// One GC run, logged.
async fn gc_once(store: Arc<Store>) {
    let run = tokio::task::spawn_blocking(move || store.gc(SystemTime::now(), GcMode::Run)).await;
    match run {
        Ok(Ok(r)) => tracing::info!(
            expired = r.expired.len(),
            blobs = r.blobs.len(),
            entries = r.entries.len(),
            temp = r.temp.len(),
            "gc"
        ),
        // Another daemon of the store is collecting, or the share limit stopped it.
        Ok(Err(crate::Error::Refused(why))) => tracing::info!(why, "gc skipped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "gc failed"),
        Err(e) => tracing::warn!(error = %e, "gc task failed"),
    }
}
