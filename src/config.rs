//! Configuration: one `Config` with a documented default for every field.
//!
//! Precedence is file < environment < flags. Every key `k` of the file can also
//! be set as `SYMDEPOT_<K>` in the environment (upper-cased), so scripts and
//! systemd units need no file. Environment values are read as TOML values when
//! they parse as one (`true`, `42`, `["a", "b"]`) and as plain strings otherwise;
//! list-valued keys also take a comma-separated string, and `mime_overrides`
//! takes `ext=type,ext=type`.
//!
//! A mistake is named: a key of the file that is no setting is refused with
//! its file, line and the closest key, and a `SYMDEPOT_*` variable that is no
//! setting (nor read elsewhere) is reported by [`unknown_env`], a warning.
//!
//! `Config` is only the format: the layers get their settings typed and
//! already parsed from [`crate::settings::Settings`], built once from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::units::{parse_duration, parse_size, serde_size};

/// All settings of the daemon and the commands.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding the index, the blobs and the layout tree. Default `./symdepot-data`.
    pub data_dir: PathBuf,
    /// Address `serve` listens on. Port 0 picks a free port. Default `127.0.0.1:8000`.
    pub listen: String,
    /// How log lines are written to standard error: `text` (one readable line
    /// each) or `json` (one JSON object per line, for log collectors). Which
    /// lines are written is set by `SYMDEPOT_LOG` (`info` by default). Default `text`.
    pub log_format: crate::logging::LogFormat,
    /// Base URL clients use to reach the server, for absolute links behind a reverse
    /// proxy. Default empty: links are relative.
    pub public_url: String,
    /// Largest accepted upload request body, in bytes or with a unit (`2GiB`). Default 2 GiB.
    #[serde(with = "serde_size")]
    pub max_upload_bytes: u64,
    /// Largest total of uncompressed member bytes in one zip. Default 16 GiB.
    #[serde(with = "serde_size")]
    pub max_uncompressed_bytes: u64,
    /// Most temporary space one upload's binary members may take while they are
    /// checked: members over 64 KiB that sniff as ELF, Mach-O, PE or PDB are
    /// inflated to `tmp/` so their ids can be read wherever they sit. Default 4 GiB.
    #[serde(with = "serde_size")]
    pub max_spool_bytes: u64,
    /// Most members one zip may hold. Default 100 000.
    pub max_members: u64,
    /// Highest uncompressed:compressed ratio a member may have (checked once a member
    /// has inflated past 1 MiB). Default 200.
    pub max_compression_ratio: u64,
    /// A member whose name contains any of these snippets rejects the whole zip.
    /// Default `["qcom/proprietary"]`.
    pub disallowed_snippets: Vec<String>,
    /// File extensions stored gzip-compressed (without the dot). Default `["sym"]`.
    pub compress_extensions: Vec<String>,
    /// `Content-Type` by file extension; others are `application/octet-stream`.
    /// Default `{sym = "text/plain"}`.
    pub mime_overrides: BTreeMap<String, String>,
    /// gzip level (0-9) for compressed kinds. Default 6.
    pub compression_level: u32,
    /// Threads that inflate, hash and compress upload members. 0 means one per core.
    /// Default 0.
    pub ingest_workers: usize,
    /// Uploads one token may have in progress at once; more answer 429 with
    /// `Retry-After`. 0 means no limit. Default 4.
    pub max_concurrent_uploads_per_token: usize,
    /// Records (the JSON API, the CSV, `/metrics`, the web pages) are readable
    /// without a token. With `false` they need a token with `view_all`. Default true.
    pub public_records: bool,
    /// Connections served at once; one more is answered `503` with `Retry-After`
    /// and closed. 0 means no limit. Default 1024.
    pub max_connections: usize,
    /// How long a client may take to send its request head, and the longest
    /// pause between two pieces of an upload body (slow clients are cut off:
    /// the head with a closed connection, the body with 408). Default `30s`.
    pub request_timeout: String,
    /// How long a daemon trusts a cached lookup (a hit or a miss) without asking
    /// the index again. Its own changes, and with the index on PostgreSQL the
    /// other daemons' announced changes, drop cached lookups at once; this bounds
    /// what a lost announcement can leave stale. Default `2s`.
    pub lookup_cache_ttl: String,
    /// A private store: every download route (Breakpad, debuginfod, SSQP) needs a
    /// token with `download`, and records need `view_all` whatever `public_records`
    /// says. Default false.
    pub private_downloads: bool,
    /// Most rows the missing-symbols report keeps; the least recently seen go
    /// first. Also its bound in bytes: a row holds at most 702 bytes of text
    /// (file names up to 255 bytes, ids up to 96), so 10 000 rows are at most
    /// about 7 MB in the index and 13 MB as CSV. Default 10 000.
    pub missing_max_rows: u64,
    /// How long after its last upload a try file expires (`28d`, `12h`, ...). Default `28d`.
    pub try_retention: String,
    /// How long after its last upload a release file expires; empty keeps release
    /// files forever. Default empty.
    pub release_retention: String,
    /// How often the daemon runs GC; `0` turns the periodic run off. Default `1h`.
    pub gc_interval: String,
    /// Blobs, layout entries and temp files younger than this are never
    /// collected, so an upload in progress keeps what it is about to link. Default `1h`.
    pub gc_grace: String,
    /// The largest share of the stored blobs (0 to 1) one GC run may delete;
    /// a run that would delete more stops before deleting anything and needs
    /// `symdepot gc --force` (an index restored from an old backup or rebuilt
    /// badly must not cost the store). Default 0.5.
    pub gc_max_delete_fraction: f64,
    /// Hosts `POST /upload/` may download a zip from (`url=`); every redirect hop
    /// must be one of them too. Empty turns upload by download off. Default empty.
    pub upload_download_domains: Vec<String>,
    /// Allow `http://` URLs for upload by download (for tests and closed networks).
    /// Default false: https only.
    pub allow_http_downloads: bool,
    /// How long an upload by download may take to arrive. Default `10m`.
    pub upload_download_timeout: String,
    /// Where blobs are kept: `local` (under the data dir, with the layout tree)
    /// or `s3` (an S3-compatible object store; the `s3_*` settings). Default `local`.
    pub blob_store: String,
    /// The object store's URL, e.g. `http://127.0.0.1:3900`; empty means AWS. Default empty.
    pub s3_endpoint: String,
    /// The bucket blobs go to. Default empty.
    pub s3_bucket: String,
    /// The region the object store answers for (Garage answers only its own). Default `us-east-1`.
    pub s3_region: String,
    /// Prepended to every object name, so several stores can share a bucket. Default empty.
    pub s3_prefix: String,
    /// Access key id; empty takes `AWS_ACCESS_KEY_ID`. Default empty.
    pub s3_access_key_id: String,
    /// Secret access key; empty takes `AWS_SECRET_ACCESS_KEY`. Never logged. Default empty.
    pub s3_secret_access_key: String,
    /// Allow an `http://` endpoint (closed networks, tests). Default false.
    pub s3_allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path style. Default false.
    pub s3_virtual_hosted: bool,
    /// With `blob_store = "s3"`: downloads of stored-as-is blobs at least this large
    /// answer `302` to a presigned GET of the object, so the bytes flow from the object
    /// store; empty streams every blob through the daemon. Default empty.
    pub s3_redirect_min_bytes: String,
    /// How long a presigned URL of `s3_redirect_min_bytes` stays valid. Default `5m`.
    pub s3_presign_ttl: String,
    /// A drop folder the daemon watches: zips and loose debug files written
    /// there are ingested, then moved to `done/` or `failed/`. Empty: off. Default empty.
    pub inbox: String,
    /// The index on PostgreSQL (`postgres://user:pass@host:port/db`, or the
    /// `host=/run/postgresql dbname=…` form); empty keeps the index in the data
    /// dir (SQLite). Never logged. Default empty.
    pub database_url: String,
    /// PostgreSQL connections a daemon keeps at most. Default 8.
    pub database_pool_size: u32,
    /// Upstream symbol servers tried in order on a miss (`[[upstream]]` tables:
    /// `url`, `protocol`, `include`, `exclude`, `headers`, `timeout`,
    /// `negative_ttl`). Default none.
    pub upstream: Vec<crate::upstream::UpstreamConfig>,
    /// More upstreams, in short: `protocol+url`, comma-separated (after the
    /// `upstream` tables). Default empty.
    pub upstreams: String,
    /// Most bytes the `cache` namespace (fetched files) may take; empty: no
    /// limit. Default empty.
    pub cache_max_bytes: String,
    /// How long a fetched file is kept after it was last asked for. Default `90d`.
    pub cache_retention: String,
    /// Most frames one `/symbolicate` request may ask for. Default 100 000.
    pub max_symbolicate_frames: u64,
    /// Memory kept for parsed `.sym` files (each counted by its parsed
    /// structures, two to eight times its text; least recently used out
    /// first). Default 1 GiB.
    #[serde(with = "serde_size")]
    pub symbolication_cache_bytes: u64,
    /// Largest minidump `POST /stackwalk` takes. Default 64 MiB.
    #[serde(with = "serde_size")]
    pub max_minidump_bytes: u64,
    /// Most memory one stack walk may use (the walker process's data limit;
    /// a minidump that needs more is a 400). Default 2 GiB.
    #[serde(with = "serde_size")]
    pub max_stackwalk_memory: u64,
    /// Whether `POST /stackwalk` answers clients without a token (each walk
    /// costs up to `max_stackwalk_memory` and a minute of a core): off, it
    /// needs a token with `download`. Default false.
    pub public_stackwalk: bool,
    /// `.sym` files generated from debug files at once. Default 2.
    pub max_sym_generations: u64,
    /// Largest debug file a `.sym` is generated from (it is read whole into
    /// memory). Default 1 GiB.
    #[serde(with = "serde_size")]
    pub max_sym_generation_bytes: u64,
    /// Not a setting: the program run to walk minidumps (`symdepot
    /// walk-minidump`). The running binary when unset; a program that embeds
    /// the daemon (the tests) names the `symdepot` binary here.
    #[serde(skip)]
    pub walker_program: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./symdepot-data"),
            listen: "127.0.0.1:8000".to_string(),
            public_url: String::new(),
            log_format: crate::logging::LogFormat::Text,
            max_upload_bytes: 2 << 30,
            max_uncompressed_bytes: 16 << 30,
            max_spool_bytes: 4 << 30,
            max_members: 100_000,
            max_compression_ratio: 200,
            disallowed_snippets: vec!["qcom/proprietary".to_string()],
            compress_extensions: vec!["sym".to_string()],
            mime_overrides: BTreeMap::from([("sym".to_string(), "text/plain".to_string())]),
            compression_level: 6,
            ingest_workers: 0,
            max_concurrent_uploads_per_token: 4,
            public_records: true,
            private_downloads: false,
            max_connections: 1024,
            request_timeout: "30s".to_string(),
            lookup_cache_ttl: "2s".to_string(),
            missing_max_rows: 10_000,
            try_retention: "28d".to_string(),
            release_retention: String::new(),
            gc_interval: "1h".to_string(),
            gc_grace: "1h".to_string(),
            gc_max_delete_fraction: 0.5,
            upload_download_domains: Vec::new(),
            allow_http_downloads: false,
            upload_download_timeout: "10m".to_string(),
            inbox: String::new(),
            blob_store: "local".to_string(),
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".to_string(),
            s3_prefix: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            s3_allow_http: false,
            s3_virtual_hosted: false,
            s3_redirect_min_bytes: String::new(),
            s3_presign_ttl: "5m".to_string(),
            database_url: String::new(),
            database_pool_size: 8,
            upstream: Vec::new(),
            upstreams: String::new(),
            cache_max_bytes: String::new(),
            cache_retention: "90d".to_string(),
            max_symbolicate_frames: 100_000,
            symbolication_cache_bytes: 1 << 30,
            max_minidump_bytes: 64 << 20,
            max_stackwalk_memory: 2 << 30,
            public_stackwalk: false,
            max_sym_generations: 2,
            max_sym_generation_bytes: 1 << 30,
            walker_program: None,
        }
    }
}

