//! Logging settings in Mosquitto's terms (`log_type`, `log_dest`, `log_timestamp`, `-v`)
//! and their translation into one tracing subscriber, installed once at start-up.
//!
//! Mosquitto's log types are independent switches; tracing's levels nest. The translation
//! keeps the most verbose level among error < warning < notice/information < debug, and
//! gives subscribe, unsubscribe and websockets their own targets (below), which other
//! modules name when they log those events so the switches stay independent.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The target for "client subscribed" lines: `info!(target: SUBSCRIBE_TARGET, ...)`.
pub const SUBSCRIBE_TARGET: &str = "culex_subscribe";
/// The target for "client unsubscribed" lines.
pub const UNSUBSCRIBE_TARGET: &str = "culex_unsubscribe";
/// The target for WebSocket transport lines.
pub const WEBSOCKETS_TARGET: &str = "culex_websockets";

/// Which of Mosquitto's log types are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTypes {
    pub error: bool,
    pub warning: bool,
    pub notice: bool,
    pub information: bool,
    pub debug: bool,
    pub subscribe: bool,
    pub unsubscribe: bool,
    pub websockets: bool,
}

impl LogTypes {
    /// No type: `log_type none`.
    pub const NONE: LogTypes = LogTypes {
        error: false,
        warning: false,
        notice: false,
        information: false,
        debug: false,
        subscribe: false,
        unsubscribe: false,
        websockets: false,
    };
    /// Every type: `log_type all`, and what `-v` selects.
    pub const ALL: LogTypes = LogTypes {
        error: true,
        warning: true,
        notice: true,
        information: true,
        debug: true,
        subscribe: true,
        unsubscribe: true,
        websockets: true,
    };

    /// Switches on the type Mosquitto names `name` (`all` and `none` set every switch).
    /// Returns false for a name Mosquitto does not know.
    pub fn enable(&mut self, name: &str) -> bool {
        match name {
            "error" => self.error = true,
            "warning" => self.warning = true,
            "notice" => self.notice = true,
            "information" => self.information = true,
            "debug" => self.debug = true,
            "subscribe" => self.subscribe = true,
            "unsubscribe" => self.unsubscribe = true,
            "websockets" => self.websockets = true,
            "all" => *self = LogTypes::ALL,
            "none" => *self = LogTypes::NONE,
            _ => return false,
        }
        true
    }

    /// The tracing filter these switches mean: one level for the broker's own lines and an
    /// on/off directive per event target.
    pub fn filter_directives(&self) -> String {
        let level = if self.debug {
            "debug"
        } else if self.information || self.notice {
            "info"
        } else if self.warning {
            "warn"
        } else if self.error {
            "error"
        } else {
            "off"
        };
        let switch = |on: bool| if on { "info" } else { "off" };
        format!(
            "{level},{SUBSCRIBE_TARGET}={},{UNSUBSCRIBE_TARGET}={},{WEBSOCKETS_TARGET}={}",
            switch(self.subscribe),
            switch(self.unsubscribe),
            switch(self.websockets)
        )
    }
}

impl Default for LogTypes {
    /// Mosquitto's default: error, warning, notice and information.
    fn default() -> LogTypes {
        LogTypes {
            error: true,
            warning: true,
            notice: true,
            information: true,
            ..LogTypes::NONE
        }
    }
}

/// Where log lines go. Both may be on; neither is `log_dest none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDest {
    pub stderr: bool,
    pub stdout: bool,
}

impl Default for LogDest {
    /// Mosquitto's default: stderr.
    fn default() -> LogDest {
        LogDest {
            stderr: true,
            stdout: false,
        }
    }
}

/// The resolved logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSettings {
    pub types: LogTypes,
    pub dest: LogDest,
    /// `log_timestamp`: prefix each line with the time (Mosquitto's default: true).
    pub timestamp: bool,
    /// `-v` was given: every type, to stderr, whatever the file said.
    pub verbose: bool,
}

impl LogSettings {
    /// Mosquitto's defaults: error to information, on stderr, with timestamps.
    pub fn mosquitto_default() -> LogSettings {
        LogSettings {
            types: LogTypes::default(),
            dest: LogDest::default(),
            timestamp: true,
            verbose: false,
        }
    }

    /// Applies `-v`: Mosquitto's "log_type all", overriding the file's logging options.
    pub fn make_verbose(&mut self) {
        self.types = LogTypes::ALL;
        self.dest = LogDest {
            stderr: true,
            stdout: false,
        };
        self.verbose = true;
    }
}

