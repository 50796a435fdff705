//! The test server and helpers shared by the integration tests.
//!
//! Every test starts the real daemon (the library's `Daemon`, the same code
//! `symdepot serve` runs) on a pre-bound `127.0.0.1:0` with a fresh data dir
//! and a real SQLite index in a `TempDir`, and talks HTTP to it.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client, Response, multipart};
use symdepot::Config;
use symdepot::daemon::Daemon;
use symdepot::store::sql::{Conn, ConnExt, FromValue, Row, Value};
use symdepot::store::tokens::NewToken;
use tempfile::TempDir;

/// A client builder for the tests' own requests: the crate's HTTP clients speak
/// rustls with the `ring` provider, chosen once per process (`symdepot::tls`).
pub fn client() -> reqwest::blocking::ClientBuilder {
    symdepot::tls::use_ring();
    Client::builder()
}

/// A plain GET, as `reqwest::blocking::get` would make it.
pub fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<Response> {
    client().build()?.get(url).send()
}

/// How long a test waits for what it expects the server (or a tool) to do
/// before it fails: a guard against a hang, never a measure of speed. Every
/// wait in the suite polls a condition or blocks on an answer, so a healthy run
/// ends long before this even when many tests share a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(600);

pub struct TestServer {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub config: Config,
    runtime: tokio::runtime::Runtime,
    daemon: Option<Daemon>,
    pub client: Client,
    /// A token with `upload`.
    pub token: String,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::with_config(|_| {})
    }

    pub fn with_config(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".into(),
            // The daemon runs inside this test binary: walkers are the built symdepot.
            walker_program: Some(env!("CARGO_BIN_EXE_symdepot").into()),
            ..Config::default()
        };
        f(&mut config);
        crate::backend::apply(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let daemon = runtime
            .block_on(async { tokio::time::timeout(PATIENCE, Daemon::start(config.clone())).await })
            .expect("daemon started in time")
            .expect("daemon started");
        let addr = daemon.addr();
        let client = client()
            .timeout(PATIENCE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut server = TestServer {
            dir,
            addr,
            config,
            runtime,
            daemon: Some(daemon),
            client,
            token: String::new(),
        };
        server.token = server.create_token(&["upload"], "uploader");
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Creates a token straight in the store, as `symdepot token create` does.
    pub fn create_token(&self, permissions: &[&str], user: &str) -> String {
        self.create_token_expiring(permissions, user, None)
    }

    pub fn create_token_expiring(
        &self,
        permissions: &[&str],
        user: &str,
        expires_in_ms: Option<i64>,
    ) -> String {
        let perms: Vec<String> = permissions.iter().map(|s| s.to_string()).collect();
        let store = self.daemon.as_ref().unwrap().store();
        let (_, secret) = store
            .create_token(&NewToken {
                user,
                permissions: &perms,
                note: "",
                expires_in_ms,
                expires_by: None,
            })
            .unwrap();
        secret
    }

    pub fn store(&self) -> &Arc<symdepot::Store> {
        self.daemon.as_ref().unwrap().store()
    }

    /// Uploads a zip as `<name>` form field (Tecken style) with an optional `try` field.
    pub fn upload_with(&self, token: &str, zip: Vec<u8>, try_value: Option<&str>) -> Response {
        let mut form = multipart::Form::new();
        if let Some(t) = try_value {
            form = form.text("try", t.to_string());
        }
        let part = multipart::Part::bytes(zip).file_name("symbols.zip");
        form = form.part("symbols.zip", part);
        self.client
            .post(self.url("/upload/"))
            .header("Auth-Token", token)
            .multipart(form)
            .send()
            .unwrap()
    }

    pub fn upload(&self, zip: Vec<u8>) -> Response {
        self.upload_with(&self.token, zip, None)
    }

    /// Uploads and asserts 201; returns the `upload` object.
    pub fn upload_ok(&self, zip: Vec<u8>) -> serde_json::Value {
        let resp = self.upload(zip);
        let status = resp.status();
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(status, 201, "{body}");
        body["upload"].clone()
    }

    /// Uploads an ELF fixture's stripped binary and debug file under their Breakpad keys.
    pub fn upload_elf(&self, f: &ElfFixture) {
        let (name, id) = (&f.name, &f.debug_id);
        self.upload_ok(zip_of(&[
            (
                &format!("{name}/{id}/{name}"),
                &std::fs::read(&f.stripped).unwrap(),
            ),
            (
                &format!("{name}/{id}/{name}.debug"),
                &std::fs::read(&f.debug).unwrap(),
            ),
        ]));
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().unwrap()
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = self.client.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().unwrap()
    }

    /// A read connection to the index, for assertions on rows.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir().join("index.sqlite3")).unwrap()
    }

    /// A connection to the index, whichever engine keeps it, through the
    /// store's own engine seam (queries written for both engines).
    pub fn index(&self) -> Box<dyn Conn> {
        if self.config.database_url.is_empty() {
            Box::new(self.db())
        } else {
            Box::new(postgres::Client::connect(&self.config.database_url, postgres::NoTls).unwrap())
        }
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.index().one(sql, &[]).unwrap()
    }

    /// The rows a query answers.
    pub fn rows(&self, sql: &str, params: &[Value]) -> Vec<Row> {
        self.index().rows(sql, params).unwrap()
    }

    /// The first column of the one row a query answers.
    pub fn one<T: FromValue>(&self, sql: &str, params: &[Value]) -> T {
        self.index().one(sql, params).unwrap()
    }

    /// Every file under `objects/`.
    /// Polls until `sql` counts `n`: for what the server writes in the
    /// background (misses are flushed about every second).
    pub fn wait_for_count(&self, sql: &str, n: i64) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let have = self.count(sql);
            if have == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sql}: expected {n}, have {have}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status and body of a GET of each route.
    pub fn answers(&self, routes: &[String]) -> Vec<(u16, Vec<u8>)> {
        routes
            .iter()
            .map(|r| {
                let resp = self.get(r);
                (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
            })
            .collect()
    }

    /// Whether blobs are in the shared test bucket (the S3 run) rather than
    /// under `objects/`.
    fn in_bucket(&self) -> bool {
        self.config.blob_store == "s3"
            && self.config.s3_prefix == crate::backend::prefix_for(&self.config.data_dir)
    }

    /// Whether the store keeps the layout tree (local blobs only).
    pub fn has_layout(&self) -> bool {
        self.config.blob_store == "local"
    }

    /// A time at which every blob stored so far is older than the GC grace,
    /// for `store.gc(at, …)`: on local disk the blobs' and entries' times are
    /// set back and the answer is now; an object store sets an object's time
    /// itself, so on S3 the answer is now plus the grace.
    pub fn after_grace(&self) -> std::time::SystemTime {
        if self.has_layout() {
            age_store(&self.data_dir());
            return std::time::SystemTime::now();
        }
        std::time::SystemTime::now() + Duration::from_secs(2 * 3600)
    }

    /// The layout entry of a key, where the store keeps a layout tree
    /// (`None` with blobs on S3, which has none).
    pub fn entry(&self, ns: &str, key: &str) -> Option<PathBuf> {
        self.has_layout()
            .then(|| self.data_dir().join(ns).join(key))
    }

    /// The key has a layout entry, where the store keeps a layout tree.
    pub fn assert_entry(&self, ns: &str, key: &str) {
        if let Some(e) = self.entry(ns, key) {
            assert!(e.exists(), "no layout entry {}", e.display());
        }
    }

    /// Every blob: the files under `objects/`, or on the S3 run the objects
    /// under this store's prefix in the bucket (named `objects/ab/cd/<hash>`).
    pub fn blobs(&self) -> Vec<PathBuf> {
        stored_blobs(&self.data_dir())
    }

    /// Every blob with its modification time.
    pub fn blobs_with_times(&self) -> Vec<(PathBuf, std::time::SystemTime)> {
        if self.in_bucket() {
            return crate::backend::objects_with_times(&self.config.s3_prefix)
                .into_iter()
                .filter(|(p, _)| p.starts_with("objects"))
                .collect();
        }
        self.blobs()
            .into_iter()
            .map(|p| {
                let t = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, t)
            })
            .collect()
    }

    /// The stored bytes of the blob of `content` (`.gz` when `gz`), if stored.
    pub fn read_blob(&self, content: &[u8], gz: bool) -> Option<Vec<u8>> {
        let name = blob_name(content, gz);
        if self.in_bucket() {
            return crate::backend::get_object(&format!("{}{name}", self.config.s3_prefix));
        }
        std::fs::read(self.data_dir().join(name)).ok()
    }

    /// Overwrites the stored bytes of a blob, as a disk fault would.
    pub fn write_blob(&self, content: &[u8], gz: bool, bytes: Vec<u8>) {
        let name = blob_name(content, gz);
        if self.in_bucket() {
            return crate::backend::put_object(&format!("{}{name}", self.config.s3_prefix), bytes);
        }
        std::fs::write(self.data_dir().join(name), bytes).unwrap();
    }

    /// Removes a blob behind the store's back.
    pub fn remove_blob(&self, content: &[u8], gz: bool) {
        if self.in_bucket() {
            self.remove_listed_blob(Path::new(&blob_name(content, gz)));
        } else {
            self.remove_listed_blob(&self.data_dir().join(blob_name(content, gz)));
        }
    }

    /// Removes a blob as [`TestServer::blobs`] names it.
    pub fn remove_listed_blob(&self, blob: &Path) {
        if self.in_bucket() {
            let name = format!("{}{}", self.config.s3_prefix, blob.display());
            return crate::backend::delete_object(&name);
        }
        std::fs::remove_file(blob).unwrap();
    }

    /// Flips one bit of the byte at `at` (from the end when negative) of a
    /// stored blob.
    pub fn flip_blob_byte(&self, content: &[u8], gz: bool, at: i64) {
        let mut bytes = self.read_blob(content, gz).expect("the blob is stored");
        let i = if at < 0 {
            bytes.len() - at.unsigned_abs() as usize
        } else {
            at as usize
        };
        bytes[i] ^= 0x01;
        self.write_blob(content, gz, bytes);
    }

    /// Every file in the layout trees (`release/`, `try/`).
    pub fn entries(&self) -> Vec<PathBuf> {
        let mut v = files_under(&self.data_dir().join("release"));
        v.extend(files_under(&self.data_dir().join("try")));
        v
    }

    pub fn tmp_files(&self) -> Vec<PathBuf> {
        temp_files_under(&self.data_dir().join("tmp"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            self.runtime
                .block_on(async { tokio::time::timeout(PATIENCE, d.shutdown()).await })
                .ok();
        }
    }
}

