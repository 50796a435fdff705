//! Private stores (`private_downloads = true`): every download route needs a
//! token with `download`, records need `view_all`, health stays open.

use base64::Engine;

use crate::support::*;

fn basic(secret: &str) -> String {
    let pair = format!("windbg:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn private() -> TestServer {
    TestServer::with_config(|c| c.private_downloads = true)
}

#[test]
fn breakpad_downloads_need_a_download_token_in_any_form() {
    let s = private();
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let data = sym("xul.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&key, &data)]));
    let path = format!("/{key}");

    let anonymous = s.get(&path);
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"symdepot\""
    );
    let head = s.client.head(s.url(&path)).send().unwrap();
    assert_eq!(head.status(), 401);
    assert_eq!(
        s.get_with(&path, &[("Auth-Token", "0123456789abcdef0123456789abcdef")])
            .status(),
        401,
        "an unknown token is no credential"
    );
    assert_eq!(
        s.get_with(&path, &[("Auth-Token", &s.token)]).status(),
        403,
        "an upload token cannot read a private store"
    );

    let reader = s.create_token(&["download"], "reader");
    let bearer = format!("Bearer {reader}");
    let basic = basic(&reader);
    let labelled = format!("{reader}-ci");
    for (name, value) in [
        ("Auth-Token", labelled.as_str()),
        ("Authorization", bearer.as_str()),
        ("Authorization", basic.as_str()),
    ] {
        let resp = s.get_with(&path, &[(name, value)]);
        assert_eq!(resp.status(), 200, "{name}: {value}");
        assert_eq!(resp.bytes().unwrap().as_ref(), data.as_slice());
    }
    let miss = s.get_with(
        &format!("/nope.pdb/{ID_A}/nope.sym"),
        &[("Auth-Token", &reader)],
    );
    assert_eq!(miss.status(), 404);
    assert_eq!(
        s.get(&format!("/nope.pdb/{ID_A}/nope.sym")).status(),
        401,
        "a miss tells an anonymous client nothing"
    );
}

#[test]
fn expired_and_revoked_tokens_cannot_download() {
    let s = private();
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    s.upload_ok(zip_of(&[(&key, &sym("xul.pdb", ID_A, ""))]));
    let expired = s.create_token_expiring(&["download"], "old", Some(-1));
    assert_eq!(
        s.get_with(&format!("/{key}"), &[("Auth-Token", &expired)])
            .status(),
        401
    );
    let reader = s.create_token(&["download"], "reader");
    assert_eq!(
        s.get_with(&format!("/{key}"), &[("Auth-Token", &reader)])
            .status(),
        200
    );
    let id = s
        .store()
        .list_tokens()
        .unwrap()
        .into_iter()
        .find(|t| t.user == "reader")
        .unwrap()
        .id;
    s.store().revoke_token(id).unwrap();
    assert_eq!(
        s.get_with(&format!("/{key}"), &[("Auth-Token", &reader)])
            .status(),
        401,
        "a revoked token is refused from the next request on"
    );
}

#[test]
fn debuginfod_and_ssqp_routes_need_a_download_token() {
    let f = ElfFixture::build("hidden", &["-Wl,--build-id"]);
    let s = private();
    s.upload_elf(&f);
    let reader = s.create_token(&["download"], "reader");
    let bearer = format!("Bearer {reader}");
    let basic = basic(&reader);
    let debug = std::fs::read(&f.debug).unwrap();
    for (path, auth) in [
        (format!("/buildid/{}/debuginfo", f.build_id), &bearer),
        (format!("/buildid/{}/section/.text", f.build_id), &bearer),
        (
            format!("/_.debug/elf-buildid-sym-{}/_.debug", f.build_id),
            &basic,
        ),
    ] {
        assert_eq!(s.get(&path).status(), 401, "{path}");
        assert_eq!(
            s.get_with(&path, &[("Authorization", &format!("Bearer {}", s.token))])
                .status(),
            403,
            "{path}"
        );
        let resp = s.get_with(&path, &[("Authorization", auth)]);
        assert_eq!(resp.status(), 200, "{path}");
        if !path.contains("/section/") {
            assert_eq!(resp.bytes().unwrap().as_ref(), debug.as_slice(), "{path}");
        }
    }
    assert_eq!(
        s.get("/buildid/xyz/debuginfo").status(),
        401,
        "even a malformed build id needs credentials first"
    );
}

#[test]
fn a_private_store_keeps_its_records_private_and_its_health_open() {
    let s = private();
    for path in ["/api/uploads/", "/api/stats/", "/metrics", "/", "/files"] {
        assert_eq!(s.get(path).status(), 401, "{path}");
    }
    let reader = s.create_token(&["download"], "reader");
    assert_eq!(
        s.get_with("/api/uploads/", &[("Auth-Token", &reader)])
            .status(),
        403,
        "download is not view_all"
    );
    let viewer = s.create_token(&["view_all"], "viewer");
    assert_eq!(
        s.get_with("/api/uploads/", &[("Auth-Token", &viewer)])
            .status(),
        200
    );
    for path in ["/__lbheartbeat__", "/__heartbeat__", "/__version__"] {
        assert_eq!(s.get(path).status(), 200, "{path}");
    }
    // Uploads keep Tecken's contract.
    let key = format!("a.pdb/{ID_A}/a.sym");
    s.upload_ok(zip_of(&[(&key, &sym("a.pdb", ID_A, ""))]));
}

#[test]
fn a_try_only_token_never_writes_a_release_file_whatever_try_says() {
    let s = TestServer::start();
    let try_token = s.create_token(&["upload_try"], "tryer");
    let values = [
        None,
        Some("0"),
        Some("false"),
        Some("no"),
        Some(""),
        Some("1"),
        Some("true"),
        Some("yes"),
        Some("TRUE"),
        Some("release"),
    ];
    for (i, value) in values.iter().enumerate() {
        let module = format!("t{i}.pdb");
        let key = format!("{module}/{ID_A}/t.sym");
        let resp = s.upload_with(
            &try_token,
            zip_of(&[(&key, &sym(&module, ID_A, ""))]),
            *value,
        );
        let status = resp.status();
        let body: serde_json::Value = resp.json().unwrap();
        match status.as_u16() {
            201 => assert_eq!(body["upload"]["try_symbols"], true, "try={value:?}"),
            400 => assert!(body["error"].as_str().unwrap().contains("try"), "{body}"),
            other => panic!("try={value:?}: {other} {body}"),
        }
        assert_eq!(s.get(&format!("/{key}")).status(), 404, "try={value:?}");
    }
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'release'"),
        0
    );
    assert!(s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'try'") >= 8);
}

#[test]
fn token_secrets_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let secret = |perm: &str| create_token_cli(dir.path(), perm);
    let (uploader, reader) = (secret("upload"), secret("download"));
    let log = dir.path().join("daemon.log");
    let mut child = symdepot(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SYMDEPOT_LOG", "debug")
        .env("SYMDEPOT_PRIVATE_DOWNLOADS", "true")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(pos) = text.find("listening on http://") {
            let rest = &text[pos + "listening on http://".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no address logged");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let client = crate::support::client().build().unwrap();
    let key = format!("xul.pdb/{ID_A}/xul.sym");
    let part =
        reqwest::blocking::multipart::Part::bytes(zip_of(&[(&key, &sym("xul.pdb", ID_A, ""))]))
            .file_name("symbols.zip");
    let resp = client
        .post(format!("http://{addr}/upload/"))
        .header("Auth-Token", format!("{uploader}-label"))
        .multipart(reqwest::blocking::multipart::Form::new().part("symbols.zip", part))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    for auth in [
        format!("Bearer {reader}"),
        basic(&reader),
        format!("Bearer {uploader}"),
    ] {
        let resp = client
            .get(format!("http://{addr}/{key}?token={reader}"))
            .header("Authorization", auth)
            .send()
            .unwrap();
        assert!(resp.status() == 200 || resp.status() == 403);
    }
    sigterm(&child);
    wait_exit(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("request"),
        "the debug log has the requests: {text}"
    );
    for secret in [&uploader, &reader] {
        assert!(
            !text.contains(secret.as_str()),
            "a token secret is in the log"
        );
    }
}

#[test]
fn symbolication_needs_a_download_token() {
    let s = private();
    let data = sym("xul.pdb", ID_A, "");
    s.upload_ok(zip_of(&[(&format!("xul.pdb/{ID_A}/xul.sym"), &data)]));
    let body = format!(r#"{{"memoryMap": [["xul.pdb", "{ID_A}"]], "stacks": [[[0, 4100]]]}}"#);
    let post = |token: Option<&str>| {
        let mut req = s.client.post(s.url("/symbolicate/v5")).body(body.clone());
        if let Some(t) = token {
            req = req.header("Auth-Token", t);
        }
        req.send().unwrap()
    };
    assert_eq!(post(None).status(), 401);
    let reader = s.create_token(&["download"], "reader");
    let resp = post(Some(&reader));
    assert_eq!(resp.status(), 200);
    assert!(resp.text().unwrap().contains("\"function\":\"main\""));
}
