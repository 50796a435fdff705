//! debuginfod: `/buildid/<id>/debuginfo`, `/executable`, `/section/<name>`,
//! `/source/<path>`.
//!
//! libdebuginfod caches every error as a miss for ten minutes, so a miss is
//! a plain 404 and a broken index is too; only upstreams that failed (none
//! said 404) make a 502/504, as `spec/mirror.md` asks, so that a flaky
//! upstream is not taken for a definite miss.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::download::{self, not_found};
use crate::http::body::{self, Body};
use crate::http::hit::{Flavor, Found, add_debuginfod_headers};
use crate::http::mirror::{BuildRole, Want};
use crate::http::routes::Role;
use crate::http::state::AppState;
use crate::identity::lookup::debuginfod_key;
use crate::store::missing::Miss;
use crate::store::{Encoding, KeyRow, Store};

/// 400 for a build id that is not even-length hex.
pub fn bad_build_id() -> Response<Body> {
    body::with_type(
        StatusCode::BAD_REQUEST,
        "text/plain",
        "Malformed build id: expected an even number of hex digits, at most 128",
    )
}

/// Answers a debuginfod request.
pub async fn debuginfod(
    state: Arc<AppState>,
    req: Request<Incoming>,
    build_id: String,
    role: Role,
    include_try: bool,
) -> Response<Body> {
    match role {
        Role::Source(_) => not_found(),
        Role::Debuginfo | Role::Executable => {
            let role_name = if role == Role::Debuginfo {
                "debuginfo"
            } else {
                "executable"
            };
            let key = debuginfod_key(&build_id, role_name);
            let found =
                download::cached_lookup(&state, key, include_try, Flavor::Debuginfod, || None);
            match found.await {
                Ok(Found::Key(hit)) => download::serve(&state, &req, &hit).await,
                Ok(_) if !state.mirror.is_empty() => {
                    let want = Want::BuildId {
                        id: build_id.to_ascii_lowercase(),
                        role: if role == Role::Debuginfo {
                            BuildRole::Debuginfo
                        } else {
                            BuildRole::Executable
                        },
                    };
                    let on_miss = |state: &AppState| record_miss(state, role_name, &build_id);
                    download::from_upstream(
                        &state,
                        &req,
                        want,
                        include_try,
                        Flavor::Debuginfod,
                        on_miss,
                    )
                    .await
                }
                Ok(_) => {
                    record_miss(&state, role_name, &build_id);
                    not_found()
                }
                // A broken index is not a miss; libdebuginfod caches errors, so say 404 all the same.
                Err(e) => {
                    tracing::error!(error = %e, "lookup failed");
                    not_found()
                }
            }
        }
        Role::Section(name) => section(state, req, build_id, name, include_try).await,
    }
}

/// Notes a build id no one had, for the missing-symbols report.
fn record_miss(state: &AppState, role_name: &str, build_id: &str) {
    if let Some(miss) = Miss::build_id(build_id, role_name) {
        state.missing.record(miss);
        state.metrics.missing_recorded.inc();
    }
}

/// The raw bytes of one section, from the debuginfo file, else the executable.
async fn section(
    state: Arc<AppState>,
    req: Request<Incoming>,
    build_id: String,
    name: String,
    include_try: bool,
) -> Response<Body> {
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || -> crate::Result<_> {
        for role in ["debuginfo", "executable"] {
            let Some(row) = store.lookup(&debuginfod_key(&build_id, role), include_try)? else {
                continue;
            };
            if let Some(range) = section_range(&store, &row, &name)? {
                return Ok(Some((row, range)));
            }
        }
        Ok(None)
    })
    .await
    .unwrap_or_else(|e| Err(crate::Error::Io(std::io::Error::other(e))));
    let (row, (offset, len)) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        // A stored file that cannot be read is an outage, not a miss.
        Err(e) => {
            tracing::error!(error = %e, "a section could not be read");
            return crate::http::error::json_error(&e);
        }
    };
    let mut resp = Response::new(body::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&crate::units::http_date(row.last_uploaded_at)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    add_debuginfod_headers(h, len, &row.key);
    if req.method() == Method::HEAD {
        return resp;
    }
    let body = match super::download::open_blob_range(&state, &row, offset, len).await {
        Ok(read) => body::blob_range(read).await,
        Err(e) => Err(e),
    };
    match body {
        Ok(b) => {
            *resp.body_mut() = b;
            resp
        }
        // The key is stored but its bytes cannot be read: an outage, not a miss
        // (libdebuginfod would cache a 404 as a miss).
        Err(e) => {
            tracing::error!(key = row.key, error = %e, "a stored blob could not be read");
            crate::http::error::json_error(&crate::Error::Io(e))
        }
    }
}

/// Where a section's bytes sit in a stored ELF file (identity-encoded only);
/// an error when the stored file cannot be opened.
fn section_range(store: &Store, row: &KeyRow, name: &str) -> crate::Result<Option<(u64, u64)>> {
    if row.encoding != Encoding::Identity {
        return Ok(None);
    }
    let file = store
        .open_blob_seekable(row)
        .map_err(|e| store.blob_error(e))?;
    let (file, failure) = crate::store::blobs::recorded(file);
    let range = crate::identity::elf::section_file_range(&object::ReadCache::new(file), name);
    // The parser answers "no such section" for a read that failed too.
    match failure.take() {
        Some(e) => Err(store.blob_error(e)),
        None => Ok(range),
    }
}
