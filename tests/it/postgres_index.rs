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
    let dir = tempfile::tempdir().unwrap();
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
    let pg = Postgres::start();
    let g = crate::garage::Garage::start();
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
