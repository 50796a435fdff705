//! Source maps (`"debugId"`, or legacy `"debug_id"`), JS bundles (a
//! `//# debugId=<uuid>` comment in the last 5 lines), and the deterministic id
//! `symdepot id` gives files that lack one.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use sha1::{Digest, Sha1};

use super::{Identity, Kind};

/// What identity needs of a source map's top-level object.
#[derive(Debug, Default)]
struct SourceMapHead {
    /// `version`, when it is a whole number.
    version: Option<u64>,
    has_mappings: bool,
    debug_id: Option<String>,
    legacy_debug_id: Option<String>,
}

/// Longest `debugId` value worth keeping (a UUID with hyphens and braces is 38).
const MAX_ID_LEN: usize = 64;

/// Parses a source map from a reader in one streaming pass over its
/// top-level object. `Some` when it is a version 3 source map, with its id if
/// it has one.
///
/// Only the three fields identity needs are read into memory, and each is
/// small: `version` must be a number (anything else ends the parse without
/// reading the value), `debugId` and `debug_id` are kept only when they are
/// short strings, and every other value (`mappings`, `sources`,
/// `sourcesContent`) is skipped as it is read, never built into a tree.
/// Memory therefore stays flat in the map's size; the one thing the parser
/// buffers is the string it is on when that string is a key or an id.
pub fn sourcemap<R: Read>(reader: R) -> Option<Identity> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let head = de.deserialize_map(HeadVisitor).ok()?;
    de.end().ok()?;
    if head.version != Some(3) || !head.has_mappings {
        return None;
    }
    let id = head
        .debug_id
        .or(head.legacy_debug_id)
        .and_then(|s| parse_uuid(&s));
    Some(with_id(Kind::SourceMap, id))
}

