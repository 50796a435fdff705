//! The index on a real PostgreSQL (`database_url`): the daemon keeps keys,
//! lookups, uploads, tokens and missing symbols there, and every route,
//! GC and verify work as on SQLite.

use std::time::{Duration, SystemTime};

use symdepot::store::gc::GcMode;
use symdepot::store::index::Job;

use crate::postgres::Postgres;
use crate::support::*;

#[test]
fn a_store_with_its_index_on_postgresql_uploads_serves_and_collects() {
    crate::own_index!("its own PostgreSQL");
    let pg = Postgres::start();
    let s = TestServer::with_config(|c| c.database_url = pg.url());
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let v1 = sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\n");
    let up = s.upload_ok(zip_of(&[(&key, &v1)]));
    assert_eq!(up["uploaded_keys"], serde_json::json!([key.clone()]));
    s.upload_elf(&f);
    // Served by key, by code id, by build id; a re-upload skips.
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        v1.as_slice()
    );
    assert_eq!(s.get("/xul.dll/5CF0A9B1c5f2000/xul.sym").status(), 302);
    assert_eq!(
        s.get(&format!("/buildid/{}/debuginfo", f.build_id))
            .bytes()
            .unwrap()
            .as_ref(),
        std::fs::read(&f.debug).unwrap()
    );
    let again = s.upload_ok(zip_of(&[(&key, &v1)]));
    assert_eq!(again["skipped_keys"], serde_json::json!([key.clone()]));
    // A try upload never replaces release; a replacement wins.
    let tried = sym("xul.pdb", ID_A, "INFO GENERATOR try\n");
    let resp = s.upload_with(&s.token, zip_of(&[(&key, &tried)]), Some("1"));
    assert_eq!(resp.status(), 201);
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        v1.as_slice()
    );
    let v2 = sym("xul.pdb", ID_A, "INFO GENERATOR two\n");
    s.upload_ok(zip_of(&[(&key, &v2)]));
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        v2.as_slice()
    );
    // A miss is counted in PostgreSQL and shows in the report.
    assert_eq!(s.get(&format!("/nope.pdb/{ID_B}/nope.sym")).status(), 404);
    // Records, tokens and stats answer from PostgreSQL.
    let viewer = s.create_token(&["view_all"], "viewer");
    let uploads: serde_json::Value = s
        .client
        .get(s.url("/api/uploads/"))
        .header("Auth-Token", &viewer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(uploads["total"], 5, "{uploads}");
    let files: serde_json::Value = s
        .client
        .get(s.url("/api/uploads/files/?key=xul"))
        .header("Auth-Token", &viewer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(files["total"], 2, "{files}");
    assert_eq!(s.store().list_tokens().unwrap().len(), 2);
    // GC takes the replaced version's blob once it is old; verify is clean.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let r = s.store().gc(later, GcMode::Run).unwrap();
    assert_eq!(r.blobs.len(), 1, "{r:?}");
    let report = s.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.keys, 4);
    // Nothing of the index is in the data dir.
    assert!(!s.data_dir().join("index.sqlite3").exists());
    assert_eq!(s.get("/__heartbeat__").status(), 200);
    let mut c = pg.client();
    let keys: i64 = c
        .query_one("SELECT COUNT(*) FROM keys", &[])
        .unwrap()
        .get(0);
    assert_eq!(keys, 4);
}

#[test]
fn a_wrong_database_url_stops_the_daemon_with_one_line_naming_it() {
    crate::own_index!("a database_url of its own");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let out = symdepot(&dir.path().join("data"))
        .args(["token", "list"])
        .env(
            "SYMDEPOT_DATABASE_URL",
            "postgres://symdepot:hunter2@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database_url"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
    let out = symdepot(&dir.path().join("data"))
        .args(["token", "list"])
        .env("SYMDEPOT_DATABASE_URL", "mysql://x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url"));
}

