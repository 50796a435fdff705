//! What anonymous and token-holding clients can make the server record, and
//! what records, tokens and pages give back.

use std::time::Instant;

use crate::support::*;

#[test]
fn anonymous_misses_with_huge_segments_and_queries_record_only_bounded_fields() {
    let s = TestServer::start();
    let huge = "a".repeat(15_000);
    let huge_hex = "ab".repeat(7_500);
    let n = 100;
    for i in 0..n {
        let paths = [
            // A huge debug file: not recorded.
            format!("/{huge}{i}.pdb/{ID_A}/x.sym"),
            // A huge (hex) debug id: not recorded.
            format!("/huge-id{i}.pdb/{huge_hex}/huge-id.sym"),
            // Plausible debug file and id, huge code file and code id: recorded, both blank.
            format!("/plausible{i}.pdb/{ID_A}/p.sym?code_file={huge}&code_id={huge_hex}"),
        ];
        for path in &paths {
            assert_eq!(s.get(path).status(), 404, "{}", &path[..60]);
        }
    }
    // A code id that is not hex is blanked; the code file is kept.
    let notes = format!("/notes.pdb/{ID_B}/notes.sym?code_file=notes.dll&code_id=zz99999999");
    assert_eq!(s.get(&notes).status(), 404);
    s.wait_for_count("SELECT COUNT(*) FROM missing", n + 1);
    assert_eq!(
        s.count(
            "SELECT COUNT(*) FROM missing WHERE debug_file LIKE 'plausible%' \
             AND debug_id = 'C3B913878AFB017237A4A08B325905C70' AND code_file = '' AND code_id = ''"
        ),
        n
    );
    let notes = &s.rows(
        "SELECT code_file, code_id FROM missing WHERE debug_file = 'notes.pdb'",
        &[],
    )[0];
    let notes: (String, String) = (notes.get(0).unwrap(), notes.get(1).unwrap());
    assert_eq!(notes, ("notes.dll".to_string(), String::new()));
    let longest = s.count(
        "SELECT CAST(MAX(CASE WHEN length(debug_file) > length(code_file) \
         THEN length(debug_file) ELSE length(code_file) END) AS BIGINT) FROM missing",
    );
    assert!(longest <= 255, "{longest}");
    let longest_id = s.count(
        "SELECT CAST(MAX(CASE WHEN length(debug_id) > length(code_id) \
         THEN length(debug_id) ELSE length(code_id) END) AS BIGINT) FROM missing",
    );
    assert!(longest_id <= 255, "{longest_id}");
    let bytes = s.count(
        "SELECT CAST(SUM(length(debug_file) + length(debug_id) + length(code_file) + length(code_id)) \
         AS BIGINT) FROM missing",
    );
    assert!(bytes <= (n + 1) * 702, "{bytes}");
}

#[test]
fn misses_with_ids_that_are_not_hex_of_a_real_length_are_answered_but_not_recorded() {
    let s = TestServer::start();
    let refused = [
        "not-hex-at-all".to_string(),
        "C3B913878AFB017237A4A08B325905CZ0".to_string(),
        "ABC".to_string(),
        "A".repeat(81),
        format!("elf-buildid-{}", "0".repeat(82)),
    ];
    for id in &refused {
        assert_eq!(
            s.get(&format!("/bad.pdb/{id}/bad.sym")).status(),
            404,
            "{id}"
        );
    }
    let long_build_id = "ab".repeat(41);
    assert_eq!(
        s.get(&format!("/buildid/{long_build_id}/debuginfo"))
            .status(),
        404
    );
    // Ids of every real shape are recorded.
    let kept = [
        ID_A.to_string(),                           // Breakpad, 33 digits
        "5CF0A9B1C5F2000".to_string(),              // PE code id
        format!("elf-buildid-{}", "0a".repeat(20)), // SSQP ELF key
        "mach-uuid-sym-0123456789ABCDEF0123456789ABCDEF".to_string(),
    ];
    for id in &kept {
        assert_eq!(
            s.get(&format!("/good.pdb/{id}/good.sym")).status(),
            404,
            "{id}"
        );
    }
    s.wait_for_count("SELECT COUNT(*) FROM missing", kept.len() as i64);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM missing WHERE debug_file <> 'good.pdb'"),
        0
    );
}

