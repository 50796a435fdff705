//! `POST /upload/`: Tecken's upload contract.
//!
//! Credentials, permission and the declared size are decided from the headers
//! alone. The multipart body is then streamed to a temp file in the store's
//! filesystem (memory stays flat whatever the upload's size) and handed to
//! the ingest pipeline on a blocking thread. Every authenticated upload is
//! recorded, failed ones with the error the client got.
//!
//! A client may go away at any point. hyper then drops the handler's future,
//! and with it an [`Abandon`] guard: it cancels the ingest (which stops
//! between members, keeping what it committed) and sees that the record ends
//! as `aborted` with the members committed so far — written by the blocking
//! task still running on the upload (the ingest, or the record's creation)
//! when it returns, so the count is final, else by the guard on a blocking
//! thread. A body cut short ends the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyStream;
use hyper::body::Incoming;
use serde_json::json;

use crate::error::Error;
use crate::http::auth;
use crate::http::body::{self, Body};
use crate::http::error::{json_error, message_of, method_not_allowed};
use crate::http::state::AppState;
use crate::ingest::prehash::{Prehashed, StreamHasher};
use crate::ingest::{self, Cancel, Layout, Report};
use crate::store::tokens::Token;
use crate::store::{Namespace, Store, UploadEnd, UploadFinish, UploadRecord, UploadStart, now_ms};
use crate::units::rfc3339;

/// How much of an unwanted body is read before answering, so that clients
/// see the status rather than a reset connection.
const DRAIN_LIMIT: u64 = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Handles `/upload/`.
pub async fn upload(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST", true);
    }
    let token = match authorize(&state, req.headers()).await {
        Ok(t) => t,
        Err(e) => return refuse(req, &e).await,
    };
    let slot = {
        let (store, limit) = (
            state.store.clone(),
            state.http.max_concurrent_uploads_per_token,
        );
        let id = token.id;
        tokio::task::spawn_blocking(move || store.take_upload_slot(id, limit)).await
    };
    let _slot = match slot {
        Ok(Ok(Some(slot))) => slot,
        Ok(Err(e)) => return refuse(req, &e).await,
        Err(e) => return refuse(req, &Error::Io(std::io::Error::other(e))).await,
        Ok(Ok(None)) => return too_many(&state, req).await,
    };
    let start = UploadStart {
        user: token.user.clone(),
        token_id: Some(token.id),
        ..UploadStart::default()
    };
    // Guarded from before the record exists: a client gone while it is
    // written still gets it ended.
    let abandon = Abandon::new(&state, declared_length(req.headers()).unwrap_or(0));
    let guard = AbandonGuard::new(&abandon);
    let record = match begin_record(&abandon, start).await {
        Ok(record) => record,
        // A full disk cannot even take the record: say so once the client has sent its body.
        Err(e) => {
            guard.disarm();
            return refuse(req, &e).await;
        }
    };
    let created_at = now_ms();
    let started = std::time::Instant::now();
    let result = receive_and_ingest(&state, req, &token, record.id(), &abandon).await;
    if let Err((Error::Cancelled(_), _)) = &result {
        // The body was cut short: the client is gone. The guard ends the record.
        drop(guard);
        return json_error(&result.err().expect("an error").0);
    }
    // From here on this handler ends the record itself, even if its client leaves now.
    guard.disarm();
    count_upload(&state, &result, started);
    let mut resp = match &result {
        Ok(done) => created(&token, record.id(), created_at, done),
        Err((e, _)) => json_error(e),
    };
    let failed = result.is_err();
    let store = state.store.clone();
    let _ = tokio::task::spawn_blocking(move || finish_record(&store, &record, &result)).await;
    if failed {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Blocking: ends an upload's record with what its client was answered.
fn finish_record(store: &Store, record: &UploadRecord, result: &Result<Done, (Error, Partial)>) {
    let fin = match result {
        Ok(d) => UploadFinish {
            filename: Some(&d.filename),
            download_url: d.download_url.as_deref(),
            size: d.size,
            try_symbols: d.is_try,
            end: UploadEnd::Complete {
                files_count: d.report.files_count() as u64,
            },
        },
        Err((e, partial)) => UploadFinish {
            filename: partial.filename.as_deref(),
            download_url: None,
            size: partial.size,
            try_symbols: partial.is_try,
            end: UploadEnd::Failed {
                error: e,
                message: message_of(e),
            },
        },
    };
    if let Err(e) = record.finish(store, &fin) {
        tracing::error!(upload_id = record.id(), error = %e, "could not finish the upload record");
    }
}

/// Who ends an upload's record if its client goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The handler (receiving the body, or holding the ingest's result).
    Handler,
    /// A blocking task still running (writing the record, or the ingest):
    /// it ends the record itself when it returns.
    Blocking,
    /// The record is ended, or its ending is claimed.
    Done,
}

