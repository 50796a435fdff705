//! Minidumps walked in a process of their own (`symdepot walk-minidump`,
//! hidden), so that no minidump can take the daemon down: a walk's memory
//! grows with the minidump's threads and frames and `minidump-processor`
//! bounds neither (a 1 MB minidump of one thread whose stack is a chain of
//! frame pointers needs about 450 MB, eight such threads 3.5 GB). The walker
//! runs under a data limit of its own (`max_stackwalk_memory`, applied with
//! `setrlimit(RLIMIT_DATA)` before it reads anything), is killed when the
//! time cap passes or its caller goes away, and touches no store: it asks
//! its parent for each module's `.sym` over its standard input and output.
//!
//! The conversation is frames of a tag byte, a little-endian `u32` length
//! and that many bytes:
//!
//! - parent → walker: the minidump as a stream (`C` chunks, then `Z`); then
//!   for each request a `.sym` as a stream (`C`… `Z`), `N` for none, or `X`
//!   after some chunks when reading it failed;
//! - walker → parent: `S` with a [`SymbolsWanted`] as JSON, then waits for
//!   its answer; at the end the JSON `minidump-stackwalk --json` prints as a
//!   stream (`C`… `Z`), or `E` with why the minidump could not be read.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakpad_symbols::{
    FileError, FileKind, FillSymbolError, FrameSymbolizer, FrameWalker, Module, SymbolFile,
    SymbolStats,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The hidden subcommand that walks.
pub const SUBCOMMAND: &str = "walk-minidump";

/// Largest answer a walk may give (the JSON of every thread's frames).
pub const MAX_ANSWER: usize = 64 << 20;

/// Most distinct modules one walk is given symbols for (as `/symbolicate`).
pub const MAX_MODULES: usize = super::MAX_MODULES;

/// The longest a stack walk may take.
pub const TIME_CAP: Duration = Duration::from_secs(60);

/// Bytes of a chunk frame.
const CHUNK: usize = 256 << 10;

/// Largest frame other than a chunk (a request, an error).
const MAX_SMALL_FRAME: usize = 64 << 10;

/// Bytes of the walker's standard error kept for the log.
const STDERR_KEPT: usize = 4096;

const T_CHUNK: u8 = b'C';
const T_END: u8 = b'Z';
const T_NONE: u8 = b'N';
const T_BROKEN: u8 = b'X';
const T_SYMBOLS: u8 = b'S';
const T_ERROR: u8 = b'E';

/// What the walker asks its parent for: a module's `.sym` key (as a
/// Breakpad client would ask for it) and the module's names, for the
/// missing-symbols report when there is none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SymbolsWanted {
    pub key: String,
    pub debug_file: String,
    pub debug_id: String,
    pub code_file: String,
    pub code_id: String,
}

/// Where a walk's symbols come from (the store, for `POST /stackwalk`).
#[async_trait::async_trait]
pub trait SymbolSource: Sync {
    /// The `.sym` text of `wanted.key`, to be read on a blocking thread as
    /// it is sent, or `None` when there is none.
    async fn open(&self, wanted: &SymbolsWanted) -> Option<Box<dyn Read + Send>>;
}

/// How a walk is run.
#[derive(Debug, Clone)]
pub struct Walker {
    /// The `symdepot` binary.
    pub program: PathBuf,
    /// The walker's data limit (`max_stackwalk_memory`).
    pub max_memory: u64,
    /// The longest a walk may take.
    pub time_cap: Duration,
}

/// Why a walk gave no answer.
#[derive(Debug)]
pub enum WalkError {
    /// The minidump does not read (why).
    BadDump(String),
    /// The walk needed more than `max_stackwalk_memory`.
    TooMuchMemory(u64),
    /// The answer would exceed [`MAX_ANSWER`].
    AnswerTooLarge,
    /// The walk took longer than the time cap.
    TimedOut(Duration),
    /// The walker could not be started or failed otherwise (why).
    Failed(String),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::BadDump(why) => write!(f, "{why}"),
            WalkError::TooMuchMemory(max) => write!(
                f,
                "walking this minidump with its modules' symbols needs more memory than \
                 max_stackwalk_memory ({max} bytes)"
            ),
            WalkError::AnswerTooLarge => write!(
                f,
                "the stack walk's answer would be larger than {} MiB",
                MAX_ANSWER >> 20
            ),
            WalkError::TimedOut(cap) => {
                write!(f, "the stack walk took longer than {} s", cap.as_secs())
            }
            WalkError::Failed(why) => write!(f, "the stack walk failed: {why}"),
        }
    }
}

