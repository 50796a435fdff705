//! Upstreams (`spec/mirror.md`): files fetched from other symbol servers live
//! in a third namespace, `cache`, that never overrides release or try.

use symdepot::store::{Namespace, NewKey};

use crate::support::*;

/// Stores `data` under `key` in `ns` straight through the store, as a fetch
/// from an upstream does.
fn store_in(s: &TestServer, ns: Namespace, key: &str, data: &[u8]) {
    let store = s.store();
    let hash = blake3::hash(data).to_hex().to_string();
    let file = key.rsplit('/').next().unwrap();
    let enc = store.encoding_for(file);
    let stored_size = store.ensure_blob(&hash, enc, &mut &data[..]).unwrap();
    let id = symdepot::identity::identify_bytes(data, file);
    let new = NewKey {
        namespace: ns,
        key,
        hash: &hash,
        encoding: enc,
        size: data.len() as u64,
        stored_size,
        identity: &id,
    };
    assert!(store.commit_key(None, &new).unwrap().is_some());
}

#[test]
fn a_cached_file_is_served_until_an_upload_of_the_same_key_wins() {
    let s = TestServer::start();
    let key = format!("c.pdb/{ID_A}/c.sym");
    let fetched = sym("c.pdb", ID_A, "INFO GENERATOR upstream\n");
    store_in(&s, Namespace::Cache, &key, &fetched);
    let got = |path: &str| s.get(path).bytes().unwrap().to_vec();
    assert_eq!(got(&format!("/{key}")), fetched);
    assert_eq!(got(&format!("/try/{key}")), fetched);
    // A try upload wins where try is asked for, and only there.
    let tried = sym("c.pdb", ID_A, "INFO GENERATOR try\n");
    assert_eq!(
        s.upload_with(&s.token, zip_of(&[(&key, &tried)]), Some("1"))
            .status(),
        201
    );
    assert_eq!(got(&format!("/try/{key}")), tried);
    assert_eq!(got(&format!("/{key}")), fetched);
    // A release upload wins everywhere; the cached file stays beside it.
    let released = sym("c.pdb", ID_A, "INFO GENERATOR release\n");
    s.upload_ok(zip_of(&[(&key, &released)]));
    assert_eq!(got(&format!("/{key}")), released);
    assert_eq!(got(&format!("/try/{key}")), released);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM keys WHERE namespace = 'cache'"),
        1
    );
    // The store verifies clean with a cache namespace in it.
    let report = s.store().verify(false).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.keys, 3);
}

#[test]
fn a_bad_upstream_stops_the_daemon_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("symdepot.toml");
    std::fs::write(
        &conf,
        "[[upstream]]\nurl = \"https://sym.example/\"\nprotocol = \"breakpad\"\n\
         headers = { Authorization = \"Bearer s3cret\" }\n\
         [[upstream]]\nurl = \"https://other.example/\"\nprotocol = \"breakpad\"\n\
         include = [\"*.{pdb\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    for (env, expect) in [
        (None, "upstream[2].include"),
        (Some("gopher+https://x.example/"), "upstreams"),
    ] {
        let mut c = symdepot(&data);
        c.arg("--config").arg(&conf);
        if let Some(short) = env {
            std::fs::write(&conf, "").unwrap();
            c.env("SYMDEPOT_UPSTREAMS", short);
        }
        let out = c
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
