//! `export` and `import`: trees the real tools read, and round trips.

use std::process::Command;

use crate::interop_minidump::{dump_syms, minidump_of};
use crate::support::*;

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_breakpad_export_is_read_by_minidump_stackwalk() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("victim.dmp");
    minidump_of(&f.full, &dump);
    let rel = dump_syms(&f.full, &work.path().join("syms"));
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(
        &rel,
        &std::fs::read(work.path().join("syms").join(&rel)).unwrap(),
    )]));
    let out = work.path().join("export");
    run(symdepot(&s.data_dir())
        .args(["export", "--layout", "breakpad", "--plain"])
        .arg(&out));
    // Plain text, not the stored gzip.
    assert!(
        std::fs::read(out.join(&rel))
            .unwrap()
            .starts_with(b"MODULE Linux")
    );
    let text = run(cargo_tool("minidump-stackwalk")
        .arg("--symbols-path")
        .arg(&out)
        .arg(&dump));
    assert!(text.contains("victim!spin_level2 [victim.c : 5"), "{text}");
}

#[test]
fn a_debuginfod_export_is_read_through_a_file_url() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let (stripped, debug) = (
        std::fs::read(&f.stripped).unwrap(),
        std::fs::read(&f.debug).unwrap(),
    );
    s.upload_ok(zip_of(&[
        (&format!("victim/{}/victim", f.debug_id), &stripped),
        (&format!("victim/{}/victim.debug", f.debug_id), &debug),
    ]));
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("tree");
    run(symdepot(&s.data_dir())
        .args(["export", "--layout", "debuginfod", "--plain"])
        .arg(&out));
    assert_eq!(
        std::fs::read(out.join(format!("buildid/{}/debuginfo", f.build_id))).unwrap(),
        debug
    );
    let cache = work.path().join("cache");
    let path = run(Command::new("debuginfod-find")
        .env("DEBUGINFOD_URLS", format!("file://{}", out.display()))
        .env("DEBUGINFOD_CACHE_PATH", &cache)
        .args(["debuginfo", &f.build_id]));
    assert_eq!(std::fs::read(path.trim()).unwrap(), debug);
    let path = run(Command::new("debuginfod-find")
        .env("DEBUGINFOD_URLS", format!("file://{}", out.display()))
        .env("DEBUGINFOD_CACHE_PATH", &cache)
        .args(["executable", &f.build_id]));
    assert_eq!(std::fs::read(path.trim()).unwrap(), stripped);
}

/// Every key's bytes as served.
fn served(s: &TestServer, keys: &[String]) -> Vec<Vec<u8>> {
    keys.iter()
        .map(|k| s.get(&format!("/{k}")).bytes().unwrap().to_vec())
        .collect()
}

#[test]
fn export_then_import_round_trips_byte_identical_in_every_layout() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let keys = vec![
        format!("xul.pdb/{ID_A}/xul.sym"),
        format!("victim/{}/victim.debug", f.debug_id),
        format!("data.bin/{ID_B}/data.bin"),
    ];
    let contents = [
        sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\n"),
        std::fs::read(&f.debug).unwrap(),
        b"opaque bytes".to_vec(),
    ];
    let members: Vec<(&str, &[u8])> = keys
        .iter()
        .map(String::as_str)
        .zip(contents.iter().map(Vec::as_slice))
        .collect();
    s.upload_ok(zip_of(&members));
    let original = served(&s, &keys);
    assert_eq!(original[0], contents[0]);

    for (layout, extra) in [
        ("breakpad", None),
        ("symstore", None),
        ("symstore", Some("--index2")),
    ] {
        let work = tempfile::tempdir().unwrap();
        let tree = work.path().join("tree");
        let mut c = symdepot(&s.data_dir());
        c.args(["export", "--layout", layout, "--plain"]).arg(&tree);
        if let Some(e) = extra {
            c.arg(e);
        }
        run(&mut c);
        if extra.is_some() {
            assert!(tree.join("index2.txt").exists());
            assert!(tree.join("xu").join(&keys[0]).exists(), "two-tier tree");
        }
        let target = TestServer::start();
        let out = run(symdepot(&target.data_dir()).arg("import").arg(&tree));
        // The debug file's SSQP path in a SymStore share names a file already imported.
        let again = if layout == "symstore" { 1 } else { 0 };
        assert!(
            out.contains(&format!("3 stored, {again} already stored, 0 failed")),
            "{layout} {extra:?}: {out}"
        );
        assert!(
            served(&target, &keys) == original,
            "{layout} {extra:?}: served bytes differ"
        );
    }

    // A debuginfod tree holds only what has a build id.
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    run(symdepot(&s.data_dir())
        .args(["export", "--layout", "debuginfod", "--plain"])
        .arg(&tree));
    let target = TestServer::start();
    run(symdepot(&target.data_dir()).arg("import").arg(&tree));
    let resp = target.get(&format!("/buildid/{}/debuginfo", f.build_id));
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().unwrap().as_ref() == contents[1].as_slice(),
        "debug file differs after the round trip"
    );
}

