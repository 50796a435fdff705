//! Portable PDB: ECMA-335 metadata (`BSJB`) with a `#Pdb` stream whose first
//! 20 bytes are the PDB id (GUID, then a 4-byte stamp).

use super::{DebugRef, Identity, Kind, breakpad_id_from_guid_bytes};

/// Reads a portable PDB's identity from its leading bytes (the metadata root
/// and the `#Pdb` stream sit at the start of the file).
pub fn identify(data: &[u8]) -> Option<Identity> {
    if data.get(..4)? != b"BSJB" {
        return None;
    }
    let version_len = u32::from_le_bytes(data.get(12..16)?.try_into().ok()?) as usize;
    let mut pos = 16usize.checked_add(version_len)?;
    let streams = u16::from_le_bytes(data.get(pos + 2..pos + 4)?.try_into().ok()?);
    pos += 4;
    for _ in 0..streams {
        let offset = u32::from_le_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let name_start = pos + 8;
        let name_len = data.get(name_start..)?.iter().position(|&b| b == 0)?;
        let name = &data[name_start..name_start + name_len];
        pos = name_start + (name_len + 4) / 4 * 4;
        if name == b"#Pdb" {
            let guid: [u8; 16] = data.get(offset..offset + 16)?.try_into().ok()?;
            let text = breakpad_id_from_guid_bytes(&guid, true, 0);
            let guid_text = &text[..32];
            let ssqp = format!("{guid_text}FFFFFFFF");
            return Some(Identity {
                kind: Kind::PortablePdb,
                debug_id: Some(ssqp.clone()),
                has_debug_info: true,
                ids: vec![DebugRef {
                    debug_id: ssqp.clone(),
                    ssqp_id: Some(ssqp),
                    portable: true,
                    ..DebugRef::default()
                }],
                ..Identity::default()
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata root with one `#Pdb` stream, as the C# compiler writes it.
    pub fn sample() -> Vec<u8> {
        let mut d = b"BSJB".to_vec();
        d.extend_from_slice(&1u16.to_le_bytes());
        d.extend_from_slice(&1u16.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        let version = b"PDB v1.0\0\0\0\0";
        d.extend_from_slice(&(version.len() as u32).to_le_bytes());
        d.extend_from_slice(version);
        d.extend_from_slice(&0u16.to_le_bytes()); // flags
        d.extend_from_slice(&2u16.to_le_bytes()); // streams
        let header_len = d.len() + 8 + 8 + 8 + 12;
        d.extend_from_slice(&(header_len as u32).to_le_bytes());
        d.extend_from_slice(&20u32.to_le_bytes());
        d.extend_from_slice(b"#Pdb\0\0\0\0");
        d.extend_from_slice(&((header_len + 20) as u32).to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(b"#Strings\0\0\0\0");
        assert_eq!(d.len(), header_len);
        d.extend_from_slice(&[
            0xf6, 0x72, 0x7b, 0x49, 0x0a, 0x39, 0xfc, 0x44, 0x87, 0x8e, 0x5a, 0x2d, 0x63, 0xb6,
            0xcc, 0x4b,
        ]);
        d.extend_from_slice(&[1, 2, 3, 4]);
        d
    }

    #[test]
    fn pdb_stream_id_gives_the_ssqp_key() {
        let id = identify(&sample()).unwrap();
        assert_eq!(id.kind, "portable-pdb");
        assert_eq!(
            id.debug_id.as_deref(),
            Some("497B72F6390A44FC878E5A2D63B6CC4BFFFFFFFF")
        );
        assert!(identify(b"BSJB").is_none());
        assert!(identify(b"MZ").is_none());
    }
}
