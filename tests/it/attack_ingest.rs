//! Upload resources (descriptors, temp space, memory), clients that vanish,
//! and damaged blobs.

use std::path::Path;
use std::process::{Child, Command};

use reqwest::blocking::multipart;

use crate::support::*;
use symdepot::store::sql::ConnExt;

/// A member that sniffs as ELF (its magic, then zeros: no id of its own), so
/// phase 1 spools it once it passes 64 KiB.
fn elf_like(len: usize) -> Vec<u8> {
    let mut data = b"\x7fELF".to_vec();
    data.resize(len, 0);
    data
}

/// `n` ELF-like members of `len` bytes under Tecken keys.
fn elf_like_zip(n: usize, len: usize) -> Vec<u8> {
    let data = elf_like(len);
    let names: Vec<String> = (0..n)
        .map(|i| format!("bin{i}.so/{:032X}0/bin{i}.so", i + 1))
        .collect();
    let members: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), data.as_slice()))
        .collect();
    zip_of(&members)
}

/// Starts `symdepot serve` on `dir` under `prlimit --nofile=<soft>:<hard>`;
/// returns it and its address.
fn spawn_daemon_with_nofile(dir: &Path, soft: u64, hard: u64) -> (Child, String) {
    let mut serve = Command::new("prlimit");
    serve
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_symdepot"))
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("SYMDEPOT_LISTEN")
        .envs(crate::backend::env_for(dir));
    spawn_logging(serve)
}

fn stop(mut child: Child) {
    sigterm(&child);
    wait_exit(&mut child);
}

#[test]
fn an_upload_of_more_binaries_than_open_files_allowed_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = create_token_cli(&data, "upload");
    let (child, addr) = spawn_daemon_with_nofile(&data, 256, 256);
    let status = post(&addr, &token, elf_like_zip(1100, 70 * 1024));
    stop(child);
    assert_eq!(
        status,
        Some(201),
        "1100 spooled members under 256 descriptors"
    );
    let keys: i64 = index_of(&data)
        .one("SELECT COUNT(*) FROM keys", &[])
        .unwrap();
    assert_eq!(keys, 1100);
    assert!(files_under(&data.join("tmp")).is_empty());
}

#[test]
fn the_daemon_raises_its_soft_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, _addr) = spawn_daemon_with_nofile(&data, 256, 4096);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    stop(child);
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["4096", "4096"], "{line}");
}

#[test]
fn binaries_needing_more_temp_space_than_max_spool_bytes_get_413_and_leave_nothing() {
    let s = TestServer::with_config(|c| c.max_spool_bytes = 1 << 20);
    let body = refused(&s, elf_like_zip(3, 600 * 1024), 413);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("max_spool_bytes"), "{error}");
    assert!(error.contains("temporary space"), "{error}");
    assert_nothing_stored(&s);
}

#[test]
fn members_of_unknown_kind_and_text_are_checked_without_temp_space() {
    // Zero-filled members (the 3 000 × 1 MiB attack), a large source map and a
    // large JS bundle: none is spooled, so a zero spool allowance takes them all.
    let s = TestServer::with_config(|c| c.max_spool_bytes = 0);
    let zeros = vec![0u8; 1 << 20];
    let mut map = br#"{"version":3,"sources":["a.js"],"sourcesContent":[""#.to_vec();
    map.resize(map.len() + 300 * 1024, b'x');
    map.extend_from_slice(
        br#""],"mappings":"AAAA","debugId":"85314830-023f-4cf1-a267-535f4e37bb17"}"#,
    );
    let mut bundle = b"console.log(1);\n".repeat(20_000);
    bundle.extend_from_slice(b"//# debugId=11111111-2222-3333-4444-555555555555\n");
    let zip = zip_of(&[("maps/app.js.map", &map), ("js/app.js", &bundle)]);
    let resp = post_zip(&s, "/upload/?layout=auto", zip);
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().unwrap();
    let keys = body["upload"]["uploaded_keys"].to_string();
    assert!(
        keys.contains("app.js.map/85314830023F4CF1A267535F4E37BB170/app.js.map"),
        "{keys}"
    );
    assert!(
        keys.contains("app.js/11111111222233334444555555555555"),
        "{keys}"
    );
    // Unknown kinds carry no id of their own: they go under Tecken keys.
    let names: Vec<String> = (0..50)
        .map(|i| format!("zeros{i}.bin/{:032X}0/zeros{i}.bin", i + 1))
        .collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &zeros[..])).collect();
    s.upload_ok(zip_of(&members));
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 52);
    assert!(s.tmp_files().is_empty());
}

/// Posts a zip as a `symbols.zip` part to `path`.
fn post_zip(s: &TestServer, path: &str, zip: Vec<u8>) -> reqwest::blocking::Response {
    let form = multipart::Form::new().part(
        "symbols.zip",
        multipart::Part::bytes(zip).file_name("symbols.zip"),
    );
    s.client
        .post(s.url(path))
        .header("Auth-Token", &s.token)
        .multipart(form)
        .send()
        .unwrap()
}

