//! The records API (JSON), the missing-symbols CSV, `/metrics`,
//! `/upload/auth_info/`, and the token API.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::error::Error;
use crate::filters;
use crate::http::body::{self, Body};
use crate::http::error::{json_error, json_status, method_not_allowed};
use crate::http::request::{
    blocking, file_query, presented_token, require, require_records, today_start, upload_query,
};
use crate::http::routes::Api;
use crate::http::state::AppState;
use crate::identity::lookup::display;
use crate::store::missing::MissingRow;
use crate::store::records::{MemberRow, Page, Stats};
use crate::store::tokens::{MAX_LIFETIME_DAYS, NewToken, Token};
use crate::store::{KeyRow, Namespace, UploadRow, now_ms};
use crate::units::rfc3339;

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| json!(rfc3339(t)))
}

pub fn upload_json(u: &UploadRow) -> Value {
    json!({
        "id": u.id,
        "user": u.user,
        "filename": u.filename,
        "size": u.size,
        "download_url": u.download_url,
        "try_symbols": u.try_symbols,
        "status": u.status,
        "http_status": u.http_status,
        "error": u.error,
        "files_count": u.files_count,
        "created_at": time(Some(u.created_at)),
        "completed_at": time(u.completed_at),
    })
}

fn member_json(m: &MemberRow) -> Value {
    json!({
        "key": m.key, "outcome": m.outcome, "size": m.size, "stored_size": m.stored_size,
        "blake3": m.blake3, "debug_file": m.debug_file, "debug_id": m.debug_id,
        "code_file": m.code_file, "code_id": m.code_id, "generator": m.generator, "error": m.error,
    })
}

pub fn file_json(k: &KeyRow) -> Value {
    json!({
        "id": k.id, "key": k.key, "try": k.namespace == Namespace::Try,
        "namespace": k.namespace.as_str(), "size": k.size,
        "stored_size": k.stored_size, "encoding": k.encoding.as_str(), "blake3": k.blob, "kind": k.kind.as_str(),
        "debug_file": k.debug_file, "debug_id": k.debug_id, "code_file": k.code_file,
        "code_id": k.code_id, "generator": k.generator, "os": k.os, "arch": k.arch,
        "upload_id": k.upload_id, "created_at": time(Some(k.created_at)),
        "last_uploaded_at": time(Some(k.last_uploaded_at)),
    })
}

fn token_json(t: &Token) -> Value {
    json!({
        "id": t.id, "user": t.user, "permissions": t.permissions, "notes": t.note,
        "created_at": time(Some(t.created_at)), "expires_at": time(t.expires_at),
        "revoked_at": time(t.revoked_at),
        "is_expired": t.expires_at.is_some_and(|e| e <= now_ms()),
    })
}

fn list<T>(name: &str, page: &Page<T>, f: impl Fn(&T) -> Value) -> Value {
    json!({
        name: page.items.iter().map(f).collect::<Vec<_>>(),
        "total": page.total,
        "page": page.page,
        "has_next": page.has_next,
        "batch_size": crate::store::records::PAGE_SIZE,
    })
}

fn ok(value: Value) -> Response<Body> {
    body::json(StatusCode::OK, &value)
}

fn bad(msg: String) -> Response<Body> {
    json_error(&Error::BadRequest(msg))
}

fn not_found() -> Response<Body> {
    json_status(StatusCode::NOT_FOUND, "Not Found")
}

fn reply<T>(r: crate::Result<T>, f: impl FnOnce(T) -> Response<Body>) -> Response<Body> {
    match r {
        Ok(v) => f(v),
        Err(e) => json_error(&e),
    }
}

