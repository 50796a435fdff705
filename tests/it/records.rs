//! The records API, the missing-symbols report and `/metrics`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn json(s: &TestServer, path: &str) -> (u16, Value) {
    let resp = s.get(path);
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn ok(s: &TestServer, path: &str) -> Value {
    let (status, v) = json(s, path);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

fn sym_zip(module: &str, id: &str, extra: &str) -> Vec<u8> {
    zip_of(&[(
        &format!("{module}/{id}/{module}.sym"),
        &sym(module, id, extra),
    )])
}

#[test]
fn uploads_list_filters_sorts_and_pages() {
    let s = TestServer::start();
    let alice = s.create_token(&["upload"], "alice@example.com");
    let bob = s.create_token(&["upload"], "bob@example.com");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big_zip = zip_of(&[(&format!("big.bin/{ID_A}/big.bin"), &big)]);
    assert_eq!(s.upload_with(&alice, big_zip, None).status(), 201);
    assert_eq!(
        s.upload_with(&bob, sym_zip("b.pdb", ID_B, ""), Some("1"))
            .status(),
        201
    );
    assert_eq!(
        s.upload_with(&bob, sym_zip("c.pdb", ID_B, ""), None)
            .status(),
        201
    );

    let all = ok(&s, "/api/uploads/");
    assert_eq!(all["total"], 3);
    assert_eq!(all["page"], 1);
    assert_eq!(all["has_next"], false);
    let ids: Vec<i64> = all["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 2, 1], "newest first");
    assert_eq!(all["uploads"][2]["user"], "alice@example.com");
    assert_eq!(all["uploads"][2]["status"], "complete");

    assert_eq!(ok(&s, "/api/uploads/?user=BOB")["total"], 2);
    assert_eq!(ok(&s, "/api/uploads/?size=%3E%3D100kb")["total"], 1);
    assert_eq!(ok(&s, "/api/uploads/?size=<100KB")["total"], 2);
    assert_eq!(ok(&s, "/api/uploads/?try=true")["total"], 1);
    assert_eq!(ok(&s, "/api/uploads/?try=0")["total"], 2);
    assert_eq!(ok(&s, "/api/uploads/?created_at=today")["total"], 3);
    assert_eq!(ok(&s, "/api/uploads/?created_at=yesterday")["total"], 0);
    assert_eq!(
        ok(&s, "/api/uploads/?created_at=%3E%3D2020-01-01")["total"],
        3
    );
    assert_eq!(ok(&s, "/api/uploads/?created_at=<2020-01-01")["total"], 0);
    let by_size = ok(&s, "/api/uploads/?sort=size");
    assert_eq!(by_size["uploads"][0]["id"], 1, "largest first");
    let reversed = ok(&s, "/api/uploads/?sort=size&reverse=true");
    assert_eq!(reversed["uploads"][2]["id"], 1, "largest last");

    for (bad, name) in [
        ("page=0", "page"),
        ("page=abc", "page"),
        ("size=huge", "size"),
        ("created_at=someday", "created_at"),
        ("try=maybe", "try"),
        ("sort=color", "sort"),
    ] {
        let (status, v) = json(&s, &format!("/api/uploads/?{bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(v["error"].as_str().unwrap().starts_with(name), "{bad}: {v}");
    }
}

#[test]
fn pages_hold_a_hundred_rows() {
    let s = TestServer::start();
    let zip = sym_zip("p.pdb", ID_A, "");
    for _ in 0..101 {
        assert_eq!(s.upload(zip.clone()).status(), 201);
    }
    let first = ok(&s, "/api/uploads/");
    assert_eq!(first["uploads"].as_array().unwrap().len(), 100);
    assert_eq!(first["has_next"], true);
    let second = ok(&s, "/api/uploads/?page=2");
    assert_eq!(second["uploads"].as_array().unwrap().len(), 1);
    assert_eq!(second["has_next"], false);
    assert_eq!(second["uploads"][0]["id"], 1);
    assert_eq!(
        ok(&s, "/api/uploads/?page=3")["uploads"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn an_upload_lists_its_files_and_a_failed_one_its_error() {
    let s = TestServer::start();
    let key = format!("a.pdb/{ID_A}/a.sym");
    let data = sym(
        "a.pdb",
        ID_A,
        "INFO CODE_ID 5CF0A9B1c5f2000 a.dll\nINFO GENERATOR gen 1\n",
    );
    s.upload_ok(zip_of(&[(&key, &data)]));
    let up = s.upload_ok(zip_of(&[(&key, &data), ("x-symbols.txt", b"listing")]));
    let id = up["id"].as_i64().unwrap();
    let detail = ok(&s, &format!("/api/uploads/upload/{id}"))["upload"].clone();
    assert_eq!(detail["id"], id);
    let files = detail["files"].as_array().unwrap();
    let outcome = |k: &str| files.iter().find(|f| f["key"] == k).unwrap()["outcome"].clone();
    assert_eq!(outcome(&key), "skipped");
    assert_eq!(outcome("x-symbols.txt"), "ignored");
    let f = files.iter().find(|f| f["key"] == key.as_str()).unwrap();
    assert_eq!(f["code_file"], "a.dll");
    assert_eq!(f["generator"], "gen 1");
    assert_eq!(f["blake3"], blake3::hash(&data).to_hex().as_str());
    assert_eq!(
        ok(&s, "/api/uploads/upload/1")["upload"]["files"][0]["outcome"],
        "new"
    );

    let resp = s.upload(zip_of(&[("not/a/valid/path.sym", b"x")]));
    assert_eq!(resp.status(), 400);
    let told = resp.json::<Value>().unwrap()["error"].clone();
    let failed = ok(&s, "/api/uploads/upload/3")["upload"].clone();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["http_status"], 400);
    assert_eq!(failed["error"], told);
    assert_eq!(json(&s, "/api/uploads/upload/99").0, 404);
}

#[test]
fn files_list_detail_and_syminfo() {
    let s = TestServer::start();
    let xul = sym(
        "xul.pdb",
        ID_A,
        "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\nINFO GENERATOR g\n",
    );
    s.upload_ok(zip_of(&[(&format!("xul.pdb/{ID_A}/xul.sym"), &xul)]));
    assert_eq!(
        s.upload_with(&s.token, sym_zip("libc.so", ID_B, ""), Some("1"))
            .status(),
        201
    );

    let files = ok(&s, "/api/uploads/files/");
    assert_eq!(files["total"], 2);
    assert_eq!(ok(&s, "/api/uploads/files/?key=xul")["total"], 1);
    // A search is matched as written: `_` and `%` are no wildcards.
    for literal in ["x_l", "%25", "x%25"] {
        assert_eq!(
            ok(&s, &format!("/api/uploads/files/?key={literal}"))["total"],
            0,
            "{literal}"
        );
    }
    assert_eq!(
        ok(&s, &format!("/api/uploads/files/?key=xul,{}", &ID_A[..6]))["total"],
        1
    );
    assert_eq!(
        ok(&s, "/api/uploads/files/?key=xul,libc")["total"],
        0,
        "comma is AND"
    );
    assert_eq!(
        ok(&s, "/api/uploads/files/?try=true")["files"][0]["key"],
        format!("libc.so/{ID_B}/libc.so.sym")
    );
    assert_eq!(json(&s, "/api/uploads/files/?page=0").0, 400);

    let id = ok(&s, "/api/uploads/files/?key=xul")["files"][0]["id"]
        .as_i64()
        .unwrap();
    let file = ok(&s, &format!("/api/uploads/files/file/{id}"))["file"].clone();
    assert_eq!(file["kind"], "sym");
    assert_eq!(file["encoding"], "gzip");
    let urls: Vec<String> = serde_json::from_value(file["urls"].clone()).unwrap();
    assert!(
        urls.contains(&format!("/xul.pdb/{}/xul.sym", ID_A.to_lowercase())),
        "{urls:?}"
    );

    for path in [
        format!("/api/syminfo/xul.pdb/{ID_A}"),
        "/api/syminfo/XUL.DLL/5cf0a9b1c5f2000".to_string(),
    ] {
        let info = ok(&s, &path);
        assert_eq!(info["debug_filename"], "xul.pdb", "{path}");
        assert_eq!(info["debug_id"], ID_A);
        assert_eq!(info["code_file"], "xul.dll");
        assert_eq!(info["code_id"], "5CF0A9B1c5f2000");
        assert_eq!(info["generator"], "g");
        assert_eq!(info["url"], format!("/xul.pdb/{ID_A}/xul.sym"));
    }
    assert_eq!(json(&s, "/api/syminfo/nope.pdb/ABC").0, 404);
}

#[test]
fn stats_count_uploads_files_and_deduplication() {
    let s = TestServer::start();
    let data = sym("a.pdb", ID_A, "");
    // The same content under two keys is stored once.
    s.upload_ok(zip_of(&[
        (&format!("a.pdb/{ID_A}/a.sym"), &data),
        (&format!("a.pdb/{ID_A}/copy.bin"), &data),
    ]));
    let st = ok(&s, "/api/stats/");
    assert_eq!(st["uploads"]["today"], 1);
    assert_eq!(st["uploads"]["last_30_days"], 1);
    assert_eq!(st["files"]["count"], 2);
    assert_eq!(st["files"]["bytes"], 2 * data.len());
    // One gzip blob and one identity blob of the same content: nothing saved yet.
    assert_eq!(st["deduplicated_bytes_saved"], 0);
    s.upload_ok(zip_of(&[(&format!("a.pdb/{ID_A}/again.bin"), &data)]));
    assert_eq!(
        ok(&s, "/api/stats/")["deduplicated_bytes_saved"],
        data.len()
    );
}

#[test]
fn token_api_needs_manage_tokens() {
    let s = TestServer::start();
    let resp = s.get("/api/tokens/");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Basic realm=\"symdepot\""
    );
    let resp = s.get_with("/api/tokens/", &[("Auth-Token", &s.token)]);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("manage_tokens"));

    // A token may grant only what it holds (attack_records has the refusals).
    let admin = s.create_token(&["manage_tokens", "upload_try"], "admin");
    let auth = ("Authorization", format!("Bearer {admin}"));
    let listed: Value = s
        .get_with("/api/tokens/", &[(auth.0, &auth.1)])
        .json()
        .unwrap();
    assert_eq!(listed["total"], 2);
    assert!(
        !listed.to_string().contains(&s.token),
        "secrets are never listed"
    );

    let created = s
        .client
        .post(s.url("/api/tokens/"))
        .header(auth.0, &auth.1)
        .json(&serde_json::json!({"permissions": ["upload_try"], "notes": "ci", "expires": 7}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let token: Value = created.json().unwrap();
    let secret = token["token"]["key"].as_str().unwrap().to_string();
    assert_eq!(token["token"]["user"], "admin");
    assert_eq!(
        token["token"]["permissions"],
        serde_json::json!(["upload_try"])
    );
    let info: Value = s
        .client
        .post(s.url("/upload/auth_info/"))
        .header("Auth-Token", format!("{secret}-label"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["user"], "admin");
    assert_eq!(info["try_only"], true);
    assert!(info["token_expires_at"].is_string());

    let bad = s
        .client
        .post(s.url("/api/tokens/"))
        .header(auth.0, &auth.1)
        .json(&serde_json::json!({"permissions": ["fly"]}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);

    let id = token["token"]["id"].as_i64().unwrap();
    let del = s
        .client
        .delete(s.url(&format!("/api/tokens/token/{id}")))
        .header(auth.0, &auth.1)
        .send()
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(
        s.upload_with(&secret, sym_zip("a.pdb", ID_A, ""), None)
            .status(),
        403
    );
    let del = s
        .client
        .delete(s.url("/api/tokens/token/999"))
        .header(auth.0, &auth.1)
        .send()
        .unwrap();
    assert_eq!(del.status(), 404);
    let no_token = s.client.post(s.url("/upload/auth_info/")).send().unwrap();
    assert_eq!(no_token.status(), 403);
}

#[test]
fn private_records_need_view_all() {
    let s = TestServer::with_config(|c| c.public_records = false);
    for path in [
        "/api/uploads/",
        "/api/stats/",
        "/missingsymbols.csv",
        "/metrics",
        "/api/missing/",
    ] {
        assert_eq!(s.get(path).status(), 401, "{path}");
        assert_eq!(
            s.get_with(path, &[("Auth-Token", &s.token)]).status(),
            403,
            "{path}"
        );
    }
    let viewer = s.create_token(&["view_all"], "viewer");
    assert_eq!(
        s.get_with("/api/uploads/", &[("Auth-Token", &viewer)])
            .status(),
        200
    );
    // Health is never protected.
    assert_eq!(s.get("/__heartbeat__").status(), 200);
}

/// Polls until the missing-symbols report has `n` rows (it is flushed every second).
fn missing_rows(s: &TestServer, n: u64) -> Value {
    let deadline = Instant::now() + crate::support::PATIENCE;
    loop {
        let v = ok(s, "/api/missing/");
        if v["total"] == n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} missing rows, have {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn misses_are_counted_reported_as_csv_and_cleared_by_an_upload() {
    let s = TestServer::start();
    for _ in 0..3 {
        let r = s.get(&format!(
            "/xul.pdb/{ID_A}/xul.sym?code_file=xul.dll&code_id=5CF0A9B1c5f2000"
        ));
        assert_eq!(r.status(), 404);
    }
    assert_eq!(s.get(&format!("/xul.pdb/{ID_A}/xul.pd_")).status(), 404);
    assert_eq!(
        s.get("/buildid/00112233445566778899aabbccddeeff00112233/debuginfo")
            .status(),
        404
    );
    let v = missing_rows(&s, 2);
    let row = v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["debug_file"] == "xul.pdb")
        .unwrap()
        .clone();
    assert_eq!(row["count"], 3);
    assert_eq!(row["debug_id"], ID_A);
    assert_eq!(row["code_file"], "xul.dll");
    assert_eq!(row["code_id"], "5CF0A9B1c5f2000");

    let csv = s.get("/missingsymbols.csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("debug_file,debug_id,code_file,code_id,count,first_seen,last_seen")
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &first[..5],
        ["xul.pdb", ID_A, "xul.dll", "5CF0A9B1c5f2000", "3"]
    );
    assert!(first[5].ends_with('Z') && first[6].ends_with('Z'));

    s.upload_ok(zip_of(&[(
        &format!("xul.pdb/{ID_A}/xul.sym"),
        &sym("xul.pdb", ID_A, ""),
    )]));
    let v = missing_rows(&s, 1);
    assert_eq!(
        v["missing"][0]["debug_file"],
        "buildid/00112233445566778899aabbccddeeff00112233/debuginfo"
    );
}

#[test]
fn a_debuginfod_miss_is_reported_by_its_build_id_and_what_was_asked() {
    let f = ElfFixture::build("victim", &["-Wl,--build-id"]);
    let s = TestServer::start();
    let id = f.build_id.to_ascii_uppercase();
    let lower = f.build_id.to_ascii_lowercase();
    for role in ["debuginfo", "executable", "debuginfo"] {
        assert_eq!(s.get(&format!("/buildid/{id}/{role}")).status(), 404);
    }
    let v = missing_rows(&s, 2);
    let rows = v["missing"].as_array().unwrap();
    let row = |role: &str| {
        let file = format!("buildid/{lower}/{role}");
        rows.iter()
            .find(|m| m["debug_file"] == file.as_str())
            .cloned()
    };
    let debuginfo = row("debuginfo").expect("the debuginfo miss");
    assert_eq!(
        (&debuginfo["debug_id"], &debuginfo["count"]),
        (&Value::from(lower.as_str()), &Value::from(2))
    );
    assert_eq!(row("executable").expect("the executable miss")["count"], 1);

    let csv = s.get("/missingsymbols.csv").text().unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("buildid/{lower}/debuginfo,{lower},,,2,"))),
        "{csv}"
    );
    let page = s.get("/missing").text().unwrap();
    assert!(
        page.contains(&format!("buildid/{lower}/executable")),
        "{page}"
    );
    assert!(!page.contains("<td>debuginfo</td>"), "{page}");

    // A file of that build id answers both.
    let debug = std::fs::read(&f.debug).unwrap();
    s.upload_ok(zip_of(&[(
        &format!("victim/{}/victim.debug", f.debug_id),
        &debug,
    )]));
    missing_rows(&s, 0);
}

#[test]
fn the_report_keeps_the_most_recent_rows() {
    let s = TestServer::with_config(|c| c.missing_max_rows = 2);
    let mut files: Vec<String> = Vec::new();
    for module in ["one.pdb", "two.pdb", "three.pdb"] {
        assert_eq!(
            s.get(&format!("/{module}/{ID_A}/{module}.sym")).status(),
            404
        );
        // Wait for this miss to be written before the next one.
        let deadline = Instant::now() + crate::support::PATIENCE;
        loop {
            let v = ok(&s, "/api/missing/");
            files = v["missing"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["debug_file"].as_str().unwrap().to_string())
                .collect();
            if files.iter().any(|f| f == module) {
                break;
            }
            assert!(Instant::now() < deadline, "{module} never reported");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Misses in different flushes have different last_seen times.
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(files, ["three.pdb", "two.pdb"]);
}

pub(crate) fn scrape(s: &TestServer) -> prometheus_parse::Scrape {
    let resp = s.get("/metrics");
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

pub(crate) fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_and_move() {
    let s = TestServer::start();
    let before = scrape(&s);
    assert_eq!(
        value(
            &before,
            "symdepot_uploads_total",
            &[("outcome", "complete")]
        ),
        0.0
    );
    let data = sym("a.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&format!("a.pdb/{ID_A}/a.sym"), &data)]));
    assert_eq!(s.get(&format!("/a.pdb/{ID_A}/a.sym")).status(), 200);
    assert_eq!(s.get(&format!("/a.pdb/{ID_B}/a.sym")).status(), 404);
    let after = scrape(&s);
    assert_eq!(
        value(&after, "symdepot_uploads_total", &[("outcome", "complete")]),
        1.0
    );
    assert_eq!(value(&after, "symdepot_files_stored_total", &[]), 1.0);
    assert_eq!(
        value(
            &after,
            "symdepot_http_requests_total",
            &[("route", "symbol"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "symdepot_http_requests_total",
            &[("route", "symbol"), ("status", "404")]
        ),
        1.0
    );
    assert!(value(&after, "symdepot_http_response_bytes_total", &[]) >= data.len() as f64);
    assert!(value(&after, "symdepot_upload_bytes_total", &[]) > 0.0);
    assert_eq!(value(&after, "symdepot_store_files", &[]), 1.0);
    assert_eq!(
        value(&after, "symdepot_store_original_bytes", &[]),
        data.len() as f64
    );
    assert_eq!(value(&after, "symdepot_missing_lookups_total", &[]), 1.0);
}

#[test]
fn pages_answer_html_with_the_same_filters_as_the_api() {
    let s = TestServer::start();
    s.upload_ok(sym_zip("a.pdb", ID_A, ""));
    for path in [
        "/",
        "/uploads",
        "/uploads/1",
        "/files",
        "/files/1",
        "/missing",
        "/uploads?user=uploader&try=false",
    ] {
        let resp = s.get(path);
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert!(resp.text().unwrap().contains("<header>"), "{path}");
    }
    assert_eq!(s.get("/uploads?page=0").status(), 400);
    assert!(s.get("/files?size=lots").text().unwrap().contains("size:"));
    assert_eq!(s.get("/uploads/99").status(), 404);
    assert_eq!(s.get("/files/99").status(), 404);
    let listing = s.get("/uploads?user=nobody").text().unwrap();
    assert!(listing.contains("0 uploads"), "{listing}");
    let search = s
        .get(&format!("/files?q={}", ID_A.to_lowercase()))
        .text()
        .unwrap();
    assert!(
        search.contains(&format!("a.pdb/{ID_A}/a.pdb.sym")),
        "{search}"
    );
}

#[test]
fn misses_counted_just_before_shutdown_are_written_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = symdepot::config::Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let daemon = runtime
        .block_on(async {
            tokio::time::timeout(
                crate::support::PATIENCE,
                symdepot::daemon::Daemon::start(config.clone()),
            )
            .await
        })
        .expect("daemon started in time")
        .expect("daemon started");
    let url = format!("http://{}/xul.pdb/{ID_A}/xul.sym", daemon.addr());
    let client = crate::support::client()
        .timeout(crate::support::PATIENCE)
        .build()
        .unwrap();
    assert_eq!(client.get(&url).send().unwrap().status(), 404);
    runtime
        .block_on(async { tokio::time::timeout(crate::support::PATIENCE, daemon.shutdown()).await })
        .expect("daemon stopped in time");
    let store = symdepot::Store::open(std::sync::Arc::new(config)).unwrap();
    let missing = store.list_missing(1).unwrap();
    assert_eq!(missing.total, 1);
    assert_eq!(missing.items[0].debug_file, "xul.pdb");
}

/// Markup a client can put into what the pages show, and how it must come out.
const SCRIPT: (&str, &str) = (
    "<script>alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
);
const BREAKOUT: (&str, &str) = (
    "\"><img src=x onerror=alert(1)>",
    "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
);
const FILE_NAME: (&str, &str) = (
    "<img src=x onerror=alert(1)>.zip",
    "&lt;img src=x onerror=alert(1)&gt;.zip",
);

/// `html` holds `value` escaped, and never as it was sent.
fn assert_escaped(what: &str, html: &str, (raw, escaped): (&str, &str)) {
    assert!(html.contains(escaped), "{what}: no {escaped} in {html}");
    assert!(!html.contains(raw), "{what}: {raw} came through as markup");
}

/// `path` with the query `pairs`, percent-encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

fn page_text(resp: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(resp.status(), status, "{}", resp.url());
    resp.text().unwrap()
}

#[test]
fn pages_show_hostile_names_escaped() {
    let s = TestServer::start();
    // A user name and an upload's file name: the records pages show both.
    let token = s.create_token(&["upload"], SCRIPT.0);
    let part = reqwest::blocking::multipart::Part::bytes(sym_zip("a.pdb", ID_A, ""))
        .file_name(FILE_NAME.0);
    let form = reqwest::blocking::multipart::Form::new().part("symbols.zip", part);
    let upload = s
        .client
        .post(s.url("/upload/"))
        .header("Auth-Token", &token);
    assert_eq!(upload.multipart(form).send().unwrap().status(), 201);
    for path in ["/", "/uploads", "/uploads/1"] {
        let html = page_text(s.get(path), 200);
        assert_escaped(path, &html, SCRIPT);
        assert_escaped(path, &html, FILE_NAME);
    }
    // A filter value, given back in its form field's attribute.
    let filtered = with_query("/uploads", &[("user", BREAKOUT.0)]);
    let html = page_text(s.get(&filtered), 200);
    assert_escaped("a filter", &html, BREAKOUT);
    assert!(
        html.contains(&format!("value=\"{}\"", BREAKOUT.1)),
        "{html}"
    );
    // A code file a client asked for, in the missing-symbols report.
    let asked = with_query(
        &format!("/b.pdb/{ID_B}/b.sym"),
        &[("code_file", BREAKOUT.0), ("code_id", "5CF0A9B1C5F2000")],
    );
    assert_eq!(s.get(&asked).status(), 404);
    s.wait_for_count("SELECT COUNT(*) FROM missing", 1);
    assert_escaped("/missing", &page_text(s.get("/missing"), 200), BREAKOUT);
}

#[test]
fn the_symbolicate_page_shows_a_hostile_job_escaped() {
    let s = TestServer::start();
    let post = |job: &str| s.client.post(s.url("/symbolicate")).form(&[("job", job)]);
    // A job that does not parse comes back in the text box, escaped.
    let breakout = format!("</textarea>{}", SCRIPT.0);
    let html = page_text(post(&breakout).send().unwrap(), 400);
    assert!(html.contains("&lt;/textarea&gt;"), "{html}");
    assert_escaped("a bad job", &html, SCRIPT);
    // A module's name, in the frames and the modules without symbols.
    let job = serde_json::json!({"memoryMap": [[SCRIPT.0, ID_A]], "stacks": [[[0, 5]]]});
    let html = page_text(post(&job.to_string()).send().unwrap(), 200);
    assert!(html.contains(&format!("<td>{}</td>", SCRIPT.1)), "{html}");
    assert_escaped("a job", &html, SCRIPT);
}
