//! The drop folder: files written (slowly, or badly) into the inbox.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until `path` exists (the watcher moves files within seconds).
fn wait_for(path: &Path) {
    let deadline = Instant::now() + crate::support::PATIENCE;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_slowly_written_zip_is_ingested_once_complete() {
    let inbox = tempfile::tempdir().unwrap();
    let s = TestServer::with_config(|c| c.inbox = inbox.path().display().to_string());
    let key = format!("slow.pdb/{ID_A}/slow.sym");
    let zip = zip_of(&[(
        &key,
        &sym("slow.pdb", ID_A, &"INFO GENERATOR x\n".repeat(200)),
    )]);
    let path = inbox.path().join("slow.zip");
    let mut f = std::fs::File::create(&path).unwrap();
    // A copy in progress: a third, a pause longer than the settle time, the rest.
    let third = zip.len() / 3;
    for chunk in [&zip[..third], &zip[third..2 * third], &zip[2 * third..]] {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1300));
        assert!(
            !inbox.path().join("failed/slow.zip").exists(),
            "a file being written was taken: {:?}",
            std::fs::read_to_string(inbox.path().join("failed/slow.zip.error.txt")).ok()
        );
    }
    drop(f);
    wait_for(&inbox.path().join("done/slow.zip"));
    assert!(!path.exists());
    assert_eq!(s.get(&format!("/{key}")).status(), 200);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'inbox' AND status = 'complete'"),
        1
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'inbox'"),
        1
    );
}

#[test]
fn a_bad_zip_goes_to_failed_with_the_reason() {
    let inbox = tempfile::tempdir().unwrap();
    let s = TestServer::with_config(|c| c.inbox = inbox.path().display().to_string());
    let bad = zip_of(&[(&format!("a.pdb/{ID_A}/a.sym"), &sym("a.pdb", ID_B, ""))]);
    std::fs::write(inbox.path().join(".bad.zip.part"), &bad).unwrap();
    std::fs::rename(
        inbox.path().join(".bad.zip.part"),
        inbox.path().join("bad.zip"),
    )
    .unwrap();
    wait_for(&inbox.path().join("failed/bad.zip.error.txt"));
    assert!(inbox.path().join("failed/bad.zip").exists());
    let why = std::fs::read_to_string(inbox.path().join("failed/bad.zip.error.txt")).unwrap();
    assert!(why.contains("debug id"), "{why}");
    assert!(s.blobs().is_empty());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'inbox' AND status = 'failed'"),
        1
    );
    // Names being copied are left alone.
    std::fs::write(inbox.path().join("copying.zip.tmp"), b"partial").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(inbox.path().join("copying.zip.tmp").exists());
}

#[test]
fn files_present_at_start_and_try_files_are_processed() {
    let inbox = tempfile::tempdir().unwrap();
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    std::fs::create_dir_all(inbox.path().join("try")).unwrap();
    std::fs::copy(&f.debug, inbox.path().join("victim.debug")).unwrap();
    let try_key = format!("t.pdb/{ID_B}/t.sym");
    std::fs::write(
        inbox.path().join("try/t.zip"),
        zip_of(&[(&try_key, &sym("t.pdb", ID_B, ""))]),
    )
    .unwrap();
    let s = TestServer::with_config(|c| c.inbox = inbox.path().display().to_string());
    wait_for(&inbox.path().join("done/victim.debug"));
    wait_for(&inbox.path().join("done/t.zip"));
    assert_eq!(
        s.get(&format!("/buildid/{}/debuginfo", f.build_id))
            .status(),
        200
    );
    assert_eq!(s.get(&format!("/{try_key}")).status(), 404);
    assert_eq!(s.get(&format!("/try/{try_key}")).status(), 200);
}
