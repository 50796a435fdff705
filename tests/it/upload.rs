//! Uploads that succeed: storage effects, try semantics, skip and replace.

use crate::support::*;

#[test]
fn multi_module_upload_stores_sym_compressed_and_binaries_as_they_are() {
    let s = TestServer::start();
    let xul = sym(
        "xul.pdb",
        ID_A,
        "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\nINFO GENERATOR test 1.0\n",
    );
    let libc = sym("libc.so", ID_B, "");
    let binary: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let zip = zip_of(&[
        (&format!("xul.pdb/{ID_A}/xul.sym"), &xul),
        (&format!("libc.so/{ID_B}/libc.so.sym"), &libc),
        (&format!("libc.so/{ID_B}/libc.so"), &binary),
        ("firefox-symbols.txt", b"listing"),
    ]);
    let zip_len = zip.len();
    let up = s.upload_ok(zip);

    assert_eq!(up["files_count"], 3);
    assert_eq!(up["size"], zip_len);
    assert_eq!(up["filename"], "symbols.zip");
    assert_eq!(up["user"], "uploader");
    assert_eq!(up["try_symbols"], false);
    assert_eq!(up["download_url"], serde_json::Value::Null);
    assert_eq!(up["redirect_urls"], serde_json::json!([]));
    assert_eq!(
        up["ignored_keys"],
        serde_json::json!(["firefox-symbols.txt"])
    );
    assert_eq!(up["skipped_keys"], serde_json::json!([]));
    let mut uploaded: Vec<String> = serde_json::from_value(up["uploaded_keys"].clone()).unwrap();
    uploaded.sort();
    assert_eq!(
        uploaded,
        [
            format!("libc.so/{ID_B}/libc.so"),
            format!("libc.so/{ID_B}/libc.so.sym"),
            format!("xul.pdb/{ID_A}/xul.sym"),
        ]
    );
    for field in ["created_at", "completed_at"] {
        let v = up[field].as_str().unwrap();
        assert!(v.starts_with("20") && v.ends_with('Z'), "{field}: {v}");
    }

    // Blobs: the .sym files gzip-compressed, the binary as it is, named by BLAKE3.
    let blobs = s.blobs();
    assert_eq!(blobs.len(), 3, "{blobs:?}");
    assert_eq!(gunzip(&s.read_blob(&xul, true).unwrap()), xul);
    assert_eq!(s.read_blob(&binary, false).unwrap(), binary);

    // The layout: hard links to the blobs under the exact key.
    if s.has_layout() {
        use std::os::unix::fs::MetadataExt;
        let xul_blob = s.data_dir().join(blob_name(&xul, true));
        let entry = s.data_dir().join(format!("release/xul.pdb/{ID_A}/xul.sym"));
        assert_eq!(
            std::fs::metadata(&entry).unwrap().ino(),
            std::fs::metadata(&xul_blob).unwrap().ino()
        );
        let entry = s.data_dir().join(format!("release/libc.so/{ID_B}/libc.so"));
        assert_eq!(std::fs::read(entry).unwrap(), binary);
    }

    // The index rows.
    let (enc, size, stored, debug_file, code_file, code_id, generator, kind): (
        String,
        i64,
        i64,
        String,
        String,
        String,
        String,
        String,
    ) = {
        let r = &s.rows(
            "SELECT encoding, size, stored_size, debug_file, code_file, code_id, generator, kind \
             FROM keys WHERE key = ?1 AND namespace = 'release'",
            &symdepot::sql_params![format!("xul.pdb/{ID_A}/xul.sym")],
        )[0];
        (
            r.get(0).unwrap(),
            r.get(1).unwrap(),
            r.get(2).unwrap(),
            r.get(3).unwrap(),
            r.get(4).unwrap(),
            r.get(5).unwrap(),
            r.get(6).unwrap(),
            r.get(7).unwrap(),
        )
    };
    assert_eq!(enc, "gzip");
    assert_eq!(size as usize, xul.len());
    assert_eq!(stored as usize, s.read_blob(&xul, true).unwrap().len());
    assert_eq!(
        (
            debug_file.as_str(),
            code_file.as_str(),
            code_id.as_str(),
            generator.as_str(),
            kind.as_str()
        ),
        ("xul.pdb", "xul.dll", "5CF0A9B1c5f2000", "test 1.0", "sym")
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 3);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'complete' AND http_status = 201"),
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM upload_members WHERE outcome = 'new'"),
        3
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM upload_members WHERE outcome = 'ignored'"),
        1
    );
    assert!(s.tmp_files().is_empty(), "{:?}", s.tmp_files());
}

