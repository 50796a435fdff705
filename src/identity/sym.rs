//! Breakpad `.sym` headers: `MODULE`, `INFO CODE_ID`, `INFO GENERATOR`.
//!
//! Only the header lines are read, never the whole file: the first line must be
//! `MODULE <os> <arch> <debug_id> <debug_file>`, and `INFO` lines follow it
//! directly. Parsing stops at the first other record.

use super::{Identity, Kind};

/// Parses the header of a Breakpad symbol file, or `None` if it is not one.
pub fn parse_header(prefix: &[u8]) -> Option<Identity> {
    let mut lines = prefix.split(|&b| b == b'\n').map(trim_cr);
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let rest = first.strip_prefix("MODULE ")?;
    let mut parts = rest.splitn(4, ' ');
    let (os, arch, id, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) || file.is_empty() {
        return None;
    }
    let mut out = Identity {
        kind: Kind::Sym,
        os: recordable(os),
        arch: recordable(arch),
        debug_id: Some(id.to_ascii_uppercase()),
        debug_file: Some(file.to_string()),
        ..Identity::default()
    };
    for line in lines {
        let Some(info) = line.strip_prefix(b"INFO ") else {
            break;
        };
        let Ok(info) = std::str::from_utf8(info) else {
            continue;
        };
        if let Some(code) = info.strip_prefix("CODE_ID ") {
            let (id, file) = code.split_once(' ').unwrap_or((code, ""));
            out.code_id = recordable(id.trim()).map(|id| normalize_code_id(&id));
            out.code_file = recordable(file.trim()).filter(|f| !f.is_empty());
        } else if let Some(generator) = info.strip_prefix("GENERATOR ") {
            out.generator = recordable(generator.trim());
        }
    }
    Some(out)
}

/// A header field as the index may record it: none with control characters
/// (a NUL, say, which PostgreSQL's text refuses) or longer than 255 bytes.
fn recordable(field: &str) -> Option<String> {
    (field.len() <= 255 && !field.chars().any(char::is_control)).then(|| field.to_string())
}

/// Code ids of PE files are upper-case `TIMESTAMP` + lower-case size as Windows
/// writes them; ELF and Mach-O code ids (build ids, UUIDs) are lower-case hex.
/// A code id is kept as written unless it is a 40-or-more-digit build id.
fn normalize_code_id(id: &str) -> String {
    if id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id.to_ascii_lowercase()
    } else {
        id.to_string()
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_control_characters_or_too_long_are_not_recorded() {
        let text = b"MODULE lin\0ux x86_64 44E4EC8C2F41492B9369D6B9A059577C2 a.so\n\
INFO CODE_ID 5CF0A9B1c5f2000 a\x01.so\nINFO GENERATOR gen\0erator\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.os, None);
        assert_eq!(h.arch.as_deref(), Some("x86_64"));
        assert_eq!(h.code_file, None);
        assert_eq!(h.generator, None);
        let long = format!(
            "MODULE linux x86_64 44E4EC8C2F41492B9369D6B9A059577C2 a.so\nINFO GENERATOR {}\n",
            "g".repeat(256)
        );
        assert_eq!(parse_header(long.as_bytes()).unwrap().generator, None);
    }

    #[test]
    fn reads_module_and_info_lines() {
        let text = b"MODULE windows x86_64 44e4ec8c2f41492b9369d6b9a059577c2 xul.pdb\r\n\
INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\r\n\
INFO GENERATOR mozilla/dump_syms 2.3.4\r\n\
FILE 0 foo.c\r\nFUNC 1000 10 0 main\r\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.kind, "sym");
        assert_eq!(h.os.as_deref(), Some("windows"));
        assert_eq!(h.arch.as_deref(), Some("x86_64"));
        assert_eq!(
            h.debug_id.as_deref(),
            Some("44E4EC8C2F41492B9369D6B9A059577C2")
        );
        assert_eq!(h.debug_file.as_deref(), Some("xul.pdb"));
        assert_eq!(h.code_id.as_deref(), Some("5CF0A9B1c5f2000"));
        assert_eq!(h.code_file.as_deref(), Some("xul.dll"));
        assert_eq!(h.generator.as_deref(), Some("mozilla/dump_syms 2.3.4"));
    }

    #[test]
    fn linux_code_id_is_lower_case_and_file_may_hold_spaces() {
        let text = b"MODULE Linux x86_64 C3B913878AFB017237A4A08B325905C70 my lib.so\n\
INFO CODE_ID 8713B9C3FB8A720137A4A08B325905C7AAF8429D\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.debug_file.as_deref(), Some("my lib.so"));
        assert_eq!(
            h.code_id.as_deref(),
            Some("8713b9c3fb8a720137a4a08b325905c7aaf8429d")
        );
        assert_eq!(h.code_file, None);
    }

    #[test]
    fn info_after_other_records_is_not_read() {
        let text = b"MODULE Linux x86 AB f\nFILE 0 a.c\nINFO CODE_ID ABCD f\n";
        assert_eq!(parse_header(text).unwrap().code_id, None);
    }

    #[test]
    fn not_a_sym_file() {
        assert_eq!(parse_header(b"\x7fELF\x02\x01"), None);
        assert_eq!(parse_header(b"MODULE Linux x86 XYZ f\n"), None);
        assert_eq!(parse_header(b"MODULE Linux x86\n"), None);
        assert_eq!(parse_header(b""), None);
    }
}
