//! `symdepot upload`, against the real server and against a test double that
//! answers 429 and 503 before accepting (a stand-in for a busy Tecken).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::*;

fn upload_cmd(path: &std::path::Path, url: &str, token: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_symdepot"));
    c.arg("upload")
        .arg(path)
        .args(["--url", url, "--token", token]);
    c
}

#[test]
fn a_directory_is_zipped_split_and_uploaded() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for i in 0..3 {
        let m = format!("m{i}.pdb");
        let key = format!("{m}/{ID_A}/m{i}.sym");
        std::fs::create_dir_all(dir.path().join(format!("{m}/{ID_A}"))).unwrap();
        std::fs::write(dir.path().join(&key), sym(&m, ID_A, "")).unwrap();
        keys.push(key);
    }
    let out = upload_cmd(dir.path(), &s.url(""), &s.token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "1");
    for k in &keys {
        assert_eq!(s.get(&format!("/{k}")).status(), 200);
    }
    // Above --max-size the payload is split: one zip per file here.
    let out = upload_cmd(dir.path(), &s.url("/upload/"), &s.token)
        .args(["--max-size", "50", "--try"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'try'"),
        3
    );
    // A refusal is not retried and fails the command.
    let out = upload_cmd(dir.path(), &s.url(""), "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
}

/// Reads one HTTP request (headers and a Content-Length or chunked body).
fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> Option<()> {
    let mut len = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if line == "\r\n" {
            break;
        }
    }
    if let Some(n) = len {
        let mut body = vec![0u8; n];
        reader.read_exact(&mut body).ok()?;
    } else if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
        }
    }
    Some(())
}

#[test]
fn the_client_retries_after_429_and_503() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let answers = [
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{\"upload\":{\"id\":42}}\n",
        ];
        for (conn, answer) in listener.incoming().flatten().zip(answers) {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if read_request(&mut reader).is_some() {
                log.lock().unwrap().push(answer[9..12].to_string());
            }
            let mut conn = conn;
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("symbols.zip");
    std::fs::write(
        &zip,
        zip_of(&[(&format!("a.pdb/{ID_A}/a.sym"), &sym("a.pdb", ID_A, ""))]),
    )
    .unwrap();
    let out = upload_cmd(&zip, &format!("http://127.0.0.1:{port}"), "token")
        .args(["--attempts", "3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "42");
    assert_eq!(*seen.lock().unwrap(), ["429", "503", "201"]);
    assert!(stderr.contains("429; retrying in 1.0s"), "{stderr}");
    assert!(stderr.contains("503; retrying in 2.0s"), "{stderr}");
}

/// Runs the upload command; its success, stdout and stderr.
fn run_upload(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_client_says_how_many_keys_were_new_replaced_and_skipped() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let m = format!("m{i}.pdb");
        std::fs::create_dir_all(dir.path().join(format!("{m}/{ID_A}"))).unwrap();
        std::fs::write(
            dir.path().join(format!("{m}/{ID_A}/m{i}.sym")),
            sym(&m, ID_A, ""),
        )
        .unwrap();
    }
    let (ok, _, err) = run_upload(&mut upload_cmd(dir.path(), &s.url(""), &s.token));
    assert!(ok, "{err}");
    assert!(
        err.contains("3 new, 0 replaced, 0 skipped (unchanged), 0 ignored"),
        "{err}"
    );
    let changed = sym("m0.pdb", ID_A, "FILE 0 changed.c\n");
    std::fs::write(dir.path().join(format!("m0.pdb/{ID_A}/m0.sym")), changed).unwrap();
    let (ok, _, err) = run_upload(&mut upload_cmd(dir.path(), &s.url(""), &s.token));
    assert!(ok, "{err}");
    assert!(
        err.contains("0 new, 1 replaced, 2 skipped (unchanged), 0 ignored"),
        "{err}"
    );
}

#[test]
fn the_client_stops_at_once_on_a_url_without_scheme_or_a_missing_path() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bare = s.url("").trim_start_matches("http://").to_string();
    let (ok, _, err) = run_upload(&mut upload_cmd(dir.path(), &bare, &s.token));
    assert!(!ok);
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    assert!(
        err.contains(&format!("did you mean http://{bare}")),
        "{err}"
    );
    assert!(!err.contains("retrying"), "nothing was sent: {err}");
    let missing = dir.path().join("no-such-dir");
    let (ok, _, err) = run_upload(&mut upload_cmd(&missing, &s.url(""), &s.token));
    assert!(!ok);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(s.count("SELECT COUNT(*) FROM uploads"), 0);
}

#[test]
fn a_layout_refusal_suggests_auto() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m0.sym"), sym("m0.pdb", ID_A, "")).unwrap();
    let (ok, _, err) = run_upload(&mut upload_cmd(dir.path(), &s.url(""), &s.token));
    assert!(!ok);
    assert!(err.contains("400") && err.contains("pass --auto"), "{err}");
    let (ok, _, err) = run_upload(upload_cmd(dir.path(), &s.url(""), &s.token).arg("--auto"));
    assert!(ok, "{err}");
    assert!(err.contains("1 new"), "{err}");
}

#[test]
fn a_refusal_is_shown_without_the_server_s_terminal_escapes() {
    // A test double: a server that refuses with a body full of escapes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        read_request(&mut reader);
        let body = "\x1b[2J\x1b]0;owned\x07refused";
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(format!("m.pdb/{ID_A}"))).unwrap();
    std::fs::write(
        dir.path().join(format!("m.pdb/{ID_A}/m.sym")),
        sym("m.pdb", ID_A, ""),
    )
    .unwrap();
    let (ok, _, err) = run_upload(&mut upload_cmd(dir.path(), &format!("http://{addr}"), "t"));
    assert!(!ok);
    assert!(err.contains("(400): ?[2J?]0;owned?refused"), "{err:?}");
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
}