#[test]
fn reupload_of_identical_zip_skips_every_member_and_writes_no_blob() {
    let s = TestServer::start();
    let members = [
        (format!("a.pdb/{ID_A}/a.sym"), sym("a.pdb", ID_A, "")),
        (format!("b.so/{ID_B}/b.so.sym"), sym("b.so", ID_B, "")),
        (format!("b.so/{ID_B}/b.so"), b"\x7fELF not really".to_vec()),
    ];
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    use crate::records::{scrape, value};
    let inflated = || value(&scrape(&s), "symdepot_members_inflated_total", &[]);
    s.upload_ok(zip_of(&refs));
    assert_eq!(inflated(), 3.0);
    let blobs_before = s.blobs_with_times();

    // Each member's compressed stream was read and stored before: none is inflated.
    let up = s.upload_ok(zip_of(&refs));
    assert_eq!(inflated(), 3.0);
    assert_eq!(up["uploaded_keys"], serde_json::json!([]));
    let mut skipped: Vec<String> = serde_json::from_value(up["skipped_keys"].clone()).unwrap();
    skipped.sort();
    let mut expected: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    assert_eq!(skipped, expected);
    assert_eq!(up["files_count"], 3);
    let blobs_after = s.blobs_with_times();
    assert_eq!(blobs_before, blobs_after);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM upload_members WHERE outcome = 'skipped'"),
        3
    );
}

