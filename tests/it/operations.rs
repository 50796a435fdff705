//! Operating the store: try expiry and GC, verify, reindex, delete.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;
use symdepot::store::gc::GcMode;

fn at_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn make_old(path: &std::path::Path) {
    let old = SystemTime::now() - Duration::from_secs(3 * 3600);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn try_files_expire_at_the_retention_boundary_and_release_files_stay() {
    let s = TestServer::start();
    let try_key = format!("t.pdb/{ID_A}/t.sym");
    let rel_key = format!("r.pdb/{ID_B}/r.sym");
    assert_eq!(
        s.upload_with(
            &s.token,
            zip_of(&[(&try_key, &sym("t.pdb", ID_A, ""))]),
            Some("1")
        )
        .status(),
        201
    );
    s.upload_ok(zip_of(&[(&rel_key, &sym("r.pdb", ID_B, ""))]));
    let last: i64 = s.one(
        "SELECT last_uploaded_at FROM keys WHERE namespace = 'try'",
        &[],
    );
    let retention = 28 * 86_400_000i64;

    // One millisecond before the boundary nothing expires.
    let r = s.store().gc(at_ms(last + retention), GcMode::Run).unwrap();
    assert!(r.expired.is_empty(), "{r:?}");
    assert_eq!(s.get(&format!("/try/{try_key}")).status(), 200);

    let r = s
        .store()
        .gc(at_ms(last + retention + 1), GcMode::Run)
        .unwrap();
    assert_eq!(r.expired, [("try".to_string(), try_key.clone())]);
    assert_eq!(s.get(&format!("/try/{try_key}")).status(), 404);
    assert!(!s.data_dir().join("try").join(&try_key).exists());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM lookup WHERE namespace = 'try'"),
        0
    );
    // Release files have no retention by default.
    let r = s
        .store()
        .gc(at_ms(last + 10 * retention), GcMode::Run)
        .unwrap();
    assert!(r.expired.is_empty());
    assert_eq!(s.get(&format!("/{rel_key}")).status(), 200);
}

#[test]
fn release_retention_is_optional() {
    let s = TestServer::with_config(|c| c.release_retention = "365d".into());
    let key = format!("r.pdb/{ID_B}/r.sym");
    s.upload_ok(zip_of(&[(&key, &sym("r.pdb", ID_B, ""))]));
    let last: i64 = s.one("SELECT last_uploaded_at FROM keys", &[]);
    let r = s
        .store()
        .gc(at_ms(last + 366 * 86_400_000), GcMode::Force)
        .unwrap();
    assert_eq!(r.expired.len(), 1);
}

#[test]
fn dry_run_reports_exactly_what_gc_then_removes() {
    crate::local_only!("orphans planted in objects/ and the layout tree");
    let s = TestServer::start();
    let try_key = format!("t.pdb/{ID_A}/t.sym");
    assert_eq!(
        s.upload_with(
            &s.token,
            zip_of(&[(&try_key, &sym("t.pdb", ID_A, ""))]),
            Some("1")
        )
        .status(),
        201
    );
    // What a crash leaves: an unreferenced blob, an entry the index does not name, a temp file.
    let orphan = b"orphaned content".to_vec();
    let hash = blake3::hash(&orphan).to_hex().to_string();
    let blob = s
        .data_dir()
        .join(format!("objects/{}/{}/{hash}", &hash[..2], &hash[2..4]));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &orphan).unwrap();
    make_old(&blob);
    let entry = s.data_dir().join(format!("release/o.pdb/{ID_B}/o.sym"));
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::fs::write(&entry, b"x").unwrap();
    make_old(&entry);
    let temp = s.data_dir().join("tmp/blob-leftover");
    std::fs::write(&temp, b"partial").unwrap();
    make_old(&temp);

    let before_blobs = s.blobs();
    let later = SystemTime::now() + Duration::from_secs(29 * 86_400);
    let out = symdepot(&s.data_dir())
        .args(["gc", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("would remove unreferenced blob") && text.contains(&hash),
        "{text}"
    );
    assert!(text.contains("would remove unindexed entry"), "{text}");
    assert!(text.contains("would remove temp file"), "{text}");
    assert!(blob.exists() && entry.exists() && temp.exists());
    let dry = s.store().gc(later, GcMode::DryRun).unwrap();
    assert_eq!(dry.expired.len(), 1);
    assert_eq!(s.blobs(), before_blobs, "a dry run changes nothing");
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 1);

    // Most of this small store is garbage: forced past gc_max_delete_fraction.
    let real = s.store().gc(later, GcMode::Force).unwrap();
    assert_eq!(real.expired, dry.expired);
    assert_eq!(real.entries, dry.entries);
    assert_eq!(real.temp, dry.temp);
    // The expired key's blob is unreferenced now too, but young: it goes at a later run.
    assert!(!blob.exists() && !entry.exists() && !temp.exists());
    assert!(
        !s.data_dir().join(format!("release/o.pdb/{ID_B}")).exists(),
        "empty folders are pruned"
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);
}

