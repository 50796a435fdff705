//! Which blob backend the suite runs on.
//!
//! `scripts/test` runs the integration suite twice: on local disk (the
//! default) and with `SYMDEPOT_TEST_BLOB_STORE=s3`, where every test server
//! and every `symdepot` command that does not choose its own blob store keeps
//! its blobs in one Garage shared by the test process, each data dir under
//! its own `s3_prefix`. Tests of what only local disk has (the layout tree,
//! blob files to damage, `reindex`, a full disk) say so with `local_only!`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::garage::Garage;

/// Whether this run keeps blobs on S3.
pub fn on_s3() -> bool {
    std::env::var("SYMDEPOT_TEST_BLOB_STORE").is_ok_and(|v| v == "s3")
}

/// Skips the rest of a test on the S3 run, naming why it needs local disk.
#[macro_export]
macro_rules! local_only {
    ($why:expr) => {
        if $crate::backend::on_s3() {
            eprintln!("local disk only: {}", $why);
            return;
        }
    };
}

/// Skips the rest of a test on the PostgreSQL run, naming why it needs the
/// SQLite index (its file damaged, deleted or copied).
#[macro_export]
macro_rules! sqlite_only {
    ($why:expr) => {
        if $crate::backend::on_pg() {
            eprintln!("SQLite index only: {}", $why);
            return;
        }
    };
}

/// For a test that keeps its blobs on an object store of its own (a Garage it
/// starts): the S3 run would run it again unchanged, so it runs on the others
/// only. On its thread, a store started on the default blob store fails the
/// test, and `symdepot` commands get no shared-bucket settings.
#[macro_export]
macro_rules! own_blob_store {
    ($why:expr) => {
        $crate::backend::choose_own(true, false);
        if $crate::backend::on_s3() {
            eprintln!("its own blob store, the same on every run: {}", $why);
            return;
        }
    };
}

/// For a test that keeps its index on a PostgreSQL of its own: the PostgreSQL
/// run would run it again unchanged, so it runs on the others only. On its
/// thread, a store started on the default index fails the test, and
/// `symdepot` commands get no shared-database settings.
#[macro_export]
macro_rules! own_index {
    ($why:expr) => {
        $crate::backend::choose_own(false, true);
        if $crate::backend::on_pg() {
            eprintln!("its own index, the same on every run: {}", $why);
            return;
        }
    };
}

thread_local! {
    /// What the running test said it chooses itself: (blob store, index).
    static OWN: std::cell::Cell<(bool, bool)> = const { std::cell::Cell::new((false, false)) };
}

/// Records, for this test's thread, that it chooses its blob store and/or index.
pub fn choose_own(blobs: bool, index: bool) {
    OWN.with(|o| {
        let (b, i) = o.get();
        o.set((b || blobs, i || index));
    });
}

fn own() -> (bool, bool) {
    OWN.with(|o| o.get())
}

/// Where the shared Garage listens and the key that may use its bucket.
#[derive(Clone)]
pub struct SharedBucket {
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl SharedBucket {
    /// Points a configuration at this bucket.
    pub fn configure(&self, c: &mut symdepot::Config) {
        c.blob_store = "s3".into();
        c.s3_endpoint = self.endpoint.clone();
        c.s3_bucket = self.bucket.clone();
        c.s3_region = "garage".into();
        c.s3_access_key_id = self.key_id.clone();
        c.s3_secret_access_key = self.secret.clone();
        c.s3_allow_http = true;
    }
}

/// The Garage of this test process, started on first use. It lives on a
/// thread that never ends, and dies with the process (`PR_SET_PDEATHSIG`).
pub fn shared() -> &'static SharedBucket {
    static SHARED: OnceLock<SharedBucket> = OnceLock::new();
    SHARED.get_or_init(|| {
        crate::garage::remove_abandoned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let g = Garage::start();
            tx.send(SharedBucket {
                endpoint: g.endpoint.clone(),
                bucket: g.bucket.clone(),
                key_id: g.key_id.clone(),
                secret: g.secret.clone(),
            })
            .unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the shared Garage started")
    })
}

