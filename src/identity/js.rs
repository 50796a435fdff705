//! Source maps (`"debugId"`, or legacy `"debug_id"`), JS bundles (a
//! `//# debugId=<uuid>` comment in the last 5 lines), and the deterministic id
//! `symdepot id` gives files that lack one.

use std::io::Read;

use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::Identity;

#[derive(Deserialize)]
struct SourceMapHead {
    version: Option<serde_json::Value>,
    mappings: Option<serde::de::IgnoredAny>,
    #[serde(rename = "debugId")]
    debug_id: Option<String>,
    #[serde(rename = "debug_id")]
    legacy_debug_id: Option<String>,
}

/// Parses a source map from a reader (streaming; other fields are skipped).
/// `Some` when it is a version 3 source map, with its id if it has one.
pub fn sourcemap<R: Read>(reader: R) -> Option<Identity> {
    let head: SourceMapHead = serde_json::from_reader(std::io::BufReader::new(reader)).ok()?;
    if head.version.as_ref().and_then(|v| v.as_u64()) != Some(3) || head.mappings.is_none() {
        return None;
    }
    let id = head
        .debug_id
        .or(head.legacy_debug_id)
        .and_then(|s| parse_uuid(&s));
    Some(with_id("sourcemap", id))
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
    Some(with_id("js", Some(id)))
}

fn with_id(kind: &'static str, id: Option<String>) -> Identity {
    Identity {
        kind,
        debug_id: id.as_ref().map(|u| format!("{}0", u.to_uppercase())),
        code_id: id,
        has_debug_info: kind == "sourcemap",
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
