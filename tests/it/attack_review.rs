//! A second round of attacks on the hardened build: the drop folder's own
//! folders and notes, trees brought in by `import`, and what `export` writes
//! into.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::*;

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

#[test]
fn a_link_planted_as_a_failed_files_note_is_not_written_through() {
    let inbox = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("precious.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let s = TestServer::with_config(|c| c.inbox = inbox.path().display().to_string());
    // Whoever may write the drop folder plants the note of a file it is about to drop.
    symlink(&victim, inbox.path().join("failed/evil.bin.error.txt")).unwrap();
    std::fs::write(inbox.path().join("evil.bin"), b"not a debug file").unwrap();
    // The note is made (a new file), then written: wait for its text.
    wait_until("the failed file and its note", || {
        std::fs::metadata(inbox.path().join("failed/evil.bin.1.error.txt"))
            .is_ok_and(|m| m.is_file() && m.len() > 0)
            || std::fs::read(&victim).unwrap() != b"precious"
    });
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(inbox.path().join("failed/evil.bin.1").is_file());
    let note = std::fs::read_to_string(inbox.path().join("failed/evil.bin.1.error.txt")).unwrap();
    assert!(!note.trim().is_empty());
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'inbox' AND status = 'failed'"),
        1
    );
}

#[test]
fn a_link_put_in_place_of_the_failed_folder_moves_nothing_out_of_the_inbox() {
    let inbox = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let _s = TestServer::with_config(|c| c.inbox = inbox.path().display().to_string());
    // `failed/` swapped for a link to a folder the daemon may write (say ~/.ssh).
    std::fs::remove_dir(inbox.path().join("failed")).unwrap();
    symlink(outside.path(), inbox.path().join("failed")).unwrap();
    std::fs::write(
        inbox.path().join("authorized_keys"),
        b"ssh-ed25519 AAAA attacker",
    )
    .unwrap();
    let inside = inbox.path().join("failed/authorized_keys");
    wait_until("the failed file to be moved", || {
        outside.path().join("authorized_keys").exists()
            || (is_real_dir(&inbox.path().join("failed")) && inside.is_file())
    });
    assert!(
        !outside.path().join("authorized_keys").exists(),
        "an inbox file was moved through the link"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(is_real_dir(&inbox.path().join("failed")));
}

#[test]
fn import_does_not_follow_a_linked_buildid_folder() {
    let s = TestServer::start();
    let tree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // Files the operator can read but never meant to publish, reached by a link in the tree.
    let id_dir = outside
        .path()
        .join("0123456789abcdef0123456789abcdef01234567");
    std::fs::create_dir_all(&id_dir).unwrap();
    std::fs::write(id_dir.join("debuginfo"), sym("secret.so", ID_A, "")).unwrap();
    symlink(outside.path(), tree.path().join("buildid")).unwrap();
    let out = symdepot(&s.data_dir())
        .arg("import")
        .arg(tree.path())
        .output()
        .unwrap();
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys"),
        0,
        "a file behind a link was imported: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn export_does_not_write_through_a_linked_folder_in_its_target() {
    let s = TestServer::start();
    let (key, data) = good_member();
    assert_eq!(s.upload(zip_of(&[(&key, &data)])).status(), 201);
    let target = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // The target (a share, removable media) holds a link where the module folder goes.
    let module = key.split('/').next().unwrap();
    symlink(outside.path(), target.path().join(module)).unwrap();
    let out = symdepot(&s.data_dir())
        .arg("export")
        .arg("--plain")
        .arg(target.path())
        .output()
        .unwrap();
    assert_eq!(
        files_under(outside.path()),
        Vec::<std::path::PathBuf>::new(),
        "export wrote through the link: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_files_of_its_own_are_not_written_through_links_planted_in_the_target() {
    let s = TestServer::start();
    let (key, data) = good_member();
    assert_eq!(s.upload(zip_of(&[(&key, &data)])).status(), 201);
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("precious.txt");
    std::fs::write(&victim, b"precious").unwrap();
    for (layout, name) in [("--zip", "symbols-0001.zip"), ("--plain", "index2.txt")] {
        let target = tempfile::tempdir().unwrap();
        symlink(&victim, target.path().join(name)).unwrap();
        let mut cmd = symdepot(&s.data_dir());
        cmd.arg("export").arg(layout).arg(target.path());
        if layout == "--plain" {
            cmd.args(["--layout", "symstore", "--index2"]);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"precious",
            "{name} was written through a link: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success());
    }
}

#[test]
fn a_token_cannot_mint_a_token_that_outlives_it() {
    let s = TestServer::start();
    let hour = 3_600_000;
    let short = s.create_token_expiring(&["manage_tokens", "upload"], "contractor", Some(hour));
    let before = s.count("SELECT COUNT(*) FROM tokens");
    let post = |body: serde_json::Value| {
        s.client
            .post(s.url("/api/tokens/"))
            .header("Auth-Token", &short)
            .json(&body)
            .send()
            .unwrap()
    };
    // A token that expires within the hour asks for a century, and for a year.
    for days in [36_500, 365] {
        let resp = post(serde_json::json!({"permissions": ["manage_tokens"], "expires": days}));
        assert_eq!(resp.status(), 403, "{days} days");
        let error = resp.json::<serde_json::Value>().unwrap()["error"].to_string();
        assert!(error.contains("outlive"), "{error}");
    }
    assert_eq!(s.count("SELECT COUNT(*) FROM tokens"), before);
    // Without `expires`, the new token ends when its creator does.
    let resp = post(serde_json::json!({"permissions": ["upload"]}));
    assert_eq!(resp.status(), 201);
    let row = &s.rows(
        "SELECT (SELECT MAX(expires_at) FROM tokens WHERE id = (SELECT MAX(id) FROM tokens)), \
         (SELECT expires_at FROM tokens WHERE id = \
         (SELECT MIN(id) FROM tokens WHERE \"user\" = 'contractor'))",
        &[],
    )[0];
    let (child, parent): (i64, i64) = (row.get(0).unwrap(), row.get(1).unwrap());
    assert!(child <= parent, "child {child} outlives parent {parent}");
}

#[test]
fn a_link_in_place_of_the_inbox_try_folder_takes_nothing_from_where_it_points() {
    let inbox = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // Say the daemon's own config folder, or its data dir.
    std::fs::write(outside.path().join("secret.conf"), b"password = hunter2").unwrap();
    symlink(outside.path(), inbox.path().join("try")).unwrap();
    let _s = TestServer::with_config(|c| c.inbox = inbox.path().display().to_string());
    wait_until("the try folder to be taken or restored", || {
        !outside.path().join("secret.conf").exists() || is_real_dir(&inbox.path().join("try"))
    });
    assert!(
        outside.path().join("secret.conf").exists(),
        "a file was taken through the link"
    );
    assert!(!inbox.path().join("failed/secret.conf").exists());
}

/// Reads one HTTP request (headers, then a `Content-Length` body) and
/// returns its head.
fn read_request(stream: &mut std::net::TcpStream) -> String {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    let _ = std::io::copy(&mut reader.by_ref().take(len), &mut std::io::sink());
    head
}

#[test]
fn the_upload_client_sends_its_token_to_no_host_a_redirect_names() {
    use std::io::Write;
    use std::net::TcpListener;
    // A server (or whatever answers for it) that redirects the upload elsewhere.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", server.local_addr().unwrap());
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let there = format!("http://{}/collect", elsewhere.local_addr().unwrap());
    let (seen, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = elsewhere.accept().unwrap();
        seen.send(read_request(&mut s)).unwrap();
        let _ = write!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        read_request(&mut s);
        let _ = write!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: {there}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let (key, data) = good_member();
    let zip = dir.path().join("symbols.zip");
    std::fs::write(&zip, zip_of(&[(&key, &data)])).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"))
        .arg("upload")
        .arg(&zip)
        .args(["--url", &url, "--token", "s3cr3t-token", "--attempts", "1"])
        .output()
        .unwrap();
    // The client has exited: what it sent elsewhere was read before it was answered.
    let leaked = heard.try_recv().unwrap_or_default();
    assert!(
        !leaked.contains("s3cr3t-token"),
        "the token went to the redirect's host:\n{leaked}"
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("302"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_lost_index_is_refused_when_objects_is_a_link_to_another_disk() {
    crate::sqlite_only!("the index file deleted");
    crate::local_only!("objects/ is a folder of the data dir");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("m.sym"), sym("m.pdb", ID_A, "")).unwrap();
    let out = symdepot(&data).arg("ingest").arg(&files).output().unwrap();
    assert!(out.status.success());
    // The operator moved the blobs to a bigger disk and left a link; later the index is lost.
    let bigger = dir.path().join("bigger-disk-objects");
    std::fs::rename(data.join("objects"), &bigger).unwrap();
    symlink(&bigger, data.join("objects")).unwrap();
    for f in ["index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let blobs = files_under(&bigger);
    assert_eq!(blobs.len(), 1);
    for args in [&["verify"][..], &["gc", "--force"]] {
        let out = symdepot(&data).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran on a lost index: {err}");
        assert!(err.contains("symdepot reindex"), "{args:?}: {err}");
    }
    assert_eq!(files_under(&bigger), blobs);
}

#[test]
fn ingest_of_a_folder_follows_no_link_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = dir.path().join("files");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&files).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(files.join("m.sym"), sym("m.pdb", ID_A, "")).unwrap();
    std::fs::write(outside.join("secret.sym"), sym("secret.pdb", ID_A, "")).unwrap();
    symlink(outside.join("secret.sym"), files.join("linked.sym")).unwrap();
    symlink(&outside, files.join("linked-folder")).unwrap();
    // A loop, too.
    symlink(&files, files.join("again")).unwrap();
    let out = symdepot(&data).arg("ingest").arg(&files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<String> = index_of(&data)
        .rows("SELECT key FROM keys ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert_eq!(keys, vec![format!("m.pdb/{ID_A}/m.sym")]);
}
