//! Writes a small Windows amd64 minidump: one thread stopped in the first of
//! its modules at offset 0x1000, its stack holding one return address into the
//! same module (offset 0x1005), and
//! a CodeView record per module naming its PDB and debug id, as crash
//! reporters write them. The README's Quick start walks one; the tests build
//! theirs with it too.

/// A Windows amd64 minidump of one thread in the first of `modules`, each
/// `(code file, PDB name, debug id)` with a CodeView record naming its PDB.
pub fn windows_minidump(modules: &[(&str, &str, &str)]) -> Vec<u8> {
    const STACK: u64 = 0x7f00_0000_0000;
    const BASE: u64 = 0x1000_0000;
    const CONTEXT: usize = 1232;
    let u32s = |d: &mut Vec<u8>, ws: &[u32]| ws.iter().for_each(|w| d.extend(w.to_le_bytes()));
    let mut d = b"MDMP".to_vec();
    u32s(&mut d, &[0xa793, 4, 32, 0, 0, 0, 0]);
    let dir = d.len();
    d.resize(dir + 4 * 12, 0);
    let mut entries = Vec::new();
    // System info: amd64, Windows NT 10.
    let at = d.len() as u32;
    d.extend(9u16.to_le_bytes());
    d.extend([0u8; 6]);
    u32s(&mut d, &[10, 0, 0, 2, 0]);
    d.resize(at as usize + 56, 0);
    entries.push((7u32, 56u32, at));
    let ctx_at = d.len() as u32;
    let mut ctx = vec![0u8; CONTEXT];
    ctx[48..52].copy_from_slice(&0x0010_001fu32.to_le_bytes());
    ctx[152..160].copy_from_slice(&STACK.to_le_bytes());
    ctx[160..168].copy_from_slice(&STACK.to_le_bytes());
    ctx[248..256].copy_from_slice(&(BASE + 0x1000).to_le_bytes());
    d.extend(ctx);
    let stack_at = d.len() as u32;
    // One return address (into the first module, past its first function), then nothing.
    d.extend((BASE + 0x1005).to_le_bytes());
    d.extend([0u8; 4096 - 8]);
    let tl_at = d.len() as u32;
    u32s(&mut d, &[1, 1, 0, 0, 0, 0, 0]);
    d.extend(STACK.to_le_bytes());
    u32s(&mut d, &[4096, stack_at, CONTEXT as u32, ctx_at]);
    entries.push((3, 52, tl_at));
    let ml_at = d.len() as u32;
    u32s(&mut d, &[1]);
    d.extend(STACK.to_le_bytes());
    u32s(&mut d, &[4096, stack_at]);
    entries.push((5, 20, ml_at));
    // Names and CodeView records first, then the module list naming them.
    let mut records = Vec::new();
    for (code, pdb, id) in modules {
        let name_at = d.len() as u32;
        let utf16: Vec<u8> = code.encode_utf16().flat_map(u16::to_le_bytes).collect();
        u32s(&mut d, &[utf16.len() as u32]);
        d.extend(&utf16);
        d.extend([0, 0]);
        let cv_at = d.len() as u32;
        let guid = u128::from_str_radix(&id[..32], 16).unwrap().to_be_bytes();
        d.extend(b"RSDS");
        d.extend(u32::from_be_bytes(guid[0..4].try_into().unwrap()).to_le_bytes());
        d.extend(u16::from_be_bytes(guid[4..6].try_into().unwrap()).to_le_bytes());
        d.extend(u16::from_be_bytes(guid[6..8].try_into().unwrap()).to_le_bytes());
        d.extend(&guid[8..16]);
        u32s(&mut d, &[u32::from_str_radix(&id[32..], 16).unwrap()]);
        d.extend(pdb.as_bytes());
        d.push(0);
        records.push((name_at, (d.len() as u32) - cv_at, cv_at));
    }
    let mods_at = d.len() as u32;
    u32s(&mut d, &[modules.len() as u32]);
    for (i, (name_at, cv_len, cv_at)) in records.into_iter().enumerate() {
        d.extend((BASE + i as u64 * 0x10_0000).to_le_bytes());
        u32s(&mut d, &[0x10_0000, 0, 0, name_at]);
        d.extend([0u8; 52]);
        u32s(&mut d, &[cv_len, cv_at, 0, 0]);
        d.extend([0u8; 16]);
    }
    entries.push((4, 4 + 108 * modules.len() as u32, mods_at));
    for (i, (kind, size, rva)) in entries.into_iter().enumerate() {
        let e = dir + 12 * i;
        d[e..e + 4].copy_from_slice(&kind.to_le_bytes());
        d[e + 4..e + 8].copy_from_slice(&size.to_le_bytes());
        d[e + 8..e + 12].copy_from_slice(&rva.to_le_bytes());
    }
    d
}
