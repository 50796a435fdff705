//! Where the process's log lines go and in what form.
//!
//! Lines are written to standard error by a thread of their own
//! (`tracing-appender`), so the async threads never wait on a slow terminal,
//! pipe or journal; none is dropped when it falls behind (the writer waits
//! instead). `text` is one readable line per event; `json` is one object per
//! line with `timestamp`, `level`, `target`, `message` and the event's fields
//! at the top level, for log collectors.
//!
//! Each answered request is one line under the target `symdepot::request`
//! (`http::access`): method, path (never the query string; encoded, at most
//! 1 KiB),
//! status, bytes sent, duration and the user of the token the request
//! presented — never the token itself.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The form of log lines (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Keeps the writer's thread: dropping it writes what is still queued.
pub type Flush = tracing_appender::non_blocking::WorkerGuard;

/// Sends the process's log lines to standard error in `format`, filtered by
/// `SYMDEPOT_LOG` (`info` when unset or unreadable). `None` when logging was
/// already set up (tests running several daemons in one process).
pub fn init(format: LogFormat) -> Option<Flush> {
    let filter = EnvFilter::try_from_env("SYMDEPOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let set = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    set.ok().map(|()| flush)
}
