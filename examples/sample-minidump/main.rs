//! `cargo run --example sample-minidump > crash.dmp`: the minidump of the
//! README's Quick start, a crash in `xul.dll` (PDB `xul.pdb`, the debug id the
//! Quick start uploads symbols for) at offset 0x1000, called from 0x1005.

mod writer;

use std::io::Write;

fn main() -> std::io::Result<()> {
    let dump =
        writer::windows_minidump(&[("xul.dll", "xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2")]);
    std::io::stdout().lock().write_all(&dump)
}
