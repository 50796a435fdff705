//! The progress bars of the long commands (`verify`, `reindex`, `export`,
//! `import`, `ingest`, `gen-sym`, `prefetch`), drawn with `indicatif` on
//! standard error when it is a terminal. Elsewhere (a pipe, a file, a
//! journal) nothing is drawn: the lines and summaries the commands print are
//! all that is written.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar named `label` counting up to `total`, or a spinner counting when
/// the total is not known yet; hidden when standard error is no terminal.
pub fn bar(label: &str, total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(style(total.is_some()));
    bar.set_prefix(label.to_string());
    if total.is_none() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

/// A bar's look: `label [bar] done/total message`, or a spinner and the count.
fn style(counted: bool) -> ProgressStyle {
    let template = if counted {
        "{prefix} {bar:30} {pos}/{len} {wide_msg}"
    } else {
        "{spinner} {prefix} {pos} {wide_msg}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A store operation's progress drawn as a bar: a spinner becomes a bar once
/// the total is known.
impl crate::store::Progress for ProgressBar {
    fn total(&mut self, total: u64) {
        if self.length().is_none() && !self.is_hidden() {
            self.disable_steady_tick();
            self.set_style(style(true));
        }
        self.set_length(total);
    }

    fn step(&mut self) {
        self.inc(1);
    }
}
