//! The `/symbolicate` request parser on any bytes, as v5 and as v4: never
//! panics; what it accepts stays within the frame cap and names only
//! modules of its memory map, and answers without panicking.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use symdepot::symbolicate::{Version, parse, symbolicate, used_modules, v4_json, v5_json};

fuzz_target!(|data: &[u8]| {
    for version in [Version::V5, Version::V4] {
        let Ok(jobs) = parse(data, version, 1000) else {
            continue;
        };
        let frames: usize = jobs.iter().flat_map(|j| &j.stacks).map(Vec::len).sum();
        assert!(frames <= 1000);
        let results: Vec<_> = jobs
            .iter()
            .map(|job| {
                for m in used_modules(job) {
                    assert!(m < job.modules.len());
                }
                let mut budget = usize::MAX;
                symbolicate(job, &HashMap::new(), &mut budget).unwrap()
            })
            .collect();
        let _ = v5_json(&jobs, &results);
        if let Some(r) = results.first() {
            let _ = v4_json(r);
        }
    }
});
