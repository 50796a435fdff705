//! Hostile archives: each is answered with its 4xx, names what is wrong, and
//! leaves nothing behind (no blob, entry, key row or temp file).

use std::io::Write;

use crate::support::*;

/// Refused with `status`, and nothing left behind.
fn refused_clean(s: &TestServer, zip: Vec<u8>, status: u16) -> serde_json::Value {
    let body = refused(s, zip, status);
    assert_nothing_stored(s);
    body
}

fn error_of(body: &serde_json::Value) -> &str {
    body["error"].as_str().unwrap()
}

#[test]
fn a_segment_longer_than_a_file_name_is_refused_before_anything_is_stored() {
    let s = TestServer::start();
    let (gname, gdata) = good_member();
    let long = "x".repeat(256);
    for name in [
        format!("{long}/{ID_A}/a.sym"),
        format!("a.pdb/{ID_A}/{long}"),
        format!("a.pdb/{}/a.sym", "A".repeat(300)),
    ] {
        let body = refused_clean(&s, zip_of(&[(&gname, &gdata), (&name, b"x")]), 400);
        assert_eq!(body["member"], name.as_str());
        assert!(error_of(&body).contains("at most 255"), "{body}");
    }
    // A whole name as long as a zip allows (65 535 bytes) is refused the same way.
    let huge = format!("a.pdb/{ID_A}/{}", "y".repeat(65_535 - 50));
    let body = refused_clean(&s, raw_zip(&[RawMember::new(huge.as_bytes(), b"x")]), 400);
    assert!(error_of(&body).contains("at most 255"), "{body}");
}

#[test]
fn truncated_archives_are_refused() {
    let s = TestServer::start();
    let (gname, gdata) = good_member();
    let zip = zip_of(&[(&gname, &gdata)]);
    for cut in [zip.len() - 10, zip.len() / 2, 30, 4] {
        let body = refused_clean(&s, zip[..cut].to_vec(), 400);
        assert!(error_of(&body).contains("zip"), "cut at {cut}: {body}");
    }
}

/// Where the data of the member whose local header starts at `header` begins.
fn data_start(zip: &[u8], header: usize) -> usize {
    let name_len = u16::from_le_bytes([zip[header + 26], zip[header + 27]]) as usize;
    let extra_len = u16::from_le_bytes([zip[header + 28], zip[header + 29]]) as usize;
    header + 30 + name_len + extra_len
}

#[test]
fn corrupted_member_data_is_refused_naming_the_member() {
    let s = TestServer::start();
    let (gname, gdata) = good_member();
    let bname = format!("bad.pdb/{ID_B}/bad.bin");
    let bdata: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    // Stored (not deflated): flipping a byte leaves valid data with a wrong CRC.
    let mut zip = raw_zip(&[
        RawMember::new(gname.as_bytes(), &gdata),
        RawMember::new(bname.as_bytes(), &bdata),
    ]);
    let second = data_start(&zip, 0) + gdata.len();
    let at = data_start(&zip, second) + 1000;
    zip[at] ^= 0xff;
    let body = refused_clean(&s, zip, 400);
    assert_eq!(body["member"], bname.as_str(), "{body}");

    // Deflated: garbage in the stream fails to inflate or fails its CRC.
    let mut zip = zip_of(&[(&bname, &bdata)]);
    let start = data_start(&zip, 0);
    for b in &mut zip[start + 10..start + 40] {
        *b ^= 0x5a;
    }
    let body = refused_clean(&s, zip, 400);
    assert_eq!(body["member"], bname.as_str(), "{body}");
}

