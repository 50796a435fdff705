//! Upstreams (`spec/mirror.md`): files fetched from other symbol servers live
//! in a third namespace, `cache`, that never overrides release or try.

use symdepot::store::gc::GcMode;
use symdepot::store::{Namespace, NewKey};

use crate::support::*;

/// Stores `data` under `key` in `ns` straight through the store, as a fetch
/// from an upstream does.
fn store_in(s: &TestServer, ns: Namespace, key: &str, data: &[u8]) {
    let store = s.store();
    let hash = blake3::hash(data).to_hex().to_string();
    let file = key.rsplit('/').next().unwrap();
    let enc = store.encoding_for(file);
    let stored_size = store.ensure_blob(&hash, enc, &mut &data[..]).unwrap();
    let id = symdepot::identity::identify_bytes(data, file);
    let new = NewKey {
        namespace: ns,
        key,
        hash: &hash,
        encoding: enc,
        size: data.len() as u64,
        stored_size,
        identity: &id,
    };
    assert!(store.commit_key(None, &new).unwrap().is_some());
}

#[test]
fn a_cached_file_is_served_until_an_upload_of_the_same_key_wins() {
    let s = TestServer::start();
    let key = format!("c.pdb/{ID_A}/c.sym");
    let fetched = sym("c.pdb", ID_A, "INFO GENERATOR upstream\n");
    store_in(&s, Namespace::Cache, &key, &fetched);
    let got = |path: &str| s.get(path).bytes().unwrap().to_vec();
    assert_eq!(got(&format!("/{key}")), fetched);
    assert_eq!(got(&format!("/try/{key}")), fetched);
    // A try upload wins where try is asked for, and only there.
    let tried = sym("c.pdb", ID_A, "INFO GENERATOR try\n");
    assert_eq!(
        s.upload_with(&s.token, zip_of(&[(&key, &tried)]), Some("1"))
            .status(),
        201
    );
    assert_eq!(got(&format!("/try/{key}")), tried);
    assert_eq!(got(&format!("/{key}")), fetched);
    // A release upload wins everywhere; the cached file stays beside it.
    let released = sym("c.pdb", ID_A, "INFO GENERATOR release\n");
    s.upload_ok(zip_of(&[(&key, &released)]));
    assert_eq!(got(&format!("/{key}")), released);
    assert_eq!(got(&format!("/try/{key}")), released);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        1
    );
    // The store verifies clean with a cache namespace in it.
    let report = s.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.keys, 3);
}