#[test]
fn member_streams_are_hashed_as_the_zip_arrives_and_name_the_same_streams_read_later() {
    use crate::records::{scrape, value};
    let s = TestServer::start();
    let metric = |name: &str| value(&scrape(&s), name, &[]);
    let members = [
        (format!("a.pdb/{ID_A}/a.sym"), sym("a.pdb", ID_A, "")),
        (format!("b.so/{ID_B}/b.so"), b"\x7fELF not really".to_vec()),
    ];
    // Every member's header gives its size: hashed on arrival, inflated once.
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    s.upload_ok(zip_of(&refs));
    assert_eq!(metric("symdepot_members_hashed_on_arrival_total"), 2.0);
    assert_eq!(metric("symdepot_members_inflated_total"), 2.0);
    // The same members written as a stream (sizes in data descriptors after
    // the data): nothing is hashed on arrival, the streams are read from the
    // spooled zip, and they are the streams already known — nothing inflated.
    let mut w = zip::ZipWriter::new_stream(Vec::new());
    for (name, data) in &members {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file(name.as_str(), opts).unwrap();
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    let streamed = w.finish().unwrap().into_inner();
    assert!(
        streamed.windows(4).any(|x| x == b"PK\x07\x08"),
        "the zip has data descriptors"
    );
    let up = s.upload_ok(streamed);
    assert_eq!(up["files_count"], 2);
    assert_eq!(metric("symdepot_members_hashed_on_arrival_total"), 2.0);
    assert_eq!(metric("symdepot_members_inflated_total"), 2.0);
    let mut skipped: Vec<String> = serde_json::from_value(up["skipped_keys"].clone()).unwrap();
    skipped.sort();
    assert_eq!(skipped, [members[0].0.clone(), members[1].0.clone()]);
}

#[test]
fn a_known_stream_under_a_new_key_or_a_new_stream_of_known_bytes_is_stored_right() {
    use crate::records::{scrape, value};
    let s = TestServer::start();
    let inflated = || value(&scrape(&s), "symdepot_members_inflated_total", &[]);
    let data = sym("a.pdb", ID_A, "INFO CODE_ID 0 a.dll\n");
    let (first, again) = (format!("a.pdb/{ID_A}/a.sym"), format!("A.PDB/{ID_A}/A.sym"));
    s.upload_ok(zip_of(&[(&first, &data)]));
    assert_eq!(inflated(), 1.0);
    // The same stream in the try namespace: a new key, read from the known
    // stream (not inflated for reading) and stored from the zip.
    let up = s.upload_with(&s.token, zip_of(&[(&first, &data)]), Some("1"));
    assert_eq!(up.status(), 201);
    assert_eq!(inflated(), 1.0);
    // Its known identity is still checked against the key it is placed under.
    let wrong = format!("a.pdb/{ID_B}/a.sym");
    let refused = s.upload(zip_of(&[(&wrong, &data)]));
    assert_eq!(refused.status(), 400);
    assert!(refused.text().unwrap().contains("debug id"));
    assert_eq!(
        s.get(&format!("/try/{first}")).bytes().unwrap().as_ref(),
        &data[..]
    );
    // The same bytes stored, not deflated: another stream, inflated (read) once.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(again.as_str(), stored).unwrap();
    std::io::Write::write_all(&mut w, &data).unwrap();
    let up = s.upload_ok(w.finish().unwrap().into_inner());
    assert_eq!(up["skipped_keys"], serde_json::json!([again]));
    assert_eq!(inflated(), 2.0);
    // A stream whose bytes the store no longer holds: stored again from the zip.
    assert_eq!(s.count("SELECT COUNT(*) FROM member_streams"), 2);
    s.remove_blob(&data, true);
    assert!(s.read_blob(&data, true).is_none());
    s.upload_ok(zip_of(&[(&first, &data)]));
    assert!(
        s.read_blob(&data, true).is_some(),
        "the blob is written again"
    );
    assert_eq!(
        s.get(&format!("/{first}")).bytes().unwrap().as_ref(),
        &data[..]
    );
    // Once no key names its blob, GC forgets the stream.
    use symdepot::store::gc::DeleteTarget;
    for ns in [
        symdepot::store::Namespace::Release,
        symdepot::store::Namespace::Try,
    ] {
        s.store()
            .delete_keys(&DeleteTarget::Namespace(ns), "test")
            .unwrap();
    }
    (s.store().gc(
        std::time::SystemTime::now(),
        symdepot::store::gc::GcMode::Force,
    ))
    .unwrap();
    assert_eq!(s.count("SELECT COUNT(*) FROM member_streams"), 0);
}

#[test]
fn a_deflated_sym_keeps_its_own_compression_and_a_stored_one_is_compressed() {
    let s = TestServer::start();
    let data = sym("d.pdb", ID_A, &"INFO GENERATOR deflated once\n".repeat(500));
    let key = format!("d.pdb/{ID_A}/d.sym");
    let zip = zip_of(&[(&key, &data)]);
    s.upload_ok(zip.clone());
    // The blob is the member's own DEFLATE bytes framed as gzip: compressed once, by the uploader.
    let raw = {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut member = archive.by_index_raw(0).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut member, &mut raw).unwrap();
        raw
    };
    let blob = s.read_blob(&data, true).unwrap();
    assert_eq!(&blob[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(&blob[10..blob.len() - 8], &raw[..]);
    assert_eq!(gunzip(&blob), data);
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        &data[..]
    );
    // A member stored without compression is compressed on the way in.
    let plain = sym("p.pdb", ID_B, &"INFO GENERATOR stored\n".repeat(500));
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(format!("p.pdb/{ID_B}/p.sym"), stored).unwrap();
    std::io::Write::write_all(&mut w, &plain).unwrap();
    s.upload_ok(w.finish().unwrap().into_inner());
    let blob = s.read_blob(&plain, true).unwrap();
    assert!(
        blob.len() < plain.len() / 4,
        "{} of {}",
        blob.len(),
        plain.len()
    );
    assert_eq!(gunzip(&blob), plain);
}

#[test]
fn a_changed_file_replaces_the_old_version() {
    let s = TestServer::start();
    let key = format!("a.pdb/{ID_A}/a.sym");
    let v1 = sym("a.pdb", ID_A, "INFO GENERATOR one\n");
    let v2 = sym("a.pdb", ID_A, "INFO GENERATOR two\n");
    s.upload_ok(zip_of(&[(&key, &v1)]));
    let up = s.upload_ok(zip_of(&[(&key, &v2)]));
    assert_eq!(up["uploaded_keys"], serde_json::json!([key.clone()]));
    assert_eq!(
        s.count("SELECT COUNT(*) FROM upload_members WHERE outcome = 'replaced'"),
        1
    );
    let got = s.get(&format!("/{key}")).bytes().unwrap();
    assert_eq!(got.as_ref(), v2.as_slice());
    if let Some(entry) = s.entry("release", &key) {
        assert_eq!(std::fs::read(entry).map(|b| gunzip(&b)).unwrap(), v2);
    }
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 1);
    let generator: String = s.one("SELECT generator FROM keys", &[]);
    assert_eq!(generator, "two");
}

