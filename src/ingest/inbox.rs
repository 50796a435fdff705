//! The drop folder: files written into `inbox/` (release) or `inbox/try/`
//! (try) are ingested once complete, then moved to `inbox/done/` or to
//! `inbox/failed/` beside a `<name>.error.txt` saying why.
//!
//! `notify` wakes the watcher as soon as something changes; a scan every
//! half second backs it up. A file written in place is taken only after its
//! writer closed it (inotify's close-after-write) and it then kept its size
//! and modification time for [`SETTLE`]; a file renamed in needs only the
//! settle time. A writer that never reports a close (a network filesystem)
//! is waited out for [`OPEN_SETTLE`] without change. Names starting
//! with `.` or ending in `.tmp` / `.part` are ignored (copy, then rename in).
//! Files already there when the daemon starts are processed too. Each ingest
//! is recorded as an upload by user `inbox`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};

use super::{Ingest, Layout, Report, ingest_upload};
use crate::error::Error;
use crate::settings::IngestLimits;
use crate::store::{Namespace, Store, UploadFinish, UploadStart};

/// How long a file must stay unchanged before it is taken.
pub const SETTLE: Duration = Duration::from_millis(1000);

/// How long a file still open for writing (no close seen) must stay unchanged
/// before it is taken anyway (writers on network filesystems send no close).
pub const OPEN_SETTLE: Duration = Duration::from_secs(30);

/// A running watcher; stops when dropped.
#[derive(Debug)]
pub struct Inbox {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts watching `dir` (creating it and its `try/`, `done/`, `failed/`);
/// what arrives is checked against `limits`.
pub fn start(store: Arc<Store>, limits: IngestLimits, dir: PathBuf) -> crate::Result<Inbox> {
    for sub in ["try", "done", "failed"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            let _ = tx.send(event);
        }
    })
    .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    for d in [dir.clone(), dir.join("try")] {
        watcher
            .watch(&d, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    }
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("inbox".into())
        .spawn(move || {
            let _watcher = watcher;
            let mut seen: HashMap<PathBuf, (u64, SystemTime, Instant)> = HashMap::new();
            let mut open: HashSet<PathBuf> = HashSet::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(first) = rx.recv_timeout(Duration::from_millis(500)) {
                    track_writers(&first, &mut open);
                    while let Ok(e) = rx.try_recv() {
                        track_writers(&e, &mut open);
                    }
                }
                for (path, ns) in candidates(&dir) {
                    let wait = if open.contains(&path) {
                        OPEN_SETTLE
                    } else {
                        SETTLE
                    };
                    if settled(&path, &mut seen, wait) {
                        seen.remove(&path);
                        open.remove(&path);
                        let to = Ingest {
                            store: &store,
                            limits: &limits,
                        };
                        take(to, &dir, &path, ns);
                    }
                }
            }
        })?;
    Ok(Inbox {
        stop,
        thread: Some(thread),
    })
}

