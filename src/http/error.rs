//! How each core error is answered on the JSON routes (its status is
//! [`Error::status`]).

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::body::{self, Body};
use crate::error::Error;

/// The HTTP status for a core error: [`Error::status`] as a `StatusCode`.
pub fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The message a client sees. Internal failures are not detailed beyond
/// their kind; the log has the rest.
pub fn message_of(e: &Error) -> String {
    match e {
        Error::Io(_) | Error::Db(_) => {
            tracing::error!(error = %e, "internal error");
            "the server failed to store or read symbols; whatever was committed before stays. Retry later.".into()
        }
        other => other.to_string(),
    }
}

/// A JSON error response `{"error": ...}` (with `member` and `rule` when a
/// member broke a rule).
pub fn json_error(e: &Error) -> Response<Body> {
    let mut value = json!({ "error": message_of(e) });
    if let Error::Invalid { member, rule } = e {
        value["member"] = json!(member);
        value["rule"] = json!(rule);
    }
    let mut resp = body::json(status_of(e), &value);
    if let Error::Unavailable(_) = e {
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("30"),
        );
    }
    resp
}

/// A JSON error with an explicit status.
pub fn json_status(status: StatusCode, message: &str) -> Response<Body> {
    body::json(status, &json!({ "error": message }))
}

/// `405` naming the allowed methods.
pub fn method_not_allowed(allow: &'static str, json_body: bool) -> Response<Body> {
    let mut resp = if json_body {
        json_status(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
    } else {
        body::with_type(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "Method Not Allowed",
        )
    };
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}
