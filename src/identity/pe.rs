//! PE (exe/dll): the code id `TimeDateStamp` + `SizeOfImage`, and **every**
//! CodeView `RSDS` debug directory entry (a PE can name more than one PDB).

use object::pe;
use object::pod;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile32, PeFile64};
use object::{LittleEndian as LE, ReadRef};

use super::{DebugRef, Identity, Kind, breakpad_id_from_guid_bytes};

/// Reads a PE file's identity, or `None` if it does not parse.
pub fn identify<'data, R: ReadRef<'data>>(data: R) -> Option<Identity> {
    match object::FileKind::parse(data).ok()? {
        object::FileKind::Pe32 => read(&PeFile32::parse(data).ok()?, data),
        object::FileKind::Pe64 => read(&PeFile64::parse(data).ok()?, data),
        _ => None,
    }
}

fn read<'data, H: ImageNtHeaders, R: ReadRef<'data>>(
    file: &object::read::pe::PeFile<'data, H, R>,
    data: R,
) -> Option<Identity> {
    let nt = file.nt_headers();
    let stamp = nt.file_header().time_date_stamp.get(LE);
    let size = nt.optional_header().size_of_image();
    let machine = nt.file_header().machine.get(LE);
    let mut out = Identity {
        kind: Kind::Pe,
        os: Some("windows".into()),
        arch: Some(arch_name(machine).into()),
        code_id: Some(code_id(stamp, size)),
        has_code: true,
        ..Identity::default()
    };
    out.ids = codeview_entries(file, data);
    if let Some(first) = out.ids.first() {
        out.debug_id = Some(first.debug_id.clone());
        out.debug_file = first.debug_file.clone();
    }
    Some(out)
}

/// Every CodeView RSDS entry of the debug directory.
fn codeview_entries<'data, H: ImageNtHeaders, R: ReadRef<'data>>(
    file: &object::read::pe::PeFile<'data, H, R>,
    data: R,
) -> Vec<DebugRef> {
    let mut out = Vec::new();
    let Some(dir) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_DEBUG) else {
        return out;
    };
    let Ok(bytes) = dir.data(data, &file.section_table()) else {
        return out;
    };
    let Ok((entries, _)) =
        pod::slice_from_bytes::<pe::ImageDebugDirectory>(bytes, bytes.len() / 28)
    else {
        return out;
    };
    for entry in entries {
        if entry.typ.get(LE) != pe::IMAGE_DEBUG_TYPE_CODEVIEW {
            continue;
        }
        let offset = entry.pointer_to_raw_data.get(LE) as u64;
        let len = entry.size_of_data.get(LE) as u64;
        let Ok(info) = data.read_bytes_at(offset, len) else {
            continue;
        };
        if let Some(r) = parse_rsds(info, entry.minor_version.get(LE) == 0x504D) {
            out.push(r);
        }
    }
    out
}

/// `RSDS`, GUID (16 bytes, little-endian struct layout), age (u32), NUL-terminated path.
fn parse_rsds(info: &[u8], portable: bool) -> Option<DebugRef> {
    if info.len() < 24 || &info[..4] != b"RSDS" {
        return None;
    }
    let guid: [u8; 16] = info[4..20].try_into().ok()?;
    let age = u32::from_le_bytes(info[20..24].try_into().ok()?);
    let path_bytes = &info[24..];
    let path_bytes = &path_bytes[..path_bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(path_bytes.len())];
    let path = String::from_utf8_lossy(path_bytes);
    let base = path.rsplit(['/', '\\']).next().unwrap_or(&path).to_string();
    let guid_text = breakpad_id_from_guid_bytes(&guid, true, 0);
    let guid_text = &guid_text[..32];
    Some(DebugRef {
        debug_file: Some(base),
        debug_id: format!("{guid_text}{age:X}"),
        portable,
        ssqp_id: Some(if portable {
            format!("{guid_text}FFFFFFFF")
        } else {
            format!("{guid_text}{age:X}")
        }),
        ..DebugRef::default()
    })
}

fn arch_name(machine: pe::Machine) -> &'static str {
    match machine {
        pe::IMAGE_FILE_MACHINE_AMD64 => "x86_64",
        pe::IMAGE_FILE_MACHINE_I386 => "x86",
        pe::IMAGE_FILE_MACHINE_ARM64 => "arm64",
        pe::IMAGE_FILE_MACHINE_ARMNT => "arm",
        _ => "unknown",
    }
}

/// The code id of a PE: `TimeDateStamp` as 8 upper-case hex digits, then
/// `SizeOfImage` in lower-case hex without padding (what SymStore and Breakpad use).
pub fn code_id(stamp: u32, size_of_image: u32) -> String {
    format!("{stamp:08X}{size_of_image:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_id_worked_example() {
        assert_eq!(code_id(0x542D574E, 0xc2000), "542D574Ec2000");
        assert_eq!(code_id(0x1, 0x3000), "000000013000");
    }

    #[test]
    fn rsds_guid_is_swapped_into_the_breakpad_id() {
        let mut info = b"RSDS".to_vec();
        info.extend_from_slice(&[
            0xf6, 0x72, 0x7b, 0x49, 0x0a, 0x39, 0xfc, 0x44, 0x87, 0x8e, 0x5a, 0x2d, 0x63, 0xb6,
            0xcc, 0x4b,
        ]);
        info.extend_from_slice(&1u32.to_le_bytes());
        info.extend_from_slice(b"C:\\build\\obj\\foo.pdb\0");
        let r = parse_rsds(&info, false).unwrap();
        assert_eq!(r.debug_id, "497B72F6390A44FC878E5A2D63B6CC4B1");
        assert_eq!(r.debug_file.as_deref(), Some("foo.pdb"));
        let r = parse_rsds(&info, true).unwrap();
        assert_eq!(
            r.ssqp_id.as_deref(),
            Some("497B72F6390A44FC878E5A2D63B6CC4BFFFFFFFF")
        );
    }
}
