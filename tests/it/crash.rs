//! Crash safety: the real daemon is killed with SIGKILL at random points of
//! uploads, again and again, and restarted on the same data dir. Every member
//! of every upload that was answered 201 must come back byte for byte, no temp
//! file or orphan row may survive start-up, `verify` must be clean, and
//! re-sending an interrupted upload completes it.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// How many kills (bounded: each round is one daemon start and one upload).
const ROUNDS: usize = 12;

/// Start-up recovery left no temp file, and every index row names a blob that exists.
fn assert_recovered(dir: &Path) {
    let tmp: Vec<_> = temp_files_under(&dir.join("tmp"));
    assert!(tmp.is_empty(), "temp files survived start-up: {tmp:?}");
    let rows: Vec<(String, String)> = index_of(dir)
        .rows("SELECT blob, encoding FROM keys", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
        .collect();
    let stored: std::collections::HashSet<String> = stored_blobs(dir)
        .iter()
        .map(|p| {
            p.strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for (blob, encoding) in rows {
        let name = if encoding == "gzip" {
            format!("{blob}.gz")
        } else {
            blob.clone()
        };
        let name = format!("objects/{}/{}/{name}", &blob[0..2], &blob[2..4]);
        assert!(
            stored.contains(&name),
            "an index row names a missing blob: {name}"
        );
    }
}

#[test]
fn sigkill_at_random_points_of_uploads_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token_cli(dir.path(), "upload");
    let mut rng = Rng(0x5eed_cafe);
    let batches = batches(4, &mut rng);
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    let mut interrupted = 0;
    for round in 0..ROUNDS {
        let (mut child, addr) = spawn_daemon(dir.path());
        assert_recovered(dir.path());
        assert_served(&addr, &acknowledged);

        let batch = &batches[round % batches.len()];
        let (zip, url, tok) = (batch.zip.clone(), addr.clone(), token.clone());
        let upload = std::thread::spawn(move || post(&url, &tok, zip));
        // Even rounds: a kill at a random point of the upload. Odd rounds: a
        // kill right after the 201, before anything else can reach the disk.
        let status = if round % 2 == 1 {
            let status = upload.join().unwrap();
            child.kill().unwrap();
            status
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            child.kill().unwrap();
            upload.join().unwrap()
        };
        child.wait().unwrap();
        match status {
            Some(201) => acknowledged.extend(batch.members.iter().cloned()),
            Some(other) => panic!("round {round}: the upload answered {other}"),
            None => interrupted += 1,
        }
    }
    eprintln!(
        "{ROUNDS} kills: {interrupted} inside an upload, {} acknowledged members kept",
        acknowledged.len()
    );
    assert!(
        interrupted > 0,
        "no kill landed inside an upload: the delays are too long to test anything"
    );
    assert!(
        !acknowledged.is_empty(),
        "no upload finished before its kill: the delays are too short to test anything"
    );

    // After the last kill: everything acknowledged is there, and every batch re-sent completes.
    let (mut child, addr) = spawn_daemon(dir.path());
    assert_recovered(dir.path());
    assert_served(&addr, &acknowledged);
    for batch in &batches {
        assert_eq!(post(&addr, &token, batch.zip.clone()), Some(201));
        assert_served(&addr, &batch.members);
    }
    sigterm(&child);
    wait_exit(&mut child);
    let out = symdepot(dir.path()).arg("verify").output().unwrap();
    assert!(
        out.status.success(),
        "verify after {ROUNDS} kills: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
