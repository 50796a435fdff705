//! `symdepot migrate --to-config`: a single machine's store copied into
//! PostgreSQL + S3 while its daemon serves, interrupted once and resumed, and
//! the cluster's copied back onto one disk; each copy verified and served.

use std::io::BufRead;
use std::path::Path;

use crate::garage::Garage;
use crate::postgres::Postgres;
use crate::support::*;
use symdepot::store::sql::ConnExt;

/// A configuration file of `SYMDEPOT_*` pairs (names lower-cased, without
/// the prefix; `true`/`false` as booleans).
fn config_file(dir: &Path, name: &str, pairs: &[(&str, String)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (k, v) in pairs {
        let key = k.trim_start_matches("SYMDEPOT_").to_lowercase();
        match v.as_str() {
            "true" | "false" => text.push_str(&format!("{key} = {v}\n")),
            _ => text.push_str(&format!("{key} = {v:?}\n")),
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_ok(c: &mut std::process::Command) -> String {
    stdout_ok(c.output().unwrap())
}

#[test]
fn a_store_moves_to_a_cluster_and_back_resuming_after_an_interruption() {
    crate::local_only!("the source and targets are chosen by the test itself");
    crate::sqlite_only!("the source and targets are chosen by the test itself");
    let pg = Postgres::start();
    let g = Garage::start();
    let conf = tempfile::tempdir().unwrap();
    let cluster_data = conf.path().join("cluster-data");
    let mut cluster_pairs = crate::backend::env_of(&g.bucket(), "");
    cluster_pairs.push(("SYMDEPOT_DATABASE_URL", pg.url()));
    cluster_pairs.push(("SYMDEPOT_DATA_DIR", cluster_data.display().to_string()));
    let cluster_toml = config_file(conf.path(), "cluster.toml", &cluster_pairs);

    // A single machine's store, its daemon serving throughout.
    let src = TestServer::start();
    let mut expected = members(0, 60);
    upload_members(&src, &expected);
    let tried = members(100, 2);
    let refs: Vec<(&str, &[u8])> = tried.iter().map(|(k, d)| (k.as_str(), &d[..])).collect();
    assert_eq!(
        src.upload_with(&src.token, zip_of(&refs), Some("1"))
            .status(),
        201
    );
    let reader = src.create_token(&["upload"], "second");
    let miss = format!("/gone.pdb/{ID_B}/gone.sym");
    assert_eq!(src.get(&miss).status(), 404);
    src.wait_for_count("SELECT COUNT(*) FROM missing", 1);

    // The first run is killed while it copies keys (five per transaction).
    let mut first = symdepot(&src.data_dir())
        .args(["migrate", "--batch", "5", "--to-config"])
        .arg(&cluster_toml)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(first.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let copying_keys = line.starts_with("keys ");
        seen.push(line);
        if copying_keys {
            first.kill().unwrap();
            break;
        }
    }
    first.wait().unwrap();
    let half: i64 = pg
        .client()
        .query_one("SELECT COUNT(*) FROM keys", &[])
        .unwrap()
        .get(0);
    assert!(half > 0 && half < 62, "{half} keys copied; {seen:?}");
    // Half a copy is not served.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"))
        .arg("--config")
        .arg(&cluster_toml)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unfinished `symdepot migrate`"), "{err}");

    // The source goes on meanwhile: a key added, one replaced, one deleted.
    let added = members(60, 1);
    upload_members(&src, &added);
    expected.extend(added);
    let (k0, _) = expected[0].clone();
    let v2 = sym("m0.pdb", ID_A, "INFO GENERATOR second\n");
    src.upload_ok(zip_of(&[(&k0, &v2)]));
    expected[0].1 = v2;
    let (k1, _) = expected.remove(1);
    run_ok(symdepot(&src.data_dir()).args(["delete", &k1]));

    // Run again: it completes, catching up, and verifies the copy.
    let out = run_ok(
        symdepot(&src.data_dir())
            .args(["migrate", "--batch", "5", "--to-config"])
            .arg(&cluster_toml),
    );
    assert!(out.contains("copied 62 keys"), "{out}");
    assert!(out.contains("verified 62 keys"), "{out}");
    let uploads = src.count("SELECT COUNT(*) FROM uploads");

    // A daemon of the cluster serves the copy: keys, try keys, history,
    // tokens and the missing-symbols report.
    let cluster = TestServer::with_config(|c| {
        c.database_url = pg.url();
        g.configure(c);
    });
    assert_served(&cluster.addr.to_string(), &expected);
    assert_eq!(cluster.get(&format!("/{k1}")).status(), 404);
    let try_key = &tried[0].0;
    assert_eq!(cluster.get(&format!("/{try_key}?try")).status(), 200);
    assert_eq!(cluster.count("SELECT COUNT(*) FROM keys"), 62);
    assert_eq!(cluster.count("SELECT COUNT(*) FROM uploads"), uploads);
    assert_eq!(
        cluster.count("SELECT COUNT(*) FROM missing WHERE debug_file = 'gone.pdb'"),
        1
    );
    let more = members(200, 1);
    let refs: Vec<(&str, &[u8])> = more.iter().map(|(k, d)| (k.as_str(), &d[..])).collect();
    assert_eq!(
        cluster.upload_with(&reader, zip_of(&refs), None).status(),
        201,
        "a token of the old store uploads to the cluster"
    );
    expected.extend(more);
    // The cluster has taken an upload of its own: migrating again would
    // overwrite it, and is refused.
    let out = symdepot(&src.data_dir())
        .args(["migrate", "--to-config"])
        .arg(&cluster_toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("taken uploads, keys or tokens of its own"),
        "{err}"
    );
    // Copied records get manifests: the cluster's index can be rebuilt from the bucket.
    assert!(
        cluster.count(
            "SELECT COUNT(*) FROM uploads WHERE manifest_at IS NULL AND status = 'complete'"
        ) == 0
    );

    // And back onto one disk (an air-gapped copy), from the cluster's
    // configuration in the environment.
    let back = conf.path().join("back");
    let local_toml = config_file(
        conf.path(),
        "local.toml",
        &[("SYMDEPOT_DATA_DIR", back.display().to_string())],
    );
    let mut to_local = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"));
    to_local
        .envs(cluster_pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["migrate", "--to-config"])
        .arg(&local_toml);
    let out = run_ok(&mut to_local);
    assert!(out.contains("verified 63 keys"), "{out}");
    let (mut d, addr) = spawn_daemon(&back);
    assert_served(&addr, &expected);
    sigterm(&d);
    wait_exit(&mut d);
    // A plain single-machine store: the layout tree and a clean verify.
    assert!(back.join("release").join(&expected[0].0).is_file());
    run_ok(symdepot(&back).arg("verify"));
    // Migrating into a store of its own (here: it has a token) is refused,
    // and so is one a daemon serves.
    let other = conf.path().join("other");
    run_ok(symdepot(&other).args(["token", "create", "--permission", "upload"]));
    let other_toml = config_file(
        conf.path(),
        "other.toml",
        &[("SYMDEPOT_DATA_DIR", other.display().to_string())],
    );
    let out = symdepot(&src.data_dir())
        .args(["migrate", "--to-config"])
        .arg(&other_toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds keys"), "{err}");
    assert_eq!(
        index_of(&other)
            .one::<i64>("SELECT COUNT(*) FROM keys", &[])
            .unwrap(),
        0
    );
    let serving_toml = config_file(
        conf.path(),
        "serving.toml",
        &[("SYMDEPOT_DATA_DIR", src.data_dir().display().to_string())],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"))
        .envs(cluster_pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["migrate", "--to-config"])
        .arg(&serving_toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another symdepot serve"), "{err}");
}
