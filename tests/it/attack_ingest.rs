//! Upload resources (descriptors, temp space, memory), clients that vanish,
//! and damaged blobs.

/// Counts the bytes the current thread allocates, so a test can bound what
/// one call costs in memory (threads of other tests are not counted).
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    fn add(n: usize) {
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + n);
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
    }

    fn sub(n: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
    }

    // SAFETY: every call is forwarded to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            sub(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            add(new);
            sub(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.realloc(ptr, layout, new) }
        }
    }

    /// The most bytes `f` had allocated at once on this thread, beyond what was live before.
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get) - base)
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// A source map whose `sourcesContent` holds `filler`, with its id last.
fn source_map_around(filler: &[u8]) -> Vec<u8> {
    let mut map = br#"{"version":3,"sources":["a.js"],"sourcesContent":[""#.to_vec();
    map.extend_from_slice(filler);
    map.extend_from_slice(
        br#""],"mappings":"AAAA","debugId":"85314830-023F-4CF1-A267-535F4E37BB17"}"#,
    );
    map
}

#[test]
fn a_60_mb_source_map_is_identified_in_flat_memory() {
    let map = source_map_around(&vec![b'x'; 60 << 20]);
    let (id, peak) = counting::peak(|| symdepot::identity::js::sourcemap(&map[..]));
    assert_eq!(
        id.unwrap().code_id.as_deref(),
        Some("85314830023f4cf1a267535f4e37bb17")
    );
    assert!(peak < 256 * 1024, "identifying took {peak} bytes");
}

#[test]
fn a_source_map_version_of_60_mb_is_never_built_in_memory() {
    let mut map = br#"{"version":["#.to_vec();
    map.extend_from_slice(&b"0,".repeat(30 << 20));
    map.extend_from_slice(br#"3],"mappings":"AAAA"}"#);
    let (id, peak) = counting::peak(|| symdepot::identity::js::sourcemap(&map[..]));
    assert!(id.is_none());
    assert!(peak < 256 * 1024, "identifying took {peak} bytes");
}
