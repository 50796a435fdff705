//! `blob_store = "s3"` on a real Garage: uploads land in the bucket (no layout
//! tree, nothing under `objects/`), every route serves them, GC deletes an
//! object only once no row names it, and a bad bucket setting stops the daemon.

use std::time::{Duration, SystemTime};

use symdepot::store::gc::GcMode;

use crate::garage::Garage;
use crate::support::*;

fn server(g: &Garage) -> TestServer {
    TestServer::with_config(|c| g.configure(c))
}

#[test]
fn uploads_go_to_the_bucket_and_every_route_serves_them() {
    crate::own_blob_store!("its own Garage");
    let g = Garage::start();
    let s = server(&g);
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let sym_key = format!("xul.pdb/{ID_A}/xul.sym");
    let sym_text = sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\n");
    let big_key = format!("big.pdb/{ID_B}/big.bin");
    let empty_key = format!("empty.pdb/{ID_B}/empty.bin");
    s.upload_ok(zip_of(&[
        (&sym_key, &sym_text),
        (&big_key, &big),
        (&empty_key, b""),
    ]));
    s.upload_elf(&f);
    // Nothing on the local disk but the index: no blob, no layout tree.
    assert!(s.blobs().is_empty(), "{:?}", s.blobs());
    assert!(s.entries().is_empty(), "{:?}", s.entries());

    // Small (checked whole), gzip as stored and inflated, large streamed, a range.
    let gz = s.get_with(&format!("/{sym_key}"), &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gunzip(&gz.bytes().unwrap()), sym_text);
    let plain = s.get_with(&format!("/{sym_key}"), &[("Accept-Encoding", "identity")]);
    assert_eq!(plain.bytes().unwrap().as_ref(), sym_text.as_slice());
    assert_eq!(
        s.get(&format!("/{big_key}")).bytes().unwrap().as_ref(),
        big.as_slice()
    );
    let part = s.get_with(
        &format!("/{big_key}"),
        &[("Range", "bytes=1000000-1000099")],
    );
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &big[1_000_000..1_000_100]);
    // debuginfod, a section read out of the stored ELF, and the code-id redirect.
    let debug = s.get(&format!("/buildid/{}/debuginfo", f.build_id));
    assert_eq!(
        debug.bytes().unwrap().as_ref(),
        std::fs::read(&f.debug).unwrap()
    );
    assert_eq!(
        s.get(&format!("/buildid/{}/section/.text", f.build_id))
            .status(),
        200
    );
    assert_eq!(s.get("/xul.dll/5CF0A9B1c5f2000/xul.sym").status(), 302);
    let empty = s.get(&format!("/{empty_key}"));
    assert_eq!(empty.status(), 200);
    assert!(empty.bytes().unwrap().is_empty());

    // A re-upload skips every member: the objects are found by HEAD.
    let again = s.upload_ok(zip_of(&[(&sym_key, &sym_text), (&big_key, &big)]));
    assert_eq!(
        again["skipped_keys"].as_array().unwrap().len(),
        2,
        "{again}"
    );
    let report = s.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
}

#[test]
fn gc_deletes_an_object_only_once_no_row_names_it() {
    crate::own_blob_store!("its own Garage");
    let g = Garage::start();
    let s = server(&g);
    let (a, b) = (format!("a.pdb/{ID_A}/a.sym"), format!("b.pdb/{ID_B}/b.sym"));
    s.upload_ok(zip_of(&[
        (&a, &sym("a.pdb", ID_A, "")),
        (&b, &sym("b.pdb", ID_B, "")),
    ]));
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    assert!(s.store().gc(later, GcMode::Run).unwrap().blobs.is_empty());
    let out = symdepot(&s.data_dir())
        .args(["delete", &a])
        .envs(s3_env(&g))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = s.store().gc(later, GcMode::Run).unwrap();
    assert_eq!(r.blobs.len(), 1, "{r:?}");
    // Really gone from the bucket: a listing no longer finds it.
    let again = s.store().gc(later, GcMode::DryRun).unwrap();
    assert!(again.blobs.is_empty(), "{again:?}");
    assert_eq!(s.get(&format!("/{b}")).status(), 200);
    // The row that remains names an object that is still there.
    let report = s.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
}

/// The `s3_*` settings of `g` as `SYMDEPOT_*` variables, for the command line.
fn s3_env(g: &Garage) -> Vec<(&'static str, String)> {
    crate::backend::env_of(&g.bucket(), "")
}

