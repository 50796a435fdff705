//! Micro-benchmarks of the hot pure parts and of the store's point operations
//! (benchmarks.md): request path → route and key, `.sym` header parsing,
//! identity extraction, index lookups, and blob hashing.
//!
//! ```sh
//! cargo bench --bench micro            # measure
//! cargo test --bench micro             # run each benchmark once, as a test
//! ```

use std::io::Write;
use std::sync::Arc;

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use symdepot::config::Config;
use symdepot::http::routes::route;
use symdepot::identity::{identify, identify_bytes, sym};
use symdepot::keys::{classify_member, normalize};
use symdepot::store::Store;

fn main() {
    divan::main();
}

const SYMBOL_PATH: &str = "/xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym";
const BUILDID_PATH: &str = "/buildid/0123456789abcdef0123456789abcdef01234567/debuginfo";
const MEMBER: &[u8] = b"libxul.so/0123456789ABCDEF0123456789ABCDEF0/libxul.so.sym";

mod keys {
    use super::*;

    #[divan::bench(args = [SYMBOL_PATH, BUILDID_PATH, "/nope.pdb/0123456789ABCDEF0123456789ABCDEF1/nope.sym"])]
    fn request_path_to_route(path: &str) -> symdepot::http::routes::Route {
        route(black_box(path), black_box(Some("code_file=xul.dll")))
    }

    #[divan::bench]
    fn member_name_to_key() -> Result<symdepot::keys::MemberName, String> {
        classify_member(black_box(MEMBER), false)
    }

    #[divan::bench]
    fn key_normalisation() -> String {
        normalize(black_box(&SYMBOL_PATH[1..]))
    }
}

/// A `.sym` file's first lines, as the corpus and dump_syms write them.
fn sym_header() -> Vec<u8> {
    let mut s = Vec::new();
    writeln!(
        s,
        "MODULE Linux x86_64 44E4EC8C2F41492B9369D6B9A059577C0 libxul.so"
    )
    .unwrap();
    writeln!(
        s,
        "INFO CODE_ID 8CECE4442F412B499369D6B9A059577C1A2B3C4D libxul.so"
    )
    .unwrap();
    writeln!(s, "INFO GENERATOR mozilla/dump_syms 2.3.9").unwrap();
    for i in 0..200 {
        writeln!(
            s,
            "FILE {i} /builds/worker/checkouts/gecko/dom/base/File{i}.cpp"
        )
        .unwrap();
    }
    s
}

mod identity {
    use super::*;

    #[divan::bench]
    fn sym_header_parse(b: Bencher) {
        let header = sym_header();
        b.counter(BytesCount::of_slice(&header))
            .bench(|| sym::parse_header(black_box(&header)));
    }

    #[divan::bench]
    fn sym_identify(b: Bencher) {
        let header = sym_header();
        b.bench(|| identify_bytes(black_box(&header), "libxul.so.sym"));
    }

    /// A real linked ELF file: this benchmark's own executable, read through a file handle.
    #[divan::bench]
    fn elf_identify_from_file(b: Bencher) {
        let exe = std::env::current_exe().expect("the benchmark knows its own path");
        b.bench(|| {
            let f = std::fs::File::open(&exe).expect("own executable is readable");
            identify(f, "micro")
        });
    }
}

/// A store in a temp dir whose index holds `rows` keys (and their lookup rows).
struct Indexed {
    _dir: tempfile::TempDir,
    store: Store,
}

fn indexed(rows: usize) -> Indexed {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let store = Store::open(Arc::new(config)).expect("store opens");
    // Filled behind the store's back: a hundred thousand uploads would take minutes.
    let mut conn = rusqlite::Connection::open(dir.path().join(symdepot::store::INDEX_FILE))
        .expect("index opens");
    let tx = conn.transaction().expect("transaction");
    {
        let mut key = tx
            .prepare(
                "INSERT INTO keys (namespace, key, key_norm, blob, encoding, size, stored_size, kind, created_at, last_uploaded_at) \
                 VALUES ('release', ?1, ?2, ?3, 'gzip', 100, 50, 'sym', 0, 0)",
            )
            .expect("insert prepares");
        let mut lookup = tx
            .prepare("INSERT INTO lookup (lkey, namespace, key_id) VALUES (?1, 'release', ?2)")
            .expect("insert prepares");
        for i in 0..rows {
            let k = scale_key(i);
            let blob = blake3::hash(k.as_bytes()).to_hex().to_string();
            key.execute((&k, normalize(&k), blob)).expect("insert key");
            lookup
                .execute((normalize(&k), tx.last_insert_rowid()))
                .expect("insert lookup");
        }
    }
    tx.commit().expect("commit");
    drop(conn);
    Indexed { _dir: dir, store }
}

fn scale_key(i: usize) -> String {
    format!("scale{i}.pdb/{i:032X}0/scale{i}.sym")
}

mod index {
    use super::*;

    const ROWS: usize = 100_000;

    #[divan::bench(sample_count = 200)]
    fn lookup_hit(b: Bencher) {
        let ix = indexed(ROWS);
        let mut i = 0usize;
        b.bench_local(|| {
            i = (i + 7919) % ROWS;
            let k = normalize(&scale_key(i));
            let row = ix.store.lookup(&k, false).expect("lookup runs");
            row.expect("every scale key is indexed")
        });
    }

    #[divan::bench(sample_count = 200)]
    fn lookup_miss(b: Bencher) {
        let ix = indexed(ROWS);
        b.bench(|| {
            let row = ix
                .store
                .lookup(
                    black_box("nope.pdb/00000000000000000000000000000000a/nope.sym"),
                    false,
                )
                .expect("lookup runs");
            assert!(row.is_none(), "an unknown key is not found");
        });
    }
}

mod blobs {
    use super::*;

    #[divan::bench(args = [6 << 10, 1 << 20, 16 << 20])]
    fn blake3_hash(b: Bencher, len: usize) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        b.counter(BytesCount::new(len))
            .bench(|| blake3::hash(black_box(&data)));
    }
}