/// The prefix of a data dir's blobs in the shared bucket.
pub fn prefix_for(data_dir: &Path) -> String {
    let hash = blake3::hash(data_dir.as_os_str().as_encoded_bytes());
    format!("t-{}/", &hash.to_hex()[..16])
}

/// Points a configuration that keeps the default local blobs at the shared
/// bucket (on the S3 run only).
pub fn apply(c: &mut symdepot::Config) {
    let (own_blobs, own_index) = own();
    assert!(
        !own_blobs || c.blob_store != "local",
        "this test says it keeps its blobs on its own object store, yet starts a store on local disk: \
         the S3 run, which it skips, would have moved them"
    );
    assert!(
        !own_index || !c.database_url.is_empty(),
        "this test says it keeps its index on its own PostgreSQL, yet starts a store on SQLite: \
         the PostgreSQL run, which it skips, would have moved it"
    );
    if on_s3() && c.blob_store == "local" {
        shared().configure(c);
        c.s3_prefix = prefix_for(&c.data_dir);
    }
    if on_pg() && c.database_url.is_empty() {
        c.database_url = database_for(&c.data_dir);
    }
}

/// The same settings as `SYMDEPOT_*` variables, for a `symdepot` command
/// (none that a test choosing its own engines would override).
pub fn env_for(data_dir: &Path) -> Vec<(&'static str, String)> {
    let (own_blobs, own_index) = own();
    let mut env = Vec::new();
    if on_s3() && !own_blobs {
        env = env_of(shared(), &prefix_for(data_dir));
    }
    if on_pg() && !own_index {
        env.push(("SYMDEPOT_DATABASE_URL", database_for(data_dir)));
    }
    env
}

/// The settings of bucket `b` under `prefix` as `SYMDEPOT_*` variables.
pub fn env_of(b: &SharedBucket, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SYMDEPOT_BLOB_STORE", "s3".into()),
        ("SYMDEPOT_S3_ENDPOINT", b.endpoint.clone()),
        ("SYMDEPOT_S3_BUCKET", b.bucket.clone()),
        ("SYMDEPOT_S3_REGION", "garage".into()),
        ("SYMDEPOT_S3_ACCESS_KEY_ID", b.key_id.clone()),
        ("SYMDEPOT_S3_SECRET_ACCESS_KEY", b.secret.clone()),
        ("SYMDEPOT_S3_ALLOW_HTTP", "true".into()),
        ("SYMDEPOT_S3_PREFIX", prefix.to_string()),
    ]
}

/// The shared bucket, read and written straight (not through symdepot): to
/// look at what the store keeps and to damage it as a disk fault would.
struct Bucket {
    store: object_store::aws::AmazonS3,
    rt: tokio::runtime::Runtime,
}

fn bucket_of(b: &SharedBucket) -> Bucket {
    Bucket {
        store: object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&b.endpoint)
            .with_bucket_name(&b.bucket)
            .with_region("garage")
            .with_access_key_id(&b.key_id)
            .with_secret_access_key(&b.secret)
            .with_allow_http(true)
            .build()
            .unwrap(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    }
}

/// The objects under `prefix`, named relative to it (`objects/ab/cd/<hash>[.gz]`
/// or `uploads/<id>.json`), with their last-modified times.
pub fn objects_with_times(prefix: &str) -> Vec<(PathBuf, SystemTime)> {
    objects_in(shared(), prefix)
}

/// The objects under `prefix` in bucket `at`, named relative to it.
pub fn objects_in(at: &SharedBucket, prefix: &str) -> Vec<(PathBuf, SystemTime)> {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let b = bucket_of(at);
    let path = object_store::path::Path::from(prefix.trim_end_matches('/'));
    let mut names: Vec<(PathBuf, SystemTime)> = b.rt.block_on(async {
        b.store
            .list(Some(&path))
            .map(|m| {
                let m = m.unwrap();
                let name = m
                    .location
                    .as_ref()
                    .strip_prefix(prefix)
                    .unwrap()
                    .to_string();
                (PathBuf::from(name), SystemTime::from(m.last_modified))
            })
            .collect()
            .await
    });
    names.sort();
    names
}

/// The blobs under `prefix` (the `objects/` part of the prefix).
pub fn objects_under(prefix: &str) -> Vec<PathBuf> {
    objects_with_times(prefix)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("objects"))
        .collect()
}