/// A one-member stored zip split at its central directory: the bytes before
/// it, and the member's central directory record.
fn split_at_directory(name: &str, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let zip = raw_zip(&[RawMember::new(name.as_bytes(), data)]);
    let eocd = zip.len() - 22;
    let cd_start = u32::from_le_bytes(zip[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    (zip[..cd_start].to_vec(), zip[cd_start..eocd].to_vec())
}

/// `local` followed by the central directory `central` of `count` records and its end record.
fn with_directory(mut local: Vec<u8>, central: &[u8], count: u16) -> Vec<u8> {
    let cd_start = local.len() as u32;
    local.extend_from_slice(central);
    local.extend_from_slice(&0x06054b50u32.to_le_bytes());
    local.extend_from_slice(&[0, 0, 0, 0]);
    local.extend_from_slice(&count.to_le_bytes());
    local.extend_from_slice(&count.to_le_bytes());
    local.extend_from_slice(&(central.len() as u32).to_le_bytes());
    local.extend_from_slice(&cd_start.to_le_bytes());
    local.extend_from_slice(&0u16.to_le_bytes());
    local
}

/// A stored zip whose central directory lists every name in `names`, all
/// pointing at one local header (that of the first name): overlapping entries.
fn overlapping_zip(names: &[&str], data: &[u8]) -> Vec<u8> {
    let (local, first) = split_at_directory(names[0], data);
    let fixed = 46;
    let mut central = first.clone();
    for name in &names[1..] {
        let mut entry = first[..fixed].to_vec();
        entry[28..30].copy_from_slice(&(name.len() as u16).to_le_bytes());
        entry.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&entry);
    }
    with_directory(local, &central, names.len() as u16)
}

#[test]
fn overlapping_entries_are_refused() {
    let s = TestServer::start();
    let data = vec![b'z'; 4096];
    let a = format!("a.bin/{ID_A}/a.bin");
    let b = format!("b.bin/{ID_A}/b.bin");
    let body = refused_clean(&s, overlapping_zip(&[&a, &b], &data), 400);
    assert!(error_of(&body).contains("overlaps"), "{body}");
    assert_eq!(body["member"], b.as_str(), "{body}");
}

#[test]
fn more_members_than_the_limit_are_refused_from_the_zip64_directory() {
    let s = TestServer::start();
    // 100 001 tiny members: more than a 16-bit count holds, so the zip has a zip64 end record.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..100_001u32 {
        w.start_file(format!("m{i}/{ID_A}/m"), opts).unwrap();
        w.write_all(b"x").unwrap();
    }
    let zip = w.finish().unwrap().into_inner();
    let body = refused_clean(&s, zip, 413);
    assert!(error_of(&body).contains("100001 members"), "{body}");
}

/// A stored zip of one member whose central directory says, through a zip64
/// extra field, that it inflates to `declared` bytes.
fn zip64_declaring(name: &str, data: &[u8], declared: u64) -> Vec<u8> {
    let (local, mut entry) = split_at_directory(name, data);
    // Uncompressed size 0xFFFFFFFF: the real one is in the zip64 extra field.
    entry[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut extra = Vec::new();
    extra.extend_from_slice(&1u16.to_le_bytes());
    extra.extend_from_slice(&8u16.to_le_bytes());
    extra.extend_from_slice(&declared.to_le_bytes());
    entry[30..32].copy_from_slice(&(extra.len() as u16).to_le_bytes());
    entry.extend_from_slice(&extra);
    with_directory(local, &entry, 1)
}

#[test]
fn a_zip64_size_over_the_limits_is_refused_from_the_directory() {
    let s = TestServer::start();
    let name = format!("huge.bin/{ID_A}/huge.bin");
    // 20 GiB declared, over the 16 GiB default total: refused before inflating anything.
    let body = refused_clean(&s, zip64_declaring(&name, b"tiny", 20 << 30), 413);
    assert!(error_of(&body).contains("declares"), "{body}");
    // A size that is not what the member holds (8 declared, 4 held) fails the member.
    let body = refused_clean(&s, zip64_declaring(&name, b"tiny", 8), 400);
    assert_eq!(body["member"], name.as_str(), "{body}");
    assert!(error_of(&body).contains("declares 8 bytes"), "{body}");
}
