//! Downloads in the Breakpad / Tecken layout: `/<module>/<debug_id>/<file>`.
//!
//! We are the storage: a hit is answered with the bytes, never a redirect.
//! Stored-gzip files go out as they are to clients that accept gzip and are
//! decompressed on the fly for the others; identity responses honour `Range`.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::http::body::{self, Body};
use crate::http::cache::SMALL_BLOB;
use crate::http::hit::{Flavor, Found, Hit, base_headers, cors, set};
use crate::http::mirror::{Answer, Fetched, Want, tail_body};
use crate::http::state::AppState;
use crate::identity::lookup::code_key;
use crate::keys::{is_zero_id, normalize};
use crate::store::missing::Miss;
use crate::store::{Encoding, KeyRow, Namespace};

/// `404 Symbol Not Found`.
pub fn not_found() -> Response<Body> {
    let mut resp = body::with_type(StatusCode::NOT_FOUND, "text/plain", "Symbol Not Found");
    cors(resp.headers_mut());
    resp
}

/// Serves a three-segment path: the stored key, else the code-id redirect, else 404.
pub async fn symbol(
    state: Arc<AppState>,
    req: Request<Incoming>,
    segs: Vec<String>,
    include_try: bool,
) -> Response<Body> {
    if is_zero_id(&segs[1]) {
        return not_found();
    }
    let lkey = normalize(&segs.join("/"));
    let code = || {
        segs[2]
            .to_ascii_lowercase()
            .ends_with(".sym")
            .then(|| code_key(&segs[0], &segs[1]))
    };
    let found = match cached_lookup(&state, lkey, include_try, Flavor::Breakpad, code).await {
        Ok(found) => found,
        Err(e) => return index_unavailable(&e),
    };
    match found {
        Found::Key(hit) => serve(&state, &req, &hit).await,
        Found::Redirect(row) => redirect(&req, &row),
        Found::Miss if generated(&state, &segs, include_try).await => {
            let lkey = normalize(&segs.join("/"));
            match fresh_lookup(&state, lkey, include_try, Flavor::Breakpad, None).await {
                Ok(Found::Key(hit)) => serve(&state, &req, &hit).await,
                Ok(_) => not_found(),
                Err(e) => index_unavailable(&e),
            }
        }
        Found::Miss if asks_upstream(&state, &segs) => {
            let query = req.uri().query().map(str::to_string);
            let on_miss = |state: &AppState| record_miss(state, &segs, query.as_deref());
            let want = Want::Path(segs.clone());
            from_upstream(&state, &req, want, include_try, Flavor::Breakpad, on_miss).await
        }
        Found::Miss => {
            record_miss(&state, &segs, req.uri().query());
            not_found()
        }
    }
}

/// Whether a missing `.sym` key was just made from a stored debug file of
/// its id (or already had been by another request).
pub async fn generated(state: &Arc<AppState>, segs: &[String], include_try: bool) -> bool {
    use crate::symbolicate::gensym::Generated;
    if !segs[2].to_ascii_lowercase().ends_with(".sym") {
        return false;
    }
    let key = segs.join("/");
    let outcome = (state.gensym)
        .generate(&state.store, &state.ingest, &key, include_try)
        .await;
    outcome == Generated::Stored
}

