//! Downloads in the Breakpad / Tecken layout: `/<module>/<debug_id>/<file>`.
//!
//! We are the storage: a hit is answered with the bytes, never a redirect.
//! Stored-gzip files go out as they are to clients that accept gzip and are
//! decompressed on the fly for the others; identity responses honour `Range`.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::http::cache::{Found, SMALL_BLOB};
use crate::identity::lookup::code_key;
use crate::keys::{is_zero_id, normalize};
use crate::store::missing::Miss;
use crate::store::{Encoding, KeyRow};

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
    let code = segs[2]
        .to_ascii_lowercase()
        .ends_with(".sym")
        .then(|| code_key(&segs[0], &segs[1]));
    let found = match cached_lookup(&state, lkey, code, include_try).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "lookup failed");
            // A broken index is not a miss: never answer it with a 404 a client would cache.
            return body::with_type(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "Index unavailable",
            );
        }
    };
    match found {
        Found::Key(row) => serve(&state, &req, &row).await,
        Found::Redirect(row) => redirect(&req, &row),
        Found::Miss => {
            record_miss(&state, &segs, req.uri().query());
            not_found()
        }
    }
}

/// The key `lkey` names, else the key `code` names (a redirect), else
/// nothing; from the cache when it is fresh.
pub async fn cached_lookup(
    state: &Arc<AppState>,
    lkey: String,
    code: Option<String>,
    include_try: bool,
) -> crate::Result<Found> {
    let generation = state.store.generation();
    if let Some(found) = state.lookups.get(&lkey, include_try, generation) {
        return Ok(found);
    }
    let store = state.store.clone();
    let key = lkey.clone();
    let found = tokio::task::spawn_blocking(move || -> crate::Result<Found> {
        if let Some(row) = store.db().lookup(&key, include_try)? {
            return Ok(Found::Key(Arc::new(row)));
        }
        Ok(match code {
            Some(code) => store
                .db()
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
    state.missing.record(Miss {
        debug_file: segs[0].clone(),
        debug_id: segs[1].clone(),
        code_file: param("code_file"),
        code_id: param("code_id"),
    });
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

/// How the body goes out.
enum Plan {
    /// The stored gzip bytes with `Content-Encoding: gzip`.
    StoredGzip,
    /// The original bytes, from a stored-identity blob or decompressed, maybe a range.
    Identity { start: u64, len: u64, partial: bool },
}

/// 200 / 206 / 304 / 416 for a stored key.
pub async fn serve(state: &AppState, req: &Request<Incoming>, row: &KeyRow) -> Response<Body> {
    let stored = Encoding::parse(&row.encoding);
    let gzip_ok = stored == Encoding::Gzip && accepts_gzip(req.headers());
    let etag = if gzip_ok {
        format!("\"{}.gz\"", row.blob)
    } else {
        format!("\"{}\"", row.blob)
    };
    let file_name = row.key.rsplit('/').next().unwrap_or("");
    let mut headers = HeaderMap::new();
    set(
        &mut headers,
        header::CONTENT_TYPE,
        state.config.mime_for(file_name),
    );
    set(&mut headers, header::ETAG, &etag);
    set(&mut headers, header::VARY, "Accept-Encoding");
    set(
        &mut headers,
        header::LAST_MODIFIED,
        &http_date(row.last_uploaded_at),
    );
    cors(&mut headers);
    if if_none_match(req.headers(), &etag) {
        return respond(StatusCode::NOT_MODIFIED, headers, body::empty());
    }
    let plan = if gzip_ok {
        Plan::StoredGzip
    } else {
        set(&mut headers, header::ACCEPT_RANGES, "bytes");
        match range(req.headers(), row.size) {
            RangeAsk::None => Plan::Identity {
                start: 0,
                len: row.size,
                partial: false,
            },
            RangeAsk::Satisfiable(start, len) => Plan::Identity {
                start,
                len,
                partial: true,
            },
            RangeAsk::Unsatisfiable => {
                set(
                    &mut headers,
                    header::CONTENT_RANGE,
                    &format!("bytes */{}", row.size),
                );
                return respond(StatusCode::RANGE_NOT_SATISFIABLE, headers, body::empty());
            }
        }
    };
    let (status, len) = match &plan {
        Plan::StoredGzip => {
            set(&mut headers, header::CONTENT_ENCODING, "gzip");
            (StatusCode::OK, row.stored_size)
        }
        Plan::Identity {
            start,
            len,
            partial: true,
        } => {
            let range = format!("bytes {}-{}/{}", start, start + len - 1, row.size);
            set(&mut headers, header::CONTENT_RANGE, &range);
            (StatusCode::PARTIAL_CONTENT, *len)
        }
        Plan::Identity { len, .. } => (StatusCode::OK, *len),
    };
    set(&mut headers, header::CONTENT_LENGTH, &len.to_string());
    if req.method() == Method::HEAD {
        return respond(status, headers, body::empty());
    }
    let path = state.store.blobs().path(&row.blob, stored);
    let small = row.stored_size <= SMALL_BLOB;
    let body = match plan {
        Plan::StoredGzip if small => small_blob(state, row, path).await.map(body::full),
        Plan::Identity { start, len, .. } if small && stored == Encoding::Identity => {
            small_blob(state, row, path)
                .await
                .map(|b| body::full(b.slice(start as usize..(start + len) as usize)))
        }
        Plan::StoredGzip => body::file_range(path, 0, row.stored_size).await,
        Plan::Identity { start, len, .. } if stored == Encoding::Gzip => {
            Ok(body::gunzip_range(path, start, len))
        }
        Plan::Identity { start, len, .. } => body::file_range(path, start, len).await,
    };
    match body {
        Ok(b) => respond(status, headers, b),
        Err(e) => {
            tracing::error!(key = %row.key, error = %e, "stored blob cannot be opened");
            body::with_type(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "Stored file unreadable",
            )
        }
    }
}

/// The stored bytes of a small blob, from memory when they are there.
async fn small_blob(
    state: &AppState,
    row: &KeyRow,
    path: std::path::PathBuf,
) -> std::io::Result<bytes::Bytes> {
    if let Some(b) = state.blob_cache.get(&row.blob, &row.encoding) {
        return Ok(b);
    }
    let bytes = bytes::Bytes::from(tokio::fs::read(path).await?);
    if bytes.len() as u64 != row.stored_size {
        return Err(std::io::Error::other(
            "the stored blob's size does not match the index",
        ));
    }
    state
        .blob_cache
        .put(&row.blob, &row.encoding, bytes.clone());
    Ok(bytes)
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

fn http_date(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    httpdate::fmt_http_date(t)
}

/// Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*` with q > 0).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match coding.as_str() {
                "gzip" | "x-gzip" => return !q_zero,
                "*" => star = Some(!q_zero),
                _ => {}
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
