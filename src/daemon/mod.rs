//! The daemon's life: open the store, recover, bind, serve, shut down.
//!
//! The daemon owns its background work ([`background`]): it is started with
//! the server and stopped after the server has drained, in the server's task,
//! so a daemon dropped without `shutdown` still stops it and flushes.

pub mod background;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::server;
use crate::http::state::AppState;
use crate::settings::Settings;
use crate::store::Store;
use crate::store::lock::DaemonLock;
use background::Background;

/// How long shutdown waits for in-flight requests.
pub const DRAIN: Duration = Duration::from_secs(60);

/// A running server.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    _inbox: Option<crate::ingest::inbox::Inbox>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    store: Arc<Store>,
    /// Held while the daemon runs: one daemon per data dir.
    _lock: DaemonLock,
}

impl Daemon {
    /// Opens the store, clears stale temp files, binds `config.listen` and
    /// starts serving on the current runtime.
    pub async fn start(config: Config) -> anyhow::Result<Daemon> {
        let listen = config.listen.clone();
        let Settings {
            store: store_settings,
            ingest,
            http,
            daemon,
        } = Settings::new(&config);
        let dir = store_settings.data_dir.clone();
        let (store, lock) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            // First of all: a second daemon on this data dir stops here, touching nothing.
            let lock = DaemonLock::acquire(&dir)?;
            let store = Store::open_with(store_settings)
                .with_context(|| format!("opening the data directory {}", dir.display()))?;
            store.check_not_half_copied()?;
            let cleared = store.clear_temp().context("clearing stale temp files")?;
            if cleared > 0 {
                tracing::info!(
                    cleared,
                    "removed temp folders left by processes that are gone"
                );
            }
            Ok((store, lock))
        })
        .await??;
        let store = Arc::new(store);
        store.follow_other_daemons();
        let listener = TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let state = AppState::new(store.clone(), http, ingest.clone());
        let background = Background::start(&state, daemon.gc_interval);
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            server::serve(listener, state, stopped, DRAIN).await;
            background.shutdown().await;
        });
        let inbox = match daemon.inbox {
            None => None,
            Some(dir) => Some(
                crate::ingest::inbox::start(store.clone(), ingest, dir.clone())
                    .with_context(|| format!("watching the inbox {}", dir.display()))?,
            ),
        };
        Ok(Daemon {
            addr,
            _inbox: inbox,
            stop: Some(stop),
            task,
            store,
            _lock: lock,
        })
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops accepting, finishes in-flight requests, and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}
