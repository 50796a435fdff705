//! The index on a real PostgreSQL (`database_url`): the daemon keeps keys,
//! lookups, uploads, tokens and missing symbols there, and every route,
//! GC and verify work as on SQLite.

use std::time::{Duration, SystemTime};

use symdepot::store::gc::GcMode;

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