impl Walker {
    /// Walks `dump` in a walker process, answering its requests for symbols
    /// from `symbols`. The walker is killed if this future is dropped.
    /// With `page`, the answer is what a page shows ([`for_page`]).
    pub async fn walk(
        &self,
        dump: Vec<u8>,
        symbols: &dyn SymbolSource,
        page: bool,
    ) -> Result<Vec<u8>, WalkError> {
        let mut child = tokio::process::Command::new(&self.program)
            .arg(SUBCOMMAND)
            .arg("--max-memory")
            .arg(self.max_memory.to_string())
            .arg("--parent")
            .arg(std::process::id().to_string())
            .args(page.then_some("--page"))
            .env_clear()
            .env("SYMDEPOT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                WalkError::Failed(format!("{} cannot be started: {e}", self.program.display()))
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(WalkError::Failed("the walker has no pipes".into()));
        };
        let stderr = tokio::spawn(tail_of(stderr));
        let talk = converse(dump, symbols, stdin, stdout);
        let answer = match tokio::time::timeout(self.time_cap, talk).await {
            Ok(answer) => answer,
            Err(_) => return Err(WalkError::TimedOut(self.time_cap)),
        };
        if let Some(answer) = answer {
            // The walker ends once it has answered: reaped here, not left behind.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return answer;
        }
        // The walker stopped talking: how it ended says why.
        let status = match tokio::time::timeout(self.time_cap, child.wait()).await {
            Ok(Ok(status)) => status,
            _ => return Err(WalkError::Failed("the walker did not end".into())),
        };
        let said = stderr.await.unwrap_or_default();
        if said.contains("memory allocation of") || said.contains("out of memory") {
            return Err(WalkError::TooMuchMemory(self.max_memory));
        }
        tracing::warn!(%status, stderr = ?said.trim(), "a minidump walker ended without an answer");
        Err(WalkError::Failed(format!("the walker ended ({status})")))
    }
}

/// The parent's side: the minidump out, symbols for each request, the
/// answer in. `None` when the walker stopped talking (it died).
async fn converse(
    dump: Vec<u8>,
    symbols: &dyn SymbolSource,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
) -> Option<Result<Vec<u8>, WalkError>> {
    let mut to = tokio::io::BufWriter::new(stdin);
    let mut from = tokio::io::BufReader::new(stdout);
    let sent: std::io::Result<()> = async {
        for chunk in dump.chunks(CHUNK) {
            send(&mut to, T_CHUNK, chunk).await?;
        }
        send(&mut to, T_END, &[]).await?;
        to.flush().await
    }
    .await;
    drop(dump);
    sent.ok()?;
    let mut asked = 0usize;
    let mut answer = Vec::new();
    loop {
        let tag = from.read_u8().await.ok()?;
        let len = from.read_u32_le().await.ok()? as usize;
        match tag {
            T_SYMBOLS | T_ERROR if len <= MAX_SMALL_FRAME => {
                let mut body = vec![0; len];
                from.read_exact(&mut body).await.ok()?;
                if tag == T_ERROR {
                    return Some(Err(WalkError::BadDump(
                        String::from_utf8_lossy(&body).into_owned(),
                    )));
                }
                let wanted = serde_json::from_slice::<SymbolsWanted>(&body).ok()?;
                asked += 1;
                let found = if asked <= MAX_MODULES {
                    symbols.open(&wanted).await
                } else {
                    None
                };
                stream_symbols(&mut to, found).await.ok()?;
            }
            T_CHUNK if len <= CHUNK => {
                if answer.len() + len > MAX_ANSWER {
                    return Some(Err(WalkError::AnswerTooLarge));
                }
                let start = answer.len();
                answer.resize(start + len, 0);
                from.read_exact(&mut answer[start..]).await.ok()?;
            }
            T_END => return Some(Ok(answer)),
            _ => {
                return Some(Err(WalkError::Failed(format!(
                    "the walker sent a frame {tag} of {len} bytes"
                ))));
            }
        }
    }
}

