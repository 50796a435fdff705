//! The records API's query strings (uploads and files lists): never panic;
//! a refusal names a parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symdepot::http::request::{file_query, upload_query};

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    for result in [
        upload_query(Some(query)).map(|_| ()),
        file_query(Some(query)).map(|_| ()),
    ] {
        if let Err(message) = result {
            assert!(!message.is_empty());
        }
    }
});
