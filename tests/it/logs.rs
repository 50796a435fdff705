//! Log lines as operators collect them: `log_format = "json"` and the
//! request log (method, path, status, bytes, duration, the token's user,
//! never the secret).

use crate::support::{
    ID_A, create_token_cli, post, sigterm, spawn_keeping_log, sym, symdepot, wait_exit, zip_of,
};

/// Runs a daemon with `format`, uploads with a token, downloads and misses
/// once each (a query string with a secret-looking value on the miss), stops
/// it, and returns every line it wrote and the token's secret.
fn session(format: &str) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = create_token_cli(dir.path(), "upload");
    let mut serve = symdepot(dir.path());
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SYMDEPOT_LOG_FORMAT", format);
    let (mut child, addr, log) = spawn_keeping_log(serve, true);
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let data = sym("xul.pdb", ID_A, "");
    assert_eq!(post(&addr, &secret, zip_of(&[(&key, &data)])), Some(201));
    let got = crate::support::http_get(format!("http://{addr}/{key}")).unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), data.as_slice());
    let miss = crate::support::http_get(format!("http://{addr}/a.pdb/{ID_A}/a.sym?k=hush"));
    assert_eq!(miss.unwrap().status(), 404);
    // A path with a C1 control (NEL) and a forged field, sent raw.
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut raw,
        b"GET /x\xc2\x85status=200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut raw, &mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 404"), "{answer:?}");
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
    // The pipe's reader ends with the daemon's last line.
    crate::support::wait_until("the log's end", || {
        log.lock().unwrap().iter().any(|l| l.contains("stopped"))
    });
    let lines = log.lock().unwrap().clone();
    (lines, secret)
}

#[test]
fn json_logs_are_one_object_per_line_and_requests_carry_user_status_bytes_and_duration() {
    let (lines, secret) = session("json");
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    for o in &objects {
        assert!(o["timestamp"].is_string() && o["level"].is_string(), "{o}");
    }
    let requests: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["target"] == "symdepot::request")
        .collect();
    let upload = requests.iter().find(|o| o["path"] == "/upload/").unwrap();
    assert_eq!(upload["method"], "POST");
    assert_eq!(upload["status"], 201);
    assert_eq!(upload["user"], "admin", "the token's user, not its secret");
    assert!(upload["bytes"].as_u64().unwrap() > 0);
    assert!(upload["duration_ms"].as_f64().unwrap() > 0.0);
    let download = requests.iter().find(|o| o["status"] == 200).unwrap();
    assert_eq!(download["method"], "GET");
    let data_len = sym("xul.pdb", ID_A, "").len() as u64;
    assert_eq!(download["bytes"].as_u64(), Some(data_len), "bytes sent");
    assert_eq!(download["user"], "-", "no token presented");
    let miss = requests.iter().find(|o| o["status"] == 404).unwrap();
    assert_eq!(miss["path"], format!("/a.pdb/{ID_A}/a.sym"), "no query");
    let all = lines.join("\n");
    assert!(!all.contains(&secret), "a secret in the log");
    assert!(!all.contains("hush"), "a query string in the log");
    let hostile = requests.iter().find(|o| o["path"] == "/x%C2%85status=200");
    assert!(hostile.is_some(), "the raw path's line, encoded: {all}");
    assert!(!all.contains('\u{85}'), "a C1 control in the log");
}

#[test]
fn text_logs_are_the_default_and_carry_the_same_request_fields() {
    let (lines, secret) = session("text");
    let upload = lines
        .iter()
        .find(|l| l.contains("symdepot::request") && l.contains("POST"))
        .expect("a line for the upload");
    for field in [
        "path=/upload/",
        "status=201",
        "user=\"admin\"",
        "bytes=",
        "duration_ms=",
    ] {
        assert!(upload.contains(field), "{field} in {upload}");
    }
    assert!(!lines.join("\n").contains(&secret));
}

#[test]
fn an_unknown_log_format_stops_the_daemon_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = symdepot(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SYMDEPOT_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SYMDEPOT_LOG_FORMAT") || err.contains("log_format"),
        "{err}"
    );
}