/// The values given on the command line, which beat the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub inbox: Option<String>,
}

impl Config {
    /// Loads the optional file, then `SYMDEPOT_*` from `env`, then the flags.
    ///
    /// An error never shows a secret it read (a password in `database_url`,
    /// the S3 secret, an upstream's header values or `user:password@`): the
    /// parser's and serde's words can quote a value, so every such value found
    /// in the file or the environment is cut from the message.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        Self::load_unscrubbed(file, env.clone(), flags).map_err(|e| {
            // Read again only for an error: what to cut from its message.
            let text = file.and_then(|p| std::fs::read_to_string(p).ok());
            let secrets = secrets_in(text.as_deref().unwrap_or(""), &env);
            let mut shown = format!("{e:#}");
            for secret in &secrets {
                shown = shown.replace(secret.as_str(), "<redacted>");
            }
            anyhow::anyhow!(shown)
        })
    }

    fn load_unscrubbed(
        file: Option<&Path>,
        env: Vec<(String, String)>,
        flags: &Overrides,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let mut cfg: Config = Config::deserialize(toml::Value::Table(table.clone()))
            .context("invalid configuration")?;
        if let Some(d) = &flags.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(l) = &flags.listen {
            cfg.listen = l.clone();
        }
        if let Some(i) = &flags.inbox {
            cfg.inbox = i.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.listen.parse::<SocketAddr>().is_err() {
            bail!(
                "listen: {:?} is not an address such as 127.0.0.1:8000",
                self.listen
            );
        }
        if self.compression_level > 9 {
            bail!(
                "compression_level: must be 0 to 9, not {}",
                self.compression_level
            );
        }
        for (name, value) in [
            ("try_retention", &self.try_retention),
            ("gc_interval", &self.gc_interval),
            ("gc_grace", &self.gc_grace),
            ("upload_download_timeout", &self.upload_download_timeout),
            ("request_timeout", &self.request_timeout),
            ("lookup_cache_ttl", &self.lookup_cache_ttl),
        ] {
            if parse_duration(value).is_none() {
                bail!("{name}: {value:?} is not a duration such as 28d, 12h or 30m");
            }
        }
        if !self.release_retention.is_empty() && parse_duration(&self.release_retention).is_none() {
            bail!(
                "release_retention: {:?} is not a duration such as 365d",
                self.release_retention
            );
        }
        match self.blob_store.as_str() {
            "local" => {}
            "s3" if self.s3_bucket.is_empty() => {
                bail!("s3_bucket: blob_store = \"s3\" needs the bucket's name")
            }
            "s3" => {}
            other => bail!("blob_store: {other:?} is not a blob store; use \"local\" or \"s3\""),
        }
        if !self.s3_redirect_min_bytes.is_empty()
            && crate::units::parse_size(&self.s3_redirect_min_bytes).is_none()
        {
            bail!(
                "s3_redirect_min_bytes: {:?} is not a size such as 64MiB",
                self.s3_redirect_min_bytes
            );
        }
        if parse_duration(&self.s3_presign_ttl)
            .is_none_or(|d| d.is_zero() || d > std::time::Duration::from_secs(7 * 86_400))
        {
            bail!(
                "s3_presign_ttl: {:?} is not a duration from 1s to 7d (S3 signs URLs for at most a week)",
                self.s3_presign_ttl
            );
        }
        let url = &self.database_url;
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains("host="))
        {
            bail!(
                "database_url: not a PostgreSQL URL (postgres://user@host:port/db or host=… dbname=…)"
            );
        }
        if self.database_pool_size == 0 {
            bail!("database_pool_size: must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.gc_max_delete_fraction) {
            bail!(
                "gc_max_delete_fraction: must be a share from 0 to 1, not {}",
                self.gc_max_delete_fraction
            );
        }
        if self.max_compression_ratio == 0 {
            bail!("max_compression_ratio: must be at least 1");
        }
        crate::upstream::from_config(&self.upstream, &self.upstreams)?;
        if !self.cache_max_bytes.is_empty() && parse_size(&self.cache_max_bytes).is_none() {
            bail!(
                "cache_max_bytes: {:?} is not a size such as 50GB (or empty: no limit)",
                self.cache_max_bytes
            );
        }
        if parse_duration(&self.cache_retention).is_none_or(|d| d.is_zero()) {
            bail!(
                "cache_retention: {:?} is not a duration such as 90d",
                self.cache_retention
            );
        }
        Ok(())
    }

    /// The names of every configuration key, as written in the file.
    pub fn keys() -> Vec<String> {
        table_keys(&Config::default())
    }
}