/// An upload whose client may go away: the ingest's cancel flag and who ends
/// the record then.
#[derive(Debug)]
struct Abandon {
    state: Arc<AppState>,
    /// The record, once written.
    record: std::sync::OnceLock<UploadRecord>,
    size: u64,
    cancel: Cancel,
    owner: Mutex<Owner>,
}

impl Abandon {
    fn new(state: &Arc<AppState>, size: u64) -> Arc<Abandon> {
        Arc::new(Abandon {
            state: state.clone(),
            record: std::sync::OnceLock::new(),
            size,
            cancel: Cancel::default(),
            owner: Mutex::new(Owner::Handler),
        })
    }

    fn owner(&self) -> std::sync::MutexGuard<'_, Owner> {
        self.owner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocking work on the upload starts.
    fn blocking_started(&self) {
        let mut owner = self.owner();
        if *owner == Owner::Handler {
            *owner = Owner::Blocking;
        }
    }

    /// Blocking work returned (on its thread): if the client left meanwhile,
    /// the record is ended here, after the last commit, so its count is final.
    fn blocking_finished(&self) {
        let mut owner = self.owner();
        if self.cancel.is_cancelled() {
            if *owner != Owner::Done {
                *owner = Owner::Done;
                drop(owner);
                self.end_record();
            }
        } else if *owner == Owner::Blocking {
            *owner = Owner::Handler;
        }
    }

    /// The client is gone: stop the ingest, and end the record unless the
    /// ingest's thread will.
    fn client_gone(self: &Arc<Self>) {
        let mut owner = self.owner();
        self.cancel.cancel();
        if *owner != Owner::Handler {
            return;
        }
        *owner = Owner::Done;
        drop(owner);
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || this.end_record())),
            Err(_) => drop(std::thread::spawn(move || this.end_record())),
        }
    }

    /// Blocking: ends the record (if it was written) as `aborted` and counts it.
    fn end_record(&self) {
        let Some(record) = self.record.get() else {
            return;
        };
        let upload_id = record.id();
        let error = "the client closed the connection before the upload was answered";
        if let Err(e) = record.abort(&self.state.store, self.size, error) {
            tracing::error!(upload_id, error = %e, "could not end the upload record");
        }
        tracing::info!(upload_id, "upload abandoned by its client");
        self.state
            .metrics
            .uploads
            .get_or_create(&crate::metrics::UploadLabels { outcome: "aborted" })
            .inc();
    }
}

