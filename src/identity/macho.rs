//! Mach-O, thin and fat: `LC_UUID` per architecture, kept as it is (no byte swap).

use object::macho;
use object::read::macho::{FatArch, MachOFatFile32, MachOFatFile64};
use object::{Object, ObjectSection, ReadRef};

use super::{DebugRef, Identity};
use crate::identity::elf::hex;

/// Reads a thin or fat Mach-O file's identity, or `None` if it does not parse.
pub fn identify<'data, R: ReadRef<'data>>(data: R) -> Option<Identity> {
    let magic = data.read_bytes_at(0, 4).ok()?;
    let magic = u32::from_be_bytes(magic.try_into().ok()?);
    let slices: Vec<Option<Identity>> = match magic {
        macho::FAT_MAGIC => {
            let fat = MachOFatFile32::parse(data).ok()?;
            fat.arches()
                .iter()
                .map(|a| slice(data, a.file_range()))
                .collect()
        }
        macho::FAT_MAGIC_64 => {
            let fat = MachOFatFile64::parse(data).ok()?;
            fat.arches()
                .iter()
                .map(|a| slice(data, a.file_range()))
                .collect()
        }
        _ => vec![thin(data)],
    };
    let mut slices = slices.into_iter().flatten();
    let mut out = slices.next()?;
    for other in slices {
        out.has_code |= other.has_code;
        out.has_debug_info |= other.has_debug_info;
        out.ids.extend(other.ids);
    }
    Some(out)
}

fn slice<'data, R: ReadRef<'data>>(data: R, (offset, size): (u64, u64)) -> Option<Identity> {
    let bytes = data.read_bytes_at(offset, size).ok()?;
    thin(bytes)
}

fn thin<'data, R: ReadRef<'data>>(data: R) -> Option<Identity> {
    let file = object::File::parse(data).ok()?;
    if !matches!(file, object::File::MachO32(_) | object::File::MachO64(_)) {
        return None;
    }
    let uuid = file.mach_uuid().ok().flatten()?;
    let arch = arch_name(file.architecture());
    let mut out = Identity {
        kind: "macho",
        os: Some("mac".into()),
        arch: Some(arch.into()),
        ..Identity::default()
    };
    for section in file.sections() {
        let name = section.name().unwrap_or("");
        let stored = section
            .file_range()
            .is_some_and(|(off, len)| off > 0 && len > 0);
        if name == "__debug_info" && stored {
            out.has_debug_info = true;
        }
        if name == "__text" && stored {
            out.has_code = true;
        }
    }
    let debug_id = format!("{}0", hex(&uuid).to_uppercase());
    out.debug_id = Some(debug_id.clone());
    out.code_id = Some(hex(&uuid));
    out.ids.push(DebugRef {
        debug_id,
        code_id: Some(hex(&uuid)),
        arch: Some(arch.into()),
        ..DebugRef::default()
    });
    Some(out)
}

fn arch_name(a: object::Architecture) -> &'static str {
    use object::Architecture::*;
    match a {
        X86_64 => "x86_64",
        I386 => "x86",
        Aarch64 => "arm64",
        Arm => "arm",
        PowerPc => "ppc",
        PowerPc64 => "ppc64",
        _ => "unknown",
    }
}
