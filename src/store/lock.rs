//! Who is using a data dir: the daemon's exclusive lock, and each process's
//! own temp folder.
//!
//! Both are advisory `flock`s, which the kernel releases when a process dies
//! however it dies, so a lock held is a process alive:
//! - `serve` takes `daemon.lock` exclusively before it touches anything; a
//!   second daemon on the same data dir refuses to start and names the pid
//!   written in the file. Commands (`token`, `verify`, `gc`, `ingest`…) do
//!   not take it: they run beside a daemon.
//! - Every process that opens the store makes `tmp/proc-<random>/` and holds
//!   a lock on its `.lock` file while it lives. Temp files (upload bodies,
//!   spools, blobs and links being written) go there. A folder whose lock can
//!   be taken belongs to a process that is gone, and only such folders are
//!   cleared; no process ever removes temp files another live process owns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Takes an exclusive `flock` without waiting; `false` if another process holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The daemon's hold on a data dir, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// The lock file's name in the data dir.
    pub const FILE: &'static str = "daemon.lock";

    /// Takes the data dir for this daemon, or says which process has it.
    pub fn acquire(data_dir: &Path) -> Result<DaemonLock> {
        fs::create_dir_all(data_dir)?;
        let path = data_dir.join(Self::FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if !try_lock(&file)? {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(Error::BadRequest(format!(
                "the data directory {} is in use by another symdepot serve (pid {}); \
                 stop it first, or give this one its own --data-dir",
                data_dir.display(),
                if pid.is_empty() { "unknown" } else { pid }
            )));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(DaemonLock { _file: file })
    }
}

/// Keeps GC and `reindex` apart: `reindex` empties the index and fills it
/// again key by key, and a GC run in between would take every blob and entry
/// not yet re-added. GC runs (any number at once) hold `maintenance.lock`
/// shared; `reindex` holds it exclusively. Neither waits: the one that finds
/// the other running stops and says so.
#[derive(Debug)]
pub struct MaintenanceLock {
    _file: File,
}

impl MaintenanceLock {
    /// The lock file's name in the data dir.
    pub const FILE: &'static str = "maintenance.lock";

    fn open(data_dir: &Path) -> Result<File> {
        Ok(OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(data_dir.join(Self::FILE))?)
    }

    /// For a GC run: refused while a `reindex` runs.
    pub fn for_gc(data_dir: &Path) -> Result<MaintenanceLock> {
        let file = Self::open(data_dir)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(MaintenanceLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Refused(
                "a reindex is rebuilding the index: GC waits for it to finish".into(),
            )),
            Err(fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// For `reindex`: refused while a GC runs.
    pub fn for_reindex(data_dir: &Path) -> Result<MaintenanceLock> {
        let file = Self::open(data_dir)?;
        if !try_lock(&file)? {
            return Err(Error::Refused(
                "a GC run is in progress on this data dir; run reindex when it has finished".into(),
            ));
        }
        Ok(MaintenanceLock { _file: file })
    }
}

/// This process's temp folder under `tmp/`, locked while the process lives
/// and removed when dropped.
#[derive(Debug)]
pub struct ProcessTemp {
    dir: PathBuf,
    _lock: File,
}

impl ProcessTemp {
    const PREFIX: &'static str = "proc-";
    const LOCK: &'static str = ".lock";

    /// Makes and locks a fresh folder in `tmp`. It is made under another name
    /// and renamed once locked, so no other process ever sees it unlocked.
    pub fn create(tmp: &Path) -> Result<ProcessTemp> {
        let name = super::random_hex(8);
        let new = tmp.join(format!("new-{name}"));
        fs::create_dir(&new)?;
        let lock = File::create(new.join(Self::LOCK))?;
        if !try_lock(&lock)? {
            return Err(Error::Io(io::Error::other(format!(
                "could not lock the fresh temp folder {}",
                new.display()
            ))));
        }
        let dir = tmp.join(format!("{}{name}", Self::PREFIX));
        fs::rename(&new, &dir)?;
        Ok(ProcessTemp { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether a folder in `tmp` is a temp folder of a process that is gone.
    fn is_abandoned(dir: &Path) -> io::Result<bool> {
        match File::open(dir.join(Self::LOCK)) {
            Ok(f) => try_lock(&f),
            // Not locked yet (being created) or not ours: leave it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the temp folders of processes that are gone; returns how many.
    /// Folders of live processes (this one included) are never touched.
    pub fn clear_abandoned(tmp: &Path) -> Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(tmp)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Only `proc-*`: a `new-*` folder may be one a process is locking right
            // now; one left by a process that died goes to GC after `gc_grace`.
            let is_proc = name.starts_with(Self::PREFIX);
            if !is_proc || !entry.file_type()?.is_dir() || !Self::is_abandoned(&entry.path())? {
                continue;
            }
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    /// Whether a path in `tmp` is the temp folder of a live process.
    pub fn is_live(path: &Path) -> bool {
        let is_proc = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(Self::PREFIX));
        is_proc && path.is_dir() && !Self::is_abandoned(path).unwrap_or(false)
    }
}

impl Drop for ProcessTemp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DaemonLock::acquire(dir.path()).unwrap();
        let err = DaemonLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DaemonLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn gc_and_reindex_exclude_each_other_and_gc_runs_share() {
        let dir = tempfile::tempdir().unwrap();
        let gc1 = MaintenanceLock::for_gc(dir.path()).unwrap();
        let _gc2 = MaintenanceLock::for_gc(dir.path()).unwrap();
        assert!(MaintenanceLock::for_reindex(dir.path()).is_err());
        drop(gc1);
        drop(_gc2);
        let reindex = MaintenanceLock::for_reindex(dir.path()).unwrap();
        assert!(MaintenanceLock::for_gc(dir.path()).is_err());
        drop(reindex);
        MaintenanceLock::for_gc(dir.path()).unwrap();
    }

    #[test]
    fn only_abandoned_temp_folders_are_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let live = ProcessTemp::create(tmp.path()).unwrap();
        fs::write(live.path().join("upload-1"), b"in flight").unwrap();
        // A folder whose owner is gone: its lock file is there but unheld.
        let dead = tmp.path().join("proc-dead");
        fs::create_dir(&dead).unwrap();
        File::create(dead.join(ProcessTemp::LOCK)).unwrap();
        fs::write(dead.join("upload-2"), b"left behind").unwrap();
        assert_eq!(ProcessTemp::clear_abandoned(tmp.path()).unwrap(), 1);
        assert!(!dead.exists());
        assert!(live.path().join("upload-1").exists());
        assert!(ProcessTemp::is_live(live.path()));
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }
}
