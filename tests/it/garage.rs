//! A real Garage (an S3-compatible distributed object store) for the tests of
//! `blob_store = "s3"`: one node on loopback ports in a temp dir, with a
//! bucket and a key, started and stopped by the test that needs it.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

pub struct Garage {
    dir: tempfile::TempDir,
    child: Child,
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

/// A free loopback port (bound, then released for Garage to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `garage` binary that `scripts/install-test-tools` installs.
fn garage(config: &Path) -> Command {
    let mut c = cargo_tool("garage");
    c.arg("-c").arg(config);
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "garage {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `label` on the first line of `text` holding it.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.split_once(label).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

impl Garage {
    /// Starts one node and makes the bucket `symbols` with a key that may use it.
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
            .collect();
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("garage.log")).unwrap();
        let child = garage(&config)
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut g = Garage {
            dir,
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "symbols".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        g.wait_until_up(&config);
        let id = ok(
            garage(&config).args(["node", "id", "-q"]).output().unwrap(),
            "node id",
        );
        let id = id.trim().split('@').next().unwrap().to_string();
        ok(
            garage(&config)
                .args(["layout", "assign", "-z", "dc1", "-c", "1G", &id])
                .output()
                .unwrap(),
            "layout assign",
        );
        ok(
            garage(&config)
                .args(["layout", "apply", "--version", "1"])
                .output()
                .unwrap(),
            "layout apply",
        );
        ok(
            garage(&config)
                .args(["bucket", "create", "symbols"])
                .output()
                .unwrap(),
            "bucket create",
        );
        let key = ok(
            garage(&config)
                .args(["key", "create", "symdepot"])
                .output()
                .unwrap(),
            "key create",
        );
        g.key_id = field(&key, "Key ID:");
        g.secret = field(&key, "Secret key:");
        ok(
            garage(&config)
                .args([
                    "bucket", "allow", "--read", "--write", "--owner", "symbols", "--key",
                    "symdepot",
                ])
                .output()
                .unwrap(),
            "bucket allow",
        );
        g
    }

    /// Waits until the node answers `status` (it starts in well under a second).
    fn wait_until_up(&mut self, config: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("garage exited with {st}: {}", self.log());
            }
            let out = garage(config).arg("status").output().unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "garage never came up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node (an outage of the object store).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Points a configuration at this node's bucket.
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

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
