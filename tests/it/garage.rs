//! A real Garage (an S3-compatible distributed object store) for the tests of
//! `blob_store = "s3"`: one node, or a cluster of several with every object
//! on each of them, on loopback ports in a temp dir, with a bucket and a key,
//! started and stopped by the test that needs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::*;

/// One Garage node: its config and its process.
struct Node {
    config: PathBuf,
    child: Option<Child>,
    id: String,
    rpc: u16,
}

pub struct Garage {
    /// Holds every node's folder while the cluster lives.
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
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

/// The value after `label` on the first line of `text` holding it.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.split_once(label).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

impl Garage {
    /// One node with the bucket `symbols` and a key that may use it.
    pub fn start() -> Garage {
        Self::cluster(1)
    }

    /// `n` nodes, each in its own zone, keeping every object on `n` of them
    /// (`replication_factor = n`); clients talk to the first node.
    pub fn cluster(n: usize) -> Garage {
        let dir = crate::support::process_temp_dir("symdepot-garage-");
        std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string()).unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
            .collect();
        let mut s3_ports = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            s3_ports.push(s3);
            let home = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let config = home.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = {n}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_secret = \"{secret}\"\n\n\
                     [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\n\
                     [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                    meta = home.join("meta").display(),
                    data = home.join("data").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(home.join("garage.log")).unwrap();
            let mut server = garage(&config);
            // SAFETY: prctl is async-signal-safe and touches no memory of ours.
            unsafe {
                use std::os::unix::process::CommandExt;
                server.pre_exec(|| {
                    // The node dies with the thread that started it (the test,
                    // or the thread that keeps the shared Garage), never outlives
                    // the test process.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = server
                .arg("server")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(Node {
                config,
                child: Some(child),
                id: String::new(),
                rpc,
            });
        }
        let mut g = Garage {
            _dir: dir,
            nodes,
            endpoint: format!("http://127.0.0.1:{}", s3_ports[0]),
            bucket: "symbols".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..n {
            g.wait_until_up(i);
            let id = succeeded(
                garage(&g.nodes[i].config)
                    .args(["node", "id", "-q"])
                    .output()
                    .unwrap(),
                "node id",
            );
            g.nodes[i].id = id.trim().split('@').next().unwrap().to_string();
        }
        g.form_cluster();
        g.make_bucket();
        g
    }

    /// Connects every node to the first, gives each a role and applies the layout.
    fn form_cluster(&self) {
        let first = &self.nodes[0].config;
        for node in &self.nodes[1..] {
            succeeded(
                garage(first)
                    .args([
                        "node",
                        "connect",
                        &format!("{}@127.0.0.1:{}", node.id, node.rpc),
                    ])
                    .output()
                    .unwrap(),
                "node connect",
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            succeeded(
                garage(first)
                    .args([
                        "layout",
                        "assign",
                        "-z",
                        &format!("dc{i}"),
                        "-c",
                        "1G",
                        &node.id,
                    ])
                    .output()
                    .unwrap(),
                "layout assign",
            );
        }
        succeeded(
            garage(first)
                .args(["layout", "apply", "--version", "1"])
                .output()
                .unwrap(),
            "layout apply",
        );
    }

    fn make_bucket(&mut self) {
        let first = self.nodes[0].config.clone();
        succeeded(
            garage(&first)
                .args(["bucket", "create", "symbols"])
                .output()
                .unwrap(),
            "bucket create",
        );
        let key = succeeded(
            garage(&first)
                .args(["key", "create", "symdepot"])
                .output()
                .unwrap(),
            "key create",
        );
        self.key_id = field(&key, "Key ID:");
        self.secret = field(&key, "Secret key:");
        succeeded(
            garage(&first)
                .args([
                    "bucket", "allow", "--read", "--write", "--owner", "symbols", "--key",
                    "symdepot",
                ])
                .output()
                .unwrap(),
            "bucket allow",
        );
    }

    /// Waits until node `i` answers `status` (it starts in well under a second).
    fn wait_until_up(&mut self, i: usize) {
        let deadline = Instant::now() + crate::support::PATIENCE;
        loop {
            let child = self.nodes[i].child.as_mut().expect("the node runs");
            if let Some(st) = child.try_wait().unwrap() {
                panic!("garage exited with {st}: {}", self.log(i));
            }
            let out = garage(&self.nodes[i].config)
                .arg("status")
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "garage never came up: {}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self, i: usize) -> String {
        let home = self.nodes[i].config.parent().unwrap().to_path_buf();
        std::fs::read_to_string(home.join("garage.log")).unwrap_or_default()
    }

    /// Kills node `i` (an outage of the whole store when it is the only one).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops every node (an outage of the object store).
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// Where this cluster's bucket is, for reading it straight.
    pub fn bucket(&self) -> crate::backend::SharedBucket {
        crate::backend::SharedBucket {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key_id: self.key_id.clone(),
            secret: self.secret.clone(),
        }
    }

    /// Points a configuration at this cluster's bucket.
    pub fn configure(&self, c: &mut symdepot::Config) {
        self.bucket().configure(c);
    }
}

/// Removes the folders of Garages whose test process is gone (the shared one
/// of an S3 run is never dropped: it lives until the process exits).
pub fn remove_abandoned() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("symdepot-garage-") {
            continue;
        }
        // A folder whose owner is not written yet is being made right now.
        let owner = std::fs::read_to_string(e.path().join("owner.pid")).unwrap_or_default();
        if !owner.is_empty() && !Path::new("/proc").join(owner.trim()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}
