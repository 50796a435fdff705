//! Layout-free uploads (`?layout=auto`) and `symdepot ingest` / `symdepot id`:
//! files placed by their own identity, found by every protocol.

use reqwest::blocking::multipart;

use crate::support::*;

fn upload_auto(s: &TestServer, file_name: &str, bytes: Vec<u8>) -> reqwest::blocking::Response {
    let form = multipart::Form::new().part(
        "file",
        multipart::Part::bytes(bytes).file_name(file_name.to_string()),
    );
    s.client
        .post(s.url("/upload/?layout=auto"))
        .header("Auth-Token", &s.token)
        .multipart(form)
        .send()
        .unwrap()
}

const MAP: &str = r#"{"version":3,"sources":["app.ts"],"names":[],"mappings":"AAAA","debugId":"85314830-023f-4cf1-a267-535f4e37bb17"}"#;

#[test]
fn a_single_loose_debug_file_is_placed_by_its_build_id() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let resp = upload_auto(&s, "victim.debug", std::fs::read(&f.debug).unwrap());
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().unwrap();
    let key = format!("victim.debug/{}/victim.debug", f.debug_id);
    assert_eq!(
        body["upload"]["uploaded_keys"],
        serde_json::json!([key.clone()])
    );
    s.assert_entry("release", &key);
    assert_eq!(
        s.get(&format!("/buildid/{}/debuginfo", f.build_id))
            .status(),
        200
    );
    assert_eq!(
        s.get(&format!("/_.debug/elf-buildid-sym-{}/_.debug", f.build_id))
            .status(),
        200
    );
    assert_eq!(s.get(&format!("/{key}")).status(), 200);
}

#[test]
fn a_zip_of_arbitrary_paths_lands_where_every_protocol_finds_it() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let stripped = std::fs::read(&f.stripped).unwrap();
    let debug = std::fs::read(&f.debug).unwrap();
    let sym_text = sym("libbar.so", ID_B, "INFO CODE_ID 00112233 libbar.so\n");
    let zip = zip_of(&[
        ("build/out/victim", &stripped),
        ("build/out/debug/victim.debug", &debug),
        ("maps/app.js.map", MAP.as_bytes()),
        ("syms/whatever-name.sym", &sym_text),
        ("build/.DS_Store", b"x"),
    ]);
    let resp = s
        .client
        .post(s.url("/upload/?layout=auto"))
        .header("Auth-Token", &s.token)
        .multipart(
            multipart::Form::new().part("file", multipart::Part::bytes(zip).file_name("loose.zip")),
        )
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().unwrap();
    let mut keys: Vec<String> =
        serde_json::from_value(body["upload"]["uploaded_keys"].clone()).unwrap();
    keys.sort();
    let mut expected = vec![
        format!("victim/{}/victim", f.debug_id),
        format!("victim.debug/{}/victim.debug", f.debug_id),
        "app.js.map/85314830023F4CF1A267535F4E37BB170/app.js.map".to_string(),
        format!("libbar.so/{ID_B}/libbar.so.sym"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        body["upload"]["ignored_keys"],
        serde_json::json!(["build/.DS_Store"])
    );

    // debuginfod, SSQP and Breakpad all find them.
    assert_eq!(
        s.get(&format!("/buildid/{}/executable", f.build_id))
            .bytes()
            .unwrap()
            .as_ref(),
        stripped.as_slice()
    );
    assert_eq!(
        s.get(&format!("/buildid/{}/debuginfo", f.build_id))
            .bytes()
            .unwrap()
            .as_ref(),
        debug.as_slice()
    );
    assert_eq!(
        s.get(&format!("/victim/elf-buildid-{}/victim", f.build_id))
            .status(),
        200
    );
    assert_eq!(
        s.get(&format!("/victim/{}/victim", f.debug_id)).status(),
        200
    );
    assert_eq!(
        s.get("/85/314830023f4cf1a267535f4e37bb17/sourcemap")
            .bytes()
            .unwrap()
            .as_ref(),
        MAP.as_bytes()
    );
    assert_eq!(
        s.get("/app.js.map/85314830023F4CF1A267535F4E37BB170/app.js.map")
            .status(),
        200
    );
    assert_eq!(
        s.get(&format!("/libbar.so/{ID_B}/libbar.so.sym")).status(),
        200
    );
    assert_eq!(s.get("/libbar.so/00112233/libbar.sym").status(), 302);
}

