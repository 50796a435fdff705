//! Request paths and zip member names turned into store keys. Pure: no IO.
//!
//! A *key* is the `<module>/<debug_id>/<file>` path a file is stored and served
//! under, with the debug id upper-cased. Keys are unique case-insensitively, so
//! the index looks them up by [`normalize`]d form.

use percent_encoding::percent_decode_str;

/// Splits a raw request path into decoded segments.
///
/// Empty segments are dropped (clients send `//`), each segment is
/// percent-decoded (`+` stays a plus), and a segment that decodes to something
/// holding `/`, `\` or NUL, or that is `.` or `..`, makes the whole path
/// unroutable (`None`, answered with 404).
pub fn split_path(raw: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(seg).decode_utf8().ok()?;
        if decoded.contains(['/', '\\', '\0']) || decoded == "." || decoded == ".." {
            return None;
        }
        out.push(decoded.into_owned());
    }
    Some(out)
}

/// The case-folded form keys are compared by.
pub fn normalize(key: &str) -> String {
    key.to_lowercase()
}

/// Whether a debug id is all zeros (a module without an id; never stored).
pub fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// A key that passed the segment rule: `<module>/<debug_id>/<file>`, three
/// segments, none of which can name anything but a plain file or folder
/// name. The only way to make one is [`MemberKey::new`], so every key the
/// store is handed from a member name, a file's identity or a layout tree
/// has passed the same check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKey {
    module: String,
    /// Upper-cased.
    debug_id: String,
    file: String,
}

impl MemberKey {
    /// Checks each segment ([`check_segment`]) and that the debug id is hex
    /// digits and not all zeros; upper-cases the debug id.
    pub fn new(module: &str, debug_id: &str, file: &str) -> Result<MemberKey, String> {
        check_segment("module", module)?;
        check_debug_id(debug_id)?;
        check_segment("file", file)?;
        Ok(MemberKey {
            module: module.to_string(),
            debug_id: debug_id.to_ascii_uppercase(),
            file: file.to_string(),
        })
    }

    pub fn module(&self) -> &str {
        &self.module
    }

    /// The debug id segment, upper-cased.
    pub fn debug_id(&self) -> &str {
        &self.debug_id
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The key the member is stored under.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.module, self.debug_id, self.file)
    }
}

/// Checks a stored key as the store's door does before it builds a path from
/// it: exactly three segments, each passing [`check_segment`].
pub fn check_key(key: &str) -> Result<(), String> {
    let segs: Vec<&str> = key.split('/').collect();
    let [module, id, file] = segs[..] else {
        return Err(format!(
            "keys must be <module>/<debug_id>/<file>; this one has {} segment(s)",
            segs.len()
        ));
    };
    check_segment("module", module)?;
    check_segment("debug id", id)?;
    check_segment("file", file)
}

/// What the rules make of one member name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberName {
    /// Stored under this key.
    Key(MemberKey),
    /// Skipped by rule (listed in `ignored_keys`).
    Ignored,
}

/// Characters never allowed in a module or file segment.
const FORBIDDEN: &[char] = &[
    '\\', '^', '`', '<', '>', '{', '}', '[', ']', '#', '%', '"', '\'', '|',
];

/// Applies the member rules of `http-api.md` §1.1 to a raw zip member name.
/// On failure returns the rule that was broken, as a sentence.
pub fn classify_member(raw: &[u8], is_dir: bool) -> Result<MemberName, String> {
    let name = safe_name(raw)?;
    if is_dir || name.ends_with('/') {
        return Ok(MemberName::Ignored);
    }
    let segs: Vec<&str> = name.split('/').collect();
    if segs.last() == Some(&".DS_Store") {
        return Ok(MemberName::Ignored);
    }
    if segs.len() == 1 && name.ends_with("-symbols.txt") {
        return Ok(MemberName::Ignored);
    }
    let [module, debug_id, file] = segs[..] else {
        return Err(format!(
            "member names must be <module>/<debug_id>/<file>; this one has {} segment(s)",
            segs.len()
        ));
    };
    if module.is_empty() || debug_id.is_empty() || file.is_empty() {
        return Err("member names must be <module>/<debug_id>/<file> with no empty segment".into());
    }
    MemberKey::new(module, debug_id, file).map(MemberName::Key)
}

/// The member rules of a layout-free upload (`?layout=auto`): any relative
/// path; the file is placed by its own identity. Returns the file name, or
/// `None` for members ignored by rule.
pub fn classify_auto(raw: &[u8], is_dir: bool) -> Result<Option<String>, String> {
    let name = safe_name(raw)?;
    if is_dir || name.ends_with('/') {
        return Ok(None);
    }
    let file = name.rsplit('/').next().unwrap_or(name);
    if file == ".DS_Store" || (!name.contains('/') && name.ends_with("-symbols.txt")) {
        return Ok(None);
    }
    check_segment("file", file)?;
    Ok(Some(file.to_string()))
}