#[test]
fn postgresql_restarted_mid_load_answers_503_then_the_daemon_reconnects_by_itself() {
    crate::own_index!("its own PostgreSQL");
    let mut pg = Postgres::start();
    // Cached lookups are trusted long enough for the test, however slow the machine.
    let s = TestServer::with_config(|c| {
        c.database_url = pg.url();
        c.lookup_cache_ttl = "1h".into();
    });
    let (a, b) = (format!("a.pdb/{ID_A}/a.sym"), format!("b.pdb/{ID_B}/b.sym"));
    s.upload_ok(zip_of(&[
        (&a, &sym("a.pdb", ID_A, "")),
        (&b, &sym("b.pdb", ID_B, "")),
    ]));
    assert_eq!(s.get(&format!("/{a}")).status(), 200);

    pg.stop();
    // What the lookup cache holds is still served.
    assert_eq!(s.get(&format!("/{a}")).status(), 200);
    // What needs the index is an outage: 503 with Retry-After, never a 404
    // (clients cache those) nor a 500.
    for path in [format!("/{b}"), format!("/nope.pdb/{ID_A}/nope.sym")] {
        let resp = s.get(&path);
        assert_eq!(resp.status(), 503, "{path}");
        assert!(resp.headers().get("retry-after").is_some(), "{path}");
    }
    let resp = s.upload(zip_of(&[(
        &format!("c.pdb/{ID_A}/c.sym"),
        &sym("c.pdb", ID_A, ""),
    )]));
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(s.get("/__heartbeat__").status(), 503);

    // Back: the daemon reconnects by itself (the pool drops the dead
    // connections); the first answers after the restart may still be 503.
    pg.start_again();
    let mut tries = 0;
    loop {
        let status = s.get(&format!("/{b}")).status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only 503s while reconnecting");
        tries += 1;
        assert!(tries < 600, "the daemon never reconnected");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.upload_ok(zip_of(&[(
        &format!("c.pdb/{ID_A}/c.sym"),
        &sym("c.pdb", ID_A, ""),
    )]));
    assert_eq!(s.get("/__heartbeat__").status(), 200);
}

/// A daemon of the store on `pg` and `g` (one index, one bucket), with a
/// data dir of its own.
fn cluster_daemon(pg: &Postgres, g: &crate::garage::Garage) -> TestServer {
    TestServer::with_config(|c| {
        c.database_url = pg.url();
        g.configure(c);
    })
}

#[test]
fn gc_runs_on_one_daemon_of_a_store_at_a_time() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let (a, b) = (cluster_daemon(&pg, &g), cluster_daemon(&pg, &g));
    let key = format!("a.pdb/{ID_A}/a.sym");
    a.upload_ok(zip_of(&[(&key, &sym("a.pdb", ID_A, ""))]));
    // An upload on A is served by B.
    assert_eq!(b.get(&format!("/{key}")).status(), 200);
    // While A's GC runs (it holds the store's GC lock), B's refuses and does nothing.
    let gc_lock = Job::Gc.lock_key();
    let mut holder = pg.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&gc_lock])
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let err = b.store().gc(later, GcMode::Run).unwrap_err().to_string();
    assert!(err.contains("another daemon"), "{err}");
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&gc_lock])
        .unwrap();
    b.store().gc(later, GcMode::Run).unwrap();
    a.store().gc(later, GcMode::Run).unwrap();
    assert_eq!(a.get(&format!("/{key}")).status(), 200);
}

#[test]
fn a_change_on_one_daemon_reaches_the_lookup_cache_of_another_by_notification() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let (a, b) = (cluster_daemon(&pg, &g), cluster_daemon(&pg, &g));
    // B listens (its first connection moves its generation on once).
    wait_until("B listens for changes", || b.store().generation() >= 1);
    let key = format!("late.pdb/{ID_A}/late.sym");
    // B looks the key up before it exists: a miss, now in B's lookup cache.
    assert_eq!(b.get(&format!("/{key}")).status(), 404);
    let before = b.store().generation();
    a.upload_ok(zip_of(&[(&key, &sym("late.pdb", ID_A, ""))]));
    // B made no change itself: only A's notification moves its generation.
    wait_until("B hears of A's upload", || b.store().generation() > before);
    assert_eq!(b.get(&format!("/{key}")).status(), 200);
}

/// `symdepot` on `dir`, as a daemon of the store on `pg` and `g`.
fn cluster_cmd(
    dir: &std::path::Path,
    pg: &Postgres,
    g: &crate::garage::Garage,
) -> std::process::Command {
    let mut c = symdepot(dir);
    c.envs(crate::backend::env_of(&g.bucket(), ""))
        .env("SYMDEPOT_DATABASE_URL", pg.url());
    c
}

