//! Logging settings in Mosquitto's terms (`log_type`, `log_dest`, `log_timestamp`, `-v`)
//! and their translation into one tracing subscriber, installed once at start-up.
//!
//! Mosquitto's log types are independent switches; tracing's levels nest. The translation
//! keeps the most verbose level among error < warning < notice/information < debug, and
//! gives subscribe, unsubscribe and websockets their own targets (below), which other
//! modules name when they log those events so the switches stay independent.

use tracing_subscriber::fmt::writer::MakeWriterExt;
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // An existing subscriber is kept on purpose, so the error is not a failure here.
    let _ = if log.timestamp {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}

fn directives_filter(log: &LogSettings) -> EnvFilter {
    EnvFilter::try_new(log.types.filter_directives())
        .expect("directives built from fixed level and target names always parse")
}