/// The key a file's own identity gives it: `<debug_file>/<debug_id>/<file>`.
pub fn identity_key(debug_file: &str, debug_id: &str, file: &str) -> Result<MemberKey, String> {
    if debug_file.contains(['/', '\\']) {
        return Err(format!(
            "the embedded debug file name {debug_file:?} cannot be a path segment"
        ));
    }
    MemberKey::new(debug_file, debug_id, file)
        .map_err(|rule| format!("the file's embedded identity cannot name a key: {rule}"))
}

/// The file name Breakpad clients ask for a `.sym` file by: the debug file
/// with a trailing `.pdb` (any case) replaced by `.sym`, else with `.sym`
/// added (`xul.pdb` → `xul.sym`, `libc.so.6` → `libc.so.6.sym`).
pub fn breakpad_sym_name(debug_file: &str) -> String {
    let stem = match debug_file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.eq_ignore_ascii_case("pdb") => stem,
        _ => debug_file,
    };
    format!("{stem}.sym")
}

/// The checks every member name passes: UTF-8, relative, no NUL, backslash,
/// `.` or `..` segment.
fn safe_name(raw: &[u8]) -> Result<&str, String> {
    let name = std::str::from_utf8(raw).map_err(|e| {
        format!(
            "member names must be UTF-8; byte 0x{:02X} at offset {} is not",
            raw[e.valid_up_to()],
            e.valid_up_to()
        )
    })?;
    if name.contains('\0') {
        return Err("member names must not contain NUL".into());
    }
    if name.contains('\\') {
        return Err("member names must not contain backslashes".into());
    }
    if name.starts_with('/') || has_drive_prefix(name) {
        return Err("member names must be relative, not absolute paths".into());
    }
    if name.split('/').any(|s| s == "." || s == "..") {
        return Err("member names must not contain '.' or '..' segments".into());
    }
    Ok(name)
}

fn has_drive_prefix(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Longest segment, in bytes: every key is also a path in the layout tree,
/// and filesystems refuse longer names.
pub const MAX_SEGMENT: usize = 255;

fn check_length(what: &str, seg: &str) -> Result<(), String> {
    if seg.len() > MAX_SEGMENT {
        return Err(format!(
            "the {what} segment is {} bytes long; at most {MAX_SEGMENT} are allowed",
            seg.len()
        ));
    }
    Ok(())
}

/// The segment rule every segment of every key passes, whatever route made
/// it: not empty, not `.` or `..`, at most [`MAX_SEGMENT`] bytes, and free of
/// `/`, `\`, NUL, control characters, the forbidden characters of the member
/// rules, and bidirectional and other invisible format characters (which
/// make a name read differently from what it is).
pub fn check_segment(what: &str, seg: &str) -> Result<(), String> {
    if seg.is_empty() {
        return Err(format!("the {what} segment is empty"));
    }
    if seg == "." || seg == ".." {
        return Err(format!("the {what} segment must not be '.' or '..'"));
    }
    check_length(what, seg)?;
    if seg.contains('/') {
        return Err(format!("the {what} segment {seg:?} contains '/'"));
    }
    if let Some(c) = seg.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the {what} segment {seg:?} contains the control character U+{:04X}",
            c as u32
        ));
    }
    if let Some(c) = seg.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(format!(
            "the {what} segment {seg:?} contains the forbidden character {c:?}"
        ));
    }
    if let Some(c) = seg.chars().find(|c| is_format_char(*c)) {
        return Err(format!(
            "the {what} segment {seg:?} contains the invisible format character U+{:04X}",
            c as u32
        ));
    }
    Ok(())
}

/// A debug id segment: hex digits only, at most [`MAX_SEGMENT`] of them, and
/// not all zeros (a module without an id, which clients never ask for).
fn check_debug_id(id: &str) -> Result<(), String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("debug id {id:?} must be hexadecimal digits only"));
    }
    check_length("debug id", id)?;
    if is_zero_id(id) {
        return Err(format!(
            "debug id {id:?} is all zeros: such a module has no id and is never looked up"
        ));
    }
    Ok(())
}

