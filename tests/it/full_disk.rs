//! A full disk: uploads into a small tmpfs answer 507 and leave the store
//! consistent, downloads keep working, and uploads succeed again once space
//! is freed. Needs root to mount the tmpfs (as CI has); skipped otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root).
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed as root");
        Some(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Writes zeros to `path` until the filesystem is full, then gives `leave` bytes back.
fn fill(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
            break;
        }
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
}

/// Bytes that do not compress, so the zip is as large as its content.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn a_full_disk_answers_507_keeps_serving_and_recovers_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let s = TestServer::with_config(|c| c.data_dir = fs.path.join("data"));
    let kept = format!("kept.pdb/{ID_A}/kept.sym");
    let kept_data = sym("kept.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&kept, &kept_data)]));

    let big = format!("big.bin/{ID_B}/big.bin");
    // ELF magic with an invalid class: a binary phase 1 spools, with no id to check.
    let mut big_data = noise(1 << 20, 7);
    big_data[..5].copy_from_slice(b"\x7fELF\0");
    // The disk fills at the upload record, while the body arrives, and while
    // phase 1 spools or phase 2 stores the 1 MiB member.
    for leave in [0, 256 << 10, 1536 << 10, 2560 << 10] {
        fill(&fs.path.join("filler"), leave);
        let resp = s.upload(zip_of(&[(&big, &big_data)]));
        let status = resp.status();
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(status, 507, "with {leave} bytes free: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("full"), "{body}");

        // Nothing partial: one key, one blob, no temp file; the kept file is still served.
        assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 1);
        assert_eq!(s.blobs().len(), 1, "{:?}", s.blobs());
        assert!(s.tmp_files().is_empty(), "tmp: {:?}", s.tmp_files());
        let resp = s.get(&format!("/{kept}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().unwrap().as_ref(), kept_data.as_slice());
        std::fs::remove_file(fs.path.join("filler")).unwrap();
    }

    s.upload_ok(zip_of(&[(&big, &big_data)]));
    let resp = s.get(&format!("/{big}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), big_data.as_slice());
    let out = symdepot(&s.data_dir()).arg("verify").output().unwrap();
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
