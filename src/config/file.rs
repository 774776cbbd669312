//! The `mosquitto.conf` reader: splits lines as Mosquitto does, checks every value, and
//! records what each line asked for in a [`FileConfig`]. Resolving that into `Settings`
//! (defaults, local-only mode, `-p`) is `mod.rs`'s job; reading the file from disk is too.
//!
//! Line syntax, as Mosquitto 2: a `#` as the very first character makes a comment; blank
//! lines and trailing whitespace (CR included) are ignored; words are separated by spaces
//! (a tab is part of a word); everything from a word starting with `#` after the option's
//! values is a comment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::cpus::CpuList;
use super::logging::{LogDest, LogSettings};
use super::ConfigError;
use crate::limits::{self, Limits};

/// Options Mosquitto has that Culex accepts only with the values that describe what Culex
/// does anyway (an empty list accepts any value: the option changes nothing Culex does).
const MATCHING_OPTIONS: &[(&str, &[&str])] = &[
    ("persistence", &["false", "0"]),
    ("autosave_interval", &[]),
    ("autosave_on_changes", &[]),
    ("persistence_file", &[]),
    ("persistence_location", &[]),
    ("connection_messages", &[]),
    ("set_tcp_nodelay", &[]),
    ("allow_zero_length_clientid", &["true", "1"]),
    ("allow_duplicate_messages", &["true", "1"]),
    ("check_retain_source", &["false", "0"]),
    ("upgrade_outgoing_qos", &["false", "0"]),
    ("queue_qos0_messages", &["false", "0"]),
    ("per_listener_settings", &["false", "0"]),
    ("use_username_as_clientid", &["false", "0"]),
    ("require_certificate", &["false", "0"]),
    ("use_identity_as_username", &["false", "0"]),
    ("use_subject_as_username", &["false", "0"]),
    ("max_qos", &["2"]),
    ("protocol", &["mqtt"]),
    ("max_inflight_bytes", &["0"]),
    ("memory_limit", &["0"]),
    ("sys_interval", &["0"]),
];

/// Options Mosquitto has and Culex does not implement yet, whatever their value.
const UNSUPPORTED_OPTIONS: &[&str] = &[
    "acl_file",
    "auth_plugin",
    "auth_plugin_deny_special_chars",
    "auto_id_prefix",
    "clientid_prefixes",
    "include_dir",
    "log_facility",
    "log_timestamp_format",
    "password_file",
    "pid_file",
    "psk_file",
    "user",
    "bind_interface",
    "http_dir",
    "mount_point",
    "socket_domain",
    "websockets_log_level",
    "websockets_headers_size",
    "cafile",
    "capath",
    "certfile",
    "ciphers",
    "ciphers_tls1.3",
    "crlfile",
    "dhparamfile",
    "keyfile",
    "tls_engine",
    "tls_engine_kpass_sha1",
    "tls_keyform",
    "tls_version",
    "psk_hint",
    "plugin",
    "global_plugin",
    "enable_control_api",
    "ocsp_data",
    "disable_client_cert_date_checks",
    // Bridges.
    "connection",
    "address",
    "addresses",
    "cleansession",
    "local_cleansession",
    "keepalive_interval",
    "idle_timeout",
    "local_clientid",
    "local_password",
    "local_username",
    "notifications",
    "notifications_local_only",
    "notification_topic",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
];

/// Prefixes of whole families of unsupported options.
const UNSUPPORTED_PREFIXES: &[&str] = &["bridge_", "plugin_opt_", "global_plugin_opt_"];

