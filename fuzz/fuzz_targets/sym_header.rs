//! The `.sym` header parser on any bytes: never panics; what it accepts has
//! a hex debug id and a module name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symdepot::identity::sym::parse_header;

fuzz_target!(|data: &[u8]| {
    if let Some(id) = parse_header(data) {
        let debug_id = id.debug_id.expect("an accepted header has a debug id");
        assert!(!debug_id.is_empty() && debug_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(id.debug_file.is_some_and(|f| !f.is_empty()));
    }
});
