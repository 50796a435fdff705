//! Parsed `.sym` files, kept in memory up to a number of bytes (each file's
//! parsed structures, estimated by [`parsed_bytes`]: four to eight times the
//! text), least recently used out first, and parsed once however many
//! requests wait for the same file. A file larger than the whole bound is
//! parsed for each request that needs it (once for all that wait at once).
//!
//! Entries are named by blob: a key uploaded again with other content is
//! another entry, never a stale one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use breakpad_symbols::SymbolFile;

use crate::store::{KeyRow, Store};

/// A parse in progress, awaited by every request that needs the same file.
type Parsing = Arc<tokio::sync::OnceCell<Arc<SymbolFile>>>;

/// Parsed `.sym` files by blob, bounded by `max_bytes` of parsed structures.
pub struct SymbolCache {
    max_bytes: u64,
    inner: Arc<Mutex<Inner>>,
    /// Counts each parse (`/metrics`).
    parsed: prometheus_client::metrics::counter::Counter,
}

struct Inner {
    lru: lru::LruCache<String, (Arc<SymbolFile>, u64)>,
    bytes: u64,
    parsing: HashMap<String, Parsing>,
    parses: u64,
}

impl std::fmt::Debug for SymbolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("SymbolCache")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &inner.bytes)
            .field("files", &inner.lru.len())
            .finish()
    }
}

