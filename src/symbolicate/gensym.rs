//! `.sym` files made when there is none (`spec/symbolication.md`): a
//! Breakpad key `<debug file>/<debug id>/<name>.sym` that misses, where the
//! store holds a debug file of that id (ELF, PDB, Mach-O), is generated with
//! Mozilla's `dump_syms` crate, stored as an ordinary key (an upload record
//! by `sym generator` naming the file it was made from; the `.sym`'s own
//! `INFO GENERATOR` line names dump_syms and its version) and served.
//!
//! Bounded: [`SymGenerator::new`]'s number at once, debug files of at most
//! its byte cap (`dump_syms` reads the whole file into memory), each within
//! [`TIME_CAP`]. Once per key: clients asking at the same time wait for one
//! generation; a failure is recorded (a failed upload record naming the
//! reason, on the file pages) and not tried again by this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;
use crate::settings::IngestLimits;
use crate::store::{KeyRow, Store, UploadEnd, UploadStart};

/// The longest one generation may take.
pub const TIME_CAP: Duration = Duration::from_secs(600);

/// Who generated files are recorded as uploaded by.
pub const GENERATOR_USER: &str = "sym generator";

/// The `dump_syms` crate's version (pinned in `Cargo.toml`).
pub const DUMP_SYMS_VERSION: &str = "2.3.9";

/// What asking for a generation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// Stored (now, or by another request a moment ago).
    Stored,
    /// No debug file of that id in the store: a plain miss.
    NoDebugFile,
    /// Generation failed (now or earlier): why.
    Failed(String),
}

type Flight = Arc<tokio::sync::OnceCell<Generated>>;

/// Makes missing `.sym` files from stored debug files, once per key.
pub struct SymGenerator {
    turns: Arc<tokio::sync::Semaphore>,
    max_bytes: u64,
    flights: Mutex<HashMap<String, Flight>>,
    failed: Mutex<HashMap<String, String>>,
    /// Keys with no debug file lately (the store's write generation then, and
    /// when): a miss does not ask the index twice in a row.
    none: Mutex<HashMap<String, (u64, std::time::Instant)>>,
}

/// How long "no debug file of that id" is trusted while the store's own
/// writes leave it unchanged (changes by other processes show within it).
const NONE_TTL: Duration = Duration::from_secs(2);

/// Keys remembered as having no debug file, at most.
const MAX_NONE: usize = 100_000;

impl std::fmt::Debug for SymGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymGenerator")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl SymGenerator {
    /// At most `at_once` generations at a time, from debug files of at most
    /// `max_bytes`.
    pub fn new(at_once: usize, max_bytes: u64) -> SymGenerator {
        SymGenerator {
            turns: Arc::new(tokio::sync::Semaphore::new(at_once.max(1))),
            max_bytes,
            flights: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            none: Mutex::new(HashMap::new()),
        }
    }

    /// Makes and stores the `.sym` key `key` (as a client spelled it) from a
    /// debug file of its id, unless the store has none or it failed before.
    pub async fn generate(
        &self,
        store: &Arc<Store>,
        limits: &IngestLimits,
        key: &str,
        include_try: bool,
    ) -> Generated {
        let segs: Vec<&str> = key.split('/').collect();
        let [module, id, file] = segs[..] else {
            return Generated::NoDebugFile;
        };
        if !file.to_ascii_lowercase().ends_with(".sym")
            || crate::keys::MemberKey::new(module, id, file).is_err()
        {
            return Generated::NoDebugFile;
        }
        let norm = crate::keys::normalize(key);
        if let Some(why) = lock(&self.failed).get(&norm) {
            return Generated::Failed(why.clone());
        }
        let generation = store.generation();
        let lately = lock(&self.none).get(&norm).copied();
        if lately.is_some_and(|(g, at)| g == generation && at.elapsed() < NONE_TTL) {
            return Generated::NoDebugFile;
        }
        let flight = lock(&self.flights).entry(norm.clone()).or_default().clone();
        let outcome = flight
            .get_or_init(|| self.run(store, limits, key, include_try))
            .await
            .clone();
        let mut flights = lock(&self.flights);
        if flights.get(&norm).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&norm);
            match &outcome {
                Generated::Failed(why) => {
                    lock(&self.failed).insert(norm, why.clone());
                }
                Generated::NoDebugFile => {
                    let mut none = lock(&self.none);
                    if none.len() >= MAX_NONE {
                        none.clear();
                    }
                    none.insert(norm, (generation, std::time::Instant::now()));
                }
                Generated::Stored => {}
            }
        }
        outcome
    }

    async fn run(
        &self,
        store: &Arc<Store>,
        limits: &IngestLimits,
        key: &str,
        include_try: bool,
    ) -> Generated {
        let Ok(_turn) = self.turns.clone().acquire_owned().await else {
            return Generated::Failed("shutting down".into());
        };
        let id = key.split('/').nth(1).unwrap_or_default().to_string();
        let (s, norm) = (store.clone(), crate::keys::normalize(key));
        let found = tokio::task::spawn_blocking(move || -> crate::Result<_> {
            // Another request may have stored it while this one waited.
            if s.lookup(&norm, include_try)?.is_some() {
                return Ok(None);
            }
            Ok(Some(s.debug_files_of(&id, include_try)?))
        })
        .await;
        let sources = match found {
            Ok(Ok(Some(rows))) => rows,
            Ok(Ok(None)) => return Generated::Stored,
            Ok(Err(e)) => return Generated::Failed(e.to_string()),
            Err(e) => return Generated::Failed(e.to_string()),
        };
        // Only under a name the debug file goes by: any other name a client
        // makes up for a stored id is a plain miss, not a new key.
        let module = key.split('/').next().unwrap_or_default();
        let Some(source) = sources.into_iter().find(|r| goes_by(r, module)) else {
            return Generated::NoDebugFile;
        };
        let (s, l, k, max) = (
            store.clone(),
            limits.clone(),
            key.to_string(),
            self.max_bytes,
        );
        // The turn goes with the work: a client that goes away does not free
        // it while the work goes on.
        let work = tokio::task::spawn_blocking(move || {
            let _turn = _turn;
            generate_from(&s, &l, &source, &k, max)
        });
        match tokio::time::timeout(TIME_CAP, work).await {
            Ok(Ok(Ok(()))) => Generated::Stored,
            Ok(Ok(Err(e))) => {
                tracing::warn!(key, error = %e, "no .sym could be generated");
                Generated::Failed(e.to_string())
            }
            Ok(Err(e)) => Generated::Failed(e.to_string()),
            Err(_) => Generated::Failed(format!(
                "generation took longer than {} s",
                TIME_CAP.as_secs()
            )),
        }
    }
}

