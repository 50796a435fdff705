//! The `/stackwalk` path on any bytes (a store without symbols): a truncated
//! or hostile minidump is an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = symdepot::symbolicate::minidump::walk_without_symbols(data.to_vec()) {
        assert!(json.starts_with(b"{"));
    }
});
