//! debuginfod and SSQP routes over real ELF files built with gcc.

use std::process::Command;

use crate::support::*;

#[test]
fn debuginfo_and_executable_are_served_by_build_id() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    assert_eq!(f.build_id.len(), 40);
    let s = TestServer::start();
    s.upload_elf(&f);

    let resp = s.get(&format!("/buildid/{}/debuginfo", f.build_id));
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(
        h["x-debuginfod-file"],
        format!("victim/{}/victim.debug", f.debug_id).as_str()
    );
    let debug = std::fs::read(&f.debug).unwrap();
    assert_eq!(h["x-debuginfod-size"], debug.len().to_string().as_str());
    assert!(h.contains_key("last-modified"));
    assert_eq!(resp.bytes().unwrap().as_ref(), debug.as_slice());

    // A second request is answered from the lookup cache with the same headers,
    // and the same file by its Breakpad path keeps its own content type.
    let again = s.get(&format!("/buildid/{}/debuginfo", f.build_id));
    assert_eq!(again.status(), 200);
    for name in [
        "content-type",
        "x-debuginfod-file",
        "x-debuginfod-size",
        "etag",
    ] {
        assert_eq!(again.headers()[name], h[name], "{name} from the cache");
    }
    assert_eq!(again.bytes().unwrap().as_ref(), debug.as_slice());
    let by_path = s.get(&format!("/victim/{}/victim.debug", f.debug_id));
    assert_eq!(by_path.status(), 200);
    assert!(!by_path.headers().contains_key("x-debuginfod-size"));
    assert_eq!(by_path.bytes().unwrap().as_ref(), debug.as_slice());

    let resp = s.get(&format!(
        "/buildid/{}/executable",
        f.build_id.to_uppercase()
    ));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().unwrap().as_ref(),
        std::fs::read(&f.stripped).unwrap().as_slice()
    );

    let head = s
        .client
        .head(s.url(&format!("/buildid/{}/debuginfo", f.build_id)))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        debug.len().to_string().as_str()
    );

    // The index knows the kind and the build id.
    let row = &s.rows(
        "SELECT kind, code_id FROM keys WHERE key LIKE '%.debug'",
        &[],
    )[0];
    let (kind, code_id): (String, String) = (row.get(0).unwrap(), row.get(1).unwrap());
    assert_eq!(
        (kind.as_str(), code_id.as_str()),
        ("elf", f.build_id.as_str())
    );
}

#[test]
fn sections_are_read_out_of_the_stored_elf() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    s.upload_elf(&f);
    let expected = f.dir.path().join("debug_info.bin");
    let out = Command::new("objcopy")
        .arg(format!("--dump-section=.debug_info={}", expected.display()))
        .arg(&f.debug)
        .arg(f.dir.path().join("scratch.o"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let resp = s.get(&format!("/buildid/{}/section/.debug_info", f.build_id));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().unwrap().as_ref(),
        std::fs::read(&expected).unwrap().as_slice()
    );
    // .text has no bytes in the debug file: it comes from the executable.
    let resp = s.get(&format!("/buildid/{}/section/.text", f.build_id));
    assert_eq!(resp.status(), 200);
    assert!(!resp.bytes().unwrap().is_empty());
    assert_eq!(
        s.get(&format!("/buildid/{}/section/.no_such", f.build_id))
            .status(),
        404
    );
}

#[test]
fn debuginfod_misses_are_404_and_malformed_ids_400() {
    let s = TestServer::start();
    let missing = "00112233445566778899aabbccddeeff00112233";
    for path in [
        format!("/buildid/{missing}/debuginfo"),
        format!("/buildid/{missing}/executable"),
        format!("/buildid/{missing}/section/.debug_info"),
        format!("/buildid/{missing}/source/usr/src/a.c"),
    ] {
        assert_eq!(s.get(&path).status(), 404, "{path}");
    }
    assert_eq!(s.get("/buildid/abc/debuginfo").status(), 400);
    assert_eq!(s.get("/buildid/nothex/executable").status(), 400);
}

#[test]
fn ssqp_keys_find_elf_files_case_insensitively() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    s.upload_elf(&f);
    let resp = s.get(&format!("/victim/elf-buildid-{}/victim", f.build_id));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().unwrap().as_ref(),
        std::fs::read(&f.stripped).unwrap().as_slice()
    );
    let resp = s.get(&format!(
        "/_.DEBUG/ELF-BUILDID-SYM-{}/_.debug",
        f.build_id.to_uppercase()
    ));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().unwrap().as_ref(),
        std::fs::read(&f.debug).unwrap().as_slice()
    );
    // Double slashes (a trailing / in a client's base URL) are tolerated.
    assert_eq!(
        s.get(&format!("//victim/elf-buildid-{}/victim", f.build_id))
            .status(),
        200
    );
    // Unknown keys and probes are 404, never 400/403.
    assert_eq!(
        s.get(&format!("/victim/elf-buildid-{}/victim.ex_", f.build_id))
            .status(),
        404
    );
    assert_eq!(s.get("/victim/elf-buildid-zz/victim").status(), 404);
    assert_eq!(
        s.get("/foo.pdb/497B72F6390A44FC878E5A2D63B6CC4B1/file.ptr")
            .status(),
        404
    );
}