#[test]
fn gc_never_removes_a_blob_an_upload_is_about_to_link() {
    crate::local_only!("a blob file's time refreshed by a re-upload (an object's time cannot be)");
    let s = TestServer::start();
    let store = s.store();
    let data = sym("a.pdb", ID_A, "");
    let hash = blake3::hash(&data).to_hex().to_string();
    // An upload has written its blob and not yet committed the key.
    let enc = store.encoding_for("a.sym");
    let stored_size = store.ensure_blob(&hash, enc, &mut &data[..]).unwrap();
    let r = store.gc(SystemTime::now(), GcMode::Run).unwrap();
    assert!(r.blobs.is_empty(), "{r:?}");
    // The upload commits: the key links the blob that is still there.
    let id = symdepot::identity::identify_bytes(&data, "a.sym");
    let key = format!("a.pdb/{ID_A}/a.sym");
    let new = symdepot::store::NewKey {
        namespace: symdepot::store::Namespace::Release,
        key: &key,
        hash: &hash,
        encoding: enc,
        size: data.len() as u64,
        stored_size,
        identity: &id,
    };
    assert!(store.commit_key(None, &new).unwrap().is_some());
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        data.as_slice()
    );

    // An upload that finds its content already stored refreshes the blob too.
    let path = s
        .data_dir()
        .join(format!("objects/{}/{}/{hash}.gz", &hash[..2], &hash[2..4]));
    assert!(path.exists() && enc == symdepot::store::Encoding::Gzip);
    make_old(&path);
    store
        .delete_keys(
            &symdepot::store::gc::DeleteTarget::Key {
                namespace: symdepot::store::Namespace::Release,
                key: key.clone(),
            },
            "test",
        )
        .unwrap();
    store.ensure_blob(&hash, enc, &mut &data[..]).unwrap();
    assert!(
        store
            .gc(SystemTime::now(), GcMode::Run)
            .unwrap()
            .blobs
            .is_empty()
    );
    // Once old and unreferenced it goes.
    make_old(&path);
    let r = store.gc(SystemTime::now(), GcMode::Force).unwrap();
    assert_eq!(r.blobs, std::slice::from_ref(&path));
    assert!(!path.exists());
}

