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
use crate::identity::lookup::debuginfod_key;
use crate::keys::normalize;
use crate::metrics::{UpstreamLabels, UpstreamMetrics, UpstreamName};
use crate::settings::IngestLimits;
use crate::store::{Namespace, Store, UploadStart};
use crate::upstream::{Protocol, Upstream};

/// Remembered answers at most; when full, expired ones go and new ones wait.
const MAX_REMEMBERED: usize = 100_000;

/// Upstream fetches running at once, whatever the number of keys asked.
pub const MAX_FETCHES: usize = 16;

/// Fetches running or waiting for a turn; a miss beyond them is answered
/// 503 at once rather than queued behind work its clients may have left.
pub const MAX_FLIGHTS: usize = 256;

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
    /// [`MAX_FLIGHTS`] fetches are running or waiting: 503, try again.
    Busy,
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

/// Where a fetch publishes its answer as it arrives, for clients to stream.
type Publisher = tokio::sync::watch::Sender<Option<Arc<Tail>>>;

/// A fetch in flight, and where it publishes its answer as it arrives.
type Joined = (Flight, tokio::sync::watch::Receiver<Option<Arc<Tail>>>);

/// What a client asking the upstreams gets.
#[derive(Debug)]
pub enum Answer {
    /// The fetch is over.
    Done(Fetched),
    /// An upstream is sending the file: stream it while it is written.
    Streaming(Arc<Tail>),
}

/// An upstream's answer as it arrives, read back from the fetch's temp file
/// by the clients waiting for it. The last byte is held back until the file
/// is kept: a file that is refused never reaches a client whole.
pub struct Tail {
    file: std::fs::File,
    /// The upstream's `Content-Length`.
    pub length: Option<u64>,
    progress: tokio::sync::watch::Receiver<TailState>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// How far a fetch's temp file is written, and how it ended.
#[derive(Debug, Clone, Copy, Default)]
struct TailState {
    written: u64,
    /// `Some(true)`: kept; `Some(false)` (or the fetch gone): not.
    end: Option<bool>,
}

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
    /// Keys being fetched (as spelled): later clients await the same fetch,
    /// or stream its answer once one arrives.
    flights: Mutex<HashMap<String, Joined>>,
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

    /// Whether any upstream would be asked for `want`.
    pub fn would_ask(&self, want: &Want) -> bool {
        self.inner.asked(want).next().is_some()
    }

    /// Whether the store holds `want` now (release or cache).
    pub async fn has(&self, want: &Want) -> bool {
        stored(&self.inner.store, &want.lkey()).await
    }

    /// Asks the upstreams for `want`, and waits for the fetch to end.
    pub async fn fetch(&self, want: Want) -> Fetched {
        match Inner::join(&self.inner, want) {
            Ok((flight, _)) => flight.await,
            Err(done) => done,
        }
    }

    /// Asks the upstreams for `want`: the file as it arrives from the first
    /// upstream that sends it plainly, or how the fetch ended.
    pub async fn fetch_streaming(&self, want: Want) -> Answer {
        let (flight, mut tails) = match Inner::join(&self.inner, want) {
            Ok(joined) => joined,
            Err(done) => return Answer::Done(done),
        };
        let streaming = async {
            loop {
                if let Some(tail) = tails.borrow_and_update().clone() {
                    return tail;
                }
                if tails.changed().await.is_err() {
                    // The fetch is over without a stream: the flight says how.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            tail = streaming => Answer::Streaming(tail),
            done = flight => Answer::Done(done),
        }
    }
}

/// What a client asked the upstreams for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `<module>/<id>/<file>` as the client spelled it (the caller has checked
    /// it is a key the store may keep). Asked of Breakpad and SymStore upstreams.
    Path(Vec<String>),
    /// A debuginfod build id (lower-case hex) in one role. Asked of debuginfod upstreams.
    BuildId { id: String, role: BuildRole },
}

/// What a debuginfod client asks for by build id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildRole {
    Debuginfo,
    Executable,
}

