//! Integration tests: the real daemon over real HTTP, with a real index.

mod browser;
mod by_download;
mod cli;
mod client;
mod crafted_zips;
mod crash;
mod debuginfod;
mod download;
mod durability;
mod full_disk;
mod inbox;
mod interop_debuginfod;
mod interop_minidump;
mod layout_auto;
mod limits;
mod operations;
mod private;
mod records;
mod soak;
mod support;
mod tecken_examples;
mod transfer;
mod upload;
mod upload_rules;
mod windows;
