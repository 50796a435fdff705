//! symdepot: a self-hosted symbol server.
//!
//! The crate is a library with a thin binary on top (`src/main.rs`), so that
//! integration tests and benchmarks drive exactly the code the daemon runs.
//! See `ARCHITECTURE.md` for the code map and the invariants between modules.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod error;
pub mod filters;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod prefetch;
pub mod progress;
pub mod settings;
pub mod store;
pub mod symbolicate;
pub mod tls;
pub mod transfer;
pub mod units;
pub mod upstream;
pub mod zips;

pub use config::Config;
pub use error::{Error, Result};
pub use settings::Settings;
pub use store::Store;

/// The version string reported by `/__version__` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from, or `unknown`.
pub const COMMIT: &str = env!("SYMDEPOT_COMMIT");
