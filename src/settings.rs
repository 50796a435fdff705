//! Each layer's settings, typed and parsed once from a [`Config`].
//!
//! [`Config`] is the format of the file, the environment and the flags: strings
//! for durations, lists as written. [`Settings::new`] turns it, once per
//! process, into one small struct per layer: [`StoreSettings`] for the store,
//! [`IngestLimits`] for the upload pipeline, [`HttpSettings`] for the request
//! path and [`DaemonSettings`] for the daemon's own work. Durations are parsed
//! here and nowhere else; no layer sees the whole `Config`.
//!
//! [`Config::validate`] refuses a duration that does not parse. A `Config`
//! built in code and never validated gets each field's default instead, as the
//! daemon always did.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::units::parse_duration;

/// Every layer's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreSettings,
    pub ingest: IngestLimits,
    pub http: HttpSettings,
    pub daemon: DaemonSettings,
}

impl Settings {
    pub fn new(config: &Config) -> Settings {
        Settings {
            store: StoreSettings::new(config),
            ingest: IngestLimits::new(config),
            http: HttpSettings::new(config),
            daemon: DaemonSettings::new(config),
        }
    }
}

/// What the store uses: where it lives, how it stores blobs, what GC keeps.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The data dir.
    pub data_dir: PathBuf,
    /// How long after its last upload a try file expires.
    pub try_retention: Duration,
    /// How long after its last upload a release file expires (`None`: never).
    pub release_retention: Option<Duration>,
    /// What GC never collects: blobs, entries and temp files younger than this.
    pub gc_grace: Duration,
    /// The largest share of the stored blobs one GC run may delete.
    pub gc_max_delete_fraction: f64,
    /// gzip level (0-9) of compressed blobs.
    pub compression_level: u32,
    /// Extensions stored gzip-compressed: lower case, without the dot.
    compress_extensions: HashSet<String>,
    /// Most rows the missing-symbols report keeps.
    pub missing_max_rows: u64,
    /// Where blobs go: `None` on the local disk (with the layout tree), else the object store.
    pub s3: Option<crate::store::s3::S3Settings>,
    /// Where the index is: `None` in the data dir (SQLite), else PostgreSQL.
    pub database: Option<DatabaseSettings>,
    /// Fetched files (`cache`) unused for this long go at GC.
    pub cache_retention: Duration,
    /// Most bytes fetched files may take (`None`: no limit); GC drops the
    /// least recently used beyond it.
    pub cache_max_bytes: Option<u64>,
}

/// The index on PostgreSQL.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
}

/// The URL may carry a password: never shown.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl StoreSettings {
    pub fn new(config: &Config) -> StoreSettings {
        StoreSettings {
            data_dir: config.data_dir.clone(),
            try_retention: parse_duration(&config.try_retention)
                .unwrap_or(Duration::from_secs(28 * 86_400)),
            release_retention: parse_duration(&config.release_retention),
            gc_grace: parse_duration(&config.gc_grace).unwrap_or(Duration::from_secs(3600)),
            gc_max_delete_fraction: config.gc_max_delete_fraction,
            compression_level: config.compression_level,
            compress_extensions: config
                .compress_extensions
                .iter()
                .map(|e| normal_extension(e))
                .collect(),
            missing_max_rows: config.missing_max_rows,
            s3: (config.blob_store == "s3").then(|| crate::store::s3::S3Settings {
                endpoint: config.s3_endpoint.clone(),
                bucket: config.s3_bucket.clone(),
                region: config.s3_region.clone(),
                prefix: config.s3_prefix.clone(),
                access_key_id: config.s3_access_key_id.clone(),
                secret_access_key: config.s3_secret_access_key.clone(),
                allow_http: config.s3_allow_http,
                virtual_hosted: config.s3_virtual_hosted,
                presign_ttl: parse_duration(&config.s3_presign_ttl)
                    .unwrap_or(Duration::from_secs(300)),
            }),
            database: (!config.database_url.is_empty()).then(|| DatabaseSettings {
                url: config.database_url.clone(),
                pool_size: config.database_pool_size.max(1) as usize,
            }),
            cache_retention: parse_duration(&config.cache_retention)
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(90 * 86_400)),
            cache_max_bytes: crate::units::parse_size(&config.cache_max_bytes),
        }
    }

    /// Whether files with this name are stored gzip-compressed.
    pub fn compresses(&self, file_name: &str) -> bool {
        extension(file_name)
            .is_some_and(|ext| self.compress_extensions.contains(&ext.to_ascii_lowercase()))
    }
}