/// Counts the bytes the current thread allocates, so a test can bound what
/// one call costs in memory (threads of other tests are not counted).
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    fn add(n: usize) {
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + n);
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
    }

    fn sub(n: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
    }

    // SAFETY: every call is forwarded to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            sub(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            add(new);
            sub(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.realloc(ptr, layout, new) }
        }
    }

    /// The most bytes `f` had allocated at once on this thread, beyond what was live before.
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get) - base)
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// A source map whose `sourcesContent` holds `filler`, with its id last.
fn source_map_around(filler: &[u8]) -> Vec<u8> {
    let mut map = br#"{"version":3,"sources":["a.js"],"sourcesContent":[""#.to_vec();
    map.extend_from_slice(filler);
    map.extend_from_slice(
        br#""],"mappings":"AAAA","debugId":"85314830-023F-4CF1-A267-535F4E37BB17"}"#,
    );
    map
}

#[test]
fn a_60_mb_source_map_is_identified_in_flat_memory() {
    let map = source_map_around(&vec![b'x'; 60 << 20]);
    let (id, peak) = counting::peak(|| symdepot::identity::js::sourcemap(&map[..]));
    assert_eq!(
        id.unwrap().code_id.as_deref(),
        Some("85314830023f4cf1a267535f4e37bb17")
    );
    assert!(peak < 256 * 1024, "identifying took {peak} bytes");
}

