//! PDB (MSF 7.0): GUID from the PDB info stream, age from the DBI stream
//! (falling back to the info stream's).

use std::io::{Read, Seek};

use super::{DebugRef, Identity, Kind};

/// Reads a PDB's identity through any seekable reader, or `None`.
pub fn identify<R: Read + Seek + std::fmt::Debug>(source: R) -> Option<Identity> {
    let mut pdb = pdb::PDB::open(source).ok()?;
    let info = pdb.pdb_information().ok()?;
    let age = pdb
        .debug_information()
        .ok()
        .and_then(|dbi| dbi.age())
        .unwrap_or(info.age);
    let guid = info.guid.as_simple().to_string().to_uppercase();
    let debug_id = format!("{guid}{age:X}");
    Some(Identity {
        kind: Kind::Pdb,
        os: Some("windows".into()),
        debug_id: Some(debug_id.clone()),
        has_debug_info: true,
        ids: vec![DebugRef {
            debug_id: debug_id.clone(),
            ssqp_id: Some(debug_id),
            ..DebugRef::default()
        }],
        ..Identity::default()
    })
}
