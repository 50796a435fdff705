//! The filter syntax of the records API and pages, and of `export --since`.
//! Pure: query strings in, typed filters out, every mistake a message naming
//! the parameter.
//!
//! - sizes: `>=10MB`, `<1g`, `512` (units `b k kb m mb g gb`, any case, powers of 1024);
//! - dates: `>=2026-01-01`, `<2026-02-01T12:00:00Z`, `today`, `yesterday` (UTC);
//! - `--since` of `export`: a date, a date-time or a duration back from now (`7d`);
//! - booleans: `true/false`, `1/0`, `yes/no`;
//! - `page`: 1 or more.

use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::units::parse_size;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

fn split_op(s: &str) -> (Op, &str) {
    let s = s.trim();
    for (prefix, op) in [
        (">=", Op::Ge),
        ("<=", Op::Le),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return (op, rest.trim());
        }
    }
    (Op::Eq, s)
}

/// A size comparison in bytes.
pub fn size(name: &str, value: &str) -> Result<(Op, u64), String> {
    let (op, rest) = split_op(value);
    parse_size(rest)
        .map(|n| (op, n))
        .ok_or_else(|| format!("{name}: {value:?} is not a size such as >=10MB or <1g"))
}

/// A time condition in Unix milliseconds: `[(op, ms)]`, one or two bounds.
pub fn date(name: &str, value: &str, now: OffsetDateTime) -> Result<Vec<(Op, i64)>, String> {
    let (op, rest) = split_op(value);
    let (start, end) = span(rest, now).ok_or_else(|| {
        format!("{name}: {value:?} is not a date such as >=2026-01-01, today or yesterday")
    })?;
    let exact = start == end;
    Ok(match op {
        Op::Eq if exact => vec![(Op::Eq, start)],
        Op::Eq => vec![(Op::Ge, start), (Op::Lt, end)],
        Op::Ge => vec![(Op::Ge, start)],
        Op::Lt => vec![(Op::Lt, start)],
        Op::Gt if exact => vec![(Op::Gt, start)],
        Op::Gt => vec![(Op::Ge, end)],
        Op::Le if exact => vec![(Op::Le, start)],
        Op::Le => vec![(Op::Lt, end)],
    })
}

/// The start of a time a command's `name` option takes (`--since`), in Unix
/// milliseconds: a day (`2026-11-01`, `today`, `yesterday`, UTC), an instant
/// (RFC 3339), or a duration back from `now` with its unit (`7d`, `12h`, `2w`).
pub fn since(name: &str, value: &str, now: OffsetDateTime) -> Result<i64, String> {
    let v = value.trim();
    let back = || unix_ms(now).checked_sub(duration_ms(v)?);
    span(v, now)
        .map(|(start, _)| start)
        .or_else(back)
        .ok_or_else(|| {
            format!(
                "{name} {value:?}: expected a date (2026-11-01), a date-time (RFC 3339, \
             2026-11-01T12:00:00Z), today, yesterday or a duration (7d, 12h)"
            )
        })
}

/// A duration written with its unit (`7d`; a bare number is not one here), in ms.
fn duration_ms(v: &str) -> Option<i64> {
    if !v.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    i64::try_from(crate::units::parse_duration(v)?.as_millis()).ok()
}

const DAY_MS: i64 = 86_400_000;

/// The time a date names in Unix ms, `(start, end)`: a whole day for
/// `2026-11-01`, `today` and `yesterday` (UTC), `start == end` for an instant.
fn span(value: &str, now: OffsetDateTime) -> Option<(i64, i64)> {
    let day = |start: i64| Some((start, start + DAY_MS));
    match value.to_ascii_lowercase().as_str() {
        "today" => day(day_start(now.date())),
        "yesterday" => day(day_start(now.date()) - DAY_MS),
        _ => match OffsetDateTime::parse(value, &Rfc3339) {
            Ok(t) => Some((unix_ms(t), unix_ms(t))),
            Err(_) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                day(day_start(Date::parse(value, &format).ok()?))
            }
        },
    }
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn day_start(d: Date) -> i64 {
    (d.midnight().assume_utc().unix_timestamp()) * 1000
}

/// A boolean parameter.
pub fn boolean(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(format!("{name}: {value:?} is not true or false")),
    }
}

/// A page number, 1 or more.
pub fn page(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("page: {value:?} is not a page number (1 or more)")),
    }
}

/// Decoded `key=value` pairs of a query string (`+` is a space here, as in forms).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn sizes_take_operators_and_units() {
        assert_eq!(size("size", ">=10MB"), Ok((Op::Ge, 10 << 20)));
        assert_eq!(size("size", "<1g"), Ok((Op::Lt, 1 << 30)));
        assert_eq!(size("size", "512"), Ok((Op::Eq, 512)));
        assert!(size("size", ">=lots").unwrap_err().starts_with("size:"));
    }

    #[test]
    fn dates_are_days_or_instants() {
        let now = datetime!(2026-11-23 10:00 UTC);
        let day = 86_400_000;
        let today = datetime!(2026-11-23 0:00 UTC).unix_timestamp() * 1000;
        assert_eq!(
            date("created_at", "today", now),
            Ok(vec![(Op::Ge, today), (Op::Lt, today + day)])
        );
        assert_eq!(
            date("created_at", "yesterday", now),
            Ok(vec![(Op::Ge, today - day), (Op::Lt, today)])
        );
        assert_eq!(
            date("created_at", ">=2026-11-23", now),
            Ok(vec![(Op::Ge, today)])
        );
        assert_eq!(
            date("created_at", ">2026-11-23", now),
            Ok(vec![(Op::Ge, today + day)])
        );
        assert_eq!(
            date("created_at", "<=2026-11-23", now),
            Ok(vec![(Op::Lt, today + day)])
        );
        assert_eq!(
            date("created_at", "<2026-11-23T10:00:00Z", now),
            Ok(vec![(Op::Lt, today + 10 * 3_600_000)])
        );
        assert!(
            date("created_at", "someday", now)
                .unwrap_err()
                .starts_with("created_at:")
        );
    }

    #[test]
    fn since_takes_days_instants_and_durations_and_echoes_what_was_typed() {
        let now = datetime!(2026-11-23 10:00 UTC);
        let today = datetime!(2026-11-23 0:00 UTC).unix_timestamp() * 1000;
        let now_ms = now.unix_timestamp() * 1000;
        assert_eq!(since("--since", "2026-11-23", now), Ok(today));
        assert_eq!(since("--since", "yesterday", now), Ok(today - DAY_MS));
        assert_eq!(since("--since", "2026-11-23T10:00:00Z", now), Ok(now_ms));
        assert_eq!(since("--since", "7d", now), Ok(now_ms - 7 * DAY_MS));
        assert_eq!(since("--since", "12h", now), Ok(now_ms - 12 * 3_600_000));
        for bad in ["someday", "7", ">=2026-11-01", "2026-13-01", ""] {
            let e = since("--since", bad, now).unwrap_err();
            assert!(
                e.starts_with(&format!("--since {bad:?}: expected a date")),
                "{e}"
            );
        }
    }

    #[test]
    fn pages_start_at_one() {
        assert_eq!(page("1"), Ok(1));
        assert!(page("0").is_err());
        assert!(page("abc").is_err());
        assert!(page("-1").is_err());
    }

    #[test]
    fn query_pairs_decode() {
        assert_eq!(
            query_pairs(Some("size=%3E%3D10MB&user=a+b&try")),
            [
                ("size".into(), ">=10MB".into()),
                ("user".into(), "a b".into()),
                ("try".into(), String::new())
            ]
        );
    }
}
