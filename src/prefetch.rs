//! `symdepot prefetch`: fills the `cache` namespace from the upstreams ahead
//! of need (`spec/mirror.md`, "Closing the air gap").
//!
//! What to fetch comes from keys (`<module>/<id>/<file>`, `buildid/<id>/<role>`)
//! or URLs of them, minidumps (their module lists), binaries and folders of
//! them (their own identities) and missing-symbols CSVs of another symdepot.
//! Each module becomes the keys a client would ask for it by — the `.sym`, the
//! PDB, the PE file, the ELF debug file by build id — and each key is asked
//! of the upstreams that would be asked for it on a miss, through the same
//! checks as a miss ([`crate::http::mirror`]), a bounded number at once.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::StreamExt;

use crate::config::Config;
use crate::http::mirror::{BuildRole, Fetched, Mirror, Want};
use crate::identity::Kind;
use crate::keys::{MemberKey, breakpad_sym_name};
use crate::settings::IngestLimits;
use crate::store::Store;

/// What `symdepot prefetch` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keys, URLs, files and folders.
    pub inputs: Vec<String>,
    /// Files listing keys or URLs, one per line (`-`: standard input).
    pub lists: Vec<PathBuf>,
    /// Fetches at once.
    pub jobs: usize,
}

/// How one wanted file came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Fetched,
    AlreadyThere,
    NotFound,
    Failed,
}

/// The counts `prefetch` ends with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub fetched: usize,
    pub already_there: usize,
    pub not_found: usize,
    pub failed: usize,
    /// Inputs that could not be read or made sense of.
    pub bad_inputs: usize,
    /// Files no configured upstream would be asked for (by protocol, include, exclude).
    pub not_asked: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fetched, {} already there, {} not found upstream, {} failed",
            self.fetched, self.already_there, self.not_found, self.failed
        )?;
        if self.not_asked > 0 {
            write!(f, ", {} no upstream is asked for", self.not_asked)?;
        }
        if self.bad_inputs > 0 {
            write!(f, ", {} input(s) not understood", self.bad_inputs)?;
        }
        Ok(())
    }
}

/// A module as crash reports and symbol servers name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Module {
    pub debug_file: String,
    pub debug_id: String,
    pub code_file: String,
    pub code_id: String,
}

