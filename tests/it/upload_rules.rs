//! Every refusal of `POST /upload/`: status, message naming member and rule,
//! and nothing left behind.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::*;

#[test]
fn bad_member_paths_name_the_member_and_rule_and_store_nothing() {
    let s = TestServer::start();
    let (gname, gdata) = good_member();
    let cases: &[(&str, &str)] = &[
        ("a/b.sym", "2 segment"),
        ("a/ABC/c/d.sym", "4 segment"),
        ("a/NOTHEX/c.sym", "hexadecimal"),
        ("a/../ABC/c.sym", "'..'"),
        ("a/ABC/c|d.sym", "forbidden character '|'"),
        ("a/ABC/c#d.sym", "forbidden character '#'"),
    ];
    for (name, rule) in cases {
        // The good member comes first: validation of the whole listing happens before anything is stored.
        let body = refused(&s, zip_of(&[(&gname, &gdata), (name, b"x")]), 400);
        assert_eq!(body["member"], *name, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(rule),
            "{name}: {body}"
        );
        assert!(
            body["error"].as_str().unwrap().contains(name),
            "{name}: {body}"
        );
        assert_nothing_stored(&s);
    }
}

#[test]
fn raw_names_no_library_writes_are_refused() {
    let s = TestServer::start();
    let (gname, gdata) = good_member();
    let cases: &[(&[u8], &str)] = &[
        (b"/abs/ABC/c.sym", "absolute"),
        (b"a\\ABC\\c.sym", "backslash"),
        (b"a/ABC/c\0.sym", "NUL"),
        (b"a/ABC/c\xff.sym", "UTF-8"),
        (b"a/ABC/c\x07.sym", "control character"),
    ];
    for (name, rule) in cases {
        let zip = raw_zip(&[
            RawMember::new(gname.as_bytes(), &gdata),
            RawMember::new(name, b"x"),
        ]);
        let body = refused(&s, zip, 400);
        assert!(body["error"].as_str().unwrap().contains(rule), "{body}");
        assert_nothing_stored(&s);
    }
}

#[test]
fn symlink_and_encrypted_entries_are_refused() {
    let s = TestServer::start();
    let name = format!("a.pdb/{ID_A}/a.sym");
    let link = RawMember {
        unix_mode: Some(0o120777),
        ..RawMember::new(name.as_bytes(), b"/etc/passwd")
    };
    let body = refused(&s, raw_zip(&[link]), 400);
    assert!(
        body["error"].as_str().unwrap().contains("symbolic link"),
        "{body}"
    );
    let enc = RawMember {
        flags: 1,
        ..RawMember::new(name.as_bytes(), b"secret")
    };
    let body = refused(&s, raw_zip(&[enc]), 400);
    assert!(
        body["error"].as_str().unwrap().contains("encrypted"),
        "{body}"
    );
    assert_nothing_stored(&s);
}

#[test]
fn duplicate_members_identical_once_different_refused() {
    let s = TestServer::start();
    let (name, data) = good_member();
    let same = raw_zip(&[
        RawMember::new(name.as_bytes(), &data),
        RawMember::new(name.as_bytes(), &data),
    ]);
    let resp = s.upload(same);
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        body["upload"]["uploaded_keys"],
        serde_json::json!([name.clone()])
    );
    assert_eq!(body["upload"]["files_count"], 1);

    let s = TestServer::start();
    let other = sym("good.pdb", ID_A, "INFO GENERATOR other\n");
    let differ = raw_zip(&[
        RawMember::new(name.as_bytes(), &data),
        RawMember::new(name.as_bytes(), &other),
    ]);
    let body = refused(&s, differ, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("different content"),
        "{body}"
    );
    assert_nothing_stored(&s);
}