/// Polls until `done()` holds: for what a daemon does in the background (the
/// drop folder's watcher, another daemon's announcement).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A connection to the index of the store in `data`, whichever engine keeps
/// it on this run, through the store's engine seam.
pub fn index_of(data: &Path) -> Box<dyn Conn> {
    if crate::backend::on_pg() {
        let url = crate::backend::database_for(data);
        return Box::new(postgres::Client::connect(&url, postgres::NoTls).unwrap());
    }
    Box::new(rusqlite::Connection::open(data.join("index.sqlite3")).unwrap())
}

/// The name of the blob of `content` under the data dir (or the bucket prefix).
pub fn blob_name(content: &[u8], gz: bool) -> String {
    let hash = blake3::hash(content).to_hex().to_string();
    let ext = if gz { ".gz" } else { "" };
    format!("objects/{}/{}/{hash}{ext}", &hash[..2], &hash[2..4])
}

/// The blobs of the store in `data` wherever they are kept on this run: the
/// files under `objects/`, or the objects under its prefix in the test bucket.
pub fn stored_blobs(data: &Path) -> Vec<PathBuf> {
    if crate::backend::on_s3() {
        return crate::backend::objects_under(&crate::backend::prefix_for(data));
    }
    files_under(&data.join("objects"))
}

