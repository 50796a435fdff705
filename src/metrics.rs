//! Prometheus metrics (`/metrics`), kept with `prometheus-client`.
//!
//! Counters move on the request path (atomic adds); the store gauges are
//! read from the index when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::records::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route group: upload, symbol, debuginfod, api, page, health, metrics, other.
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadLabels {
    /// `complete`, `failed`, or `aborted` (the client went away first).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream's host (and port).
    pub upstream: String,
    /// `hit` (fetched and stored), `miss` (404), `error` (a failure: timeout,
    /// connection, status, size) or `refused` (the file was not the key's).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamName {
    pub upstream: String,
}

/// What the mirror counts, per upstream (clones share the counts).
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    pub fetches: Family<UpstreamLabels, Counter>,
    pub bytes: Family<UpstreamName, Counter>,
    pub duration: Family<UpstreamName, Histogram, fn() -> Histogram>,
}

fn fetch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl UpstreamMetrics {
    fn new() -> UpstreamMetrics {
        UpstreamMetrics {
            fetches: Family::default(),
            bytes: Family::default(),
            duration: Family::new_with_constructor(fetch_histogram),
        }
    }
}

/// Every metric symdepot exports.
#[derive(Debug)]
pub struct Metrics {
    pub upstreams: UpstreamMetrics,
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes_sent: Counter,
    pub uploads: Family<UploadLabels, Counter>,
    pub upload_bytes: Counter,
    pub upload_duration: Histogram,
    pub files_stored: Counter,
    pub files_skipped: Counter,
    pub members_inflated: Counter,
    pub members_hashed_on_arrival: Counter,
    pub missing_recorded: Counter,
    pub symbol_files_parsed: Counter,
    store_files: Gauge,
    store_bytes: Gauge,
    store_blob_bytes: Gauge,
    dedup_saved_bytes: Gauge,
    missing_symbols: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("symdepot");
        let m = Metrics {
            upstreams: UpstreamMetrics::new(),
            requests: Family::default(),
            bytes_sent: Counter::default(),
            uploads: Family::default(),
            upload_bytes: Counter::default(),
            upload_duration: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            files_stored: Counter::default(),
            files_skipped: Counter::default(),
            members_inflated: Counter::default(),
            members_hashed_on_arrival: Counter::default(),
            missing_recorded: Counter::default(),
            symbol_files_parsed: Counter::default(),
            store_files: Gauge::default(),
            store_bytes: Gauge::default(),
            store_blob_bytes: Gauge::default(),
            dedup_saved_bytes: Gauge::default(),
            missing_symbols: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route group and status",
            m.requests.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent (by Content-Length)",
            m.bytes_sent.clone(),
        );
        registry.register("uploads", "Upload requests by outcome", m.uploads.clone());
        registry.register(
            "upload_bytes",
            "Bytes of upload request bodies received",
            m.upload_bytes.clone(),
        );
        registry.register(
            "upload_duration_seconds",
            "Seconds from an upload's first byte to its answer",
            m.upload_duration.clone(),
        );
        registry.register(
            "files_stored",
            "Keys newly stored or replaced by uploads",
            m.files_stored.clone(),
        );
        registry.register(
            "files_skipped",
            "Uploaded keys skipped as already stored",
            m.files_skipped.clone(),
        );
        registry.register(
            "members_inflated",
            "Zip members inflated to be read (a member whose compressed stream was read and stored before is not)",
            m.members_inflated.clone(),
        );
        registry.register(
            "members_hashed_on_arrival",
            "Zip members whose compressed stream was hashed as the upload arrived (the others are read from the spooled zip again)",
            m.members_hashed_on_arrival.clone(),
        );
        registry.register(
            "missing_lookups",
            "Download misses counted for the missing-symbols report",
            m.missing_recorded.clone(),
        );
        registry.register(
            "symbol_files_parsed",
            "Symbol files parsed for symbolication (once per file while it stays cached)",
            m.symbol_files_parsed.clone(),
        );
        registry.register("store_files", "Keys in the index", m.store_files.clone());
        registry.register(
            "store_original_bytes",
            "Original bytes of every key",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_blob_bytes",
            "Original bytes of distinct blobs",
            m.store_blob_bytes.clone(),
        );
        registry.register(
            "dedup_saved_bytes",
            "Bytes not stored twice thanks to content addressing",
            m.dedup_saved_bytes.clone(),
        );
        registry.register(
            "missing_symbols",
            "Rows in the missing-symbols report",
            m.missing_symbols.clone(),
        );
        registry.register(
            "upstream_fetches",
            "Fetches from upstream symbol servers by upstream and outcome",
            m.upstreams.fetches.clone(),
        );
        registry.register(
            "upstream_bytes",
            "Bytes received from upstream symbol servers",
            m.upstreams.bytes.clone(),
        );
        registry.register(
            "upstream_fetch_duration_seconds",
            "How long a fetch from an upstream took",
            m.upstreams.duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition, with the store gauges set from `stats`.
    pub fn render(&self, stats: &Stats) -> String {
        self.store_files.set(stats.files as i64);
        self.store_bytes.set(stats.files_bytes as i64);
        self.store_blob_bytes.set(stats.blob_bytes as i64);
        self.dedup_saved_bytes.set(stats.dedup_saved_bytes() as i64);
        self.missing_symbols.set(stats.missing as i64);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
