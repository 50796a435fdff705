//! The one error type of the core (store, ingest, identity).
//!
//! Each variant has exactly one HTTP status ([`Error::status`]), which the
//! server answers with and upload records keep whoever made the upload; the
//! command line prints the message. Variants carry enough to name the
//! offending member and the rule it broke, because every rejection must say
//! both. The core knows statuses as numbers only: turning them into responses
//! is the server's business.

use std::io;

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A member of an upload broke a rule (400). `member` is its name in the zip.
    #[error("member {member:?}: {rule}")]
    Invalid { member: String, rule: String },
    /// The request as a whole is malformed (400), e.g. not a zip or a bad `try` value.
    #[error("{0}")]
    BadRequest(String),
    /// Over a configured size, count or ratio limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// No credentials, or credentials that are unknown, expired or revoked (403 on
    /// upload routes; 401 on download routes of a private store).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the needed permission (403).
    #[error("{0}")]
    Forbidden(String),
    /// Over a rate or concurrency limit (429).
    #[error("{0}")]
    TooMany(String),
    /// Upload by download: the remote answered an error or could not be reached (502).
    #[error("{0}")]
    BadGateway(String),
    /// The client stopped sending its request body (408).
    #[error("{0}")]
    Timeout(String),
    /// Upload by download: the remote took too long (504).
    #[error("{0}")]
    GatewayTimeout(String),
    /// Nothing stored under the requested key (404).
    #[error("not found")]
    NotFound,
    /// The store refuses work that would lose what it holds: an index that is
    /// missing or empty while blobs are stored, a GC run over its share (503;
    /// the command line prints what to run instead).
    #[error("{0}")]
    Refused(String),
    /// A service the store depends on (the object store, PostgreSQL) is
    /// failing or out of reach (503 with `Retry-After`); nothing
    /// half-committed is left.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// The data dir's filesystem is full (507).
    #[error("the data directory's filesystem is full: {0}")]
    StorageFull(String),
    /// The work was stopped because whoever asked for it went away: an upload's
    /// client closed its connection (499, nginx's "client closed request"; no
    /// client ever sees it). What was committed before stays.
    #[error("{0}")]
    Cancelled(String),
    /// Any other filesystem failure (500).
    #[error("storage error: {0}")]
    Io(io::Error),
    /// A SQLite failure (500).
    #[error("index error: {0}")]
    Db(crate::store::DbError),
}

/// Longest member name an error repeats, in bytes.
pub const MAX_NAMED: usize = 512;

/// `s` cut to at most `max` bytes at a character boundary, marked with `…`.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Error {
    /// Shorthand for [`Error::Invalid`]. A member name longer than
    /// [`MAX_NAMED`] bytes is cut there (with `…`): errors are recorded and
    /// shown, and a name from a zip can be 64 KiB long.
    pub fn invalid(member: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Invalid {
            member: cut(member.into(), MAX_NAMED),
            rule: cut(rule.into(), 4 * MAX_NAMED),
        }
    }
}

impl Error {
    /// The HTTP status this error is answered with. This is the whole table;
    /// each variant's documentation gives its status too.
    pub fn status(&self) -> u16 {
        match self {
            // A member broke a rule, or the request is malformed.
            Error::Invalid { .. } | Error::BadRequest(_) => 400,
            // Payload Too Large.
            Error::TooLarge(_) => 413,
            // Routes that answer 401 to missing credentials (with
            // `WWW-Authenticate`) decide so themselves.
            Error::Unauthenticated(_) | Error::Forbidden(_) => 403,
            // Too Many Requests.
            Error::TooMany(_) => 429,
            // Upload by download: the remote failed, or was too slow.
            Error::BadGateway(_) => 502,
            Error::GatewayTimeout(_) => 504,
            // Request Timeout: the client stopped sending its body.
            Error::Timeout(_) => 408,
            Error::NotFound => 404,
            // Insufficient Storage.
            Error::StorageFull(_) => 507,
            // Service Unavailable: the store refuses work that would lose data.
            Error::Refused(_) => 503,
            // Service Unavailable: the object store fails; retry later.
            Error::Unavailable(_) => 503,
            // nginx's "client closed request": recorded, never sent.
            Error::Cancelled(_) => 499,
            // Internal Server Error.
            Error::Io(_) | Error::Db(_) => 500,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        // ENOSPC and EDQUOT: the disk (or the quota) is full. Errors that carry
        // a path (tempfile's) keep the kind but not the raw code.
        let full = matches!(e.raw_os_error(), Some(28 | 122))
            || matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            );
        if full {
            Error::StorageFull(e.to_string())
        } else {
            Error::Io(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_in_errors_are_cut_at_a_character_boundary() {
        let long = "é".repeat(1000);
        let Error::Invalid { member, rule } = Error::invalid(long.clone(), long) else {
            unreachable!()
        };
        assert!(
            member.len() <= MAX_NAMED + '…'.len_utf8(),
            "{}",
            member.len()
        );
        assert!(member.ends_with('…'));
        assert!(rule.len() <= 4 * MAX_NAMED + '…'.len_utf8());
        let short = Error::invalid("a/b/c", "rule").to_string();
        assert_eq!(short, "member \"a/b/c\": rule");
    }

    #[test]
    fn a_full_disk_is_storage_full_with_or_without_a_raw_code() {
        let raw = io::Error::from_raw_os_error(28);
        assert!(matches!(Error::from(raw), Error::StorageFull(_)));
        // tempfile wraps errors with the path: the kind stays, the raw code goes.
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, "No space left at path x");
        assert!(matches!(Error::from(wrapped), Error::StorageFull(_)));
        assert!(matches!(Error::from(io::Error::other("x")), Error::Io(_)));
    }

    #[test]
    fn each_error_has_its_status() {
        let s = || String::from("x");
        let table = [
            (Error::invalid("m", "r"), 400),
            (Error::BadRequest(s()), 400),
            (Error::TooLarge(s()), 413),
            (Error::Unauthenticated(s()), 403),
            (Error::Forbidden(s()), 403),
            (Error::TooMany(s()), 429),
            (Error::BadGateway(s()), 502),
            (Error::Timeout(s()), 408),
            (Error::GatewayTimeout(s()), 504),
            (Error::NotFound, 404),
            (Error::Refused(s()), 503),
            (Error::Unavailable(s()), 503),
            (Error::StorageFull(s()), 507),
            (Error::Cancelled(s()), 499),
            (Error::Io(io::Error::other("x")), 500),
        ];
        for (e, status) in table {
            assert_eq!(e.status(), status, "{e:?}");
        }
    }
}