/// What a configuration file said, each value checked, nothing yet defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `listener` lines: each address with the line that asked for it.
    pub listeners: Vec<(SocketAddr, usize)>,
    /// Deprecated `port`, with its line.
    pub default_port: Option<(u16, usize)>,
    /// Deprecated `bind_address`, with its line.
    pub default_bind: Option<(Vec<IpAddr>, usize)>,
    /// A `max_connections` other than -1 before any `listener` line: Mosquitto 2 takes it
    /// as a setting of the default listener and so opens that listener (port 1883, all
    /// interfaces, unless `port` / `bind_address` say otherwise). The line, if so.
    pub default_implied: Option<usize>,
    pub allow_anonymous: Option<bool>,
    pub retain_available: bool,
    /// Every limit except the packet size, which needs both options below to resolve.
    pub limits: Limits,
    pub max_packet_size_bytes: Option<u32>,
    pub message_size_limit_bytes: Option<u32>,
    pub shards: Option<u16>,
    pub cpus: Option<Vec<usize>>,
    pub spin_us: u32,
    pub log: LogSettings,
    /// Notes for the operator (deprecated options), logged once logging is up.
    pub warnings: Vec<String>,
    log_type_seen: bool,
    log_dest_seen: bool,
}

/// `spin_us` unless the file says otherwise. See `culex.conf.example` for the trade-off.
pub const SPIN_US_DEFAULT: u32 = 0;
/// One second: past that, spinning is just a busy loop.
pub const SPIN_US_MAX: u32 = 1_000_000;

impl FileConfig {
    fn new() -> FileConfig {
        FileConfig {
            listeners: Vec::new(),
            default_port: None,
            default_bind: None,
            default_implied: None,
            allow_anonymous: None,
            retain_available: true,
            limits: Limits::default(),
            max_packet_size_bytes: None,
            message_size_limit_bytes: None,
            shards: None,
            cpus: None,
            spin_us: SPIN_US_DEFAULT,
            log: LogSettings::mosquitto_default(),
            warnings: Vec::new(),
            log_type_seen: false,
            log_dest_seen: false,
        }
    }

    /// True when the file opens any listener itself (Mosquitto 2 then leaves local-only
    /// mode: `-p` is ignored and anonymous clients are refused unless allowed).
    pub fn defines_listeners(&self) -> bool {
        !self.listeners.is_empty() || self.defines_default_listener()
    }

    /// True when the file opens the default listener (`port`, `bind_address`, or a
    /// `max_connections` before any `listener`).
    pub fn defines_default_listener(&self) -> bool {
        self.default_port.is_some() || self.default_bind.is_some() || self.default_implied.is_some()
    }
}

/// Reads a whole file's text. `file_name` only labels errors.
pub fn parse(text: &str, file_name: &str) -> Result<FileConfig, ConfigError> {
    let mut config = FileConfig::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line_number = index + 1;
        let line = raw.trim_end();
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.split(' ').filter(|word| !word.is_empty());
        let Some(key) = words.next() else { continue };
        let args: Vec<&str> = words.take_while(|word| !word.starts_with('#')).collect();
        let line = Line {
            key,
            args: &args,
            number: line_number,
        };
        config
            .apply(&line)
            .map_err(|reason| ConfigError::at(file_name, line_number, reason))?;
    }
    Ok(config)
}

/// One option line, split into words.
struct Line<'a> {
    key: &'a str,
    args: &'a [&'a str],
    number: usize,
}

