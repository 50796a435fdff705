//! What a file is and which ids it carries, read from its own bytes.
//!
//! Pure functions: nothing here opens files. The entry point takes any
//! seekable reader (a byte slice in tests, an open file in ingest) and reads
//! only what each format needs — headers, notes and section tables through
//! `object`'s read cache, the PDB streams through `pdb` — never a whole large
//! file into memory. [`lookup`] turns an identity into every key a client may
//! ask for it by.

pub mod elf;
pub mod js;
pub mod kind;
pub mod lookup;
pub mod macho;
pub mod pdb;
pub mod pe;
pub mod portable_pdb;
pub mod sym;

use std::io::{Read, Seek, SeekFrom};

pub use kind::Kind;

/// How many leading bytes sniffing and the text formats look at.
pub const PREFIX_LEN: usize = 64 * 1024;

/// One debug file a file answers to (a Mach-O architecture, a PE CodeView entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DebugRef {
    pub debug_file: Option<String>,
    /// Breakpad form: upper-case GUID/UUID hex, then the age in hex.
    pub debug_id: String,
    /// Lower-case code id for this entry (Mach-O UUID).
    pub code_id: Option<String>,
    pub arch: Option<String>,
    /// The id part of the SSQP key of a PDB (`<GUID><age>` or `<GUID>FFFFFFFF`).
    pub ssqp_id: Option<String>,
    /// A portable PDB (CodeView minor version `0x504D`).
    pub portable: bool,
}

/// The identity read from a file (kept as JSON beside a member's compressed
/// stream, so a re-upload of the same stream need not read it again).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub kind: Kind,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub debug_id: Option<String>,
    pub debug_file: Option<String>,
    pub code_id: Option<String>,
    pub code_file: Option<String>,
    pub generator: Option<String>,
    /// ELF build id, lower-case hex.
    pub build_id: Option<String>,
    /// Holds debug info (DWARF sections with bytes, a PDB, a dSYM, a source map).
    pub has_debug_info: bool,
    /// Holds allocated code (an executable or library, stripped or not).
    pub has_code: bool,
    /// Every debug file this file answers to, beyond `debug_id` itself.
    pub ids: Vec<DebugRef>,
}

impl Identity {
    fn unknown() -> Identity {
        Identity {
            kind: Kind::Unknown,
            ..Identity::default()
        }
    }

    /// Whether the file carries an id of its own.
    pub fn has_id(&self) -> bool {
        self.debug_id.is_some()
    }

    /// Every Breakpad debug id the file answers to.
    pub fn debug_ids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.debug_id.iter().map(String::as_str).collect();
        for r in &self.ids {
            if !v.contains(&r.debug_id.as_str()) {
                v.push(&r.debug_id);
            }
        }
        v
    }
}

const MSF7: &[u8] = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS";

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Sym,
    Elf,
    MachO,
    Pe,
    Pdb,
    PortablePdb,
    Json,
    Text,
    Unknown,
}

impl Sniff {
    /// Whether identifying this kind reads anywhere in the file (headers,
    /// section tables and notes, or PDB streams, wherever they are), so the
    /// whole file must be at hand. Every other kind is read from its first
    /// [`PREFIX_LEN`] bytes, its last 1 KiB, or in one pass from the start.
    pub fn needs_random_access(self) -> bool {
        matches!(self, Sniff::Elf | Sniff::MachO | Sniff::Pe | Sniff::Pdb)
    }
}

/// Sniffs a file's kind from its first bytes (up to [`PREFIX_LEN`]).
pub fn sniff(prefix: &[u8]) -> Sniff {
    match prefix.get(..4) {
        _ if prefix.starts_with(b"MODULE ") => Sniff::Sym,
        Some(b"\x7fELF") => Sniff::Elf,
        Some(
            [0xfe, 0xed, 0xfa, 0xce | 0xcf]
            | [0xce | 0xcf, 0xfa, 0xed, 0xfe]
            | [0xca, 0xfe, 0xba, 0xbe | 0xbf],
        ) => Sniff::MachO,
        Some([b'M', b'Z', ..]) => Sniff::Pe,
        _ if prefix.starts_with(MSF7) => Sniff::Pdb,
        Some(b"BSJB") => Sniff::PortablePdb,
        _ if looks_like_json(prefix) => Sniff::Json,
        _ if looks_like_text(prefix) => Sniff::Text,
        _ => Sniff::Unknown,
    }
}

/// Identifies a file. `file_name` (the last path segment) names the module of
/// formats that do not carry their own name (ELF, Mach-O, PDB).
pub fn identify<R: Read + Seek + std::fmt::Debug>(mut reader: R, file_name: &str) -> Identity {
    let mut prefix = Vec::with_capacity(4096);
    if reader
        .by_ref()
        .take(PREFIX_LEN as u64)
        .read_to_end(&mut prefix)
        .is_err()
    {
        return Identity::unknown();
    }
    let rewound = reader.seek(SeekFrom::Start(0)).is_ok();
    let kind = sniff(&prefix);
    let mut id = match kind {
        Sniff::Sym => sym::parse_header(&prefix),
        Sniff::Elf if rewound => elf::identify(&object::ReadCache::new(&mut reader)),
        Sniff::MachO if rewound => macho::identify(&object::ReadCache::new(&mut reader)),
        Sniff::Pe if rewound => pe::identify(&object::ReadCache::new(&mut reader)),
        Sniff::Pdb if rewound => pdb::identify(&mut reader),
        Sniff::PortablePdb => portable_pdb::identify(&prefix),
        Sniff::Json if rewound => js::sourcemap(&mut reader),
        Sniff::Text => tail(&mut reader).and_then(|t| js::bundle(&t)),
        _ => None,
    }
    .unwrap_or_else(Identity::unknown);
    fill_names(&mut id, file_name);
    id
}

