//! Configuration: the command line ([`Cli`]), Mosquitto's `mosquitto.conf` syntax
//! (`file`), CPU lists (`cpus`) and logging (`logging`), resolved into one [`Settings`]
//! that `main` hands to the shards. Pure except for reading the file and installing the
//! tracing subscriber.
//!
//! Mosquitto 2's rules are kept: without a file, or with a file that opens no listener,
//! the broker runs in local-only mode (loopback on 1883 or on the `-p` ports, anonymous
//! clients allowed); once the file opens a listener, `-p` is ignored and
//! `allow_anonymous` defaults to false.

pub mod cli;
pub mod cpus;
pub mod file;
pub mod logging;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use cli::Cli;
pub use cpus::CpuList;
pub use logging::{init_logging, LogDest, LogSettings, LogTypes};

use crate::limits::{self, Limits};
use file::FileConfig;

/// The port Mosquitto listens on when nothing names one.
pub const DEFAULT_PORT: u16 = 1883;

/// Everything the broker needs to start, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Addresses to listen on, in file order; never empty, never repeated.
    pub listeners: Vec<SocketAddr>,
    pub limits: Limits,
    pub allow_anonymous: bool,
    pub retain_available: bool,
    /// `None`: one shard per CPU the process may run on.
    pub shards: Option<u16>,
    /// CPUs to pin shards to, ascending and distinct; `None`: every allowed CPU.
    pub cpus: Option<Vec<usize>>,
    /// `spin_us` (Culex): how long an idle shard polls for work before it sleeps.
    pub spin_us: u32,
    pub log: LogSettings,
    pub config_file: Option<PathBuf>,
    /// Notes for the operator (deprecated options, ignored `-p`), to log once logging is up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Settings from the command line and the file it names (if any).
    pub fn load(cli: &Cli) -> Result<Settings, ConfigError> {
        if cli.port.len() > cli::CLI_PORTS_MAX {
            return Err(ConfigError::command_line(format!(
                "-p given {} times; at most {} ports may be given on the command line",
                cli.port.len(),
                cli::CLI_PORTS_MAX
            )));
        }
        let file = match &cli.config_file {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
                    file: name.clone(),
                    line: None,
                    reason: format!("cannot read the configuration file: {err}"),
                })?;
                Some(file::parse(&text, &name)?)
            }
            None => None,
        };
        let mut settings = resolve(file, &cli.port);
        settings.config_file.clone_from(&cli.config_file);
        if cli.verbose {
            settings.log.make_verbose();
        }
        if cli.shards.is_some() {
            settings.shards = cli.shards;
        }
        if let Some(cpus) = &cli.cpus {
            settings.cpus = Some(cpus.as_slice().to_vec());
        }
        Ok(settings)
    }

    /// Settings from a file's text alone (no command line); `file_name` labels errors.
    pub fn from_str(text: &str, file_name: &str) -> Result<Settings, ConfigError> {
        let mut settings = resolve(Some(file::parse(text, file_name)?), &[]);
        settings.config_file = Some(PathBuf::from(file_name));
        Ok(settings)
    }

    /// Mosquitto 2 with no configuration file: local-only mode on `ports` (1883 if none).
    pub fn local_only(ports: &[u16]) -> Settings {
        resolve(None, ports)
    }
}

/// Applies Mosquitto's defaults to what the file said (or to nothing).
fn resolve(file: Option<FileConfig>, cli_ports: &[u16]) -> Settings {
    let has_file = file.is_some();
    let mut file = file.unwrap_or_else(|| {
        file::parse("", "").expect("an empty file holds no line that could be refused")
    });
    let local_only = !file.defines_listeners();
    let listeners = if local_only {
        local_only_listeners(cli_ports)
    } else {
        if !cli_ports.is_empty() {
            file.warnings.push(
                "-p ignored: the configuration file defines listeners (as in Mosquitto 2)"
                    .to_string(),
            );
        }
        file_listeners(&file)
    };
    if local_only && has_file {
        file.warnings.push(
            "local-only mode: the configuration file defines no listener, so only clients on this machine can connect"
                .to_string(),
        );
    }
    let mut limits = file.limits;
    limits.max_packet_size_bytes =
        packet_size_bytes(file.max_packet_size_bytes, file.message_size_limit_bytes);
    Settings {
        listeners,
        limits,
        allow_anonymous: file.allow_anonymous.unwrap_or(local_only),
        retain_available: file.retain_available,
        shards: file.shards,
        cpus: file.cpus,
        spin_us: file.spin_us,
        log: file.log,
        config_file: None,
        warnings: file.warnings,
    }
}

fn local_only_listeners(cli_ports: &[u16]) -> Vec<SocketAddr> {
    let ports = if cli_ports.is_empty() {
        &[DEFAULT_PORT][..]
    } else {
        cli_ports
    };
    let mut listeners = Vec::new();
    for &port in ports {
        for ip in file::loopback() {
            let addr = SocketAddr::new(ip, port);
            // `-p 1883 -p 1883` opens one socket, not a failing second bind.
            if !listeners.contains(&addr) {
                listeners.push(addr);
            }
        }
    }
    listeners
}

/// The default listener (from `port` / `bind_address`) first, then the `listener` lines.
fn file_listeners(file: &FileConfig) -> Vec<SocketAddr> {
    let mut listeners = Vec::new();
    if file.defines_default_listener() {
        let port = file.default_port.map_or(DEFAULT_PORT, |(port, _)| port);
        let ips = file
            .default_bind
            .as_ref()
            .map_or_else(file::all_interfaces, |(ips, _)| ips.clone());
        listeners.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, port)));
    }
    for (addr, _) in &file.listeners {
        if !listeners.contains(addr) {
            listeners.push(*addr);
        }
    }
    listeners
}

/// `max_packet_size` bounds a packet, `message_size_limit` a payload (0: the protocol's
/// maximum, as Mosquitto). The stricter wins; with neither, Culex's default holds.
fn packet_size_bytes(max_packet_size: Option<u32>, message_size_limit: Option<u32>) -> u32 {
    let from_payload = message_size_limit.map(|payload| match payload {
        0 => limits::MAX_PACKET_SIZE_BYTES_PROTOCOL,
        n => n
            .saturating_add(limits::PUBLISH_HEADROOM_BYTES)
            .min(limits::MAX_PACKET_SIZE_BYTES_PROTOCOL),
    });
    match (max_packet_size, from_payload) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => limits::MAX_PACKET_SIZE_BYTES_DEFAULT,
    }
}

/// Why start-up stopped. Displays as `FILE:LINE: reason`, or `FILE: reason` when the
/// whole file (or the command line) is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl ConfigError {
    fn at(file: &str, line: usize, reason: String) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: Some(line),
            reason,
        }
    }

    fn command_line(reason: String) -> ConfigError {
        ConfigError {
            file: "command line".to_string(),
            line: None,
            reason,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