#[test]
fn debug_ids_are_stored_upper_case_and_keys_match_case_insensitively() {
    let s = TestServer::start();
    let lower = ID_A.to_lowercase();
    let data = sym("a.pdb", &lower, "");
    let up = s.upload_ok(zip_of(&[(&format!("a.pdb/{lower}/a.sym"), &data)]));
    assert_eq!(
        up["uploaded_keys"],
        serde_json::json!([format!("a.pdb/{ID_A}/a.sym")])
    );
    s.assert_entry("release", &format!("a.pdb/{ID_A}/a.sym"));
    // The same key with another module case is the same key.
    let up = s.upload_ok(zip_of(&[(
        &format!("A.PDB/{ID_A}/A.SYM"),
        &sym("A.PDB", ID_A, ""),
    )]));
    assert_eq!(
        up["uploaded_keys"],
        serde_json::json!([format!("A.PDB/{ID_A}/A.SYM")])
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 1);
    assert_eq!(s.get(&format!("/a.pdb/{lower}/a.sym")).status(), 200);
}

#[test]
fn try_uploads_never_replace_release_files() {
    let s = TestServer::start();
    let key = format!("a.pdb/{ID_A}/a.sym");
    let release = sym("a.pdb", ID_A, "INFO GENERATOR release\n");
    let tried = sym("a.pdb", ID_A, "INFO GENERATOR try\n");
    s.upload_ok(zip_of(&[(&key, &release)]));
    let resp = s.upload_with(&s.token, zip_of(&[(&key, &tried)]), Some("1"));
    assert_eq!(resp.status(), 201);
    let up: serde_json::Value = resp.json().unwrap();
    assert_eq!(up["upload"]["try_symbols"], true);
    s.assert_entry("try", &key);

    // Release wins everywhere; try files only come with /try or ?try when no release exists.
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        release.as_slice()
    );
    assert_eq!(
        s.get(&format!("/try/{key}")).bytes().unwrap().as_ref(),
        release.as_slice()
    );
    assert_eq!(
        s.get(&format!("/{key}?try=1")).bytes().unwrap().as_ref(),
        release.as_slice()
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'try'"),
        1
    );
}

#[test]
fn try_files_are_served_only_when_asked_for() {
    let s = TestServer::start();
    let key = format!("t.pdb/{ID_B}/t.sym");
    let tried = sym("t.pdb", ID_B, "");
    let try_token = s.create_token(&["upload_try"], "tryer");
    // A try-only token makes a try upload whatever `try` says.
    let resp = s.upload_with(&try_token, zip_of(&[(&key, &tried)]), Some("0"));
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.json::<serde_json::Value>().unwrap()["upload"]["try_symbols"],
        true
    );

    assert_eq!(s.get(&format!("/{key}")).status(), 404);
    assert_eq!(s.get(&format!("/{key}?try=0")).status(), 404);
    assert_eq!(
        s.get(&format!("/try/{key}")).bytes().unwrap().as_ref(),
        tried.as_slice()
    );
    assert_eq!(
        s.get(&format!("/{key}?try")).bytes().unwrap().as_ref(),
        tried.as_slice()
    );
    assert_eq!(s.get(&format!("/{key}?try=yes")).status(), 200);

    // A later release upload wins over the try file.
    let release = sym("t.pdb", ID_B, "INFO GENERATOR release\n");
    s.upload_ok(zip_of(&[(&key, &release)]));
    assert_eq!(
        s.get(&format!("/try/{key}")).bytes().unwrap().as_ref(),
        release.as_slice()
    );
}

#[test]
fn try_field_values() {
    let s = TestServer::start();
    let cases = [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("", false),
    ];
    for (i, (value, is_try)) in cases.iter().enumerate() {
        let module = format!("m{i}.pdb");
        let data = sym(&module, ID_A, "");
        let resp = s.upload_with(
            &s.token,
            zip_of(&[(&format!("{module}/{ID_A}/m.sym"), &data)]),
            Some(value),
        );
        assert_eq!(resp.status(), 201, "try={value:?}");
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["upload"]["try_symbols"], *is_try, "try={value:?}");
    }
}

