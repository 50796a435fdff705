//! Every identity parser (ELF, Mach-O, PE, PDB, portable PDB, source maps,
//! bundles, `.sym`), reached through kind sniffing on any bytes: never
//! panics, and every lookup key it yields is a three-segment key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symdepot::identity::identify_bytes;
use symdepot::identity::lookup::lookup_keys;

fuzz_target!(|data: &[u8]| {
    let id = identify_bytes(data, "fuzz.bin");
    for key in lookup_keys("fuzz.bin/0123ABCD/fuzz.bin", &id) {
        assert!(!key.is_empty());
    }
});