/// A lookup that failed: a broken index is not a miss, never answered with
/// a 404 a client would cache.
pub fn index_unavailable(e: &crate::Error) -> Response<Body> {
    tracing::error!(error = %e, "lookup failed");
    let mut resp = body::with_type(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain",
        "Index unavailable",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    resp
}

/// Whether a miss is asked of the upstreams: there are some, and the path is
/// a key the store may keep. SymStore's probes for CAB-compressed names
/// (`*.pd_`) and `file.ptr` are plain misses: a client asks for the file
/// itself first, and the mirror asks its SymStore upstreams for those forms
/// and stores the file they hold.
pub fn asks_upstream(state: &AppState, segs: &[String]) -> bool {
    let file = segs[2].to_ascii_lowercase();
    !state.mirror.is_empty()
        && file != "file.ptr"
        && !file.ends_with('_')
        && crate::keys::MemberKey::new(&segs[0], &segs[1], &segs[2]).is_ok()
}

/// A miss asked of the upstreams: served once fetched and stored; a 404 only
/// when every upstream said so (after `on_miss`), a 502/504 when they failed.
pub async fn from_upstream(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
    want: Want,
    include_try: bool,
    flavor: Flavor,
    on_miss: impl FnOnce(&AppState),
) -> Response<Body> {
    let lkey = want.lkey();
    // A whole GET streams the file as it arrives; HEAD and ranges wait.
    let streams = req.method() == Method::GET && !req.headers().contains_key(header::RANGE);
    let fetched = if streams {
        let file_name = match &want {
            Want::Path(segs) => segs[2].clone(),
            Want::BuildId { .. } => String::new(),
        };
        match state.mirror.fetch_streaming(want).await {
            Answer::Done(fetched) => fetched,
            Answer::Streaming(tail) => {
                let mut headers = base_headers(flavor, &file_name, &state.http);
                if let Some(len) = tail.length {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    if flavor == Flavor::Debuginfod {
                        headers.insert("x-debuginfod-size", HeaderValue::from(len));
                    }
                }
                return respond(StatusCode::OK, headers, tail_body(tail));
            }
        }
    } else {
        state.mirror.fetch(want).await
    };
    match fetched {
        Fetched::Stored => {
            // Not from the cache: it may hold this key's miss of a moment ago.
            match fresh_lookup(state, lkey, include_try, flavor, None).await {
                Ok(Found::Key(hit)) => serve(state, req, &hit).await,
                Ok(_) => not_found(),
                Err(e) => index_unavailable(&e),
            }
        }
        Fetched::NotFound => {
            on_miss(state);
            not_found()
        }
        Fetched::Busy => {
            let mut resp = body::with_type(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "Too many upstream fetches at once",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            cors(resp.headers_mut());
            resp
        }
        Fetched::Failed { timed_out } => {
            // Still a miss of this store: the missing-symbols report says
            // what a lab whose upstreams are out of reach lacks.
            on_miss(state);
            let (status, text) = if timed_out {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "Upstream symbol servers did not answer in time",
                )
            } else {
                (StatusCode::BAD_GATEWAY, "Upstream symbol servers failed")
            };
            let mut resp = body::with_type(status, "text/plain", text);
            cors(resp.headers_mut());
            resp
        }
    }
}

/// The key `lkey` names, else the key `code()` names (a redirect), else
/// nothing; from the cache when it is fresh. `code` is asked only on a cache
/// miss, and a hit is prepared for the route `flavor` once, when cached.
pub async fn cached_lookup(
    state: &Arc<AppState>,
    lkey: String,
    include_try: bool,
    flavor: Flavor,
    code: impl FnOnce() -> Option<String>,
) -> crate::Result<Found> {
    let generation = state.store.generation();
    if let Some(found) = state.lookups.get(&lkey, include_try, generation) {
        return Ok(found);
    }
    fresh_lookup(state, lkey, include_try, flavor, code()).await
}

/// [`cached_lookup`] asking the index whatever the cache holds (the answer is
/// cached).
pub async fn fresh_lookup(
    state: &Arc<AppState>,
    lkey: String,
    include_try: bool,
    flavor: Flavor,
    code: Option<String>,
) -> crate::Result<Found> {
    let generation = state.store.generation();
    let st = state.clone();
    let key = lkey.clone();
    let _turn = state
        .lookup_turns
        .acquire()
        .await
        .map_err(|e| crate::Error::Io(std::io::Error::other(e)))?;
    let found = tokio::task::spawn_blocking(move || -> crate::Result<Found> {
        let store = &st.store;
        if let Some(row) = store.lookup(&key, include_try)? {
            return Ok(Found::Key(Arc::new(Hit::new(row, flavor, &st.http))));
        }
        Ok(match code {
            Some(code) => store
                .lookup(&code, include_try)?
                .map_or(Found::Miss, |r| Found::Redirect(Arc::new(r))),
            None => Found::Miss,
        })
    })
    .await
    .map_err(|e| crate::Error::Io(std::io::Error::other(e)))??;
    state
        .lookups
        .put(&lkey, include_try, generation, found.clone());
    Ok(found)
}

/// Counts a miss for the missing-symbols report. Probes for compressed
/// names (`*.pd_`) and `file.ptr` are not misses of their own.
fn record_miss(state: &AppState, segs: &[String], query: Option<&str>) {
    let file = segs[2].to_ascii_lowercase();
    if file == "file.ptr" || file.ends_with('_') {
        return;
    }
    let pairs = crate::filters::query_pairs(query);
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // Misses that no real client would send are answered but not recorded.
    let Some(miss) = Miss::new(&segs[0], &segs[1], &param("code_file"), &param("code_id")) else {
        return;
    };
    state.missing.record(miss);
    state.metrics.missing_recorded.inc();
}

/// The code-file / code-id redirect rust-minidump relies on.
fn redirect(req: &Request<Incoming>, row: &KeyRow) -> Response<Body> {
    let prefix = if req.uri().path().trim_start_matches('/').starts_with("try/") {
        "/try"
    } else {
        ""
    };
    let path: String = row
        .key
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/");
    let mut location = format!("{prefix}/{path}");
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = body::with_type(StatusCode::FOUND, "text/plain", "");
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    cors(headers);
    resp
}

/// Characters escaped in a path segment of a `Location`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/');

/// Headers a `304 Not Modified` keeps from the full response.
const NOT_MODIFIED_KEEPS: [header::HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::X_CONTENT_TYPE_OPTIONS,
    header::ETAG,
    header::VARY,
    header::LAST_MODIFIED,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
];

/// 200 / 206 / 304 / 416 for a stored key.
pub async fn serve(state: &AppState, req: &Request<Incoming>, hit: &Hit) -> Response<Body> {
    let row = &hit.row;
    if row.namespace == Namespace::Cache {
        state.cache_access.record(row.id);
    }
    let gzip = hit.gzip.as_ref().filter(|_| accepts_gzip(req.headers()));
    let mut headers = gzip.unwrap_or(&hit.identity).clone();
    let etag = headers.get(header::ETAG).and_then(|v| v.to_str().ok());
    if etag.is_some_and(|etag| if_none_match(req.headers(), etag)) {
        let mut kept = HeaderMap::new();
        for name in NOT_MODIFIED_KEEPS {
            if let Some(v) = headers.remove(&name) {
                kept.insert(name, v);
            }
        }
        return respond(StatusCode::NOT_MODIFIED, kept, body::empty());
    }
    // A presigned URL is signed for GET only: HEAD is answered here.
    if req.method() == Method::GET
        && let Some(resp) = redirect_to_object(state, row).await
    {
        return resp;
    }
    let (status, start, len) = if gzip.is_some() {
        (StatusCode::OK, 0, row.stored_size)
    } else {
        match range(req.headers(), row.size) {
            RangeAsk::None => (StatusCode::OK, 0, row.size),
            RangeAsk::Satisfiable(start, len) => {
                let range = format!("bytes {}-{}/{}", start, start + len - 1, row.size);
                set(&mut headers, header::CONTENT_RANGE, &range);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                (StatusCode::PARTIAL_CONTENT, start, len)
            }
            RangeAsk::Unsatisfiable => {
                let range = format!("bytes */{}", row.size);
                set(&mut headers, header::CONTENT_RANGE, &range);
                headers.remove(header::CONTENT_LENGTH);
                return respond(StatusCode::RANGE_NOT_SATISFIABLE, headers, body::empty());
            }
        }
    };
    if req.method() == Method::HEAD {
        return respond(status, headers, body::empty());
    }
    match body_of(state, hit, gzip.is_some(), start, len).await {
        Ok(b) => respond(status, headers, b),
        Err(e) => {
            tracing::error!(key = %row.key, error = %e, "stored blob cannot be served");
            // An outage, not a miss (clients cache a 404): a 5xx naming the key.
            body::with_type(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("Stored file unreadable: {}", row.key),
            )
        }
    }
}

/// `len` bytes from `start` of a hit: the stored bytes as they are when
/// `as_stored` (or when stored as is), else decompressed on the fly.
async fn body_of(
    state: &AppState,
    hit: &Hit,
    as_stored: bool,
    start: u64,
    len: u64,
) -> std::io::Result<Body> {
    let row = &hit.row;
    let small = row.stored_size <= SMALL_BLOB;
    if as_stored || hit.encoding == Encoding::Identity {
        if small {
            let bytes = small_blob(state, hit).await?;
            let range = usize::try_from(start)
                .ok()
                .zip(usize::try_from(start + len).ok());
            return match range.and_then(|(a, b)| bytes.get(a..b).map(|_| (a, b))) {
                Some((a, b)) => Ok(body::full(bytes.slice(a..b))),
                None => Err(std::io::Error::other("range outside the stored blob")),
            };
        }
        return body::blob_range(open_blob_range(state, row, start, len).await?).await;
    }
    // The whole stored (gzip) stream, inflated and cut to the range as it goes;
    // a small one checked whole (and then cached) first, and inflated from memory.
    let stored = if small {
        let bytes = small_blob(state, hit).await?;
        crate::store::BlobRead::Stream(Box::new(std::io::Cursor::new(bytes)))
    } else {
        open_blob_range(state, row, 0, row.stored_size).await?
    };
    Ok(body::gunzip_range(stored, start, len))
}

/// A `302` to a presigned URL of the object for a large blob kept as it is
/// (`s3_redirect_min_bytes`): the bytes then flow from the object store. Never
/// for gzip blobs, whose stored bytes a client could not read as the file.
async fn redirect_to_object(state: &AppState, row: &KeyRow) -> Option<Response<Body>> {
    let min = state.http.redirect_min_bytes?;
    if row.encoding != Encoding::Identity || row.stored_size < min {
        return None;
    }
    let store = state.store.clone();
    let row = row.clone();
    let url = tokio::task::spawn_blocking(move || store.presigned_get(&row))
        .await
        .ok()?
        .inspect_err(|e| tracing::warn!(error = %e, "no presigned URL; streaming instead"))
        .ok()??;
    let mut headers = HeaderMap::new();
    set(&mut headers, header::LOCATION, &url);
    cors(&mut headers);
    Some(respond(StatusCode::FOUND, headers, body::empty()))
}

/// Opens a range of a key's stored bytes through the store, on a blocking thread.
pub(crate) async fn open_blob_range(
    state: &AppState,
    row: &KeyRow,
    start: u64,
    len: u64,
) -> std::io::Result<crate::store::BlobRead> {
    let store = state.store.clone();
    let row = row.clone();
    tokio::task::spawn_blocking(move || store.open_blob_range(&row, start, len))
        .await
        .map_err(std::io::Error::other)?
}

/// The stored bytes of a small blob, from memory when they are there. Read
/// from disk, they are checked against the blob's name (inflated first for a
/// gzip blob) on a blocking thread: damaged bytes are an error, never served
/// and never cached.
async fn small_blob(state: &AppState, hit: &Hit) -> std::io::Result<bytes::Bytes> {
    if let Some(b) = hit.blob_id.and_then(|id| state.blob_cache.get(&id)) {
        return Ok(b);
    }
    let store = state.store.clone();
    let row = hit.row.clone();
    let bytes = tokio::task::spawn_blocking(move || store.read_blob_checked(&row))
        .await
        .map_err(std::io::Error::other)??;
    let bytes = bytes::Bytes::from(bytes);
    if let Some(id) = hit.blob_id {
        state.blob_cache.put(id, bytes.clone());
    }
    Ok(bytes)
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*` with q > 0).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return !q_zero;
            }
            if coding == "*" {
                star = Some(!q_zero);
            }
        }
    }
    star.unwrap_or(false)
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == etag)
        })
    })
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable single range: send the whole body.
    None,
    /// Start and length.
    Satisfiable(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range; anything else is ignored (a full 200 is allowed).
pub fn range(headers: &HeaderMap, size: u64) -> RangeAsk {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeAsk::None;
    };
    if spec.contains(',') {
        return RangeAsk::None;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::None;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, Some(end))),
        (Ok(start), Err(_)) if b.is_empty() => Some((start, None)),
        (Err(_), Ok(suffix)) if a.is_empty() => {
            if suffix == 0 {
                return RangeAsk::Unsatisfiable;
            }
            let len = suffix.min(size);
            return if size == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Satisfiable(size - len, len)
            };
        }
        _ => None,
    };
    match parsed {
        None => RangeAsk::None,
        Some((start, _)) if start >= size => RangeAsk::Unsatisfiable,
        Some((start, end)) => {
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            RangeAsk::Satisfiable(start, end - start + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &'static str, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, v.parse().unwrap());
        m
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(&h("accept-encoding", "gzip")));
        assert!(accepts_gzip(&h(
            "accept-encoding",
            "deflate, gzip, br, zstd"
        )));
        assert!(accepts_gzip(&h("accept-encoding", "gzip,deflate,br")));
        assert!(accepts_gzip(&h("accept-encoding", "*")));
        assert!(!accepts_gzip(&h("accept-encoding", "gzip;q=0")));
        assert!(!accepts_gzip(&h("accept-encoding", "br, *;q=0")));
        assert!(!accepts_gzip(&h("accept-encoding", "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn ranges() {
        assert_eq!(range(&HeaderMap::new(), 10), RangeAsk::None);
        assert_eq!(
            range(&h("range", "bytes=0-3"), 10),
            RangeAsk::Satisfiable(0, 4)
        );
        assert_eq!(
            range(&h("range", "bytes=5-"), 10),
            RangeAsk::Satisfiable(5, 5)
        );
        assert_eq!(
            range(&h("range", "bytes=-3"), 10),
            RangeAsk::Satisfiable(7, 3)
        );
        assert_eq!(
            range(&h("range", "bytes=-30"), 10),
            RangeAsk::Satisfiable(0, 10)
        );
        assert_eq!(
            range(&h("range", "bytes=8-100"), 10),
            RangeAsk::Satisfiable(8, 2)
        );
        assert_eq!(range(&h("range", "bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(range(&h("range", "bytes=0-1,4-5"), 10), RangeAsk::None);
        assert_eq!(range(&h("range", "bytes=5-2"), 10), RangeAsk::None);
        assert_eq!(range(&h("range", "items=0-1"), 10), RangeAsk::None);
    }

    #[test]
    fn etag_matching() {
        assert!(if_none_match(&h("if-none-match", "\"abc\""), "\"abc\""));
        assert!(if_none_match(
            &h("if-none-match", "W/\"abc\", \"x\""),
            "\"abc\""
        ));
        assert!(if_none_match(&h("if-none-match", "*"), "\"abc\""));
        assert!(!if_none_match(&h("if-none-match", "\"abc.gz\""), "\"abc\""));
    }
}
