//! What a file is and which ids it carries, read from its own bytes.
//!
//! Pure functions over byte slices: nothing here does IO. Ingest hands in the
//! first [`PREFIX_LEN`] bytes of each member (all it needs for the formats
//! handled here) and indexes what comes back.

pub mod sym;

/// How many leading bytes of a file identification looks at.
pub const PREFIX_LEN: usize = 64 * 1024;

/// The identity read from a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `sym`, or `unknown` for a kind symdepot does not recognise.
    pub kind: &'static str,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub debug_id: Option<String>,
    pub debug_file: Option<String>,
    pub code_id: Option<String>,
    pub code_file: Option<String>,
    pub generator: Option<String>,
}

/// Identifies a file from its leading bytes.
pub fn identify(prefix: &[u8]) -> Identity {
    if let Some(h) = sym::parse_header(prefix) {
        return h;
    }
    Identity {
        kind: "unknown",
        ..Identity::default()
    }
}