/// The keys `value` is written with as a TOML table.
pub(crate) fn table_keys(value: &impl Serialize) -> Vec<String> {
    match toml::Value::try_from(value) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Reads and parses the configuration file, refusing keys that are no setting.
fn read_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table = toml::from_str::<toml::Table>(&text)
        .with_context(|| format!("parsing config file {}", path.display()))?;
    check_file_keys(path, &text)?;
    Ok(table)
}

/// Refuses the first key of the file that is no setting, or no upstream's
/// setting inside an `[[upstream]]` table, naming the file, its line and the
/// closest key (`serde`'s own refusal names no line).
fn check_file_keys(path: &Path, text: &str) -> anyhow::Result<()> {
    let doc = toml::de::DeTable::parse(text)
        .map_err(|e| anyhow::anyhow!("parsing config file {}: {e}", path.display()))?;
    let keys = Config::keys();
    for (key, value) in doc.get_ref().iter() {
        if let Some(why) = unknown_key(key.get_ref(), &keys, "") {
            bail!("{}: {why}", place(path, text, key));
        }
        if let ("upstream", Some(list)) = (key.get_ref().as_ref(), value.get_ref().as_array()) {
            check_upstream_keys(path, text, list)?;
        }
    }
    Ok(())
}

/// [`check_file_keys`] inside the `[[upstream]]` tables.
fn check_upstream_keys(
    path: &Path,
    text: &str,
    list: &toml::de::DeArray<'_>,
) -> anyhow::Result<()> {
    let keys = crate::upstream::UpstreamConfig::keys();
    for table in list.iter().filter_map(|t| t.get_ref().as_table()) {
        for (key, _) in table.iter() {
            if let Some(why) = unknown_key(key.get_ref(), &keys, " in [[upstream]]") {
                bail!("{}: {why}", place(path, text, key));
            }
        }
    }
    Ok(())
}

