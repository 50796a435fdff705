//! Keys made from input never name a path outside the store: the segment rule
//! on every route that makes a key, and the store's own check at its door.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::blocking::multipart;
use symdepot::identity::Identity;
use symdepot::store::gc::GcMode;
use symdepot::store::{Encoding, Namespace, NewKey};

use crate::support::*;

const MAP: &str = r#"{"version":3,"sources":["app.ts"],"names":[],"mappings":"AAAA","debugId":"85314830-023f-4cf1-a267-535f4e37bb17"}"#;

/// `POST /upload/?layout=auto` with one file part named `file_name`.
fn upload_auto_as(
    s: &TestServer,
    token: &str,
    file_name: &str,
    bytes: Vec<u8>,
) -> reqwest::blocking::Response {
    let form = multipart::Form::new().part(
        "file",
        multipart::Part::bytes(bytes).file_name(file_name.to_string()),
    );
    s.client
        .post(s.url("/upload/?layout=auto"))
        .header("Auth-Token", token)
        .multipart(form)
        .send()
        .unwrap()
}

/// A file next to the data dir that an escaping key would reach.
fn victim(s: &TestServer) -> PathBuf {
    let p = s.dir.path().join("VICTIM.txt");
    std::fs::write(&p, b"precious").unwrap();
    p
}

fn assert_untouched(p: &Path) {
    assert_eq!(std::fs::read(p).unwrap(), b"precious", "{}", p.display());
}

#[test]
fn an_auto_upload_whose_file_name_climbs_out_is_refused_and_writes_nothing() {
    let s = TestServer::start();
    let victim = victim(&s);
    let try_only = s.create_token(&["upload_try"], "attacker");
    for name in [
        "../../../../VICTIM.txt",
        "x/../../../../VICTIM.txt",
        "/etc/VICTIM.txt",
        "..\\..\\VICTIM.txt",
    ] {
        let resp = upload_auto_as(&s, &try_only, name, sym("x.pdb", ID_A, ""));
        assert_eq!(resp.status(), 400, "{name}");
        let body: serde_json::Value = resp.json().unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
    assert_untouched(&victim);
    assert_nothing_stored(&s);
}

#[test]
fn a_multipart_file_name_with_folders_keeps_only_its_last_segment() {
    let s = TestServer::start();
    let resp = upload_auto_as(&s, &s.token, "a/b/c/app.js.map", MAP.as_bytes().to_vec());
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        body["upload"]["uploaded_keys"],
        serde_json::json!(["app.js.map/85314830023F4CF1A267535F4E37BB170/app.js.map"])
    );
}

#[test]
fn an_auto_placed_sym_gets_the_name_breakpad_clients_ask_for() {
    let s = TestServer::start();
    for (upload_name, module, expected) in [
        ("libc.sym", "libc.so.6", "libc.so.6.sym"),
        ("whatever.sym", "xul.pdb", "xul.sym"),
        ("UPPER.sym", "KERNEL32.PDB", "KERNEL32.sym"),
    ] {
        let resp = upload_auto_as(&s, &s.token, upload_name, sym(module, ID_A, ""));
        assert_eq!(resp.status(), 201, "{upload_name}");
        let key = format!("{module}/{ID_A}/{expected}");
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["upload"]["uploaded_keys"], serde_json::json!([key]));
        assert_eq!(s.get(&format!("/{key}")).status(), 200, "{key}");
    }
}

#[test]
fn a_sym_whose_module_line_names_a_path_cannot_be_placed() {
    let s = TestServer::start();
    for module in ["../../etc", "a/b", "..", "a\\b"] {
        let resp = upload_auto_as(&s, &s.token, "x.sym", sym(module, ID_A, ""));
        assert_eq!(resp.status(), 400, "{module}");
    }
    assert_nothing_stored(&s);
}

#[test]
fn zero_debug_ids_are_refused_at_upload() {
    let s = TestServer::start();
    let zero = "0".repeat(33);
    let zip = zip_of(&[(&format!("m.pdb/{zero}/m.sym"), &sym("m.pdb", &zero, ""))]);
    let body = refused(&s, zip, 400);
    assert!(
        body["error"].as_str().unwrap().contains("all zeros"),
        "{body}"
    );
    // Placed by identity, the same rule.
    let resp = upload_auto_as(&s, &s.token, "m.sym", sym("m.pdb", &zero, ""));
    assert_eq!(resp.status(), 400);
    assert_nothing_stored(&s);
}

#[test]
fn bidirectional_and_invisible_format_characters_in_member_names_are_refused() {
    let s = TestServer::start();
    for c in [
        '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{FEFF}',
    ] {
        let module = format!("evil{c}fdp.exe");
        let zip = zip_of(&[(&format!("{module}/{ID_A}/x.sym"), &sym(&module, ID_A, ""))]);
        let body = refused(&s, zip, 400);
        assert!(
            body["error"].as_str().unwrap().contains("format character"),
            "{c:?}: {body}"
        );
    }
    assert_nothing_stored(&s);
}

