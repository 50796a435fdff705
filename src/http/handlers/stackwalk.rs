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
use maud::{Markup, html};
use serde_json::Value;

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
        Ok(json) if html => page_answer(&state, json).await,
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

/// The walker's JSON for a page, rendered off the async threads and held
/// against the memory budget like any other answer.
async fn page_answer(state: &AppState, json: Vec<u8>) -> Response<Body> {
    let rendered = tokio::task::spawn_blocking(move || {
        serde_json::from_slice::<Value>(&json).map(|v| page(&v))
    })
    .await;
    match rendered {
        Ok(Ok(inner)) => {
            let len = inner.0.len();
            let resp = crate::http::handlers::pages::layout("Stack walk", inner);
            held(state, resp, len).await
        }
        Ok(Err(e)) => json_error(&Error::Io(std::io::Error::other(e))),
        Err(e) => json_error(&Error::Io(std::io::Error::other(e))),
    }
}

/// A stack walk as a page, from what the walker cut for it
/// (`walker::for_page`): the crash, the crashing thread first, each frame with
/// its module, function and file:line, then the modules without symbols.
fn page(walk: &Value) -> Markup {
    let crash = &walk["crash_info"];
    let crashing = walk["crashing_thread"].as_u64();
    html! {
        h1 { "Stack walk" }
        @if crash["type"].is_string() {
            p {
                "Crash: " code { (text(&crash["type"])) } " at " code { (text(&crash["address"])) }
                ", thread " (crash["crashing_thread"])
            }
        }
        @for t in walk["threads"].as_array().into_iter().flatten() {
            (thread(t, crashing))
        }
        @if let Some(more) = walk["threads_omitted"].as_u64().filter(|&n| n > 0) {
            p { (more) " more threads (the JSON answer has them all)." }
        }
        h2 { "Modules without symbols (" (walk["modules_without_symbols_count"]) ")" }
        p { "Counted in the " a href="/missing" { "missing-symbols report" } "." }
        ul {
            @for m in walk["modules_without_symbols"].as_array().into_iter().flatten() {
                li.mono { (text(&m["debug_file"])) " " (text(&m["debug_id"])) }
            }
        }
    }
}

/// A JSON string's text, empty for anything else.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// One thread of a walk: its frames as a table, and how many were cut.
fn thread(t: &Value, crashing: Option<u64>) -> Markup {
    let i = t["index"].as_u64().unwrap_or_default();
    let label = if Some(i) == crashing {
        " (crashed)"
    } else {
        ""
    };
    html! {
        h2 { "Thread " (i) (label) " " (text(&t["thread_name"])) }
        table {
            tr { th { "#" } th { "Module" } th { "Function" } th { "Source" } th { "Found by" } }
            @for f in t["frames"].as_array().into_iter().flatten() { (frame_row(f)) }
        }
        @if let Some(more) = t["frames_omitted"].as_u64().filter(|&n| n > 0) {
            p { (more) " more frames (the JSON answer has them all)." }
        }
    }
}

fn frame_row(f: &Value) -> Markup {
    html! {
        tr {
            td { (f["frame"]) }
            td { (text(&f["module"])) }
            td.mono {
                @match f["function"].as_str() {
                    Some(name) => { (name) " + " (text(&f["function_offset"])) }
                    None => { (text(&f["module_offset"])) }
                }
            }
            td.mono {
                @if let (Some(file), Some(line)) = (f["file"].as_str(), f["line"].as_u64()) {
                    (file) ":" (line)
                }
            }
            td { (text(&f["trust"])) }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_name_in_a_walk_is_shown_escaped() {
        let hostile = "\"><script>alert(1)</script>";
        let walk = serde_json::json!({
            "crash_info": {"type": hostile, "address": "0x0", "crashing_thread": 0},
            "crashing_thread": 0,
            "threads": [{"index": 0, "thread_name": hostile, "frames": [
                {"frame": 0, "module": hostile, "function": hostile, "function_offset": "0x1",
                 "file": hostile, "line": 3, "trust": "context"}]}],
            "modules_without_symbols": [{"debug_file": hostile, "debug_id": "0"}],
            "modules_without_symbols_count": 1,
        });
        let html = page(&walk).into_string();
        assert!(
            !html.contains("<script") && !html.contains("\"><"),
            "{html}"
        );
        let escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;";
        assert_eq!(html.matches(escaped).count(), 6, "{html}");
        assert!(html.contains("<tr><td>0</td>"), "{html}");
    }
}