#[test]
fn the_missing_symbols_csv_is_streamed_in_chunks_and_complete() {
    let s = TestServer::start();
    let rows = 2_345;
    {
        let mut db = s.index();
        db.batch("BEGIN").unwrap();
        for i in 0..rows {
            db.exec(
                "INSERT INTO missing (debug_file, debug_id, code_file, code_id, count, first_seen, last_seen) \
                 VALUES (?1, ?2, ?3, '', ?4, 0, ?5)",
                &symdepot::sql_params![
                    format!("m{i}.pdb"),
                    format!("{i:033X}"),
                    format!("m{i}.dll"),
                    i % 7,
                    i
                ],
            )
            .unwrap();
        }
        db.batch("COMMIT").unwrap();
    }
    let resp = s.get("/missingsymbols.csv");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let text = resp.text().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), rows + 1);
    assert_eq!(
        lines[0],
        "debug_file,debug_id,code_file,code_id,count,first_seen,last_seen"
    );
    // Most asked for first, then most recently seen; every row once.
    let mut seen = std::collections::HashSet::new();
    let mut previous = (i64::MAX, i64::MAX);
    for line in &lines[1..] {
        let f: Vec<&str> = line.split(',').collect();
        let i: usize = f[0]
            .trim_start_matches('m')
            .trim_end_matches(".pdb")
            .parse()
            .unwrap();
        assert_eq!(f[1], format!("{i:033X}"));
        assert_eq!(f[2], format!("m{i}.dll"));
        let count: i64 = f[4].parse().unwrap();
        assert_eq!(count, (i % 7) as i64);
        let order = (count, i as i64);
        assert!(order < previous, "{line} out of order");
        previous = order;
        assert!(seen.insert(i));
    }
}

#[test]
fn a_formula_in_a_missing_code_file_is_neutralised_in_the_csv() {
    let s = TestServer::start();
    let formula = "=HYPERLINK(\"http://evil.example/\",\"click\")";
    let query = format!(
        "code_file={}&code_id=5CF0A9B1C5F2000",
        percent_encode(formula)
    );
    assert_eq!(
        s.get(&format!("/evil.pdb/{ID_A}/evil.sym?{query}"))
            .status(),
        404
    );
    assert_eq!(s.get(&format!("/-2+3.pdb/{ID_B}/x.sym")).status(), 404);
    s.wait_for_count("SELECT COUNT(*) FROM missing", 2);
    let csv = s.get("/missingsymbols.csv").text().unwrap();
    assert!(
        csv.contains(&format!(
            "evil.pdb,{ID_A},\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"click\"\")\",5CF0A9B1C5F2000,1,"
        )),
        "{csv}"
    );
    assert!(csv.contains(&format!("\"'-2+3.pdb\",{ID_B},,,1,")), "{csv}");
    for line in csv.lines() {
        for cell in ["=", "+", "-", "@", "\t", "\r"] {
            assert!(
                !line.starts_with(cell) && !line.contains(&format!(",{cell}")),
                "{line}"
            );
        }
    }
}

/// Percent-encodes every byte but letters and digits.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /api/tokens/` with JSON, as the holder of `secret`.
fn post_token(
    s: &TestServer,
    secret: &str,
    body: serde_json::Value,
) -> reqwest::blocking::Response {
    s.client
        .post(s.url("/api/tokens/"))
        .header("Auth-Token", secret)
        .json(&body)
        .send()
        .unwrap()
}

