//! URLs fit to store, show and log: every URL the server keeps or answers
//! that came from outside (upload by download, upstream symbol servers) goes
//! through [`redact_url`] first; the raw URL is only ever given to the HTTP
//! client.

use reqwest::Url;

/// What replaces a secret in a redacted URL.
pub const REDACTED: &str = "REDACTED";

/// A URL fit to store, show and log: without user name and password, every
/// query value and any fragment replaced by [`REDACTED`] (query names stay,
/// so `?X-Amz-Signature=REDACTED` still says what was sent). Text that does
/// not parse as a URL is redacted the same way by its punctuation and cut
/// to 300 characters.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(url) if url.has_host() => redact_parsed(url),
        _ => redact_text(raw.trim()),
    }
}

fn redact_parsed(mut url: Url) -> String {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if let Some(query) = url.query() {
        let redacted = redact_query(query);
        url.set_query(Some(&redacted));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(REDACTED));
    }
    url.to_string()
}

/// `a=1&b=2` → `a=REDACTED&b=REDACTED`; a bare name stays as it is.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_text(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (path, secret) = match tail.find(['?', '#']) {
        Some(i) => (&tail[..i], true),
        None => (tail, false),
    };
    let mut out: String = format!("{scheme}{host}{path}").chars().take(300).collect();
    if secret {
        out.push('?');
        out.push_str(REDACTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        let cases = [
            (
                "https://user:pass@symbols.example.com/a/b.zip?X-Amz-Signature=abc&X-Amz-Date=1",
                "https://symbols.example.com/a/b.zip?X-Amz-Signature=REDACTED&X-Amz-Date=REDACTED",
            ),
            (
                "https://tok@symbols.example.com/b.zip?sig=s3cr3t#frag",
                "https://symbols.example.com/b.zip?sig=REDACTED#REDACTED",
            ),
            (
                "http://127.0.0.1:9/x.zip?plain",
                "http://127.0.0.1:9/x.zip?plain",
            ),
            ("https://h.example/x.zip", "https://h.example/x.zip"),
            // Not URLs: cut at the query, the user info dropped by punctuation.
            (
                "https://user:pa ss@[bad/x.zip?sig=s3cr3t",
                "https://[bad/x.zip?REDACTED",
            ),
            ("no scheme at all?token=abc", "no scheme at all?REDACTED"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_url(raw), want, "{raw}");
        }
        let long = format!("ht!tp://{}?k=v", "a".repeat(1000));
        assert!(redact_url(&long).len() < 320);
    }
}
