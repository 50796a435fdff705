//! What kind of file an identity was read from.

use std::fmt;

/// The kind of a file, as identification found it.
///
/// Its stored form ([`Kind::as_str`]) is what the index keeps, the JSON API
/// and the pages show, and `symdepot id` prints.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    /// A Breakpad `.sym` file.
    Sym,
    Elf,
    MachO,
    Pe,
    Pdb,
    PortablePdb,
    SourceMap,
    /// A JavaScript bundle carrying a debug id.
    Js,
    /// Nothing identification recognised.
    #[default]
    Unknown,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 9] = [
        Kind::Sym,
        Kind::Elf,
        Kind::MachO,
        Kind::Pe,
        Kind::Pdb,
        Kind::PortablePdb,
        Kind::SourceMap,
        Kind::Js,
        Kind::Unknown,
    ];

    /// The stored form: `sym`, `elf`, `macho`, `pe`, `pdb`, `portable-pdb`,
    /// `sourcemap`, `js` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sym => "sym",
            Kind::Elf => "elf",
            Kind::MachO => "macho",
            Kind::Pe => "pe",
            Kind::Pdb => "pdb",
            Kind::PortablePdb => "portable-pdb",
            Kind::SourceMap => "sourcemap",
            Kind::Js => "js",
            Kind::Unknown => "unknown",
        }
    }

    /// Parses the stored form; `None` for any other text.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind equals its stored form.
impl PartialEq<str> for Kind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// A kind equals its stored form.
impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        let forms: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            forms,
            [
                "sym",
                "elf",
                "macho",
                "pe",
                "pdb",
                "portable-pdb",
                "sourcemap",
                "js",
                "unknown"
            ]
        );
    }

    #[test]
    fn other_text_is_no_kind() {
        for s in ["", "SYM", "mach-o", "portable_pdb", "exe"] {
            assert_eq!(Kind::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn the_default_is_unknown() {
        assert_eq!(Kind::default(), Kind::Unknown);
    }
}
