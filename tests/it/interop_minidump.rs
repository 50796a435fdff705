//! `minidump-stackwalk` (rust-minidump) symbolicates a real minidump with
//! symbols it downloads from the server: a C program built here, its `.sym`
//! from `dump_syms`, a minidump of it written while it spins.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until the process has used some CPU: it is past the loader and spinning.
fn wait_spinning(pid: u32) {
    let deadline = Instant::now() + crate::support::PATIENCE;
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
pub(crate) fn minidump_of(binary: &Path, out: &Path) {
    /// Kills the spinning child however the test ends (a missing tool panics).
    struct Spinning(std::process::Child);
    impl Drop for Spinning {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Spinning(Command::new(binary).spawn().unwrap());
    wait_spinning(child.0.id());
    let result = cargo_tool("symdepot-minidump-helper")
        .arg(child.0.id().to_string())
        .arg(out)
        .output()
        .unwrap();
    drop(child);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// A live process of a binary built here, caught in a minidump, and the
/// Breakpad symbols of the binary.
pub(crate) struct Crashed {
    pub(crate) binary: ElfFixture,
    pub(crate) work: tempfile::TempDir,
    pub(crate) dump: PathBuf,
    /// The `.sym`'s key (`<module>/<id>/<module>.sym`).
    pub(crate) key: String,
    pub(crate) sym: Vec<u8>,
}

/// Builds `name` (the spinning program of [`VICTIM_C`]), runs it, writes its
/// minidump and its `.sym`.
pub(crate) fn crashed(name: &str) -> Crashed {
    let binary = ElfFixture::build(name, &["-Wl,--build-id"]);
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join(format!("{name}.dmp"));
    minidump_of(&binary.full, &dump);
    let syms = work.path().join("syms");
    let key = dump_syms(&binary.full, &syms);
    let sym = std::fs::read(syms.join(&key)).unwrap();
    Crashed {
        binary,
        work,
        dump,
        key,
        sym,
    }
}

/// `dump_syms -s <dir>`: returns the path of the `.sym` it wrote, relative to `dir`.
pub(crate) fn dump_syms(binary: &Path, dir: &Path) -> String {
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

pub(crate) fn stackwalk(s: &TestServer, dump: &Path, scratch: &Path) -> String {
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
    let c = crashed("victim");
    let (f, dump, rel) = (&c.binary, &c.dump, &c.key);
    assert_eq!(*rel, format!("victim/{}/victim.sym", f.debug_id));

    let s = TestServer::start();
    // Before the upload: no symbols, no function names.
    let scratch = tempfile::tempdir().unwrap();
    let before = stackwalk(&s, dump, scratch.path());
    assert!(!before.contains("victim!spin_level2 [victim.c"), "{before}");
    assert!(s.count("SELECT COUNT(*) FROM keys") == 0);

    let text = c.sym.clone();
    s.upload_ok(zip_of(&[(rel, &text)]));
    let scratch = tempfile::tempdir().unwrap();
    let after = stackwalk(&s, dump, scratch.path());
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

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(d[at..at + 4].try_into().unwrap())
}

/// Rewrites a minidump as a Windows one whose `victim` module has no CodeView
/// record, as Windows writes for modules whose debug info it could not read:
/// rust-minidump then knows the module only by code file and code id
/// (`00000000` + size of image) and finds its debug file through the
/// server's code-id redirect. Returns the code id.
fn as_windows_dump_without_debug_id(dump: &mut [u8], module: &str) -> String {
    let streams = u32_at(dump, 8) as usize;
    let dir = u32_at(dump, 12) as usize;
    let mut code_id = None;
    for i in 0..streams {
        let entry = dir + i * 12;
        let (kind, rva) = (u32_at(dump, entry), u32_at(dump, entry + 8) as usize);
        match kind {
            // SystemInfo: PlatformId at offset 20 becomes VER_PLATFORM_WIN32_NT.
            7 => dump[rva + 20..rva + 24].copy_from_slice(&2u32.to_le_bytes()),
            // ModuleList: find the module by name and drop its CodeView record.
            4 => {
                for m in 0..u32_at(dump, rva) as usize {
                    let at = rva + 4 + m * 108;
                    let name_rva = u32_at(dump, at + 20) as usize;
                    let len = u32_at(dump, name_rva) as usize;
                    let utf16: Vec<u16> = dump[name_rva + 4..name_rva + 4 + len]
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    let name = String::from_utf16_lossy(&utf16);
                    if name.rsplit('/').next() == Some(module) {
                        dump[at + 16..at + 20].copy_from_slice(&0u32.to_le_bytes());
                        dump[at + 76..at + 80].copy_from_slice(&0u32.to_le_bytes());
                        code_id = Some(format!("00000000{:x}", u32_at(dump, at + 8)));
                    }
                }
            }
            _ => {}
        }
    }
    code_id.expect("the module is in the dump")
}

#[test]
fn minidump_stackwalk_follows_the_code_id_redirect() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("victim.dmp");
    minidump_of(&f.full, &dump);
    let mut bytes = std::fs::read(&dump).unwrap();
    let code_id = as_windows_dump_without_debug_id(&mut bytes, "victim");
    std::fs::write(&dump, &bytes).unwrap();

    let syms = work.path().join("syms");
    let rel = dump_syms(&f.full, &syms);
    // The .sym names the module's code file and code id as the dump now does.
    let text = String::from_utf8(std::fs::read(syms.join(&rel)).unwrap()).unwrap();
    let (module_line, rest) = text.split_once('\n').unwrap();
    let rest: String = rest
        .lines()
        .filter(|l| !l.starts_with("INFO CODE_ID"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = format!("{module_line}\nINFO CODE_ID {code_id} victim\n{rest}");

    let s = TestServer::start();
    s.upload_ok(zip_of(&[(&rel, text.as_bytes())]));
    let scratch = tempfile::tempdir().unwrap();
    let out = stackwalk(&s, &dump, scratch.path());
    assert!(out.contains("victim!spin_level2 [victim.c : 5"), "{out}");
    // It got there by the redirect: the code-id path answered 302.
    let resp = s.get(&format!("/victim/{}/victim.sym", code_id.to_uppercase()));
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], format!("/{rel}").as_str());
}
