//! Credentials from request headers.
//!
//! A token is accepted as `Auth-Token: <secret>[-label]` (Tecken's header;
//! everything from the first `-` is a label), `Authorization: Bearer <secret>`,
//! or as the password of `Authorization: Basic` (what WinDbg and dotnet-symbol
//! can send).

use base64::Engine;
use http::HeaderMap;

/// The token secret a request presents, if any.
pub fn secret(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("auth-token").and_then(|v| v.to_str().ok()) {
        let key = v.trim().split('-').next().unwrap_or("").trim();
        return (!key.is_empty()).then(|| key.to_string());
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = auth.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return (!password.is_empty()).then(|| password.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn auth_token_label_is_ignored() {
        let h = headers(
            "auth-token",
            "e468c3d4bbda43debc0b856983895835-uploadtry-20230913",
        );
        assert_eq!(
            secret(&h).as_deref(),
            Some("e468c3d4bbda43debc0b856983895835")
        );
    }

    #[test]
    fn bearer_and_basic_password() {
        assert_eq!(
            secret(&headers("authorization", "Bearer abc")).as_deref(),
            Some("abc")
        );
        // "user:s3cret"
        assert_eq!(
            secret(&headers("authorization", "Basic dXNlcjpzM2NyZXQ=")).as_deref(),
            Some("s3cret")
        );
        assert_eq!(secret(&headers("authorization", "Digest x")), None);
        assert_eq!(secret(&HeaderMap::new()), None);
    }
}
