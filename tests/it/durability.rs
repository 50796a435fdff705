//! Power-loss ordering, read off the real system calls: `strace` records the
//! `fsync`s and renames of an ingest, and each member must be made durable in
//! order — blob fsynced, then renamed into `objects/`, its directory fsynced,
//! then the layout entry renamed into place and its directory fsynced, and
//! only then the index's WAL synced with the row.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The index of the first line at or after `from` that holds every needle.
fn find(lines: &[String], from: usize, needles: &[&str], what: &str) -> usize {
    lines[from..]
        .iter()
        .position(|l| needles.iter().all(|n| l.contains(n)))
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no {what} after line {from}:\n{}", lines.join("\n")))
}

/// The `nth` quoted string of a line (strace quotes paths).
fn quoted(line: &str, nth: usize) -> String {
    line.split('"').nth(2 * nth + 1).unwrap_or("").to_string()
}

#[test]
fn a_member_is_synced_blob_then_entry_then_row() {
    let found = Command::new("sh")
        .args(["-c", "command -v strace"])
        .status()
        .unwrap();
    assert!(
        found.success(),
        "strace is not installed: run scripts/install-test-tools"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.sym");
    std::fs::write(&file, sym("a.so", ID_A, "FUNC 0 1 0 f\n")).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("trace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-y", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat",
        ])
        .arg(env!("CARGO_BIN_EXE_symdepot"))
        .arg("--data-dir")
        .arg(&data)
        .arg("ingest")
        .arg(&file)
        .env("SYMDEPOT_INGEST_WORKERS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let data = data.to_string_lossy().into_owned();
    let objects = format!("{data}/objects/");
    // Placed by identity, under the name Breakpad clients ask for.
    let entry = format!("{data}/release/a.so/{ID_A}/a.so.sym");

    let blob_rename = find(
        &lines,
        0,
        &["rename", &objects],
        "rename of the blob into objects/",
    );
    let temp = quoted(&lines[blob_rename], 0);
    let blob = quoted(&lines[blob_rename], 1);
    assert!(
        temp.contains("/tmp/"),
        "the blob is written in tmp/ first: {temp}"
    );
    let blob_sync = find(
        &lines,
        0,
        &["fsync(", &format!("<{temp}>")],
        "fsync of the temp blob",
    );
    let blob_dir = Path::new(&blob)
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let blob_dir_sync = find(
        &lines,
        blob_rename,
        &["fsync(", &format!("<{blob_dir}>")],
        "fsync of the blob's directory",
    );
    let entry_rename = find(
        &lines,
        0,
        &["rename", &format!("\"{entry}\"")],
        "rename of the layout entry",
    );
    let entry_dir = Path::new(&entry)
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let entry_dir_sync = find(
        &lines,
        entry_rename,
        &["fsync(", &format!("<{entry_dir}>")],
        "fsync of the entry's directory",
    );
    let row_sync = find(
        &lines,
        entry_dir_sync,
        &["sync(", "index.sqlite3-wal>"],
        "sync of the index WAL",
    );

    assert!(
        blob_sync < blob_rename,
        "the blob is fsynced before it is renamed into place"
    );
    assert!(
        blob_rename < blob_dir_sync && blob_dir_sync < entry_rename,
        "the blob's directory is synced before the entry links it"
    );
    assert!(
        entry_rename < entry_dir_sync && entry_dir_sync < row_sync,
        "the entry is durable before the row is committed"
    );
}