/// The temp files under a `tmp/` folder: every file but the lock files that
/// mark live processes' temp folders.
pub fn temp_files_under(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != ".lock"))
        .collect()
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A zip (deflated) of the given members.
pub fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A Breakpad `.sym` text for a module.
pub fn sym(debug_file: &str, debug_id: &str, extra: &str) -> Vec<u8> {
    format!(
        "MODULE Linux x86_64 {debug_id} {debug_file}\n{extra}FILE 0 main.c\nFUNC 1000 10 0 main\n1000 10 1 0\nPUBLIC 2000 0 helper\n"
    )
    .into_bytes()
}

pub const ID_A: &str = "C3B913878AFB017237A4A08B325905C70";
pub const ID_B: &str = "497B72F6390A44FC878E5A2D63B6CC4B0";

/// Members of a raw zip written by hand, for archives no zip library writes.
pub struct RawMember<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
    /// Unix mode in the external attributes (e.g. `0o120777` for a symlink).
    pub unix_mode: Option<u32>,
    /// General purpose flags (bit 0: encrypted).
    pub flags: u16,
}

impl<'a> RawMember<'a> {
    pub fn new(name: &'a [u8], data: &'a [u8]) -> Self {
        RawMember {
            name,
            data,
            unix_mode: None,
            flags: 0,
        }
    }
}

