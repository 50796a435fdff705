//! `POST /stackwalk`: a minidump in (the raw body, or the multipart field
//! `upload_file_minidump` crash reporters send), the JSON `minidump-stackwalk
//! --json` prints out — rust-minidump's `minidump-processor` in a walker
//! process ([`crate::symbolicate::walker`]) with the store as its symbol
//! source (no HTTP round trips to itself). Bounded by `max_minidump_bytes`,
//! `max_stackwalk_memory`, at most [`crate::http::state::STACKWALKS_AT_ONCE`]
//! at a time, each within [`crate::symbolicate::walker::TIME_CAP`].

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::symbolicate::sym_row_of_key;
use crate::Error;
use crate::http::body::{self, Body};
use crate::http::error::{json_error, method_not_allowed};
use crate::http::state::{AppState, held};
use crate::store::missing::Miss;
use crate::symbolicate::walker::{SymbolSource, SymbolsWanted, WalkError};

/// Answers `POST /stackwalk`.
pub async fn stackwalk(
    state: Arc<AppState>,
    req: Request<Incoming>,
    include_try: bool,
) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST", true);
    }
    if (state.http.private_downloads || !state.http.public_stackwalk)
        && let Err(refused) = crate::http::request::require(&state, req.headers(), "download").await
    {
        return refused;
    }
    // A turn first: at most that many minidumps are read into memory at once.
    let _turn = match crate::http::state::turn(&state.stackwalks, "stack walks").await {
        Ok(turn) => turn,
        Err(e) => return json_error(&e),
    };
    let html = (req.headers().get(header::ACCEPT))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let content_type = (req.headers().get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let max = state.http.max_minidump_bytes;
    // A multipart body carries a little more than the minidump.
    let limit = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let what = "a minidump (max_minidump_bytes, with room for a multipart body's parts)";
    let read = body::read_bounded(req.into_body(), limit, what, state.http.request_timeout);
    let bytes = match read.await {
        Ok(b) => b,
        Err(e) => return json_error(&e),
    };
    let dump = match minidump_of_body(bytes, &content_type).await {
        Ok(d) if d.len() as u64 <= max => d,
        Ok(_) => {
            return json_error(&Error::TooLarge(format!(
                "a minidump is at most max_minidump_bytes ({max} bytes)"
            )));
        }
        Err(why) => return json_error(&Error::BadRequest(why)),
    };
    let symbols = StoreSymbols {
        state: state.clone(),
        include_try,
    };
    match state.http.walker.walk(dump, &symbols, html).await {
        Ok(json) if html => {
            let rendered = tokio::task::spawn_blocking(move || {
                serde_json::from_slice::<serde_json::Value>(&json).map(|v| page(&v))
            })
            .await;
            match rendered {
                Ok(Ok(inner)) => {
                    let len = inner.len();
                    held(
                        &state,
                        crate::http::handlers::pages::layout("Stack walk", &inner),
                        len,
                    )
                    .await
                }
                Ok(Err(e)) => json_error(&Error::Io(std::io::Error::other(e))),
                Err(e) => json_error(&Error::Io(std::io::Error::other(e))),
            }
        }
        Ok(json) => {
            let len = json.len();
            let resp = body::with_type(StatusCode::OK, "application/json", json);
            held(&state, resp, len).await
        }
        Err(
            e @ (WalkError::BadDump(_) | WalkError::TooMuchMemory(_) | WalkError::AnswerTooLarge),
        ) => json_error(&Error::BadRequest(e.to_string())),
        Err(e @ WalkError::TimedOut(_)) => {
            crate::http::error::json_status(StatusCode::GATEWAY_TIMEOUT, &e.to_string())
        }
        Err(e @ WalkError::Failed(_)) => {
            json_error(&Error::Io(std::io::Error::other(e.to_string())))
        }
    }
}