#[test]
fn short_build_ids_answer_padded_and_unpadded() {
    let f = ElfFixture::build("shortid", &["-Wl,--build-id=0xdeadbeefcafe"]);
    assert_eq!(f.build_id, "deadbeefcafe");
    let s = TestServer::start();
    s.upload_elf(&f);
    assert_eq!(s.get("/buildid/deadbeefcafe/debuginfo").status(), 200);
    let padded = format!("{:0<40}", "deadbeefcafe");
    assert_eq!(
        s.get(&format!("/_.debug/elf-buildid-sym-{padded}/_.debug"))
            .status(),
        200
    );
    assert_eq!(
        s.get("/_.debug/elf-buildid-sym-deadbeefcafe/_.debug")
            .status(),
        200
    );
    assert_eq!(
        s.get(&format!("/shortid/elf-buildid-{padded}/shortid"))
            .status(),
        200
    );
}

#[test]
fn an_elf_under_the_wrong_debug_id_is_refused_naming_both_ids() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let debug = std::fs::read(&f.debug).unwrap();
    let wrong = "0123456789ABCDEF0123456789ABCDEF0";
    let resp = s.upload(zip_of(&[(&format!("victim/{wrong}/victim.debug"), &debug)]));
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(wrong) && msg.contains(&f.debug_id), "{msg}");
    assert_eq!(body["member"], format!("victim/{wrong}/victim.debug"));
    assert!(s.blobs().is_empty());
    // Under its build id (the code id) it is accepted too.
    let up = s.upload_ok(zip_of(&[(
        &format!("victim/{}/victim.debug", f.build_id),
        &debug,
    )]));
    assert_eq!(up["uploaded_keys"].as_array().unwrap().len(), 1);
}

#[test]
fn an_elf_without_build_id_gets_the_text_hash_id_and_no_debuginfod_key() {
    let f = ElfFixture::build("noid", &["-Wl,--build-id=none"]);
    assert!(f.build_id.is_empty());
    let full = std::fs::read(&f.full).unwrap();
    let id = symdepot::identity::identify_bytes(&full, "noid");
    assert_eq!(id.kind, "elf");
    assert_eq!(id.build_id, None);
    let debug_id = id.debug_id.clone().unwrap();
    assert_eq!(debug_id.len(), 33);
    assert!(debug_id.ends_with('0'));
    let keys = symdepot::identity::lookup::lookup_keys(&format!("noid/{debug_id}/noid"), &id);
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[test]
fn identity_of_real_elf_files() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let read = |p: &std::path::Path| {
        symdepot::identity::identify_bytes(&std::fs::read(p).unwrap(), "victim")
    };
    let full = read(&f.full);
    assert_eq!(full.kind, "elf");
    assert_eq!(full.build_id.as_deref(), Some(f.build_id.as_str()));
    assert_eq!(full.code_id.as_deref(), Some(f.build_id.as_str()));
    assert_eq!(full.debug_id.as_deref(), Some(f.debug_id.as_str()));
    assert_eq!(full.arch.as_deref(), Some("x86_64"));
    assert!(full.has_code && full.has_debug_info);
    let debug = read(&f.debug);
    assert_eq!(debug.debug_id.as_deref(), Some(f.debug_id.as_str()));
    assert!(debug.has_debug_info && !debug.has_code);
    let stripped = read(&f.stripped);
    assert_eq!(stripped.debug_id.as_deref(), Some(f.debug_id.as_str()));
    assert!(stripped.has_code && !stripped.has_debug_info);
}

#[test]
fn identity_of_a_rust_binary() {
    let path = env!("CARGO_BIN_EXE_symdepot");
    let notes = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    let notes = String::from_utf8(notes.stdout).unwrap();
    let build_id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .map(str::trim);
    let id = symdepot::identity::identify(std::fs::File::open(path).unwrap(), "symdepot");
    assert_eq!(id.kind, "elf");
    assert!(id.has_code);
    match build_id {
        Some(b) => {
            assert_eq!(id.build_id.as_deref(), Some(b));
            assert_eq!(id.debug_id.as_deref(), Some(breakpad_id(b).as_str()));
        }
        None => assert_eq!(id.debug_id.as_ref().map(String::len), Some(33)),
    }
}