/// `file:line` of a key in the file.
fn place(path: &Path, text: &str, key: &toml::Spanned<toml::de::DeString<'_>>) -> String {
    let line = text[..key.span().start].matches('\n').count() + 1;
    format!("{}:{line}", path.display())
}

/// Why `key` is refused, when it is not one of `keys`.
fn unknown_key(key: &str, keys: &[String], place: &str) -> Option<String> {
    if keys.iter().any(|k| k == key) {
        return None;
    }
    let guess = closest(key, keys.iter().map(String::as_str))
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default();
    Some(format!("unknown setting {key:?}{place}{guess}"))
}

/// The candidate most like `word`, if it is alike enough to be what a
/// misspelling meant (at most about one letter in four wrong).
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `SYMDEPOT_*` variables for users that are no settings: the log filter
/// and the upload client's flags (suggested for a misspelling too).
const OTHER_VARIABLES: &[&str] = &["LOG", "TOKEN", "UPLOAD_URL"];

/// `SYMDEPOT_*` variables of the build and of the project's scripts and
/// tests, besides theirs that start `SYMDEPOT_TEST_`.
const PROJECT_VARIABLES: &[&str] = &["COMMIT", "TOOLS", "BIN"];

/// A warning for each `SYMDEPOT_*` variable in `env` that is no setting and
/// not read elsewhere (a misspelling would otherwise be ignored unseen),
/// suggesting the closest variable. Sorted by name.
pub fn unknown_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let keys = Config::keys();
    let mut warnings: Vec<String> = env
        .into_iter()
        .filter_map(|(name, _)| unknown_variable(&name, &keys))
        .collect();
    warnings.sort();
    warnings
}