#[test]
fn concurrent_uploads_of_overlapping_zips_leave_a_consistent_store() {
    let s = TestServer::start();
    let shared: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let module = format!("shared{i}.pdb");
            (
                format!("{module}/{ID_A}/shared{i}.sym"),
                sym(&module, ID_A, ""),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            let shared = &shared;
            scope.spawn(move || {
                let mut members = shared.clone();
                // Each zip also changes one shared key, so replaces race too.
                let module = format!("shared{t}.pdb");
                members[t] = (
                    format!("{module}/{ID_A}/shared{t}.sym"),
                    sym(&module, ID_A, &format!("INFO GENERATOR writer {t}\n")),
                );
                let own = format!("own{t}.pdb");
                members.push((format!("{own}/{ID_B}/own{t}.sym"), sym(&own, ID_B, "")));
                let refs: Vec<(&str, &[u8])> = members
                    .iter()
                    .map(|(n, d)| (n.as_str(), d.as_slice()))
                    .collect();
                s.upload_ok(zip_of(&refs));
            });
        }
    });
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 24);
    // Every row's blob exists, and its layout entry is that very blob.
    use std::os::unix::fs::MetadataExt;
    let stored = s.blobs();
    let rows: Vec<(String, String)> = s
        .rows("SELECT key, blob FROM keys", &[])
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
        .collect();
    for (key, blob) in rows {
        let name = format!("objects/{}/{}/{blob}.gz", &blob[..2], &blob[2..4]);
        assert!(stored.iter().any(|b| b.ends_with(&name)), "{key}");
        if let Some(entry) = s.entry("release", &key) {
            assert_eq!(
                std::fs::metadata(&entry).unwrap().ino(),
                std::fs::metadata(s.data_dir().join(&name)).unwrap().ino(),
                "{key}"
            );
        }
        let served = s.get(&format!("/{key}")).bytes().unwrap();
        assert_eq!(blake3::hash(&served).to_hex().to_string(), blob, "{key}");
    }
    assert!(s.tmp_files().is_empty());
}

#[test]
fn a_storage_failure_keeps_finished_members_and_the_retry_skips_them() {
    crate::local_only!("the fault is a folder where a blob file must go");
    let s = TestServer::start();
    let members: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            let module = format!("m{i}.pdb");
            (format!("{module}/{ID_A}/m{i}.sym"), sym(&module, ID_A, ""))
        })
        .collect();
    // A directory where one blob must go makes that member's commit fail.
    let (bad_key, bad_data) = &members[3];
    let hash = blake3::hash(bad_data).to_hex().to_string();
    let obstacle = s
        .data_dir()
        .join(format!("objects/{}/{}/{hash}.gz", &hash[..2], &hash[2..4]));
    std::fs::create_dir_all(obstacle.join("in-the-way")).unwrap();

    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let resp = s.upload(zip_of(&refs));
    assert_eq!(resp.status(), 500);
    assert!(
        resp.text()
            .unwrap()
            .contains("whatever was committed before stays")
    );
    assert_eq!(s.get(&format!("/{bad_key}")).status(), 404);
    let committed = s.count("SELECT COUNT(*) FROM keys");
    assert!(committed < 6);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'failed' AND http_status = 500"),
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM upload_members WHERE outcome = 'failed'"),
        1
    );
    for (key, data) in &members {
        if key != bad_key && s.get(&format!("/{key}")).status() == 200 {
            assert_eq!(
                s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
                data.as_slice()
            );
        }
    }

    std::fs::remove_dir_all(&obstacle).unwrap();
    let up = s.upload_ok(zip_of(&refs));
    assert_eq!(
        up["skipped_keys"].as_array().unwrap().len() as i64,
        committed
    );
    assert_eq!(
        up["uploaded_keys"].as_array().unwrap().len() as i64,
        6 - committed
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 6);
}

#[test]
fn a_refused_token_gets_its_403_after_the_body_is_drained() {
    let s = TestServer::start();
    let body: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    let resp = s.upload_with(
        "0123456789abcdef0123456789abcdef",
        zip_of(&[(&format!("a/{ID_A}/a.bin"), &body)]),
        None,
    );
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["connection"], "close");
    assert!(resp.json::<serde_json::Value>().unwrap()["error"].is_string());
}

#[test]
fn folders_of_a_zip_are_not_reported_as_ignored() {
    let s = TestServer::start();
    let key = format!("a.pdb/{ID_A}/a.sym");
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    w.add_directory("a.pdb/", opts).unwrap();
    w.add_directory(format!("a.pdb/{ID_A}/"), opts).unwrap();
    w.start_file(key.as_str(), opts).unwrap();
    std::io::Write::write_all(&mut w, &sym("a.pdb", ID_A, "")).unwrap();
    w.start_file("firefox-symbols.txt", opts).unwrap();
    std::io::Write::write_all(&mut w, b"not a symbol file").unwrap();
    let up = s.upload_ok(w.finish().unwrap().into_inner());
    assert_eq!(up["uploaded_keys"], serde_json::json!([key]));
    // A file ignored by rule is still named; the folders are not.
    assert_eq!(
        up["ignored_keys"],
        serde_json::json!(["firefox-symbols.txt"])
    );
}