impl Line<'_> {
    /// The single value of an option that takes exactly one.
    fn value(&self) -> Result<&str, String> {
        match self.args {
            [] => Err(format!("missing value for '{}'", self.key)),
            [value] => Ok(value),
            [_, extra, ..] => Err(format!(
                "'{}' takes one value, found extra '{extra}'",
                self.key
            )),
        }
    }

    fn invalid(&self, value: &str, expected: &str) -> String {
        format!(
            "invalid value '{value}' for '{}': expected {expected}",
            self.key
        )
    }

    fn unsupported(&self) -> String {
        let mut what = self.key.to_string();
        for arg in self.args {
            what.push(' ');
            what.push_str(arg);
        }
        format!("'{what}' is supported by Mosquitto, not yet by Culex")
    }

    fn boolean(&self) -> Result<bool, String> {
        // Mosquitto also reads 1 and 0, so existing files may use them.
        match self.value()? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.invalid(other, "'true' or 'false'")),
        }
    }

    /// A whole number in `min..=max`.
    fn integer(&self, min: i64, max: i64) -> Result<i64, String> {
        let text = self.value()?;
        match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) && !text.starts_with('+') => Ok(n),
            _ => Err(self.invalid(text, &format!("a whole number from {min} to {max}"))),
        }
    }

    fn int_u32(&self, min: u32, max: u32) -> Result<u32, String> {
        let n = self.integer(i64::from(min), i64::from(max))?;
        Ok(u32::try_from(n).expect("integer() kept n within u32 bounds"))
    }

    fn int_u16(&self, min: u16, max: u16) -> Result<u16, String> {
        let n = self.integer(i64::from(min), i64::from(max))?;
        Ok(u16::try_from(n).expect("integer() kept n within u16 bounds"))
    }
}

impl FileConfig {
    /// Decides what kind of option a line holds and applies it.
    fn apply(&mut self, line: &Line<'_>) -> Result<(), String> {
        if self.apply_listener_option(line)? || self.apply_limit(line)? || self.apply_other(line)? {
            return Ok(());
        }
        if let Some((_, accepted)) = MATCHING_OPTIONS.iter().find(|(key, _)| *key == line.key) {
            let value = line.value()?;
            return if accepted.is_empty() || accepted.contains(&value) {
                Ok(())
            } else {
                Err(line.unsupported())
            };
        }
        if UNSUPPORTED_OPTIONS.contains(&line.key)
            || UNSUPPORTED_PREFIXES
                .iter()
                .any(|prefix| line.key.starts_with(prefix))
        {
            return Err(format!(
                "'{}' is supported by Mosquitto, not yet by Culex",
                line.key
            ));
        }
        Err(format!("unknown option '{}'", line.key))
    }

