//! Zips split by size, for `symdepot upload` (a folder zipped, or a large zip
//! split) and `symdepot export --zip`.
//!
//! A [`SplitZipWriter`] writes `<dir>/<stem>-0001.zip`, `<stem>-0002.zip`, …
//! in order. Members go into the current zip until the next one would take
//! its total past the limit; then that zip is finished and a new one begun.
//! A zip is never left empty, so a single member larger than the limit gets
//! a zip of its own. What a member counts toward the total is the caller's
//! choice: its original size when it is compressed here, its compressed size
//! when it is copied as it is from another zip.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zip::ZipWriter;
use zip::read::ZipFile;
use zip::result::ZipResult;
use zip::write::SimpleFileOptions;

/// Writes members into numbered zips of at most `max` counted bytes each.
#[derive(Debug)]
pub struct SplitZipWriter {
    dir: PathBuf,
    stem: String,
    max: u64,
    /// Deflate, with ZIP64 headers allowed for every entry.
    options: SimpleFileOptions,
    /// The zip being written and the bytes counted into it so far.
    current: Option<(ZipWriter<File>, u64)>,
    written: Vec<PathBuf>,
}

impl SplitZipWriter {
    /// Zips named `<stem>-NNNN.zip` (from 0001) in `dir`, each of at most
    /// `max` counted bytes unless it holds a single member.
    pub fn new(dir: &Path, stem: &str, max: u64) -> SplitZipWriter {
        SplitZipWriter {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            max,
            options: SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(true),
            current: None,
            written: Vec::new(),
        }
    }

    /// Adds a member named `name`, deflated from `reader`, counting `size`
    /// bytes toward the current zip's total.
    pub fn add(&mut self, name: &str, reader: &mut impl Read, size: u64) -> ZipResult<()> {
        let options = self.options;
        let w = self.zip_for(size)?;
        w.start_file(name, options)?;
        io::copy(reader, w)?;
        Ok(())
    }

    /// Copies a member of another zip as it is (no recompression), counting
    /// its compressed size.
    pub fn add_raw<R: Read>(&mut self, member: ZipFile<'_, R>) -> ZipResult<()> {
        let size = member.compressed_size();
        self.zip_for(size)?.raw_copy_file(member)
    }

    /// Finishes the last zip; returns every zip written, in order.
    pub fn finish(mut self) -> ZipResult<Vec<PathBuf>> {
        if let Some((w, _)) = self.current.take() {
            w.finish()?.flush()?;
        }
        Ok(self.written)
    }

    /// The zip a member of `size` counted bytes goes into: the current one,
    /// or a new one when the current would pass the limit. Counts `size`.
    fn zip_for(&mut self, size: u64) -> ZipResult<&mut ZipWriter<File>> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, n)| *n > 0 && n + size > self.max)
        {
            self.current.take().expect("checked").0.finish()?;
        }
        if self.current.is_none() {
            let name = format!("{}-{:04}.zip", self.stem, self.written.len() + 1);
            let path = self.dir.join(name);
            self.current = Some((ZipWriter::new(create_no_follow(&path)?), 0));
            self.written.push(path);
        }
        let (w, n) = self.current.as_mut().expect("set above");
        *n += size;
        Ok(w)
    }
}

/// Creates (or truncates) a file without following a symbolic link planted
/// at its name: a zip or listing written into a folder someone else can write
/// to never lands where a link points.
pub(crate) fn create_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &Path) -> Vec<String> {
        let mut archive = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
        (0..archive.len())
            .map(|i| {
                let member = archive.by_index_raw(i).unwrap();
                String::from_utf8(member.name_raw().to_vec()).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_member_that_would_pass_the_limit_starts_a_new_zip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SplitZipWriter::new(dir.path(), "part", 10);
        for (name, size) in [("a", 4), ("b", 6), ("c", 1), ("d", 30)] {
            w.add(name, &mut &b"x"[..], size).unwrap();
        }
        let zips = w.finish().unwrap();
        let files: Vec<_> = zips.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(files, ["part-0001.zip", "part-0002.zip", "part-0003.zip"]);
        assert_eq!(names(&zips[0]), ["a", "b"]);
        assert_eq!(names(&zips[1]), ["c"]);
        assert_eq!(
            names(&zips[2]),
            ["d"],
            "a larger member gets a zip of its own"
        );
    }

    #[test]
    fn nothing_added_writes_no_zip() {
        let dir = tempfile::tempdir().unwrap();
        let w = SplitZipWriter::new(dir.path(), "symbols", 10);
        assert!(w.finish().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