/// Bidirectional overrides, embeddings and isolates, and the other
/// zero-width format characters (Unicode category Cf) names have no use for.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> MemberKey {
        match classify_member(name.as_bytes(), false) {
            Ok(MemberName::Key(k)) => k,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn rule(name: &[u8]) -> String {
        classify_member(name, false).unwrap_err()
    }

    #[test]
    fn segments_longer_than_a_file_name_may_be_are_refused() {
        let long = "m".repeat(MAX_SEGMENT + 1);
        let fits = "m".repeat(MAX_SEGMENT);
        assert!(
            rule(format!("{long}/ABC/f.sym").as_bytes()).contains("module segment is 256 bytes")
        );
        assert!(rule(format!("m/ABC/{long}").as_bytes()).contains("file segment is 256 bytes"));
        let id = "A".repeat(MAX_SEGMENT + 1);
        assert!(rule(format!("m/{id}/f.sym").as_bytes()).contains("debug id segment"));
        assert_eq!(key(&format!("{fits}/ABC/{fits}")).module(), fits);
        assert!(classify_auto(long.as_bytes(), false).is_err());
        assert!(identity_key(&long, "ABC", "f").is_err());
    }

    #[test]
    fn paths_split_decode_and_drop_empty_segments() {
        assert_eq!(split_path("//a/b%20c//d+e/").unwrap(), ["a", "b c", "d+e"]);
        assert_eq!(split_path("/").unwrap(), Vec::<String>::new());
        assert_eq!(split_path("/a/%2e%2e/b"), None);
        assert_eq!(split_path("/a/../b"), None);
        assert_eq!(split_path("/a%2Fb/c/d"), None);
        assert_eq!(split_path("/a%5Cb/c/d"), None);
        assert_eq!(split_path("/a%00/c/d"), None);
    }

    #[test]
    fn a_layout_member_becomes_a_key_with_upper_case_id() {
        let k = key("xul.pdb/44e4ec8c2f41492b9369d6b9a059577c2/xul.sym");
        assert_eq!(k.key(), "xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym");
        assert_eq!(key("with space~+/ABC/é€.sym").module(), "with space~+");
    }

    #[test]
    fn ignored_members() {
        for name in ["firefox-symbols.txt", "a/.DS_Store", ".DS_Store", "a/b/"] {
            assert_eq!(
                classify_member(name.as_bytes(), false),
                Ok(MemberName::Ignored),
                "{name}"
            );
        }
        assert_eq!(classify_member(b"a/b", true), Ok(MemberName::Ignored));
        // Only a root-level listing is ignored.
        assert!(rule(b"a/b-symbols.txt").contains("segment"));
    }

    #[test]
    fn every_rule_names_itself() {
        assert!(rule(b"/abs/AB/c.sym").contains("absolute"));
        assert!(rule(b"C:/x/AB/c.sym").contains("absolute"));
        assert!(rule(b"a/../AB/c.sym").contains("'..'"));
        assert!(rule(b"a/./b/AB").contains("'.'"));
        assert!(rule(b"a\\AB\\c.sym").contains("backslash"));
        assert!(rule(b"a/AB/c\0.sym").contains("NUL"));
        assert!(rule(b"a/AB/c/d.sym").contains("4 segment"));
        assert!(rule(b"a//c.sym").contains("empty"));
        assert!(rule(b"a/XYZ/c.sym").contains("hexadecimal"));
        assert!(rule(b"a/AB/c\x01.sym").contains("control"));
        assert!(rule(b"a/AB/c\xE9.sym").contains("UTF-8"));
        assert!(rule("a/AB/c\u{85}.sym".as_bytes()).contains("control"));
        for c in [
            '^', '`', '<', '>', '{', '}', '[', ']', '#', '%', '"', '\'', '|',
        ] {
            assert!(
                rule(format!("a{c}/AB/c.sym").as_bytes()).contains("forbidden"),
                "{c}"
            );
        }
    }

    #[test]
    fn auto_layout_takes_any_safe_path() {
        assert_eq!(
            classify_auto(b"build/out/libfoo.so.debug", false),
            Ok(Some("libfoo.so.debug".into()))
        );
        assert_eq!(
            classify_auto(b"libfoo.so", false),
            Ok(Some("libfoo.so".into()))
        );
        assert_eq!(classify_auto(b"a/.DS_Store", false), Ok(None));
        assert_eq!(classify_auto(b"a/", false), Ok(None));
        assert!(
            classify_auto(b"../etc/passwd", false)
                .unwrap_err()
                .contains("'..'")
        );
        assert!(
            classify_auto(b"/etc/passwd", false)
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            classify_auto(b"a/b|c", false)
                .unwrap_err()
                .contains("forbidden")
        );
        let k = identity_key(
            "libfoo.so",
            "c3b913878afb017237a4a08b325905c70",
            "libfoo.so",
        )
        .unwrap();
        assert_eq!(
            k.key(),
            "libfoo.so/C3B913878AFB017237A4A08B325905C70/libfoo.so"
        );
        assert!(identity_key("x", "not-hex", "x").is_err());
    }

    #[test]
    fn zero_ids() {
        assert!(is_zero_id("000000000000000000000000000000000"));
        assert!(!is_zero_id("0000A"));
        assert!(!is_zero_id(""));
    }
}