#[test]
fn a_wrong_bucket_or_credentials_stop_the_daemon_naming_the_setting() {
    crate::own_blob_store!("its own Garage");
    let g = Garage::start();
    for broken in ["bucket", "secret", "endpoint"] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = symdepot::Config {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".into(),
            ..symdepot::Config::default()
        };
        g.configure(&mut c);
        match broken {
            "bucket" => c.s3_bucket = "no-such-bucket".into(),
            "secret" => c.s3_secret_access_key = "0".repeat(64),
            _ => c.s3_endpoint = "http://127.0.0.1:9".into(),
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        let err = rt
            .block_on(symdepot::daemon::Daemon::start(c.clone()))
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("s3_"), "{broken}: {text}");
        // No secret, right or wrong, appears in what is said.
        assert!(!text.contains(&c.s3_secret_access_key), "{broken}: {text}");
    }
}

#[test]
fn an_object_store_outage_answers_503_with_retry_after_and_commits_nothing() {
    crate::own_blob_store!("its own Garage");
    let mut g = Garage::start();
    let s = server(&g);
    let kept = format!("k.pdb/{ID_A}/k.sym");
    s.upload_ok(zip_of(&[(&kept, &sym("k.pdb", ID_A, ""))]));
    g.stop();
    let resp = s.upload(zip_of(&[(
        &format!("n.pdb/{ID_B}/n.sym"),
        &sym("n.pdb", ID_B, ""),
    )]));
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    // The object store's own words (its address, its answer) stay in the log.
    let body = resp.text().unwrap();
    let port = g.endpoint.rsplit(':').next().unwrap().to_string();
    assert!(!body.contains(&port), "{body}");
    let recorded: String = s
        .rows("SELECT COALESCE(error, '') FROM upload_members", &[])
        .iter()
        .map(|r| r.get::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!recorded.contains(&port), "{recorded}");
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys"),
        1,
        "nothing half-committed"
    );
    // `verify` cannot tell damage from an outage: it fails rather than report damage.
    assert!(s.store().verify(false).is_err());
    // A stored key whose bytes cannot be fetched is an outage, never a 404.
    let status = s
        .get_with(&format!("/{kept}"), &[("Accept-Encoding", "identity")])
        .status();
    assert!(status.is_server_error(), "{status}");
}

#[test]
fn a_three_node_garage_loses_a_node_and_uploads_and_downloads_go_on() {
    crate::own_blob_store!("its own Garage");
    let mut g = Garage::cluster(3);
    let s = server(&g);
    let before = members(0, 10);
    upload_members(&s, &before);
    // One node of three goes down: every object still has two live copies.
    g.kill_node(2);
    let after = members(10, 10);
    upload_members(&s, &after);
    for (key, data) in before.iter().chain(&after) {
        let resp = s.get_with(&format!("/{key}"), &[("Accept-Encoding", "identity")]);
        assert_eq!(resp.status(), 200, "{key}");
        assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice(), "{key}");
    }
    let report = s.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.keys, 20);
}

#[test]
fn large_blobs_kept_as_they_are_redirect_to_a_presigned_url_of_the_object() {
    crate::own_blob_store!("its own Garage");
    let g = Garage::start();
    let s = TestServer::with_config(|c| {
        g.configure(c);
        c.s3_redirect_min_bytes = "1MiB".into();
    });
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 249) as u8).collect();
    let big_key = format!("big.pdb/{ID_B}/big.bin");
    let sym_key = format!("xul.pdb/{ID_A}/xul.sym");
    let sym_text = sym("xul.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&big_key, &big), (&sym_key, &sym_text)]));
    let resp = s.get(&format!("/{big_key}"));
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&g.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // HEAD is answered by the daemon (a presigned URL is good for GET only).
    let head = s.client.head(s.url(&format!("/{big_key}"))).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        big.len().to_string().as_str()
    );
    let fetched = crate::support::http_get(&location).unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().unwrap().as_ref(), big.as_slice());
    // Small files, and gzip blobs whatever their size, are served by the daemon.
    let small = s.get_with(&format!("/{sym_key}"), &[("Accept-Encoding", "identity")]);
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().unwrap().as_ref(), sym_text.as_slice());
}