/// The warning for one variable, if it is named as ours but unknown.
fn unknown_variable(name: &str, keys: &[String]) -> Option<String> {
    let suffix = name.strip_prefix("SYMDEPOT_")?;
    if keys.contains(&suffix.to_ascii_lowercase()) || read_elsewhere(suffix) {
        return None;
    }
    let others = OTHER_VARIABLES.iter().map(|v| v.to_ascii_lowercase());
    let known: Vec<String> = keys.iter().cloned().chain(others).collect();
    let guess = closest(
        &suffix.to_ascii_lowercase(),
        known.iter().map(String::as_str),
    )
    .map(|k| format!(" (did you mean SYMDEPOT_{}?)", k.to_ascii_uppercase()))
    .unwrap_or_default();
    Some(format!("{name} is no setting{guess}; ignored"))
}

/// Whether `SYMDEPOT_<suffix>` is read by something other than the configuration.
fn read_elsewhere(suffix: &str) -> bool {
    OTHER_VARIABLES.contains(&suffix)
        || PROJECT_VARIABLES.contains(&suffix)
        || suffix.starts_with("TEST_")
}

/// Overlays `SYMDEPOT_<KEY>` variables onto the file's table.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = toml::Value::try_from(Config::default())?;
    let keys = Config::keys();
    for (name, raw) in env {
        let Some(suffix) = name.strip_prefix("SYMDEPOT_") else {
            continue;
        };
        let key = suffix.to_ascii_lowercase();
        if !keys.contains(&key) {
            continue;
        }
        let default = defaults.get(&key);
        let value = env_value(&raw, default)
            .with_context(|| format!("environment variable {name}={raw:?}"))?;
        table.insert(key, value);
    }
    Ok(())
}

/// Reads one environment value, guided by the type of the key's default.
fn env_value(raw: &str, default: Option<&toml::Value>) -> anyhow::Result<toml::Value> {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    Ok(match (default, parsed) {
        (Some(toml::Value::String(_)), _) => toml::Value::String(raw.to_string()),
        (Some(toml::Value::Array(_)), Some(v @ toml::Value::Array(_))) => v,
        (Some(toml::Value::Array(_)), _) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        (Some(toml::Value::Table(_)), Some(v @ toml::Value::Table(_))) => v,
        (Some(toml::Value::Table(_)), _) => {
            let mut t = toml::Table::new();
            for pair in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("expected ext=type pairs separated by commas");
                };
                t.insert(
                    k.trim().to_string(),
                    toml::Value::String(v.trim().to_string()),
                );
            }
            toml::Value::Table(t)
        }
        (Some(toml::Value::Boolean(_)), _) => toml::Value::Boolean(parse_bool(raw)?),
        (_, Some(v)) => v,
        (_, None) => toml::Value::String(raw.to_string()),
    })
}

fn parse_bool(raw: &str) -> anyhow::Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => bail!("expected true or false"),
    }
}

/// Settings whose values are secrets: never printed.
const SECRET_KEYS: &[&str] = &["s3_secret_access_key", "database_url"];

