//! A minidump walked into the JSON `minidump-stackwalk --json` prints, by
//! rust-minidump's `minidump-processor` with any symbol provider (the
//! store's, for `POST /stackwalk`). A minidump that does not read is an
//! error naming why, never a panic: streams the `minidump` crate would
//! misread to the process's harm are dropped first
//! ([`drop_unreadable_streams`]).

use minidump_unwind::SymbolProvider;

/// Reads and walks `dump` with `provider`'s symbols.
pub async fn walk<P: SymbolProvider + Sync>(
    mut dump: Vec<u8>,
    provider: &P,
) -> Result<Vec<u8>, String> {
    drop_unreadable_streams(&mut dump);
    let dump = minidump::Minidump::read(dump).map_err(|e| format!("not a minidump: {e}"))?;
    let state = minidump_processor::process_minidump(&dump, provider)
        .await
        .map_err(|e| format!("the minidump cannot be processed: {e}"))?;
    let mut out = Vec::new();
    state
        .print_json(&mut out, true)
        .map_err(|e| format!("the result cannot be written: {e}"))?;
    Ok(out)
}

/// `MINIDUMP_STREAM_TYPE` of the handle data stream.
const HANDLE_DATA_STREAM: u32 = 12;

/// The smallest handle descriptor (`MINIDUMP_HANDLE_DESCRIPTOR`).
const MIN_HANDLE_DESCRIPTOR: u32 = 32;

/// Marks as unused (stream type 0) the streams the `minidump` crate would
/// misread to the process's harm: a handle data stream whose descriptors
/// claim a size under the smallest real one (a size of 0 lets any count
/// pass its bounds check, and the reader then allocates for billions of
/// handles, which aborts the process). Handles play no part in a stack
/// walk. Anything that does not parse is left for the reader to refuse.
pub fn drop_unreadable_streams(dump: &mut [u8]) {
    let u32_at = |d: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            d.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    if dump.get(..4) != Some(b"MDMP") {
        return;
    }
    let (Some(count), Some(dir)) = (u32_at(dump, 8), u32_at(dump, 12)) else {
        return;
    };
    for i in 0..count as usize {
        let Some(entry) = (dir as usize).checked_add(i.saturating_mul(12)) else {
            return;
        };
        let (Some(kind), Some(rva)) = (u32_at(dump, entry), u32_at(dump, entry + 8)) else {
            return;
        };
        if kind == HANDLE_DATA_STREAM
            && u32_at(dump, rva as usize + 4).is_none_or(|size| size < MIN_HANDLE_DESCRIPTOR)
        {
            dump[entry..entry + 4].copy_from_slice(&0u32.to_le_bytes());
        }
    }
}

/// No symbols for any module.
struct NoSymbols;

#[async_trait::async_trait]
impl SymbolProvider for NoSymbols {
    async fn fill_symbol(
        &self,
        _module: &(dyn breakpad_symbols::Module + Sync),
        _frame: &mut (dyn minidump_unwind::FrameSymbolizer + Send),
    ) -> Result<(), minidump_unwind::FillSymbolError> {
        Err(minidump_unwind::FillSymbolError {})
    }

    async fn walk_frame(
        &self,
        _module: &(dyn breakpad_symbols::Module + Sync),
        _walker: &mut (dyn minidump_unwind::FrameWalker + Send),
    ) -> Option<()> {
        None
    }

    async fn get_file_path(
        &self,
        _module: &(dyn breakpad_symbols::Module + Sync),
        _file_kind: minidump_unwind::FileKind,
    ) -> Result<std::path::PathBuf, minidump_unwind::FileError> {
        Err(minidump_unwind::FileError::NotFound)
    }
}

/// What `POST /stackwalk` does with a store that has no symbols: the
/// minidump path alone, on a runtime of its own (for the fuzz target).
pub fn walk_without_symbols(dump: Vec<u8>) -> Result<Vec<u8>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(walk(dump, &NoSymbols))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minidump's first words (signature, version, one stream, its
    /// directory at 16) and that directory's one entry: a stream of `kind`
    /// at offset 28 whose words are `words`.
    fn dump_with(kind: u32, words: &[u32]) -> Vec<u8> {
        let mut d = b"MDMP".to_vec();
        for w in [0xa793u32, 1, 16] {
            d.extend_from_slice(&w.to_le_bytes());
        }
        for w in [kind, 4 * words.len() as u32, 28] {
            d.extend_from_slice(&w.to_le_bytes());
        }
        for w in words {
            d.extend_from_slice(&w.to_le_bytes());
        }
        d
    }

    #[test]
    fn a_handle_stream_with_descriptors_of_size_zero_is_dropped() {
        let mut bad = dump_with(HANDLE_DATA_STREAM, &[16, 0, u32::MAX, 0]);
        drop_unreadable_streams(&mut bad);
        assert_eq!(&bad[16..20], &0u32.to_le_bytes(), "marked unused");
        let mut good = dump_with(HANDLE_DATA_STREAM, &[16, 40, 0, 0]);
        let before = good.clone();
        drop_unreadable_streams(&mut good);
        assert_eq!(good, before);
        // What does not parse is left alone (and refused by the reader).
        let mut short = b"MDMP\x93\xa7".to_vec();
        drop_unreadable_streams(&mut short);
        assert!(walk_without_symbols(short).is_err());
    }
}