/// What the upload pipeline checks a zip against, and its parallelism.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest total of uncompressed member bytes in one zip.
    pub max_uncompressed_bytes: u64,
    /// Most members one zip may hold.
    pub max_members: u64,
    /// Highest uncompressed:compressed ratio of a member past 1 MiB.
    pub max_compression_ratio: u64,
    /// Most temporary space one upload's spooled members may take.
    pub max_spool_bytes: u64,
    /// A member whose name contains any of these rejects the whole zip.
    pub disallowed_snippets: Vec<String>,
    /// Threads that inflate, hash and compress members (at least 1).
    pub workers: usize,
}

impl IngestLimits {
    pub fn new(config: &Config) -> IngestLimits {
        IngestLimits {
            max_uncompressed_bytes: config.max_uncompressed_bytes,
            max_members: config.max_members,
            max_compression_ratio: config.max_compression_ratio,
            max_spool_bytes: config.max_spool_bytes,
            disallowed_snippets: config.disallowed_snippets.clone(),
            workers: match config.ingest_workers {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            },
        }
    }
}

/// What the request path reads: connection and upload limits, timeouts, who
/// may read what, upload by download, and content types.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Connections served at once (0: no limit).
    pub max_connections: usize,
    /// The longest wait for a request head, or between two pieces of a body (never zero).
    pub request_timeout: Duration,
    /// How long a cached lookup is trusted.
    pub lookup_cache_ttl: Duration,
    /// Largest accepted upload body, sent or downloaded.
    pub max_upload_bytes: u64,
    /// Uploads one token may have in progress at once (0: no limit).
    pub max_concurrent_uploads_per_token: usize,
    /// Records are readable without a token.
    pub public_records: bool,
    /// Every download route needs a token with `download`.
    pub private_downloads: bool,
    /// Base URL for absolute links (empty: relative links).
    pub public_url: String,
    /// Hosts an upload may be downloaded from (empty: upload by download is off).
    pub upload_download_domains: Vec<String>,
    /// `http://` URLs are allowed for upload by download.
    pub allow_http_downloads: bool,
    /// How long an upload by download may take to arrive.
    pub upload_download_timeout: Duration,
    /// `Content-Type` by extension (lower case, without the dot).
    mime_overrides: HashMap<String, String>,
    /// Blobs stored as they are and at least this large are served by a `302`
    /// to a presigned URL of the object store (`blob_store = "s3"` only).
    pub redirect_min_bytes: Option<u64>,
    /// Upstream symbol servers asked on a miss, in order.
    pub upstreams: Vec<crate::upstream::Upstream>,
    /// Most frames one symbolication request may ask for.
    pub max_symbolicate_frames: usize,
    /// Bytes of `.sym` text kept parsed for symbolication.
    pub symbolication_cache_bytes: u64,
    /// Largest minidump `/stackwalk` takes.
    pub max_minidump_bytes: u64,
    /// `/stackwalk` answers clients without a token.
    pub public_stackwalk: bool,
    /// How minidumps are walked (a process of their own).
    pub walker: crate::symbolicate::walker::Walker,
    /// `.sym` generations at once.
    pub max_sym_generations: usize,
    /// Largest debug file a `.sym` is generated from.
    pub max_sym_generation_bytes: u64,
}

impl HttpSettings {
    pub fn new(config: &Config) -> HttpSettings {
        let mut mime_overrides = HashMap::new();
        // In the map's order, the first of two spellings of one extension wins.
        for (ext, mime) in &config.mime_overrides {
            mime_overrides
                .entry(normal_extension(ext))
                .or_insert_with(|| mime.clone());
        }
        HttpSettings {
            max_connections: config.max_connections,
            lookup_cache_ttl: parse_duration(&config.lookup_cache_ttl)
                .unwrap_or(Duration::from_secs(2)),
            request_timeout: parse_duration(&config.request_timeout)
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(30)),
            max_upload_bytes: config.max_upload_bytes,
            max_concurrent_uploads_per_token: config.max_concurrent_uploads_per_token,
            public_records: config.public_records,
            private_downloads: config.private_downloads,
            public_url: config.public_url.clone(),
            upload_download_domains: config.upload_download_domains.clone(),
            allow_http_downloads: config.allow_http_downloads,
            upload_download_timeout: parse_duration(&config.upload_download_timeout)
                .unwrap_or(Duration::from_secs(600)),
            mime_overrides,
            redirect_min_bytes: (config.blob_store == "s3")
                .then(|| crate::units::parse_size(&config.s3_redirect_min_bytes))
                .flatten(),
            // Checked by `Config::validate` already.
            upstreams: crate::upstream::from_config(&config.upstream, &config.upstreams)
                .unwrap_or_default(),
            max_symbolicate_frames: usize::try_from(config.max_symbolicate_frames)
                .unwrap_or(usize::MAX),
            symbolication_cache_bytes: config.symbolication_cache_bytes,
            max_minidump_bytes: config.max_minidump_bytes,
            public_stackwalk: config.public_stackwalk,
            walker: crate::symbolicate::walker::Walker {
                program: (config.walker_program.clone())
                    .or_else(|| std::env::current_exe().ok())
                    .unwrap_or_else(|| "symdepot".into()),
                max_memory: config.max_stackwalk_memory,
                time_cap: crate::symbolicate::walker::TIME_CAP,
            },
            max_sym_generations: usize::try_from(config.max_sym_generations).unwrap_or(usize::MAX),
            max_sym_generation_bytes: config.max_sym_generation_bytes,
        }
    }

    /// The `Content-Type` served for a file name.
    pub fn mime_for(&self, file_name: &str) -> &str {
        extension(file_name)
            .and_then(|ext| self.mime_overrides.get(&ext.to_ascii_lowercase()))
            .map_or("application/octet-stream", String::as_str)
    }
}

