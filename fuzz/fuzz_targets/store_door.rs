//! Any key handed to the store's door: a path it gives is the namespace folder
//! plus exactly three plain names, whatever the bytes.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use symdepot::store::door::entry_path;

fuzz_target!(|data: &[u8]| {
    let key = String::from_utf8_lossy(data);
    let top = Path::new("/data/release");
    if let Ok(path) = entry_path(top, &key) {
        let rest = path.strip_prefix(top).expect("inside the namespace folder");
        let parts: Vec<_> = rest.components().collect();
        assert_eq!(parts.len(), 3, "{key:?}");
        for c in parts {
            match c {
                Component::Normal(n) => assert!(n != ".." && n != "." && !n.is_empty()),
                other => panic!("{key:?} made {other:?}"),
            }
        }
    }
});
