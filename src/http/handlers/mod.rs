//! Request dispatch and the handlers.

pub mod api;
pub mod debuginfod;
pub mod download;
pub mod health;
pub mod pages;
pub mod stackwalk;
pub mod symbolicate;
pub mod upload;

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::access;
use super::body::Body;
use super::error::method_not_allowed;
use super::routes::{Route, route};
use crate::http::state::AppState;
use crate::metrics::RequestLabels;

/// Routes a request to its handler.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let began = std::time::Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let r = route(uri.path(), uri.query());
    let group = group_of(&r);
    let metrics_state = state.clone();
    let (mut resp, user) = access::with_user(dispatch(state, req, r)).await;
    // On every response: never let a browser guess a type we did not send.
    // (Cached download hits carry it already; this is then one lookup.)
    resp.headers_mut()
        .entry(http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(http::HeaderValue::from_static("nosniff"));
    let status = resp.status().as_u16();
    let m = &metrics_state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            route: group,
            status,
        })
        .inc();
    if method != Method::HEAD
        && let Some(len) = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        m.bytes_sent.inc_by(len);
    }
    if !access::enabled() {
        return resp;
    }
    let line = access::Line {
        method,
        path: uri.path().to_string(),
        status,
        user,
        began,
    };
    access::logged(resp, line)
}

/// The route group a request is counted under in `/metrics`.
fn group_of(r: &Route) -> &'static str {
    match r {
        Route::Upload | Route::AuthInfo => "upload",
        Route::Symbol { .. } => "symbol",
        Route::Debuginfod { .. } | Route::BadBuildId => "debuginfod",
        Route::Api(_) | Route::MissingCsv => "api",
        Route::Symbolicate { .. } | Route::Stackwalk { .. } => "symbolicate",
        Route::Page(_) => "page",
        Route::LbHeartbeat | Route::Heartbeat | Route::Version => "health",
        Route::Metrics => "metrics",
        Route::NotFound => "other",
    }
}

/// Whether a route serves stored files (and so needs `download` in a private store).
fn is_download(r: &Route) -> bool {
    matches!(
        r,
        Route::Symbol { .. } | Route::Debuginfod { .. } | Route::BadBuildId | Route::NotFound
    )
}

async fn dispatch(state: Arc<AppState>, req: Request<Incoming>, r: Route) -> Response<Body> {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    if state.http.private_downloads
        && read_only
        && is_download(&r)
        && let Err(refused) = super::request::require(&state, req.headers(), "download").await
    {
        return refused;
    }
    match r {
        Route::Upload => upload::upload(state, req).await,
        Route::AuthInfo => api::auth_info(state, req).await,
        Route::Api(a) => api::api(state, req, a).await,
        Route::Symbolicate {
            version,
            include_try,
        } => symbolicate::symbolicate(state, req, version, include_try).await,
        Route::Stackwalk { include_try } => stackwalk::stackwalk(state, req, include_try).await,
        Route::Page(crate::http::routes::Page::Symbolicate) => symbolicate::page(state, req).await,
        _ if !read_only => method_not_allowed("GET, HEAD", false),
        Route::LbHeartbeat => health::lbheartbeat(),
        Route::Heartbeat => health::heartbeat(state).await,
        Route::Version => health::version(),
        Route::Symbol {
            segments,
            include_try,
        } => download::symbol(state, req, segments, include_try).await,
        Route::Debuginfod {
            build_id,
            role,
            include_try,
        } => debuginfod::debuginfod(state, req, build_id, role, include_try).await,
        Route::BadBuildId => debuginfod::bad_build_id(),
        Route::Metrics => api::metrics(state, req).await,
        Route::MissingCsv => api::missing_csv(state, req).await,
        Route::Page(p) => pages::page(state, req, p).await,
        Route::NotFound => download::not_found(),
    }
}
