//! Writes a minidump of a running process: `symdepot-minidump-helper <pid> <out.dmp>`.
//!
//! A test helper for symdepot's interop tests, which need a real minidump of
//! a real process for `minidump-stackwalk` to symbolicate.

use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: symdepot-minidump-helper <pid> <out.dmp>");
        exit(2);
    }
    let pid: i32 = match args[1].parse() {
        Ok(p) => p,
        Err(_) => {
            eprintln!("not a pid: {}", args[1]);
            exit(2);
        }
    };
    let mut file = match std::fs::File::create(&args[2]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot create {}: {e}", args[2]);
            exit(1);
        }
    };
    let config = minidump_writer::minidump_writer::MinidumpWriterConfig::new(pid, pid);
    if let Err(e) = config.write(&mut file) {
        eprintln!("cannot write a minidump of {pid}: {e}");
        exit(1);
    }
}