#[test]
fn a_daemon_killed_mid_upload_loses_nothing_any_daemon_acknowledged() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    // The real distributed case: every object on three Garage nodes.
    let g = crate::garage::Garage::cluster(3);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = cluster_cmd(dir_b.path(), &pg, &g)
        .args(["token", "create", "--permission", "upload"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let serve = |dir: &std::path::Path| {
        let mut c = cluster_cmd(dir, &pg, &g);
        c.args(["serve", "--listen", "127.0.0.1:0"]);
        spawn_logging(c)
    };
    let (mut b, addr_b) = serve(dir_b.path());
    let mut rng = Rng(0x0c1a_57e2);
    let batches = batches(4, &mut rng);
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    let mut interrupted = 0;
    for round in 0..8 {
        let (mut a, addr_a) = serve(dir_a.path());
        // Both daemons take uploads at once; A is killed at a random point of
        // its upload (or right after its 201).
        let on_a = &batches[round % batches.len()];
        let on_b = &batches[(round + 1) % batches.len()];
        let (zip_a, tok_a) = (on_a.zip.clone(), token.clone());
        let upload_a = std::thread::spawn(move || post(&addr_a, &tok_a, zip_a));
        let (zip_b, tok_b, url_b) = (on_b.zip.clone(), token.clone(), addr_b.clone());
        let upload_b = std::thread::spawn(move || post(&url_b, &tok_b, zip_b));
        let status_a = if round % 2 == 1 {
            let st = upload_a.join().unwrap();
            a.kill().unwrap();
            st
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            a.kill().unwrap();
            upload_a.join().unwrap()
        };
        a.wait().unwrap();
        match status_a {
            Some(201) => acknowledged.extend(on_a.members.iter().cloned()),
            Some(other) => panic!("round {round}: A answered {other}"),
            None => interrupted += 1,
        }
        assert_eq!(upload_b.join().unwrap(), Some(201), "round {round}: B");
        acknowledged.extend(on_b.members.iter().cloned());
        // B serves every member either daemon acknowledged.
        assert_served(&addr_b, &acknowledged);
    }
    assert!(interrupted > 0, "no kill landed inside an upload");
    // Every batch re-sent to B completes, and the store verifies clean.
    for batch in &batches {
        assert_eq!(post(&addr_b, &token, batch.zip.clone()), Some(201));
        assert_served(&addr_b, &batch.members);
    }
    sigterm(&b);
    wait_exit(&mut b);
    // What the killed daemon left, the next GC takes (nothing it may not).
    for args in [&["gc", "--force"][..], &["verify"]] {
        let out = cluster_cmd(dir_b.path(), &pg, &g)
            .args(args)
            .env("SYMDEPOT_GC_GRACE", "0s")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_served_after_gc(&pg, &g, dir_b.path(), &acknowledged);
}

/// A fresh daemon of the store still serves every acknowledged member.
fn assert_served_after_gc(
    pg: &Postgres,
    g: &crate::garage::Garage,
    dir: &std::path::Path,
    members: &[(String, Vec<u8>)],
) {
    let mut c = cluster_cmd(dir, pg, g);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let (mut d, addr) = spawn_logging(c);
    assert_served(&addr, members);
    sigterm(&d);
    wait_exit(&mut d);
}

/// Opens an upload on `addr` that sends its headers and a first line of body
/// and then waits: it holds one of the token's upload slots until dropped.
fn hold_an_upload(addr: &str, token: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    write!(
        slow,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {token}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
    )
    .unwrap();
    slow
}

#[test]
fn a_tokens_upload_slots_count_across_daemons_and_a_killed_daemon_gives_its_back() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let one_slot = |c: &mut symdepot::Config| {
        c.database_url = pg.url();
        g.configure(c);
        c.max_concurrent_uploads_per_token = 1;
    };
    let (a, b) = (
        TestServer::with_config(one_slot),
        TestServer::with_config(one_slot),
    );
    let key = format!("s.pdb/{ID_A}/s.sym");
    let zip = zip_of(&[(&key, &sym("s.pdb", ID_A, ""))]);
    let running = "SELECT COUNT(*) FROM uploads WHERE status = 'running'";
    // An upload in progress on A holds the token's only slot: B refuses a second.
    let slow = hold_an_upload(&a.addr.to_string(), &a.token);
    b.wait_for_count(running, 1);
    let resp = b.upload_with(&a.token, zip.clone(), None);
    assert_eq!(resp.status(), 429, "B counts the upload in progress on A");
    assert_eq!(resp.headers()["retry-after"], "5");
    // Other tokens are not held back, on either daemon.
    assert_eq!(b.upload(zip.clone()).status(), 201);
    // The upload on A ends (its client goes): the slot is free on B.
    drop(slow);
    b.wait_for_count(running, 0);
    wait_until("A gives its slot back", || {
        b.upload_with(&a.token, zip.clone(), None).status() == 201
    });

    // A daemon killed while it holds a slot gives it back with its connection.
    let dir = tempfile::tempdir().unwrap();
    let mut serve = cluster_cmd(dir.path(), &pg, &g);
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SYMDEPOT_MAX_CONCURRENT_UPLOADS_PER_TOKEN", "1");
    let (mut c, addr_c) = spawn_logging(serve);
    let _slow = hold_an_upload(&addr_c, &a.token);
    b.wait_for_count(running, 1);
    assert_eq!(b.upload_with(&a.token, zip.clone(), None).status(), 429);
    c.kill().unwrap();
    c.wait().unwrap();
    wait_until("the killed daemon's slot is free", || {
        b.upload_with(&a.token, zip.clone(), None).status() == 201
    });
}

#[test]
fn gc_on_one_daemon_leaves_alone_a_blob_an_upload_on_another_is_about_to_link() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let (a, b) = (cluster_daemon(&pg, &g), cluster_daemon(&pg, &g));
    let data = sym("p.pdb", ID_A, "");
    let key = format!("p.pdb/{ID_A}/p.sym");
    let hash = blake3::hash(&data).to_hex().to_string();
    // The blob is stored, then let go of: garbage once it is old.
    b.upload_ok(zip_of(&[(&key, &data)]));
    let target = symdepot::store::gc::DeleteTarget::Key {
        namespace: symdepot::store::Namespace::Release,
        key: key.clone(),
    };
    b.store().delete_keys(&target, "test").unwrap();
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    assert_eq!(b.store().gc(later, GcMode::DryRun).unwrap().blobs.len(), 1);
    // An upload on A finds the blob stored (objects cannot be made young
    // again): it pins it, and looks again.
    let enc = a.store().encoding_for("p.sym");
    let stored_size = a.store().ensure_blob(&hash, enc, &mut &data[..]).unwrap();
    let pinned_at: i64 = a.one(
        "SELECT pinned_at FROM blob_pins WHERE blob = ?1",
        &symdepot::sql_params![hash.as_str()],
    );
    // The pin keeps the blob young for gc_grace (1 h) from the pin.
    let until = pinned_at + 3_600_000;
    let at = |ms: i64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64);
    // GC on B, as late as the pin allows (the blob itself long past its grace), keeps it.
    let r = b.store().gc(at(until - 1), GcMode::Run).unwrap();
    assert!(r.blobs.is_empty(), "{r:?}");
    // It is the pin that keeps it: without it, the same GC would take the blob.
    let pins = a.rows("SELECT blob, encoding, pinned_at FROM blob_pins", &[]);
    a.index().exec("DELETE FROM blob_pins", &[]).unwrap();
    assert_eq!(
        b.store()
            .gc(at(until - 1), GcMode::DryRun)
            .unwrap()
            .blobs
            .len(),
        1
    );
    for p in pins {
        a.index()
            .exec(
                "INSERT INTO blob_pins (blob, encoding, pinned_at) VALUES (?1, ?2, ?3)",
                &p.0,
            )
            .unwrap();
    }
    // A commits; B serves the key from the blob still in the bucket.
    let id = symdepot::identity::identify_bytes(&data, "p.sym");
    let new = symdepot::store::NewKey {
        namespace: symdepot::store::Namespace::Release,
        key: &key,
        hash: &hash,
        encoding: enc,
        size: data.len() as u64,
        stored_size,
        identity: &id,
    };
    assert!(a.store().commit_key(None, &new).unwrap().is_some());
    assert_eq!(
        b.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        data.as_slice()
    );
    // Let go of again: once the pin has run out, GC takes the blob and the pin.
    b.store().delete_keys(&target, "test").unwrap();
    let r = b.store().gc(at(until + 1), GcMode::Run).unwrap();
    assert_eq!(r.blobs.len(), 1, "{r:?}");
    assert_eq!(b.count("SELECT COUNT(*) FROM blob_pins"), 0);
}

