//! Real debuginfod clients against the real server: elfutils' `debuginfod-find`,
//! LLVM's `llvm-debuginfod-find`, and `gdb` resolving source lines of a
//! stripped binary. `scripts/install-test-tools` installs them.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: run scripts/install-test-tools"
    );
    Command::new(name)
}

fn served(f: &ElfFixture) -> TestServer {
    let s = TestServer::start();
    s.upload_elf(f);
    s
}

fn debuginfod_find(s: &TestServer, cache: &Path, args: &[&str]) -> Output {
    debuginfod_find_cmd(s, cache).args(args).output().unwrap()
}

fn debuginfod_find_cmd(s: &TestServer, cache: &Path) -> Command {
    let mut cmd = tool("debuginfod-find");
    cmd.env("DEBUGINFOD_URLS", s.url(""))
        .env("DEBUGINFOD_CACHE_PATH", cache)
        .env("DEBUGINFOD_TIMEOUT", "30");
    cmd
}

#[test]
fn debuginfod_find_sends_the_token_of_its_headers_file_to_a_private_store() {
    let f = ElfFixture::build("secret", &["-Wl,--build-id"]);
    let s = TestServer::with_config(|c| c.private_downloads = true);
    s.upload_elf(&f);
    let cache = tempfile::tempdir().unwrap();
    let refused = debuginfod_find(&s, cache.path(), &["debuginfo", &f.build_id]);
    assert!(!refused.status.success(), "no token, no file");
    // libdebuginfod caches the refusal as a miss, so the retry uses a fresh cache.

    let reader = s.create_token(&["download"], "debugger");
    let headers = cache.path().join("headers");
    std::fs::write(&headers, format!("Authorization: Bearer {reader}\n")).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = debuginfod_find_cmd(&s, fresh.path())
        .env("DEBUGINFOD_HEADERS_FILE", &headers)
        .args(["debuginfo", &f.build_id])
        .output()
        .unwrap();
    let path = stdout_ok(out);
    assert_eq!(
        std::fs::read(path.trim()).unwrap(),
        std::fs::read(&f.debug).unwrap()
    );
}

#[test]
fn debuginfod_find_fetches_debuginfo_executable_and_sections() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = served(&f);
    let cache = tempfile::tempdir().unwrap();
    let path = stdout_ok(debuginfod_find(
        &s,
        cache.path(),
        &["debuginfo", &f.build_id],
    ));
    assert_eq!(
        std::fs::read(path.trim()).unwrap(),
        std::fs::read(&f.debug).unwrap()
    );
    let path = stdout_ok(debuginfod_find(
        &s,
        cache.path(),
        &["executable", &f.build_id],
    ));
    assert_eq!(
        std::fs::read(path.trim()).unwrap(),
        std::fs::read(&f.stripped).unwrap()
    );

    let expected = f.dir.path().join("debug_info.bin");
    stdout_ok(
        Command::new("objcopy")
            .arg(format!("--dump-section=.debug_info={}", expected.display()))
            .arg(&f.debug)
            .arg(f.dir.path().join("scratch.o"))
            .output()
            .unwrap(),
    );
    let path = stdout_ok(debuginfod_find(
        &s,
        cache.path(),
        &["section", &f.build_id, ".debug_info"],
    ));
    assert_eq!(
        std::fs::read(path.trim()).unwrap(),
        std::fs::read(expected).unwrap()
    );

    let missing = debuginfod_find(
        &s,
        cache.path(),
        &["debuginfo", "00112233445566778899aabbccddeeff00112233"],
    );
    assert!(!missing.status.success());
}

#[test]
fn llvm_debuginfod_find_fetches_debuginfo() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = served(&f);
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new("/usr/lib/llvm-14/bin/llvm-debuginfod-find")
        .env("DEBUGINFOD_URLS", s.url(""))
        .env("DEBUGINFOD_CACHE_PATH", cache.path())
        .args(["--debuginfo", &f.build_id])
        .output()
        .expect("llvm-debuginfod-find (LLVM 14) is installed");
    let path = stdout_ok(out);
    assert_eq!(
        std::fs::read(path.trim()).unwrap(),
        std::fs::read(&f.debug).unwrap()
    );
}

