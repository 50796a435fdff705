//! The one error type of the core (store, ingest, identity).
//!
//! Each variant maps to exactly one HTTP status in `http::error`; the command
//! line prints the message. Variants carry enough to name the offending member
//! and the rule it broke, because every rejection must say both.

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
    Db(rusqlite::Error),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(member: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Invalid {
            member: member.into(),
            rule: rule.into(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::StorageFull(e.to_string()),
            _ => Error::Db(e),
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
    fn a_full_disk_is_storage_full_with_or_without_a_raw_code() {
        let raw = io::Error::from_raw_os_error(28);
        assert!(matches!(Error::from(raw), Error::StorageFull(_)));
        // tempfile wraps errors with the path: the kind stays, the raw code goes.
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, "No space left at path x");
        assert!(matches!(Error::from(wrapped), Error::StorageFull(_)));
        assert!(matches!(Error::from(io::Error::other("x")), Error::Io(_)));
    }
}