/// The top-level keys identity looks at.
enum Field {
    Version,
    Mappings,
    DebugId,
    LegacyDebugId,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
                Ok(match key {
                    "version" => Field::Version,
                    "mappings" => Field::Mappings,
                    "debugId" => Field::DebugId,
                    "debug_id" => Field::LegacyDebugId,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = SourceMapHead;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a source map object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceMapHead, A::Error> {
        let mut head = SourceMapHead::default();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Version => head.version = Some(map.next_value()?),
                Field::Mappings => {
                    map.next_value::<IgnoredAny>()?;
                    head.has_mappings = true;
                }
                Field::DebugId => head.debug_id = map.next_value_seed(ShortString)?,
                Field::LegacyDebugId => head.legacy_debug_id = map.next_value_seed(ShortString)?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

/// A string value kept only when it is short enough to be an id; any other
/// value is skipped.
struct ShortString;

impl<'de> DeserializeSeed<'de> for ShortString {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShortString {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<String>, E> {
        Ok((s.len() <= MAX_ID_LEN).then(|| s.to_string()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A JS bundle's id from its tail (the last 5 lines are searched).
pub fn bundle(tail: &[u8]) -> Option<Identity> {
    let text = String::from_utf8_lossy(tail);
    let id = text
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(5)
        .find_map(|l| {
            l.trim()
                .strip_prefix("//# debugId=")
                .and_then(|id| parse_uuid(id.trim()))
        })?;
    Some(with_id(Kind::Js, Some(id)))
}

fn with_id(kind: Kind, id: Option<String>) -> Identity {
    Identity {
        kind,
        debug_id: id.as_ref().map(|u| format!("{}0", u.to_uppercase())),
        code_id: id,
        has_debug_info: kind == Kind::SourceMap,
        ..Identity::default()
    }
}

/// A UUID in any usual form as 32 lower-case hex digits.
pub fn parse_uuid(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The deterministic id of content that lacks one: the first 16 bytes of its
/// SHA-1, as a UUID with version 5 and the RFC variant, hyphenated lower case.
pub fn deterministic_id(content: &[u8]) -> String {
    let digest = Sha1::digest(content);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    hyphenate(&super::elf::hex(&b))
}

/// 32 hex digits as a hyphenated UUID.
fn hyphenate(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Writes a deterministic `"debugId"` into a source map that has none.
/// Returns the id and the new content, or `None` when the map already has
/// an id (which is kept: injecting is idempotent).
pub fn inject_debug_id(content: &[u8]) -> crate::Result<(String, Option<Vec<u8>>)> {
    let Some(id) = sourcemap(content) else {
        return Err(crate::Error::BadRequest(
            "not a version 3 source map".into(),
        ));
    };
    if let Some(existing) = id.code_id {
        return Ok((hyphenate(&existing), None));
    }
    let uuid = deterministic_id(content);
    let brace = content
        .iter()
        .position(|&b| b == b'{')
        .expect("a source map is a JSON object");
    let rest = &content[brace + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = content[..=brace].to_vec();
    out.extend_from_slice(
        format!("\"debugId\":\"{uuid}\"{}", if empty { "" } else { "," }).as_bytes(),
    );
    out.extend_from_slice(rest);
    Ok((uuid, Some(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_map_ids() {
        let map = br#"{"version":3,"sources":["a.js"],"mappings":"AAAA","debugId":"85314830-023F-4CF1-A267-535F4E37BB17"}"#;
        let id = sourcemap(&map[..]).unwrap();
        assert_eq!(
            id.code_id.as_deref(),
            Some("85314830023f4cf1a267535f4e37bb17")
        );
        assert_eq!(
            id.debug_id.as_deref(),
            Some("85314830023F4CF1A267535F4E37BB170")
        );
        let legacy =
            br#"{"version":3,"mappings":"","debug_id":"85314830023f4cf1a267535f4e37bb17"}"#;
        assert!(sourcemap(&legacy[..]).unwrap().code_id.is_some());
        assert_eq!(
            sourcemap(&br#"{"version":3,"mappings":""}"#[..])
                .unwrap()
                .code_id,
            None
        );
        assert!(sourcemap(&br#"{"version":2,"mappings":""}"#[..]).is_none());
        assert!(sourcemap(&br#"{"name":"package"}"#[..]).is_none());
    }

    #[test]
    fn a_version_that_is_not_a_number_ends_the_parse_at_once() {
        // The value is refused at its first byte: the array is never read.
        let mut map = br#"{"version":["#.to_vec();
        map.extend_from_slice(&b"0,".repeat(1 << 20));
        map.extend_from_slice(br#"3],"mappings":"AAAA"}"#);
        assert!(sourcemap(&map[..]).is_none());
        let mut reader = &map[..];
        assert!(sourcemap(std::io::Read::by_ref(&mut reader)).is_none());
        assert!(
            reader.len() > map.len() - 64 * 1024,
            "read {} bytes",
            map.len() - reader.len()
        );
    }

    #[test]
    fn ids_that_are_not_short_strings_are_ignored() {
        let long = format!(
            r#"{{"version":3,"mappings":"","debugId":"{}"}}"#,
            "a".repeat(1 << 20)
        );
        assert_eq!(sourcemap(long.as_bytes()).unwrap().code_id, None);
        let nested = br#"{"version":3,"mappings":"","debugId":{"a":[1,2]},"debug_id":"85314830023f4cf1a267535f4e37bb17"}"#;
        assert!(sourcemap(&nested[..]).unwrap().code_id.is_some());
        assert!(sourcemap(&br#"{"version":3,"mappings":""} trailing"#[..]).is_none());
        assert!(sourcemap(&br#"{"version":"3","mappings":""}"#[..]).is_none());
    }

    #[test]
    fn bundle_ids_come_from_the_last_lines() {
        let js = b"console.log(1);\n//# debugId=85314830-023f-4cf1-a267-535f4e37bb17\n//# sourceMappingURL=a.js.map\n";
        assert_eq!(
            bundle(js).unwrap().code_id.as_deref(),
            Some("85314830023f4cf1a267535f4e37bb17")
        );
        assert!(bundle(b"console.log(1);\n").is_none());
    }

    #[test]
    fn injection_is_deterministic_and_idempotent() {
        let map = br#"{"version":3,"sources":["a.js"],"mappings":"AAAA"}"#;
        let (uuid, new) = inject_debug_id(map).unwrap();
        let new = new.unwrap();
        assert_eq!(uuid, deterministic_id(map));
        let parsed: serde_json::Value = serde_json::from_slice(&new).unwrap();
        assert_eq!(parsed["debugId"], uuid.as_str());
        assert_eq!(parsed["mappings"], "AAAA");
        let (again, unchanged) = inject_debug_id(&new).unwrap();
        assert_eq!(again, uuid);
        assert!(unchanged.is_none());
        assert!(inject_debug_id(b"{}").is_err());
    }

    #[test]
    fn deterministic_ids_are_uuid_v5_shaped_and_stable() {
        let a = deterministic_id(b"{\"version\":3}");
        assert_eq!(a, deterministic_id(b"{\"version\":3}"));
        assert_ne!(a, deterministic_id(b"{\"version\":3} "));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