    /// `listener`, `port`, `bind_address`. Returns false for any other key.
    fn apply_listener_option(&mut self, line: &Line<'_>) -> Result<bool, String> {
        match line.key {
            "listener" => {
                let (port_text, bind) = match line.args {
                    [] => return Err("missing value for 'listener'".to_string()),
                    [port] => (*port, None),
                    [port, bind] => (*port, Some(*bind)),
                    [_, _, extra, ..] => {
                        return Err(format!(
                            "'listener' takes a port and an address, found extra '{extra}'"
                        ))
                    }
                };
                if port_text == "0" && bind.is_some() {
                    return Err(line.unsupported()); // Port 0 and a path: a unix socket.
                }
                let port = parse_port(line, port_text)?;
                let ips = match bind {
                    Some(text) => parse_bind_address(line, text)?,
                    None => all_interfaces(),
                };
                for ip in ips {
                    self.add_listener(SocketAddr::new(ip, port), line.number)?;
                }
            }
            "port" => {
                let port = parse_port(line, line.value()?)?;
                self.default_port = Some((port, line.number));
                self.warnings.push(deprecated(line.key));
            }
            "bind_address" => {
                let ips = parse_bind_address(line, line.value()?)?;
                self.default_bind = Some((ips, line.number));
                self.warnings.push(deprecated(line.key));
            }
            "max_connections" => self.apply_max_connections(line)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `max_connections`: a listener option in Mosquitto, one global cap in Culex.
    fn apply_max_connections(&mut self, line: &Line<'_>) -> Result<(), String> {
        let text = line.value()?;
        self.limits.max_connections = match text {
            "-1" => limits::MAX_CONNECTIONS_UNLIMITED,
            _ => line.int_u32(1, u32::MAX).map_err(|_| {
                line.invalid(
                    text,
                    "-1 (unlimited) or a whole number from 1 to 4294967295",
                )
            })?,
        };
        // Mosquitto 2 opens its default listener when this names a limit before any
        // `listener` line (it counts as that listener's setting); so does Culex.
        if text != "-1" && self.listeners.is_empty() && self.default_implied.is_none() {
            self.default_implied = Some(line.number);
            self.warnings.push(format!(
                "line {}: 'max_connections' before any 'listener' opens the default listener (port 1883 on every interface unless 'port' or 'bind_address' say otherwise), as in Mosquitto 2",
                line.number
            ));
        }
        Ok(())
    }

    /// Refuses a second listener on one address: the bind would fail later, less clearly.
    pub(super) fn add_listener(&mut self, addr: SocketAddr, line: usize) -> Result<(), String> {
        if let Some((_, first)) = self.listeners.iter().find(|(known, _)| *known == addr) {
            return Err(format!(
                "listener {addr} is already defined on line {first}"
            ));
        }
        self.listeners.push((addr, line));
        Ok(())
    }

    /// Every option that sets a field of `Limits`. Returns false for any other key.
    fn apply_limit(&mut self, line: &Line<'_>) -> Result<bool, String> {
        let caps = &mut self.limits;
        match line.key {
            "max_inflight_messages" => {
                let n = match line.int_u16(0, u16::MAX)? {
                    0 => limits::MAX_INFLIGHT_MESSAGES_UNLIMITED,
                    n => n,
                };
                caps.max_inflight_messages = n;
                caps.receive_maximum = n;
            }
            "max_queued_messages" => {
                caps.max_queued_messages = match line.int_u32(0, u32::MAX)? {
                    0 => limits::MAX_QUEUED_MESSAGES_UNLIMITED,
                    n => n,
                }
            }
            "max_queued_bytes" => {
                caps.max_queued_bytes = match line.integer(0, i64::MAX)? {
                    0 => limits::MAX_QUEUED_BYTES_UNLIMITED,
                    n => u64::try_from(n).expect("integer() kept n non-negative"),
                }
            }
            "max_packet_size" => {
                self.max_packet_size_bytes = Some(line.int_u32(
                    limits::MAX_PACKET_SIZE_BYTES_MIN,
                    limits::MAX_PACKET_SIZE_BYTES_PROTOCOL,
                )?);
            }
            "message_size_limit" => {
                // Mosquitto's payload ceiling: the remaining length's maximum.
                self.message_size_limit_bytes = Some(line.int_u32(0, 268_435_455)?);
            }
            "max_keepalive" => {
                caps.max_keepalive_s = line.int_u16(limits::MAX_KEEPALIVE_S_MIN, u16::MAX)?
            }
            "persistent_client_expiration" => {
                let text = line.value()?;
                caps.session_expiry_max_s = parse_duration_s(text).map_err(|why| {
                    line.invalid(
                        text,
                        &format!("a number followed by h, d, w, m or y ({why})"),
                    )
                })?;
            }
            "max_topic_alias" => caps.max_topic_alias = line.int_u16(0, u16::MAX)?,
            "max_subscriptions_per_client" => {
                caps.max_subscriptions_per_client = line.int_u32(1, u32::MAX)?
            }
            "max_topic_length" => caps.max_topic_length_bytes = line.int_u16(1, u16::MAX)?,
            "max_topic_levels" => caps.max_topic_levels = line.int_u16(1, u16::MAX)?,
            "connect_timeout_ms" => {
                caps.connect_timeout_ms = line.int_u32(1, limits::CONNECT_TIMEOUT_MS_MAX)?
            }
            "mesh_backlog_messages" => caps.mesh_backlog_messages = line.int_u32(1, u32::MAX)?,
            "max_outgoing_bytes" => caps.max_outgoing_bytes = line.int_u32(1, u32::MAX)?,
            "retained_messages_max" => caps.max_retained_messages = line.int_u32(1, u32::MAX)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Authentication switches, logging, and Culex's placement keys. Returns false for any
    /// other key.
    fn apply_other(&mut self, line: &Line<'_>) -> Result<bool, String> {
        match line.key {
            "allow_anonymous" => self.allow_anonymous = Some(line.boolean()?),
            "retain_available" => self.retain_available = line.boolean()?,
            "log_timestamp" => self.log.timestamp = line.boolean()?,
            "log_type" => {
                let name = line.value()?;
                // The first `log_type` replaces the default set; later ones add to it.
                if !self.log_type_seen {
                    self.log.types = super::logging::LogTypes::NONE;
                    self.log_type_seen = true;
                }
                if !self.log.types.enable(name) {
                    return Err(line.invalid(
                        name,
                        "error, warning, notice, information, debug, subscribe, unsubscribe, websockets, all or none",
                    ));
                }
            }
            "log_dest" => self.apply_log_dest(line)?,
            "shards" => self.shards = Some(line.int_u16(1, u16::MAX)?),
            "spin_us" => self.spin_us = line.int_u32(0, SPIN_US_MAX)?,
            "cpus" => {
                let text = line.value()?;
                let list = CpuList::parse(text)
                    .map_err(|why| line.invalid(text, &format!("a CPU list like 0-3,6 ({why})")))?;
                self.cpus = Some(list.into_vec());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn apply_log_dest(&mut self, line: &Line<'_>) -> Result<(), String> {
        let Some(&dest) = line.args.first() else {
            return Err("missing value for 'log_dest'".to_string());
        };
        if matches!(dest, "syslog" | "topic" | "file" | "dlt") {
            return Err(line.unsupported());
        }
        let dest = line.value()?; // Now that `file PATH` is out of the way: one word.
        if !self.log_dest_seen {
            self.log.dest = LogDest {
                stderr: false,
                stdout: false,
            };
            self.log_dest_seen = true;
        }
        match dest {
            "stderr" => self.log.dest.stderr = true,
            "stdout" => self.log.dest.stdout = true,
            "none" => {
                self.log.dest = LogDest {
                    stderr: false,
                    stdout: false,
                }
            }
            other => return Err(line.invalid(other, "stderr, stdout or none")),
        }
        Ok(())
    }
}

fn deprecated(key: &str) -> String {
    format!("the '{key}' option is deprecated (as in Mosquitto): use 'listener' instead")
}

fn parse_port(line: &Line<'_>, text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port >= 1 && !text.starts_with('+') => Ok(port),
        _ => Err(format!(
            "invalid port '{text}' for '{}': expected 1 to 65535",
            line.key
        )),
    }
}

/// The wildcard addresses a listener without a bind address opens, as Mosquitto.
pub fn all_interfaces() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ]
}

/// The loopback addresses of local-only mode.
pub fn loopback() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
}

/// An IP literal (IPv6 with or without brackets) or `localhost`. Other host names need a
/// resolver, which this pure layer does not call.
fn parse_bind_address(line: &Line<'_>, text: &str) -> Result<Vec<IpAddr>, String> {
    let literal = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if text.eq_ignore_ascii_case("localhost") {
        return Ok(loopback());
    }
    let looks_like_host = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if looks_like_host && !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "'{} {text}': host names other than localhost are supported by Mosquitto, not yet by Culex (give an IP address)",
            line.key
        ));
    }
    Err(format!(
        "invalid address '{text}' for '{}': expected an IPv4 or IPv6 address",
        line.key
    ))
}

/// Mosquitto's duration syntax: a whole number and one unit, `h` (hour), `d` (day), `w`
/// (week), `m` (month, 30 days) or `y` (year, 365 days). Returns seconds.
pub fn parse_duration_s(text: &str) -> Result<u32, String> {
    let Some(unit) = text.chars().last() else {
        return Err("empty".to_string());
    };
    let unit_s: u64 = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err("no unit".to_string()),
    };
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err("no number".to_string());
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_s))
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| "longer than 4294967295 seconds".to_string())
}