/// Writes a stored (uncompressed) zip with exactly these entries, duplicates included.
pub fn raw_zip(members: &[RawMember<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let crc = crc32fast::hash(m.data);
        let offset = out.len() as u32;
        let len = m.data.len() as u32;
        out.extend_from_slice(&0x04034b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&m.flags.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // method stored, time, date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(m.name);
        out.extend_from_slice(m.data);

        let (made_by, attrs) = match m.unix_mode {
            Some(mode) => ((3u16 << 8) | 20, mode << 16),
            None => (20u16, 0),
        };
        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&made_by.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&m.flags.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // extra, comment, disk, internal attrs
        central.extend_from_slice(&attrs.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(m.name);
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A C program built here with gcc: the full binary, its split debug file and
/// the stripped binary, with the build id `readelf` reports.
pub struct ElfFixture {
    pub dir: TempDir,
    pub name: String,
    pub full: PathBuf,
    pub stripped: PathBuf,
    pub debug: PathBuf,
    pub build_id: String,
    /// The Breakpad debug id derived from the build id (identity.md).
    pub debug_id: String,
}

pub const VICTIM_C: &str = r#"
#include <stdio.h>
__attribute__((noinline)) int spin_level2(int n) {
    volatile int x = n;
    for (;;) { x++; }
    return x;
}
__attribute__((noinline)) int spin_level1(int n) { return spin_level2(n + 1); }
int main(int argc, char **argv) { (void)argv; return spin_level1(argc); }
"#;

fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ElfFixture {
    /// Builds `name` from `VICTIM_C` with `gcc -g` and the given extra flags.
    pub fn build(name: &str, extra: &[&str]) -> ElfFixture {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(format!("{name}.c"));
        std::fs::write(&src, VICTIM_C).unwrap();
        let full = dir.path().join(name);
        run(Command::new("gcc")
            .args(["-g", "-O1"])
            .args(extra)
            .arg("-o")
            .arg(&full)
            .arg(&src));
        let debug = dir.path().join(format!("{name}.debug"));
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&full)
            .arg(&debug));
        let stripped = dir.path().join(format!("{name}.stripped"));
        run(Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(&full));
        let notes = Command::new("readelf")
            .arg("-n")
            .arg(&full)
            .output()
            .unwrap();
        let notes = String::from_utf8(notes.stdout).unwrap();
        let build_id = notes
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .map(|s| s.trim().to_string())
            // binutils' readelf does not print build ids shorter than 8 bytes: take the one we asked for.
            .or_else(|| {
                extra
                    .iter()
                    .find_map(|a| a.strip_prefix("-Wl,--build-id=0x"))
                    .map(String::from)
            })
            .unwrap_or_default();
        let debug_id = if build_id.is_empty() {
            String::new()
        } else {
            breakpad_id(&build_id)
        };
        ElfFixture {
            dir,
            name: name.to_string(),
            full,
            stripped,
            debug,
            build_id,
            debug_id,
        }
    }
}

/// identity.md's derivation, written out independently of the crate.
pub fn breakpad_id(build_id: &str) -> String {
    let mut b: Vec<u8> = (0..build_id.len() / 2)
        .map(|i| u8::from_str_radix(&build_id[i * 2..i * 2 + 2], 16).unwrap())
        .collect();
    b.resize(16.max(b.len()), 0);
    let mut g: Vec<u8> = b[..16].to_vec();
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    let hex: String = g.iter().map(|x| format!("{x:02X}")).collect();
    format!("{hex}0")
}

/// A tool `scripts/install-test-tools` installs with cargo: from
/// `$SYMDEPOT_TOOLS/bin` (default `~/.cache/symdepot-tools/bin`), else the PATH.
pub fn cargo_tool(name: &str) -> std::process::Command {
    let dir = std::env::var_os("SYMDEPOT_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/symdepot-tools"))
        })
        .unwrap_or_default();
    let path = dir.join("bin").join(name);
    assert!(
        path.exists() || which(name),
        "{name} is not installed: run scripts/install-test-tools"
    );
    std::process::Command::new(if path.exists() {
        path.into_os_string()
    } else {
        name.into()
    })
}

