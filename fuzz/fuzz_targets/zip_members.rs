//! The upload validator on any bytes taken as a zip: listing, the member
//! rules, and phase 1 (inflate under the limits, hash, identify, check
//! against the path). Never panics; an accepted member has a valid key; the
//! member streams hashed as the bytes arrive (in pieces) never change what
//! phase 1 finds or the streams it names.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use symdepot::config::Config;
use symdepot::ingest::prehash::StreamHasher;
use symdepot::ingest::zipfile::{check_all, list};
use symdepot::keys::{MemberName, classify_member};
use symdepot::settings::IngestLimits;

struct Scratch {
    dir: tempfile::TempDir,
    limits: IngestLimits,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = IngestLimits::new(&Config {
            max_uncompressed_bytes: 4 << 20,
            max_members: 1_000,
            ingest_workers: 1,
            ..Config::default()
        });
        Scratch { dir, limits }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let mut zip = tempfile::NamedTempFile::new_in(s.dir.path()).expect("temp file");
    zip.write_all(data).expect("write");
    let piece = 1 + data.first().map_or(0, |b| usize::from(*b) * 7);
    for auto in [false, true] {
        let temp_file = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempfile_in(s.dir.path())
        };
        let check = |prehash: bool| {
            let mut listing = list(zip.path(), &s.limits, auto).ok()?;
            if prehash {
                let mut h = StreamHasher::new(1_000);
                data.chunks(piece).for_each(|c| h.feed(c));
                listing.prehashed = h.finish();
            }
            let checked = check_all(
                &listing,
                &s.limits,
                &temp_file,
                // No stream is known: every member is inflated and read.
                &|_| Ok(Default::default()),
                &symdepot::ingest::Cancel::default(),
            );
            Some(checked.map(|c| {
                c.into_iter()
                    .map(|m| (m.key.key(), m.hash, m.stream))
                    .collect::<Vec<_>>()
            }))
        };
        let (read, hashed) = (check(false), check(true));
        if let (Some(Ok(read)), Some(Ok(hashed))) = (&read, &hashed) {
            assert_eq!(read, hashed);
        }
        assert_eq!(
            read.as_ref().map(|r| r.is_ok()),
            hashed.as_ref().map(|r| r.is_ok())
        );
        if let Some(Ok(checked)) = read {
            for (key, _, _) in checked {
                if !auto {
                    assert!(matches!(
                        classify_member(key.as_bytes(), false),
                        Ok(MemberName::Key(_))
                    ));
                }
            }
        }
    }
});
