//! Writes a seeded, realistic benchmark corpus (benchmarks.md): Breakpad
//! `.sym` files with real structure in a Firefox-like size mix, plus ELF
//! debug files with build ids, as a Tecken-layout zip.
//!
//! ```sh
//! cargo run --release --example corpus -- --out target/corpus.zip
//! cargo run --release --example corpus -- --out big.zip --medium 3 --large-mb 300   # the large run
//! ```
//!
//! Flags: `--seed N` (default 1), `--small N` modules of 5–500 KB (default 300),
//! `--medium N` modules of 5–50 MB (default 2), `--large-mb N` one module of
//! about N MB (default 0: none), `--elf N` ELF debug files of 6–50 KB (default 200).

use std::fmt::Write as _;
use std::io::Write;

/// xorshift64*: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Log-uniform between `lo` and `hi`.
    fn log_between(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let f = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (l + f * (h - l)).exp() as u64
    }
    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02X}", self.below(256)))
            .collect()
    }
    fn word(&mut self) -> String {
        const PARTS: &[&str] = &[
            "js", "dom", "gfx", "net", "layout", "style", "ipc", "mozilla", "nsI", "Frame",
            "Element", "Parser", "Runtime", "Compile", "Paint", "Cache", "Stream", "Thread",
            "Event", "Observer", "Buffer", "Table",
        ];
        let n = 2 + self.below(3);
        (0..n)
            .map(|_| PARTS[self.below(PARTS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join("")
    }
}

/// A `.sym` of about `target` bytes: MODULE, INFO, FILE, FUNC with lines, PUBLIC, STACK CFI.
fn sym(rng: &mut Rng, module: &str, id: &str, target: u64) -> Vec<u8> {
    let mut s = String::with_capacity(target as usize + 4096);
    let _ = writeln!(s, "MODULE Linux x86_64 {id} {module}");
    let _ = writeln!(s, "INFO CODE_ID {}", rng.hex(20).to_lowercase());
    let _ = writeln!(s, "INFO GENERATOR mozilla/dump_syms 2.3.4");
    let files = 20 + target / 20_000;
    for f in 0..files {
        let _ = writeln!(
            s,
            "FILE {f} hg:hg.mozilla.org/mozilla-central:{}/{}.cpp:abcdef",
            rng.word(),
            rng.word()
        );
    }
    let mut addr: u64 = 0x1000;
    while (s.len() as u64) < target {
        let len = 16 + rng.below(400);
        let _ = writeln!(
            s,
            "FUNC {addr:x} {len:x} {} {}::{}(int, void*)",
            rng.below(64),
            rng.word(),
            rng.word()
        );
        let mut a = addr;
        while a < addr + len {
            let step = 2 + rng.below(12);
            let _ = writeln!(
                s,
                "{a:x} {step:x} {} {}",
                1 + rng.below(5000),
                rng.below(files)
            );
            a += step;
        }
        if rng.below(4) == 0 {
            let _ = writeln!(
                s,
                "PUBLIC {:x} 0 {}_{}",
                addr + len,
                rng.word(),
                rng.below(1000)
            );
        }
        if rng.below(3) == 0 {
            let _ = writeln!(
                s,
                "STACK CFI INIT {addr:x} {len:x} .cfa: $rsp 8 + .ra: .cfa -8 + ^"
            );
            let _ = writeln!(
                s,
                "STACK CFI {:x} .cfa: $rsp 16 + $rbp: .cfa -16 + ^",
                addr + 1
            );
        }
        addr += len + rng.below(32);
    }
    s.into_bytes()
}

/// A minimal ELF64 debug file: a GNU build-id note and a `.debug_info` of `size` bytes.
fn elf_debug(rng: &mut Rng, build_id: &[u8], size: usize) -> Vec<u8> {
    let shstrtab = b"\0.note.gnu.build-id\0.debug_info\0.shstrtab\0";
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&(build_id.len() as u32).to_le_bytes());
    note.extend_from_slice(&3u32.to_le_bytes()); // NT_GNU_BUILD_ID
    note.extend_from_slice(b"GNU\0");
    note.extend_from_slice(build_id);
    let info: Vec<u8> = (0..size).map(|_| rng.below(256) as u8).collect();
    let mut out = vec![0u8; 64];
    let note_off = out.len() as u64;
    out.extend_from_slice(&note);
    let info_off = out.len() as u64;
    out.extend_from_slice(&info);
    let str_off = out.len() as u64;
    out.extend_from_slice(shstrtab);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let sh_off = out.len() as u64;
    let section = |name: u32, typ: u32, off: u64, len: u64, align: u64| {
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&name.to_le_bytes());
        h.extend_from_slice(&typ.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // flags
        h.extend_from_slice(&0u64.to_le_bytes()); // addr
        h.extend_from_slice(&off.to_le_bytes());
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // link
        h.extend_from_slice(&0u32.to_le_bytes()); // info
        h.extend_from_slice(&align.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // entsize
        h
    };
    out.extend_from_slice(&[0u8; 64]);
    out.extend_from_slice(&section(1, 7, note_off, note.len() as u64, 4));
    out.extend_from_slice(&section(20, 1, info_off, info.len() as u64, 1));
    out.extend_from_slice(&section(32, 3, str_off, shstrtab.len() as u64, 1));
    // The ELF header.
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // entry
    h.extend_from_slice(&0u64.to_le_bytes()); // phoff
    h.extend_from_slice(&sh_off.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // flags
    h.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    h.extend_from_slice(&0u16.to_le_bytes()); // phentsize
    h.extend_from_slice(&0u16.to_le_bytes()); // phnum
    h.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    h.extend_from_slice(&4u16.to_le_bytes()); // shnum
    h.extend_from_slice(&3u16.to_le_bytes()); // shstrndx
    out[..64].copy_from_slice(&h);
    out
}

/// The Breakpad id of an ELF build id (identity.md).
fn breakpad_id(build_id: &[u8]) -> String {
    let mut g = build_id[..16].to_vec();
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    format!(
        "{}0",
        g.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "corpus.zip".into());
    let mut rng = Rng(flag(&args, "--seed", 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut sizes: Vec<u64> = (0..flag(&args, "--small", 300))
        .map(|_| rng.log_between(5_000, 500_000))
        .collect();
    sizes.extend((0..flag(&args, "--medium", 2)).map(|_| rng.log_between(5_000_000, 50_000_000)));
    let large = flag(&args, "--large-mb", 0);
    if large > 0 {
        sizes.push(large << 20);
    }
    let file = std::fs::File::create(&out).expect("the output zip can be created");
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let (mut n, mut bytes) = (0u64, 0u64);
    for (i, size) in sizes.iter().enumerate() {
        let module = format!("lib{}{i}.so", rng.word().to_lowercase());
        let id = format!("{}0", rng.hex(16));
        let data = sym(&mut rng, &module, &id, *size);
        zip.start_file(format!("{module}/{id}/{module}.sym"), opts)
            .unwrap();
        zip.write_all(&data).unwrap();
        n += 1;
        bytes += data.len() as u64;
    }
    for i in 0..flag(&args, "--elf", 200) {
        let build_id: Vec<u8> = (0..20).map(|_| rng.below(256) as u8).collect();
        let size = rng.log_between(6_000, 50_000) as usize;
        let data = elf_debug(&mut rng, &build_id, size);
        let name = format!("libelf{i}.so.debug");
        zip.start_file(format!("{name}/{}/{name}", breakpad_id(&build_id)), opts)
            .unwrap();
        zip.write_all(&data).unwrap();
        n += 1;
        bytes += data.len() as u64;
    }
    zip.finish().unwrap().flush().unwrap();
    eprintln!("wrote {out}: {n} files, {bytes} bytes uncompressed");
}
