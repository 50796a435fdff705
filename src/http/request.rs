//! What the handlers ask of a request before they answer it: the token it
//! presents and the permission checks made with it, the records filters of
//! its query string, and [`blocking`], through which they run store work.
//!
//! The records API, the HTML pages and the dispatcher (a private store's
//! downloads) share these, so none of them depends on another handler.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::error::Error;
use crate::filters;
use crate::http::access;
use crate::http::auth;
use crate::http::body::Body;
use crate::http::error::{json_error, json_status};
use crate::http::state::AppState;
use crate::store::now_ms;
use crate::store::records::{FileQuery, UploadQuery, UploadSort};
use crate::store::tokens::Token;

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&crate::Store) -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// The token a request presents, checked, if any.
pub async fn presented_token(
    state: &Arc<AppState>,
    headers: &HeaderMap,
) -> Option<crate::Result<Token>> {
    let secret = auth::secret(headers)?;
    let token = blocking(state, move |s| s.authenticate(&secret)).await;
    if let Ok(t) = &token {
        access::note_user(&t.user);
    }
    Some(token)
}

/// Checks a permission: 401 (with `WWW-Authenticate`) without valid
/// credentials, 403 with a token that lacks it.
pub async fn require(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    permission: &str,
) -> Result<Token, Response<Body>> {
    match presented_token(state, headers).await {
        None | Some(Err(Error::Unauthenticated(_))) => {
            let mut resp = json_status(StatusCode::UNAUTHORIZED, "a valid token is required");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"symdepot\""),
            );
            Err(resp)
        }
        Some(Err(e)) => Err(json_error(&e)),
        Some(Ok(t)) if t.has(permission) => Ok(t),
        Some(Ok(_)) => Err(json_status(
            StatusCode::FORBIDDEN,
            &format!("this token lacks the {permission} permission"),
        )),
    }
}

/// Records are public unless `public_records = false` or the store is private.
pub async fn require_records(
    state: &Arc<AppState>,
    headers: &HeaderMap,
) -> Result<(), Response<Body>> {
    if state.http.public_records && !state.http.private_downloads {
        return Ok(());
    }
    require(state, headers, "view_all").await.map(|_| ())
}

/// Parses the filters of the uploads list.
pub fn upload_query(query: Option<&str>) -> Result<UploadQuery, String> {
    let now = time::OffsetDateTime::now_utc();
    let mut q = UploadQuery {
        page: 1,
        ..UploadQuery::default()
    };
    for (k, v) in filters::query_pairs(query) {
        match k.as_str() {
            "user" if !v.is_empty() => q.user = Some(v),
            "size" if !v.is_empty() => q.size.push(filters::size("size", &v)?),
            "created_at" if !v.is_empty() => {
                q.created_at.extend(filters::date("created_at", &v, now)?)
            }
            "try" if !v.is_empty() => q.is_try = Some(filters::boolean("try", &v)?),
            "sort" if !v.is_empty() => q.sort = UploadSort::parse(&v).ok_or_else(|| {
                format!(
                    "sort: {v:?} is not one of created_at, completed_at, size, user, files_count"
                )
            })?,
            "reverse" if !v.is_empty() => q.reverse = filters::boolean("reverse", &v)?,
            "page" => q.page = filters::page(&v)?,
            _ => {}
        }
    }
    Ok(q)
}

/// Parses the filters of the files list.
pub fn file_query(query: Option<&str>) -> Result<FileQuery, String> {
    let now = time::OffsetDateTime::now_utc();
    let mut q = FileQuery {
        page: 1,
        ..FileQuery::default()
    };
    for (k, v) in filters::query_pairs(query) {
        match k.as_str() {
            "key" => q.key.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "q" if !v.trim().is_empty() => q.q = Some(v),
            "size" if !v.is_empty() => q.size.push(filters::size("size", &v)?),
            "created_at" if !v.is_empty() => {
                q.created_at.extend(filters::date("created_at", &v, now)?)
            }
            "try" if !v.is_empty() => q.is_try = Some(filters::boolean("try", &v)?),
            "page" => q.page = filters::page(&v)?,
            _ => {}
        }
    }
    Ok(q)
}

/// The start of the current UTC day, in ms.
pub fn today_start() -> i64 {
    let now = now_ms();
    now - now.rem_euclid(86_400_000)
}