/// Sends one `.sym` as chunks read on a blocking thread (`N` for none, `X`
/// when reading it failed part way).
async fn stream_symbols(
    to: &mut tokio::io::BufWriter<tokio::process::ChildStdin>,
    found: Option<Box<dyn Read + Send>>,
) -> std::io::Result<()> {
    let Some(mut reader) = found else {
        send(to, T_NONE, &[]).await?;
        return to.flush().await;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut chunk = vec![0; CHUNK];
            let n = match read_full(&mut reader, &mut chunk) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if n == 0 {
                return;
            }
            chunk.truncate(n);
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(chunk) => send(to, T_CHUNK, &chunk).await?,
            Err(e) => {
                tracing::warn!(error = %e, "a .sym could not be read for a stack walk");
                send(to, T_BROKEN, &[]).await?;
                return to.flush().await;
            }
        }
    }
    send(to, T_END, &[]).await?;
    to.flush().await
}

/// Reads until `buf` is full or the reader ends.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    to: &mut W,
    tag: u8,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    to.write_u8(tag).await?;
    to.write_u32_le(len).await?;
    to.write_all(body).await
}

/// The last [`STDERR_KEPT`] bytes the walker wrote to its standard error.
async fn tail_of(mut stderr: tokio::process::ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_KEPT {
            kept.drain(..kept.len() - STDERR_KEPT);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

// ---- The walker's side ----

/// One frame read (tag, body), the body at most `max` bytes.
fn read_frame(from: &mut impl Read, max: usize) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    from.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(std::io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0; len];
    from.read_exact(&mut body)?;
    Ok((head[0], body))
}

fn write_frame(to: &mut impl Write, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    to.write_all(&[tag])?;
    to.write_all(&len.to_le_bytes())?;
    to.write_all(body)
}

/// A stream of chunks read as one reader, to its end frame. `first` is a
/// frame already read. After an error the rest of the stream is skipped.
struct StreamIn<'a, R: Read> {
    from: &'a mut R,
    current: Vec<u8>,
    at: usize,
    /// The stream's last frame was read: `Some(true)` when it ended well.
    ended: Option<bool>,
}

impl<'a, R: Read> StreamIn<'a, R> {
    fn new(from: &'a mut R) -> Self {
        StreamIn {
            from,
            current: Vec::new(),
            at: 0,
            ended: None,
        }
    }

    /// Reads what is left of the stream, discarding it.
    fn finish(&mut self) -> std::io::Result<bool> {
        std::io::copy(self, &mut std::io::sink())?;
        Ok(self.ended == Some(true))
    }
}