/// Writes an upload's record on a blocking thread that ends it itself if the
/// client leaves meanwhile.
async fn begin_record(abandon: &Arc<Abandon>, start: UploadStart) -> Result<UploadRecord, Error> {
    let abandon = abandon.clone();
    abandon.blocking_started();
    tokio::task::spawn_blocking(move || {
        let record = abandon.state.store.begin_upload(&start);
        if let Ok(record) = &record {
            let _ = abandon.record.set(*record);
        }
        abandon.blocking_finished();
        record
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// Tells an [`Abandon`] that the client is gone when dropped, unless disarmed.
struct AbandonGuard {
    abandon: Arc<Abandon>,
    armed: bool,
}

impl AbandonGuard {
    fn new(abandon: &Arc<Abandon>) -> AbandonGuard {
        AbandonGuard {
            abandon: abandon.clone(),
            armed: true,
        }
    }

    /// The handler ends the record itself from now on.
    fn disarm(mut self) {
        *self.abandon.owner() = Owner::Done;
        self.armed = false;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if self.armed {
            self.abandon.client_gone();
        }
    }
}

/// The answer when a token's upload slots are all taken (on any daemon).
async fn too_many(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    let e = Error::TooMany(format!(
        "this token already has {} uploads in progress; retry when one has finished",
        state.http.max_concurrent_uploads_per_token
    ));
    let mut resp = refuse(req, &e).await;
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

fn count_upload(
    state: &AppState,
    result: &Result<Done, (Error, Partial)>,
    started: std::time::Instant,
) {
    let m = &state.metrics;
    m.upload_duration.observe(started.elapsed().as_secs_f64());
    let (outcome, size) = match result {
        Ok(d) => {
            m.files_stored.inc_by(d.report.uploaded_keys.len() as u64);
            m.files_skipped.inc_by(d.report.skipped_keys.len() as u64);
            m.members_inflated.inc_by(d.report.inflated as u64);
            m.members_hashed_on_arrival
                .inc_by(d.report.hashed_on_arrival as u64);
            ("complete", d.size)
        }
        Err((_, p)) => ("failed", p.size),
    };
    m.uploads
        .get_or_create(&crate::metrics::UploadLabels { outcome })
        .inc();
    m.upload_bytes.inc_by(size);
}

/// What a finished upload reports.
struct Done {
    filename: String,
    size: u64,
    is_try: bool,
    report: Report,
    download_url: Option<String>,
    redirects: Vec<String>,
}

/// What is known of a failed upload.
#[derive(Default, Clone)]
struct Partial {
    size: u64,
    is_try: bool,
    filename: Option<String>,
}

/// Checks credentials and the upload permissions.
async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Token, Error> {
    let Some(secret) = auth::secret(headers) else {
        return Err(Error::Unauthenticated(
            "an Auth-Token header is required to upload".into(),
        ));
    };
    let store = state.store.clone();
    let token = tokio::task::spawn_blocking(move || store.authenticate(&secret))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    crate::http::access::note_user(&token.user);
    if !token.has("upload") && !token.has("upload_try") {
        return Err(Error::Forbidden(
            "this token has neither the upload nor the upload_try permission".into(),
        ));
    }
    Ok(token)
}

/// Answers a refusal decided from the headers: drains the body first (unless
/// the client waits for `100 Continue`, which it then never gets) and closes.
async fn refuse(req: Request<Incoming>, e: &Error) -> Response<Body> {
    drain_unless_continue(req).await;
    let mut resp = json_error(e);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn drain(body: Incoming) {
    let mut stream = BodyStream::new(body);
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(frame)) = stream.next().await {
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > DRAIN_LIMIT {
                    break;
                }
            }
        }
    })
    .await;
}

/// The declared body size, capped at what the index can record (`i64::MAX`):
/// a larger one is refused all the same, and its record can still be ended.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|n| n.min(i64::MAX as u64))
}

