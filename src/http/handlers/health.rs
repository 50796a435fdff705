//! `/__lbheartbeat__`, `/__heartbeat__`, `/__version__`. Never protected.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json;

use crate::http::body::{Body, json};
use crate::http::state::AppState;

/// 200 as soon as the listener is up.
pub fn lbheartbeat() -> Response<Body> {
    json(StatusCode::OK, &json!({}))
}

/// 200 when the index answers real queries (and is the file the daemon opened, and
/// knows the stored blobs) and the data dir is writable, else 503 naming the failing check.
pub async fn heartbeat(state: Arc<AppState>) -> Response<Body> {
    let store = state.store.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let index = store.check_index();
        let writable = store.check_writable();
        (
            index.err().map(|e| e.to_string()),
            writable.err().map(|e| e.to_string()),
        )
    })
    .await;
    let (index, writable) = checks.unwrap_or_else(|e| (Some(e.to_string()), None));
    let mut errors = serde_json::Map::new();
    if let Some(e) = index {
        errors.insert("index".into(), json!(e));
    }
    if let Some(e) = writable {
        errors.insert("data_dir_writable".into(), json!(e));
    }
    if errors.is_empty() {
        json(
            StatusCode::OK,
            &json!({"index": "ok", "data_dir_writable": "ok"}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "errors": errors }),
        )
    }
}

/// `{"version": ..., "commit": ...}`.
pub fn version() -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({ "version": crate::VERSION, "commit": crate::COMMIT }),
    )
}