#[test]
fn zip_exports_split_at_the_size_limit_and_upload_again() {
    let s = TestServer::start();
    let members: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            let m = format!("m{i}.pdb");
            (
                format!("{m}/{ID_A}/m{i}.sym"),
                sym(&m, ID_A, &"INFO GENERATOR padding padding\n".repeat(3)),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    s.upload_ok(zip_of(&refs));
    let one = members[0].1.len();
    let work = tempfile::tempdir().unwrap();
    let out = run(symdepot(&s.data_dir())
        .args(["export", "--zip"])
        .arg(work.path())
        .args(["--max-size", &(2 * one + 1).to_string()]));
    let zips: Vec<&str> = out.lines().collect();
    assert_eq!(zips.len(), 3, "{out}");
    let target = TestServer::start();
    let mut stored = 0;
    for z in zips {
        let up = target.upload_ok(std::fs::read(z).unwrap());
        stored += up["uploaded_keys"].as_array().unwrap().len();
    }
    assert_eq!(stored, 5);
    for (k, d) in &members {
        assert_eq!(
            target.get(&format!("/{k}")).bytes().unwrap().as_ref(),
            d.as_slice()
        );
    }
}

#[test]
fn export_filters_by_module_upload_date_and_try() {
    let s = TestServer::start();
    let a = format!("a.pdb/{ID_A}/a.sym");
    let b = format!("b.pdb/{ID_A}/b.sym");
    let t = format!("t.pdb/{ID_B}/t.sym");
    let first = s.upload_ok(zip_of(&[(&a, &sym("a.pdb", ID_A, ""))]));
    s.upload_ok(zip_of(&[(&b, &sym("b.pdb", ID_A, ""))]));
    assert_eq!(
        s.upload_with(
            &s.token,
            zip_of(&[(&t, &sym("t.pdb", ID_B, ""))]),
            Some("1")
        )
        .status(),
        201
    );
    let exported = |args: &[&str]| -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        run(symdepot(&s.data_dir())
            .args(["export", "--plain"])
            .arg(dir.path())
            .args(args));
        let mut v: Vec<String> = files_under(dir.path())
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(exported(&[]), [a.clone(), b.clone()]);
    assert_eq!(exported(&["--module", "B.PDB"]), [b]);
    assert_eq!(exported(&["--upload", &first["id"].to_string()]), [a]);
    assert_eq!(exported(&["--try"]), [t]);
    assert_eq!(exported(&["--since", "2000-01-01"]).len(), 2);
    assert!(exported(&["--since", "2999-01-01"]).is_empty());
    assert_eq!(exported(&["--since", "7d"]).len(), 2);
    assert_eq!(exported(&["--since", "2000-01-01T00:00:00Z"]).len(), 2);
}

#[test]
fn export_since_that_is_not_a_time_is_refused_echoing_what_was_typed() {
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(&good_member().0, &good_member().1)]));
    let dir = tempfile::tempdir().unwrap();
    for typed in ["someday", "7", ">=2026-11-01"] {
        let out = symdepot(&s.data_dir())
            .args(["export", "--plain"])
            .arg(dir.path())
            .args(["--since", typed])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "--since {typed:?}: expected a date (2026-11-01), a date-time (RFC 3339, \
             2026-11-01T12:00:00Z), today, yesterday or a duration (7d, 12h)"
        );
        assert!(err.contains(&expected), "{err}");
    }
    assert!(files_under(dir.path()).is_empty());
}

