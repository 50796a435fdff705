//! Server-rendered web pages.
use crate::http::AppState;
use crate::http::body::Body;
use crate::http::routes::Page;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
pub async fn page(_state: Arc<AppState>, _req: Request<Incoming>, _p: Page) -> Response<Body> {
    super::download::not_found()
}