/// A stack walk as a page, from what the walker cut for it
/// (`walker::for_page`): the crash, the crashing thread first, each frame with
/// its module, function and file:line, then the modules without symbols.
fn page(walk: &serde_json::Value) -> String {
    use crate::http::handlers::pages::esc;
    let text = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    let mut html = String::from("<h1>Stack walk</h1>");
    let crash = &walk["crash_info"];
    if crash["type"].is_string() {
        html.push_str(&format!(
            "<p>Crash: <code>{}</code> at <code>{}</code>, thread {}</p>",
            text(&crash["type"]),
            text(&crash["address"]),
            crash["crashing_thread"]
        ));
    }
    let crashing = walk["crashing_thread"].as_u64();
    for t in walk["threads"].as_array().into_iter().flatten() {
        let i = t["index"].as_u64().unwrap_or_default();
        let label = if Some(i) == crashing {
            " (crashed)"
        } else {
            ""
        };
        html.push_str(&format!(
            "<h2>Thread {i}{label} {}</h2><table><tr><th>#</th><th>Module</th><th>Function</th>\
             <th>Source</th><th>Found by</th></tr>",
            text(&t["thread_name"])
        ));
        for f in t["frames"].as_array().into_iter().flatten() {
            let function = match f["function"].as_str() {
                Some(name) => format!("{} + {}", esc(name), text(&f["function_offset"])),
                None => text(&f["module_offset"]),
            };
            let source = match (f["file"].as_str(), f["line"].as_u64()) {
                (Some(file), Some(line)) => format!("{}:{line}", esc(file)),
                _ => String::new(),
            };
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{function}</td><td class=\"mono\">{source}</td>\
                 <td>{}</td></tr>",
                f["frame"],
                text(&f["module"]),
                text(&f["trust"])
            ));
        }
        html.push_str("</table>");
        if let Some(more) = t["frames_omitted"].as_u64().filter(|&n| n > 0) {
            html.push_str(&format!(
                "<p>{more} more frames (the JSON answer has them all).</p>"
            ));
        }
    }
    if let Some(more) = walk["threads_omitted"].as_u64().filter(|&n| n > 0) {
        html.push_str(&format!(
            "<p>{more} more threads (the JSON answer has them all).</p>"
        ));
    }
    let missing: Vec<String> = (walk["modules_without_symbols"]
        .as_array()
        .into_iter()
        .flatten())
    .map(|m| {
        format!(
            "<li class=\"mono\">{} {}</li>",
            text(&m["debug_file"]),
            text(&m["debug_id"])
        )
    })
    .collect();
    html.push_str(&format!(
        "<h2>Modules without symbols ({})</h2><p>Counted in the <a href=\"/missing\">missing-symbols \
         report</a>.</p><ul>{}</ul>",
        walk["modules_without_symbols_count"],
        missing.concat()
    ));
    html
}

/// The minidump of a body: the multipart field `upload_file_minidump`, or
/// the body itself.
async fn minidump_of_body(bytes: bytes::Bytes, content_type: &str) -> Result<Vec<u8>, String> {
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Ok(bytes.to_vec());
    }
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| format!("a multipart body without a boundary: {e}"))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut parts = multer::Multipart::new(stream, boundary);
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|e| format!("a malformed multipart body: {e}"))?
    {
        if field.name() == Some("upload_file_minidump") {
            return field
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| format!("a malformed multipart body: {e}"));
        }
    }
    Err("a multipart body without an upload_file_minidump field".to_string())
}

/// The store as the walker's symbol source: each module's `.sym` found as
/// downloads find it (generated or fetched when missing), streamed to the
/// walker; modules without one noted in the missing-symbols report.
struct StoreSymbols {
    state: Arc<AppState>,
    include_try: bool,
}

#[async_trait::async_trait]
impl SymbolSource for StoreSymbols {
    async fn open(&self, wanted: &SymbolsWanted) -> Option<Box<dyn std::io::Read + Send>> {
        let found = match sym_row_of_key(&self.state, &wanted.key, self.include_try).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(key = wanted.key, error = %e, "symbols unreadable for a stack walk");
                None
            }
        };
        let opened = match found {
            Some(row) => {
                let store = self.state.store.clone();
                let opened = tokio::task::spawn_blocking(move || store.open_original(&row)).await;
                match opened {
                    Ok(Ok(reader)) => Some(reader),
                    Ok(Err(e)) => {
                        tracing::warn!(key = wanted.key, error = %e, "a .sym could not be opened for a stack walk");
                        None
                    }
                    Err(_) => None,
                }
            }
            None => None,
        };
        if opened.is_none()
            && let Some(miss) = Miss::new(
                &wanted.debug_file,
                &wanted.debug_id,
                &wanted.code_file,
                &wanted.code_id,
            )
        {
            self.state.missing.record(miss);
            self.state.metrics.missing_recorded.inc();
        }
        opened
    }
}