/// Answers `/api/...`.
pub async fn api(state: Arc<AppState>, req: Request<Incoming>, route: Api) -> Response<Body> {
    if matches!(route, Api::Tokens | Api::Token(_)) {
        return tokens(state, req, route).await;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed("GET, HEAD", true);
    }
    if let Err(resp) = require_records(&state, req.headers()).await {
        return resp;
    }
    let query = req.uri().query().map(String::from);
    let query = query.as_deref();
    match route {
        Api::Uploads => match upload_query(query) {
            Ok(q) => reply(blocking(&state, move |s| s.list_uploads(&q)).await, |p| {
                ok(list("uploads", &p, upload_json))
            }),
            Err(m) => bad(m),
        },
        Api::Upload(id) => {
            let found = blocking(&state, move |s| {
                Ok(s.upload(id)?.map(|u| (u, s.upload_members(id))))
            })
            .await;
            reply(found, |found| match found {
                Some((u, Ok(members))) => {
                    let mut v = upload_json(&u);
                    v["files"] = members.iter().map(member_json).collect();
                    ok(json!({ "upload": v }))
                }
                Some((_, Err(e))) => json_error(&e),
                None => not_found(),
            })
        }
        Api::Files => match file_query(query) {
            Ok(q) => reply(blocking(&state, move |s| s.list_files(&q)).await, |p| {
                ok(list("files", &p, file_json))
            }),
            Err(m) => bad(m),
        },
        Api::File(id) => {
            let found = blocking(&state, move |s| {
                let Some(k) = s.key_by_id(id)? else {
                    return Ok(None);
                };
                let fetch = s.fetch_of(&k)?;
                Ok(Some((s.lookups_of(k.id), k, fetch)))
            })
            .await;
            reply(found, |found| match found {
                Some((Ok(lookups), k, fetch)) => {
                    let mut v = file_json(&k);
                    v["urls"] = lookups.iter().map(|l| display(l)).collect();
                    if let Some(f) = fetch {
                        v["fetched_from"] = json!(f.download_url);
                        v["fetched_at"] = time(Some(f.created_at));
                    }
                    ok(json!({ "file": v }))
                }
                Some((Err(e), _, _)) => json_error(&e),
                None => not_found(),
            })
        }
        Api::SymInfo(file, id) => {
            let found = blocking(&state, move |s| s.syminfo(&file, &id)).await;
            reply(found, |found| match found {
                Some(k) => ok(json!({
                    "debug_filename": k.debug_file, "debug_id": k.debug_id, "code_file": k.code_file,
                    "code_id": k.code_id, "generator": k.generator, "url": format!("/{}", k.key),
                })),
                None => not_found(),
            })
        }
        Api::Missing => {
            let page = match filters::query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "page")
            {
                Some((_, v)) => match filters::page(&v) {
                    Ok(p) => p,
                    Err(m) => return bad(m),
                },
                None => 1,
            };
            reply(blocking(&state, move |s| s.list_missing(page)).await, |p| {
                ok(list("missing", &p, |m| {
                    json!({
                        "debug_file": m.debug_file, "debug_id": m.debug_id, "code_file": m.code_file,
                        "code_id": m.code_id, "count": m.count, "first_seen": time(Some(m.first_seen)),
                        "last_seen": time(Some(m.last_seen)),
                    })
                }))
            })
        }
        Api::Stats => reply(blocking(&state, |s| s.stats(today_start())).await, |st| {
            ok(stats_json(&st))
        }),
        Api::NotFound | Api::Tokens | Api::Token(_) => not_found(),
    }
}

fn stats_json(s: &Stats) -> Value {
    json!({
        "uploads": { "today": s.uploads_today, "yesterday": s.uploads_yesterday, "last_30_days": s.uploads_30_days },
        "files": { "count": s.files, "bytes": s.files_bytes, "stored_bytes": s.stored_bytes },
        "blobs": { "count": s.blobs, "bytes": s.blob_bytes },
        "deduplicated_bytes_saved": s.dedup_saved_bytes(),
        "missing_symbols": s.missing,
    })
}

/// Rows of the report read from the index per chunk of the CSV.
const CSV_CHUNK_ROWS: u64 = 500;