#[test]
fn sym_module_line_must_match_the_path() {
    let s = TestServer::start();
    let wrong_id = sym("a.pdb", ID_B, "");
    let body = refused(
        &s,
        zip_of(&[(&format!("a.pdb/{ID_A}/a.sym"), &wrong_id)]),
        400,
    );
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains(ID_A) && msg.contains(ID_B) && msg.contains("debug id"),
        "{msg}"
    );
    let wrong_file = sym("b.pdb", ID_A, "");
    let body = refused(
        &s,
        zip_of(&[(&format!("a.pdb/{ID_A}/a.sym"), &wrong_file)]),
        400,
    );
    assert!(
        body["error"].as_str().unwrap().contains("debug file"),
        "{body}"
    );
    assert_nothing_stored(&s);
}

#[test]
fn disallowed_snippets_reject_the_zip() {
    let s = TestServer::start();
    let (gname, gdata) = good_member();
    let body = refused(
        &s,
        zip_of(&[
            (&gname, &gdata),
            (&format!("qcom/proprietary/{ID_A}"), b"x"),
        ]),
        400,
    );
    assert!(
        body["error"].as_str().unwrap().contains("qcom/proprietary"),
        "{body}"
    );
    assert_nothing_stored(&s);
}

#[test]
fn not_a_zip_empty_zip_and_no_zip_part() {
    let s = TestServer::start();
    let body = refused(&s, b"this is not a zip".to_vec(), 400);
    assert!(
        body["error"].as_str().unwrap().contains("not a valid zip"),
        "{body}"
    );
    let body = refused(&s, zip_of(&[]), 400);
    assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");
    let body = refused(&s, zip_of(&[("listing-symbols.txt", b"x")]), 400);
    assert!(
        body["error"].as_str().unwrap().contains("no symbol files"),
        "{body}"
    );

    let form = reqwest::blocking::multipart::Form::new().text("notes", "hello");
    let resp = s
        .client
        .post(s.url("/upload/"))
        .header("Auth-Token", &s.token)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains(".zip"));

    let resp = s
        .client
        .post(s.url("/upload/"))
        .header("Auth-Token", &s.token)
        .header("Content-Type", "application/octet-stream")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_nothing_stored(&s);
}

#[test]
fn bad_try_value_is_refused() {
    let s = TestServer::start();
    let (name, data) = good_member();
    let resp = s.upload_with(&s.token, zip_of(&[(&name, &data)]), Some("maybe"));
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("try must be"));
    assert_nothing_stored(&s);
}

#[test]
fn upload_by_download_is_not_enabled_yet() {
    let s = TestServer::start();
    let resp = s
        .client
        .post(s.url("/upload/"))
        .header("Auth-Token", &s.token)
        .form(&[("url", "https://example.com/symbols.zip")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .unwrap()
            .contains("upload by download is not enabled")
    );
}

#[test]
fn tokens_missing_unknown_revoked_expired_or_without_permission_get_403() {
    let s = TestServer::start();
    let (name, data) = good_member();
    let zip = zip_of(&[(&name, &data)]);
    let resp = s
        .client
        .post(s.url("/upload/"))
        .multipart(reqwest::blocking::multipart::Form::new().part(
            "symbols.zip",
            reqwest::blocking::multipart::Part::bytes(zip.clone()).file_name("symbols.zip"),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("Auth-Token"));

    let unknown = "0123456789abcdef0123456789abcdef";
    let resp = s.upload_with(unknown, zip.clone(), None);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("unknown token"));

    let expired = s.create_token_expiring(&["upload"], "old", Some(-1000));
    let resp = s.upload_with(&expired, zip.clone(), None);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("expired"));

    let revoked = s.create_token(&["upload"], "gone");
    let id: i64 = s.one("SELECT MAX(id) FROM tokens", &[]);
    assert!(s.store().revoke_token(id).unwrap());
    let resp = s.upload_with(&revoked, zip.clone(), None);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("revoked"));

    let viewer = s.create_token(&["view_all"], "viewer");
    let resp = s.upload_with(&viewer, zip.clone(), None);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("permission"));
    assert_nothing_stored(&s);
    assert_eq!(s.count("SELECT COUNT(*) FROM uploads"), 0);
}

#[test]
fn other_methods_get_405_with_allow() {
    let s = TestServer::start();
    let resp = s.get("/upload/");
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"], "Method Not Allowed");
}