/// Extensions of Windows PE files.
const PE_EXTENSIONS: [&str; 8] = ["dll", "exe", "sys", "ocx", "cpl", "drv", "efi", "scr"];

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The last segment of a path as Windows or Unix writes it.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Whether `id` looks like an ELF build id (even-length hex, 16 to 80 digits).
fn is_build_id(id: &str) -> bool {
    id.len() >= 16
        && id.len() <= 80
        && id.len().is_multiple_of(2)
        && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Module {
    /// The files a client may ask for this module by: its `.sym`, its PDB,
    /// its PE file, its ELF debug file by build id. A row of the
    /// missing-symbols report of a debuginfod miss (`buildid/<id>/<role>`, or
    /// `debuginfo`/`executable` as older versions wrote it, and the build id)
    /// is that file.
    pub fn wants(&self) -> Vec<Want> {
        let mut out = Vec::new();
        let path = |m: &str, id: &str, f: &str| {
            MemberKey::new(m, id, f)
                .ok()
                .map(|_| Want::Path(vec![m.to_string(), id.to_string(), f.to_string()]))
        };
        let df = base_name(self.debug_file.trim());
        let did = self.debug_id.trim();
        let (cf, cid) = (base_name(self.code_file.trim()), self.code_id.trim());
        match df {
            "debuginfo" | "executable" if is_build_id(did) => {
                let role = if df == "debuginfo" {
                    BuildRole::Debuginfo
                } else {
                    BuildRole::Executable
                };
                out.push(Want::BuildId {
                    id: did.to_ascii_lowercase(),
                    role,
                });
                return out;
            }
            _ => {}
        }
        if !df.is_empty() && !did.is_empty() {
            if PE_EXTENSIONS.contains(&extension(df).as_str()) {
                // A PE file's own key (a miss of `x.dll/<code id>/x.dll`).
                out.extend(path(df, did, df));
            } else {
                out.extend(path(df, did, &breakpad_sym_name(df)));
                if extension(df) == "pdb" {
                    out.extend(path(df, did, df));
                }
            }
        }
        if !cf.is_empty() && !cid.is_empty() && PE_EXTENSIONS.contains(&extension(cf).as_str()) {
            out.extend(path(cf, cid, cf));
        } else if is_build_id(cid) && extension(df) != "pdb" {
            out.push(Want::BuildId {
                id: cid.to_ascii_lowercase(),
                role: BuildRole::Debuginfo,
            });
        }
        out.dedup();
        out
    }
}

/// A key or URL of one: `<module>/<id>/<file>` or `buildid/<id>/<role>`
/// (the last segments of a URL's path).
pub fn want_of_key(text: &str) -> Result<Want, String> {
    let text = text.trim();
    let segs: Vec<String> = match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url
            .path_segments()
            .map(|s| {
                s.filter(|s| !s.is_empty())
                    .map(|s| {
                        percent_encoding::percent_decode_str(s)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => text
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if let Some(i) = segs.iter().rposition(|s| s == "buildid")
        && let [id, role] = &segs[i + 1..]
    {
        let role = match role.as_str() {
            "debuginfo" => BuildRole::Debuginfo,
            "executable" => BuildRole::Executable,
            other => return Err(format!("{other:?} is not debuginfo or executable")),
        };
        if !is_build_id(id) {
            return Err(format!("{id:?} is not a build id"));
        }
        return Ok(Want::BuildId {
            id: id.to_ascii_lowercase(),
            role,
        });
    }
    let [.., m, id, f] = segs.as_slice() else {
        return Err("not <module>/<id>/<file>, buildid/<id>/<role>, or a file".to_string());
    };
    MemberKey::new(m, id, f)?;
    Ok(Want::Path(vec![m.clone(), id.clone(), f.clone()]))
}

/// The modules of a minidump's module list.
pub fn minidump_modules(path: &Path) -> anyhow::Result<Vec<Module>> {
    use minidump::Module as _;
    let dump = minidump::Minidump::read_path(path).context("not a minidump")?;
    let list = dump
        .get_stream::<minidump::MinidumpModuleList>()
        .context("the minidump has no module list")?;
    Ok(list
        .iter()
        .map(|m| Module {
            debug_file: m.debug_file().map(|s| s.into_owned()).unwrap_or_default(),
            debug_id: m
                .debug_identifier()
                .map(|d| d.breakpad().to_string())
                .unwrap_or_default(),
            code_file: m.code_file().into_owned(),
            code_id: m
                .code_identifier()
                .map(|c| c.to_string())
                .unwrap_or_default(),
        })
        .collect())
}

/// The modules of a missing-symbols CSV (`debug_file,debug_id,code_file,code_id,…`).
pub fn csv_modules(text: &str) -> anyhow::Result<Vec<Module>> {
    let mut lines = text.lines();
    let header = csv_cells(lines.next().unwrap_or_default());
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(df), Some(did)) = (col("debug_file"), col("debug_id")) else {
        bail!("not a missing-symbols CSV: its first line names no debug_file and debug_id columns");
    };
    let (cf, cid) = (col("code_file"), col("code_id"));
    let cell = |cells: &[String], i: Option<usize>| {
        i.and_then(|i| cells.get(i)).cloned().unwrap_or_default()
    };
    Ok(lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells = csv_cells(l);
            Module {
                debug_file: cell(&cells, Some(df)),
                debug_id: cell(&cells, Some(did)),
                code_file: cell(&cells, cf),
                code_id: cell(&cells, cid),
            }
        })
        .collect())
}

/// The cells of one CSV line (RFC 4180 quoting; the `'` the report puts
/// before a cell a spreadsheet would read as a formula is taken off).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let (mut quoted, mut chars) = (false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    cells.push(cell);
    for c in &mut cells {
        if c.starts_with('\'') && c[1..].starts_with(['=', '+', '-', '@', '\t', '\r']) {
            c.remove(0);
        }
    }
    cells
}

/// What a binary or debug file at hand lacks: the other files of its own
/// identity (its `.sym`, the PDB a PE names, an ELF file's debug file).
pub fn binary_module(path: &Path) -> anyhow::Result<Option<Module>> {
    let name = base_name(&path.to_string_lossy()).to_string();
    let id = crate::identity::identify(std::fs::File::open(path)?, &name);
    let debug_id = id.debug_id.clone().unwrap_or_default();
    Ok(match id.kind {
        Kind::Pe => Some(Module {
            debug_file: id.debug_file.clone().unwrap_or_default(),
            debug_id,
            ..Module::default()
        }),
        Kind::Elf => Some(Module {
            debug_file: name,
            debug_id,
            code_id: if id.has_debug_info {
                String::new()
            } else {
                id.build_id.clone().unwrap_or_default()
            },
            ..Module::default()
        }),
        Kind::MachO | Kind::Pdb => Some(Module {
            debug_file: id.debug_file.clone().unwrap_or(name),
            debug_id,
            ..Module::default()
        }),
        _ => None,
    })
}

/// The wants of one input: a file or folder when one exists at that path,
/// else a key or URL. Errors say what the input was not.
fn wants_of_input(input: &str, out: &mut Vec<Want>) -> anyhow::Result<()> {
    let path = Path::new(input);
    if !path.exists() {
        let want = want_of_key(input).map_err(|why| anyhow::anyhow!("{input}: {why}"))?;
        out.push(want);
        return Ok(());
    }
    if path.is_dir() {
        let mut files = Vec::new();
        files_below(path, &mut files).with_context(|| format!("reading {input}"))?;
        // One file that cannot be read does not stop the rest of the folder.
        let mut unreadable = Vec::new();
        for f in files {
            match binary_module(&f) {
                Ok(Some(m)) => out.extend(m.wants()),
                Ok(None) => {}
                Err(e) => unreadable.push(format!("{}: {e:#}", f.display())),
            }
        }
        if !unreadable.is_empty() {
            bail!(
                "{input}: {} file(s) could not be read ({})",
                unreadable.len(),
                unreadable.join("; ")
            );
        }
        return Ok(());
    }
    if !path.is_file() {
        bail!("{input}: not a regular file or a folder");
    }
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .with_context(|| format!("reading {input}"))?;
    if n == 4 && magic == *b"MDMP" {
        for m in minidump_modules(path).with_context(|| input.to_string())? {
            out.extend(m.wants());
        }
    } else if extension(input) == "csv" {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {input}"))?;
        for m in csv_modules(&text).with_context(|| input.to_string())? {
            out.extend(m.wants());
        }
    } else {
        match binary_module(path).with_context(|| format!("reading {input}"))? {
            Some(m) => out.extend(m.wants()),
            None => bail!(
                "{input}: not a minidump, a missing-symbols CSV, or a binary or debug file with an identity"
            ),
        }
    }
    Ok(())
}

/// The regular files below a folder; links are not followed.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let t = e.file_type()?;
        if t.is_dir() {
            files_below(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Runs `symdepot prefetch`: every input's wants asked of the upstreams that
/// would be asked for them, `jobs` at once; a progress bar on a terminal, the
/// failures and a summary on stderr. An error when anything failed.
pub fn run(config: Config, opts: &Options) -> anyhow::Result<Summary> {
    let upstreams = crate::upstream::from_config(&config.upstream, &config.upstreams)?;
    if upstreams.is_empty() {
        bail!(
            "no upstreams are configured: add [[upstream]] tables or upstreams = \"protocol+url\""
        );
    }
    let mut summary = Summary::default();
    let mut wants = Vec::new();
    let mut inputs: Vec<String> = opts.inputs.clone();
    for list in &opts.lists {
        let text = if list == Path::new("-") {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?
        };
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match want_of_key(line) {
                Ok(w) => wants.push(w),
                Err(why) => {
                    eprintln!("not understood {line}: {why}");
                    summary.bad_inputs += 1;
                }
            }
        }
    }
    for input in inputs.drain(..) {
        if let Err(e) = wants_of_input(&input, &mut wants) {
            eprintln!("not understood {e:#}");
            summary.bad_inputs += 1;
        }
    }
    // Each file once, in a stable order.
    let wants: Vec<Want> = wants
        .into_iter()
        .map(|w| (w.lkey(), w))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let limits = IngestLimits::new(&config);
    let max_bytes = config.max_upload_bytes;
    let dir = config.data_dir.display().to_string();
    let store = Arc::new(
        Store::open_with(crate::settings::StoreSettings::new(&config))
            .with_context(|| format!("opening the data directory {dir}"))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let metrics = crate::metrics::Metrics::new();
    let outcomes = runtime.block_on(async {
        let mirror = Mirror::new(
            upstreams,
            store,
            limits,
            max_bytes,
            metrics.upstreams.clone(),
        );
        let all = wants.len();
        let wants: Vec<Want> = wants.into_iter().filter(|w| mirror.would_ask(w)).collect();
        let not_asked = all - wants.len();
        let bar = crate::progress::bar("prefetch", Some(wants.len() as u64));
        let outcomes: Vec<(Want, Outcome)> = futures_util::stream::iter(wants)
            .map(|want| {
                let (mirror, bar) = (mirror.clone(), bar.clone());
                async move {
                    let outcome = if mirror.has(&want).await {
                        Outcome::AlreadyThere
                    } else {
                        match mirror.fetch(want.clone()).await {
                            Fetched::Stored => Outcome::Fetched,
                            Fetched::NotFound => Outcome::NotFound,
                            Fetched::Failed { .. } | Fetched::Busy => Outcome::Failed,
                        }
                    };
                    if outcome == Outcome::Failed {
                        bar.suspend(|| eprintln!("failed   {}", shown(&want)));
                    }
                    bar.set_message(shown(&want));
                    bar.inc(1);
                    (want, outcome)
                }
            })
            .buffer_unordered(opts.jobs.max(1))
            .collect()
            .await;
        bar.finish_and_clear();
        (outcomes, not_asked)
    });
    let (outcomes, not_asked) = outcomes;
    summary.not_asked = not_asked;
    for (_, outcome) in &outcomes {
        match outcome {
            Outcome::Fetched => summary.fetched += 1,
            Outcome::AlreadyThere => summary.already_there += 1,
            Outcome::NotFound => summary.not_found += 1,
            Outcome::Failed => summary.failed += 1,
        }
    }
    Ok(summary)
}

/// A want as a user would type it.
fn shown(want: &Want) -> String {
    match want {
        Want::Path(segs) => segs.join("/"),
        Want::BuildId { id, role } => format!("buildid/{id}/{}", role.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(m: &Module) -> Vec<String> {
        m.wants().iter().map(shown).collect()
    }

    fn module(df: &str, did: &str, cf: &str, cid: &str) -> Module {
        Module {
            debug_file: df.into(),
            debug_id: did.into(),
            code_file: cf.into(),
            code_id: cid.into(),
        }
    }

    const PDB_ID: &str = "3A1B2C3D4E5F60718293A4B5C6D7E8F91";
    const BUILD_ID: &str = "8713b9c3fb8a720137a4a08b325905c7aaf8429d";

    #[test]
    fn a_module_is_asked_for_by_every_file_a_client_would_ask_for() {
        // Windows: the .sym, the PDB, the PE file.
        assert_eq!(
            keys(&module(
                "C:\\build\\xul.pdb",
                PDB_ID,
                "C:\\build\\xul.dll",
                "5F3A2B1C9A000"
            )),
            [
                format!("xul.pdb/{PDB_ID}/xul.sym"),
                format!("xul.pdb/{PDB_ID}/xul.pdb"),
                "xul.dll/5F3A2B1C9A000/xul.dll".to_string()
            ]
        );
        // Linux: the .sym and the debug file by build id.
        assert_eq!(
            keys(&module(
                "libc.so.6",
                "C3B91387B8FB0172A4A08B325905C7AA0",
                "/lib/libc.so.6",
                BUILD_ID
            )),
            [
                "libc.so.6/C3B91387B8FB0172A4A08B325905C7AA0/libc.so.6.sym".to_string(),
                format!("buildid/{BUILD_ID}/debuginfo")
            ]
        );
        // Rows of the missing-symbols report: a PE file's own miss, a debuginfod miss.
        assert_eq!(
            keys(&module("x.dll", "5F3A2B1C9A000", "", "")),
            ["x.dll/5F3A2B1C9A000/x.dll"]
        );
        assert_eq!(
            keys(&module(
                &format!("buildid/{BUILD_ID}/debuginfo"),
                BUILD_ID,
                "",
                ""
            )),
            [format!("buildid/{BUILD_ID}/debuginfo")]
        );
        // As an older symdepot recorded one.
        assert_eq!(
            keys(&module("executable", &BUILD_ID.to_uppercase(), "", "")),
            [format!("buildid/{BUILD_ID}/executable")]
        );
        // Nothing that is not a key.
        assert!(keys(&module("../x.pdb", "zz", "", "")).is_empty());
    }

    #[test]
    fn keys_and_urls_name_one_file() {
        let k = |t: &str| want_of_key(t).map(|w| shown(&w));
        assert_eq!(
            k(&format!("xul.pdb/{PDB_ID}/xul.sym")).unwrap(),
            format!("xul.pdb/{PDB_ID}/xul.sym")
        );
        assert_eq!(
            k(&format!(
                "https://symbols.example/try/xul.pdb/{PDB_ID}/xul.sym"
            ))
            .unwrap(),
            format!("xul.pdb/{PDB_ID}/xul.sym")
        );
        assert_eq!(
            k(&format!(
                "https://debuginfod.example/buildid/{BUILD_ID}/debuginfo"
            ))
            .unwrap(),
            format!("buildid/{BUILD_ID}/debuginfo")
        );
        assert!(k("xul.pdb/../etc").is_err());
        assert!(k(&format!("buildid/{BUILD_ID}/source")).is_err());
        assert!(k("just-a-word").is_err());
    }

    #[test]
    fn the_missing_symbols_csv_is_read_back() {
        let text = "debug_file,debug_id,code_file,code_id,count,first_seen,last_seen\n\
                    xul.pdb,3A1B,\"a,b.dll\",5F00,2,x,y\n\
                    '-odd.pdb,3A1C,,,1,x,y\n";
        let m = csv_modules(text).unwrap();
        assert_eq!(m[0], module("xul.pdb", "3A1B", "a,b.dll", "5F00"));
        assert_eq!(m[1].debug_file, "-odd.pdb");
        assert!(csv_modules("a,b\n1,2\n").is_err());
    }
}
