//! Windows files built here without Windows (clang + lld-link): a PE and its
//! PDB, identified like `dump_syms` identifies them, and served by SSQP keys.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

pub(crate) struct PeFixture {
    _dir: tempfile::TempDir,
    pub(crate) exe: PathBuf,
    pub(crate) pdb: PathBuf,
    /// `MODULE windows x86_64 <debug_id> x.pdb`, as dump_syms reads it.
    pub(crate) debug_id: String,
    /// `INFO CODE_ID <code_id> x.exe`.
    pub(crate) code_id: String,
    sym: Vec<u8>,
}

pub(crate) fn build_pe() -> PeFixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("x.c");
    std::fs::write(
        &src,
        "int helper(int a) { return a * 3 + 1; }\nint mainCRTStartup(void) { return helper(2); }\n",
    )
    .unwrap();
    let obj = dir.path().join("x.obj");
    let out = Command::new("clang")
        .args([
            "--target=x86_64-pc-windows-msvc",
            "-ffreestanding",
            "-fno-stack-protector",
            "-gcodeview",
            "-g",
            "-O1",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang is installed (scripts/install-test-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (exe, pdb) = (dir.path().join("x.exe"), dir.path().join("x.pdb"));
    let out = Command::new("lld-link")
        .args([
            "/nologo",
            "/nodefaultlib",
            "/entry:mainCRTStartup",
            "/subsystem:console",
            "/debug",
        ])
        .arg(format!("/pdb:{}", pdb.display()))
        .arg(format!("/out:{}", exe.display()))
        .arg(&obj)
        .output()
        .expect("lld-link is installed (scripts/install-test-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cargo_tool("dump_syms").arg(&exe).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sym = out.stdout;
    let text = String::from_utf8_lossy(&sym).into_owned();
    let mut lines = text.lines();
    let module: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(&module[..3], ["MODULE", "windows", "x86_64"]);
    assert_eq!(module[4], "x.pdb");
    let code: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(&code[..2], ["INFO", "CODE_ID"]);
    PeFixture {
        debug_id: module[3].to_string(),
        code_id: code[2].to_string(),
        _dir: dir,
        exe,
        pdb,
        sym,
    }
}

#[test]
fn pe_and_pdb_identities_agree_with_dump_syms() {
    let f = build_pe();
    let exe = symdepot::identity::identify_bytes(&std::fs::read(&f.exe).unwrap(), "x.exe");
    assert_eq!(exe.kind, "pe");
    assert_eq!(exe.code_id.as_deref(), Some(f.code_id.as_str()));
    assert_eq!(exe.debug_id.as_deref(), Some(f.debug_id.as_str()));
    assert_eq!(exe.debug_file.as_deref(), Some("x.pdb"));
    assert_eq!(exe.code_file.as_deref(), Some("x.exe"));
    assert_eq!(exe.ids.len(), 1);
    let pdb = symdepot::identity::identify(std::fs::File::open(&f.pdb).unwrap(), "x.pdb");
    assert_eq!(pdb.kind, "pdb");
    assert_eq!(pdb.debug_id.as_deref(), Some(f.debug_id.as_str()));
}

#[test]
fn pe_pdb_and_sym_are_served_by_ssqp_and_breakpad_keys() {
    let f = build_pe();
    let s = TestServer::start();
    let (exe, pdb) = (
        std::fs::read(&f.exe).unwrap(),
        std::fs::read(&f.pdb).unwrap(),
    );
    let (id, code) = (&f.debug_id, &f.code_id);
    s.upload_ok(zip_of(&[
        (&format!("x.exe/{code}/x.exe"), &exe),
        (&format!("x.pdb/{id}/x.pdb"), &pdb),
        (&format!("x.pdb/{id}/x.sym"), &f.sym),
    ]));
    // SymStore keys, in any case.
    assert_eq!(
        s.get(&format!("/x.pdb/{id}/x.pdb"))
            .bytes()
            .unwrap()
            .as_ref(),
        pdb.as_slice()
    );
    assert_eq!(
        s.get(&format!("/X.PDB/{}/x.pdb", id.to_lowercase()))
            .status(),
        200
    );
    assert_eq!(
        s.get(&format!("/x.exe/{code}/x.exe"))
            .bytes()
            .unwrap()
            .as_ref(),
        exe.as_slice()
    );
    assert_eq!(
        s.get(&format!("/x.exe/{}/X.EXE", code.to_uppercase()))
            .status(),
        200
    );
    // The binary is also found under its debug id.
    assert_eq!(s.get(&format!("/x.exe/{id}/x.exe")).status(), 200);
    // Compressed-name probes and file.ptr are 404 unless uploaded.
    assert_eq!(s.get(&format!("/x.pdb/{id}/x.pd_")).status(), 404);
    assert_eq!(s.get(&format!("/x.pdb/{id}/file.ptr")).status(), 404);
    // The .sym by code id redirects to its debug file.
    let resp = s.get(&format!("/x.exe/{code}/x.sym"));
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        format!("/x.pdb/{id}/x.sym").as_str()
    );
    // The index has the kinds and ids.
    let kinds: Vec<String> = s
        .rows("SELECT kind FROM keys ORDER BY key", &[])
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert_eq!(kinds, ["pe", "pdb", "sym"]);
}

#[test]
fn a_pe_or_pdb_under_another_id_is_refused() {
    let f = build_pe();
    let s = TestServer::start();
    let wrong = "0123456789ABCDEF0123456789ABCDEF1";
    let resp = s.upload(zip_of(&[(
        &format!("x.pdb/{wrong}/x.pdb"),
        &std::fs::read(&f.pdb).unwrap(),
    )]));
    assert_eq!(resp.status(), 400);
    let msg = resp.json::<serde_json::Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(wrong) && msg.contains(&f.debug_id), "{msg}");
    let resp = s.upload(zip_of(&[(
        &format!("x.exe/{wrong}/x.exe"),
        &std::fs::read(&f.exe).unwrap(),
    )]));
    assert_eq!(resp.status(), 400);
    // A PE under its debug id is accepted (and found by code id too).
    let up = s.upload_ok(zip_of(&[(
        &format!("x.exe/{}/x.exe", f.debug_id),
        &std::fs::read(&f.exe).unwrap(),
    )]));
    assert_eq!(up["uploaded_keys"].as_array().unwrap().len(), 1);
    assert_eq!(s.get(&format!("/x.exe/{}/x.exe", f.code_id)).status(), 200);
}

#[test]
fn an_uploaded_cab_compressed_pdb_is_served_under_its_name() {
    let f = build_pe();
    let cab = f.pdb.with_file_name("x.pd_");
    let out = Command::new("gcab")
        .arg("-c")
        .arg(&cab)
        .arg(&f.pdb)
        .output()
        .expect("gcab is installed (scripts/install-test-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = TestServer::start();
    let bytes = std::fs::read(&cab).unwrap();
    s.upload_ok(zip_of(&[(&format!("x.pdb/{}/x.pd_", f.debug_id), &bytes)]));
    assert_eq!(
        s.get(&format!("/x.pdb/{}/x.pd_", f.debug_id))
            .bytes()
            .unwrap()
            .as_ref(),
        bytes.as_slice()
    );
}

#[test]
fn symfetch_fetches_pdb_and_exe_by_ssqp_key() {
    let f = build_pe();
    let s = TestServer::start();
    let (exe, pdb) = (
        std::fs::read(&f.exe).unwrap(),
        std::fs::read(&f.pdb).unwrap(),
    );
    s.upload_ok(zip_of(&[
        (&format!("x.exe/{}/x.exe", f.code_id), &exe),
        (&format!("x.pdb/{}/x.pdb", f.debug_id), &pdb),
    ]));
    let cache = tempfile::tempdir().unwrap();
    let fetch = |name: &str, hash: &str| {
        let out = cargo_tool("symfetch")
            .arg("--server")
            .arg(s.url("/"))
            .arg("--cache")
            .arg(cache.path())
            .args([name, hash])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} {hash}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
    };
    assert_eq!(fetch("x.pdb", &f.debug_id), pdb);
    assert_eq!(fetch("x.exe", &f.code_id), exe);
}

#[test]
fn dump_syms_fetches_the_pdb_from_the_server_through_a_srv_path() {
    let f = build_pe();
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(
        &format!("x.pdb/{}/x.pdb", f.debug_id),
        &std::fs::read(&f.pdb).unwrap(),
    )]));
    // Only the exe is local: dump_syms finds its PDB on the symbol server.
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("x.exe");
    std::fs::copy(&f.exe, &exe).unwrap();
    let cache = work.path().join("cache");
    let out = cargo_tool("dump_syms")
        .arg("--symbol-server")
        .arg(format!("SRV*{}*{}", cache.display(), s.url("/")))
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("MODULE windows x86_64 {} x.pdb", f.debug_id)),
        "{text}"
    );
    assert!(
        text.contains(" helper(int)"),
        "the PDB's functions were read: {text}"
    );
}

