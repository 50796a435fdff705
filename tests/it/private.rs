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