#[test]
fn each_upload_leaves_a_manifest_and_a_lost_index_is_rebuilt_from_them() {
    crate::own_blob_store!("its own Garage");
    crate::sqlite_only!("the index file deleted");
    let g = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = |c: &mut symdepot::Config| {
        g.configure(c);
        c.s3_prefix = "store-a/".into();
        c.data_dir = data.clone();
    };
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let key = format!("a.pdb/{ID_A}/a.sym");
    let gone = format!("gone.pdb/{ID_B}/gone.sym");
    let tried = format!("t.pdb/{ID_B}/t.sym");
    let v2 = sym("a.pdb", ID_A, "INFO GENERATOR two\n");
    let routes = [
        format!("/{key}"),
        format!("/try/{tried}"),
        format!("/buildid/{}/debuginfo", f.build_id),
        format!("/buildid/{}/executable", f.build_id),
        format!("/{0}/{1}/{0}.debug", f.name, f.debug_id),
        format!("/{gone}"),
    ];
    let (before, last_upload) = {
        let s = TestServer::with_config(config);
        s.upload_ok(zip_of(&[
            (&key, &sym("a.pdb", ID_A, "INFO GENERATOR one\n")),
            (&gone, &sym("gone.pdb", ID_B, "")),
        ]));
        s.upload_elf(&f);
        // The later upload wins, as in the live index; a try upload stays try.
        s.upload_ok(zip_of(&[(&key, &v2)]));
        let resp = s.upload_with(
            &s.token,
            zip_of(&[(&tried, &sym("t.pdb", ID_B, ""))]),
            Some("1"),
        );
        assert_eq!(resp.status(), 201);
        // A key deleted and collected does not come back.
        let out = symdepot(&data)
            .args(["delete", &gone])
            .envs(crate::backend::env_of(&g.bucket(), "store-a/"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let later = SystemTime::now() + Duration::from_secs(2 * 3600);
        // Its blob and the replaced version's go.
        assert_eq!(s.store().gc(later, GcMode::Force).unwrap().blobs.len(), 2);
        // A manifest still owed (the store failed, or the process died, after
        // the commit) is written by the next GC.
        crate::backend::delete_object_in(&g.bucket(), "store-a/uploads/2.json");
        s.index()
            .exec("UPDATE uploads SET manifest_at = NULL WHERE id = 2", &[])
            .unwrap();
        assert_eq!(
            s.store()
                .gc(SystemTime::now(), GcMode::Run)
                .unwrap()
                .manifests,
            1
        );
        // No rebuild beside a running daemon.
        let out = symdepot(&data)
            .args(["reindex", "--from-bucket"])
            .envs(crate::backend::env_of(&g.bucket(), "store-a/"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
        let last: i64 = s.count("SELECT MAX(id) FROM uploads WHERE status = 'complete'");
        (s.answers(&routes), last)
    };
    let run = |args: &[&str]| {
        symdepot(&data)
            .args(args)
            .envs(crate::backend::env_of(&g.bucket(), "store-a/"))
            .output()
            .unwrap()
    };
    // A rebuild over an intact index lets go of no blob (GC would take
    // those without its share limit).
    let released = || {
        rusqlite::Connection::open(data.join("index.sqlite3"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM released", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let before_released = released();
    let out = run(&["reindex", "--from-bucket"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(released(), before_released);
    assert_eq!(before[0].1, v2);
    assert_eq!(before[5].0, 404);

    // One manifest per finished upload, beside the blobs, naming each member.
    let objects = crate::backend::objects_in(&g.bucket(), "store-a/");
    let manifests: Vec<String> = objects
        .iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with("uploads/"))
        .collect();
    assert_eq!(
        manifests,
        [
            "uploads/1.json",
            "uploads/2.json",
            "uploads/3.json",
            "uploads/4.json"
        ]
    );
    let first: serde_json::Value = serde_json::from_slice(
        &crate::backend::get_object_in(&g.bucket(), "store-a/uploads/1.json").unwrap(),
    )
    .unwrap();
    assert_eq!(first["upload"]["user"], "uploader");
    let m = first["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key.as_str())
        .expect("the member is in its upload's manifest");
    assert_eq!(m["namespace"], "release");
    assert_eq!(m["encoding"], "gzip");
    assert_eq!(m["outcome"], "new");
    assert_eq!(m["debug_id"], ID_A);

    // The index is lost: every command refuses it until the rebuild.
    for name in ["index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    let out = run(&["verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reindex --from-bucket"));
    let out = run(&["reindex"]);
    assert!(!out.status.success(), "the layout-tree reindex refuses S3");
    let out = run(&["reindex", "--from-bucket"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("reindexed 4 keys, skipped 1") && stdout.contains("4 upload records"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&gone) && stderr.contains("no longer in the bucket"),
        "{stderr}"
    );
    let out = run(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Every route answers as before, and the history is back.
    let s = TestServer::with_config(config);
    assert_eq!(s.answers(&routes), before);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'complete'"),
        4
    );
    // New uploads get new ids: no manifest is ever replaced.
    let up = s.upload_ok(zip_of(&[(
        &format!("new.pdb/{ID_A}/new.sym"),
        &sym("new.pdb", ID_A, ""),
    )]));
    assert_eq!(up["id"].as_i64().unwrap(), last_upload + 1);
    assert!(
        crate::backend::get_object_in(
            &g.bucket(),
            &format!("store-a/uploads/{}.json", last_upload + 1)
        )
        .is_some()
    );
}

#[test]
fn verify_repair_moves_a_damaged_object_aside_and_a_reupload_restores_it() {
    crate::own_blob_store!("its own Garage");
    let g = Garage::start();
    let s = server(&g);
    let key = format!("bin.so/{ID_B}/bin.so");
    let content: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let zip = zip_of(&[(&key, &content)]);
    s.upload_ok(zip.clone());
    let name = blob_name(&content, false);
    let mut bytes = crate::backend::get_object_in(&g.bucket(), &name).unwrap();
    bytes[100] ^= 0x01;
    crate::backend::put_object_in(&g.bucket(), &name, bytes.clone());
    let verify = |args: &[&str]| {
        let out = symdepot(&s.data_dir())
            .args(args)
            .envs(s3_env(&g))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = verify(&["verify"]);
    assert!(!ok && text.contains("does not hash to its name"), "{text}");
    // A re-upload alone cannot heal it: the object is there, only wrong.
    let (ok, text) = verify(&["verify", "--repair"]);
    assert!(!ok, "{text}");
    let hash = blake3::hash(&content).to_hex().to_string();
    assert!(
        text.contains(&format!("quarantined quarantine/{hash}.")),
        "{text}"
    );
    let aside: Vec<_> = crate::backend::objects_in(&g.bucket(), "quarantine/");
    assert_eq!(aside.len(), 1, "{aside:?}");
    let aside = format!("quarantine/{}", aside[0].0.display());
    assert!(aside.starts_with(&format!("quarantine/{hash}.")), "{aside}");
    assert_eq!(
        crate::backend::get_object_in(&g.bucket(), &aside),
        Some(bytes)
    );
    assert_eq!(crate::backend::get_object_in(&g.bucket(), &name), None);
    assert_eq!(s.get(&format!("/{key}")).status(), 500);
    // The re-upload puts it back.
    s.upload_ok(zip);
    let (ok, text) = verify(&["verify"]);
    assert!(ok, "{text}");
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        content.as_slice()
    );
}

#[test]
fn two_stores_never_share_a_bucket_prefix() {
    crate::own_blob_store!("its own Garage");
    let g = Garage::start();
    let first = server(&g);
    first.upload_ok(zip_of(&[(
        &format!("a.pdb/{ID_A}/a.sym"),
        &sym("a.pdb", ID_A, ""),
    )]));
    let marker = crate::backend::get_object_in(&g.bucket(), "store.json").unwrap();
    let marker: serde_json::Value = serde_json::from_slice(&marker).unwrap();
    let id = marker["store_id"].as_str().unwrap().to_string();
    // A second data dir on the same bucket and prefix: refused by the daemon
    // and by every command, naming the setting; it deletes nothing.
    let other = tempfile::tempdir().unwrap();
    let mut config = symdepot::Config {
        data_dir: other.path().join("data"),
        listen: "127.0.0.1:0".into(),
        ..symdepot::Config::default()
    };
    g.configure(&mut config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(symdepot::daemon::Daemon::start(config.clone()))
        .err()
        .map(|e| format!("{e:#}"))
        .expect("refused");
    assert!(err.contains("s3_prefix") && err.contains(&id), "{err}");
    for args in [&["gc", "--force"][..], &["token", "list"]] {
        let out = symdepot(&config.data_dir)
            .args(args)
            .envs(s3_env(&g))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran: {text}");
        assert!(text.contains("another store"), "{args:?}: {text}");
    }
    assert_eq!(first.get(&format!("/a.pdb/{ID_A}/a.sym")).status(), 200);
    // Its own prefix in the same bucket is fine.
    config.s3_prefix = "second/".into();
    let second = rt
        .block_on(symdepot::daemon::Daemon::start(config))
        .expect("a store on its own prefix starts");
    rt.block_on(second.shutdown());
}