fn which(name: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `symdepot` binary, working on `data_dir`.
pub fn symdepot(data_dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"));
    c.arg("--data-dir")
        .arg(data_dir)
        .env_remove("SYMDEPOT_LISTEN")
        .envs(crate::backend::env_for(data_dir));
    if crate::backend::on_s3() && aged_marker(data_dir).exists() {
        c.env("SYMDEPOT_GC_GRACE", "0s");
    }
    c
}

fn aged_marker(data: &Path) -> PathBuf {
    data.with_extension("aged")
}

/// Makes every blob and layout entry of the store in `data` look older than
/// the GC grace. Object stores set an object's time themselves, so on the S3
/// run the commands given by [`symdepot`] for this data dir run with no GC
/// grace instead (a stand-in for time passing, nothing else changes).
pub fn age_store(data: &Path) {
    if crate::backend::on_s3() {
        std::fs::write(aged_marker(data), b"").unwrap();
        return;
    }
    let old = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    for f in files_under(&data.join("objects"))
        .into_iter()
        .chain(files_under(&data.join("release")))
        .chain(files_under(&data.join("try")))
    {
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
}

/// The arguments of `symdepot reindex` for this run's blob store.
pub fn reindex_args() -> &'static [&'static str] {
    if crate::backend::on_s3() {
        &["reindex", "--from-bucket"]
    } else {
        &["reindex"]
    }
}

/// Uploads, expects `status`, and returns the JSON error.
pub fn refused(s: &TestServer, zip: Vec<u8>, status: u16) -> serde_json::Value {
    let resp = s.upload(zip);
    assert_eq!(resp.status().as_u16(), status);
    let body: serde_json::Value = resp.json().unwrap();
    assert!(body["error"].is_string(), "{body}");
    body
}

/// Nothing stored: no blob, no layout entry, no key row, no temp file.
pub fn assert_nothing_stored(s: &TestServer) {
    assert!(s.blobs().is_empty(), "blobs: {:?}", s.blobs());
    assert!(s.entries().is_empty(), "entries: {:?}", s.entries());
    assert_eq!(s.count("SELECT COUNT(*) FROM keys"), 0);
    assert_eq!(s.count("SELECT COUNT(*) FROM lookup"), 0);
    assert!(s.tmp_files().is_empty(), "tmp: {:?}", s.tmp_files());
}

/// A valid `.sym` member: its name and bytes.
pub fn good_member() -> (String, Vec<u8>) {
    (
        format!("good.pdb/{ID_A}/good.sym"),
        sym("good.pdb", ID_A, ""),
    )
}

/// Starts `symdepot serve` on port 0 and returns it with the address it logged.
pub fn spawn_daemon(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut serve = symdepot(dir);
    serve.args(["serve", "--listen", "127.0.0.1:0"]);
    spawn_logging(serve)
}

/// Spawns a command that starts a daemon (`symdepot … serve`, perhaps behind a
/// wrapper such as `prlimit`) and returns it with the address it logged.
pub fn spawn_logging(serve: std::process::Command) -> (std::process::Child, String) {
    let (child, addr, _) = spawn_keeping_log(serve, false);
    (child, addr)
}

/// The lines a daemon has written to standard error.
pub type Log = Arc<std::sync::Mutex<Vec<String>>>;

/// [`spawn_logging`], keeping every line the daemon writes (from its first)
/// in the returned [`Log`] when `keep`.
pub fn spawn_keeping_log(
    mut serve: std::process::Command,
    keep: bool,
) -> (std::process::Child, String, Log) {
    if !serve.get_envs().any(|(k, _)| k == "SYMDEPOT_LOG") {
        serve.env("SYMDEPOT_LOG", "info");
    }
    let mut child = serve.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let log = Log::default();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let addr = loop {
        let line = lines
            .next()
            .expect("the daemon logs before it exits")
            .unwrap();
        let found = line.find("listening on http://").map(|pos| {
            let rest = &line[pos + "listening on http://".len()..];
            rest.split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .unwrap()
                .to_string()
        });
        if keep {
            log.lock().unwrap().push(line);
        }
        if let Some(addr) = found {
            break addr;
        }
    };
    // Keep reading the log so the daemon never blocks on a full pipe.
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if keep {
                kept.lock().unwrap().push(line);
            }
        }
    });
    (child, addr, log)
}