/// Exports `layout` of the store into a new folder: the folder and what the command printed.
fn export_layout(s: &TestServer, layout: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(symdepot(&s.data_dir())
        .args(["export", "--layout", layout, "--plain"])
        .arg(dir.path()));
    (dir, out)
}

/// Every file of an exported tree is what the server answers at the same path.
fn assert_served_as_exported(s: &TestServer, dir: &std::path::Path) {
    for file in files_under(dir) {
        let rel = file
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let resp = s.get(&format!("/{rel}"));
        assert_eq!(resp.status(), 200, "{rel}");
        assert!(
            resp.bytes().unwrap().as_ref() == std::fs::read(&file).unwrap().as_slice(),
            "{rel}: the export holds other bytes than the server answers"
        );
    }
}

#[test]
fn a_symstore_export_holds_elf_files_under_the_ssqp_keys_the_server_answers() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let stripped = std::fs::read(&f.stripped).unwrap();
    let debug = std::fs::read(&f.debug).unwrap();
    s.upload_ok(zip_of(&[
        (&format!("victim/{}/victim", f.debug_id), &stripped),
        (&format!("victim/{}/victim.debug", f.debug_id), &debug),
    ]));
    let (dir, out) = export_layout(&s, "symstore");
    let id = &f.build_id;
    let binary = dir.path().join(format!("victim/elf-buildid-{id}/victim"));
    let debug_file = dir
        .path()
        .join(format!("_.debug/elf-buildid-sym-{id}/_.debug"));
    assert_eq!(std::fs::read(binary).unwrap(), stripped);
    assert_eq!(std::fs::read(debug_file).unwrap(), debug);
    assert!(out.contains("exported 4 files from 2 keys"), "{out}");
    assert_eq!(files_under(dir.path()).len(), 4);
    assert_served_as_exported(&s, dir.path());

    // A share holding the SSQP paths alone is imported by the files' identities.
    std::fs::remove_dir_all(dir.path().join("victim").join(&f.debug_id)).unwrap();
    let target = TestServer::start();
    let out = run(symdepot(&target.data_dir()).arg("import").arg(dir.path()));
    assert!(
        out.contains("2 stored, 0 already stored, 0 failed"),
        "{out}"
    );
    assert_served_as_exported(&target, dir.path());

    // The two-tier tree: the same paths below their first two characters.
    let two = tempfile::tempdir().unwrap();
    run(symdepot(&s.data_dir())
        .args(["export", "--layout", "symstore", "--index2", "--plain"])
        .arg(two.path()));
    assert!(
        two.path()
            .join(format!("vi/victim/elf-buildid-{id}/victim"))
            .is_file()
    );
    assert!(
        two.path()
            .join(format!("_./_.debug/elf-buildid-sym-{id}/_.debug"))
            .is_file()
    );
}

#[test]
fn an_export_writes_a_path_two_keys_share_once_and_counts_what_it_wrote() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    // Both hold debug info for one build id; the server answers with the later upload.
    let debug = std::fs::read(&f.debug).unwrap();
    s.upload_ok(zip_of(&[(
        &format!("victim/{}/victim.debug", f.debug_id),
        &debug,
    )]));
    let full = std::fs::read(&f.full).unwrap();
    s.upload_ok(zip_of(&[(&format!("victim/{}/victim", f.debug_id), &full)]));

    let (dir, out) = export_layout(&s, "debuginfod");
    assert!(out.contains("exported 2 files from 2 keys"), "{out}");
    assert_eq!(files_under(dir.path()).len(), 2);
    let debuginfo = dir.path().join(format!("buildid/{}/debuginfo", f.build_id));
    assert_eq!(std::fs::read(debuginfo).unwrap(), full);
    assert_served_as_exported(&s, dir.path());

    // Each key under its own key, the debug file's SSQP path once, the binary's.
    let (dir, out) = export_layout(&s, "symstore");
    assert!(out.contains("exported 4 files from 2 keys"), "{out}");
    assert_eq!(files_under(dir.path()).len(), 4);
    assert_served_as_exported(&s, dir.path());
}