/// What an error about the configuration must not show: the values of secret
/// settings in the file's lines and in `SYMDEPOT_*` variables (quoted or not),
/// the values of upstream `headers` (inline, dotted or as an
/// `[upstream.headers]` table), and the password of any URL.
fn secrets_in(text: &str, env: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut add = |v: &str| {
        let v = v.trim();
        let bare = v.trim_matches(|c| c == '"' || c == '\'');
        for candidate in [v, bare, &bare.escape_debug().to_string()] {
            // Shorter values would cut unrelated words from the message.
            if candidate.len() >= 4 && !found.iter().any(|f| f == candidate) {
                found.push(candidate.to_string());
            }
        }
    };
    let userinfo = |v: &str| -> Vec<String> {
        v.match_indices("://")
            .filter_map(|(at, _)| {
                let rest = &v[at + 3..];
                let end = rest.find(['/', '"', '\'', ' ', ',']).unwrap_or(rest.len());
                // Only a password is a secret; a user name alone stays readable.
                let (user, _) = rest[..end].rsplit_once('@')?;
                let (_, password) = user.split_once(':')?;
                Some(password.to_string())
            })
            .collect()
    };
    let mut in_headers_table = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            // A table header: `[upstream.headers]` holds header values only.
            in_headers_table = trimmed.trim_matches(['[', ']', ' ']).ends_with(".headers");
        } else if let Some((key, value)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            if SECRET_KEYS.contains(&key)
                || key == "headers"
                || key.starts_with("headers.")
                || in_headers_table
            {
                add(value);
            }
            if key == "headers" {
                // Inline table: every value after its own `=`.
                for part in value.split(',') {
                    if let Some((_, v)) = part.split_once('=') {
                        add(v.trim_end_matches('}'));
                    }
                }
            }
        }
        for u in userinfo(line) {
            add(&u);
        }
    }
    for (name, value) in env {
        let key = name
            .strip_prefix("SYMDEPOT_")
            .unwrap_or("")
            .to_ascii_lowercase();
        if SECRET_KEYS.contains(&key.as_str()) {
            add(value);
        }
        if name.starts_with("SYMDEPOT_") {
            for u in userinfo(value) {
                add(&u);
            }
        }
    }
    // The longest first, so a value is never left half cut by a shorter one.
    found.sort_by_key(|f| std::cmp::Reverse(f.len()));
    found
}