/// Installs the process's tracing subscriber. A non-empty `RUST_LOG` replaces the filter
/// derived from the log types (destination and timestamps still come from the settings).
/// A second call keeps the first subscriber: tests and embedders may already have one.
pub fn init_logging(settings: &super::Settings) {
    let log = &settings.log;
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).unwrap_or_else(|err| {
            eprintln!("culex: ignoring RUST_LOG={text:?}: {err}");
            directives_filter(log)
        }),
        _ => directives_filter(log),
    };
    let dest = log.dest;
    let writer = std::io::stderr
        .with_filter(move |_| dest.stderr)
        .and(std::io::stdout.with_filter(move |_| dest.stdout));
    // Colour only on a terminal: log files and journald should not hold escape codes.
    let ansi = (dest.stderr && std::io::stderr().is_terminal())
        || (dest.stdout && std::io::stdout().is_terminal());
    // `try_init` also routes the `log` crate (glommio logs through it) into tracing. An
    // existing subscriber is kept on purpose, so its error is not a failure here.
    let _ = subscriber(log, filter, writer, ansi).try_init();
}

/// The subscriber for `log`, writing through `writer`; split out so tests can capture it.
fn subscriber<W>(
    log: &LogSettings,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if log.timestamp {
        Box::new(builder.finish())
    } else {
        Box::new(builder.without_time().finish())
    }
}

fn directives_filter(log: &LogSettings) -> EnvFilter {
    EnvFilter::try_new(log.types.filter_directives())
        .expect("directives built from fixed level and target names always parse")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps every line in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("no test panics while holding it")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs one line of each kind under `types` and returns what was written.
    fn log_each_kind(types: LogTypes, timestamp: bool) -> String {
        let log = LogSettings {
            types,
            timestamp,
            ..LogSettings::mosquitto_default()
        };
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = subscriber(&log, directives_filter(&log), move || sink.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("an error");
            tracing::warn!("a warning");
            tracing::info!("some information");
            tracing::debug!("a packet");
            tracing::info!(target: SUBSCRIBE_TARGET, "c1 subscribed");
            tracing::info!(target: UNSUBSCRIBE_TARGET, "c1 unsubscribed");
        });
        let bytes = captured.0.lock().expect("logging is over").clone();
        String::from_utf8(bytes).expect("fmt writes UTF-8")
    }

    #[test]
    fn log_types_select_lines() {
        let out = log_each_kind(LogTypes::default(), false);
        for line in ["an error", "a warning", "some information"] {
            assert!(out.contains(line), "{line} missing from {out}");
        }
        for line in ["a packet", "subscribed"] {
            assert!(!out.contains(line), "{line} in {out}");
        }

        let errors_and_subscribes = LogTypes {
            error: true,
            subscribe: true,
            ..LogTypes::NONE
        };
        let out = log_each_kind(errors_and_subscribes, false);
        assert!(
            out.contains("an error") && out.contains("c1 subscribed"),
            "{out}"
        );
        assert!(
            !out.contains("a warning") && !out.contains("unsubscribed"),
            "{out}"
        );

        let out = log_each_kind(LogTypes::ALL, false);
        assert_eq!(out.lines().count(), 6, "{out}");

        assert_eq!(log_each_kind(LogTypes::NONE, false), "");
    }

    #[test]
    fn timestamps_are_optional() {
        // Without a timestamp a line opens with its level; with one, with the year.
        let plain = log_each_kind(
            LogTypes {
                error: true,
                ..LogTypes::NONE
            },
            false,
        );
        assert!(plain.trim_start().starts_with("ERROR"), "{plain}");
        let stamped = log_each_kind(
            LogTypes {
                error: true,
                ..LogTypes::NONE
            },
            true,
        );
        assert!(stamped.starts_with("20"), "{stamped}");
    }

    #[test]
    fn verbose_overrides_the_file() {
        let mut log = LogSettings {
            types: LogTypes::NONE,
            dest: LogDest {
                stderr: false,
                stdout: true,
            },
            timestamp: false,
            verbose: false,
        };
        log.make_verbose();
        assert_eq!(log.types, LogTypes::ALL);
        assert_eq!(
            log.dest,
            LogDest {
                stderr: true,
                stdout: false
            }
        );
        assert!(log.verbose && !log.timestamp);
    }
}
