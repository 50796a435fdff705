//! Fetching what the store lacks from upstream symbol servers
//! (`spec/mirror.md`), for the Breakpad/SymStore path `<module>/<id>/<file>`.
//!
//! A miss of the store's own keys asks each upstream that wants the module,
//! in order. The first 200 is written to a temp file (bounded by
//! `max_upload_bytes`, inflated first when the upstream sent it gzip-encoded;
//! redirects only to the upstream's own scheme, host and port; the whole
//! fetch within the upstream's `timeout`), identified, and stored in the
//! `cache` namespace only when it is the kind of file the key names and its
//! identity is the key's — a file without an identity, or another file's, is
//! refused, logged and never stored. Each fetch is an upload record by user
//! `upstream <host>` whose download URL (redacted) says where the file came
//! from and when.
//!
//! An upstream's 404 (and a refusal of what it sent) is remembered for its
//! `negative_ttl`, under the key as spelled (upstreams may tell case apart);
//! timeouts, connection errors and other statuses are not. A client gets a
//! 404 only when every upstream asked said 404; when one failed, 502 (504
//! when all that failed timed out), never a 404 it would cache. Clients
//! missing the same key at once share one fetch, which runs on a task of its
//! own (a client that goes away does not stop it), and at most
//! [`MAX_FETCHES`] fetches run at once.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::http::redact::redact_url;
use crate::identity::Kind;
use crate::keys::normalize;
use crate::metrics::{UpstreamLabels, UpstreamMetrics, UpstreamName};
use crate::settings::IngestLimits;
use crate::store::{Namespace, Store, UploadEnd, UploadFinish, UploadStart};
use crate::upstream::{Protocol, Upstream};

/// Remembered answers at most; when full, expired ones go and new ones wait.
const MAX_REMEMBERED: usize = 100_000;

/// Upstream fetches running at once, whatever the number of keys asked.
pub const MAX_FETCHES: usize = 16;

/// What asking the upstreams came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A file was fetched and stored (or another client's fetch stored it).
    Stored,
    /// Every upstream asked said 404 (or had said so recently).
    NotFound,
    /// At least one upstream failed (or sent a file that was refused): 504
    /// when all that failed timed out, else 502.
    Failed { timed_out: bool },
}

/// Why one upstream gave nothing.
#[derive(Debug)]
struct Failure {
    timed_out: bool,
    /// What it sent was not the key's file (remembered like a 404).
    refused: bool,
    why: String,
}

impl Failure {
    fn new(why: impl Into<String>) -> Failure {
        Failure {
            timed_out: false,
            refused: false,
            why: why.into(),
        }
    }
}

/// What an upstream said lately about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    NotFound,
    Refused,
}

type Flight = Shared<BoxFuture<'static, Fetched>>;