#[test]
fn a_source_map_version_of_60_mb_is_never_built_in_memory() {
    let mut map = br#"{"version":["#.to_vec();
    map.extend_from_slice(&b"0,".repeat(30 << 20));
    map.extend_from_slice(br#"3],"mappings":"AAAA"}"#);
    let (id, peak) = counting::peak(|| symdepot::identity::js::sourcemap(&map[..]));
    assert!(id.is_none());
    assert!(peak < 256 * 1024, "identifying took {peak} bytes");
}

/// The multipart head of a `symbols.zip` part and its closing boundary.
fn multipart_parts() -> (String, Vec<u8>, Vec<u8>) {
    let boundary = "symdepotboundary7MA4YWxkTrZu0gW".to_string();
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"symbols.zip\"; \
         filename=\"symbols.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (boundary, head, tail)
}

/// Opens a connection and sends an upload's request head declaring
/// `content_length` bytes, then `body`; returns the open socket.
fn start_raw_upload(
    s: &TestServer,
    boundary: &str,
    content_length: usize,
    body: &[u8],
) -> std::net::TcpStream {
    use std::io::Write;
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    let head = format!(
        "POST /upload/ HTTP/1.1\r\nHost: {}\r\nAuth-Token: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {content_length}\r\n\r\n",
        s.addr, s.token
    );
    sock.write_all(head.as_bytes()).unwrap();
    sock.write_all(body).unwrap();
    sock.flush().unwrap();
    sock
}

/// Polls the upload record until its status is no longer `running`.
fn wait_until_ended(s: &TestServer, id: i64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let resp = s.get(&format!("/api/uploads/upload/{id}"));
        if resp.status() == 200 {
            let body: serde_json::Value = resp.json().unwrap();
            if body["upload"]["status"] != "running" {
                return body["upload"].clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upload {id} still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn aborted_in_metrics(s: &TestServer) -> String {
    let text = s.get("/metrics").text().unwrap();
    text.lines()
        .find(|l| l.starts_with("symdepot_uploads_total{outcome=\"aborted\"}"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_client_that_leaves_mid_body_leaves_an_aborted_record_counted_in_metrics() {
    let s = TestServer::start();
    let (boundary, head, _) = multipart_parts();
    let mut body = head;
    body.extend_from_slice(&vec![b'z'; 100_000]);
    let sock = start_raw_upload(&s, &boundary, 10_000_000, &body);
    drop(sock);
    let upload = wait_until_ended(&s, 1);
    assert_eq!(upload["status"], "aborted", "{upload}");
    assert_eq!(upload["files_count"], 0);
    assert_eq!(
        aborted_in_metrics(&s),
        "symdepot_uploads_total{outcome=\"aborted\"} 1"
    );
    wait_for_empty_tmp(&s);
    assert_nothing_stored(&s);
}

#[test]
fn a_client_that_leaves_during_ingest_stops_it_and_leaves_an_aborted_record() {
    let s = TestServer::start();
    let n = 3000;
    let members: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let id = format!("{:032X}{}", i + 1, i % 10);
            let module = format!("lib{i}.pdb");
            (format!("{module}/{id}/lib{i}.sym"), sym(&module, &id, ""))
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_slice()))
        .collect();
    let zip = zip_of(&refs);
    let (boundary, head, tail) = multipart_parts();
    let mut body = head;
    body.extend_from_slice(&zip);
    body.extend_from_slice(&tail);
    let sock = start_raw_upload(&s, &boundary, body.len(), &body);
    // Leave once the server holds the whole body, so the ingest is what gets stopped.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !s.tmp_files().iter().any(|f| {
        f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("upload-")
            && std::fs::metadata(f).is_ok_and(|m| m.len() == zip.len() as u64)
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "the body never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(sock);
    let upload = wait_until_ended(&s, 1);
    assert_eq!(upload["status"], "aborted", "{upload}");
    assert_eq!(upload["http_status"], 499);
    // The record counts what was committed, and the work stopped well short of the whole zip.
    let committed = s.count("SELECT COUNT(*) FROM keys");
    assert_eq!(upload["files_count"], committed, "{upload}");
    assert!(
        committed < n as i64 / 2,
        "{committed} of {n} members committed"
    );
    assert_eq!(
        aborted_in_metrics(&s),
        "symdepot_uploads_total{outcome=\"aborted\"} 1"
    );
    wait_for_empty_tmp(&s);
}

/// Polls until `tmp/` is empty: an abandoned upload's body and spools go
/// with its request.
fn wait_for_empty_tmp(s: &TestServer) {
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !s.tmp_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "tmp: {:?}",
            s.tmp_files()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Flips one bit of the byte at `at` (from the end when negative) of a file in place.
fn flip_byte(path: &Path, at: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs() as usize
    } else {
        at as usize
    };
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// A small file of no known kind (stored as it is) and a `.sym` (stored gzip).
fn two_small_files() -> Vec<(String, Vec<u8>)> {
    let bin: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (sym_key, sym_data) = good_member();
    vec![(format!("bin.so/{ID_B}/bin.so"), bin), (sym_key, sym_data)]
}

fn upload_members(s: &TestServer, members: &[(String, Vec<u8>)]) {
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_slice()))
        .collect();
    s.upload_ok(zip_of(&refs));
}

fn blob_of(s: &TestServer, gzip: bool) -> std::path::PathBuf {
    s.blobs()
        .into_iter()
        .find(|b| b.to_string_lossy().ends_with(".gz") == gzip)
        .unwrap()
}

#[test]
fn a_flipped_byte_in_a_small_blob_is_answered_500_never_served_or_cached() {
    let s = TestServer::start();
    let members = two_small_files();
    upload_members(&s, &members);
    for (i, gzip) in [false, true].into_iter().enumerate() {
        s.flip_blob_byte(&members[i].1, gzip, -20);
    }
    for (key, _) in &members {
        for accept in ["gzip", "identity"] {
            let resp = s.get_with(&format!("/{key}"), &[("Accept-Encoding", accept)]);
            assert_eq!(resp.status(), 500, "{key} ({accept})");
            assert!(resp.headers().get("etag").is_none());
            assert!(resp.text().unwrap().starts_with("Stored file unreadable"));
        }
    }
    // Mended on disk, the files are served again: nothing damaged was cached.
    for (i, gzip) in [false, true].into_iter().enumerate() {
        s.flip_blob_byte(&members[i].1, gzip, -20);
    }
    for (key, data) in &members {
        let resp = s.get_with(&format!("/{key}"), &[("Accept-Encoding", "identity")]);
        assert_eq!(resp.status(), 200, "{key}");
        assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
    }
}

#[test]
fn verify_repair_restores_a_damaged_or_missing_blob_from_an_intact_copy_in_the_layout() {
    crate::local_only!("the intact copy is in the layout tree");
    let s = TestServer::start();
    let members = two_small_files();
    upload_members(&s, &members);
    // Each layout entry becomes a copy (as where the filesystem refuses another link).
    for (key, _) in &members {
        let entry = s.data_dir().join("release").join(key);
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::remove_file(&entry).unwrap();
        std::fs::write(&entry, bytes).unwrap();
    }
    flip_byte(&blob_of(&s, true), -20);
    std::fs::remove_file(blob_of(&s, false)).unwrap();
    let out = symdepot(&s.data_dir()).arg("verify").output().unwrap();
    assert!(!out.status.success(), "verify sees the damage");

    let out = symdepot(&s.data_dir())
        .args(["verify", "--repair"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("restored from the intact copy").count(),
        2,
        "{stdout}"
    );

    let out = symdepot(&s.data_dir()).arg("verify").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("DAMAGED"), "{stdout}");
    for (key, data) in &members {
        let resp = s.get_with(&format!("/{key}"), &[("Accept-Encoding", "identity")]);
        assert_eq!(resp.status(), 200, "{key}");
        assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
    }
}

#[test]
fn a_stored_debuginfod_file_whose_blob_is_gone_answers_5xx_never_a_cacheable_404() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    s.upload_elf(&f);
    let section = format!("/buildid/{}/section/.text", f.build_id);
    assert_eq!(s.get(&section).status(), 200);
    // Every blob (and so every layout entry's inode) goes; the index still names them.
    for b in s.blobs() {
        s.remove_listed_blob(&b);
    }
    for route in ["debuginfo", "executable", "section/.text"] {
        let status = s.get(&format!("/buildid/{}/{route}", f.build_id)).status();
        assert!(status.is_server_error(), "{route}: {status}");
    }
    // The Breakpad and SSQP routes too, naming the key.
    let key = format!("{0}/{1}/{0}.debug", f.name, f.debug_id);
    let resp = s.get(&format!("/{key}"));
    assert_eq!(resp.status(), 500);
    assert!(resp.text().unwrap().contains(&key));
}