#[test]
fn loose_pe_and_pdb_are_placed_by_identity() {
    let f = build_pe();
    let s = TestServer::start();
    let (exe, pdb) = (
        std::fs::read(&f.exe).unwrap(),
        std::fs::read(&f.pdb).unwrap(),
    );
    let zip = zip_of(&[("bin/x.exe", &exe), ("pdbs/x.pdb", &pdb)]);
    let resp = s
        .client
        .post(s.url("/upload/?layout=auto"))
        .header("Auth-Token", &s.token)
        .multipart(reqwest::blocking::multipart::Form::new().part(
            "symbols.zip",
            reqwest::blocking::multipart::Part::bytes(zip).file_name("loose.zip"),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().unwrap();
    let mut keys: Vec<String> =
        serde_json::from_value(body["upload"]["uploaded_keys"].clone()).unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("x.exe/{}/x.exe", f.code_id),
            format!("x.pdb/{}/x.pdb", f.debug_id)
        ]
    );
    assert_eq!(
        s.get(&format!("/x.pdb/{}/x.pdb", f.debug_id))
            .bytes()
            .unwrap()
            .as_ref(),
        pdb.as_slice()
    );
    assert_eq!(
        s.get(&format!("/x.exe/{}/x.exe", f.code_id))
            .bytes()
            .unwrap()
            .as_ref(),
        exe.as_slice()
    );
}