async fn receive_and_ingest(
    state: &AppState,
    req: Request<Incoming>,
    token: &Token,
    upload_id: i64,
    abandon: &Arc<Abandon>,
) -> Result<Done, (Error, Partial)> {
    let max = state.http.max_upload_bytes;
    let partial = Partial {
        size: declared_length(req.headers()).unwrap_or(0),
        is_try: !token.has("upload"),
        filename: None,
    };
    if partial.size > max {
        let e = Error::TooLarge(format!(
            "the upload is {} bytes; the limit is {max}",
            partial.size
        ));
        drain_unless_continue(req).await;
        return Err((e, partial));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let layout = match layout_of(req.uri().query()) {
        Ok(l) => l,
        Err(e) => {
            drain_unless_continue(req).await;
            return Err((e, partial));
        }
    };
    if mime == "application/x-www-form-urlencoded" {
        let received = receive_by_download(state, req.into_body()).await;
        let received = received.map_err(|e| (e, partial.clone()))?;
        return ingest_received(state, token, upload_id, layout, received, partial, abandon).await;
    }
    let boundary = match multer::parse_boundary(&content_type) {
        Ok(b) if mime == "multipart/form-data" => b,
        _ => {
            let e = Error::BadRequest(
                "expected a multipart/form-data body with a .zip file part, or a url= form".into(),
            );
            drain_unless_continue(req).await;
            return Err((e, partial));
        }
    };
    let received = receive(state, req.into_body(), boundary, max, layout).await;
    let received = received.map_err(|e| (e, partial.clone()))?;
    ingest_received(state, token, upload_id, layout, received, partial, abandon).await
}

/// Ingests a received zip (or loose file) on a blocking thread.
async fn ingest_received(
    state: &AppState,
    token: &Token,
    upload_id: i64,
    layout: Layout,
    received: Received,
    mut partial: Partial,
    abandon: &Arc<Abandon>,
) -> Result<Done, (Error, Partial)> {
    partial.size = received.size;
    partial.filename = Some(received.filename.clone());
    let is_try = match resolve_try(token, received.try_value.as_deref()) {
        Ok(t) => t,
        Err(e) => return Err((e, partial)),
    };
    partial.is_try = is_try;
    let store = state.store.clone();
    let limits = state.ingest.clone();
    let ns = Namespace::from_try(is_try);
    let tmp = received.file;
    let prehashed = received.prehashed;
    let filename = received.filename.clone();
    let abandon = abandon.clone();
    abandon.blocking_started();
    let report = tokio::task::spawn_blocking(move || {
        let to = ingest::Ingest {
            store: &store,
            limits: &limits,
        };
        let r = ingest::ingest_upload(
            to,
            ingest::Arrived {
                path: tmp.path(),
                name: &filename,
                prehashed,
            },
            ns,
            Some(upload_id),
            layout,
            &abandon.cancel,
        );
        // Freeing tens of megabytes just written takes milliseconds (their
        // pages are dropped when the file's last handle closes): its name
        // goes now, its last handle after the answer.
        let last_handle = tmp.as_file().try_clone();
        drop(tmp);
        if let Ok(file) = last_handle {
            tokio::task::spawn_blocking(move || drop(file));
        }
        abandon.blocking_finished();
        r
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)));
    match report {
        Ok(Ok(report)) => Ok(Done {
            filename: received.filename,
            size: received.size,
            is_try,
            report,
            download_url: received.download_url,
            redirects: received.redirects,
        }),
        Ok(Err(e)) | Err(e) => Err((e, partial)),
    }
}

/// Reads (and drops) the body unless the client waits for `100 Continue`.
async fn drain_unless_continue(req: Request<Incoming>) {
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        drain(req.into_body()).await;
    }
}

/// `?layout=auto` places members by their own identity; no `layout` is Tecken's layout.
fn layout_of(query: Option<&str>) -> Result<Layout, Error> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == "layout").then_some(v)
        });
    match value {
        None | Some("") | Some("tecken") => Ok(Layout::Tecken),
        Some("auto") => Ok(Layout::Auto),
        Some(other) => Err(Error::BadRequest(format!(
            "layout must be auto or absent, not {other:?}"
        ))),
    }
}

/// Try or release: a try-only token always makes try uploads; otherwise
/// `try` must be `1`/`true`/`yes` (try) or `0`/`false`/empty (release).
fn resolve_try(token: &Token, value: Option<&str>) -> Result<bool, Error> {
    let asked = match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if matches!(v.as_str(), "" | "0" | "false" | "no") => false,
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes") => true,
        Some(v) => {
            return Err(Error::BadRequest(format!(
                "try must be 1, true or yes (try upload) or 0, false or empty (release upload), not {v:?}"
            )));
        }
    };
    Ok(asked || !token.has("upload"))
}

