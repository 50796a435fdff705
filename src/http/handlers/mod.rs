//! Request dispatch and the handlers.

pub mod debuginfod;
pub mod download;
pub mod health;
pub mod upload;

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::AppState;
use super::body::Body;
use super::error::method_not_allowed;
use super::routes::{Route, route};

/// Routes a request to its handler.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = dispatch(state, req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    resp
}

async fn dispatch(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let r = route(req.uri().path(), req.uri().query());
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    match r {
        Route::Upload => upload::upload(state, req).await,
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
        Route::NotFound => download::not_found(),
    }
}
