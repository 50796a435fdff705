//! Limits and fairness on the connection level: a cap on connections, slow
//! clients cut off (request head and upload body), oversized heads refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

/// Connects with a read timeout, so no test can hang on a silent server.
fn connect(s: &TestServer) -> TcpStream {
    let c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
    c
}

/// Reads until the server closes (or the read times out), as text.
fn read_all(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get_raw(s: &TestServer, path: &str) -> String {
    let mut c = connect(s);
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_all(&mut c)
}

#[test]
fn a_connection_over_the_cap_gets_503_and_the_next_one_after_a_close_is_served() {
    let s = TestServer::with_config(|c| c.max_connections = 2);
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    s.upload_ok(zip_of(&[(&key, &sym("xul.pdb", ID_A, ""))]));
    let deadline = Instant::now() + crate::support::PATIENCE;
    // Two idle connections hold both slots (the client's pool may hold one already).
    let mut held = vec![connect(&s), connect(&s)];
    let refused = loop {
        let answer = get_raw(&s, &format!("/{key}"));
        if answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        assert!(Instant::now() < deadline, "never refused: {answer}");
        held.push(connect(&s));
    };
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    assert!(refused.contains("Too many connections"), "{refused}");

    // Once the held connections close, requests are served again.
    drop(held);
    let deadline = Instant::now() + crate::support::PATIENCE;
    loop {
        let answer = get_raw(&s, &format!("/{key}"));
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_request_head_sent_too_slowly_is_cut_off() {
    let s = TestServer::with_config(|c| c.request_timeout = "1s".into());
    let mut c = connect(&s);
    let started = Instant::now();
    c.write_all(b"GET /__lbheartbeat__ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // ... and never the blank line.
    let answer = read_all(&mut c);
    assert!(
        started.elapsed() < crate::support::PATIENCE,
        "the connection was not closed"
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    // A prompt client on a new connection is served.
    assert!(get_raw(&s, "/__lbheartbeat__").starts_with("HTTP/1.1 200"));
}

#[test]
fn an_upload_body_that_stops_arriving_gets_408_and_stores_nothing() {
    let s = TestServer::with_config(|c| c.request_timeout = "1s".into());
    let mut c = connect(&s);
    write!(
        c,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"symbols.zip\"; filename=\"symbols.zip\"\r\n\r\nPK",
        s.token
    )
    .unwrap();
    // ... and nothing more.
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("paused"), "{answer}");
    assert_nothing_stored(&s);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'failed' AND http_status = 408"),
        1
    );
}

#[test]
fn oversized_request_heads_and_urls_are_refused() {
    let s = TestServer::start();
    let mut c = connect(&s);
    let huge = "a".repeat(512 << 10);
    // The server may answer and close before a slow client has written it all.
    let written = write!(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n");
    let answer = read_all(&mut c);
    assert!(
        answer.starts_with("HTTP/1.1 431") || (written.is_err() && answer.is_empty()),
        "{}",
        &answer[..answer.len().min(200)]
    );

    let long = format!("/{}/{ID_A}/a.sym", "m".repeat(70_000));
    let answer = get_raw(&s, &long);
    assert!(
        answer.starts_with("HTTP/1.1 414"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // The server is unharmed.
    assert!(get_raw(&s, "/__lbheartbeat__").starts_with("HTTP/1.1 200"));
}

#[test]
fn downloads_flow_while_uploads_are_throttled() {
    // No timer may free the slot while the test runs, however loaded the
    // machine: the in-flight upload's pauses are allowed an hour.
    let s = TestServer::with_config(|c| {
        c.max_concurrent_uploads_per_token = 1;
        c.request_timeout = "1h".into();
    });
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let data = sym("xul.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&key, &data)]));
    // One upload in flight (its body never finishes) holds the token's only slot.
    let mut slow = connect(&s);
    write!(
        slow,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n",
        s.token
    )
    .unwrap();
    // The slot is taken before the upload's record is written: wait for the record.
    s.wait_for_count("SELECT COUNT(*) FROM uploads WHERE status = 'running'", 1);
    let resp = s.upload(zip_of(&[(&key, &data)]));
    assert_eq!(resp.status(), 429, "the second upload is throttled");
    for _ in 0..20 {
        let resp = s.get(&format!("/{key}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
    }
}

#[test]
fn a_content_length_past_what_the_index_records_is_refused_and_its_record_ended() {
    let s = TestServer::start();
    let mut c = connect(&s);
    write!(
        c,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {}\r\nExpect: 100-continue\r\n\
         Content-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: 18446744073709551000\r\n\r\n",
        s.token
    )
    .unwrap();
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'running'"),
        0
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE http_status = 413"),
        1
    );
}