impl SymbolCache {
    pub fn new(
        max_bytes: u64,
        parsed: prometheus_client::metrics::counter::Counter,
    ) -> SymbolCache {
        SymbolCache {
            max_bytes,
            parsed,
            inner: Arc::new(Mutex::new(Inner {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                parsing: HashMap::new(),
                parses: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many files were parsed since the start.
    pub fn parses(&self) -> u64 {
        self.lock().parses
    }

    /// The parsed symbols of the `.sym` key `row`: from memory, or parsed on a
    /// blocking thread (once, whoever else waits for it).
    pub async fn get(&self, store: &Arc<Store>, row: &KeyRow) -> crate::Result<Arc<SymbolFile>> {
        let cell = {
            let mut inner = self.lock();
            if let Some((sym, _)) = inner.lru.get(&row.blob) {
                return Ok(sym.clone());
            }
            inner.parsing.entry(row.blob.clone()).or_default().clone()
        };
        // The parse and its keeping run on a task of their own: a request
        // that goes away neither abandons the parse half way (the next one
        // would start it again) nor leaves its result outside the bound.
        let (inner, max_bytes, counter) = (self.inner.clone(), self.max_bytes, self.parsed.clone());
        let (store, row) = (store.clone(), row.clone());
        let parsing = tokio::spawn(async move {
            let parsed = cell
                .get_or_try_init(|| {
                    let (store, row) = (store.clone(), row.clone());
                    async move {
                        tokio::task::spawn_blocking(move || parse(&store, &row))
                            .await
                            .map_err(|e| crate::Error::Io(std::io::Error::other(e)))?
                    }
                })
                .await
                .cloned();
            let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = inner.parsing.get(&row.blob)
                && Arc::ptr_eq(c, &cell)
            {
                inner.parsing.remove(&row.blob);
                if let Ok(sym) = &parsed {
                    inner.parses += 1;
                    counter.inc();
                    let size = parsed_bytes(sym);
                    if size <= max_bytes {
                        inner.bytes += size;
                        inner.lru.put(row.blob.clone(), (sym.clone(), size));
                        while inner.bytes > max_bytes {
                            match inner.lru.pop_lru() {
                                Some((_, (_, size))) => inner.bytes -= size,
                                None => break,
                            }
                        }
                    }
                }
            }
            parsed
        });
        parsing
            .await
            .unwrap_or_else(|e| Err(crate::Error::Io(std::io::Error::other(e))))
    }
}

/// Parses a stored `.sym` as it is read (never whole in memory).
fn parse(store: &Store, row: &KeyRow) -> crate::Result<Arc<SymbolFile>> {
    let reader = store.open_original(row).map_err(|e| store.blob_error(e))?;
    let sym = SymbolFile::parse(reader, |_| ()).map_err(|e| {
        crate::Error::invalid(&row.key, format!("the stored .sym does not parse: {e}"))
    })?;
    Ok(Arc::new(sym))
}

/// The memory a parsed `.sym` holds, estimated from its structures: each
/// table's entries and each string's bytes, with a word of allocator
/// overhead per allocation and hash tables at their usual load.
pub fn parsed_bytes(sym: &SymbolFile) -> u64 {
    use std::mem::size_of;
    /// The size of what a slice iterator yields (types the crate does not export).
    fn each<T>(_: &std::slice::Iter<'_, T>) -> usize {
        size_of::<T>()
    }
    fn each_of<T>(_: &Vec<T>) -> usize {
        size_of::<T>()
    }
    const ALLOC: usize = 16;
    let string = |s: &String| s.capacity() + ALLOC;
    let names = |m: &HashMap<u32, String>| {
        m.len() * (size_of::<(u32, String)>() + 1) * 8 / 7 + m.values().map(string).sum::<usize>()
    };
    let publics = sym.publics.capacity() * each_of(&sym.publics)
        + sym.publics.iter().map(|p| string(&p.name)).sum::<usize>();
    let functions = sym.functions.ranges_values();
    let functions = functions.len() * each(&functions)
        + functions
            .map(|(_, f)| {
                let lines = f.lines.ranges_values();
                string(&f.name)
                    + lines.len() * each(&lines)
                    + f.inlinees.capacity() * each_of(&f.inlinees)
                    + 2 * ALLOC
            })
            .sum::<usize>();
    let cfi = sym.cfi_stack_info.ranges_values();
    let cfi = cfi.len() * each(&cfi)
        + cfi
            .map(|(_, c)| {
                string(&c.init.rules)
                    + c.add_rules.capacity() * each_of(&c.add_rules)
                    + c.add_rules.iter().map(|r| string(&r.rules)).sum::<usize>()
                    + ALLOC
            })
            .sum::<usize>();
    // A Windows entry may hold a program string (a type the crate does not
    // export): counted at a typical length.
    let win = [&sym.win_stack_framedata_info, &sym.win_stack_fpo_info]
        .into_iter()
        .map(|map| {
            let entries = map.ranges_values();
            entries.len() * (each(&entries) + 48 + ALLOC)
        })
        .sum::<usize>();
    let total = size_of::<SymbolFile>()
        + names(&sym.files)
        + names(&sym.inline_origins)
        + publics
        + functions
        + cfi
        + win;
    total as u64
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SymbolFile {
        SymbolFile::parse(text.as_bytes(), |_| ()).unwrap()
    }

    #[test]
    fn the_parsed_size_follows_what_a_file_holds() {
        let head = "MODULE Linux x86_64 44E4EC8C2F41492B9369D6B9A059577C0 a.so\nFILE 0 a.c\n";
        let mut text = head.to_string();
        for f in 0..1000u64 {
            text.push_str(&format!("FUNC {:x} 100 0 function_{f}\n", f * 0x100));
            for l in 0..10u64 {
                text.push_str(&format!("{:x} 10 {} 0\n", f * 0x100 + l * 0x10, l + 1));
            }
            text.push_str(&format!(
                "STACK CFI INIT {:x} 100 .cfa: $rsp 8 + .ra: .cfa -8 + ^\n",
                f * 0x100
            ));
        }
        let small = parsed_bytes(&parse(head));
        let big = parsed_bytes(&parse(&text));
        // Measured on a 58 MB .sym: estimated 136 MB, 148 MB of resident memory.
        assert!(small < 4096, "{small}");
        assert!(
            big > text.len() as u64 && big < 8 * text.len() as u64,
            "{big} for {}",
            text.len()
        );
    }
}