#[test]
fn a_bad_upstream_stops_the_daemon_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("symdepot.toml");
    std::fs::write(
        &conf,
        "[[upstream]]\nurl = \"https://sym.example/\"\nprotocol = \"breakpad\"\n\
         headers = { Authorization = \"Bearer s3cret\" }\n\
         [[upstream]]\nurl = \"https://other.example/\"\nprotocol = \"breakpad\"\n\
         include = [\"*.{pdb\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    for (env, expect) in [
        (None, "upstream[2].include"),
        (Some("gopher+https://x.example/"), "upstreams"),
    ] {
        let mut c = symdepot(&data);
        c.arg("--config").arg(&conf);
        if let Some(short) = env {
            std::fs::write(&conf, "").unwrap();
            c.env("SYMDEPOT_UPSTREAMS", short);
        }
        let out = c
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// A daemon whose upstream is `up` (another symdepot, the Breakpad protocol).
/// How many symbol requests `up` has answered (what a mirror asked of it).
pub(crate) fn symbol_requests(up: &TestServer) -> f64 {
    use crate::records::{scrape, value};
    value(
        &scrape(up),
        "symdepot_http_requests_total",
        &[("route", "symbol")],
    )
}

fn mirror_of(up: &TestServer) -> TestServer {
    let url = format!("breakpad+http://{}/", up.addr);
    TestServer::with_config(|c| c.upstreams = url)
}

#[test]
fn a_miss_is_fetched_from_an_upstream_checked_kept_in_cache_and_served() {
    let up = TestServer::start();
    let key = format!("up.pdb/{ID_A}/up.sym");
    let data = sym("up.pdb", ID_A, "INFO GENERATOR upstream\n");
    up.upload_ok(zip_of(&[(&key, &data)]));
    let m = mirror_of(&up);
    let resp = m.get(&format!("/{key}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
    assert_eq!(
        m.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        1
    );
    // Where it came from, and when: an upload record of the fetch.
    let (user, url): (String, String) = {
        let rows = m.rows(
            "SELECT \"user\", download_url FROM uploads WHERE status = 'complete'",
            &[],
        );
        (rows[0].get(0).unwrap(), rows[0].get(1).unwrap())
    };
    assert_eq!(user, format!("upstream {}", up.addr));
    assert_eq!(url, format!("http://{}/{key}", up.addr));
    // Counted per upstream.
    let metrics = crate::records::scrape(&m);
    let upstream = up.addr.to_string();
    let fetches = |outcome: &str| {
        crate::records::value(
            &metrics,
            "symdepot_upstream_fetches_total",
            &[("upstream", &upstream), ("outcome", outcome)],
        )
    };
    assert_eq!((fetches("hit"), fetches("miss")), (1.0, 0.0));
    assert_eq!(
        crate::records::value(
            &metrics,
            "symdepot_upstream_bytes_total",
            &[("upstream", &upstream)]
        ),
        data.len() as f64
    );
    assert_eq!(
        crate::records::value(
            &metrics,
            "symdepot_upstream_fetch_duration_seconds_count",
            &[("upstream", &upstream)]
        ),
        1.0
    );
    // The file's page says where it came from.
    let id: i64 = m.one("SELECT id FROM keys WHERE namespace = 'cache'", &[]);
    let page = m.get(&format!("/files/{id}")).text().unwrap();
    assert!(page.contains("Fetched from"), "{page}");
    assert!(
        page.contains(&format!("http://{}/{key}", up.addr)),
        "{page}"
    );
    // And so does the records API.
    let file: serde_json::Value = m
        .get(&format!("/api/uploads/files/file/{id}"))
        .json()
        .unwrap();
    assert_eq!(file["file"]["namespace"], "cache");
    assert_eq!(
        file["file"]["fetched_from"],
        format!("http://{}/{key}", up.addr).as_str()
    );
    assert!(file["file"]["fetched_at"].is_string(), "{file}");
    // Kept: served again once the upstream no longer has it.
    let target = symdepot::store::gc::DeleteTarget::Key {
        namespace: Namespace::Release,
        key: key.clone(),
    };
    up.store().delete_keys(&target, "test").unwrap();
    assert_eq!(
        m.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        data.as_slice()
    );
}

#[test]
fn an_upstreams_404_is_remembered_and_its_failures_are_never_a_404() {
    let up = TestServer::start();
    let m = mirror_of(&up);
    let key = format!("none.pdb/{ID_B}/none.sym");
    assert_eq!(m.get(&format!("/{key}")).status(), 404);
    assert_eq!(m.get(&format!("/{key}")).status(), 404);
    // The upstream was asked once: its own missing-symbols report counts one miss.
    wait_until("the upstream records its miss", || {
        up.count("SELECT COUNT(*) FROM missing WHERE debug_file = 'none.pdb'") == 1
    });
    assert_eq!(
        up.one::<i64>(
            "SELECT count FROM missing WHERE debug_file = 'none.pdb'",
            &[]
        ),
        1
    );
    // An upstream that is not there: 502, not a 404 a client would cache.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead = TestServer::with_config(|c| c.upstreams = format!("breakpad+http://{gone}/"));
    assert_eq!(dead.get(&format!("/{key}")).status(), 502);
    // One that never answers: 504 after its timeout.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_addr = hang.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hang.incoming() {
            held.push(c);
        }
    });
    let slow: symdepot::upstream::UpstreamConfig = toml::from_str(&format!(
        "url = \"http://{hang_addr}/\"\nprotocol = \"breakpad\"\ntimeout = \"1s\"\n"
    ))
    .unwrap();
    let waiting = TestServer::with_config(|c| c.upstream = vec![slow]);
    assert_eq!(waiting.get(&format!("/{key}")).status(), 504);
    for s in [&dead, &waiting] {
        assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);
    }
}

#[test]
fn a_fetched_file_whose_identity_is_not_the_keys_is_refused_and_never_stored() {
    let up = TestServer::start();
    // The upstream serves another module's file under this key.
    let key = format!("asked.pdb/{ID_A}/asked.sym");
    let other = sym("other.pdb", ID_B, "");
    store_in(&up, Namespace::Release, &key, &other);
    assert_eq!(up.get(&format!("/{key}")).status(), 200);
    let m = mirror_of(&up);
    assert_eq!(m.get(&format!("/{key}")).status(), 502);
    assert_eq!(m.count("SELECT COUNT(*) FROM keys"), 0);
    // Refused before anything is recorded: an upstream's junk makes no rows.
    assert_eq!(m.count("SELECT COUNT(*) FROM uploads"), 0);
    // Remembered like a 404: asked again, the upstream is not (and nothing is stored).
    use crate::records::{scrape, value};
    let served = || {
        value(
            &scrape(&up),
            "symdepot_http_requests_total",
            &[("route", "symbol"), ("status", "200")],
        )
    };
    let before = served();
    assert_eq!(m.get(&format!("/{key}")).status(), 502);
    assert_eq!(served(), before);
    assert_eq!(m.count("SELECT COUNT(*) FROM uploads"), 0);
    // Still a miss of this store, in the missing-symbols report.
    m.wait_for_count(
        "SELECT COUNT(*) FROM missing WHERE debug_file = 'asked.pdb'",
        1,
    );
    assert_eq!(
        value(
            &scrape(&m),
            "symdepot_upstream_fetches_total",
            &[("outcome", "refused")]
        ),
        1.0
    );
}

