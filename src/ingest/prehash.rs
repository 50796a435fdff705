//! Hashing a zip's member streams while the zip arrives.
//!
//! A re-upload costs reading: each member's compressed stream is named by a
//! hash of its bytes, and a stream read before is not inflated again. Those
//! bytes pass through the server once as the body is received; hashing them
//! there, on the thread that writes the body to disk, leaves nothing to read
//! again afterwards. [`StreamHasher`] is fed the zip's bytes in order and
//! follows its local file headers: for each member whose header gives its
//! compressed size (every member of a zip not written as a stream), it
//! hashes exactly that many bytes and notes where they started.
//!
//! What it finds is only ever a shortcut: [`Prehashed::data_hash`] answers
//! for a member only when the central directory, read later, puts that
//! member's data at the same offset with the same compressed size; any other
//! member is read and hashed from the file as before. The hasher stops at
//! anything it does not follow (a data descriptor, encryption, the central
//! directory, bytes that are not a header) and after `max_members` members,
//! so what it keeps is bounded by the zip limits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Local file header signature, and the fixed part's length.
const LOCAL_HEADER: u32 = 0x0403_4b50;
const FIXED: usize = 30;
/// General-purpose flags: encrypted; sizes in a data descriptor after the data.
const ENCRYPTED: u16 = 0x0001;
const DATA_DESCRIPTOR: u16 = 0x0008;
/// The ZIP64 extended-information extra field.
const ZIP64_EXTRA: u16 = 0x0001;

/// The BLAKE3 of each member's compressed bytes, by where they start.
#[derive(Debug, Default)]
pub struct Prehashed {
    /// Data offset → (compressed size, BLAKE3 of the compressed bytes).
    found: HashMap<u64, (u64, [u8; 32])>,
    /// Members answered from `found`.
    used: AtomicUsize,
}

impl Prehashed {
    /// The hash of the `compressed_size` bytes at `data_start`, if exactly
    /// those were hashed as they arrived.
    pub fn data_hash(&self, data_start: u64, compressed_size: u64) -> Option<[u8; 32]> {
        let hash = self
            .found
            .get(&data_start)
            .filter(|(size, _)| *size == compressed_size)
            .map(|(_, hash)| *hash);
        if hash.is_some() {
            self.used.fetch_add(1, Ordering::Relaxed);
        }
        hash
    }

    /// How many members [`Prehashed::data_hash`] answered.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// Follows a zip's local headers as its bytes are fed in order.
#[derive(Debug)]
pub struct StreamHasher {
    /// Offset of the next byte fed.
    pos: u64,
    state: State,
    max_members: usize,
    out: Prehashed,
}

#[derive(Debug)]
enum State {
    /// Collecting a local header (fixed part, then name and extra field).
    Header(Vec<u8>),
    /// Hashing a member's compressed bytes.
    Data {
        start: u64,
        size: u64,
        left: u64,
        hasher: Box<blake3::Hasher>,
    },
    /// Past anything it follows: the rest is not looked at.
    Stopped,
}

impl StreamHasher {
    pub fn new(max_members: usize) -> StreamHasher {
        StreamHasher {
            pos: 0,
            state: State::Header(Vec::with_capacity(FIXED)),
            max_members,
            out: Prehashed::default(),
        }
    }

    /// The next bytes of the zip.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let taken = match &mut self.state {
                State::Stopped => return,
                State::Header(buf) => {
                    let want = header_len(buf).unwrap_or(FIXED);
                    let n = (want - buf.len()).min(bytes.len());
                    buf.extend_from_slice(&bytes[..n]);
                    n
                }
                State::Data { left, hasher, .. } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    hasher.update(&bytes[..n]);
                    *left -= n as u64;
                    n
                }
            };
            bytes = &bytes[taken..];
            self.pos += taken as u64;
            self.step();
        }
    }

    /// What was hashed.
    pub fn finish(self) -> Prehashed {
        self.out
    }

    /// Moves on once a header is whole or a member's bytes are all hashed.
    fn step(&mut self) {
        let next = match &mut self.state {
            State::Stopped => return,
            State::Header(buf) => {
                if buf.len() >= 4 && u32_at(buf, 0) != LOCAL_HEADER {
                    State::Stopped
                } else if header_len(buf) != Some(buf.len()) {
                    return;
                } else {
                    match data_size(buf) {
                        Some(size) if self.out.found.len() < self.max_members => State::Data {
                            start: self.pos,
                            size,
                            left: size,
                            hasher: Box::new(blake3::Hasher::new()),
                        },
                        _ => State::Stopped,
                    }
                }
            }
            State::Data {
                start,
                size,
                left: 0,
                hasher,
            } => {
                let hash = *hasher.finalize().as_bytes();
                self.out.found.insert(*start, (*size, hash));
                State::Header(Vec::with_capacity(FIXED))
            }
            State::Data { .. } => return,
        };
        self.state = next;
        // A member of no bytes is whole at once.
        if matches!(self.state, State::Data { left: 0, .. }) {
            self.step();
        }
    }
}