#[test]
fn verify_finds_a_flipped_byte_and_a_missing_link_and_repair_relinks() {
    crate::local_only!("the layout tree's links");
    let s = TestServer::start();
    let a = format!("a.pdb/{ID_A}/a.sym");
    let b = format!("b.so/{ID_B}/b.so");
    s.upload_ok(zip_of(&[
        (&a, &sym("a.pdb", ID_A, "")),
        (&b, b"binary content of b".as_slice()),
    ]));
    // Leftovers of an interrupted upload are not damage.
    std::fs::write(s.data_dir().join("tmp/upload-leftover"), b"x").unwrap();
    let clean = symdepot(&s.data_dir()).arg("verify").output().unwrap();
    let text = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert!(clean.status.success(), "{text}");
    assert!(
        text.contains("2 keys, 2 blobs checked; 0 damaged") && text.contains("1 temp files"),
        "{text}"
    );

    // A missing layout entry.
    std::fs::remove_file(s.data_dir().join("release").join(&a)).unwrap();
    // A flipped byte in a blob stored as it is.
    let hash = blake3::hash(b"binary content of b").to_hex().to_string();
    let blob = s
        .data_dir()
        .join(format!("objects/{}/{}/{hash}", &hash[..2], &hash[2..4]));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&blob, &bytes).unwrap();

    let out = symdepot(&s.data_dir()).arg("verify").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("DAMAGED release {a}: layout entry is missing")),
        "{text}"
    );
    assert!(
        text.contains(&format!("DAMAGED release {b}: blob {hash} does not hash")),
        "{text}"
    );

    let out = symdepot(&s.data_dir())
        .args(["verify", "--repair"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("(repaired)") && text.contains("quarantined"),
        "{text}"
    );
    assert!(s.data_dir().join("release").join(&a).exists());
    assert!(s.data_dir().join("quarantine").join(&hash).exists());
    // The corrupt blob is gone from service; the key stays damaged until re-uploaded.
    assert_eq!(out.status.code(), Some(1));
    s.upload_ok(zip_of(&[(&b, b"binary content of b".as_slice())]));
    let out = symdepot(&s.data_dir()).arg("verify").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn verify_quick_checks_presence_and_sizes_without_reading() {
    crate::local_only!("the layout tree's links");
    let s = TestServer::start();
    let a = format!("a.pdb/{ID_A}/a.sym");
    let b = format!("b.so/{ID_B}/b.so");
    s.upload_ok(zip_of(&[
        (&a, &sym("a.pdb", ID_A, "")),
        (&b, b"binary content of b".as_slice()),
    ]));
    let hash = blake3::hash(b"binary content of b").to_hex().to_string();
    let blob = s
        .data_dir()
        .join(format!("objects/{}/{}/{hash}", &hash[..2], &hash[2..4]));
    // A flipped byte keeps the size: only a full verify reads it.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&blob, &bytes).unwrap();
    let quick = |args: &[&str]| {
        let out = symdepot(&s.data_dir()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = quick(&["verify", "--quick"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("2 keys, 2 blobs checked; 0 damaged"),
        "{text}"
    );
    let (code, text) = quick(&["verify"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("does not hash to its name"), "{text}");

    // A blob of another size, and a missing entry, are found without reading.
    bytes.push(b'!');
    std::fs::write(&blob, &bytes).unwrap();
    std::fs::remove_file(s.data_dir().join("release").join(&a)).unwrap();
    let (code, text) = quick(&["verify", "--quick"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "DAMAGED release {b}: blob {hash} is 20 bytes as stored; the index says 19"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("DAMAGED release {a}: layout entry is missing")),
        "{text}"
    );
    assert!(text.contains("2 damaged (2 unrepaired)"), "{text}");
}

#[test]
fn verify_pages_through_more_keys_of_one_blob_than_a_page_holds() {
    crate::local_only!("the layout tree's links");
    let s = TestServer::start();
    // 5 003 keys of the same bytes (one blob, over a page of 5 000) and one more blob.
    let keys: Vec<String> = (0..5003)
        .map(|i| format!("m{i}.so/{:032X}1/m{i}.so", i + 1))
        .collect();
    let mut members: Vec<(&str, &[u8])> = keys
        .iter()
        .map(|k| (k.as_str(), b"same bytes".as_slice()))
        .collect();
    let other = format!("b.so/{ID_B}/b.so");
    members.push((&other, b"other bytes"));
    s.upload_ok(zip_of(&members));
    // One key of the shared blob: its keys are read over two pages.
    std::fs::remove_file(s.data_dir().join("release").join(&keys[5002])).unwrap();
    for args in [&["verify", "--quick"][..], &["verify"][..]] {
        let out = symdepot(&s.data_dir()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("5004 keys, 2 blobs checked; 1 damaged (1 unrepaired)"),
            "{text}"
        );
        let damaged: Vec<&str> = text.lines().filter(|l| l.starts_with("DAMAGED")).collect();
        assert_eq!(
            damaged,
            [format!(
                "DAMAGED release {}: layout entry is missing",
                keys[5002]
            )]
        );
    }
}

#[test]
fn reindex_after_deleting_the_database_brings_every_route_back() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let data = tempfile::tempdir().unwrap();
    let xul = sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\n");
    let routes = [
        format!("/xul.pdb/{ID_A}/xul.sym"),
        "/xul.dll/5CF0A9B1c5f2000/xul.sym".to_string(),
        format!("/buildid/{}/debuginfo", f.build_id),
        format!("/buildid/{}/executable", f.build_id),
        format!("/_.debug/elf-buildid-sym-{}/_.debug", f.build_id),
        format!("/try/t.pdb/{ID_B}/t.sym"),
    ];
    let before = {
        let s = TestServer::with_config(|c| c.data_dir = data.path().to_path_buf());
        s.upload_ok(zip_of(&[
            (&format!("xul.pdb/{ID_A}/xul.sym"), &xul),
            (
                &format!("victim/{}/victim", f.debug_id),
                &std::fs::read(&f.stripped).unwrap(),
            ),
            (
                &format!("victim/{}/victim.debug", f.debug_id),
                &std::fs::read(&f.debug).unwrap(),
            ),
        ]));
        assert_eq!(
            s.upload_with(
                &s.token,
                zip_of(&[(&format!("t.pdb/{ID_B}/t.sym"), &sym("t.pdb", ID_B, ""))]),
                Some("1")
            )
            .status(),
            201
        );
        s.answers(&routes)
    };
    assert!(
        before.iter().all(|(st, _)| *st == 200 || *st == 302),
        "{:?}",
        before.iter().map(|b| b.0).collect::<Vec<_>>()
    );
    for name in ["index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.path().join(name));
    }
    let out = symdepot(data.path()).args(reindex_args()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reindexed 4 keys, skipped 0"));
    let s = TestServer::with_config(|c| c.data_dir = data.path().to_path_buf());
    assert_eq!(s.answers(&routes), before);
}

#[test]
fn reindex_leaves_no_temp_files_and_every_key_is_still_served() {
    let data = tempfile::tempdir().unwrap();
    let files = members(0, 6);
    {
        let s = TestServer::with_config(|c| c.data_dir = data.path().to_path_buf());
        upload_members(&s, &files);
    }
    let out = symdepot(data.path()).args(reindex_args()).output().unwrap();
    assert!(succeeded(out, "reindex").contains("reindexed 6 keys, skipped 0"));
    let left = temp_files_under(&data.path().join("tmp"));
    assert!(left.is_empty(), "left in tmp/: {left:?}");
    let s = TestServer::with_config(|c| c.data_dir = data.path().to_path_buf());
    assert_served(&s.addr.to_string(), &files);
}

#[test]
fn reindex_in_a_live_process_leaves_nothing_in_its_temp_folder() {
    crate::local_only!("reindex from the layout tree");
    let s = TestServer::start();
    let files = members(0, 6);
    upload_members(&s, &files);
    // A copy in place of a link (as where the filesystem refused one) is linked again.
    let copied = s.entry("release", &files[0].0).unwrap();
    let bytes = std::fs::read(&copied).unwrap();
    std::fs::remove_file(&copied).unwrap();
    std::fs::write(&copied, bytes).unwrap();
    let (n, skipped) = s.store().reindex(&mut symdepot::store::Unwatched).unwrap();
    assert_eq!((n, skipped.len()), (6, 0));
    assert!(
        s.tmp_files().is_empty(),
        "left in tmp/: {:?}",
        s.tmp_files()
    );
    let links = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&copied).unwrap());
    assert_eq!(links, 2, "the copy is a link to its blob again");
    assert_served(&s.addr.to_string(), &files);
}

#[test]
fn an_entry_that_cannot_be_placed_leaves_no_temp_link() {
    crate::local_only!("a folder planted in the layout tree");
    let s = TestServer::start();
    let (key, bytes) = good_member();
    let planted = s.data_dir().join("release").join(&key);
    std::fs::create_dir_all(planted.join("in-the-way")).unwrap();
    assert_eq!(s.upload(zip_of(&[(&key, &bytes)])).status(), 500);
    assert!(
        s.tmp_files().is_empty(),
        "left in tmp/: {:?}",
        s.tmp_files()
    );
}

#[test]
fn delete_removes_a_key_records_it_and_gc_takes_the_blob() {
    let s = TestServer::start();
    let key = format!("leak.pdb/{ID_A}/leak.sym");
    let other = format!("keep.pdb/{ID_B}/keep.sym");
    s.upload_ok(zip_of(&[
        (&key, &sym("leak.pdb", ID_A, "")),
        (&other, &sym("keep.pdb", ID_B, "")),
    ]));
    let out = symdepot(&s.data_dir())
        .args(["delete", &key.to_lowercase()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("deleted {key}")));
    assert_eq!(s.get(&format!("/{key}")).status(), 404);
    assert!(!s.data_dir().join("release").join(&key).exists());
    assert_eq!(s.get(&format!("/{other}")).status(), 200);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM upload_members WHERE outcome = 'deleted'"),
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'cli' AND status = 'deleted'"),
        1
    );
    assert_eq!(s.blobs().len(), 2, "the blob stays until GC");
    let r = s.store().gc(s.after_grace(), GcMode::Run).unwrap();
    assert_eq!(r.blobs.len(), 1);
    assert_eq!(s.get(&format!("/{other}")).status(), 200);

    // A whole upload.
    let up = s.upload_ok(zip_of(&[(
        &format!("u.pdb/{ID_A}/u.sym"),
        &sym("u.pdb", ID_A, ""),
    )]));
    let id = up["id"].as_i64().unwrap().to_string();
    let out = symdepot(&s.data_dir())
        .args(["delete", "--upload", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(s.get(&format!("/u.pdb/{ID_A}/u.sym")).status(), 404);
    let out = symdepot(&s.data_dir())
        .args(["delete", "no/SUCH/key"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_readme_backup_and_restore_steps_work_while_the_daemon_runs() {
    crate::sqlite_only!("the backup copies the index file");
    crate::local_only!("the backup copies the data dir's blobs");
    let s = TestServer::start();
    let key = format!("b.pdb/{ID_A}/b.sym");
    let data = sym("b.pdb", ID_A, "");
    s.upload_ok(zip_of(&[
        (&key, &data),
        (&format!("b.pdb/{ID_A}/copy.bin"), &data),
    ]));
    let backup = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backup");
    let out = Command::new(script)
        .arg(s.data_dir())
        .arg(backup.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Hard links survive: the layout entries are still links to the blobs.
    use std::os::unix::fs::MetadataExt;
    let entry = std::fs::metadata(backup.path().join("release").join(&key)).unwrap();
    assert!(entry.nlink() >= 2);

    // Restore: a new daemon on the restored copy serves the same bytes, and verify is clean.
    let restored = tempfile::tempdir().unwrap();
    let out = Command::new("rsync")
        .arg("-aH")
        .arg(format!("{}/", backup.path().display()))
        .arg(format!("{}/", restored.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = TestServer::with_config(|c| c.data_dir = restored.path().to_path_buf());
    assert_eq!(
        r.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        data.as_slice()
    );
    assert_eq!(r.count("SELECT COUNT(*) FROM uploads"), 1);
    let out = symdepot(restored.path()).arg("verify").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn commands_that_read_a_store_refuse_a_data_dir_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("symdepot-dta");
    let out_dir = dir.path().join("out").display().to_string();
    for args in [
        &["token", "list"][..],
        &["token", "revoke", "1"],
        &["verify"],
        &["gc", "--dry-run"],
        &["export", "--plain", out_dir.as_str()],
    ] {
        let out = symdepot(&typo).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the data directory {} does not exist",
                typo.display()
            )),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} made the data directory");
    }
    // Making a token is how a new store starts (before its first serve).
    assert!(!create_token_cli(&typo, "upload").is_empty());
    assert!(typo.is_dir());
}
