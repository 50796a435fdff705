//! Parsing of human-friendly sizes (`2GiB`, `10MB`) and durations (`28d`).
//! Sizes are powers of 1024 whatever the suffix says, as in Tecken.

use std::time::Duration;

/// Parses `123`, `10k`, `10KB`, `1.5g`, `2GiB` (case-insensitive) into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let v = num * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Parses `30s`, `15m`, `12h`, `28d`, `2w` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

/// Serde helpers so that config sizes may be written as `2147483648` or `"2GiB"`.
pub mod serde_size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => super::parse_size(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("not a size: {s:?}"))),
        }
    }
}

/// RFC 3339 (UTC) for milliseconds since the epoch, as records and API answers show times.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An HTTP date (`Last-Modified`) for milliseconds since the epoch.
pub fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_powers_of_1024_in_any_case() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("ten"), None);
    }

    #[test]
    fn times_format_as_rfc3339_and_http_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(parse_size("5 parsecs"), None);
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(
            parse_duration("28d"),
            Some(Duration::from_secs(28 * 86_400))
        );
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("3y"), None);
    }
}

/// A URL without the user name and password it may carry
/// (`https://user:pass@host/…` → `https://host/…`), for messages and logs.
pub fn url_without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn credentials_are_taken_out_of_urls() {
        use super::url_without_credentials as strip;
        assert_eq!(strip("https://u:p@h.example/a@b"), "https://h.example/a@b");
        assert_eq!(strip("https://h.example/x"), "https://h.example/x");
        assert_eq!(strip("breakpad+https://t@h/"), "breakpad+https://h/");
        assert_eq!(strip("no url"), "no url");
    }
}