/// The upstreams of a daemon, their clients and what they said lately.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Vec<(Upstream, reqwest::Client)>,
    store: Arc<Store>,
    limits: IngestLimits,
    /// Largest file fetched (`max_upload_bytes`).
    max_bytes: u64,
    metrics: UpstreamMetrics,
    /// (upstream index, key as spelled) → what it said, and until when.
    said: Mutex<HashMap<(usize, String), (Said, Instant)>>,
    /// Keys being fetched (as spelled): later clients await the same fetch.
    flights: Mutex<HashMap<String, Flight>>,
    fetches: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = (self.inner.upstreams.iter())
            .map(|(u, _)| u.name.as_str())
            .collect();
        f.debug_struct("Mirror")
            .field("upstreams", &names)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// The mirror of `store` (fetched files are checked as uploads are, by
    /// `limits`, and at most `max_bytes` long).
    pub fn new(
        upstreams: Vec<Upstream>,
        store: Arc<Store>,
        limits: IngestLimits,
        max_bytes: u64,
        metrics: UpstreamMetrics,
    ) -> Mirror {
        let upstreams = upstreams
            .into_iter()
            .filter_map(|u| match client_for(&u) {
                Ok(client) => Some((u, client)),
                Err(e) => {
                    tracing::error!(upstream = %u.name, error = %e, "no HTTP client for this upstream; it is not asked");
                    None
                }
            })
            .collect();
        Mirror {
            inner: Arc::new(Inner {
                upstreams,
                store,
                limits,
                max_bytes,
                metrics,
                said: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                fetches: Arc::new(tokio::sync::Semaphore::new(MAX_FETCHES)),
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.upstreams.is_empty()
    }

    /// Asks the upstreams for `<module>/<id>/<file>` (as the client spelled it;
    /// the caller has checked it is a key the store may keep).
    pub async fn fetch(&self, segs: &[String]) -> Fetched {
        Inner::fetch(&self.inner, segs).await
    }
}

impl Inner {
    /// The upstreams asked for keys of `module`, with their index.
    fn asked(&self, module: &str) -> impl Iterator<Item = (usize, &(Upstream, reqwest::Client))> {
        self.upstreams
            .iter()
            .enumerate()
            .filter(move |(_, (up, _))| {
                matches!(up.protocol, Protocol::Breakpad | Protocol::SymStore) && up.wants(module)
            })
    }

    async fn fetch(mirror: &Arc<Inner>, segs: &[String]) -> Fetched {
        let key = segs.join("/");
        // Nothing to ask: each upstream that would be asked said 404 lately.
        if mirror
            .asked(&segs[0])
            .all(|(i, _)| mirror.recall(i, &key) == Some(Said::NotFound))
        {
            return Fetched::NotFound;
        }
        let flight = {
            let mut flights = mirror.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let (m, segs, k) = (mirror.clone(), segs.to_vec(), key.clone());
                    let task = tokio::spawn(async move {
                        let outcome = m.ask_each(&segs, &k).await;
                        m.flights
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&k);
                        outcome
                    });
                    let flight =
                        async move { task.await.unwrap_or(Fetched::Failed { timed_out: false }) }
                            .boxed()
                            .shared();
                    flights.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    async fn ask_each(self: &Arc<Self>, segs: &[String], key: &str) -> Fetched {
        let Ok(_permit) = self.fetches.clone().acquire_owned().await else {
            return Fetched::Failed { timed_out: false };
        };
        // A fetch just before this one may have stored it.
        if stored(&self.store, &normalize(key)).await {
            return Fetched::Stored;
        }
        let mut failures: Vec<Failure> = Vec::new();
        for (i, (up, client)) in self.asked(&segs[0]) {
            match self.recall(i, key) {
                Some(Said::NotFound) => continue,
                Some(Said::Refused) => {
                    failures.push(Failure::new("refused lately"));
                    continue;
                }
                None => {}
            }
            let started = Instant::now();
            let result = self.fetch_from(up, client, segs, key).await;
            let name = UpstreamName {
                upstream: up.name.clone(),
            };
            self.metrics
                .duration
                .get_or_create(&name)
                .observe(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(true) => "hit",
                Ok(false) => "miss",
                Err(f) if f.refused => "refused",
                Err(_) => "error",
            };
            self.metrics
                .fetches
                .get_or_create(&UpstreamLabels {
                    upstream: up.name.clone(),
                    outcome,
                })
                .inc();
            match result {
                Ok(true) => return Fetched::Stored,
                Ok(false) => self.remember(i, key, Said::NotFound, up),
                Err(f) => {
                    tracing::warn!(upstream = %up.name, key, reason = %f.why, "upstream fetch failed");
                    if f.refused {
                        self.remember(i, key, Said::Refused, up);
                    }
                    failures.push(f);
                }
            }
        }
        if failures.is_empty() {
            Fetched::NotFound
        } else {
            Fetched::Failed {
                timed_out: failures.iter().all(|f| f.timed_out),
            }
        }
    }

    fn recall(&self, i: usize, key: &str) -> Option<Said> {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let k = (i, key.to_string());
        match said.get(&k) {
            Some((what, until)) if *until > Instant::now() => Some(*what),
            Some(_) => {
                said.remove(&k);
                None
            }
            None => None,
        }
    }

    fn remember(&self, i: usize, key: &str, what: Said, up: &Upstream) {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        if said.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            said.retain(|_, (_, until)| *until > now);
            if said.len() >= MAX_REMEMBERED {
                return;
            }
        }
        said.insert(
            (i, key.to_string()),
            (what, Instant::now() + up.negative_ttl),
        );
    }
}

/// A client for one upstream: its timeout for the whole fetch, and
/// redirects followed only on its own scheme, host and port (at most 5).
fn client_for(up: &Upstream) -> std::io::Result<reqwest::Client> {
    let origin = up.url.origin();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("more than 5 redirects");
        }
        if attempt.url().origin() != origin {
            let shown = redact_url(attempt.url().as_str());
            return attempt.error(format!(
                "a redirect to {shown}, off the upstream's own scheme, host and port"
            ));
        }
        attempt.follow()
    });
    reqwest::Client::builder()
        .redirect(policy)
        .timeout(up.timeout)
        .build()
        .map_err(std::io::Error::other)
}

