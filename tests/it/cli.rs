//! The command line: tokens, and the daemon as a process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn symdepot(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_symdepot"));
    c.arg("--data-dir")
        .arg(data_dir)
        .env_remove("SYMDEPOT_LISTEN");
    c
}

#[test]
fn token_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let out = symdepot(dir.path())
        .args([
            "token",
            "create",
            "--permission",
            "upload",
            "--permission",
            "upload_try",
        ])
        .args(["--user", "ci", "--expires", "30d", "--note", "builders"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.lines().last().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    let out = symdepot(dir.path())
        .args(["token", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("ci") && list.contains("upload,upload_try") && list.contains("builders"),
        "{list}"
    );
    assert!(!list.contains(secret), "secrets are never listed");

    let out = symdepot(dir.path())
        .args(["token", "revoke", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(
        symdepot(dir.path())
            .args(["token", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(list.contains("revoked"), "{list}");

    let out = symdepot(dir.path())
        .args(["token", "revoke", "99"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = symdepot(dir.path())
        .args(["token", "create", "--permission", "fly"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown permission"));
}

#[test]
fn serve_logs_its_bound_address_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = symdepot(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SYMDEPOT_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the daemon logs before it exits")
            .unwrap();
        if let Some(pos) = line.find("listening on http://") {
            break line[pos + "listening on http://".len()..]
                .trim()
                .to_string();
        }
    };
    let resp = reqwest::blocking::get(format!("http://{addr}/__lbheartbeat__")).unwrap();
    assert_eq!(resp.status(), 200);
    assert!(dir.path().join("index.sqlite3").exists());

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn config_file_env_and_flags_reach_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("symdepot.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:1\"\nno_such_setting = 1\n").unwrap();
    let out = symdepot(dir.path())
        .arg("--config")
        .arg(&cfg)
        .args(["token", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_setting"));
}
