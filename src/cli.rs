//! Command-line definitions (clap). Behaviour lives in `commands`.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A self-hosted symbol server: Tecken uploads; Breakpad, debuginfod and SymStore downloads.
///
/// Build machines upload debug files (Tecken's POST /upload/, or `symdepot upload`);
/// debuggers and crash tools download them over every protocol they speak:
/// Breakpad/Tecken symbol paths, debuginfod (/buildid/<id>/debuginfo, executable,
/// source, section), and SymStore/SSQP (WinDbg, Visual Studio, symchk, dotnet-symbol).
/// Misses can be fetched from upstream symbol servers (breakpad, symstore, debuginfod);
/// stacks are symbolicated (/symbolicate/v5) and minidumps walked (/stackwalk).
#[derive(Debug, Parser)]
#[command(name = "symdepot", version = crate::VERSION)]
pub struct Cli {
    /// Data directory [env: SYMDEPOT_DATA_DIR] [default: ./symdepot-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML); environment and flags override it
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon
    Serve {
        /// Address to listen on; port 0 picks a free port [env: SYMDEPOT_LISTEN] [default: 127.0.0.1:8000]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Drop folder to watch for zips and loose debug files [env: SYMDEPOT_INBOX]
        #[arg(long, value_name = "DIR")]
        inbox: Option<String>,
    },
    /// Ingest zips, directories or loose debug files straight into the data dir,
    /// each file placed by its own identity
    Ingest {
        /// Files or directories (searched recursively)
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Store as try files
        #[arg(long = "try")]
        is_try: bool,
    },
    /// Print a file's kind and every id and lookup key it has
    Id {
        file: PathBuf,
        /// Write a deterministic debug id into a source map that has none
        #[arg(long)]
        inject: bool,
    },
    /// Expire try files, drop blobs no key references, clear stale temp files
    Gc {
        /// Report exactly what would go, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Delete unreferenced blobs even when they are more than
        /// `gc_max_delete_fraction` of the store
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
    },
    /// Re-hash every blob and check every key against the disk; exit 1 on damage
    Verify {
        /// Re-link entries that can be re-linked, quarantine corrupt blobs
        #[arg(long)]
        repair: bool,
        /// Presence and sizes only: stat every blob and layout entry, read and hash nothing
        #[arg(long)]
        quick: bool,
    },
    /// Rebuild the index from the blobs and the layout tree, or from the upload manifests in the bucket (--from-bucket)
    Reindex {
        /// With blob_store = s3: rebuild from the upload manifests in the bucket
        /// (keys, lookups and upload records) instead of the layout tree
        #[arg(long)]
        from_bucket: bool,
    },
    /// Remove a key (or every key of an upload, or every fetched file) from the index and the
    /// layout; blobs go at the next GC
    Delete {
        /// `<module>/<debug_id>/<file>`
        #[arg(required_unless_present_any = ["upload", "namespace"])]
        key: Option<String>,
        /// The key is a try file
        #[arg(long = "try", conflicts_with = "namespace")]
        is_try: bool,
        /// Delete every key whose current content came from this upload
        #[arg(long, conflicts_with_all = ["key", "namespace"])]
        upload: Option<i64>,
        /// The namespace of the key: release, try or cache (files fetched from upstreams);
        /// `--namespace cache` without a key deletes every fetched file
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Copy symbols out as plain files in a tool's layout, or as Tecken-style zips
    Export {
        /// Tree layout of --plain: breakpad, symstore or debuginfod
        #[arg(long, default_value = "breakpad")]
        layout: String,
        /// Write a plain (uncompressed) tree into this folder
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "zip",
            conflicts_with = "zip"
        )]
        plain: Option<PathBuf>,
        /// Write Tecken-layout zips into this folder instead
        #[arg(long, value_name = "DIR")]
        zip: Option<PathBuf>,
        /// Largest total of member bytes per zip
        #[arg(long, default_value = "1.5GB")]
        max_size: String,
        /// SymStore's two-tier tree (with index2.txt)
        #[arg(long)]
        index2: bool,
        /// Only keys whose current content came from this upload
        #[arg(long)]
        upload: Option<i64>,
        /// Only this module (first key segment)
        #[arg(long)]
        module: Option<String>,
        /// Only keys uploaded since: a date (YYYY-MM-DD, UTC), a date-time (RFC 3339), today,
        /// yesterday, or a duration back from now (7d, 12h, 2w)
        #[arg(long)]
        since: Option<String>,
        /// Export try files instead of release files
        #[arg(long = "try")]
        is_try: bool,
        /// Export this namespace: release, try, or cache (files fetched from upstreams)
        #[arg(long, conflicts_with = "is_try")]
        namespace: Option<String>,
    },
    /// Fetch from the configured upstreams, ahead of need, every symbol file the inputs
    /// name: keys (<module>/<id>/<file>, buildid/<id>/<role>) or URLs of them, minidumps
    /// (their module lists), binaries or folders of them (the files of their own
    /// identities), missing-symbols CSVs of another symdepot (missingsymbols.csv)
    Prefetch {
        /// Keys, URLs, minidumps, binaries, folders, CSV files
        inputs: Vec<String>,
        /// A file of keys or URLs, one per line (`-`: standard input); repeatable
        #[arg(long, value_name = "FILE")]
        list: Vec<PathBuf>,
        /// Fetches at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
    },
    /// Copy this store (blobs, keys, upload history, tokens, missing symbols) into the
    /// store another configuration file describes: a single machine's into S3 + PostgreSQL,
    /// or a cluster's onto one disk. Resumable; ends with a verify of the copy
    Migrate {
        /// The target store's configuration file (read alone: SYMDEPOT_* variables and
        /// flags describe the source)
        #[arg(long, value_name = "FILE")]
        to_config: PathBuf,
        /// Rows copied per transaction (1 to 10000)
        #[arg(long, default_value_t = crate::store::migrate::DEFAULT_BATCH,
              value_parser = clap::value_parser!(u32).range(1..=10000))]
        batch: u32,
    },
    /// Ingest an existing Breakpad tree, SymStore share or debuginfod-style tree
    Import {
        dir: PathBuf,
        /// Store as try files
        #[arg(long = "try")]
        is_try: bool,
        /// Store in this namespace: release, try, or cache (files fetched from upstreams,
        /// as an export of another store's cache carried across an air gap)
        #[arg(long, conflicts_with = "is_try")]
        namespace: Option<String>,
    },
    /// Make Breakpad .sym files from stored debug files (ELF, PDB, Mach-O) ahead of time,
    /// as the server does when a client asks for a missing one
    GenSym {
        /// .sym keys (<debug file>/<debug id>/<name>.sym)
        keys: Vec<String>,
        /// Every stored debug file that has no .sym yet
        #[arg(long, conflicts_with = "keys", required_unless_present = "keys")]
        all: bool,
    },
    /// Walk a minidump sent on standard input, asking for symbols on standard output
    /// (the daemon runs this for each POST /stackwalk)
    #[command(hide = true)]
    WalkMinidump {
        /// The data limit set before anything is read, in bytes
        #[arg(long)]
        max_memory: u64,
        /// The daemon's process id: the walker ends if it is not its parent
        #[arg(long)]
        parent: u32,
        /// Answer what a page shows (threads and frames cut short), not the whole walk
        #[arg(long)]
        page: bool,
    },
    /// Upload a zip or a directory to symdepot or any Tecken-compatible server
    Upload {
        /// A zip, or a directory in the <module>/<debug_id>/<file> layout (any layout with --auto)
        path: PathBuf,
        /// The server's base URL (or its /upload/ URL)
        #[arg(long, env = "SYMDEPOT_UPLOAD_URL", hide_env_values = true)]
        url: String,
        /// An upload token
        #[arg(long, env = "SYMDEPOT_TOKEN", hide_env_values = true)]
        token: String,
        /// A try upload
        #[arg(long = "try")]
        is_try: bool,
        /// Place files by their own identity (symdepot's ?layout=auto)
        #[arg(long)]
        auto: bool,
        /// Split payloads above this size
        #[arg(long, default_value = "1.5GB")]
        max_size: String,
        /// Attempts per zip on 429, 5xx and connection errors
        #[arg(long, default_value_t = 6)]
        attempts: u32,
    },
    /// Manage API tokens (works with or without the daemon running)
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Print a completion script for a shell (e.g. `symdepot completions bash > /etc/bash_completion.d/symdepot`)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (symdepot.1 and one per command) into a directory
    #[command(hide = true)]
    Man {
        /// Where the pages go (made if missing)
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret alone on the last line
    Create {
        /// upload, upload_try, view_all, manage_tokens or download (repeatable)
        #[arg(long = "permission", value_name = "P", required = true)]
        permissions: Vec<String>,
        /// Owner name shown in upload records
        #[arg(long, default_value = "admin")]
        user: String,
        /// Lifetime such as 365d, 12h or 2w, or `never`
        #[arg(long, default_value = "365d")]
        expires: String,
        /// Free text to remember what the token is for
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token by id
    Revoke {
        /// The token's id, as `token list` shows it
        id: i64,
    },
}

impl Cli {
    /// The command line of this process. As [`Parser::parse`], except that
    /// the client commands (`upload`, `completions`) do not offer the store's
    /// options (`--data-dir`, `--config`), which they do not read.
    pub fn from_env() -> Cli {
        let mut cmd = Self::command();
        cmd.build();
        for client in ["upload", "completions"] {
            cmd = cmd.mut_subcommand(client, |c| {
                c.mut_args(|a| {
                    let store_option = ["data_dir", "config"].contains(&a.get_id().as_str());
                    a.hide(store_option)
                })
            });
        }
        let matches = cmd.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}
