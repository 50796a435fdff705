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
