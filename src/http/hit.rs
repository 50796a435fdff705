//! A stored key as the download path serves it, prepared once when its
//! lookup is cached: the row and the header maps of its full responses
//! (identity and, for a stored-gzip key, gzip), in the Breakpad or the
//! debuginfod flavour. A hot request clones a prepared map and formats no
//! dates, ETags or paths.
//!
//! The lookup cache ([`crate::http::cache`]) holds these without knowing
//! them, and the download and debuginfod handlers answer with them.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::http::cache::{self, BlobId};
use crate::settings::HttpSettings;
use crate::store::{Encoding, KeyRow};
use crate::units::http_date;

/// What a three-segment lookup found, as the download path caches it.
pub type Found = cache::Found<Hit>;

/// Which protocol's headers a hit is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Breakpad / Tecken and SSQP paths: the content type by file name.
    Breakpad,
    /// debuginfod: `application/octet-stream` and the `X-Debuginfod-*` headers.
    Debuginfod,
}

/// A stored key as the download path serves it: its row and the headers of
/// its full responses, built once when its lookup is cached rather than on
/// every request.
#[derive(Debug)]
pub struct Hit {
    pub row: KeyRow,
    pub encoding: Encoding,
    /// Where its bytes sit in the blob cache (`None` for a malformed hash).
    pub(crate) blob_id: Option<BlobId>,
    /// A 200 with the original bytes.
    pub(crate) identity: HeaderMap,
    /// A 200 with the stored gzip bytes as they are (stored-gzip keys only).
    pub(crate) gzip: Option<HeaderMap>,
}

impl Hit {
    pub fn new(row: KeyRow, flavor: Flavor, settings: &HttpSettings) -> Hit {
        let encoding = row.encoding;
        let blob_id = blake3::Hash::from_hex(&row.blob)
            .ok()
            .map(|h| (*h.as_bytes(), encoding));
        let file_name = row.key.rsplit('/').next().unwrap_or("");
        let mut base = base_headers(flavor, file_name, settings);
        set(&mut base, header::VARY, "Accept-Encoding");
        set(
            &mut base,
            header::LAST_MODIFIED,
            &http_date(row.last_uploaded_at),
        );
        if flavor == Flavor::Debuginfod {
            add_debuginfod_headers(&mut base, row.size, &row.key);
        }
        let mut identity = base.clone();
        set(&mut identity, header::ETAG, &format!("\"{}\"", row.blob));
        set(&mut identity, header::ACCEPT_RANGES, "bytes");
        identity.insert(header::CONTENT_LENGTH, HeaderValue::from(row.size));
        let gzip = (encoding == Encoding::Gzip).then(|| {
            let mut gzip = base;
            set(&mut gzip, header::ETAG, &format!("\"{}.gz\"", row.blob));
            set(&mut gzip, header::CONTENT_ENCODING, "gzip");
            gzip.insert(header::CONTENT_LENGTH, HeaderValue::from(row.stored_size));
            gzip
        });
        Hit {
            row,
            encoding,
            blob_id,
            identity,
            gzip,
        }
    }
}

/// The headers of every answer with a file named `file_name` in `flavor`:
/// its content type (never one a browser renders inline from our origin)
/// and CORS.
pub fn base_headers(flavor: Flavor, file_name: &str, settings: &HttpSettings) -> HeaderMap {
    let mut base = HeaderMap::new();
    let content_type = match flavor {
        Flavor::Breakpad => settings.mime_for(file_name),
        Flavor::Debuginfod => "application/octet-stream",
    };
    set(&mut base, header::CONTENT_TYPE, content_type);
    set(&mut base, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if flavor == Flavor::Breakpad && renders_in_a_browser(file_name, content_type) {
        set(&mut base, header::CONTENT_DISPOSITION, "attachment");
    }
    cors(&mut base);
    base
}

/// Extensions of files a browser would render (and run scripts in) when
/// opened from our origin.
const RENDERED_EXTENSIONS: [&str; 12] = [
    "html", "htm", "shtml", "xhtml", "xht", "svg", "svgz", "xml", "xsl", "xslt", "js", "mjs",
];

/// Content types a browser renders as a document or runs.
const RENDERED_TYPES: [&str; 9] = [
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/xsl",
    "application/javascript",
    "text/javascript",
    "application/ecmascript",
];

/// Whether a stored file of this name and content type would be rendered
/// by a browser visiting its URL: such files are sent as attachments, so an
/// uploaded page cannot run in our origin.
pub fn renders_in_a_browser(file_name: &str, content_type: &str) -> bool {
    let ext = file_name.rsplit_once('.').map_or("", |(_, e)| e);
    let mime = content_type.split(';').next().unwrap_or("").trim();
    RENDERED_EXTENSIONS
        .iter()
        .any(|e| e.eq_ignore_ascii_case(ext))
        || RENDERED_TYPES.iter().any(|t| t.eq_ignore_ascii_case(mime))
}

/// `X-Debuginfod-Size` and `X-Debuginfod-File` (the key, percent-encoded).
pub fn add_debuginfod_headers(h: &mut HeaderMap, size: u64, key: &str) {
    h.insert("x-debuginfod-size", HeaderValue::from(size));
    let file = percent_encoding::utf8_percent_encode(key, percent_encoding::CONTROLS).to_string();
    set(h, HeaderName::from_static("x-debuginfod-file"), &file);
}

/// Sets a header, skipping a value that is not a valid header value.
pub(crate) fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// `Access-Control-Allow-Origin: *`.
pub(crate) fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_scripts_are_attachments() {
        for (name, mime) in [
            ("evil.html", "application/octet-stream"),
            ("EVIL.SVG", "application/octet-stream"),
            ("a.js", "application/octet-stream"),
            ("a.xhtml", "application/octet-stream"),
            ("a.xml", "application/octet-stream"),
            ("notes.txt", "text/html; charset=utf-8"),
            ("pic", "image/svg+xml"),
            ("app", "application/javascript"),
        ] {
            assert!(renders_in_a_browser(name, mime), "{name} {mime}");
        }
        for (name, mime) in [
            ("xul.sym", "text/plain"),
            ("xul.pdb", "application/octet-stream"),
            ("html", "application/octet-stream"),
            ("libxul.so.dbg", "application/octet-stream"),
        ] {
            assert!(!renders_in_a_browser(name, mime), "{name} {mime}");
        }
    }
}
