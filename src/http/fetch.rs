//! Upload by download: fetch a zip from an allow-listed URL.
//!
//! The URL must be https (http only with `allow_http_downloads`) on a host in
//! `upload_download_domains`, and so must every redirect hop, checked before
//! it is followed (at most 5). The body is streamed to a temp file under the
//! same size limit as a multipart upload.
//!
//! Such URLs often carry credentials (`https://user:pass@host/…`, signed
//! query strings such as `?X-Amz-Signature=…`). Every URL this module hands
//! out — for the record, in an error, in a log — goes through [`redact_url`]
//! first; the raw URL is only ever given to the HTTP client.

use futures_util::StreamExt;
use reqwest::Url;

pub use crate::http::redact::{REDACTED, redact_url};
use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::http::state::AppState;

/// What was fetched.
#[derive(Debug)]
pub struct Fetched {
    pub file: tempfile::NamedTempFile,
    pub size: u64,
    /// The hops followed, in order, redacted.
    pub redirects: Vec<String>,
    /// The last path segment of the URL, for the record.
    pub filename: String,
}

/// Checks a URL against the scheme rule and the allow list; `None` if it may be fetched.
pub fn refusal(url: &Url, domains: &[String], allow_http: bool) -> Option<String> {
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        other => {
            return Some(format!(
                "url: the scheme {other:?} is not allowed; use https"
            ));
        }
    }
    let host = url.host_str().unwrap_or("");
    if !domains.iter().any(|d| d.eq_ignore_ascii_case(host)) {
        return Some(format!(
            "url: the host {host:?} is not in upload_download_domains"
        ));
    }
    None
}

/// Downloads `raw` into a temp file in `tmp/`.
pub async fn fetch(state: &AppState, raw: &str) -> Result<Fetched, Error> {
    let settings = &state.http;
    if settings.upload_download_domains.is_empty() {
        return Err(Error::BadRequest(
            "upload by download is not enabled on this server".into(),
        ));
    }
    let url = Url::parse(raw.trim()).map_err(|e| {
        let shown = redact_url(raw);
        Error::BadRequest(format!("url: {shown:?} is not a URL: {e}"))
    })?;
    if let Some(why) = refusal(
        &url,
        &settings.upload_download_domains,
        settings.allow_http_downloads,
    ) {
        return Err(Error::BadRequest(why));
    }
    let domains = settings.upload_download_domains.clone();
    let allow_http = settings.allow_http_downloads;
    let hops = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = hops.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let next = redact_url(attempt.url().as_str());
        if attempt.previous().len() >= 5 {
            return attempt.error(format!("url: more than 5 redirects (last to {next})"));
        }
        if let Some(why) = refusal(attempt.url(), &domains, allow_http) {
            return attempt.error(format!("redirect to {next}: {why}"));
        }
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(next);
        attempt.follow()
    });
    let timeout = settings.upload_download_timeout;
    crate::tls::use_ring();
    let client = reqwest::Client::builder()
        .redirect(policy)
        .timeout(timeout)
        .build()
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(transport_error)?;
    if !resp.status().is_success() {
        return Err(Error::BadGateway(format!(
            "url: the remote answered {}",
            resp.status()
        )));
    }
    let max = settings.max_upload_bytes;
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(Error::TooLarge(format!(
            "the download is larger than the limit of {max} bytes"
        )));
    }
    let store = state.store.clone();
    let file = tokio::task::spawn_blocking(move || store.temp_file("upload-"))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let mut out = tokio::io::BufWriter::with_capacity(
        1 << 20,
        tokio::fs::File::from_std(file.as_file().try_clone()?),
    );
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(transport_error)?;
        size += chunk.len() as u64;
        if size > max {
            return Err(Error::TooLarge(format!(
                "the download is larger than the limit of {max} bytes"
            )));
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    let filename = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("")
        .to_string();
    let redirects = hops.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Fetched {
        file,
        size,
        redirects,
        filename,
    })
}

fn transport_error(e: reqwest::Error) -> Error {
    if e.is_redirect() {
        // Our policy refused a hop: a disallowed URL, answered 400.
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg = s.to_string();
            source = s.source();
        }
        return Error::BadRequest(msg);
    }
    // reqwest names the URL in its messages: name it redacted instead.
    let at = e
        .url()
        .map(|u| format!(" ({})", redact_url(u.as_str())))
        .unwrap_or_default();
    let e = e.without_url();
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    if e.is_timeout() {
        return Error::GatewayTimeout(format!("url: the remote{at} did not answer in time: {why}"));
    }
    Error::BadGateway(format!("url: the download{at} failed: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_and_host_rules() {
        let domains = vec!["symbols.example.com".to_string()];
        let ok = Url::parse("https://SYMBOLS.example.com/a.zip").unwrap();
        assert_eq!(refusal(&ok, &domains, false), None);
        let http = Url::parse("http://symbols.example.com/a.zip").unwrap();
        assert!(refusal(&http, &domains, false).unwrap().contains("scheme"));
        assert_eq!(refusal(&http, &domains, true), None);
        let other = Url::parse("https://evil.example.net/a.zip").unwrap();
        assert!(
            refusal(&other, &domains, false)
                .unwrap()
                .contains("evil.example.net")
        );
    }
}