/// The whole header's length, once its fixed part is in.
fn header_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= FIXED)
        .then(|| FIXED + usize::from(u16_at(buf, 26)) + usize::from(u16_at(buf, 28)))
}

/// The compressed size a whole local header gives, if it gives one to
/// trust: none for an encrypted member or one whose sizes follow its data.
fn data_size(header: &[u8]) -> Option<u64> {
    let flags = u16_at(header, 6);
    if flags & (ENCRYPTED | DATA_DESCRIPTOR) != 0 {
        return None;
    }
    let compressed = u32_at(header, 18);
    let original = u32_at(header, 22);
    if compressed != u32::MAX && original != u32::MAX {
        return Some(u64::from(compressed));
    }
    // ZIP64: the extra field holds the sizes that are 0xFFFFFFFF, original first.
    let extra_start = FIXED + usize::from(u16_at(header, 26));
    let mut extra = &header[extra_start..];
    while extra.len() >= 4 {
        let (id, len) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
        let body = extra.get(4..4 + len)?;
        if id == ZIP64_EXTRA {
            let skip = if original == u32::MAX { 8 } else { 0 };
            if compressed != u32::MAX {
                return Some(u64::from(compressed));
            }
            let bytes = body.get(skip..skip + 8)?;
            return Some(u64::from_le_bytes(bytes.try_into().ok()?));
        }
        extra = &extra[4 + len..];
    }
    None
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn zip(members: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in members {
            let opts = zip::write::SimpleFileOptions::default().compression_method(method);
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// (data start, compressed size, BLAKE3 of those bytes) of every member,
    /// from the central directory.
    fn expected(bytes: &[u8]) -> Vec<(u64, u64, [u8; 32])> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|i| {
                let f = archive.by_index_raw(i).unwrap();
                let start = f.data_start().unwrap();
                let size = f.compressed_size();
                let data = &bytes[start as usize..(start + size) as usize];
                (start, size, *blake3::hash(data).as_bytes())
            })
            .collect()
    }

    fn fed_in_pieces(bytes: &[u8], piece: usize, max_members: usize) -> Prehashed {
        let mut h = StreamHasher::new(max_members);
        for chunk in bytes.chunks(piece) {
            h.feed(chunk);
        }
        h.finish()
    }

    #[test]
    fn every_member_is_hashed_whatever_the_pieces_it_arrives_in() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let bytes = zip(
                &[
                    ("a/b/c.sym", b"MODULE x"),
                    ("empty", b""),
                    ("big.bin", &big),
                ],
                method,
            );
            let want = expected(&bytes);
            for piece in [1, 7, 30, 4096, bytes.len()] {
                let got = fed_in_pieces(&bytes, piece, 100);
                assert_eq!(got.len(), 3, "{method:?} in pieces of {piece}");
                for (start, size, hash) in &want {
                    assert_eq!(got.data_hash(*start, *size), Some(*hash));
                    // Another size at that offset is not an answer.
                    assert_eq!(got.data_hash(*start, size + 1), None);
                }
            }
        }
    }

    #[test]
    fn it_stops_at_what_it_does_not_follow_and_at_the_member_limit() {
        let bytes = zip(
            &[("a", b"one"), ("b", b"two"), ("c", b"three")],
            zip::CompressionMethod::Stored,
        );
        assert_eq!(fed_in_pieces(&bytes, 5, 2).len(), 2);
        // Not a zip from its first byte (a self-extracting stub, say).
        let mut stub = b"#!/bin/sh\n".to_vec();
        stub.extend_from_slice(&bytes);
        assert!(fed_in_pieces(&stub, 64, 100).is_empty());
        // Sizes in a data descriptor: nothing from that member on.
        let mut streamed = bytes.clone();
        streamed[6] |= DATA_DESCRIPTOR as u8;
        assert!(fed_in_pieces(&streamed, 64, 100).is_empty());
    }

    #[test]
    fn zip64_sizes_are_read_from_the_extra_field() {
        let mut header = vec![0u8; FIXED];
        header[..4].copy_from_slice(&LOCAL_HEADER.to_le_bytes());
        header[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
        header[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
        header[26..28].copy_from_slice(&1u16.to_le_bytes());
        header[28..30].copy_from_slice(&20u16.to_le_bytes());
        header.push(b'n');
        header.extend_from_slice(&ZIP64_EXTRA.to_le_bytes());
        header.extend_from_slice(&16u16.to_le_bytes());
        header.extend_from_slice(&9u64.to_le_bytes()); // original
        header.extend_from_slice(&5u64.to_le_bytes()); // compressed
        assert_eq!(data_size(&header), Some(5));
        let mut h = StreamHasher::new(10);
        h.feed(&header);
        h.feed(b"hello");
        let got = h.finish();
        let start = header.len() as u64;
        assert_eq!(
            got.data_hash(start, 5),
            Some(*blake3::hash(b"hello").as_bytes())
        );
    }
}