#[test]
fn gdb_resolves_source_lines_of_a_stripped_binary() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = served(&f);
    // gdb must not find the debug file next to the binary: run it on a copy elsewhere.
    let run = tempfile::tempdir().unwrap();
    let binary = run.path().join("victim");
    std::fs::copy(&f.stripped, &binary).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let without = stdout_ok(
        tool("gdb")
            .env_remove("DEBUGINFOD_URLS")
            .args(["-nx", "-batch", "-ex", "info line spin_level2"])
            .arg(&binary)
            .output()
            .unwrap(),
    );
    assert!(
        !without.contains("victim.c"),
        "the stripped binary alone has no line table: {without}"
    );

    let out = stdout_ok(
        tool("gdb")
            .env("DEBUGINFOD_URLS", s.url(""))
            .env("DEBUGINFOD_CACHE_PATH", cache.path())
            .args(["-nx", "-batch", "-iex", "set debuginfod enabled on"])
            .args([
                "-ex",
                "info line spin_level2",
                "-ex",
                "info scope spin_level2",
            ])
            .arg(&binary)
            .output()
            .unwrap(),
    );
    // VICTIM_C starts with a newline: spin_level2 is defined on line 3 and its body starts on line 4.
    assert!(
        out.contains("Line 4 of \"") && out.contains("victim.c\" starts at address"),
        "{out}"
    );
    assert!(out.contains("<spin_level2>"), "{out}");
    assert!(out.contains("Symbol x is"), "{out}");
}

/// Runs `script` with bash inside a network namespace of its own
/// (`unshare -n`, loopback up): elfutils `debuginfod` there cannot reach
/// anything but what the script starts beside it. Returns its stdout.
fn in_own_network(script: &str) -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg("command -v unshare && command -v ip && command -v debuginfod")
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "unshare, ip and debuginfod are needed: run scripts/install-test-tools"
    );
    stdout_ok(
        Command::new("unshare")
            .args(["-n", "bash", "-c"])
            .arg(format!("set -e\nip link set lo up\n{script}"))
            .output()
            .unwrap(),
    )
}

#[test]
fn a_debuginfod_upstream_gives_debuginfod_find_and_gdb_what_only_it_has() {
    let f = ElfFixture::build("upvictim", &["-Wl,--build-id"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The upstream's files: the stripped binary and its debug file.
    let up = w.join("upstream");
    std::fs::create_dir(&up).unwrap();
    std::fs::copy(&f.stripped, up.join("upvictim")).unwrap();
    std::fs::copy(&f.debug, up.join("upvictim.debug")).unwrap();
    // gdb must not find the debug file next to the binary.
    std::fs::create_dir(w.join("run")).unwrap();
    std::fs::copy(&f.stripped, w.join("run/upvictim")).unwrap();
    let id = &f.build_id;
    let bin = env!("CARGO_BIN_EXE_symdepot");
    let out = in_own_network(&format!(
        r#"
W={w}
debuginfod -F "$W/upstream" -p 8002 -d "$W/upstream.sqlite" >"$W/upstream.log" 2>&1 &
UP=$!
SYMDEPOT_UPSTREAMS=debuginfod+http://127.0.0.1:8002/ {bin} --data-dir "$W/data" serve --listen 127.0.0.1:8001 >"$W/mirror.log" 2>&1 &
MIRROR=$!
trap 'kill $UP $MIRROR 2>/dev/null || true' EXIT
# Ready when the upstream has indexed the debug file and the mirror answers.
for _ in $(seq 600); do
  curl -sf -o /dev/null http://127.0.0.1:8002/buildid/{id}/debuginfo && curl -sf -o /dev/null http://127.0.0.1:8001/__lbheartbeat__ && break
  sleep 0.1
done
export DEBUGINFOD_URLS=http://127.0.0.1:8001/ DEBUGINFOD_TIMEOUT=30
echo "debuginfo: $(DEBUGINFOD_CACHE_PATH=$W/c1 debuginfod-find debuginfo {id})"
echo "executable: $(DEBUGINFOD_CACHE_PATH=$W/c1 debuginfod-find executable {id})"
echo "unknown: $(curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:8001/buildid/00112233445566778899aabbccddeeff00112233/debuginfo)"
DEBUGINFOD_CACHE_PATH=$W/c2 gdb -nx -batch -iex 'set debuginfod enabled on' -ex 'info line spin_level2' "$W/run/upvictim" 2>&1
# Kept: served with the upstream gone.
kill $UP; wait $UP 2>/dev/null || true
echo "kept: $(curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:8001/buildid/{id}/debuginfo)"
"#,
        w = w.display()
    ));
    let line = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .trim()
            .to_string()
    };
    assert_eq!(
        std::fs::read(line("debuginfo")).unwrap(),
        std::fs::read(&f.debug).unwrap()
    );
    assert_eq!(
        std::fs::read(line("executable")).unwrap(),
        std::fs::read(&f.stripped).unwrap()
    );
    assert_eq!(line("unknown"), "404");
    assert!(
        out.contains("Line 4 of \"") && out.contains("upvictim.c\" starts at address"),
        "{out}"
    );
    assert_eq!(line("kept"), "200");
    // Both kept in the cache namespace, each a record of the fetch.
    let db = rusqlite::Connection::open(w.join("data/index.sqlite3")).unwrap();
    let cached: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM keys WHERE namespace = 'cache'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cached, 2);
    let fetches: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM uploads WHERE user = 'upstream 127.0.0.1:8002' AND status = 'complete'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fetches, 2);
}