#[test]
fn a_manage_tokens_token_cannot_grant_permissions_it_lacks() {
    let s = TestServer::start();
    let admin = s.create_token(&["manage_tokens"], "admin");
    let before = s.count("SELECT COUNT(*) FROM tokens");
    for perm in ["upload", "upload_try", "download", "view_all"] {
        let resp = post_token(
            &s,
            &admin,
            serde_json::json!({"permissions": ["manage_tokens", perm]}),
        );
        assert_eq!(resp.status(), 403, "{perm}");
        let error = resp.json::<serde_json::Value>().unwrap()["error"].to_string();
        assert!(
            error.contains(&format!("lacks the {perm} permission")),
            "{error}"
        );
    }
    // The form variant is held to the same rule.
    let resp = s
        .client
        .post(s.url("/api/tokens/"))
        .header("Auth-Token", &admin)
        .form(&[("permissions", "upload,view_all")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(s.count("SELECT COUNT(*) FROM tokens"), before);

    // What it holds it may grant; `upload` covers `upload_try`.
    let resp = post_token(
        &s,
        &admin,
        serde_json::json!({"permissions": ["manage_tokens"]}),
    );
    assert_eq!(resp.status(), 201);
    let uploader_admin = s.create_token(&["manage_tokens", "upload"], "builds");
    let resp = post_token(
        &s,
        &uploader_admin,
        serde_json::json!({"permissions": ["upload", "upload_try"]}),
    );
    assert_eq!(resp.status(), 201);
    let resp = post_token(
        &s,
        &uploader_admin,
        serde_json::json!({"permissions": ["download"]}),
    );
    assert_eq!(resp.status(), 403);
}

#[test]
fn token_expiry_out_of_range_or_malformed_is_refused_naming_the_rule() {
    let s = TestServer::start();
    let admin = s.create_token(&["manage_tokens", "upload"], "admin");
    let before = s.count("SELECT COUNT(*) FROM tokens");
    let bad = [
        serde_json::json!(99_999_999_999_999_999u64),
        serde_json::json!(36_501),
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1e300),
        serde_json::json!(1.5),
        serde_json::json!("abc"),
        serde_json::json!("30"),
        serde_json::json!(true),
    ];
    for expires in bad {
        let resp = post_token(
            &s,
            &admin,
            serde_json::json!({"permissions": ["upload"], "expires": expires}),
        );
        assert_eq!(resp.status(), 400, "{expires}");
        let error = resp.json::<serde_json::Value>().unwrap()["error"].to_string();
        assert!(
            error.contains("expires") && error.contains("from 1 to 36500"),
            "{expires}: {error}"
        );
    }
    for expires in ["99999999999999999", "abc", "-1", "0", "1e3"] {
        let resp = s
            .client
            .post(s.url("/api/tokens/"))
            .header("Auth-Token", &admin)
            .form(&[("permissions", "upload"), ("expires", expires)])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 400, "{expires}");
        assert!(
            resp.text().unwrap().contains("from 1 to 36500"),
            "{expires}"
        );
    }
    assert_eq!(s.count("SELECT COUNT(*) FROM tokens"), before);

    // The store itself refuses a lifetime that would overflow, whoever asks.
    let refused = s.store().create_token(&symdepot::store::tokens::NewToken {
        user: "x",
        permissions: &["upload".to_string()],
        note: "",
        expires_in_ms: Some(i64::MAX),
        expires_by: None,
    });
    assert!(refused.unwrap_err().to_string().contains("36500 days"));
    assert_eq!(s.count("SELECT COUNT(*) FROM tokens"), before);

    // The limits themselves are fine, and the expiry is where it should be.
    let resp = post_token(
        &s,
        &admin,
        serde_json::json!({"permissions": ["upload"], "expires": 36_500}),
    );
    assert_eq!(resp.status(), 201);
    let token: serde_json::Value = resp.json().unwrap();
    let expires_at = token["token"]["expires_at"].as_str().unwrap();
    let year: i32 = expires_at[..4].parse().unwrap();
    assert!(year >= 2125, "{expires_at}");
}