/// Whether a debug file goes by the module name `module` (case aside): its
/// debug or code file name, or the first or last segment of its key, each
/// also without a `.debug` or `.dbg` suffix.
fn goes_by(row: &KeyRow, module: &str) -> bool {
    let mut segs = row.key.split('/');
    let names = [
        row.debug_file.as_deref(),
        row.code_file.as_deref(),
        segs.next(),
        segs.next_back(),
    ];
    names.into_iter().flatten().any(|name| {
        let name = name.to_ascii_lowercase();
        let module = module.to_ascii_lowercase();
        [".debug", ".dbg", ""]
            .iter()
            .any(|suffix| name.strip_suffix(suffix) == Some(module.as_str()))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `symdepot gen-sym` came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GenSummary {
    pub generated: usize,
    pub already_there: usize,
    pub no_debug_file: usize,
    /// Each failure: the key and why.
    pub failed: Vec<(String, String)>,
}

/// `symdepot gen-sym`: the `.sym` of each key in `keys` (or, with `all`, of
/// every stored debug file that has none) made ahead of time, one after
/// another, with a progress bar on a terminal.
pub fn generate_ahead(
    store: &Store,
    limits: &IngestLimits,
    keys: &[String],
    all: bool,
    max_bytes: u64,
) -> crate::Result<GenSummary> {
    let mut wanted: Vec<(String, Option<KeyRow>)> =
        keys.iter().map(|k| (k.clone(), None)).collect();
    if all {
        for row in store.debug_files()? {
            let (Some(file), Some(id)) = (row.debug_file.clone(), row.debug_id.clone()) else {
                continue;
            };
            let key = format!("{file}/{id}/{}", crate::keys::breakpad_sym_name(&file));
            wanted.push((key, Some(row)));
        }
    }
    let bar = crate::progress::bar("gen-sym", Some(wanted.len() as u64));
    let mut summary = GenSummary::default();
    for (key, source) in wanted {
        bar.set_message(key.clone());
        let segs: Vec<&str> = key.split('/').collect();
        let valid = segs.len() == 3
            && segs[2].to_ascii_lowercase().ends_with(".sym")
            && crate::keys::MemberKey::new(segs[0], segs[1], segs[2]).is_ok();
        if !valid {
            summary.failed.push((
                key.clone(),
                "not a <module>/<debug id>/<name>.sym key".into(),
            ));
        } else if store
            .lookup(&crate::keys::normalize(&key), false)?
            .is_some()
        {
            summary.already_there += 1;
        } else {
            let source = match source {
                Some(row) => Some(row),
                None => store.debug_files_of(segs[1], false)?.into_iter().next(),
            };
            match source {
                None => summary.no_debug_file += 1,
                Some(row) => match generate_from(store, limits, &row, &key, max_bytes) {
                    Ok(()) => summary.generated += 1,
                    Err(e) => {
                        bar.suspend(|| eprintln!("failed   {key}: {e}"));
                        summary.failed.push((key.clone(), e.to_string()));
                    }
                },
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Generates `key` from the debug file `source` and stores it in the
/// source's namespace, recorded as an upload by [`GENERATOR_USER`] (a
/// failure too, with its reason).
pub fn generate_from(
    store: &Store,
    limits: &IngestLimits,
    source: &KeyRow,
    key: &str,
    max_bytes: u64,
) -> crate::Result<()> {
    let record = store.begin_upload(&UploadStart {
        user: GENERATOR_USER.to_string(),
        token_id: None,
        filename: Some(source.key.clone()),
        download_url: None,
        try_symbols: source.namespace == crate::store::Namespace::Try,
    })?;
    let result = dump(store, source, key, max_bytes).and_then(|(_dir, sym)| {
        crate::ingest::ingest_file_as(
            crate::ingest::Ingest { store, limits },
            &sym,
            key,
            source.namespace,
            Some(record.id()),
        )
    });
    let end = match &result {
        Ok(report) => UploadEnd::Complete {
            files_count: report.files_count() as u64,
        },
        Err(e) => UploadEnd::Failed {
            error: e,
            message: format!("generating {key}: {e}"),
        },
    };
    record.finish_own(store, source.size, end)?;
    result.map(|_| ())
}

/// Runs `dump_syms` over a copy of `source` named as the key's module (the
/// name the `.sym`'s MODULE line takes); returns its folder and the `.sym`.
fn dump(
    store: &Store,
    source: &KeyRow,
    key: &str,
    max_bytes: u64,
) -> crate::Result<(tempfile::TempDir, std::path::PathBuf)> {
    if source.size > max_bytes {
        return Err(Error::TooLarge(format!(
            "its debug file {} is {} bytes, over max_sym_generation_bytes ({max_bytes})",
            source.key, source.size
        )));
    }
    let module = key.split('/').next().unwrap_or_default();
    // The module passed the segment rule: one plain name inside the folder.
    crate::keys::check_segment("module", module).map_err(|why| Error::invalid(key, why))?;
    let dir = store.temp_dir("gensym-")?;
    let input = dir.path().join(module);
    let output = dir.path().join("generated.sym");
    let mut reader = store
        .open_original(source)
        .map_err(|e| store.blob_error(e))?;
    std::io::copy(&mut reader, &mut std::fs::File::create(&input)?)?;
    let mut config = dump_syms::dumper::Config::with_output(dump_syms::dumper::Output::File(
        dump_syms::dumper::FileOutput::Path(output.clone()),
    ));
    config.emit_inlines = true;
    // As the command line does: a debug file split from its binary has no CFI.
    config.check_cfi = false;
    let input_name = input.to_string_lossy().into_owned();
    dump_syms::dumper::single_file(&config, &input_name).map_err(|e| {
        Error::invalid(
            &source.key,
            format!("dump_syms could not read this debug file: {e}"),
        )
    })?;
    let stamped = dir.path().join(format!("{module}.sym"));
    stamp(&output, &stamped)?;
    Ok((dir, stamped))
}

/// Copies a generated `.sym`, adding after its first records (MODULE and
/// any INFO) the line that says what made it:
/// `INFO GENERATOR symdepot <version> (dump_syms <version>)`.
fn stamp(from: &std::path::Path, to: &std::path::Path) -> crate::Result<()> {
    use std::io::{BufRead, Write};
    let mut input = std::io::BufReader::new(std::fs::File::open(from)?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    let mut line = Vec::new();
    let mut stamped = false;
    while input.read_until(b'\n', &mut line)? > 0 {
        if !stamped && !line.starts_with(b"MODULE ") && !line.starts_with(b"INFO ") {
            writeln!(
                out,
                "INFO GENERATOR symdepot {} (dump_syms {DUMP_SYMS_VERSION})",
                crate::VERSION
            )?;
            stamped = true;
        }
        out.write_all(&line)?;
        line.clear();
    }
    if !stamped {
        writeln!(
            out,
            "INFO GENERATOR symdepot {} (dump_syms {DUMP_SYMS_VERSION})",
            crate::VERSION
        )?;
    }
    out.flush()?;
    Ok(())
}
