//! Mach-O, thin and fat: `LC_UUID` per architecture, kept as it is (no byte swap).

use object::macho;
use object::read::macho::{FatArch, MachOFatFile32, MachOFatFile64};
use object::{Object, ObjectSection, ReadRef};

use super::{DebugRef, Identity, Kind};
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
        kind: Kind::MachO,
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

#[cfg(test)]
mod tests {
    use super::*;

    const MH_DYLIB: u32 = 6;
    const LC_UUID: u32 = 0x1b;
    const X86_64: u32 = 0x0100_0007;
    const ARM64: u32 = 0x0100_000c;
    const UUID: [u8; 16] = [
        0x49, 0x7b, 0x72, 0xf6, 0x39, 0x0a, 0x44, 0xfc, 0x87, 0x8e, 0x5a, 0x2d, 0x63, 0xb6, 0xcc,
        0x4b,
    ];

    /// A minimal 64-bit Mach-O: the header and one `LC_UUID` command.
    fn thin(cputype: u32, uuid: [u8; 16]) -> Vec<u8> {
        let mut d = Vec::new();
        for v in [macho::MH_MAGIC_64, cputype, 3, MH_DYLIB, 1, 24, 0, 0] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&LC_UUID.to_le_bytes());
        d.extend_from_slice(&24u32.to_le_bytes());
        d.extend_from_slice(&uuid);
        d
    }

    #[test]
    fn uuid_worked_example() {
        let id = identify(&thin(X86_64, UUID)[..]).unwrap();
        assert_eq!(id.kind, "macho");
        assert_eq!(
            id.debug_id.as_deref(),
            Some("497B72F6390A44FC878E5A2D63B6CC4B0")
        );
        assert_eq!(
            id.code_id.as_deref(),
            Some("497b72f6390a44fc878e5a2d63b6cc4b")
        );
        assert_eq!(id.arch.as_deref(), Some("x86_64"));
        let keys = crate::identity::lookup::lookup_keys(
            "foo.dylib/497B72F6390A44FC878E5A2D63B6CC4B0/foo.dylib",
            &id,
        );
        assert!(keys.contains(
            &"foo.dylib/mach-uuid-497b72f6390a44fc878e5a2d63b6cc4b/foo.dylib".to_string()
        ));
    }

    #[test]
    fn a_fat_file_carries_one_id_per_architecture() {
        let mut other = UUID;
        other[15] = 0x4c;
        let slices = [thin(X86_64, UUID), thin(ARM64, other)];
        let mut d = Vec::new();
        d.extend_from_slice(&macho::FAT_MAGIC.to_be_bytes());
        d.extend_from_slice(&2u32.to_be_bytes());
        let offsets = [4096u32, 8192];
        for (slice, (offset, cpu)) in slices.iter().zip(offsets.iter().zip([X86_64, ARM64])) {
            for v in [cpu, 3, *offset, slice.len() as u32, 12] {
                d.extend_from_slice(&v.to_be_bytes());
            }
        }
        for (slice, offset) in slices.iter().zip(offsets) {
            d.resize(offset as usize, 0);
            d.extend_from_slice(slice);
        }
        let id = identify(&d[..]).unwrap();
        let ids: Vec<(&str, Option<&str>)> = id
            .ids
            .iter()
            .map(|r| (r.debug_id.as_str(), r.arch.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("497B72F6390A44FC878E5A2D63B6CC4B0", Some("x86_64")),
                ("497B72F6390A44FC878E5A2D63B6CC4C0", Some("arm64"))
            ]
        );
        let keys =
            crate::identity::lookup::lookup_keys("foo/497B72F6390A44FC878E5A2D63B6CC4B0/foo", &id);
        assert!(keys.contains(&"foo/mach-uuid-497b72f6390a44fc878e5a2d63b6cc4c/foo".to_string()));
        assert!(keys.contains(&"foo/497b72f6390a44fc878e5a2d63b6cc4c0/foo".to_string()));
        assert!(identify(&b"\xca\xfe\xba\xbe\x00\x00\x00\x34java"[..]).is_none());
    }
}