#[test]
fn the_cli_refuses_token_lifetimes_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    for expires in [
        "99999999999999999",
        "99999999999999999d",
        "36501d",
        "0",
        "0d",
        "-1d",
        "abc",
    ] {
        let out = symdepot(dir.path())
            .args([
                "token",
                "create",
                "--permission",
                "upload",
                &format!("--expires={expires}"),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{expires}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--expires") && err.contains("36500d"),
            "{expires}: {err}"
        );
    }
    let out = symdepot(dir.path())
        .args(["token", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for expires in ["36500d", "1s", "never"] {
        let out = symdepot(dir.path())
            .args([
                "token",
                "create",
                "--permission",
                "upload",
                &format!("--expires={expires}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{expires}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every secret the URLs of the test below carry.
const SECRETS: [&str; 4] = ["hunter2", "topsecret", "sigvalue", "fragsecret"];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[test]
fn upload_by_download_records_and_errors_show_no_credentials_or_signatures() {
    let zip = zip_of(&[(&format!("r.pdb/{ID_A}/r.sym"), &sym("r.pdb", ID_A, ""))]);
    let port = crate::by_download::remote(vec![
        (
            "/s.zip?X-Amz-Signature=topsecret&sig=sigvalue",
            "HTTP/1.1 200 OK".into(),
            zip,
        ),
        (
            "/gone.zip?sig=sigvalue",
            "HTTP/1.1 404 Not Found".into(),
            Vec::new(),
        ),
        (
            "/away?sig=sigvalue",
            "HTTP/1.1 302 Found\r\nLocation: http://user:hunter2@localhost:{port}/x.zip?sig=topsecret"
                .into(),
            Vec::new(),
        ),
    ]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = TestServer::with_config(|c| {
        c.upload_download_domains = vec!["127.0.0.1".into()];
        c.allow_http_downloads = true;
    });
    let base = format!("http://user:hunter2@127.0.0.1:{port}");
    let url = format!("{base}/s.zip?X-Amz-Signature=topsecret&sig=sigvalue#fragsecret");
    let (status, body) = crate::by_download::by_url(&s, &url, None);
    assert_eq!(status, 201, "{body}");
    assert_no_secret("the 201", &body.to_string());
    assert_eq!(
        body["upload"]["download_url"],
        format!("http://127.0.0.1:{port}/s.zip?X-Amz-Signature=REDACTED&sig=REDACTED#REDACTED")
    );

    // A remote error, a refused redirect, a transport error, a malformed URL.
    let failing = [
        (format!("{base}/gone.zip?sig=sigvalue"), 502),
        (format!("{base}/away?sig=sigvalue"), 400),
        (
            format!("http://user:hunter2@127.0.0.1:{closed}/s.zip?sig=sigvalue"),
            502,
        ),
        (
            "http://user:hunter2@[127.0.0.1/s.zip?sig=sigvalue".to_string(),
            400,
        ),
    ];
    for (url, want) in &failing {
        let (status, body) = crate::by_download::by_url(&s, url, None);
        assert_eq!(status, *want, "{url}: {body}");
        assert!(body["error"].is_string(), "{body}");
        assert_no_secret("an error", &body.to_string());
    }
    let list: serde_json::Value = s.get("/api/uploads/").json().unwrap();
    assert_eq!(list["total"], 5, "{list}");
    for up in list["uploads"].as_array().unwrap() {
        let id = up["id"].as_i64().unwrap();
        let record = s.get(&format!("/api/uploads/upload/{id}")).text().unwrap();
        assert_no_secret("a record", &record);
        let page = s.get(&format!("/uploads/{id}")).text().unwrap();
        assert_no_secret("a page", &page);
    }
    let stored: Vec<String> = s
        .rows(
            "SELECT COALESCE(download_url, '') || ' ' || COALESCE(error, '') FROM uploads",
            &[],
        )
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert_no_secret("the index", &stored.join("\n"));
}

fn assert_nosniff(what: &str, resp: &reqwest::blocking::Response) {
    assert_eq!(
        resp.headers()
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what} ({})",
        resp.status()
    );
}

#[test]
fn every_response_family_carries_nosniff() {
    let s = TestServer::start();
    let sym_key = format!("xul.pdb/{ID_A}/xul.sym");
    let data = sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1C5F2000 xul.dll\n");
    s.upload_ok(zip_of(&[(&sym_key, &data)]));
    let admin = s.create_token(&["manage_tokens"], "admin");
    let gets = [
        format!("/{sym_key}"),
        "/xul.dll/5CF0A9B1C5F2000/xul.sym".to_string(),
        format!("/xul.pdb/{ID_B}/xul.sym"),
        "/a/b".to_string(),
        "/buildid/0011223344556677/debuginfo".to_string(),
        "/buildid/xyz/debuginfo".to_string(),
        "/api/uploads/".to_string(),
        "/api/uploads/upload/999".to_string(),
        "/api/uploads/?size=huge".to_string(),
        "/api/tokens/".to_string(),
        "/missingsymbols.csv".to_string(),
        "/metrics".to_string(),
        "/__lbheartbeat__".to_string(),
        "/__heartbeat__".to_string(),
        "/__version__".to_string(),
        "/".to_string(),
        "/uploads/999".to_string(),
    ];
    for path in &gets {
        assert_nosniff(path, &s.get(path));
        let head = s.client.head(s.url(path)).send().unwrap();
        assert_nosniff(&format!("HEAD {path}"), &head);
    }
    let gzip = s.get_with(&format!("/{sym_key}"), &[("Accept-Encoding", "gzip")]);
    assert_eq!(gzip.status(), 200);
    assert_nosniff("a gzip hit", &gzip);
    let etag = gzip.headers()["etag"].to_str().unwrap().to_string();
    let not_modified = s.get_with(
        &format!("/{sym_key}"),
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
    );
    assert_eq!(not_modified.status(), 304);
    assert_nosniff("a 304", &not_modified);
    let range = s.get_with(&format!("/{sym_key}"), &[("Range", "bytes=0-3")]);
    assert_eq!(range.status(), 206);
    assert_nosniff("a 206", &range);
    // Uploads: 201, 400, 403, 405; the token API: 201, 403; auth_info.
    let created = s.upload(zip_of(&[(
        &format!("a.pdb/{ID_B}/a.sym"),
        &sym("a.pdb", ID_B, ""),
    )]));
    assert_nosniff("a 201 upload", &created);
    assert_nosniff("a 400 upload", &s.upload(b"not a zip".to_vec()));
    let forbidden = s.upload_with("0123456789abcdef0123456789abcdef", zip_of(&[]), None);
    assert_nosniff("a 403 upload", &forbidden);
    assert_nosniff("a 405 upload", &s.get("/upload/"));
    let token = post_token(
        &s,
        &admin,
        serde_json::json!({"permissions": ["manage_tokens"]}),
    );
    assert_eq!(token.status(), 201);
    assert_nosniff("a 201 token", &token);
    let post_page = s.client.post(s.url("/uploads")).send().unwrap();
    assert_nosniff("a 405 page", &post_page);
    let info = s
        .client
        .post(s.url("/upload/auth_info/"))
        .header("Auth-Token", &s.token)
        .send()
        .unwrap();
    assert_nosniff("auth_info", &info);
}

#[test]
fn pages_forbid_scripts_and_framing() {
    let s = TestServer::start();
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    s.upload_ok(zip_of(&[(&key, &sym("xul.pdb", ID_A, ""))]));
    for path in [
        "/",
        "/uploads",
        "/uploads/1",
        "/files",
        "/files/1",
        "/missing",
        "/files/999",
        "/uploads?size=huge",
    ] {
        let resp = s.get(path);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert_nosniff(path, &resp);
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY", "{path}");
        let html = resp.text().unwrap();
        assert!(
            !html.contains("onclick") && !html.contains("<script"),
            "{path}"
        );
    }
}

#[test]
fn stored_files_a_browser_would_render_are_sent_as_attachments() {
    let s = TestServer::with_config(|c| {
        c.mime_overrides.insert("txt".into(), "text/html".into());
    });
    let page = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let files = [
        (format!("evil.pdb/{ID_A}/evil.html"), page.clone()),
        (format!("evil.pdb/{ID_A}/evil.svg"), page.clone()),
        (format!("evil.pdb/{ID_A}/evil.js"), page.clone()),
        (format!("evil.pdb/{ID_A}/notes.txt"), page.clone()),
        (format!("xul.pdb/{ID_B}/xul.sym"), sym("xul.pdb", ID_B, "")),
    ];
    let members: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_slice()))
        .collect();
    s.upload_ok(zip_of(&members));
    for (key, _) in &files[..4] {
        for _ in 0..2 {
            // Once from the index, once from the cached hit.
            let resp = s.get(&format!("/{key}"));
            assert_eq!(resp.status(), 200, "{key}");
            assert_eq!(resp.headers()["content-disposition"], "attachment", "{key}");
            assert_nosniff(key, &resp);
        }
    }
    let sym = s.get(&format!("/{}", files[4].0));
    assert_eq!(sym.status(), 200);
    assert!(sym.headers().get("content-disposition").is_none());
    assert_eq!(sym.headers()["content-type"], "text/plain");
}

/// A raw `GET` on a fresh connection: the answer's bytes as text.
fn raw_get(s: &TestServer, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn nosniff_is_sent_title_case_and_on_the_503_of_a_full_server() {
    let s = TestServer::with_config(|c| c.max_connections = 2);
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    s.upload_ok(zip_of(&[(&key, &sym("xul.pdb", ID_A, ""))]));
    for path in [format!("/{key}"), format!("/xul.pdb/{ID_B}/xul.sym")] {
        let answer = raw_get(&s, &path);
        assert!(
            answer.contains("\r\nX-Content-Type-Options: nosniff\r\n"),
            "{answer}"
        );
    }
    // Idle connections hold the slots until one more is refused.
    let deadline = Instant::now() + crate::support::PATIENCE;
    let mut held = Vec::new();
    let refused = loop {
        let answer = raw_get(&s, &format!("/{key}"));
        if answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        assert!(Instant::now() < deadline, "never refused: {answer}");
        held.push(std::net::TcpStream::connect(s.addr).unwrap());
    };
    assert!(
        refused.contains("\r\nX-Content-Type-Options: nosniff\r\n"),
        "{refused}"
    );
    drop(held);
}

#[test]
fn every_text_an_uploader_or_token_manager_makes_the_server_record_is_bounded() {
    let s = TestServer::start();
    // A good zip under a multipart file name of 100 KB: refused before anything is
    // recorded from it.
    let (name, data) = good_member();
    let form = reqwest::blocking::multipart::Form::new().part(
        "symbols.zip",
        reqwest::blocking::multipart::Part::bytes(zip_of(&[(&name, &data)]))
            .file_name("n".repeat(100_000) + ".zip"),
    );
    let resp = s
        .client
        .post(s.url("/upload/"))
        .header("Auth-Token", &s.token)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);
    // A zip member name of 60 KB: the error (recorded with the upload) names it cut short.
    let long = format!("{}/{ID_A}/x.sym", "m".repeat(60_000));
    let body = refused(&s, zip_of(&[(&long, b"x")]), 400);
    assert!(body.to_string().len() < 4_000, "{}", body.to_string().len());
    let longest: i64 = s.count(
        "SELECT COALESCE(MAX(length(COALESCE(filename, '')) + length(COALESCE(error, ''))), 0) FROM uploads",
    );
    assert!(longest < 4_000, "a record holds {longest} bytes of text");
    // Token notes are bounded too.
    let admin = s.create_token(&["manage_tokens", "upload"], "admin");
    let resp = post_token(
        &s,
        &admin,
        serde_json::json!({"permissions": ["upload"], "notes": "n".repeat(10_000)}),
    );
    assert_eq!(resp.status(), 400);
    let resp = post_token(
        &s,
        &admin,
        serde_json::json!({"permissions": ["upload"], "notes": "build machine 7"}),
    );
    assert_eq!(resp.status(), 201);
}