#[test]
fn the_cluster_demo_serves_an_upload_through_nginx_from_both_daemons() {
    crate::local_only!("the demo starts its own engines");
    crate::sqlite_only!("the demo starts its own engines");
    // PostgreSQL, three Garage nodes, two daemons and nginx; `--check`
    // uploads through nginx and downloads from each daemon.
    // Bounded by `timeout`: a demo that hangs fails the test instead.
    let out = std::process::Command::new("timeout")
        .arg("600")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-demo"))
        .arg("--check")
        .env("SYMDEPOT_BIN", env!("CARGO_BIN_EXE_symdepot"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("served by both daemons"), "{err}");
}

#[test]
fn overlapping_uploads_to_two_daemons_at_once_leave_a_consistent_store() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let (a, b) = (cluster_daemon(&pg, &g), cluster_daemon(&pg, &g));
    // Each round A and B take zips of the same 20 keys at once: half the
    // members the same bytes on both, half different.
    let keys: Vec<String> = (0..20)
        .map(|i| format!("o{i}.pdb/{ID_A}/o{i}.sym"))
        .collect();
    let version = |i: usize, who: &str, round: usize| {
        let extra = if i.is_multiple_of(2) {
            format!("INFO GENERATOR round{round}\n")
        } else {
            format!("INFO GENERATOR {who}{round}\n")
        };
        sym(&format!("o{i}.pdb"), ID_A, &extra)
    };
    for round in 0..4 {
        let zip_for = |who: &str| {
            let members: Vec<(String, Vec<u8>)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), version(i, who, round)))
                .collect();
            let refs: Vec<(&str, &[u8])> =
                members.iter().map(|(k, d)| (k.as_str(), &d[..])).collect();
            zip_of(&refs)
        };
        let (zip_a, zip_b) = (zip_for("a"), zip_for("b"));
        let (addr_a, addr_b) = (a.addr.to_string(), b.addr.to_string());
        let (ta, tb) = (a.token.clone(), b.token.clone());
        let on_a = std::thread::spawn(move || post(&addr_a, &ta, zip_a));
        let on_b = std::thread::spawn(move || post(&addr_b, &tb, zip_b));
        assert_eq!(on_a.join().unwrap(), Some(201), "round {round}: A");
        assert_eq!(on_b.join().unwrap(), Some(201), "round {round}: B");
        // Whichever commit came last, both daemons serve the same bytes, one
        // of the two versions, and the index names exactly that blob.
        for (i, k) in keys.iter().enumerate() {
            let from_a = a.get(&format!("/{k}")).bytes().unwrap();
            let from_b = b.get(&format!("/{k}")).bytes().unwrap();
            assert_eq!(from_a, from_b, "round {round}: {k}");
            let candidates = [version(i, "a", round), version(i, "b", round)];
            assert!(
                candidates.iter().any(|c| c.as_slice() == from_a.as_ref()),
                "round {round}: {k} is neither upload's"
            );
            let blob: String = a.one(
                "SELECT blob FROM keys WHERE key = ?1",
                &symdepot::sql_params![k.as_str()],
            );
            assert_eq!(blob, blake3::hash(&from_a).to_hex().to_string());
        }
    }
    assert_eq!(a.count("SELECT COUNT(*) FROM keys"), 20);
    let report = b.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.keys, 20);
}