impl BuildRole {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildRole::Debuginfo => "debuginfo",
            BuildRole::Executable => "executable",
        }
    }
}

impl Want {
    /// How fetches in flight and remembered answers name it: the key as
    /// spelled (upstreams may tell case apart), the build id's lookup key.
    fn spelled(&self) -> String {
        match self {
            Want::Path(segs) => segs.join("/"),
            Want::BuildId { id, role } => debuginfod_key(id, role.as_str()),
        }
    }

    /// The lookup key that finds it once stored.
    pub fn lkey(&self) -> String {
        match self {
            Want::Path(segs) => normalize(&segs.join("/")),
            Want::BuildId { id, role } => debuginfod_key(id, role.as_str()),
        }
    }
}

/// How one request's answer becomes the file asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// It is the file.
    Plain,
    /// A cabinet holding it (SymStore's `x.pd_` for `x.pdb`).
    Cab,
    /// SymStore's `file.ptr`: where the file is, followed when it is an HTTP URL.
    Ptr,
}

/// The requests that may give `want` from an upstream of `protocol`, in order
/// (path segments below the upstream's URL): SymStore also as a cabinet and
/// through `file.ptr`, and all three again in lower case (SSQP keys are
/// lower-case; static trees are not).
fn tries(protocol: Protocol, want: &Want) -> Vec<(Vec<String>, How)> {
    match (protocol, want) {
        (Protocol::Debuginfod, Want::BuildId { id, role }) => vec![(
            vec!["buildid".to_string(), id.clone(), role.as_str().to_string()],
            How::Plain,
        )],
        (Protocol::Breakpad, Want::Path(segs)) => vec![(segs.clone(), How::Plain)],
        (Protocol::SymStore, Want::Path(segs)) => {
            let mut spellings = vec![segs.clone()];
            let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
            if lower != *segs {
                spellings.push(lower);
            }
            let mut out = Vec::new();
            for s in spellings {
                out.push((s.clone(), How::Plain));
                if let Some(cab) = compressed_name(&s[2]) {
                    out.push((vec![s[0].clone(), s[1].clone(), cab], How::Cab));
                }
                out.push((
                    vec![s[0].clone(), s[1].clone(), "file.ptr".to_string()],
                    How::Ptr,
                ));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// SymStore's name for a file stored as a cabinet: the last character of
/// its extension replaced by `_` (`x.pdb` → `x.pd_`).
fn compressed_name(file: &str) -> Option<String> {
    let (stem, ext) = file.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.ends_with('_') {
        return None;
    }
    let mut ext = ext.to_string();
    ext.pop();
    Some(format!("{stem}.{ext}_"))
}

/// An upstream's answer, whole, in a temp file.
struct Downloaded {
    file: tempfile::NamedTempFile,
    /// Bytes received.
    size: u64,
    /// The URL it came from, redacted.
    shown: String,
    /// debuginfod's `X-DEBUGINFOD-FILE`: the file's name on the upstream.
    upstream_name: Option<String>,
    /// Clients streaming it, told how it ends.
    progress: Option<tokio::sync::watch::Sender<TailState>>,
}

impl Inner {
    /// The upstreams asked for `want`, with their index.
    fn asked<'a>(
        &'a self,
        want: &'a Want,
    ) -> impl Iterator<Item = (usize, &'a (Upstream, reqwest::Client))> + 'a {
        self.upstreams
            .iter()
            .enumerate()
            .filter(move |(_, (up, _))| match want {
                Want::Path(segs) => {
                    matches!(up.protocol, Protocol::Breakpad | Protocol::SymStore)
                        && up.wants(&segs[0])
                }
                Want::BuildId { .. } => up.protocol == Protocol::Debuginfod,
            })
    }

    /// The fetch of `want` in flight, started if none is; `Err` with the
    /// answer when there is nothing to ask.
    fn join(mirror: &Arc<Inner>, want: Want) -> Result<Joined, Fetched> {
        let key = want.spelled();
        // Nothing to ask: each upstream that would be asked said 404 lately.
        if mirror
            .asked(&want)
            .all(|(i, _)| mirror.recall(i, &key) == Some(Said::NotFound))
        {
            return Err(Fetched::NotFound);
        }
        let joined = {
            let mut flights = mirror.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some(f) => f.clone(),
                None if flights.len() >= MAX_FLIGHTS => return Err(Fetched::Busy),
                None => {
                    let (m, k) = (mirror.clone(), key.clone());
                    let (publish, tails) = tokio::sync::watch::channel(None);
                    let task = tokio::spawn(async move {
                        let outcome = m.ask_each(&want, &k, &publish).await;
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
                    flights.insert(key, (flight.clone(), tails.clone()));
                    (flight, tails)
                }
            }
        };
        Ok(joined)
    }

    async fn ask_each(self: &Arc<Self>, want: &Want, key: &str, publish: &Publisher) -> Fetched {
        // Waiting for a turn counts against the time a client would wait.
        let longest = (self.asked(want))
            .map(|(_, (up, _))| up.timeout)
            .max()
            .unwrap_or_default();
        let turn = tokio::time::timeout(longest, self.fetches.clone().acquire_owned()).await;
        let _permit = match turn {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Fetched::Failed { timed_out: false },
            Err(_) => return Fetched::Failed { timed_out: true },
        };
        // A fetch just before this one may have stored it.
        if stored(&self.store, &want.lkey()).await {
            return Fetched::Stored;
        }
        let mut failures: Vec<Failure> = Vec::new();
        for (i, (up, client)) in self.asked(want) {
            match self.recall(i, key) {
                Some(Said::NotFound) => continue,
                Some(Said::Refused) => {
                    failures.push(Failure::new("refused lately"));
                    continue;
                }
                None => {}
            }
            let started = Instant::now();
            let fetch = self.fetch_from(up, client, want, publish);
            let result = match tokio::time::timeout(up.timeout, fetch).await {
                Ok(result) => result,
                Err(_) => Err(Failure {
                    timed_out: true,
                    refused: false,
                    why: format!("no answer within {:?}", up.timeout),
                }),
            };
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

/// A client for one upstream: each request within its timeout; redirects
/// are followed by [`Inner::get`], hop by hop.
fn client_for(up: &Upstream) -> std::io::Result<reqwest::Client> {
    crate::tls::use_ring();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(up.timeout)
        .build()
        .map_err(std::io::Error::other)
}

/// Redirect hops followed at most per request.
const MAX_HOPS: usize = 5;

/// Whether `url` may be asked on behalf of `up`: its own scheme, host and
/// port, or a host of its `redirect_hosts` (never from https down to http).
fn hop_allowed(up: &Upstream, url: &reqwest::Url) -> bool {
    if url.origin() == up.url.origin() {
        return true;
    }
    let downgrade = up.url.scheme() == "https" && url.scheme() != "https";
    matches!(url.scheme(), "http" | "https") && !downgrade && up.redirects_to(url)
}

/// Whether a lookup of `lkey` finds a key now (a fetch by another client).
async fn stored(store: &Arc<Store>, lkey: &str) -> bool {
    let (store, key) = (store.clone(), lkey.to_string());
    tokio::task::spawn_blocking(move || store.lookup(&key, false))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .is_some()
}

/// Bytes an answer is looked at before it is streamed to clients.
const HEAD_LEN: usize = 64 * 1024;

/// Whether an answer's first bytes pass the checks they can before any of
/// it is streamed: a `.sym` key's answer is a `.sym` file whose MODULE line names
/// the key's module and debug id. (Other kinds are identified from the
/// whole file, when it is kept.)
fn first_look(want: &Want, head: &[u8]) -> bool {
    let Want::Path(segs) = want else {
        return true;
    };
    if kind_named(&segs[2]) != Some(Kind::Sym) {
        return true;
    }
    let Ok(key) = crate::keys::MemberKey::new(&segs[0], &segs[1], &segs[2]) else {
        return false;
    };
    let identity = crate::identity::identify_bytes(head, &segs[2]);
    identity.kind == Kind::Sym
        && crate::ingest::zipfile::check_identity(&segs.join("/"), &key, &identity).is_ok()
}

/// A failure from something that went wrong while keeping a fetched file:
/// a file that broke a rule is refused (remembered), anything else is not.
fn failure_of(e: Error) -> Failure {
    Failure {
        timed_out: false,
        refused: matches!(e, Error::Invalid { .. } | Error::TooLarge(_)),
        why: e.to_string(),
    }
}

impl Inner {
    /// One upstream asked for `want`: `Ok(true)` fetched and stored,
    /// `Ok(false)` it does not have it.
    async fn fetch_from(
        self: &Arc<Self>,
        up: &Upstream,
        client: &reqwest::Client,
        want: &Want,
        publish: &Publisher,
    ) -> Result<bool, Failure> {
        for (segs, how) in tries(up.protocol, want) {
            let mut url = up.url.clone();
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(&segs);
            }
            let stream_to = (how == How::Plain).then_some((publish, want));
            let downloaded = self.download(up, client, url, stream_to).await;
            if downloaded.is_err() {
                // A cut answer is no answer for clients who come later.
                publish.send_replace(None);
            }
            let Some(mut got) = downloaded? else {
                continue;
            };
            // Clients streaming this answer hear how it ends (a sender
            // dropped on the way out is an end without the file).
            let progress = got.progress.take();
            let got = match how {
                How::Plain => got,
                How::Cab => self.expanded(got, &segs[2]).await?,
                How::Ptr => match self.pointed_to(up, client, got).await? {
                    Some(got) => got,
                    None => continue,
                },
            };
            let kept = self.keep_fetched(up, want, got).await;
            if let Some(p) = progress {
                p.send_modify(|s| s.end = Some(kept.is_ok()));
            }
            if kept.is_err() {
                publish.send_replace(None);
            }
            return kept.map(|()| true);
        }
        Ok(false)
    }

    /// GET `url` from `up`, following redirects hop by hop, each checked by
    /// [`hop_allowed`]; the upstream's headers go only to its own origin.
    async fn get(
        &self,
        up: &Upstream,
        client: &reqwest::Client,
        mut url: reqwest::Url,
    ) -> Result<reqwest::Response, Failure> {
        for _ in 0..=MAX_HOPS {
            if !hop_allowed(up, &url) {
                return Err(Failure {
                    timed_out: false,
                    refused: true,
                    why: format!(
                        "{} is off the upstream's own scheme, host and port and not in its redirect_hosts",
                        redact_url(url.as_str())
                    ),
                });
            }
            let mut req = client.get(url.clone());
            if url.origin() == up.url.origin() {
                for (name, value) in up.headers() {
                    req = req.header(name, value);
                }
            }
            let resp = req.send().await.map_err(|e| Failure {
                timed_out: e.is_timeout(),
                refused: false,
                why: transport(&e),
            })?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let next = (resp.headers().get(reqwest::header::LOCATION))
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok());
            match next {
                Some(next) => url = next,
                None => {
                    return Err(Failure::new(format!(
                        "{} answered {} without a usable Location",
                        redact_url(url.as_str()),
                        resp.status()
                    )));
                }
            }
        }
        Err(Failure::new(format!(
            "{}: more than {MAX_HOPS} redirects",
            redact_url(url.as_str())
        )))
    }

    /// The whole answer to `url` in a temp file (`None`: a 404), at most
    /// `max_bytes`, inflated when it was sent gzip-encoded. An answer sent
    /// as it is is published on `stream_to` (when given, and nothing was
    /// published there before) as it is written.
    async fn download(
        self: &Arc<Self>,
        up: &Upstream,
        client: &reqwest::Client,
        url: reqwest::Url,
        stream_to: Option<(&Publisher, &Want)>,
    ) -> Result<Option<Downloaded>, Failure> {
        let resp = self.get(up, client, url).await?;
        let shown = redact_url(resp.url().as_str());
        match resp.status() {
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            reqwest::StatusCode::OK => {}
            other => return Err(Failure::new(format!("{shown} answered {other}"))),
        }
        let gzip = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let upstream_name = (resp.headers().get("x-debuginfod-file"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
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
        let length = resp.content_length();
        // Published once its first bytes are in and pass a first look.
        let (mut head, mut progress) = match stream_to {
            Some((publish, _)) if !gzip && publish.borrow().is_none() => (Some(Vec::new()), None),
            _ => (None, None),
        };
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
            if let (Some(h), Some((publish, want))) = (&mut head, stream_to) {
                h.extend_from_slice(&chunk[..chunk.len().min(HEAD_LEN - h.len().min(HEAD_LEN))]);
                // An answer that fails the first look is not streamed:
                // keeping it refuses it, with its record.
                if h.len() >= HEAD_LEN && first_look(want, h) {
                    let (tx, rx) = tokio::sync::watch::channel(TailState::default());
                    let reader = file.reopen().map_err(|e| Failure::new(e.to_string()))?;
                    publish.send_replace(Some(Arc::new(Tail {
                        file: reader,
                        length,
                        progress: rx,
                    })));
                    progress = Some(tx);
                }
                if h.len() >= HEAD_LEN {
                    head = None;
                }
            }
            if let Some(p) = &progress {
                // Written through to the file before readers are told.
                out.flush().await.map_err(|e| Failure::new(e.to_string()))?;
                p.send_modify(|s| s.written = size);
            }
        }
        out.flush().await.map_err(|e| Failure::new(e.to_string()))?;
        drop(out);
        let file = if gzip {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.inflated(file))
                .await
                .map_err(|e| Failure::new(e.to_string()))?
                .map_err(failure_of)?
        } else {
            file
        };
        Ok(Some(Downloaded {
            file,
            size,
            shown,
            upstream_name,
            progress,
        }))
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

    /// The file `name` expanded from a fetched cabinet (a `.pd_`).
    async fn expanded(self: &Arc<Self>, got: Downloaded, cab: &str) -> Result<Downloaded, Failure> {
        let (me, cab) = (self.clone(), cab.to_string());
        tokio::task::spawn_blocking(move || {
            let file = me.expand(&got.file, &cab)?;
            Ok(Downloaded { file, ..got })
        })
        .await
        .map_err(|e| Failure::new(e.to_string()))?
        .map_err(failure_of)
    }

    /// The one file of a cabinet (or the one named like `cab` with its full
    /// extension, when it holds several), bounded by the largest file fetched.
    fn expand(
        &self,
        cab_file: &tempfile::NamedTempFile,
        cab: &str,
    ) -> crate::Result<tempfile::NamedTempFile> {
        let refuse = |why: String| Error::invalid(cab, why);
        let mut cabinet = cab::Cabinet::new(std::io::BufReader::new(cab_file.reopen()?))
            .map_err(|e| refuse(format!("not a cabinet file: {e}")))?;
        let names: Vec<String> = (cabinet.folder_entries())
            .flat_map(|f| {
                f.file_entries()
                    .map(|e| e.name().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let stem = cab.trim_end_matches('_');
        let base = |n: &str| n.rsplit(['\\', '/']).next().unwrap_or(n).to_string();
        let pick = match names.as_slice() {
            [only] => only.clone(),
            _ => (names.iter())
                .find(|n| {
                    let b = base(n);
                    b.len() == cab.len()
                        && b.to_ascii_lowercase()
                            .starts_with(&stem.to_ascii_lowercase())
                })
                .cloned()
                .ok_or_else(|| {
                    refuse(format!(
                        "a cabinet of {} files, none of them the file asked for",
                        names.len()
                    ))
                })?,
        };
        let max = self.max_bytes;
        let mut reader = cabinet
            .read_file(&pick)
            .map_err(|e| refuse(format!("its file {pick:?} cannot be read: {e}")))?;
        let mut out = self.store.temp_file("upstream-")?;
        let n = std::io::copy(&mut (&mut reader).take(max + 1), out.as_file_mut())
            .map_err(|e| refuse(format!("its file {pick:?} cannot be expanded: {e}")))?;
        if n > max {
            return Err(Error::TooLarge(format!(
                "the upstream's cabinet expands past {max} bytes"
            )));
        }
        out.as_file_mut().flush()?;
        Ok(out)
    }

    /// The file a SymStore `file.ptr` names, when it names an HTTP URL (and
    /// expanded when that is a cabinet); `None` (a miss) when it names a path
    /// or says `MSG:`.
    async fn pointed_to(
        self: &Arc<Self>,
        up: &Upstream,
        client: &reqwest::Client,
        ptr: Downloaded,
    ) -> Result<Option<Downloaded>, Failure> {
        let text = tokio::fs::read(ptr.file.path())
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        let Some(url) = ptr_url(&text) else {
            return Ok(None);
        };
        let Some(got) = self.download(up, client, url, None).await? else {
            return Ok(None);
        };
        let mut magic = [0u8; 4];
        let is_cab = std::fs::File::open(got.file.path())
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && magic == *b"MSCF";
        if is_cab {
            let name = got.shown.rsplit('/').next().unwrap_or_default().to_string();
            return self.expanded(got, &name).await.map(Some);
        }
        Ok(Some(got))
    }

    /// Stores what was fetched for `want` (see [`Inner::keep`]).
    async fn keep_fetched(
        self: &Arc<Self>,
        up: &Upstream,
        want: &Want,
        got: Downloaded,
    ) -> Result<(), Failure> {
        let (me, want, user) = (self.clone(), want.clone(), format!("upstream {}", up.name));
        tokio::task::spawn_blocking(move || me.keep(&got, &want, &user))
            .await
            .map_err(|e| Failure::new(e.to_string()))?
            .map_err(failure_of)
    }
}

/// The HTTP URL a `file.ptr` names (`PATH:<url>` or a bare URL), if any.
fn ptr_url(text: &[u8]) -> Option<reqwest::Url> {
    if text.len() > 4096 {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let line = text.lines().next()?.trim();
    let target = match line.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("PATH:") => line[5..].trim(),
        _ => line,
    };
    reqwest::Url::parse(target)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
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

/// Stores a fetched file for `want`, in `cache`, if it is what was asked
/// for: for a path, the kind of file the key names, with the key's own
/// identity; for a build id, an ELF file of that build id holding debug info
/// (`debuginfo`) or code (`executable`), placed by its identity. Recorded as
/// an upload either way.
impl Inner {
    fn keep(&self, got: &Downloaded, want: &Want, user: &str) -> crate::Result<()> {
        let store = &self.store;
        let path = got.file.path();
        let name = match want {
            Want::Path(segs) => segs[2].clone(),
            Want::BuildId { id, role } => upstream_file_name(got.upstream_name.as_deref())
                .unwrap_or_else(|| match role {
                    BuildRole::Debuginfo => format!("{id}.debug"),
                    BuildRole::Executable => id.clone(),
                }),
        };
        let identity = crate::identity::identify(std::fs::File::open(path)?, &name);
        // A file that is not what was asked for is refused before anything
        // is recorded: an upstream's junk makes no rows.
        if let Err(e) = what_was_asked(want, &identity) {
            tracing::warn!(file = name, upstream = user, error = %e, "refused a fetched file");
            return Err(e);
        }
        let record = store.begin_upload(&UploadStart {
            user: user.to_string(),
            token_id: None,
            filename: Some(name.clone()),
            download_url: Some(got.shown.clone()),
            try_symbols: false,
        })?;
        let to = crate::ingest::Ingest {
            store,
            limits: &self.limits,
        };
        let result = match want {
            Want::Path(segs) => crate::ingest::ingest_file_as(
                to,
                path,
                &segs.join("/"),
                Namespace::Cache,
                Some(record.id()),
            ),
            Want::BuildId { .. } => {
                crate::ingest::ingest_file(to, path, &name, Namespace::Cache, Some(record.id()))
            }
        }
        .and_then(|report| match report.files_count() {
            0 => Err(Error::invalid(
                &name,
                "not a file the store keeps".to_string(),
            )),
            _ => Ok(report),
        });
        if let Err(e) = &result {
            tracing::warn!(file = name, upstream = user, error = %e, "a fetched file was not kept");
        }
        let end = crate::ingest::Report::record_end(&result);
        record.finish_own(store, got.size, end)?;
        result.map(|_| ())
    }
}

/// Whether a fetched file is what `want` asked for: for a path, the kind of
/// file the key names with the key's own identity; for a build id, an ELF
/// file of that build id holding debug info (`debuginfo`) or code
/// (`executable`).
fn what_was_asked(want: &Want, identity: &crate::identity::Identity) -> crate::Result<()> {
    match want {
        Want::Path(segs) => {
            let key = segs.join("/");
            match kind_named(&segs[2]) {
                Some(kind) if kind != identity.kind => {
                    return Err(Error::invalid(
                        &key,
                        format!(
                            "the upstream sent a {} file for a {kind} key",
                            identity.kind
                        ),
                    ));
                }
                _ if identity.kind != Kind::Sym && !identity.has_id() => {
                    return Err(Error::invalid(
                        &key,
                        format!(
                            "the upstream's file has no identity to check ({})",
                            identity.kind
                        ),
                    ));
                }
                _ => {}
            }
            let member = crate::keys::MemberKey::new(&segs[0], &segs[1], &segs[2])
                .map_err(|why| Error::invalid(&key, why))?;
            crate::ingest::zipfile::check_identity(&key, &member, identity)
        }
        Want::BuildId { id, role } => {
            let what = format!("/buildid/{id}/{}", role.as_str());
            if identity.kind != Kind::Elf {
                Err(Error::invalid(
                    &what,
                    format!(
                        "the upstream sent a {} file, not an ELF file",
                        identity.kind
                    ),
                ))
            } else if identity.build_id.as_deref() != Some(id.as_str()) {
                Err(Error::invalid(
                    &what,
                    format!(
                        "the upstream's file has build id {}",
                        identity.build_id.as_deref().unwrap_or("(none)")
                    ),
                ))
            } else if *role == BuildRole::Debuginfo && !identity.has_debug_info {
                Err(Error::invalid(
                    &what,
                    "the upstream's file holds no debug info",
                ))
            } else if *role == BuildRole::Executable && !identity.has_code {
                Err(Error::invalid(&what, "the upstream's file holds no code"))
            } else {
                Ok(())
            }
        }
    }
}

/// The last segment of debuginfod's `X-DEBUGINFOD-FILE`, if it is a name an
/// ELF file may be stored under: a valid segment, without spaces at either
/// end, that names no other kind of file (`.pdb`, `.dll`, `.sym`…).
fn upstream_file_name(header: Option<&str>) -> Option<String> {
    let base = header?.rsplit('/').next()?;
    crate::keys::check_segment("file", base).ok()?;
    let plain = base.trim() == base && kind_named(base).is_none();
    plain.then(|| base.to_string())
}

/// A body that streams `tail` as its fetch writes it: every byte but the
/// last as it arrives, the last once the file is kept; an error (a cut
/// transfer, never a whole file) when it is not.
pub fn tail_body(tail: Arc<Tail>) -> crate::http::body::Body {
    use http_body_util::BodyExt;
    const CHUNK: u64 = 256 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::spawn(async move {
        let mut progress = tail.progress.clone();
        let mut offset = 0u64;
        loop {
            let state = *progress.borrow_and_update();
            let readable = match state.end {
                Some(true) => state.written,
                _ => state.written.saturating_sub(1),
            };
            if offset < readable {
                let n = (readable - offset).min(CHUNK) as usize;
                let tail = tail.clone();
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; n];
                    tail.file.read_exact_at(&mut buf, offset).map(|()| buf)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                let failed = read.is_err();
                if tx.send(read.map(bytes::Bytes::from)).await.is_err() || failed {
                    return; // the client went away, or was told of the error
                }
                offset += n as u64;
                continue;
            }
            match state.end {
                Some(true) => return,
                Some(false) => break,
                None => {}
            }
            if progress.changed().await.is_err() && progress.borrow().end != Some(true) {
                break;
            }
        }
        let _ = tx
            .send(Err(std::io::Error::other(
                "the upstream's file was not kept (refused, cut short or too large)",
            )))
            .await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    BodyExt::boxed(http_body_util::StreamBody::new(
        futures_util::TryStreamExt::map_ok(stream, hyper::body::Frame::data),
    ))
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

    #[test]
    fn symstore_asks_for_the_file_its_cabinet_and_its_pointer_then_in_lower_case() {
        let segs = |k: &str| k.split('/').map(str::to_string).collect::<Vec<_>>();
        let want = Want::Path(segs("Ntdll.pdb/ABC1/Ntdll.pdb"));
        let asked: Vec<(String, How)> = tries(Protocol::SymStore, &want)
            .into_iter()
            .map(|(s, h)| (s.join("/"), h))
            .collect();
        let expect = [
            ("Ntdll.pdb/ABC1/Ntdll.pdb", How::Plain),
            ("Ntdll.pdb/ABC1/Ntdll.pd_", How::Cab),
            ("Ntdll.pdb/ABC1/file.ptr", How::Ptr),
            ("ntdll.pdb/abc1/ntdll.pdb", How::Plain),
            ("ntdll.pdb/abc1/ntdll.pd_", How::Cab),
            ("ntdll.pdb/abc1/file.ptr", How::Ptr),
        ];
        assert_eq!(asked, expect.map(|(k, h)| (k.to_string(), h)).to_vec());
        assert_eq!(tries(Protocol::Breakpad, &want).len(), 1);
        assert!(tries(Protocol::Debuginfod, &want).is_empty());
        assert_eq!(compressed_name("libc.so"), Some("libc.s_".into()));
        assert_eq!(compressed_name("noext"), None);
        assert_eq!(compressed_name("x.pd_"), None);
    }

    #[test]
    fn a_debuginfod_upstream_names_only_elf_files() {
        let name = |h: &str| upstream_file_name(Some(h));
        assert_eq!(
            name("/usr/lib/debug/.build-id/ab/cdef.debug").as_deref(),
            Some("cdef.debug")
        );
        assert_eq!(name("/usr/lib/libc.so.6").as_deref(), Some("libc.so.6"));
        assert_eq!(name("/usr/lib/debug/../../../etc/ntdll.pdb"), None);
        assert_eq!(name("/x/kernel32.dll"), None);
        assert_eq!(name("/x/ x.debug"), None);
        assert_eq!(name("/x/.."), None);
        assert_eq!(name("/x/"), None);
    }

    #[test]
    fn a_file_ptr_is_followed_only_when_it_names_an_http_url() {
        let url = |t: &str| ptr_url(t.as_bytes()).map(|u| u.to_string());
        assert_eq!(
            url("PATH:https://sym.example/x.pdb\r\n").as_deref(),
            Some("https://sym.example/x.pdb")
        );
        assert_eq!(
            url("http://sym.example/a/x.pd_").as_deref(),
            Some("http://sym.example/a/x.pd_")
        );
        assert_eq!(url("PATH:\\\\server\\share\\x.pdb"), None);
        assert_eq!(url("MSG: withdrawn"), None);
        assert_eq!(url("PATH:file:///etc/passwd"), None);
        assert_eq!(url(&format!("http://a.example/{}", "x".repeat(5000))), None);
    }
}
