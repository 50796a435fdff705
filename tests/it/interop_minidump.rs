//! `minidump-stackwalk` (rust-minidump) symbolicates a real minidump with
//! symbols it downloads from the server: a C program built here, its `.sym`
//! from `dump_syms`, a minidump of it written while it spins.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until the process has used some CPU: it is past the loader and spinning.
fn wait_spinning(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let utime: u64 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(11)
            .unwrap()
            .parse()
            .unwrap();
        if utime >= 2 {
            return;
        }
        assert!(Instant::now() < deadline, "the victim never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A minidump of the fixture's full binary, spinning in `spin_level2`.
fn minidump_of(binary: &Path, out: &Path) {
    let mut child = Command::new(binary).spawn().unwrap();
    wait_spinning(child.id());
    let result = cargo_tool("symdepot-minidump-helper")
        .arg(child.id().to_string())
        .arg(out)
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// `dump_syms -s <dir>`: returns the path of the `.sym` it wrote, relative to `dir`.
fn dump_syms(binary: &Path, dir: &Path) -> String {
    let out = cargo_tool("dump_syms")
        .arg("-s")
        .arg(dir)
        .arg(binary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = files_under(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0]
        .strip_prefix(dir)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn stackwalk(s: &TestServer, dump: &Path, scratch: &Path) -> String {
    let cache: PathBuf = scratch.join("cache");
    let out = cargo_tool("minidump-stackwalk")
        .arg("--symbols-url")
        .arg(s.url("/"))
        .arg("--symbols-cache")
        .arg(&cache)
        .arg("--symbols-tmp")
        .arg(scratch.join("tmp"))
        .arg(dump)
        .output()
        .unwrap();
    // minidump-stackwalk exits 0 even when every symbol is missing: assert on its output.
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn minidump_stackwalk_symbolicates_with_uploaded_symbols() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("victim.dmp");
    minidump_of(&f.full, &dump);
    let syms = work.path().join("syms");
    let rel = dump_syms(&f.full, &syms);
    assert_eq!(rel, format!("victim/{}/victim.sym", f.debug_id));

    let s = TestServer::start();
    // Before the upload: no symbols, no function names.
    let scratch = tempfile::tempdir().unwrap();
    let before = stackwalk(&s, &dump, scratch.path());
    assert!(!before.contains("victim!spin_level2 [victim.c"), "{before}");
    assert!(s.count("SELECT COUNT(*) FROM keys") == 0);

    let text = std::fs::read(syms.join(&rel)).unwrap();
    s.upload_ok(zip_of(&[(&rel, &text)]));
    let scratch = tempfile::tempdir().unwrap();
    let after = stackwalk(&s, &dump, scratch.path());
    assert!(
        after.contains("victim!spin_level2 [victim.c : 5"),
        "{after}"
    );
    assert!(
        after.contains("victim!spin_level1 [victim.c : 8"),
        "{after}"
    );
    assert!(after.contains("victim!main [victim.c : 9"), "{after}");
}