#[test]
fn gc_started_on_two_daemons_at_once_collects_each_blob_once() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let (a, b) = (cluster_daemon(&pg, &g), cluster_daemon(&pg, &g));
    let garbage = members(0, 40);
    upload_members(&a, &garbage);
    let kept = members(100, 2);
    upload_members(&b, &kept);
    for (k, _) in &garbage {
        let target = symdepot::store::gc::DeleteTarget::Key {
            namespace: symdepot::store::Namespace::Release,
            key: k.clone(),
        };
        a.store().delete_keys(&target, "test").unwrap();
    }
    // Both daemons start GC at the same moment.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let start = std::sync::Barrier::new(2);
    let run = |d: &TestServer| {
        start.wait();
        d.store().gc(later, GcMode::Run)
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ja = s.spawn(|| run(&a));
        let jb = s.spawn(|| run(&b));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    // Each run either collected or stood aside because the other held the
    // lock; no blob was collected twice, every garbage blob once.
    let mut collected = Vec::new();
    for r in [ra, rb] {
        match r {
            Ok(report) => collected.extend(report.blobs),
            Err(e) => assert!(e.to_string().contains("another daemon"), "{e}"),
        }
    }
    let distinct: std::collections::HashSet<_> = collected.iter().collect();
    assert_eq!(distinct.len(), collected.len(), "a blob collected twice");
    assert_eq!(collected.len(), garbage.len());
    assert_served(&a.addr.to_string(), &kept);
    let report = a.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
}