/// Whether the store holds the key now (a fetch by another client).
async fn stored(store: &Arc<Store>, norm: &str) -> bool {
    let (store, key) = (store.clone(), norm.to_string());
    tokio::task::spawn_blocking(move || store.lookup(&key, false))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .is_some()
}

impl Inner {
    /// One upstream asked for one key: `Ok(true)` fetched and stored,
    /// `Ok(false)` it said 404.
    async fn fetch_from(
        self: &Arc<Self>,
        up: &Upstream,
        client: &reqwest::Client,
        segs: &[String],
        key: &str,
    ) -> Result<bool, Failure> {
        let mut url = up.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segs);
        }
        let shown = redact_url(url.as_str());
        let mut req = client.get(url);
        for (name, value) in up.headers() {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| Failure {
            timed_out: e.is_timeout(),
            refused: false,
            why: transport(&e),
        })?;
        match resp.status() {
            reqwest::StatusCode::NOT_FOUND => return Ok(false),
            reqwest::StatusCode::OK => {}
            other => return Err(Failure::new(format!("{shown} answered {other}"))),
        }
        let gzip = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let max = self.max_bytes;
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(Failure::new(format!("{shown} is larger than {max} bytes")));
        }
        let store = self.store.clone();
        let file = tokio::task::spawn_blocking(move || store.temp_file("upstream-"))
            .await
            .map_err(|e| Failure::new(e.to_string()))?
            .map_err(|e| Failure::new(e.to_string()))?;
        let std_file = file
            .as_file()
            .try_clone()
            .map_err(|e| Failure::new(e.to_string()))?;
        let mut out =
            tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(std_file));
        let mut size = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Failure {
                timed_out: e.is_timeout(),
                refused: false,
                why: transport(&e),
            })?;
            size += chunk.len() as u64;
            self.metrics
                .bytes
                .get_or_create(&UpstreamName {
                    upstream: up.name.clone(),
                })
                .inc_by(chunk.len() as u64);
            if size > max {
                return Err(Failure::new(format!("{shown} sent more than {max} bytes")));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| Failure::new(e.to_string()))?;
        }
        out.flush().await.map_err(|e| Failure::new(e.to_string()))?;
        drop(out);
        let (me, key, user) = (
            self.clone(),
            key.to_string(),
            format!("upstream {}", up.name),
        );
        let kept = tokio::task::spawn_blocking(move || {
            let file = if gzip { me.inflated(file)? } else { file };
            me.keep(&file, &key, &user, &shown, size)
        })
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
        match kept {
            Ok(()) => Ok(true),
            Err(e @ Error::Invalid { .. }) => Err(Failure {
                timed_out: false,
                refused: true,
                why: e.to_string(),
            }),
            Err(e) => Err(Failure::new(e.to_string())),
        }
    }

    /// A gzip-encoded answer inflated into a temp file of its own, bounded by
    /// the largest file fetched.
    fn inflated(&self, file: tempfile::NamedTempFile) -> crate::Result<tempfile::NamedTempFile> {
        let max = self.max_bytes;
        let mut out = self.store.temp_file("upstream-")?;
        let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file.reopen()?));
        let n = std::io::copy(&mut (&mut gz).take(max + 1), out.as_file_mut())?;
        if n > max {
            return Err(Error::TooLarge(format!(
                "the upstream's file inflates past {max} bytes"
            )));
        }
        out.as_file_mut().flush()?;
        Ok(out)
    }
}