#[test]
fn declared_body_over_the_limit_gets_413_without_the_body_when_client_expects_continue() {
    let s = TestServer::with_config(|c| c.max_upload_bytes = 1000);
    // Expect: 100-continue: answered from the headers, the body is never sent.
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(crate::support::PATIENCE))
        .unwrap();
    write!(
        conn,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {}\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        s.token
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(!head.contains("100 Continue"), "{head}");

    // Without Expect the body is drained and the 413 still arrives.
    let (name, data) = good_member();
    let big: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let resp = s.upload(zip_of(&[
        (&name, &data),
        (&format!("big/{ID_A}/big.bin"), &big),
    ]));
    assert_eq!(resp.status(), 413);
    assert!(resp.text().unwrap().contains("limit"));
    assert_nothing_stored(&s);
    // The failed upload is recorded with the status the client got.
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE status = 'failed' AND http_status = 413"),
        2
    );
}

#[test]
fn zip_limits_member_count_total_and_ratio_give_413() {
    let s = TestServer::with_config(|c| c.max_members = 2);
    let m: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("m{i}.pdb/{ID_A}/m.sym"),
                sym(&format!("m{i}.pdb"), ID_A, ""),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = m.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let body = refused(&s, zip_of(&refs), 413);
    assert!(
        body["error"].as_str().unwrap().contains("3 members"),
        "{body}"
    );
    assert_nothing_stored(&s);

    let s = TestServer::with_config(|c| c.max_uncompressed_bytes = 100_000);
    let big = vec![b'x'; 150_000];
    let body = refused(&s, zip_of(&[(&format!("big/{ID_A}/big.bin"), &big)]), 413);
    assert!(body["error"].as_str().unwrap().contains("100000"), "{body}");
    assert_nothing_stored(&s);

    // A zip bomb: 8 MiB of zeros deflate over 1000:1.
    let s = TestServer::start();
    let zeros = vec![0u8; 8 << 20];
    let body = refused(
        &s,
        zip_of(&[(&format!("bomb/{ID_A}/bomb.bin"), &zeros)]),
        413,
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("compression ratio"),
        "{body}"
    );
    assert_nothing_stored(&s);
}

#[test]
fn a_zip_lying_about_its_sizes_is_refused() {
    let s = TestServer::with_config(|c| c.max_uncompressed_bytes = 1 << 20);
    // Declares 10 bytes per member but holds 2 MiB: the total is enforced while reading.
    let big = vec![b'y'; 2 << 20];
    let name = format!("liar/{ID_A}/liar.bin");
    let mut zip = raw_zip(&[RawMember::new(name.as_bytes(), &big)]);
    // Patch the central directory's uncompressed size (offset 24 in the CD header).
    let cd = zip
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    zip[cd + 24..cd + 28].copy_from_slice(&10u32.to_le_bytes());
    let resp = s.upload(zip);
    assert!(
        resp.status() == 400 || resp.status() == 413,
        "{}",
        resp.status()
    );
    assert_nothing_stored(&s);
}

#[test]
fn too_many_concurrent_uploads_for_one_token_get_429_with_retry_after() {
    let s = TestServer::with_config(|c| c.max_concurrent_uploads_per_token = 1);
    let (name, data) = good_member();
    let zip = zip_of(&[(&name, &data)]);
    let mut body = Vec::new();
    body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"symbols.zip\"; filename=\"s.zip\"\r\n\r\n");
    body.extend_from_slice(&zip);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    // The first upload sends its headers and half its body, and waits.
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.set_read_timeout(Some(crate::support::PATIENCE))
        .unwrap();
    write!(
        slow,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        s.token,
        body.len()
    )
    .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    slow.write_all(first).unwrap();
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while s.count("SELECT COUNT(*) FROM uploads WHERE status = 'running'") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first upload never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let resp = s.upload(zip.clone());
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(
        resp.json::<serde_json::Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );
    // Another token is not held back.
    let other = s.create_token(&["upload"], "other");
    assert_eq!(s.upload_with(&other, zip.clone(), None).status(), 201);

    slow.write_all(rest).unwrap();
    let mut response = String::new();
    slow.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(s.upload(zip).status(), 201);
}
