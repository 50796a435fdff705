//! The request log: one line per answered request, written when its body has
//! been sent (or the client went away), under the target `symdepot::request`.
//!
//! A line carries the method, the path (never the query string, which may
//! hold a URL with credentials; at most 1 KiB of it, every byte that is not
//! visible ASCII percent-encoded), the status, the bytes of body sent, the
//! duration from the request's arrival to the body's end, and the user of
//! the token the request presented ([`note_user`]); never the secret.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::body::Body;

tokio::task_local! {
    /// The user of the token the request being answered presented.
    static USER: RefCell<Option<String>>;
}

/// Notes the user whose token the current request presented (a no-op outside
/// a request).
pub fn note_user(user: &str) {
    let _ = USER.try_with(|u| *u.borrow_mut() = Some(user.to_string()));
}

/// Runs a request's handler, returning its answer and the user it noted.
pub async fn with_user<F: Future>(handler: F) -> (F::Output, Option<String>) {
    USER.scope(RefCell::new(None), async {
        let answer = handler.await;
        let user = USER.with(|u| u.borrow_mut().take());
        (answer, user)
    })
    .await
}

/// What a request's log line says besides its body's bytes.
#[derive(Debug)]
pub struct Line {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub user: Option<String>,
    pub began: Instant,
}

/// Whether request lines are written at all (`SYMDEPOT_LOG` may turn them off).
pub fn enabled() -> bool {
    tracing::enabled!(target: "symdepot::request", tracing::Level::INFO)
}

/// Wraps an answer's body so that its line is written when the body ends.
pub fn logged(resp: Response<Body>, line: Line) -> Response<Body> {
    resp.map(|inner| {
        Counted {
            inner,
            sent: 0,
            line: Some(line),
        }
        .boxed()
    })
}

/// A body that counts what it sends and writes the request's line when dropped.
struct Counted {
    inner: Body,
    sent: u64,
    line: Option<Line>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Longest path a request line shows (the rest is cut, marked with `…`).
const PATH_SHOWN: usize = 1024;
/// Longest method a request line shows.
const METHOD_SHOWN: usize = 32;

/// `s` as a log line may show it: at most `max` bytes of it, every byte that
/// is not visible ASCII percent-encoded (a client cannot break, forge or hide
/// a line with control, separator, bidi or space characters), `…` if cut.
fn shown(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 3);
    for b in s.bytes().take(max) {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if s.len() > max {
        out.push('…');
    }
    out
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(l) = self.line.take() {
            tracing::info!(
                target: "symdepot::request",
                method = %shown(l.method.as_str(), METHOD_SHOWN),
                path = %shown(&l.path, PATH_SHOWN),
                status = l.status,
                bytes = self.sent,
                duration_ms = l.began.elapsed().as_secs_f64() * 1000.0,
                user = l.user.as_deref().unwrap_or("-"),
                "request"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_path_cannot_break_forge_or_hide_a_line() {
        let hostile = "/x\u{2003}status=200\u{85}\u{202e}user=\"admin\"\n%";
        let line = shown(hostile, 1024);
        assert!(line.bytes().all(|b| b.is_ascii_graphic()), "{line}");
        assert_eq!(shown("/a b", 1024), "/a%20b");
        assert_eq!(
            shown("/%41", 1024),
            "/%2541",
            "a % is encoded too: lines decode one way"
        );
        assert_eq!(shown(&"a".repeat(2000), 1024).len(), 1024 + '…'.len_utf8());
    }
}
