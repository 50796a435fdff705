//! Soak: the real daemon under a bounded, mixed load on loopback — concurrent
//! uploads of overlapping zips, downloads of hits and misses, and `symdepot gc`
//! runs beside it — ending with every acknowledged file served, `verify`
//! clean, no unexpected status, and memory and file descriptors flat.
//! `SOAK_SECONDS` (default 10) sets the duration; the figures are printed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// A daemon's resident memory (kB) and open file descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

#[derive(Default)]
struct Counts {
    uploads: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    gc_runs: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counts {
    fn error(&self, what: String) {
        self.errors.lock().unwrap().push(what);
    }
}

#[test]
fn a_mixed_load_ends_consistent_with_memory_and_descriptors_flat() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let token = create_token_cli(dir.path(), "upload");
    let (mut child, addr) = spawn_daemon(dir.path());
    let batches = batches(6, &mut Rng(0x50a6));
    let acknowledged: Mutex<Vec<(String, Vec<u8>)>> = Mutex::new(Vec::new());
    let counts = Counts::default();
    let stop = AtomicBool::new(false);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut baseline = None;

    std::thread::scope(|s| {
        for u in 0..2u64 {
            let (batches, acknowledged, counts, stop, addr, token) =
                (&batches, &acknowledged, &counts, &stop, &addr, &token);
            s.spawn(move || {
                let mut rng = Rng(u + 11);
                while !stop.load(Ordering::Relaxed) {
                    let batch = &batches[rng.below(batches.len() as u64) as usize];
                    match post(addr, token, batch.zip.clone()) {
                        Some(201) => {
                            counts.uploads.fetch_add(1, Ordering::Relaxed);
                            acknowledged
                                .lock()
                                .unwrap()
                                .extend(batch.members.iter().cloned());
                        }
                        other => counts.error(format!("upload answered {other:?}")),
                    }
                }
            });
        }
        for d in 0..4u64 {
            let (acknowledged, counts, stop, addr) = (&acknowledged, &counts, &stop, &addr);
            s.spawn(move || {
                let client = crate::support::client().build().unwrap();
                let mut rng = Rng(d + 101);
                while !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let known = acknowledged.lock().unwrap();
                        (!known.is_empty() && rng.below(4) > 0)
                            .then(|| known[rng.below(known.len() as u64) as usize].clone())
                    };
                    match pick {
                        Some((key, data)) => {
                            match client.get(format!("http://{addr}/{key}")).send() {
                                Ok(r) if r.status() == 200 => {
                                    let body = r.bytes().unwrap_or_default();
                                    if body.as_ref() != data.as_slice() {
                                        counts.error(format!("{key}: other bytes served"));
                                    }
                                    counts.hits.fetch_add(1, Ordering::Relaxed);
                                    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                                }
                                other => {
                                    counts.error(format!("{key}: {:?}", other.map(|r| r.status())))
                                }
                            }
                        }
                        None => {
                            let miss = format!("nope{}.pdb/{ID_A}/nope.sym", rng.below(1000));
                            match client.get(format!("http://{addr}/{miss}")).send() {
                                Ok(r) if r.status() == 404 => {
                                    counts.misses.fetch_add(1, Ordering::Relaxed);
                                }
                                other => {
                                    counts.error(format!("{miss}: {:?}", other.map(|r| r.status())))
                                }
                            }
                        }
                    }
                }
            });
        }
        {
            let (counts, stop, dir) = (&counts, &stop, dir.path());
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = symdepot(dir).arg("gc").output().unwrap();
                    if out.status.success() {
                        counts.gc_runs.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counts.error(format!("gc: {}", String::from_utf8_lossy(&out.stderr)));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
        // Warm up for a fifth of the time, then take the baseline footprint.
        std::thread::sleep(Duration::from_secs(seconds.div_ceil(5)));
        baseline = Some(footprint(child.id()));
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
    });

    let (rss0, fds0) = baseline.unwrap();
    let (rss1, fds1) = footprint(child.id());
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_served(&addr, &acknowledged);
    sigterm(&child);
    wait_exit(&mut child);
    let verify = symdepot(dir.path()).arg("verify").output().unwrap();
    let errors = counts.errors.into_inner().unwrap();
    eprintln!(
        "soak {seconds}s: {} uploads, {} hits ({} bytes checked), {} misses, {} gc runs, {} errors; \
         RSS {rss0} -> {rss1} kB, fds {fds0} -> {fds1}",
        counts.uploads.into_inner(),
        counts.hits.into_inner(),
        counts.bytes.into_inner(),
        counts.misses.into_inner(),
        counts.gc_runs.into_inner(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "unexpected answers: {:?}",
        &errors[..errors.len().min(10)]
    );
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(rss1 < 150_000, "RSS grew to {rss1} kB");
    assert!(rss1 < rss0 + 50_000, "RSS grew from {rss0} to {rss1} kB");
    assert!(
        fds1 <= fds0 + 8,
        "file descriptors grew from {fds0} to {fds1}"
    );
}