#[test]
fn a_file_without_identity_is_refused_by_name() {
    let s = TestServer::start();
    let resp = upload_auto(&s, "notes.bin", vec![0u8, 1, 2, 3, 4]);
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["member"], "notes.bin");
    assert!(
        body["error"].as_str().unwrap().contains("no id of its own"),
        "{body}"
    );
    let zip = zip_of(&[
        ("ok/app.js.map", MAP.as_bytes()),
        ("a/readme.txt", b"hello"),
    ]);
    let resp = s
        .client
        .post(s.url("/upload/?layout=auto"))
        .header("Auth-Token", &s.token)
        .multipart(multipart::Form::new().part(
            "symbols.zip",
            multipart::Part::bytes(zip).file_name("s.zip"),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["member"], "a/readme.txt");
    assert!(s.blobs().is_empty());
    let resp = s
        .client
        .post(s.url("/upload/?layout=sideways"))
        .header("Auth-Token", &s.token)
        .multipart(multipart::Form::new().part(
            "symbols.zip",
            multipart::Part::bytes(vec![1]).file_name("s.zip"),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[test]
fn ingest_command_places_a_directory_of_mixed_files() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let input = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(input.path().join("nested")).unwrap();
    std::fs::copy(&f.debug, input.path().join("nested/victim.debug")).unwrap();
    std::fs::copy(&f.stripped, input.path().join("victim")).unwrap();
    std::fs::write(input.path().join("app.js.map"), MAP).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = symdepot(data.path())
        .arg("ingest")
        .arg(input.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 stored, 0 already stored, 0 failed"),
        "{stdout}"
    );
    // Again: everything is already there.
    let out = symdepot(data.path())
        .arg("ingest")
        .arg(input.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 stored, 3 already stored"));
    // A file with no identity fails the command, naming it.
    std::fs::write(input.path().join("junk.bin"), [0u8, 1, 2]).unwrap();
    let out = symdepot(data.path())
        .arg("ingest")
        .arg(input.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.bin"));

    // The daemon serves what the command stored.
    let s = TestServer::with_config(|c| c.data_dir = data.path().to_path_buf());
    assert_eq!(
        s.get(&format!("/buildid/{}/debuginfo", f.build_id))
            .status(),
        200
    );
    assert_eq!(
        s.get(&format!("/buildid/{}/executable", f.build_id))
            .status(),
        200
    );
    // One record per command: the last one failed, still counting what it placed.
    let rows = cli_uploads(&s);
    assert_eq!(rows.len(), 3);
    let folder = input.path().display().to_string();
    assert_eq!(rows[2], (folder, "failed".into(), 3));
}

/// `(filename, status, files_count)` of every upload by `cli`, oldest first.
fn cli_uploads(s: &TestServer) -> Vec<(String, String, u64)> {
    let rows = s.rows(
        "SELECT filename, status, files_count FROM uploads WHERE \"user\" = 'cli' ORDER BY id",
        &[],
    );
    rows.iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
        .collect()
}

#[test]
fn ingest_of_a_folder_is_one_upload_record_covering_every_file() {
    let input = tempfile::tempdir().unwrap();
    let folder = input.path().join("syms");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    let files = members(0, 5);
    for (i, (_, bytes)) in files.iter().enumerate() {
        let sub = if i % 2 == 0 { "nested" } else { "" };
        std::fs::write(folder.join(sub).join(format!("f{i}.sym")), bytes).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let ingest = || symdepot(data.path()).arg("ingest").arg(&folder).output();
    let out = succeeded(ingest().unwrap(), "ingest of a folder");
    assert!(
        out.contains("5 stored, 0 already stored, 0 failed"),
        "{out}"
    );
    // Again: one more record, every file skipped and counted.
    succeeded(ingest().unwrap(), "ingest of the folder again");

    let s = TestServer::with_config(|c| c.data_dir = data.path().to_path_buf());
    let name = folder.display().to_string();
    let complete = (name, "complete".to_string(), 5);
    assert_eq!(cli_uploads(&s), [complete.clone(), complete]);
    let first: i64 = s.one("SELECT MIN(id) FROM uploads", &[]);
    assert_eq!(
        s.count(&format!(
            "SELECT COUNT(*) FROM upload_members WHERE upload_id = {first} AND outcome = 'new'"
        )),
        5
    );
    assert_served(&s.addr.to_string(), &files);
}

#[test]
fn id_command_prints_kind_ids_and_keys() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let out = symdepot(std::path::Path::new("/nonexistent"))
        .arg("id")
        .arg(&f.debug)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("kind: elf"), "{text}");
    assert!(
        text.contains(&format!("debug_id: {}", f.debug_id)),
        "{text}"
    );
    assert!(
        text.contains(&format!("build_id: {}", f.build_id)),
        "{text}"
    );
    assert!(
        text.contains(&format!("lookup: /buildid/{}/debuginfo", f.build_id)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "lookup: /_.debug/elf-buildid-sym-{}/_.debug",
            f.build_id
        )),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("a.js.map");
    std::fs::write(
        &map,
        r#"{"version":3,"sources":["a.ts"],"mappings":"AAAA"}"#,
    )
    .unwrap();
    let first = symdepot(dir.path())
        .args(["id", "--inject"])
        .arg(&map)
        .output()
        .unwrap();
    assert!(first.status.success());
    let uuid = String::from_utf8(first.stdout).unwrap().trim().to_string();
    assert_eq!(uuid.len(), 36);
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&map).unwrap()).unwrap();
    assert_eq!(written["debugId"], uuid.as_str());
    let second = symdepot(dir.path())
        .args(["id", "--inject"])
        .arg(&map)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(second.stdout).unwrap().trim(), uuid);
}

#[test]
fn id_output_into_a_closed_pipe_ends_quietly() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    // A pipe whose reading end is already gone, as `symdepot id … | head -c0` leaves it.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = symdepot(std::path::Path::new("/nonexistent"))
        .arg("id")
        .arg(&f.debug)
        .stdout(writer)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn id_of_a_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = symdepot(std::path::Path::new("/nonexistent"))
        .arg("id")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory"), "{err}");
}