/// What the daemon itself runs besides the server.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// How often GC runs (`None`: the periodic run is off).
    pub gc_interval: Option<Duration>,
    /// The drop folder to watch, if any.
    pub inbox: Option<PathBuf>,
}

impl DaemonSettings {
    pub fn new(config: &Config) -> DaemonSettings {
        DaemonSettings {
            gc_interval: parse_duration(&config.gc_interval).filter(|d| !d.is_zero()),
            inbox: (!config.inbox.is_empty()).then(|| PathBuf::from(&config.inbox)),
        }
    }
}

fn extension(file_name: &str) -> Option<&str> {
    file_name.rsplit_once('.').map(|(_, ext)| ext)
}

/// An extension as configured (`sym`, `.sym`, `SYM`) as it is compared.
fn normal_extension(ext: &str) -> String {
    ext.trim_start_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_and_mime_follow_the_extension_case_insensitively() {
        let settings = Settings::new(&Config::default());
        assert!(settings.store.compresses("xul.sym"));
        assert!(settings.store.compresses("XUL.SYM"));
        assert!(!settings.store.compresses("libxul.so"));
        assert!(!settings.store.compresses("sym"));
        assert_eq!(settings.http.mime_for("xul.sym"), "text/plain");
        assert_eq!(
            settings.http.mime_for("xul.pdb"),
            "application/octet-stream"
        );
    }

    #[test]
    fn configured_extensions_may_have_a_dot_and_any_case() {
        let config = Config {
            compress_extensions: vec![".TXT".into()],
            mime_overrides: [
                ("SYM", "text/x-a"),
                ("sym", "text/x-b"),
                (".Log", "text/x-log"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Config::default()
        };
        let settings = Settings::new(&config);
        assert!(settings.store.compresses("a.txt"));
        assert!(!settings.store.compresses("a.sym"));
        assert_eq!(settings.http.mime_for("a.sym"), "text/x-a");
        assert_eq!(settings.http.mime_for("a.LOG"), "text/x-log");
    }

    #[test]
    fn durations_are_parsed_with_the_defaults_as_fallback() {
        let settings = Settings::new(&Config::default());
        assert_eq!(
            settings.store.try_retention,
            Duration::from_secs(28 * 86_400)
        );
        assert_eq!(settings.store.release_retention, None);
        assert_eq!(settings.store.gc_grace, Duration::from_secs(3600));
        assert_eq!(settings.daemon.gc_interval, Some(Duration::from_secs(3600)));
        assert_eq!(settings.http.request_timeout, Duration::from_secs(30));
        assert_eq!(
            settings.http.upload_download_timeout,
            Duration::from_secs(600)
        );
        assert_eq!(settings.daemon.inbox, None);

        let config = Config {
            try_retention: "2d".into(),
            release_retention: "365d".into(),
            gc_interval: "0".into(),
            request_timeout: "0".into(),
            gc_grace: "soon".into(),
            inbox: "/drop".into(),
            ..Config::default()
        };
        let settings = Settings::new(&config);
        assert_eq!(
            settings.store.try_retention,
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(
            settings.store.release_retention,
            Some(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(settings.store.gc_grace, Duration::from_secs(3600));
        assert_eq!(settings.daemon.gc_interval, None);
        assert_eq!(settings.http.request_timeout, Duration::from_secs(30));
        assert_eq!(settings.daemon.inbox, Some(PathBuf::from("/drop")));
    }

    #[test]
    fn zero_ingest_workers_means_one_per_core() {
        let limits = IngestLimits::new(&Config::default());
        assert!(limits.workers >= 1);
        let limits = IngestLimits::new(&Config {
            ingest_workers: 3,
            ..Config::default()
        });
        assert_eq!(limits.workers, 3);
    }
}
