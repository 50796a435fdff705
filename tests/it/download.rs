//! Breakpad downloads: headers, encodings, ranges, conditional requests, misses.

use crate::support::*;

fn stored(s: &TestServer) -> (String, Vec<u8>) {
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let data = sym("xul.pdb", ID_A, "INFO CODE_ID 5CF0A9B1c5f2000 xul.dll\n");
    s.upload_ok(zip_of(&[(&key, &data)]));
    (key, data)
}

#[test]
fn gzip_is_passed_through_when_accepted() {
    let s = TestServer::start();
    let (key, data) = stored(&s);
    let resp = s.get_with(&format!("/{key}"), &[("accept-encoding", "gzip")]);
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(h["access-control-allow-origin"], "*");
    let hash = blake3::hash(&data).to_hex().to_string();
    assert_eq!(h["etag"], format!("\"{hash}.gz\"").as_str());
    assert!(h.contains_key("last-modified"));
    let body = resp.bytes().unwrap();
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    assert_eq!(gunzip(&body), data);
}

#[test]
fn identity_is_decompressed_on_the_fly_and_never_labelled_identity() {
    let s = TestServer::start();
    let (key, data) = stored(&s);
    for accept in [None, Some("identity"), Some("br"), Some("gzip;q=0")] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let resp = s.get_with(&format!("/{key}"), &headers);
        assert_eq!(resp.status(), 200);
        assert!(
            !resp.headers().contains_key("content-encoding"),
            "{accept:?}"
        );
        let hash = blake3::hash(&data).to_hex().to_string();
        assert_eq!(resp.headers()["etag"], format!("\"{hash}\"").as_str());
        assert_eq!(
            resp.headers()["content-length"],
            data.len().to_string().as_str()
        );
        assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
    }
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let s = TestServer::start();
    let (key, data) = stored(&s);
    let get = s.get(&format!("/{key}"));
    let head = s.client.head(s.url(&format!("/{key}"))).send().unwrap();
    assert_eq!(head.status(), 200);
    for name in [
        "content-length",
        "content-type",
        "etag",
        "last-modified",
        "vary",
    ] {
        assert_eq!(head.headers()[name], get.headers()[name], "{name}");
    }
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert!(head.bytes().unwrap().is_empty());
    let miss = s
        .client
        .head(s.url(&format!("/nope.pdb/{ID_A}/nope.sym")))
        .send()
        .unwrap();
    assert_eq!(miss.status(), 404);
}

#[test]
fn ranges_on_identity_responses() {
    let s = TestServer::start();
    let (key, data) = stored(&s);
    let resp = s.get_with(&format!("/{key}"), &[("range", "bytes=7-12")]);
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 7-12/{}", data.len()).as_str()
    );
    assert_eq!(resp.bytes().unwrap().as_ref(), &data[7..=12]);

    let resp = s.get_with(&format!("/{key}"), &[("range", "bytes=-5")]);
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().unwrap().as_ref(), &data[data.len() - 5..]);

    let resp = s.get_with(
        &format!("/{key}"),
        &[("range", &format!("bytes={}-", data.len()))],
    );
    assert_eq!(resp.status(), 416);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{}", data.len()).as_str()
    );
    assert_eq!(resp.headers()["content-length"], "0");
    assert!(resp.bytes().unwrap().is_empty());

    // A binary stored as it is: ranges come straight from the blob.
    let bin: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let bkey = format!("lib.so/{ID_B}/lib.so");
    s.upload_ok(zip_of(&[(&bkey, &bin)]));
    let resp = s.get_with(
        &format!("/{bkey}"),
        &[("range", "bytes=9000-9999"), ("accept-encoding", "gzip")],
    );
    assert_eq!(resp.status(), 206);
    assert!(!resp.headers().contains_key("content-encoding"));
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.bytes().unwrap().as_ref(), &bin[9000..]);
}

