//! A lost or damaged index never lets a command or GC empty the store, and a
//! second process on a data dir never disturbs the first.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// A data dir with `n` `.sym` files ingested by the command line.
fn store_with(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..n {
        let module = format!("m{i}.pdb");
        std::fs::write(
            files.join(format!("m{i}.sym")),
            sym(&module, ID_A, &format!("INFO GENERATOR n{i}\n")),
        )
        .unwrap();
    }
    let out = symdepot(&data).arg("ingest").arg(&files).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (dir, data)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(data: &Path, args: &[&str]) -> Output {
    symdepot(data).args(args).output().unwrap()
}

fn lose_index(data: &Path, how: &str) {
    if crate::backend::on_pg() {
        // Deleted or truncated alike: the database is gone, an empty one in its place.
        crate::backend::lose_database_for(data);
        return;
    }
    for f in ["index.sqlite3-wal", "index.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    match how {
        "deleted" => std::fs::remove_file(data.join("index.sqlite3")).unwrap(),
        "truncated" => std::fs::write(data.join("index.sqlite3"), b"").unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn every_command_refuses_a_lost_index_while_blobs_are_stored_until_reindex() {
    for how in ["deleted", "truncated"] {
        let (_dir, data) = store_with(3);
        let blobs = stored_blobs(&data);
        assert_eq!(blobs.len(), 3);
        lose_index(&data, how);
        for args in [
            &["serve", "--listen", "127.0.0.1:0"][..],
            &["verify"],
            &["gc"],
            &["gc", "--force"],
            &["token", "list"],
            &["export", "--layout", "breakpad", "--plain"],
        ] {
            let mut args = args.to_vec();
            let export = data.with_file_name("export");
            let export = export.to_string_lossy().into_owned();
            if args[0] == "export" {
                args.push(&export);
            }
            let out = run(&data, &args);
            assert!(!out.status.success(), "{how}: {args:?} ran");
            let err = stderr(&out);
            assert!(
                err.contains("symdepot reindex") && err.contains("index"),
                "{how}: {args:?}: {err}"
            );
        }
        assert_eq!(stored_blobs(&data), blobs, "{how}");
        // reindex rebuilds it, and everything is served again.
        let out = run(&data, reindex_args());
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&data, &["verify"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (mut child, addr) = spawn_daemon(&data);
        let got = crate::support::http_get(format!("http://{addr}/m1.pdb/{ID_A}/m1.sym")).unwrap();
        assert_eq!(got.status(), 200, "{how}");
        sigterm(&child);
        wait_exit(&mut child);
    }
}

#[test]
fn an_empty_store_starts_on_a_new_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A data dir that does not exist yet: the first token makes the store.
    let out = run(&data, &["token", "create", "--permission", "upload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&data, &["token", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A store whose keys were all deleted still has its history: not a lost index.
    let (_d, data) = store_with(1);
    let out = run(&data, &["delete", &format!("m0.pdb/{ID_A}/m0.sym")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&data, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn gc_refuses_to_delete_more_than_its_share_of_the_store_without_force() {
    let (_dir, data) = store_with(4);
    age_store(&data);
    // An index that knows only one of four keys (restored from an old backup, say).
    let mut db = index_of(&data);
    db.exec("DELETE FROM keys WHERE key NOT LIKE 'm0.pdb/%'", &[])
        .unwrap();
    // An older index never let go of the other three blobs: it never knew them.
    db.exec("DELETE FROM released", &[]).unwrap();
    drop(db);
    let blobs = stored_blobs(&data);
    let out = run(&data, &["gc"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gc_max_delete_fraction") && err.contains("3 of the 4"),
        "{err}"
    );
    assert_eq!(stored_blobs(&data), blobs, "nothing deleted");
    if !crate::backend::on_s3() {
        assert_eq!(
            files_under(&data.join("release")).len(),
            4,
            "no entry removed"
        );
    }
    // A dry run reports, and a larger share allowed by configuration runs.
    let out = run(&data, &["gc", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = symdepot(&data)
        .arg("gc")
        .env("SYMDEPOT_GC_MAX_DELETE_FRACTION", "0.8")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored_blobs(&data).len(), 1);
}

#[test]
fn blobs_the_index_let_go_of_are_collected_whatever_their_share() {
    let (_dir, data) = store_with(3);
    // Every key expires (a zero try retention would do; here they are deleted).
    for i in 0..3 {
        let out = run(&data, &["delete", &format!("m{i}.pdb/{ID_A}/m{i}.sym")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    age_store(&data);
    let out = run(&data, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stored_blobs(&data).is_empty());
    // And the emptied store still opens: the index has lived.
    let out = run(&data, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn gc_force_deletes_past_the_share() {
    let (_dir, data) = store_with(2);
    age_store(&data);
    let mut db = index_of(&data);
    db.exec("DELETE FROM keys", &[]).unwrap();
    db.exec("DELETE FROM released", &[]).unwrap();
    // A token keeps the index from looking new, so GC runs and meets its limit.
    db.exec(
        "INSERT INTO tokens (secret_hash, permissions, \"user\", created_at) \
         VALUES ('x', 'upload', 'u', 0)",
        &[],
    )
    .unwrap();
    drop(db);
    assert!(!run(&data, &["gc"]).status.success());
    let out = run(&data, &["gc", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stored_blobs(&data).is_empty());
}

#[test]
fn the_heartbeat_fails_once_the_index_is_gone_or_malformed() {
    crate::sqlite_only!("the index file damaged in place");
    let s = TestServer::start();
    let (name, data) = good_member();
    s.upload_ok(zip_of(&[(&name, &data)]));
    assert_eq!(s.get("/__heartbeat__").status(), 200);
    let index = s.data_dir().join("index.sqlite3");
    // Everything in the main file (none of it only in the WAL), then damaged in
    // place: the header no longer says SQLite.
    s.db()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let mut bad = std::fs::read(&index).unwrap();
    bad[..16].copy_from_slice(b"not a database!\0");
    std::fs::write(&index, &bad).unwrap();
    let resp = s.get("/__heartbeat__");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().unwrap();
    assert!(body["errors"]["index"].is_string(), "{body}");

    // Gone (deleted under the running daemon).
    std::fs::remove_file(&index).unwrap();
    let resp = s.get("/__heartbeat__");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().unwrap();
    assert!(
        body["errors"]["index"].as_str().unwrap().contains("gone"),
        "{body}"
    );
}

/// The temp folder of the one live daemon in `data`.
fn live_temp_folder(data: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

#[test]
fn a_second_daemon_on_a_busy_data_dir_refuses_and_leaves_the_first_ones_work_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, addr) = spawn_daemon(&data);
    let in_flight = live_temp_folder(&data).join("upload-in-flight");
    std::fs::write(&in_flight, b"half an upload").unwrap();

    // Another port or the same one: refused before it touches anything.
    for listen in ["127.0.0.1:0", addr.as_str()] {
        let out = run(&data, &["serve", "--listen", listen]);
        assert!(!out.status.success(), "a second daemon started on {listen}");
        let err = stderr(&out);
        assert!(
            err.contains("in use") && err.contains(&format!("pid {}", first.id())),
            "{err}"
        );
        assert!(
            in_flight.exists(),
            "the second daemon removed a live temp file"
        );
    }
    // Commands run beside the daemon, and GC leaves its temp files alone however old.
    let old = SystemTime::now() - Duration::from_secs(30 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&in_flight)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = run(&data, &["gc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(in_flight.exists(), "gc removed a live process's temp file");
    // Killed, the daemon cannot clean up: its folder is abandoned, and the next
    // start clears it.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(in_flight.exists(), "a killed daemon removed nothing");
    let (mut next, _) = spawn_daemon(&data);
    assert!(
        !in_flight.exists(),
        "the next start cleared the abandoned folder"
    );
    sigterm(&next);
    wait_exit(&mut next);
}

#[test]
fn an_in_process_daemon_refuses_a_data_dir_another_daemon_holds() {
    let s = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(symdepot::daemon::Daemon::start(s.config.clone()))
        .unwrap_err();
    assert!(format!("{err:#}").contains("in use"), "{err:#}");
    assert_eq!(s.get("/__heartbeat__").status(), 200);
}

#[test]
fn an_imported_tree_is_served_again_after_its_index_is_lost_and_rebuilt() {
    // `import` makes an upload record like `ingest`: on S3 its manifest is
    // what `reindex --from-bucket` rebuilds the index from.
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let file = tree.join("xul.pdb").join(ID_A).join("xul.sym");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, sym("xul.pdb", ID_A, "")).unwrap();
    let data = dir.path().join("data");
    let out = symdepot(&data).arg("import").arg(&tree).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    lose_index(&data, "deleted");
    let out = run(&data, reindex_args());
    assert!(out.status.success(), "{}", stderr(&out));
    let (mut child, addr) = spawn_daemon(&data);
    let got = crate::support::http_get(format!("http://{addr}/xul.pdb/{ID_A}/xul.sym")).unwrap();
    assert_eq!(got.status(), 200);
    sigterm(&child);
    wait_exit(&mut child);
}

#[test]
fn an_import_of_a_folder_that_does_not_exist_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-tree");
    let out = symdepot(&data)
        .arg("import")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not a folder"), "{}", stderr(&out));
    assert!(!data.exists(), "a store was made for nothing");
}