pub fn sigterm(child: &std::process::Child) {
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

pub fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// xorshift64*, seeded: the same choices on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// One upload: its members and its zip.
pub struct Batch {
    pub members: Vec<(String, Vec<u8>)>,
    pub zip: Vec<u8>,
}

/// `n` batches of 30 `.sym` files and binaries; neighbouring batches share
/// ten members (same keys, same bytes), as successive builds do.
pub fn batches(n: usize, rng: &mut Rng) -> Vec<Batch> {
    let member = |i: usize, rng: &mut Rng| -> (String, Vec<u8>) {
        let id = format!("{:032X}{}", i as u128 * 7919 + 1, i % 10);
        if i.is_multiple_of(4) {
            let data: Vec<u8> = (0..20_000 + rng.below(40_000))
                .map(|_| rng.below(256) as u8)
                .collect();
            (format!("bin{i}.so/{id}/bin{i}.so"), data)
        } else {
            let module = format!("lib{i}.pdb");
            let mut data = sym(&module, &id, "");
            for l in 0..(500 + rng.below(1500)) {
                data.extend_from_slice(format!("FUNC {l:x} 10 0 fn_{i}_{l}\n").as_bytes());
            }
            (format!("{module}/{id}/lib{i}.sym"), data)
        }
    };
    let all: Vec<(String, Vec<u8>)> = (0..n * 20 + 10).map(|i| member(i, rng)).collect();
    (0..n)
        .map(|b| {
            let members = all[b * 20..b * 20 + 30].to_vec();
            let refs: Vec<(&str, &[u8])> = members
                .iter()
                .map(|(k, d)| (k.as_str(), d.as_slice()))
                .collect();
            Batch {
                zip: zip_of(&refs),
                members,
            }
        })
        .collect()
}

/// Posts a zip; the status, or `None` if the daemon died first.
pub fn post(addr: &str, token: &str, zip: Vec<u8>) -> Option<u16> {
    let client = crate::support::client().timeout(PATIENCE).build().unwrap();
    let part = reqwest::blocking::multipart::Part::bytes(zip).file_name("symbols.zip");
    let form = reqwest::blocking::multipart::Form::new().part("symbols.zip", part);
    client
        .post(format!("http://{addr}/upload/"))
        .header("Auth-Token", token)
        .multipart(form)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

pub fn assert_served(addr: &str, members: &[(String, Vec<u8>)]) {
    let client = crate::support::client().build().unwrap();
    for (key, data) in members {
        let resp = client.get(format!("http://{addr}/{key}")).send().unwrap();
        assert_eq!(resp.status(), 200, "{key} was acknowledged but is gone");
        let served = resp.bytes().unwrap();
        assert!(
            served.as_ref() == data.as_slice(),
            "{key}: other bytes served"
        );
    }
}

/// A token with `permission`, made by `symdepot token create` on a data dir.
pub fn create_token_cli(dir: &Path, permission: &str) -> String {
    let out = symdepot(dir)
        .args(["token", "create", "--permission", permission])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

/// `n` distinct `.sym` members starting at `from`, each its own module.
pub fn members(from: usize, n: usize) -> Vec<(String, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            let module = format!("m{i}.pdb");
            (
                format!("{module}/{ID_A}/m{i}.sym"),
                sym(&module, ID_A, &format!("INFO GENERATOR n{i}\n")),
            )
        })
        .collect()
}

pub fn upload_members(s: &TestServer, members: &[(String, Vec<u8>)]) {
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_slice()))
        .collect();
    s.upload_ok(zip_of(&refs));
}

/// A temp dir for a server a test process starts (`<prefix><pid>-…`), after
/// removing those of test processes that are gone: a server shared by a
/// whole test run lives in a static and is never dropped, so its folder
/// would otherwise stay behind (a PostgreSQL cluster is gigabytes).
pub fn process_temp_dir(prefix: &str) -> tempfile::TempDir {
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = (name.strip_prefix(prefix))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            let Some(pid) = pid else { continue };
            // SAFETY: signal 0 only asks whether the process exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempdir()
        .unwrap()
}

/// The standard output of a command that must have succeeded (`what` it was,
/// its exit status, output and errors in the failure otherwise).
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`succeeded`] for a command the failure's output names well enough.
pub fn stdout_ok(out: std::process::Output) -> String {
    succeeded(out, "a command")
}