/// Identifies a file read once from its start (a zip member as it is
/// inflated), for the kinds that do not need random access: from its first
/// bytes `prefix` (up to [`PREFIX_LEN`]), its last bytes `tail` (up to
/// [`TAIL_LEN`]), and for JSON a fresh reader of the whole file from `again`,
/// read in one pass.
pub fn identify_sequential<R: Read>(
    prefix: &[u8],
    tail: &[u8],
    again: impl FnOnce() -> Option<R>,
    file_name: &str,
) -> Identity {
    let mut id = match sniff(prefix) {
        Sniff::Sym => sym::parse_header(prefix),
        Sniff::PortablePdb => portable_pdb::identify(prefix),
        Sniff::Json => again().and_then(js::sourcemap),
        Sniff::Text => js::bundle(tail),
        _ => None,
    }
    .unwrap_or_else(Identity::unknown);
    fill_names(&mut id, file_name);
    id
}

/// Identifies bytes in memory.
pub fn identify_bytes(data: &[u8], file_name: &str) -> Identity {
    identify(std::io::Cursor::new(data), file_name)
}

fn fill_names(id: &mut Identity, file_name: &str) {
    match id.kind {
        Kind::Elf | Kind::MachO => {
            id.debug_file.get_or_insert_with(|| file_name.to_string());
            id.code_file.get_or_insert_with(|| file_name.to_string());
        }
        Kind::Pe => {
            id.code_file = Some(file_name.to_string());
        }
        Kind::Pdb | Kind::PortablePdb | Kind::SourceMap | Kind::Js => {
            id.debug_file.get_or_insert_with(|| file_name.to_string());
        }
        Kind::Sym | Kind::Unknown => {}
    }
    for r in &mut id.ids {
        if r.debug_file.is_none() {
            r.debug_file = id.debug_file.clone();
        }
    }
}

fn looks_like_json(prefix: &[u8]) -> bool {
    let start = prefix.strip_prefix(b"\xef\xbb\xbf").unwrap_or(prefix);
    start.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn looks_like_text(prefix: &[u8]) -> bool {
    !prefix.is_empty() && !prefix.contains(&0)
}

/// How many trailing bytes a JS bundle's id is looked for in.
pub const TAIL_LEN: usize = 1024;

/// The last [`TAIL_LEN`] bytes of a file.
fn tail<R: Read + Seek>(reader: &mut R) -> Option<Vec<u8>> {
    let len = reader.seek(SeekFrom::End(0)).ok()?;
    reader
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_LEN as u64)))
        .ok()?;
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The Breakpad id of a GUID stored in little-endian struct layout (bytes
/// 0..4, 4..6 and 6..8 reversed) or, for big-endian files, as it is; then the age.
pub fn breakpad_id_from_guid_bytes(guid: &[u8; 16], little_endian: bool, age: u32) -> String {
    let mut g = *guid;
    if little_endian {
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
    }
    format!("{}{age:X}", elf::hex(&g).to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_build_id_to_breakpad_id_worked_example() {
        let build_id: Vec<u8> = (0..20)
            .map(|i| {
                u8::from_str_radix(
                    &"8713b9c3fb8a720137a4a08b325905c7aaf8429d"[i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let guid: [u8; 16] = build_id[..16].try_into().unwrap();
        assert_eq!(
            breakpad_id_from_guid_bytes(&guid, true, 0),
            "C3B913878AFB017237A4A08B325905C70"
        );
    }

    #[test]
    fn pe_guid_worked_example() {
        let guid = [
            0xf6, 0x72, 0x7b, 0x49, 0x0a, 0x39, 0xfc, 0x44, 0x87, 0x8e, 0x5a, 0x2d, 0x63, 0xb6,
            0xcc, 0x4b,
        ];
        assert_eq!(
            breakpad_id_from_guid_bytes(&guid, true, 1),
            "497B72F6390A44FC878E5A2D63B6CC4B1"
        );
        assert_eq!(
            breakpad_id_from_guid_bytes(&guid, true, 0x1f),
            "497B72F6390A44FC878E5A2D63B6CC4B1F"
        );
    }

    #[test]
    fn unknown_bytes_have_no_identity() {
        let id = identify_bytes(b"\x00\x01\x02 binary junk", "junk.bin");
        assert_eq!(id.kind, "unknown");
        assert!(!id.has_id());
        assert_eq!(identify_bytes(b"", "empty").kind, "unknown");
    }

    #[test]
    fn sym_files_are_sniffed() {
        let id = identify_bytes(
            b"MODULE Linux x86_64 C3B913878AFB017237A4A08B325905C70 libfoo.so\n",
            "libfoo.so.sym",
        );
        assert_eq!(id.kind, "sym");
        assert_eq!(id.debug_file.as_deref(), Some("libfoo.so"));
    }
}