#[test]
fn paths_that_are_no_key_and_symstore_probes_are_not_asked_upstream() {
    let up = TestServer::start();
    let m = mirror_of(&up);
    let asked = || symbol_requests(&up);
    let before = asked();
    for path in [
        "/x.pdb/NOT-HEX/x.sym".to_string(),
        format!("/x.pdb/{ID_A}/x.pd_"),
        format!("/x.pdb/{ID_A}/file.ptr"),
    ] {
        assert_eq!(m.get(&path).status(), 404, "{path}");
    }
    assert_eq!(asked(), before, "the upstream was asked");
}

/// A hostile (or merely odd) upstream on loopback: answers every request with
/// `head` and `body`, or with endless bytes after `head` when `body` is None.
fn canned(head: String, body: Option<Vec<u8>>) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let (head, body) = (head.clone(), body.clone());
            std::thread::spawn(move || {
                let mut req = [0u8; 4096];
                let _ = c.read(&mut req);
                let _ = c.write_all(head.as_bytes());
                match body {
                    Some(b) => {
                        let _ = c.write_all(&b);
                    }
                    None => {
                        let chunk = vec![b'x'; 64 * 1024];
                        while c.write_all(&chunk).is_ok() {}
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn hostile_upstreams_cost_a_502_and_store_nothing_and_a_gzip_answer_is_inflated() {
    let key = format!("g.pdb/{ID_A}/g.sym");
    let data = sym("g.pdb", ID_A, "INFO GENERATOR gz\n");
    let mirror = |addr: std::net::SocketAddr| {
        TestServer::with_config(|c| {
            c.upstreams = format!("breakpad+http://{addr}/");
            c.max_upload_bytes = 1 << 20;
        })
    };
    // A redirect to another host (or port) is not followed.
    let elsewhere = canned(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/x\r\nContent-Length: 0\r\n\r\n".into(),
        Some(Vec::new()),
    );
    // Endless bytes: cut at max_upload_bytes.
    let endless = canned(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".into(),
        None,
    );
    // A 500.
    let broken = canned(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".into(),
        Some(Vec::new()),
    );
    for addr in [elsewhere, endless, broken] {
        let m = mirror(addr);
        assert_eq!(m.get(&format!("/{key}")).status(), 502, "{addr}");
        assert_eq!(m.count("SELECT COUNT(*) FROM keys"), 0);
        assert!(m.tmp_files().is_empty(), "{:?}", m.tmp_files());
    }
    // A .sym sent gzip-encoded (as files kept compressed in a bucket are) is
    // inflated, checked and stored as the file itself.
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&data).unwrap();
        e.finish().unwrap()
    };
    let gzipped = canned(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        ),
        Some(gz),
    );
    let m = mirror(gzipped);
    let resp = m.get_with(&format!("/{key}"), &[("Accept-Encoding", "identity")]);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
}

#[test]
fn clients_missing_one_key_at_once_cause_one_upstream_request() {
    use crate::records::{scrape, value};
    let up = TestServer::start();
    let key = format!("both.pdb/{ID_A}/both.sym");
    // Large enough to be streamed to the clients while it arrives.
    let data = big_sym("both.pdb", ID_A, 300_000);
    up.upload_ok(zip_of(&[(&key, &data)]));
    let m = mirror_of(&up);
    let absent = format!("absent.pdb/{ID_B}/absent.sym");
    let asked = |path: &str| {
        value(
            &scrape(&up),
            "symdepot_http_requests_total",
            &[("route", "symbol"), ("status", path)],
        )
    };
    let before = (asked("200"), asked("404"));
    std::thread::scope(|s| {
        for i in 0..50 {
            s.spawn(|| {
                let resp = m.get(&format!("/{key}"));
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
            });
            if i % 5 == 0 {
                s.spawn(|| assert_eq!(m.get(&format!("/{absent}")).status(), 404));
            }
        }
    });
    // Fifty clients of one key and ten of another: one request for each upstream.
    assert_eq!(
        (asked("200"), asked("404")),
        (before.0 + 1.0, before.1 + 1.0)
    );
}

#[test]
fn minidump_stackwalk_symbolicates_with_symbols_only_an_upstream_has() {
    use crate::interop_minidump::{crashed, stackwalk};
    let c = crashed("victim");
    let dump = &c.dump;
    let up = TestServer::start();
    up.upload_ok(zip_of(&[(&c.key, &c.sym)]));
    // The client knows only the mirror, which has no symbols of its own.
    let m = mirror_of(&up);
    let scratch = tempfile::tempdir().unwrap();
    let out = stackwalk(&m, dump, scratch.path());
    assert!(out.contains("victim!spin_level2 [victim.c : 5"), "{out}");
    assert!(out.contains("victim!main [victim.c : 9"), "{out}");
    assert_eq!(
        m.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        1
    );
}

#[test]
fn symbolication_and_stack_walks_use_symbols_only_an_upstream_has() {
    use crate::interop_minidump::crashed;
    let c = crashed("victim");
    let up = TestServer::start();
    let other = format!("other.pdb/{ID_A}/other.sym");
    up.upload_ok(zip_of(&[
        (&c.key, &c.sym),
        (&other, &sym("other.pdb", ID_A, "")),
    ]));
    let url = format!("breakpad+http://{}/", up.addr);
    let m = TestServer::with_config(|cfg| {
        cfg.upstreams = url;
        cfg.public_stackwalk = true;
    });
    // A function of the crashed binary's .sym, by its address.
    let text = String::from_utf8_lossy(&c.sym).into_owned();
    let func = (text.lines())
        .find_map(|l| l.strip_prefix("FUNC "))
        .map(|l| l.strip_prefix("m ").unwrap_or(l))
        .unwrap();
    let fields: Vec<&str> = func.splitn(4, ' ').collect();
    let addr = u64::from_str_radix(fields[0], 16).unwrap();
    let (module, id) = c.key.split_once('/').unwrap();
    let id = id.split('/').next().unwrap();
    let job = serde_json::json!({"jobs": [{
        "memoryMap": [[module, id], ["other.pdb", ID_A], ["gone.pdb", ID_B]],
        "stacks": [[[0, addr], [1, 0x1004], [2, 5]]]}]});
    let resp = m
        .client
        .post(m.url("/symbolicate/v5"))
        .json(&job)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().unwrap();
    let r = &answer["results"][0];
    assert_eq!(r["stacks"][0][0]["function"], fields[3], "{answer}");
    assert_eq!(r["stacks"][0][1]["function"], "main", "{answer}");
    assert_eq!(r["found_modules"][format!("{module}/{id}")], true);
    assert_eq!(r["found_modules"][format!("other.pdb/{ID_A}")], true);
    assert_eq!(r["found_modules"][format!("gone.pdb/{ID_B}")], false);
    // The walker asks the daemon, which has them now.
    let resp = m
        .client
        .post(m.url("/stackwalk"))
        .body(std::fs::read(&c.dump).unwrap())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let walked = resp.text().unwrap();
    assert!(walked.contains("spin_level2"), "{walked}");
    assert_eq!(
        m.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        2
    );
}

#[test]
fn gc_drops_fetched_files_past_the_cap_least_recently_used_first_and_unused_ones_past_retention() {
    let s = TestServer::with_config(|c| c.cache_max_bytes = "1500".into());
    let (a, b) = (format!("a.pdb/{ID_A}/a.bin"), format!("b.pdb/{ID_B}/b.bin"));
    let (data_a, data_b) = (vec![b'a'; 1000], vec![b'b'; 1000]);
    store_in(&s, Namespace::Cache, &a, &data_a);
    store_in(&s, Namespace::Cache, &b, &data_b);
    let released = sym("r.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&format!("r.pdb/{ID_A}/r.sym"), &released)]));
    // A is asked for after both were stored: B is the least recently used.
    assert_eq!(s.get(&format!("/{a}")).status(), 200);
    wait_until("A's access is written", || {
        s.count("SELECT COUNT(*) FROM keys WHERE last_accessed_at IS NOT NULL") == 1
    });
    let r = s
        .store()
        .gc(std::time::SystemTime::now(), GcMode::Run)
        .unwrap();
    assert_eq!(r.expired, vec![("cache".to_string(), b.clone())]);
    assert_eq!(s.get(&format!("/{a}")).status(), 200);
    assert_eq!(s.get(&format!("/{b}")).status(), 404);
    // Unused for longer than cache_retention (90 days): gone, whatever the cap.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(91 * 86_400);
    let r = s.store().gc(later, GcMode::DryRun).unwrap();
    assert!(
        r.expired.contains(&("cache".to_string(), a.clone())),
        "{r:?}"
    );
    // Uploaded files are not the cache's to drop.
    assert!(!r.expired.iter().any(|(ns, _)| ns == "release"), "{r:?}");
}

#[test]
fn delete_namespace_cache_removes_every_fetched_file_and_nothing_uploaded() {
    let s = TestServer::start();
    let kept = format!("u.pdb/{ID_A}/u.sym");
    s.upload_ok(zip_of(&[(&kept, &sym("u.pdb", ID_A, ""))]));
    for i in 0..3 {
        let key = format!("f{i}.pdb/{ID_B}/f{i}.sym");
        store_in(
            &s,
            Namespace::Cache,
            &key,
            &sym(&format!("f{i}.pdb"), ID_B, ""),
        );
    }
    let run = |args: &[&str]| symdepot(&s.data_dir()).args(args).output().unwrap();
    let out = run(&["delete", "--namespace", "cache"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        0
    );
    assert_eq!(s.get(&format!("/{kept}")).status(), 200);
    // Whole namespaces of uploads are not deleted that way; a bad name is named.
    let out = run(&["delete", "--namespace", "release"]);
    assert!(!out.status.success());
    let out = run(&["delete", "--namespace", "attic"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--namespace"));
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 1);
}

/// A static file server (Python's `http.server`) over `dir`, on loopback;
/// stopped when dropped.
pub(crate) struct StaticServer {
    child: std::process::Child,
    pub(crate) addr: std::net::SocketAddr,
}

impl StaticServer {
    pub(crate) fn over(dir: &std::path::Path) -> StaticServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port: u16 = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        StaticServer {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `[[upstream]]` table.
pub(crate) fn upstream(protocol: &str, url: String) -> symdepot::upstream::UpstreamConfig {
    symdepot::upstream::UpstreamConfig {
        url,
        protocol: protocol.into(),
        include: Vec::new(),
        exclude: Vec::new(),
        headers: Default::default(),
        timeout: "30s".into(),
        negative_ttl: "1h".into(),
        redirect_hosts: Vec::new(),
    }
}

#[test]
fn a_symstore_tree_gives_pdbs_from_cabinets_and_files_through_file_ptr() {
    use std::fs;
    let f = crate::windows::build_pe();
    let (exe, pdb) = (fs::read(&f.exe).unwrap(), fs::read(&f.pdb).unwrap());
    // Elsewhere: another origin, where file.ptr answers point.
    let far = tempfile::tempdir().unwrap();
    fs::create_dir_all(far.path().join("files")).unwrap();
    fs::copy(&f.exe, far.path().join("files/x.exe")).unwrap();
    let far_server = StaticServer::over(far.path());
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("x.exe"), &exe).unwrap();
    let other_server = StaticServer::over(other.path());
    // The SymStore tree: the PDB only as a gcab-made cabinet, the exe only
    // through file.ptr.
    let tree = tempfile::tempdir().unwrap();
    let pdb_dir = tree.path().join(format!("x.pdb/{}", f.debug_id));
    fs::create_dir_all(&pdb_dir).unwrap();
    let out = std::process::Command::new("gcab")
        .arg("-c")
        .arg("-n")
        .arg(pdb_dir.join("x.pd_"))
        .arg(&f.pdb)
        .output()
        .expect("gcab is installed (scripts/install-test-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ptr = |module: &str, id: &str, text: String| {
        let dir = tree.path().join(module).join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("file.ptr"), text).unwrap();
    };
    ptr(
        "x.exe",
        &f.code_id,
        format!("PATH:http://{}/files/x.exe\r\n", far_server.addr),
    );
    // A file.ptr naming a share: a miss.
    ptr(
        "y.exe",
        "5F0000001000",
        "PATH:\\\\builds\\symbols\\y.exe".into(),
    );
    // A file.ptr naming a host the upstream may not send clients to.
    ptr(
        "z.exe",
        "5F0000002000",
        format!("PATH:http://{}/x.exe", other_server.addr),
    );
    let tree_server = StaticServer::over(tree.path());
    let mut up = upstream("symstore", format!("http://{}/", tree_server.addr));
    up.redirect_hosts = vec![far_server.addr.to_string()];
    let m = TestServer::with_config(|c| c.upstream = vec![up]);

    // symfetch asks for x.pdb: the mirror expands x.pd_ and serves the PDB.
    let cache = tempfile::tempdir().unwrap();
    let out = cargo_tool("symfetch")
        .arg("--server")
        .arg(m.url("/"))
        .arg("--cache")
        .arg(cache.path())
        .args(["x.pdb", &f.debug_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = fs::read(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(fetched, pdb);
    // The exe through file.ptr, from the host redirect_hosts allows.
    let resp = m.get(&format!("/x.exe/{}/x.exe", f.code_id));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), exe.as_slice());
    // Both kept, as the files asked for.
    let kept: Vec<(String,)> = m
        .rows(
            "SELECT key FROM keys WHERE namespace = 'cache' ORDER BY key",
            &[],
        )
        .iter()
        .map(|r| (r.get(0).unwrap(),))
        .collect();
    assert_eq!(
        kept,
        [
            (format!("x.exe/{}/x.exe", f.code_id),),
            (format!("x.pdb/{}/x.pdb", f.debug_id),)
        ]
    );
    // A pointer to a share is a miss; one to a host not allowed is a 502.
    assert_eq!(m.get("/y.exe/5F0000001000/y.exe").status(), 404);
    assert_eq!(m.get("/z.exe/5F0000002000/z.exe").status(), 502);
    assert_eq!(
        m.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        2
    );
}

/// `symdepot prefetch` on the store in `data`, with `upstreams`; its output.
fn prefetch(data: &std::path::Path, upstreams: &str, args: &[&str]) -> std::process::Output {
    symdepot(data)
        .env("SYMDEPOT_UPSTREAMS", upstreams)
        .arg("prefetch")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_air_gap_walk_brings_a_lab_what_its_tools_were_missing() {
    use crate::interop_minidump::{crashed, stackwalk};
    let c = crashed("gapped");
    let (work, dump, rel) = (&c.work, &c.dump, &c.key);
    // The connected side's upstream has the symbols; the lab (A) has none.
    let up = TestServer::start();
    up.upload_ok(zip_of(&[(rel, &c.sym)]));
    let lab = TestServer::start();
    let before = stackwalk(&lab, dump, work.path().join("s1").as_path());
    assert!(!before.contains("gapped!spin_level2"), "{before}");
    // 1. The lab's missing-symbols CSV goes out.
    lab.wait_for_count(
        "SELECT COUNT(*) FROM missing WHERE debug_file = 'gapped'",
        1,
    );
    let csv = work.path().join("missing.csv");
    std::fs::write(&csv, lab.get("/missingsymbols.csv").text().unwrap()).unwrap();
    // 2. Prefetch on a connected store (B), from the CSV.
    let b = tempfile::tempdir().unwrap();
    let b_data = b.path().join("data");
    let upstreams = format!("breakpad+http://{}/", up.addr);
    let out = stdout_ok(prefetch(&b_data, &upstreams, &[csv.to_str().unwrap()]));
    assert!(out.contains("1 fetched, 0 already there"), "{out}");
    // A second run finds it there.
    let out = stdout_ok(prefetch(&b_data, &upstreams, &[csv.to_str().unwrap()]));
    assert!(out.contains("0 fetched, 1 already there"), "{out}");
    // 3. Export B's cache to removable media; 4. import it on the lab's side.
    let media = work.path().join("media");
    stdout_ok(
        symdepot(&b_data)
            .args(["export", "--namespace", "cache", "--plain"])
            .arg(&media)
            .output()
            .unwrap(),
    );
    assert!(media.join(rel).is_file());
    let out = stdout_ok(
        symdepot(&lab.data_dir())
            .args(["import", "--namespace", "cache"])
            .arg(&media)
            .output()
            .unwrap(),
    );
    assert!(out.contains("1 stored"), "{out}");
    // 5. The lab's tools find what they were missing.
    let key = format!("/{rel}");
    wait_until("the lab serves the imported file", || {
        lab.get(&key).status() == 200
    });
    let after = stackwalk(&lab, dump, work.path().join("s2").as_path());
    assert!(
        after.contains("gapped!spin_level2 [gapped.c : 5"),
        "{after}"
    );
    assert_eq!(
        lab.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        1
    );
}

#[test]
fn prefetch_takes_keys_urls_minidumps_and_binaries_and_says_what_failed() {
    use crate::interop_minidump::{dump_syms, minidump_of};
    let f = ElfFixture::build("pre", &["-Wl,--build-id"]);
    let work = tempfile::tempdir().unwrap();
    let syms = work.path().join("syms");
    let rel = dump_syms(&f.full, &syms);
    let up = TestServer::start();
    up.upload_ok(zip_of(&[(&rel, &std::fs::read(syms.join(&rel)).unwrap())]));
    let other = sym("other.pdb", ID_A, "");
    up.upload_ok(zip_of(&[(&format!("other.pdb/{ID_A}/other.sym"), &other)]));
    let upstreams = format!("breakpad+http://{}/", up.addr);
    let fetched_keys = |data: &std::path::Path| -> String {
        stdout_ok(
            symdepot(data)
                .args(["export", "--namespace", "cache", "--plain"])
                .arg(data.with_extension("out"))
                .output()
                .unwrap(),
        )
    };
    // A binary (named as it was built): the .sym of its own identity. A
    // folder of binaries the same.
    let bins = work.path().join("bins");
    std::fs::create_dir(&bins).unwrap();
    let binary = work.path().join("pre");
    std::fs::copy(&f.stripped, &binary).unwrap();
    let d1 = tempfile::tempdir().unwrap();
    let out = stdout_ok(prefetch(
        &d1.path().join("data"),
        &upstreams,
        &[binary.to_str().unwrap()],
    ));
    assert!(out.contains("1 fetched"), "{out}");
    std::fs::copy(&f.stripped, bins.join("pre")).unwrap();
    std::fs::write(bins.join("notes.txt"), "not a binary").unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let out = stdout_ok(prefetch(
        &d2.path().join("data"),
        &upstreams,
        &[bins.to_str().unwrap()],
    ));
    assert!(out.contains("1 fetched"), "{out}");
    // A minidump: its modules' files.
    let dump = work.path().join("pre.dmp");
    minidump_of(&f.full, &dump);
    let d3 = tempfile::tempdir().unwrap();
    let out = stdout_ok(prefetch(
        &d3.path().join("data"),
        &upstreams,
        &[dump.to_str().unwrap()],
    ));
    assert!(out.contains("1 fetched"), "{out}");
    // Keys and URLs, also from a list; one the upstream lacks.
    let d4 = tempfile::tempdir().unwrap();
    let list = work.path().join("keys.txt");
    std::fs::write(
        &list,
        format!("# wanted\nhttp://elsewhere.example/other.pdb/{ID_A}/other.sym\n"),
    )
    .unwrap();
    let out = stdout_ok(prefetch(
        &d4.path().join("data"),
        &upstreams,
        &[
            &rel,
            &format!("gone.pdb/{ID_B}/gone.sym"),
            "--list",
            list.to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains("2 fetched, 0 already there, 1 not found upstream, 0 failed"),
        "{out}"
    );
    for d in [&d1, &d2, &d3] {
        assert!(fetched_keys(&d.path().join("data")).contains("exported 1 files"));
    }
    // An upstream that fails: a non-zero exit naming the file; input not understood too.
    let down = canned(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".into(),
        Some(Vec::new()),
    );
    let d5 = tempfile::tempdir().unwrap();
    // A named pipe is neither a file nor a folder: not understood, never waited on.
    let fifo = d5.path().join("pipe");
    stdout_ok(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .output()
            .unwrap(),
    );
    let out = prefetch(
        &d5.path().join("data"),
        &format!("breakpad+http://{down}/"),
        &[&rel, "not-a-key", fifo.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains(
            "0 fetched, 0 already there, 0 not found upstream, 1 failed, 2 input(s) not understood"
        ),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("failed   {rel}")), "{stderr}");
    assert!(stderr.contains("not understood not-a-key"), "{stderr}");
    assert!(
        stderr.contains("not a regular file or a folder"),
        "{stderr}"
    );
    // Nothing configured: said at once.
    let out = symdepot(&d5.path().join("data"))
        .args(["prefetch", &rel])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no upstreams are configured"));
}

/// An upstream that answers every request with `data` (and its length),
/// sending the first `first` bytes at once and the rest only once `go`
/// hears from the test.
fn held(data: Vec<u8>, first: usize) -> (std::net::SocketAddr, std::sync::mpsc::Sender<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        let mut req = [0u8; 4096];
        let _ = c.read(&mut req);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
        let _ = c.write_all(head.as_bytes());
        let _ = c.write_all(&data[..first]);
        let _ = c.flush();
        let _ = wait.recv();
        let _ = c.write_all(&data[first..]);
    });
    (addr, go)
}

/// A `.sym` of about `len` bytes.
fn big_sym(module: &str, id: &str, len: usize) -> Vec<u8> {
    let mut extra = String::new();
    let mut i = 0;
    while extra.len() < len {
        extra.push_str(&format!(
            "PUBLIC {:x} 0 function_number_{i}\n",
            0x10000 + i * 16
        ));
        i += 1;
    }
    sym(module, id, &extra)
}

#[test]
fn the_first_client_gets_the_first_bytes_before_the_upstream_has_sent_the_rest() {
    use std::io::Read;
    let key = format!("slow.pdb/{ID_A}/slow.sym");
    let data = big_sym("slow.pdb", ID_A, 400_000);
    let (addr, go) = held(data.clone(), 200_000);
    let mut up = upstream("breakpad", format!("http://{addr}/"));
    up.timeout = "20s".into();
    let m = TestServer::with_config(|c| c.upstream = vec![up]);
    let mut resp = m.get(&format!("/{key}"));
    // Headers and the first bytes arrive while the upstream holds the rest
    // (a mirror that waited for the whole file would answer 504 here).
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(data.len() as u64));
    let mut first = vec![0u8; 100_000];
    resp.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..100_000]);
    assert_eq!(
        m.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        0,
        "not kept before it is whole"
    );
    go.send(()).unwrap();
    let mut rest = Vec::new();
    resp.read_to_end(&mut rest).unwrap();
    assert_eq!([first, rest].concat(), data);
    // The last byte came once the file was kept.
    assert_eq!(
        m.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        1
    );
    assert_eq!(
        m.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        data.as_slice()
    );
}

#[test]
fn a_streamed_file_that_is_refused_never_reaches_the_client_whole() {
    // Not a PDB at all, under a PDB key: refused once whole, after most of it was streamed.
    let key = format!("fake.pdb/{ID_A}/fake.pdb");
    let data = vec![0x5au8; 300_000];
    let (addr, go) = held(data.clone(), 150_000);
    let m = TestServer::with_config(|c| {
        c.upstream = vec![upstream("breakpad", format!("http://{addr}/"))]
    });
    let resp = m.get(&format!("/{key}"));
    assert_eq!(resp.status(), 200);
    go.send(()).unwrap();
    let body = resp.bytes();
    assert!(
        body.is_err(),
        "a whole body of {:?} bytes",
        body.map(|b| b.len())
    );
    assert_eq!(m.count("SELECT COUNT(*) FROM keys"), 0);
    assert_eq!(m.count("SELECT COUNT(*) FROM uploads"), 0);
    // Remembered: the next client gets a 502 at once.
    assert_eq!(m.get(&format!("/{key}")).status(), 502);
    assert!(m.tmp_files().is_empty(), "{:?}", m.tmp_files());
}

#[test]
fn when_the_first_upstream_s_answer_is_refused_later_clients_get_the_next_one_s() {
    use std::io::Read;
    let f = crate::windows::build_pe();
    let pdb = std::fs::read(&f.pdb).unwrap();
    let key = format!("x.pdb/{}/x.pdb", f.debug_id);
    // The first upstream streams junk under the key, the second has the PDB.
    let (junk, go) = held(vec![0x5au8; 300_000], 150_000);
    let tree = tempfile::tempdir().unwrap();
    let dir = tree.path().join(format!("x.pdb/{}", f.debug_id));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x.pdb"), &pdb).unwrap();
    let good = StaticServer::over(tree.path());
    let m = TestServer::with_config(|c| {
        c.upstream = vec![
            upstream("breakpad", format!("http://{junk}/")),
            upstream("breakpad", format!("http://{}/", good.addr)),
        ]
    });
    let mut first = m.get(&format!("/{key}"));
    assert_eq!(first.status(), 200);
    let mut head = vec![0u8; 1000];
    first.read_exact(&mut head).unwrap();
    go.send(()).unwrap();
    let mut rest = Vec::new();
    assert!(first.read_to_end(&mut rest).is_err(), "the junk was cut");
    // A client after the refusal gets the second upstream's file, whole.
    let second = m.get(&format!("/{key}"));
    assert_eq!(second.status(), 200);
    assert_eq!(second.bytes().unwrap().as_ref(), pdb.as_slice());
}

#[test]
fn build_ids_longer_than_any_are_refused_at_the_door() {
    let up = TestServer::start();
    let m = TestServer::with_config(|c| c.upstreams = format!("debuginfod+http://{}/", up.addr));
    let long = "ab".repeat(65);
    let resp = m.get(&format!("/buildid/{long}/debuginfo"));
    assert_eq!(resp.status(), 400);
    assert_eq!(
        m.get(&format!("/buildid/{}/debuginfo", "ab".repeat(64)))
            .status(),
        404
    );
}