/// Stores a blob and returns what commits it under `key`.
fn blob_for<'a>(s: &TestServer, data: &[u8], id: &'a Identity) -> (String, NewKey<'a>) {
    let hash = blake3::hash(data).to_hex().to_string();
    s.store()
        .ensure_blob(&hash, Encoding::Identity, &mut &data[..])
        .unwrap();
    let new = NewKey {
        namespace: Namespace::Release,
        key: "",
        hash: "",
        encoding: Encoding::Identity,
        size: data.len() as u64,
        stored_size: data.len() as u64,
        identity: id,
    };
    (hash, new)
}

#[test]
fn the_store_door_refuses_hostile_keys_handed_to_it_directly() {
    let s = TestServer::start();
    let victim = victim(&s);
    let id = Identity::default();
    let (hash, new) = blob_for(&s, b"attacker's bytes", &id);
    for key in [
        "x.pdb/ABC/../../../../VICTIM.txt",
        "../../VICTIM.txt",
        "a/b/c/d/e",
        "/abs/ABC/f",
        "a/./b",
        "a//b",
        "m/ABC/f\0",
    ] {
        let new = NewKey {
            key,
            hash: &hash,
            ..new.clone()
        };
        let err = s.store().commit_key(None, &new).unwrap_err();
        assert!(
            matches!(err, symdepot::Error::Invalid { .. }),
            "{key}: {err}"
        );
        assert!(s.store().entry_path(Namespace::Release, key).is_err());
    }
    assert_untouched(&victim);
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);
    assert!(s.entries().is_empty());
}

#[test]
fn a_hostile_row_from_an_older_index_is_deleted_without_touching_the_disk() {
    let s = TestServer::start();
    let victim = victim(&s);
    // What the vulnerable version stored for `../../../../VICTIM.txt`.
    let key = format!("x.pdb/{ID_A}/../../../../VICTIM.txt");
    let hash = blake3::hash(b"x").to_hex();
    s.index()
        .exec(
            "INSERT INTO keys (namespace, key, key_norm, blob, encoding, size, stored_size, kind, \
             created_at, last_uploaded_at) VALUES ('try', ?1, lower(?1), ?2, 'identity', 1, 1, \
             'sym', 0, 0)",
            &symdepot::sql_params![key.as_str(), hash.as_str()],
        )
        .unwrap();
    // Expiry (try files are long expired) and delete both refuse to touch the path.
    let r = s.store().gc(SystemTime::now(), GcMode::Force).unwrap();
    assert_eq!(r.expired.len(), 1);
    assert_untouched(&victim);
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);
}

#[test]
fn a_symlink_planted_in_the_layout_tree_is_never_written_or_deleted_through() {
    crate::local_only!("the layout tree");
    let s = TestServer::start();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        s.data_dir().join("release").join("evil.pdb"),
    )
    .unwrap();
    let zip = zip_of(&[(
        &format!("evil.pdb/{ID_A}/evil.sym"),
        &sym("evil.pdb", ID_A, ""),
    )]);
    // The store's own tree is wrong, not the request: a 500 that shows no server path.
    let resp = s.upload(zip);
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().unwrap();
    let data_dir = s.data_dir().to_string_lossy().into_owned();
    assert!(!body.to_string().contains(&data_dir), "{body}");
    assert!(files_under(outside.path()).is_empty());
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);

    // GC does not walk into it either: an old file there is not an orphan entry.
    std::fs::create_dir(outside.path().join(ID_A)).unwrap();
    let precious = outside.path().join(ID_A).join("evil.sym");
    std::fs::write(&precious, b"precious").unwrap();
    let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&precious)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let r = s.store().gc(later, GcMode::Force).unwrap();
    assert!(r.entries.is_empty(), "{:?}", r.entries);
    assert_untouched(&precious);
}

#[test]
fn reindex_of_a_tampered_tree_skips_entries_the_rules_refuse_and_follows_no_link() {
    crate::local_only!("reindex from the layout tree");
    let s = TestServer::start();
    let (name, data) = good_member();
    s.upload_ok(zip_of(&[(&name, &data)]));
    let release = s.data_dir().join("release");
    // A name with a bidi override, and a linked folder pointing outside.
    let bad = release.join("a\u{202E}b.pdb").join(ID_A);
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("a.sym"), sym("a\u{202E}b.pdb", ID_A, "")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join(ID_A)).unwrap();
    std::fs::write(
        outside.path().join(ID_A).join("o.sym"),
        sym("o.pdb", ID_A, ""),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), release.join("o.pdb")).unwrap();
    let (n, skipped) = s.store().reindex(&mut symdepot::store::Unwatched).unwrap();
    assert_eq!(n, 1, "{skipped:?}");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].1.contains("format character"), "{skipped:?}");
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 1);
}
