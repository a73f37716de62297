//! The daemon's log: tracing to stderr, at `daemon.log_level` (or
//! `RUST_LOG`; reloadable), as `daemon.log_format` says. Text lines under
//! systemd (stderr is the journal stream named by `JOURNAL_STREAM`) start
//! with their syslog priority (`<3>` error … `<7>` debug, sd-daemon(3)) and
//! carry no timestamp of their own: journald stamps them, and
//! `journalctl -p warning` finds the warnings. JSON: one object per line.

use crate::foundation::config::{Config, LogFormat};
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, EnvFilter, Layer};

/// Changes the log level on reload.
pub type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// The filter `config` asks for (`RUST_LOG` wins).
pub fn filter_for(config: &Config) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.daemon.log_level.as_str()))
}

/// The syslog priority of a level (sd-daemon(3)).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM`
/// ("device:inode").
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    let Ok(named) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    named == format!("{}:{}", st.st_dev, st.st_ino)
}

/// A text line prefixed with its syslog priority.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Installs the log; returns the handle that changes its level.
pub fn init(config: &Config) -> FilterHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = reload::Layer::new(filter_for(config));
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let layer = match config.daemon.log_format {
        LogFormat::Json => base.json().flatten_event(true).boxed(),
        LogFormat::Text if stderr_is_journal() => base
            .with_ansi(false)
            .event_format(Prioritized(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_target(false),
            ))
            .boxed(),
        LogFormat::Text => base
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    handle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }
}