/// `/missingsymbols.csv`: streamed, read from the index a chunk of rows at a
/// time on a blocking thread, so neither the body nor a reader connection is
/// held whole however large the report or slow the client.
pub async fn missing_csv(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    if let Err(resp) = require_records(&state, req.headers()).await {
        return resp;
    }
    // The first chunk is read before answering, so a broken index is a 500, not a cut body.
    let first = blocking(&state, |s| s.missing_chunk(None, CSV_CHUNK_ROWS)).await;
    let first = match first {
        Ok(rows) => rows,
        Err(e) => return json_error(&e),
    };
    let store = state.store.clone();
    let body = body::from_blocking(move |send| {
        let mut out =
            String::from("debug_file,debug_id,code_file,code_id,count,first_seen,last_seen\n");
        let mut rows = first;
        loop {
            for m in &rows {
                csv_row(&mut out, m);
            }
            if !send(std::mem::take(&mut out).into()) {
                return Ok(()); // the client went away
            }
            let Some(last) = rows.last().filter(|_| rows.len() as u64 == CSV_CHUNK_ROWS) else {
                return Ok(());
            };
            rows = store
                .missing_chunk(Some(last.cursor()), CSV_CHUNK_ROWS)
                .map_err(std::io::Error::other)?;
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    resp
}

/// Appends one row of the report.
fn csv_row(out: &mut String, m: &MissingRow) {
    let fields = [
        csv(&m.debug_file),
        csv(&m.debug_id),
        csv(&m.code_file),
        csv(&m.code_id),
        m.count.to_string(),
        rfc3339(m.first_seen),
        rfc3339(m.last_seen),
    ];
    out.push_str(&fields.join(","));
    out.push('\n');
}

/// A text cell of a CSV the server writes. A cell a spreadsheet would read
/// as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) gets a leading `'` so it is shown as text, and the cell is
/// quoted when it needs it (RFC 4180).
pub fn csv(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let text = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if formula || text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `/metrics`.
pub async fn metrics(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    if let Err(resp) = require_records(&state, req.headers()).await {
        return resp;
    }
    reply(
        blocking(&state, |s| s.stats(today_start())).await,
        |stats| {
            body::with_type(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                state.metrics.render(&stats),
            )
        },
    )
}

/// `POST /upload/auth_info/`.
pub async fn auth_info(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST", true);
    }
    match presented_token(&state, req.headers()).await {
        None => json_error(&Error::Unauthenticated(
            "an Auth-Token header is required".into(),
        )),
        Some(Err(e)) => json_error(&e),
        Some(Ok(t)) => ok(json!({
            "user": t.user,
            "permissions": t.permissions,
            "try_only": t.has("upload_try") && !t.has("upload"),
            "token_expires_at": time(t.expires_at),
        })),
    }
}

/// `GET/POST /api/tokens/`, `DELETE /api/tokens/token/<id>`: need `manage_tokens`.
async fn tokens(state: Arc<AppState>, req: Request<Incoming>, route: Api) -> Response<Body> {
    let me = match require(&state, req.headers(), "manage_tokens").await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    match (route, req.method().clone()) {
        (Api::Tokens, Method::GET) => reply(blocking(&state, |s| s.list_tokens()).await, |ts| {
            let page = Page {
                total: ts.len() as u64,
                items: ts,
                page: 1,
                has_next: false,
            };
            ok(list("tokens", &page, token_json))
        }),
        (Api::Tokens, Method::POST) => create_token(state, req, me).await,
        (Api::Token(id), Method::DELETE) => reply(
            blocking(&state, move |s| s.revoke_token(id)).await,
            |found| {
                if found {
                    ok(json!({ "revoked": id }))
                } else {
                    not_found()
                }
            },
        ),
        (Api::Tokens, _) => method_not_allowed("GET, POST", true),
        _ => method_not_allowed("DELETE", true),
    }
}

/// What `expires` of `POST /api/tokens/` must be.
const EXPIRES_RULE: &str = "expires: a whole number of days from 1 to 36500 (100 years)";

/// Whether `me` may put `permission` in a token it creates: only what it
/// holds (`upload` covers `upload_try`). Unknown names are left to the store,
/// which refuses them with 400.
fn may_grant(me: &Token, permission: &str) -> bool {
    me.has(permission)
        || (permission == "upload_try" && me.has("upload"))
        || !crate::store::tokens::PERMISSIONS.contains(&permission)
}

/// Creates a token for the caller's user from JSON `{"permissions": [...],
/// "notes": "...", "expires": <days>}` (or the same as a form, permissions
/// comma-separated). The secret is in the answer, once.
async fn create_token(state: Arc<AppState>, req: Request<Incoming>, me: Token) -> Response<Body> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad("the request body is too large or unreadable".into()),
    };
    let (permissions, notes, days) = if is_json {
        let v: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return bad(format!("invalid JSON: {e}")),
        };
        let perms: Vec<String> = match &v["permissions"] {
            Value::Array(a) => a
                .iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect(),
            Value::String(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        let days = match &v["expires"] {
            Value::Null => None,
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            _ => return bad(EXPIRES_RULE.into()),
        };
        (perms, v["notes"].as_str().unwrap_or("").to_string(), days)
    } else {
        let pairs = filters::query_pairs(std::str::from_utf8(&bytes).ok());
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let perms = pairs
            .iter()
            .filter(|(k, _)| k == "permissions")
            .flat_map(|(_, v)| v.split(',').map(|p| p.trim().to_string()))
            .filter(|p| !p.is_empty())
            .collect();
        let days = match get("expires").map(|d| d.parse::<u64>()) {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => return bad(EXPIRES_RULE.into()),
            None => None,
        };
        (perms, get("notes").unwrap_or_default(), days)
    };
    if let Some(p) = permissions.iter().find(|p| !may_grant(&me, p)) {
        return json_status(
            StatusCode::FORBIDDEN,
            &format!(
                "this token lacks the {p} permission, so it cannot grant it; a token may grant only permissions it holds"
            ),
        );
    }
    let asked = days.is_some();
    let days = days.unwrap_or(365);
    if !(1..=MAX_LIFETIME_DAYS).contains(&days) {
        return bad(EXPIRES_RULE.into());
    }
    let expires_in_ms = days as i64 * 86_400_000;
    // A token cannot outlive the token that creates it: an expiring
    // credential would otherwise renew itself for a century. The store caps
    // the new expiry at the creator's, at the very moment it writes it.
    if let Some(left) = me.expires_at.map(|at| at - crate::store::now_ms())
        && expires_in_ms > left
        && asked
    {
        return json_status(
            StatusCode::FORBIDDEN,
            "expires: a token may not outlive the token that creates it; this one expires sooner",
        );
    }
    let expires_by = me.expires_at;
    let expires_in_ms = Some(expires_in_ms);
    let created = blocking(&state, move |s| {
        s.create_token(&NewToken {
            user: &me.user,
            permissions: &permissions,
            note: &notes,
            expires_in_ms,
            expires_by,
        })
    })
    .await;
    reply(created, |(token, secret)| {
        let mut v = token_json(&token);
        v["key"] = json!(secret);
        body::json(StatusCode::CREATED, &json!({ "token": v }))
    })
}

#[cfg(test)]
mod tests {
    use super::csv;

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(csv("xul.pdb"), "xul.pdb");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        for bad in ["+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            let cell = csv(bad);
            assert!(cell.starts_with("\"'"), "{bad:?} gave {cell:?}");
        }
        assert_eq!(csv(""), "");
    }
}