/// The multipart body, received.
struct Received {
    file: tempfile::NamedTempFile,
    /// The zip's member streams, hashed as it arrived.
    prehashed: Prehashed,
    filename: String,
    size: u64,
    try_value: Option<String>,
    /// Upload by download: the URL and the redirects followed.
    download_url: Option<String>,
    redirects: Vec<String>,
}

/// Upload by download: a `url=` form (with an optional `try`), fetched from an allowed host.
async fn receive_by_download(state: &AppState, body: Incoming) -> Result<Received, Error> {
    use http_body_util::BodyExt;
    let bytes = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map_err(|_| Error::BadRequest("the url= form is too large or unreadable".into()))?
        .to_bytes();
    let pairs = crate::filters::query_pairs(std::str::from_utf8(&bytes).ok());
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(url) = get("url").filter(|u| !u.is_empty()) else {
        return Err(Error::BadRequest("the form has no url field".into()));
    };
    let fetched = crate::http::fetch::fetch(state, &url).await?;
    Ok(Received {
        file: fetched.file,
        prehashed: Prehashed::default(),
        filename: fetched.filename,
        size: fetched.size,
        try_value: get("try"),
        download_url: Some(crate::http::fetch::redact_url(&url)),
        redirects: fetched.redirects,
    })
}

/// Longest field or file name of a multipart part (the file name is recorded).
const MAX_PART_NAME: usize = 1024;

/// Streams the multipart body: the first part whose field name or file name
/// ends in `.zip` (with `layout=auto`: the first file part) goes to a temp
/// file, `try` is kept, other parts are skipped.
async fn receive(
    state: &AppState,
    body: Incoming,
    boundary: String,
    max: u64,
    layout: Layout,
) -> Result<Received, Error> {
    let counted = counted_stream(body, max, state.http.request_timeout);
    let mut multipart = multer::Multipart::new(counted, boundary);
    let mut zip: Option<(tempfile::NamedTempFile, Prehashed, String)> = None;
    let mut try_value = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().unwrap_or("").to_string();
        if name.len().max(file_name.len()) > MAX_PART_NAME {
            return Err(Error::BadRequest(format!(
                "a part's field or file name is longer than {MAX_PART_NAME} bytes"
            )));
        }
        let is_zip = [&name, &file_name]
            .iter()
            .any(|n| n.to_ascii_lowercase().ends_with(".zip"))
            || (layout == Layout::Auto && !file_name.is_empty());
        if is_zip && zip.is_none() {
            let (tmp, prehashed) = save_field(state, &mut field).await?;
            zip = Some((
                tmp,
                prehashed,
                if file_name.is_empty() {
                    name
                } else {
                    file_name
                },
            ));
        } else if name == "try" && file_name.is_empty() {
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if value.len() + chunk.len() > 64 {
                    return Err(Error::BadRequest("the try field is too long".into()));
                }
                value.extend_from_slice(&chunk);
            }
            try_value = Some(String::from_utf8_lossy(&value).into_owned());
        } else {
            while field.chunk().await.map_err(multipart_error)?.is_some() {}
        }
    }
    let Some((file, prehashed, filename)) = zip else {
        return Err(Error::BadRequest(
            "no file part whose field name or file name ends in .zip was found".into(),
        ));
    };
    let size = file.as_file().metadata()?.len();
    Ok(Received {
        file,
        prehashed,
        filename,
        size,
        try_value,
        download_url: None,
        redirects: Vec::new(),
    })
}