impl<R: Read> Read for StreamIn<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            if self.ended.is_some() {
                return Ok(0);
            }
            let (tag, body) = read_frame(self.from, CHUNK)?;
            match tag {
                T_CHUNK => {
                    self.current = body;
                    self.at = 0;
                }
                T_END => self.ended = Some(true),
                T_NONE | T_BROKEN => self.ended = Some(false),
                _ => return Err(std::io::Error::other(format!("a frame {tag} in a stream"))),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The walker: reads the minidump from standard input, walks it asking for
/// symbols, writes the answer. The data limit is set by `main` before this.
pub fn walker_main(page: bool) -> std::io::Result<()> {
    let mut input = BufReader::new(std::io::stdin());
    let output = BufWriter::new(std::io::stdout());
    let mut dump = Vec::new();
    let mut stream = StreamIn::new(&mut input);
    stream.read_to_end(&mut dump)?;
    if stream.ended != Some(true) {
        return Err(std::io::Error::other("the minidump was not sent whole"));
    }
    let provider = PipeSymbols {
        pipes: Mutex::new((input, output)),
        seen: Mutex::new(HashMap::new()),
        stats: Mutex::new(HashMap::new()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut walked = runtime.block_on(super::minidump::walk(dump, &provider));
    if page && let Ok(json) = &walked {
        walked = for_page(json);
    }
    let (_, mut output) = (provider.pipes.into_inner()).unwrap_or_else(|e| e.into_inner());
    match walked {
        Ok(json) => {
            for chunk in json.chunks(CHUNK) {
                write_frame(&mut output, T_CHUNK, chunk)?;
            }
            write_frame(&mut output, T_END, &[])?;
        }
        Err(why) => {
            let mut why = why.into_bytes();
            why.truncate(MAX_SMALL_FRAME);
            write_frame(&mut output, T_ERROR, &why)?;
        }
    }
    output.flush()
}

/// Threads a page shows at most (the crashing one always).
pub const PAGE_THREADS: usize = 64;

/// Frames of a thread a page shows at most.
pub const PAGE_FRAMES: usize = 256;

/// Modules without symbols a page lists at most.
pub const PAGE_MODULES: usize = 500;

/// What a page of a walk shows, cut from the whole walk's JSON (here, in the
/// walker, where the memory is bounded): the crash, the crashing thread and
/// others up to [`PAGE_THREADS`], each with its first [`PAGE_FRAMES`] frames
/// (`frames_omitted` says how many more), and up to [`PAGE_MODULES`] modules
/// without symbols (`modules_without_symbols`, with their count).
fn for_page(json: &[u8]) -> Result<Vec<u8>, String> {
    use serde_json::{Value, json};
    let mut walk: Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let crashing = walk["crashing_thread"]["threads_index"].as_u64();
    let threads = walk["threads"].take();
    let threads = threads.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut order: Vec<usize> = (0..threads.len()).collect();
    if let Some(c) = crashing.and_then(|c| usize::try_from(c).ok()) {
        order.retain(|&i| i != c);
        order.insert(0, c);
    }
    let shown: Vec<Value> = (order.iter().take(PAGE_THREADS))
        .filter_map(|&i| threads.get(i).map(|t| (i, t)))
        .map(|(i, t)| {
            let frames = t["frames"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            json!({
                "index": i,
                "thread_name": t["thread_name"],
                "frames": &frames[..frames.len().min(PAGE_FRAMES)],
                "frames_omitted": frames.len().saturating_sub(PAGE_FRAMES),
            })
        })
        .collect();
    let missing: Vec<&Value> = (walk["modules"].as_array().into_iter().flatten())
        .filter(|m| m["loaded_symbols"] == false)
        .collect();
    let page = json!({
        "crash_info": walk["crash_info"],
        "crashing_thread": crashing,
        "threads": shown,
        "threads_omitted": threads.len().saturating_sub(PAGE_THREADS),
        "modules_without_symbols": &missing[..missing.len().min(PAGE_MODULES)],
        "modules_without_symbols_count": missing.len(),
    });
    serde_json::to_vec(&page).map_err(|e| e.to_string())
}

type In = BufReader<std::io::Stdin>;
type Out = BufWriter<std::io::Stdout>;

/// Symbols asked of the parent, each module once per walk.
struct PipeSymbols {
    pipes: Mutex<(In, Out)>,
    seen: Mutex<HashMap<String, Option<Arc<SymbolFile>>>>,
    /// By code file name, as the processor reports modules' symbols.
    stats: Mutex<HashMap<String, SymbolStats>>,
}

/// A path's last segment (either separator).
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or_default()
}

impl PipeSymbols {
    fn symbols(&self, module: &(dyn Module + Sync)) -> Option<Arc<SymbolFile>> {
        let lookup = breakpad_symbols::breakpad_sym_lookup(module)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = seen.get(&lookup.cache_rel) {
            return found.clone();
        }
        let wanted = SymbolsWanted {
            key: lookup.cache_rel.clone(),
            debug_file: base_name(&module.debug_file().unwrap_or_default()).to_string(),
            debug_id: (module.debug_identifier())
                .map(|d| d.breakpad().to_string())
                .unwrap_or_default(),
            code_file: base_name(&module.code_file()).to_string(),
            code_id: (module.code_identifier())
                .map(|c| c.to_string())
                .unwrap_or_default(),
        };
        let found = self.ask(&wanted).unwrap_or_else(|e| {
            // The parent is gone, or the request cannot be sent (names too
            // long for a request frame): no symbols.
            eprintln!("symbols could not be asked for: {e}");
            None
        });
        (self.stats.lock().unwrap_or_else(|e| e.into_inner())).insert(
            wanted.code_file.clone(),
            SymbolStats {
                symbol_url: found.as_ref().map(|_| format!("/{}", lookup.cache_rel)),
                loaded_symbols: found.is_some(),
                ..SymbolStats::default()
            },
        );
        seen.insert(lookup.cache_rel, found.clone());
        found
    }

    /// Asks the parent for `wanted` and parses what it sends as it arrives.
    fn ask(&self, wanted: &SymbolsWanted) -> std::io::Result<Option<Arc<SymbolFile>>> {
        let mut pipes = self.pipes.lock().unwrap_or_else(|e| e.into_inner());
        let (input, output) = &mut *pipes;
        let request = serde_json::to_vec(wanted).map_err(std::io::Error::other)?;
        if request.len() > MAX_SMALL_FRAME {
            return Err(std::io::Error::other("module names too long to ask for"));
        }
        write_frame(output, T_SYMBOLS, &request)?;
        output.flush()?;
        let mut stream = StreamIn::new(input);
        let parsed = SymbolFile::parse(&mut stream, |_| ());
        let whole = stream.finish()?;
        Ok(match parsed {
            Ok(sym) if whole => Some(Arc::new(sym)),
            _ => None,
        })
    }
}

#[async_trait::async_trait]
impl minidump_unwind::SymbolProvider for PipeSymbols {
    async fn fill_symbol(
        &self,
        module: &(dyn Module + Sync),
        frame: &mut (dyn FrameSymbolizer + Send),
    ) -> Result<(), FillSymbolError> {
        match self.symbols(module) {
            Some(sym) => {
                sym.fill_symbol(module, frame);
                Ok(())
            }
            None => Err(FillSymbolError {}),
        }
    }

    async fn walk_frame(
        &self,
        module: &(dyn Module + Sync),
        walker: &mut (dyn FrameWalker + Send),
    ) -> Option<()> {
        self.symbols(module)?.walk_frame(module, walker)
    }

    async fn get_file_path(
        &self,
        _module: &(dyn Module + Sync),
        _file_kind: FileKind,
    ) -> Result<PathBuf, FileError> {
        Err(FileError::NotFound)
    }

    fn stats(&self) -> HashMap<String, SymbolStats> {
        (self.stats.lock().unwrap_or_else(|e| e.into_inner())).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(list: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, body) in list {
            write_frame(&mut out, *tag, body).unwrap();
        }
        out
    }

    #[test]
    fn a_stream_reads_its_chunks_and_says_how_it_ended() {
        let sent = frames(&[
            (T_CHUNK, b"ab"),
            (T_CHUNK, b""),
            (T_CHUNK, b"c"),
            (T_END, b""),
            (T_NONE, b""),
            (T_CHUNK, b"half"),
            (T_BROKEN, b""),
            (T_SYMBOLS, b"{}"),
        ]);
        let mut from = &sent[..];
        let mut got = String::new();
        let mut whole = StreamIn::new(&mut from);
        whole.read_to_string(&mut got).unwrap();
        assert_eq!((got.as_str(), whole.ended), ("abc", Some(true)));
        let mut none = StreamIn::new(&mut from);
        assert!(!none.finish().unwrap());
        // A stream cut short is read to its end, not past it.
        let mut broken = StreamIn::new(&mut from);
        let mut first = [0u8; 2];
        broken.read_exact(&mut first).unwrap();
        assert!(!broken.finish().unwrap());
        assert_eq!(
            read_frame(&mut from, 16).unwrap(),
            (T_SYMBOLS, b"{}".to_vec())
        );
        // Frames over their bound are refused, not allocated.
        let huge = frames(&[(T_SYMBOLS, &[0u8; 32])]);
        assert!(read_frame(&mut &huge[..], 16).is_err());
    }
}
