//! Every key a client may ask for a stored file by. Pure.
//!
//! Keys are lower-cased: lookups are case-insensitive. Three-segment keys
//! share one space (Breakpad paths, SSQP keys, source-map keys), as the
//! three-segment route looks them all up at once; debuginfod keys and the
//! code-id redirect have prefixes of their own.

use super::{Identity, Kind};
use crate::keys::normalize;

/// The debuginfod key of a build id and role (`debuginfo`, `executable`).
pub fn debuginfod_key(build_id: &str, role: &str) -> String {
    format!("buildid:{}/{role}", build_id.to_ascii_lowercase())
}

/// The key of the code-file / code-id redirect.
pub fn code_key(code_file: &str, code_id: &str) -> String {
    format!("code:{}/{}", normalize(code_file), normalize(code_id))
}

/// SSQP pads ELF build ids shorter than 20 bytes with zeros; others send them
/// unpadded. Both forms.
pub fn build_id_forms(build_id: &str) -> Vec<String> {
    let id = build_id.to_ascii_lowercase();
    if id.len() < 40 {
        vec![id.clone(), format!("{id:0<40}")]
    } else {
        vec![id]
    }
}

/// A lookup key as the request path a client sends for it.
pub fn display(lkey: &str) -> String {
    if let Some(rest) = lkey.strip_prefix("buildid:") {
        return format!("/buildid/{rest}");
    }
    if let Some(rest) = lkey.strip_prefix("code:") {
        return format!("/{rest}/<file>.sym (302 to the debug file)");
    }
    format!("/{lkey}")
}