#[test]
fn if_none_match_gets_304_per_representation() {
    let s = TestServer::start();
    let (key, _) = stored(&s);
    let etag = s.get(&format!("/{key}")).headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let resp = s.get_with(&format!("/{key}"), &[("if-none-match", &etag)]);
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"], etag.as_str());
    assert!(resp.headers().contains_key("last-modified"));
    assert!(!resp.headers().contains_key("content-encoding"));
    assert!(!resp.headers().contains_key("accept-ranges"));
    assert!(resp.bytes().unwrap().is_empty());
    // The gzip representation has its own tag.
    let resp = s.get_with(
        &format!("/{key}"),
        &[("if-none-match", &etag), ("accept-encoding", "gzip")],
    );
    assert_eq!(resp.status(), 200);
}

#[test]
fn code_file_and_code_id_redirect_to_the_debug_file() {
    let s = TestServer::start();
    let (key, data) = stored(&s);
    let resp = s.get("/xul.dll/5cf0a9b1c5f2000/xul.sym?code_file=xul.dll&code_id=5CF0A9B1c5f2000");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        format!("/{key}?code_file=xul.dll&code_id=5CF0A9B1c5f2000").as_str()
    );
    let resp = s.get("/try/XUL.DLL/5CF0A9B1C5F2000/xul.sym");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], format!("/try/{key}").as_str());
    // Only .sym names redirect.
    assert_eq!(s.get("/xul.dll/5CF0A9B1C5F2000/xul.dll").status(), 404);
    let followed = crate::support::http_get(s.url("/xul.dll/5CF0A9B1C5F2000/xul.sym")).unwrap();
    assert_eq!(followed.bytes().unwrap().as_ref(), data.as_slice());
}

#[test]
fn misses_are_404_symbol_not_found() {
    let s = TestServer::start();
    let (key, _) = stored(&s);
    for path in [
        format!("/nope.pdb/{ID_A}/nope.sym"),
        "/xul.pdb/000000000000000000000000000000000/xul.sym".to_string(),
        format!("/xul.pdb/{ID_A}/file.ptr"),
        format!("/xul.pdb/{ID_A}/xul.pd_"),
        "/a/b".to_string(),
        "/a/%2e%2e/b".to_string(),
    ] {
        let resp = s.get(&path);
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(resp.text().unwrap(), "Symbol Not Found", "{path}");
    }
    // Case-insensitive ids and doubled slashes still find the key.
    assert_eq!(s.get(&format!("//{}", key.to_lowercase())).status(), 200);
}

#[test]
fn health_routes() {
    let s = TestServer::start();
    assert_eq!(s.get("/__lbheartbeat__").status(), 200);
    let resp = s.get("/__heartbeat__");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = s.get("/__version__").json().unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].is_string());
}

#[test]
fn heartbeat_names_the_failing_check() {
    let s = TestServer::start();
    let tmp = s.data_dir().join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    let resp = s.get("/__heartbeat__");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().unwrap();
    assert!(body["errors"]["data_dir_writable"].is_string(), "{body}");
    std::fs::create_dir(&tmp).unwrap();
}

#[test]
fn cached_lookups_follow_uploads_and_replacements_at_once() {
    let s = TestServer::start();
    let key = format!("c.pdb/{ID_A}/c.sym");
    assert_eq!(s.get(&format!("/{key}")).status(), 404);
    let v1 = sym("c.pdb", ID_A, "INFO GENERATOR one\n");
    s.upload_ok(zip_of(&[(&key, &v1)]));
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        v1.as_slice()
    );
    assert_eq!(
        s.get(&format!("/{key}")).bytes().unwrap().as_ref(),
        v1.as_slice()
    );
    let v2 = sym("c.pdb", ID_A, "INFO GENERATOR two\n");
    s.upload_ok(zip_of(&[(&key, &v2)]));
    let resp = s.get_with(&format!("/{key}"), &[("accept-encoding", "gzip")]);
    assert_eq!(gunzip(&resp.bytes().unwrap()), v2);
    let resp = s.get_with(&format!("/{key}"), &[("range", "bytes=0-5")]);
    assert_eq!(resp.bytes().unwrap().as_ref(), &v2[..6]);
}
