//! Request path and query → route, and path → decoded segments: never panics,
//! and no segment it yields can climb out of the layout tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symdepot::http::routes::route;
use symdepot::keys::{normalize, split_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let _ = route(path, query);
    if let Some(segs) = split_path(path) {
        for s in &segs {
            assert!(!s.is_empty() && s != "." && s != "..");
            assert!(!s.contains(['/', '\\', '\0']));
            let _ = normalize(s);
        }
    }
});