/// Writes a part to a temp file, hashing the member streams of the zip it
/// holds on the way.
async fn save_field(
    state: &AppState,
    field: &mut multer::Field<'_>,
) -> Result<(tempfile::NamedTempFile, Prehashed), Error> {
    let store = state.store.clone();
    let tmp = tokio::task::spawn_blocking(move || store.temp_file("upload-"))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let file = tmp.as_file().try_clone()?;
    // One blocking thread writes the chunks as they come, each handed over
    // as it is (no copy into a buffer of the async side), and hashes the
    // zip's member streams as they pass; the channel's bound keeps what waits
    // to be written small.
    let (send, mut chunks) = tokio::sync::mpsc::channel::<Bytes>(SPOOL_CHUNKS);
    let max_members = usize::try_from(state.ingest.max_members).unwrap_or(usize::MAX);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Prehashed> {
        let mut file = file;
        let mut streams = StreamHasher::new(max_members);
        while let Some(chunk) = chunks.blocking_recv() {
            std::io::Write::write_all(&mut file, &chunk)?;
            streams.feed(&chunk);
        }
        Ok(streams.finish())
    });
    let read = async {
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if send.send(chunk).await.is_err() {
                // The writer stopped: its error says why.
                break;
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(send);
    let written = writer
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))
        .and_then(|w| w.map_err(Error::from));
    let prehashed = match written {
        Ok(prehashed) => prehashed,
        Err(e) => {
            // A full disk (or any write error) mid-body: read on, so the
            // client sees the answer rather than a reset connection.
            drain_field(field).await;
            return Err(e);
        }
    };
    read?;
    Ok((tmp, prehashed))
}

/// Chunks of an upload's body received and not yet written to its temp file.
const SPOOL_CHUNKS: usize = 16;

/// Reads and drops the rest of a part, up to `DRAIN_LIMIT` bytes and `DRAIN_TIMEOUT`.
async fn drain_field(field: &mut multer::Field<'_>) {
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Ok(Some(chunk)) = field.chunk().await {
            read += chunk.len() as u64;
            if read > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// The body as a stream of data chunks that fails once more than `max` bytes
/// arrived, or once the client pauses for longer than `pause`.
fn counted_stream(
    body: Incoming,
    max: u64,
    pause: Duration,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
    let mut seen = 0u64;
    tokio_stream::StreamExt::timeout(BodyStream::new(body), pause).filter_map(move |frame| {
        let out = match frame {
            Err(_) => Some(Err(Error::Timeout(format!(
                "the request body paused for more than {}s; the upload was cut off",
                pause.as_secs()
            )))),
            // A body the client framed wrongly (bad chunks) is its error; any other
            // failure to read it (end of stream, reset) means the client is gone.
            Ok(Err(e)) if e.is_parse() => Some(Err(Error::BadRequest(format!(
                "the request body could not be read: {e}"
            )))),
            Ok(Err(e)) => Some(Err(Error::Cancelled(format!(
                "the connection closed before the body was complete: {e}"
            )))),
            Ok(Ok(frame)) => frame.into_data().ok().map(|data| {
                seen += data.len() as u64;
                if seen > max {
                    Err(Error::TooLarge(format!(
                        "the upload is larger than the limit of {max} bytes"
                    )))
                } else {
                    Ok(data)
                }
            }),
        };
        std::future::ready(out)
    })
}

fn multipart_error(e: multer::Error) -> Error {
    match e {
        multer::Error::StreamReadFailed(inner) => match inner.downcast::<Error>() {
            Ok(e) => *e,
            Err(other) => Error::BadRequest(format!("the request body could not be read: {other}")),
        },
        other => Error::BadRequest(format!("malformed multipart body: {other}")),
    }
}

/// The 201 body.
fn created(token: &Token, id: i64, created_at: i64, done: &Done) -> Response<Body> {
    let r = &done.report;
    let value = json!({
        "upload": {
            "id": id,
            "size": done.size,
            "filename": done.filename,
            "download_url": done.download_url,
            "redirect_urls": done.redirects,
            "try_symbols": done.is_try,
            "user": token.user,
            "created_at": rfc3339(created_at),
            "completed_at": rfc3339(now_ms()),
            "skipped_keys": r.skipped_keys,
            "ignored_keys": r.ignored_keys,
            "uploaded_keys": r.uploaded_keys,
            "replaced_keys": r.replaced_keys,
            "files_count": r.files_count(),
        }
    });
    body::json(StatusCode::CREATED, &value)
}