#[test]
fn records_tokens_the_report_and_store_metrics_agree_whichever_daemon_answers() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    let (a, b) = (cluster_daemon(&pg, &g), cluster_daemon(&pg, &g));
    upload_members(&a, &members(0, 3));
    upload_members(&b, &members(10, 2));
    // Misses of one file counted on both daemons add up in the one report.
    let miss = format!("/gone.pdb/{ID_B}/gone.sym");
    for _ in 0..3 {
        assert_eq!(a.get(&miss).status(), 404);
    }
    for _ in 0..2 {
        assert_eq!(b.get(&miss).status(), 404);
    }
    wait_until("both daemons' misses are written", || {
        a.rows(
            "SELECT count FROM missing WHERE debug_file = 'gone.pdb'",
            &[],
        )
        .first()
        .is_some_and(|r| r.get::<i64>(0).unwrap() == 5)
    });
    let admin = a.create_token(&["manage_tokens", "view_all"], "admin");
    // Each daemon's own address is the only difference an answer may have.
    let answer = |d: &TestServer, path: &str| {
        let resp = d
            .client
            .get(d.url(path))
            .header("Auth-Token", &admin)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.text().unwrap().replace(&d.addr.to_string(), "HOST")
    };
    for path in [
        "/api/uploads/",
        "/api/uploads/files/",
        "/api/tokens",
        "/api/missing",
        "/missingsymbols.csv",
    ] {
        assert_eq!(answer(&a, path), answer(&b, path), "{path}");
    }
    assert!(answer(&b, "/missingsymbols.csv").contains("gone.pdb"));
    let store_gauges = |d: &TestServer| -> Vec<String> {
        answer(d, "/metrics")
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && [
                        "store_files",
                        "store_original_bytes",
                        "store_blob_bytes",
                        "missing_symbols",
                    ]
                    .iter()
                    .any(|m| l.contains(m))
            })
            .map(str::to_string)
            .collect()
    };
    let on_a = store_gauges(&a);
    assert_eq!(on_a.len(), 4, "{on_a:?}");
    assert!(
        on_a.iter().any(|l| l.ends_with("store_files 5")),
        "{on_a:?}"
    );
    assert_eq!(on_a, store_gauges(&b));
}

#[test]
fn daemons_of_a_new_store_starting_together_all_start_as_one_store() {
    crate::own_blob_store!("a cluster: its own Garage");
    crate::own_index!("a cluster: its own PostgreSQL");
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
    // Four daemons on a new index and an empty bucket, started at one moment:
    // each claims the bucket prefix for the store, and they agree on one id.
    let start = std::sync::Barrier::new(4);
    let daemons: Vec<TestServer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    cluster_daemon(&pg, &g)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let key = format!("t.pdb/{ID_A}/t.sym");
    daemons[0].upload_ok(zip_of(&[(&key, &sym("t.pdb", ID_A, ""))]));
    for d in &daemons {
        assert_eq!(d.get(&format!("/{key}")).status(), 200);
    }
    assert_eq!(
        daemons[3].count("SELECT COUNT(*) FROM store_meta WHERE name = 'store_id'"),
        1
    );
}