/// Files waiting in the inbox and its `try/` folder.
fn candidates(dir: &Path) -> Vec<(PathBuf, Namespace)> {
    let mut out = Vec::new();
    for (d, ns) in [
        (dir.to_path_buf(), Namespace::Release),
        (dir.join("try"), Namespace::Try),
    ] {
        // `try/` is the inbox's own folder: a link put in its place would
        // have every file wherever it points taken, then moved out to `done/`
        // or `failed/`.
        if ns == Namespace::Try && real_folder(&d).is_err() {
            continue;
        }
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ignored =
                name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part");
            if !ignored && e.file_type().is_ok_and(|t| t.is_file()) {
                out.push((e.path(), ns));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Files created or written in place are open until their writer closes them.
fn track_writers(event: &notify::Event, open: &mut HashSet<PathBuf>) {
    use notify::EventKind::{Access, Create, Modify};
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    match event.kind {
        Create(CreateKind::File) | Create(CreateKind::Any) | Modify(ModifyKind::Data(_)) => {
            open.extend(event.paths.iter().cloned());
        }
        Access(AccessKind::Close(AccessMode::Write)) => {
            for p in &event.paths {
                open.remove(p);
            }
        }
        _ => {}
    }
}

/// Whether a file has kept its size and mtime for at least `wait`.
fn settled(
    path: &Path,
    seen: &mut HashMap<PathBuf, (u64, SystemTime, Instant)>,
    wait: Duration,
) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    let (len, mtime) = (
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    );
    match seen.get(path) {
        Some((l, m, since)) if *l == len && *m == mtime => since.elapsed() >= wait,
        _ => {
            seen.insert(path.to_path_buf(), (len, mtime, Instant::now()));
            false
        }
    }
}

/// Ingests one settled file and moves it out of the inbox.
fn take(to: Ingest<'_>, dir: &Path, path: &Path, ns: Namespace) {
    let store = to.store;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let start = UploadStart {
        user: "inbox".into(),
        filename: Some(name.clone()),
        try_symbols: ns == Namespace::Try,
        ..UploadStart::default()
    };
    let record = store.begin_upload(&start).ok();
    let size = fs::metadata(path).map_or(0, |m| m.len());
    // A zip in Tecken's layout keeps its paths; any other zip or loose file is placed by identity.
    let layout = if super::zipfile::is_tecken_zip(path) {
        Layout::Tecken
    } else {
        Layout::Auto
    };
    let result = ingest_upload(
        to,
        super::Arrived::file(path, &name),
        ns,
        record.map(|r| r.id()),
        layout,
        &super::Cancel::default(),
    );
    let error = result.as_ref().err().map(|e| e.to_string());
    if let Some(record) = record {
        let fin = UploadFinish {
            filename: Some(&name),
            download_url: None,
            size,
            try_symbols: ns == Namespace::Try,
            end: Report::record_end(&result),
        };
        if let Err(e) = record.finish(store, &fin) {
            tracing::warn!(error = %e, "could not record an inbox upload");
        }
    }
    let target = dir.join(if error.is_some() { "failed" } else { "done" });
    if let Err(e) = real_folder(&target) {
        tracing::error!(folder = %target.display(), error = %e, "could not make the inbox folder");
        return;
    }
    let dest = unique(&target, &name);
    if let Err(e) = fs::rename(path, &dest) {
        tracing::error!(file = %path.display(), error = %e, "could not move an ingested file out of the inbox");
        return;
    }
    match error {
        Some(why) => {
            tracing::warn!(file = %name, error = %why, "inbox file failed");
            if let Err(e) = write_note(&dest, &why) {
                tracing::warn!(file = %dest.display(), error = %e, "could not write the reason beside a failed inbox file");
            }
        }
        None => tracing::info!(file = %name, "inbox file ingested"),
    }
}

/// Makes `try/`, `done/` or `failed/` a real folder again: a symbolic link
/// (or a file) put in its place is removed, so no file is taken from, or
/// moved to, wherever it points.
fn real_folder(dir: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir(dir)
}

/// Writes the note saying why `dest` failed, whole or not at all: it is
/// written under a hidden name and linked to `<dest>.error.txt`, so a reader
/// never sees it half written. New files only: never written through a link
/// or over a file planted there.
fn write_note(dest: &Path, why: &str) -> std::io::Result<()> {
    let note = note_of(dest);
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(note.file_name().unwrap_or_default());
    hidden.push(".part");
    let part = note.with_file_name(hidden);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{why}\n").as_bytes()))
        .and_then(|()| fs::hard_link(&part, &note));
    let _ = fs::remove_file(&part);
    written
}

/// The note saying why `dest` failed: `<dest>.error.txt`.
fn note_of(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".error.txt");
    dest.with_file_name(name)
}

/// Whether nothing, not even a dangling symbolic link, has this name.
fn free(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err()
}

/// `dir/name`, or `dir/name.1`, `dir/name.2`, … whichever is free together
/// with its note (`<name>.error.txt`).
fn unique(dir: &Path, name: &str) -> PathBuf {
    std::iter::once(dir.join(name))
        .chain((1..).map(|i| dir.join(format!("{name}.{i}"))))
        .find(|p| free(p) && free(&note_of(p)))
        .expect("some name is free")
}
