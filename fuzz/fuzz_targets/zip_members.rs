//! The upload validator on any bytes taken as a zip: listing, the member
//! rules, and phase 1 (inflate under the limits, hash, identify, check
//! against the path). Never panics; an accepted member has a valid key.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use symdepot::config::Config;
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
    for auto in [false, true] {
        let Ok(listing) = list(zip.path(), &s.limits, auto) else {
            continue;
        };
        let temp_file = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempfile_in(s.dir.path())
        };
        if let Ok(checked) = check_all(
            &listing,
            &s.limits,
            &temp_file,
            // No stream is known: every member is inflated and read.
            &|_| Ok(Default::default()),
            &symdepot::ingest::Cancel::default(),
        ) {
            for member in checked {
                let key = member.key.key();
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