impl std::fmt::Debug for Config {
    /// Every setting, secrets redacted (a configuration ends up in logs and panics).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        if let Some(o) = v.as_object_mut() {
            // Upstreams: header values may be credentials, URLs may carry some.
            if let Some(list) = o.get_mut("upstream").and_then(|u| u.as_array_mut()) {
                for up in list.iter_mut().filter_map(|u| u.as_object_mut()) {
                    if let Some(h) = up.get_mut("headers").and_then(|h| h.as_object_mut()) {
                        for value in h.values_mut() {
                            *value = "<redacted>".into();
                        }
                    }
                    if let Some(url) = up.get("url").and_then(|u| u.as_str()) {
                        let url = crate::units::url_without_credentials(url);
                        up.insert("url".into(), url.into());
                    }
                }
            }
            if let Some(short) = o.get("upstreams").and_then(|u| u.as_str()) {
                let shown: Vec<String> = short
                    .split(',')
                    .map(|e| crate::units::url_without_credentials(e.trim()))
                    .collect();
                o.insert("upstreams".into(), shown.join(",").into());
            }
            for k in SECRET_KEYS {
                if o.get(*k)
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| !s.is_empty())
                {
                    o.insert((*k).to_string(), "<redacted>".into());
                }
            }
        }
        write!(f, "Config {v}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_redacts_secrets() {
        let c = super::Config {
            s3_secret_access_key: "wJalrXUtnFEMI-secret".into(),
            s3_access_key_id: "GKpublic".into(),
            ..super::Config::default()
        };
        let text = format!("{c:?}");
        assert!(!text.contains("wJalrXUtnFEMI-secret"), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains("GKpublic"),
            "{text}"
        );
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_toml(text: &str, e: &[(&str, &str)], flags: &Overrides) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("symdepot.toml");
        std::fs::write(&path, text)?;
        Config::load(Some(&path), env(e), flags)
    }

    #[test]
    fn defaults_apply_without_file_env_or_flags() {
        let cfg = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.max_upload_bytes, 2 << 30);
        assert_eq!(cfg.listen, "127.0.0.1:8000");
    }

    #[test]
    fn log_format_from_the_file_or_the_environment() {
        use crate::logging::LogFormat;
        let cfg = load_toml("log_format = \"json\"\n", &[], &Overrides::default()).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Json);
        let e = [("SYMDEPOT_LOG_FORMAT", "text")];
        let cfg = load_toml("log_format = \"json\"\n", &e, &Overrides::default()).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Text);
        let err = load_toml("log_format = \"xml\"\n", &[], &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("xml"), "{err:#}");
    }

    #[test]
    fn file_then_env_then_flags() {
        let text = "listen = \"127.0.0.1:9000\"\nmax_upload_bytes = \"10MB\"\ndata_dir = \"/a\"\n";
        let cfg = load_toml(text, &[], &Overrides::default()).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert_eq!(cfg.max_upload_bytes, 10 << 20);

        let e = [
            ("SYMDEPOT_LISTEN", "127.0.0.1:9001"),
            ("SYMDEPOT_DATA_DIR", "/b"),
        ];
        let cfg = load_toml(text, &e, &Overrides::default()).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9001");
        assert_eq!(cfg.data_dir, PathBuf::from("/b"));

        let flags = Overrides {
            listen: Some("127.0.0.1:9002".into()),
            data_dir: Some("/c".into()),
            inbox: None,
        };
        let cfg = load_toml(text, &e, &flags).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9002");
        assert_eq!(cfg.data_dir, PathBuf::from("/c"));
    }

    #[test]
    fn every_key_can_come_from_the_environment() {
        let e = [
            ("SYMDEPOT_MAX_UPLOAD_BYTES", "1k"),
            ("SYMDEPOT_MAX_MEMBERS", "7"),
            ("SYMDEPOT_COMPRESS_EXTENSIONS", "sym,txt"),
            ("SYMDEPOT_MIME_OVERRIDES", "sym=text/plain,txt=text/x-log"),
            ("SYMDEPOT_DISALLOWED_SNIPPETS", "[\"a/b\", \"c\"]"),
            ("SYMDEPOT_PUBLIC_URL", "https://symbols.example"),
            ("UNRELATED", "x"),
        ];
        let cfg = Config::load(None, env(&e), &Overrides::default()).unwrap();
        assert_eq!(cfg.max_upload_bytes, 1024);
        assert_eq!(cfg.max_members, 7);
        assert_eq!(cfg.compress_extensions, vec!["sym", "txt"]);
        assert_eq!(
            crate::settings::HttpSettings::new(&cfg).mime_for("a.txt"),
            "text/x-log"
        );
        assert_eq!(cfg.disallowed_snippets, vec!["a/b", "c"]);
        assert_eq!(cfg.public_url, "https://symbols.example");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(load_toml("no_such_key = 1\n", &[], &Overrides::default()).is_err());
        assert!(load_toml("max_members = \"lots\"\n", &[], &Overrides::default()).is_err());
        assert!(load_toml("listen = \"nowhere\"\n", &[], &Overrides::default()).is_err());
        let e = [("SYMDEPOT_MAX_UPLOAD_BYTES", "huge")];
        assert!(Config::load(None, env(&e), &Overrides::default()).is_err());
    }

    #[test]
    fn an_unknown_key_names_the_file_its_line_and_the_closest_key() {
        let text =
            "# limits\n\nlisten = \"127.0.0.1:9000\"\nmax_members = 7\n\nmax_uplaod_bytes = 1\n";
        let err = load_toml(text, &[], &Overrides::default()).unwrap_err();
        let shown = format!("{err:#}");
        assert!(
            shown.ends_with(
                "symdepot.toml:6: unknown setting \"max_uplaod_bytes\" \
                 (did you mean \"max_upload_bytes\"?)"
            ),
            "{shown}"
        );
        let err = load_toml("zzzz = 1\n", &[], &Overrides::default()).unwrap_err();
        let shown = format!("{err:#}");
        assert!(
            shown.ends_with("symdepot.toml:1: unknown setting \"zzzz\""),
            "{shown}"
        );
    }

    #[test]
    fn an_unknown_key_of_an_upstream_table_is_refused_with_its_line() {
        let text = "[[upstream]]\nurl = \"https://a.example\"\nprotocol = \"breakpad\"\n\
                    [[upstream]]\nurl = \"https://b.example\"\nprotcol = \"breakpad\"\n";
        let err = load_toml(text, &[], &Overrides::default()).unwrap_err();
        let shown = format!("{err:#}");
        assert!(
            shown.ends_with(
                "symdepot.toml:6: unknown setting \"protcol\" in [[upstream]] \
                 (did you mean \"protocol\"?)"
            ),
            "{shown}"
        );
        let inline = "upstream = [{ url = \"https://a.example\", timout = \"5s\" }]\n";
        let err = load_toml(inline, &[], &Overrides::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains(":1: unknown setting \"timout\" in [[upstream]]"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_symdepot_variables_are_warned_of_with_the_closest_one() {
        let e = [
            ("SYMDEPOT_MAX_UPLAOD_BYTES", "1k"),
            ("SYMDEPOT_LISTEN", "127.0.0.1:9"),
            ("SYMDEPOT_listen", "127.0.0.1:9"),
            ("SYMDEPOT_LOG", "debug"),
            ("SYMDEPOT_TOKNE", "x"),
            ("SYMDEPOT_UPLOAD_URL", "https://a.example"),
            ("SYMDEPOT_TOOLS", "/opt"),
            ("SYMDEPOT_BIN", "/bin/symdepot"),
            ("SYMDEPOT_TEST_BLOB_STORE", "s3"),
            ("SYMDEPOT_ZZZZ", "1"),
            ("OTHER_MAX_UPLAOD_BYTES", "1"),
        ];
        assert_eq!(
            unknown_env(env(&e)),
            vec![
                "SYMDEPOT_MAX_UPLAOD_BYTES is no setting \
                 (did you mean SYMDEPOT_MAX_UPLOAD_BYTES?); ignored",
                "SYMDEPOT_TOKNE is no setting (did you mean SYMDEPOT_TOKEN?); ignored",
                "SYMDEPOT_ZZZZ is no setting; ignored",
            ]
        );
        // A warning, not an error: the rest of the configuration applies.
        let cfg = Config::load(None, env(&e), &Overrides::default()).unwrap();
        assert_eq!(cfg.max_upload_bytes, Config::default().max_upload_bytes);
        assert_eq!(cfg.listen, "127.0.0.1:9");
    }

    #[test]
    fn errors_never_quote_a_secret_from_the_file_or_the_environment() {
        // Each text or variable is refused, and the refusal names where but
        // shows none of the secret it read.
        for (text, e, secret, place) in [
            // Unquoted: the parser quotes the line it stopped at.
            (
                "database_url = postgres://symdepot:hunter22@db.example/symdepot\n",
                &[][..],
                "hunter22",
                "symdepot.toml",
            ),
            // Not a string: serde names the value it found.
            (
                "s3_secret_access_key = 987654321\n",
                &[][..],
                "987654321",
                "s3_secret_access_key",
            ),
            (
                "[[upstream]]\nurl = \"https://a.example\"\nprotocol = \"breakpad\"\n\
                 headers = { Authorization = 31415926 }\n",
                &[][..],
                "31415926",
                "headers",
            ),
            (
                "[[upstream]]\nurl = \"https://a.example\"\nprotocol = \"breakpad\"\n\
                 [upstream.headers]\nAuthorization = 27182818\n",
                &[][..],
                "27182818",
                "headers",
            ),
            (
                "[[upstream]]\nurl = \"https://a.example\"\nprotocol = \"breakpad\"\n\
                 headers.Authorization = 16180339\n",
                &[][..],
                "16180339",
                "headers",
            ),
            // A variable refused with its value quoted, holding a URL's password.
            (
                "",
                &[(
                    "SYMDEPOT_MIME_OVERRIDES",
                    "https://bob:urlpass9@up.example/",
                )][..],
                "urlpass9",
                "SYMDEPOT_MIME_OVERRIDES",
            ),
        ] {
            let place: &str = place;
            let err = load_toml(text, e, &Overrides::default()).unwrap_err();
            let shown = format!("{err:#}");
            assert!(shown.contains(place), "{text}: {shown}");
            assert!(!shown.contains(secret), "{text}: {shown}");
            assert!(shown.contains("<redacted>"), "{text}: {shown}");
        }
        // A URL's user name alone is no secret: a path naming it stays whole.
        let err = load_toml(
            "max_uplaod_bytes = 1\n",
            &[(
                "SYMDEPOT_DATABASE_URL",
                "postgres://symdepot@127.0.0.1:5432/d",
            )],
            &Overrides::default(),
        )
        .unwrap_err();
        let shown = format!("{err:#}");
        assert!(shown.contains("symdepot.toml:1"), "{shown}");
    }

    #[test]
    fn upstreams_come_from_tables_and_the_short_form_and_their_secrets_are_not_shown() {
        let text = "[[upstream]]\nurl = \"https://user:pw@sym.example/\"\nprotocol = \"symstore\"\n\
                    include = [\"*.pdb\"]\nheaders = { Authorization = \"Bearer s3cret\" }\n\
                    timeout = \"10s\"\n";
        let e = [("SYMDEPOT_UPSTREAMS", "breakpad+http://127.0.0.1:9/")];
        let cfg = load_toml(text, &e, &Overrides::default()).unwrap();
        let ups = crate::upstream::from_config(&cfg.upstream, &cfg.upstreams).unwrap();
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[0].timeout, std::time::Duration::from_secs(10));
        let shown = format!("{cfg:?}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
        for (text, key) in [
            ("upstreams = \"gopher+https://a.example\"\n", "upstreams"),
            (
                "[[upstream]]\nurl = \"ftp://a\"\nprotocol = \"breakpad\"\n",
                "upstream[1].url",
            ),
            (
                "[[upstream]]\nurl = \"https://a\"\nprotocol = \"breakpad\"\nexclude = [\"[\"]\n",
                "upstream[1].exclude",
            ),
            ("cache_max_bytes = \"lots\"\n", "cache_max_bytes"),
            ("cache_retention = \"0s\"\n", "cache_retention"),
        ] {
            let err = load_toml(text, &[], &Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
    }

    #[test]
    fn index_settings_that_make_no_sense_are_refused_naming_the_key() {
        for (text, key) in [
            ("database_pool_size = 0\n", "database_pool_size"),
            ("lookup_cache_ttl = \"soon\"\n", "lookup_cache_ttl"),
            ("database_url = \"mysql://db/symbols\"\n", "database_url"),
        ] {
            let err = load_toml(text, &[], &Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
        let ok =
            "database_url = \"host=/run/postgresql dbname=symdepot\"\ndatabase_pool_size = 2\n";
        assert!(load_toml(ok, &[], &Overrides::default()).is_ok());
    }
}