/// Every lookup key of the file stored under `key` (`<module>/<id>/<file>`).
pub fn lookup_keys(key: &str, id: &Identity) -> Vec<String> {
    let file = normalize(key.rsplit('/').next().unwrap_or(key));
    let mut out = vec![normalize(key)];
    let mut add = |k: String| {
        if !out.contains(&k) {
            out.push(k);
        }
    };
    if id.kind == Kind::Sym
        && let (Some(code_file), Some(code_id)) = (&id.code_file, &id.code_id)
    {
        add(code_key(code_file, code_id));
    }
    match id.kind {
        Kind::Elf => {
            if let Some(build_id) = &id.build_id {
                let executable = id.has_code || !id.has_debug_info;
                if id.has_debug_info {
                    add(debuginfod_key(build_id, "debuginfo"));
                }
                if executable {
                    add(debuginfod_key(build_id, "executable"));
                }
                for form in build_id_forms(build_id) {
                    if id.has_debug_info {
                        add(format!("_.debug/elf-buildid-sym-{form}/_.debug"));
                    }
                    if executable {
                        add(format!("{file}/elf-buildid-{form}/{file}"));
                    }
                }
            }
        }
        Kind::MachO => {
            for r in &id.ids {
                let uuid = r.code_id.clone().unwrap_or_default();
                if id.has_debug_info {
                    add(format!("_.dwarf/mach-uuid-sym-{uuid}/_.dwarf"));
                }
                if id.has_code || !id.has_debug_info {
                    add(format!("{file}/mach-uuid-{uuid}/{file}"));
                }
                add(normalize(&format!("{file}/{}/{file}", r.debug_id)));
            }
        }
        Kind::Pe => {
            if let Some(code_id) = &id.code_id {
                add(normalize(&format!("{file}/{code_id}/{file}")));
            }
            for r in &id.ids {
                add(normalize(&format!("{file}/{}/{file}", r.debug_id)));
            }
        }
        Kind::Pdb | Kind::PortablePdb => {
            for r in &id.ids {
                if let Some(ssqp) = &r.ssqp_id {
                    add(normalize(&format!("{file}/{ssqp}/{file}")));
                }
            }
        }
        Kind::SourceMap | Kind::Js => {
            if let Some(uuid) = &id.code_id {
                let role = if id.kind == Kind::SourceMap {
                    "sourcemap"
                } else {
                    "source"
                };
                add(format!("{}/{}/{role}", &uuid[..2], &uuid[2..]));
                add(normalize(&format!("{file}/{}0/{file}", uuid)));
            }
        }
        Kind::Sym | Kind::Unknown => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DebugRef;

    fn elf(debug: bool, code: bool) -> Identity {
        Identity {
            kind: Kind::Elf,
            build_id: Some("8713b9c3fb8a720137a4a08b325905c7aaf8429d".into()),
            has_debug_info: debug,
            has_code: code,
            ..Identity::default()
        }
    }

    #[test]
    fn elf_keys_follow_the_worked_example() {
        let keys = lookup_keys(
            "libfoo.so/C3B913878AFB017237A4A08B325905C70/libfoo.so",
            &elf(true, true),
        );
        for k in [
            "libfoo.so/c3b913878afb017237a4a08b325905c70/libfoo.so",
            "buildid:8713b9c3fb8a720137a4a08b325905c7aaf8429d/debuginfo",
            "buildid:8713b9c3fb8a720137a4a08b325905c7aaf8429d/executable",
            "_.debug/elf-buildid-sym-8713b9c3fb8a720137a4a08b325905c7aaf8429d/_.debug",
            "libfoo.so/elf-buildid-8713b9c3fb8a720137a4a08b325905c7aaf8429d/libfoo.so",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
        let debug_only = lookup_keys("libfoo.so/C3B9/libfoo.so.debug", &elf(true, false));
        assert!(!debug_only.iter().any(|k| k.ends_with("/executable")));
        let stripped = lookup_keys("libfoo.so/C3B9/libfoo.so", &elf(false, true));
        assert!(!stripped.iter().any(|k| k.ends_with("/debuginfo")));
    }

    #[test]
    fn short_build_ids_are_indexed_padded_and_unpadded() {
        assert_eq!(
            build_id_forms("ABCD"),
            ["abcd", "abcd000000000000000000000000000000000000"]
        );
        let mut id = elf(true, true);
        id.build_id = Some("abcd".into());
        let keys = lookup_keys("f/ABCD0/f", &id);
        assert!(keys.contains(&"f/elf-buildid-abcd/f".to_string()));
        assert!(
            keys.contains(&"f/elf-buildid-abcd000000000000000000000000000000000000/f".to_string())
        );
    }

    #[test]
    fn macho_keys() {
        let r = DebugRef {
            debug_id: "497B72F6390A44FC878E5A2D63B6CC4B0".into(),
            code_id: Some("497b72f6390a44fc878e5a2d63b6cc4b".into()),
            ..DebugRef::default()
        };
        let dylib = Identity {
            kind: Kind::MachO,
            has_code: true,
            ids: vec![r.clone()],
            ..Identity::default()
        };
        let keys = lookup_keys(
            "foo.dylib/497B72F6390A44FC878E5A2D63B6CC4B0/foo.dylib",
            &dylib,
        );
        assert!(keys.contains(
            &"foo.dylib/mach-uuid-497b72f6390a44fc878e5a2d63b6cc4b/foo.dylib".to_string()
        ));
        let dsym = Identity {
            kind: Kind::MachO,
            has_debug_info: true,
            ids: vec![r],
            ..Identity::default()
        };
        let keys = lookup_keys(
            "foo.dylib/497B72F6390A44FC878E5A2D63B6CC4B0/foo.dylib",
            &dsym,
        );
        assert!(keys.contains(
            &"_.dwarf/mach-uuid-sym-497b72f6390a44fc878e5a2d63b6cc4b/_.dwarf".to_string()
        ));
    }

    #[test]
    fn pe_is_found_by_code_id_and_every_debug_id() {
        let id = Identity {
            kind: Kind::Pe,
            code_id: Some("542D574Ec2000".into()),
            ids: vec![
                DebugRef {
                    debug_id: "497B72F6390A44FC878E5A2D63B6CC4B1".into(),
                    ..DebugRef::default()
                },
                DebugRef {
                    debug_id: "11111111222233334444555555555555A".into(),
                    ..DebugRef::default()
                },
            ],
            ..Identity::default()
        };
        let keys = lookup_keys("foo.exe/542D574Ec2000/foo.exe", &id);
        assert_eq!(keys[0], "foo.exe/542d574ec2000/foo.exe");
        assert!(keys.contains(&"foo.exe/497b72f6390a44fc878e5a2d63b6cc4b1/foo.exe".to_string()));
        assert!(keys.contains(&"foo.exe/11111111222233334444555555555555a/foo.exe".to_string()));
    }

    #[test]
    fn sym_code_redirect_and_source_map_keys() {
        let sym = Identity {
            kind: Kind::Sym,
            code_file: Some("xul.dll".into()),
            code_id: Some("5CF0A9B1c5f2000".into()),
            ..Identity::default()
        };
        assert!(
            lookup_keys("xul.pdb/ABC/xul.sym", &sym)
                .contains(&"code:xul.dll/5cf0a9b1c5f2000".to_string())
        );
        let map = Identity {
            kind: Kind::SourceMap,
            code_id: Some("85314830023f4cf1a267535f4e37bb17".into()),
            ..Identity::default()
        };
        let keys = lookup_keys(
            "app.js.map/85314830023F4CF1A267535F4E37BB170/app.js.map",
            &map,
        );
        assert!(keys.contains(&"85/314830023f4cf1a267535f4e37bb17/sourcemap".to_string()));
    }
}
