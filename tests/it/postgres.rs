//! A real PostgreSQL for the tests of the index on PostgreSQL: a throw-away
//! cluster (`initdb` + `postgres` from the Debian package that
//! `scripts/install-test-tools` installs) in a temp dir, on a free loopback
//! port, run as the `postgres` system user when the tests run as root (the
//! server refuses root), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
}

/// The folder of PostgreSQL's server programs (`initdb`, `postgres`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed: run scripts/install-test-tools")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as the user PostgreSQL runs as: the `postgres` system user
/// when the tests run as root (credentials dropped in the child itself, so no
/// wrapper process stands between the test and the server).
fn as_server_user(program: &Path) -> Command {
    let mut c = Command::new(program);
    if is_root() {
        let name = std::ffi::CString::new("postgres").unwrap();
        // SAFETY: getpwnam reads the user database; the fields are copied at once.
        let (uid, gid) = unsafe {
            let pw = libc::getpwnam(name.as_ptr());
            assert!(
                !pw.is_null(),
                "no postgres user: install the postgresql package"
            );
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        // SAFETY: setgroups, setgid and setuid are async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    c
}

/// Starts the server of the cluster in `dir` on `port`.
fn spawn_server(dir: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .unwrap();
    let mut server = as_server_user(&bin_dir().join("postgres"));
    server
        .current_dir(dir)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        use std::os::unix::process::CommandExt;
        server.pre_exec(|| {
            // Never outlives the test that started it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    server.spawn().unwrap()
}

impl Postgres {
    /// Stops the server (a fast shutdown: sessions are ended, as in a restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no preconditions; the pid is our child's.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server runs");
        self.child = Some(spawn_server(self.dir.path(), self.port));
        self.wait_until_up();
    }

    /// A fresh cluster with a database `symdepot` owned by user `symdepot`
    /// (trust authentication on loopback, no fsync: a test cluster).
    pub fn start() -> Postgres {
        let dir = crate::support::process_temp_dir("symdepot-pg-");
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown postgres {}", dir.path().display());
        }
        let bin = bin_dir();
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .current_dir(dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "symdepot", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn_server(dir.path(), port);
        let mut pg = Postgres {
            dir,
            child: Some(child),
            port,
        };
        pg.wait_until_up();
        let mut admin = pg.client_of("postgres");
        admin.batch_execute("CREATE DATABASE symdepot").unwrap();
        pg
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + crate::support::PATIENCE;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited with {st}: {}", self.log());
            }
            if postgres::Client::connect(&self.url_of("postgres"), postgres::NoTls).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres never came up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://symdepot@127.0.0.1:{}/{db}", self.port)
    }

    /// The `database_url` of the test database.
    pub fn url(&self) -> String {
        self.url_of("symdepot")
    }

    fn client_of(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url_of(db), postgres::NoTls).unwrap()
    }

    /// A connection to the test database.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