/// An object's bytes, if it is there.
pub fn get_object(name: &str) -> Option<Vec<u8>> {
    get_object_in(shared(), name)
}

/// An object's bytes in bucket `at`, if it is there.
pub fn get_object_in(at: &SharedBucket, name: &str) -> Option<Vec<u8>> {
    use object_store::ObjectStoreExt;
    let b = bucket_of(at);
    b.rt.block_on(async {
        match b.store.get(&object_store::path::Path::from(name)).await {
            Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("{name}: {e}"),
        }
    })
}

/// Writes an object (a damaged blob, say) as it is.
pub fn put_object(name: &str, bytes: Vec<u8>) {
    put_object_in(shared(), name, bytes)
}

/// Writes an object in bucket `at` as it is.
pub fn put_object_in(at: &SharedBucket, name: &str, bytes: Vec<u8>) {
    use object_store::ObjectStoreExt;
    let b = bucket_of(at);
    b.rt.block_on(
        b.store
            .put(&object_store::path::Path::from(name), bytes.into()),
    )
    .unwrap();
}

/// Deletes an object.
pub fn delete_object(name: &str) {
    delete_object_in(shared(), name)
}

/// Deletes an object in bucket `at`.
pub fn delete_object_in(at: &SharedBucket, name: &str) {
    use object_store::ObjectStoreExt;
    let b = bucket_of(at);
    b.rt.block_on(b.store.delete(&object_store::path::Path::from(name)))
        .unwrap();
}

/// Whether this run keeps the index on PostgreSQL
/// (`SYMDEPOT_TEST_DATABASE=postgres`): every test server and `symdepot`
/// command that does not choose its own index gets a database of its own on
/// one PostgreSQL the test process starts.
pub fn on_pg() -> bool {
    std::env::var("SYMDEPOT_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// The PostgreSQL of this test process, started on first use (the port).
fn shared_pg() -> u16 {
    static SHARED: OnceLock<u16> = OnceLock::new();
    *SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pg = crate::postgres::Postgres::start();
            tx.send(pg.port).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the shared PostgreSQL started")
    })
}

/// The name of a data dir's own database on the shared PostgreSQL.
fn database_name(data_dir: &Path) -> String {
    format!(
        "d_{}",
        &blake3::hash(data_dir.as_os_str().as_encoded_bytes()).to_hex()[..16]
    )
}

fn pg_admin(port: u16) -> postgres::Client {
    let admin = format!("postgres://symdepot@127.0.0.1:{port}/postgres");
    postgres::Client::connect(&admin, postgres::NoTls).unwrap()
}

/// Loses a data dir's index on PostgreSQL (its database dropped, an empty
/// one made in its place), as a lost or wiped database server would.
pub fn lose_database_for(data_dir: &Path) {
    let name = database_name(data_dir);
    let mut c = pg_admin(shared_pg());
    // One statement each: neither runs inside a transaction block.
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
}

/// The `database_url` of a data dir's own database on the shared PostgreSQL
/// (made on first use).
pub fn database_for(data_dir: &Path) -> String {
    let port = shared_pg();
    let name = database_name(data_dir);
    let mut c = pg_admin(port);
    let exists = c
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_some();
    if !exists {
        // Two processes may race to make it: the loser finds it made.
        let _ = c.batch_execute(&format!("CREATE DATABASE {name}"));
    }
    format!("postgres://symdepot@127.0.0.1:{port}/{name}")
}

/// The marks cannot hide a pass's coverage: a marked test that starts a store
/// on the default engine fails, on every pass.
mod marks {
    #[test]
    #[should_panic(expected = "its own object store, yet starts a store on local disk")]
    fn a_test_marked_own_blob_store_fails_on_the_default_blob_store() {
        super::choose_own(true, false);
        let _ = crate::support::TestServer::start();
    }

    #[test]
    #[should_panic(expected = "its own PostgreSQL, yet starts a store on SQLite")]
    fn a_test_marked_own_index_fails_on_the_default_index() {
        super::choose_own(false, true);
        let _ = crate::support::TestServer::start();
    }
}
