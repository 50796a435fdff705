//! ELF: the GNU build id (PT_NOTE first, then `.note.gnu.build-id`), the
//! Breakpad debug id derived from it (or from `.text` when there is none), and
//! whether the file holds debug info and allocated code.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, ReadRef};

use super::{Identity, Kind, breakpad_id_from_guid_bytes};

/// Reads an ELF file's identity, or `None` if it does not parse.
pub fn identify<'data, R: ReadRef<'data>>(data: R) -> Option<Identity> {
    match object::FileKind::parse(data).ok()? {
        object::FileKind::Elf64 => read::<elf::FileHeader64<Endianness>, R>(data),
        object::FileKind::Elf32 => read::<elf::FileHeader32<Endianness>, R>(data),
        _ => None,
    }
}

fn read<'data, H: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(data: R) -> Option<Identity> {
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok();
    let build_id = build_id_from_segments(header, endian, data).or_else(|| {
        sections
            .as_ref()
            .and_then(|s| build_id_from_sections(s, endian, data))
    });
    let mut out = Identity {
        kind: Kind::Elf,
        os: Some("Linux".into()),
        ..Identity::default()
    };
    out.arch = Some(arch_name(header.e_machine(endian)).to_string());
    if let Some(s) = &sections {
        for section in s.iter() {
            let name = s.section_name(endian, section).unwrap_or_default();
            let has_bytes =
                section.sh_type(endian) != elf::SHT_NOBITS && section.sh_size(endian).into() > 0;
            if has_bytes && (name.starts_with(b".debug_info") || name.starts_with(b".zdebug_info"))
            {
                out.has_debug_info = true;
            }
            if has_bytes && name == b".text" {
                out.has_code = true;
            }
        }
    }
    let little = endian == Endianness::Little;
    match build_id {
        Some(id) if !id.is_empty() => {
            let mut guid = [0u8; 16];
            let n = id.len().min(16);
            guid[..n].copy_from_slice(&id[..n]);
            out.debug_id = Some(breakpad_id_from_guid_bytes(&guid, little, 0));
            let hex = hex(&id);
            out.code_id = Some(hex.clone());
            out.build_id = Some(hex);
        }
        _ => {
            let text = sections
                .as_ref()
                .and_then(|s| text_prefix(s, endian, data))?;
            let mut guid = [0u8; 16];
            for (i, b) in text.iter().enumerate() {
                guid[i % 16] ^= b;
            }
            out.debug_id = Some(breakpad_id_from_guid_bytes(&guid, little, 0));
        }
    }
    Some(out)
}

fn build_id_from_segments<'data, H: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    header: &H,
    endian: Endianness,
    data: R,
) -> Option<Vec<u8>> {
    let segments = header.program_headers(endian, data).ok()?;
    segments
        .iter()
        .find_map(|s| gnu_build_id(s.notes(endian, data), endian))
}

fn build_id_from_sections<'data, H: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    sections: &object::read::elf::SectionTable<'data, H, R>,
    endian: Endianness,
    data: R,
) -> Option<Vec<u8>> {
    sections
        .iter()
        .find_map(|s| gnu_build_id(s.notes(endian, data), endian))
}

/// The `NT_GNU_BUILD_ID` note among the notes of one segment or section.
fn gnu_build_id<H: FileHeader<Endian = Endianness>>(
    notes: object::read::Result<Option<object::read::elf::NoteIterator<'_, H>>>,
    endian: Endianness,
) -> Option<Vec<u8>> {
    let mut notes = notes.ok()??;
    while let Ok(Some(note)) = notes.next() {
        if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
            return Some(note.desc().to_vec());
        }
    }
    None
}

/// The first 4096 bytes of `.text`, for Breakpad's fallback id.
fn text_prefix<'data, H: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    sections: &object::read::elf::SectionTable<'data, H, R>,
    endian: Endianness,
    data: R,
) -> Option<Vec<u8>> {
    let (_, text) = sections.section_by_name(endian, b".text")?;
    if text.sh_type(endian) == elf::SHT_NOBITS {
        return None;
    }
    let (offset, size) = text.file_range(endian)?;
    let bytes = data.read_bytes_at(offset, size.min(4096)).ok()?;
    Some(bytes.to_vec())
}

fn arch_name(machine: elf::Machine) -> &'static str {
    match machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_386 => "x86",
        elf::EM_AARCH64 => "arm64",
        elf::EM_ARM => "arm",
        elf::EM_PPC64 => "ppc64",
        elf::EM_PPC => "ppc",
        elf::EM_MIPS => "mips",
        elf::EM_RISCV => "riscv",
        elf::EM_S390 => "s390",
        _ => "unknown",
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a section's bytes sit in an object file (offset, length): `None` when
/// the file is not one `object` reads, has no such section, or the section
/// takes no bytes in the file (`.bss`). Reads only the headers it needs.
pub fn section_file_range<'data, R: ReadRef<'data>>(data: R, name: &str) -> Option<(u64, u64)> {
    use object::{Object, ObjectSection};
    let obj = object::File::parse(data).ok()?;
    let section = obj.section_by_name(name)?;
    if section.kind() == object::SectionKind::UninitializedData {
        return None;
    }
    section.file_range()
}