/// The kind of file a key's name says it is, where it says one.
fn kind_named(file: &str) -> Option<Kind> {
    let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    match ext.as_str() {
        "sym" => Some(Kind::Sym),
        "pdb" => Some(Kind::Pdb),
        "dll" | "exe" | "sys" | "ocx" | "cpl" | "drv" | "efi" | "scr" => Some(Kind::Pe),
        _ => None,
    }
}

/// Stores a fetched file under the key it was fetched for, in `cache`, if
/// it is the kind of file the key names and its identity is the key's;
/// recorded as an upload either way.
impl Inner {
    fn keep(
        &self,
        file: &tempfile::NamedTempFile,
        key: &str,
        user: &str,
        url: &str,
        size: u64,
    ) -> crate::Result<()> {
        let store = &self.store;
        let name = key.rsplit('/').next().unwrap_or(key);
        let identity = crate::identity::identify(std::fs::File::open(file.path())?, name);
        let record = store.begin_upload(&UploadStart {
            user: user.to_string(),
            token_id: None,
            filename: Some(name.to_string()),
            download_url: Some(url.to_string()),
            try_symbols: false,
        })?;
        let to = crate::ingest::Ingest {
            store,
            limits: &self.limits,
        };
        let result = match kind_named(name) {
            Some(kind) if kind != identity.kind => Err(Error::invalid(
                key,
                format!(
                    "the upstream sent a {} file for a {kind} key",
                    identity.kind
                ),
            )),
            _ if identity.kind != Kind::Sym && !identity.has_id() => Err(Error::invalid(
                key,
                format!(
                    "the upstream's file has no identity to check ({})",
                    identity.kind
                ),
            )),
            _ => crate::ingest::ingest_file_as(
                to,
                file.path(),
                key,
                Namespace::Cache,
                Some(record.id()),
            )
            .and_then(|report| match report.files_count() {
                0 => Err(Error::invalid(key, "not a key the store keeps".to_string())),
                _ => Ok(report),
            }),
        };
        let end = match &result {
            Ok(report) => UploadEnd::Complete {
                files_count: report.files_count() as u64,
            },
            Err(e) => {
                tracing::warn!(key, upstream = user, error = %e, "refused a fetched file");
                UploadEnd::Failed {
                    error: e,
                    message: e.to_string(),
                }
            }
        };
        record.finish(
            store,
            &UploadFinish {
                filename: None,
                download_url: None,
                size,
                try_symbols: false,
                end,
            },
        )?;
        if result.is_ok() {
            store.write_manifest(record.id())?;
        }
        result.map(|_| ())
    }
}

/// A transport error without the URL (it may carry credentials).
fn transport(e: &reqwest::Error) -> String {
    let mut why = match e.url() {
        Some(u) => format!("{}: ", redact_url(u.as_str())),
        None => String::new(),
    };
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = String::new();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    why.push_str(&last);
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_name_says_which_kind_of_file_it_holds() {
        assert_eq!(kind_named("xul.sym"), Some(Kind::Sym));
        assert_eq!(kind_named("ntdll.PDB"), Some(Kind::Pdb));
        assert_eq!(kind_named("kernel32.dll"), Some(Kind::Pe));
        assert_eq!(kind_named("libc.so.6"), None);
        assert_eq!(kind_named("_.debug"), None);
    }
}
