//! Tables of good and bad configuration files, the no-file defaults and `-p` interplay.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

use super::file::parse_duration_s;
use super::*;

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}
fn v6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ip), port)
}
fn any(port: u16) -> Vec<SocketAddr> {
    vec![v4([0, 0, 0, 0], port), v6(Ipv6Addr::UNSPECIFIED, port)]
}
fn loopback(port: u16) -> Vec<SocketAddr> {
    vec![v4([127, 0, 0, 1], port), v6(Ipv6Addr::LOCALHOST, port)]
}

/// What a file that only opens listeners on all interfaces resolves to.
fn with_listeners(listeners: Vec<SocketAddr>) -> Settings {
    Settings {
        listeners,
        limits: Limits::default(),
        allow_anonymous: false,
        retain_available: true,
        shards: None,
        cpus: None,
        spin_us: super::file::SPIN_US_DEFAULT,
        log: LogSettings::mosquitto_default(),
        config_file: Some(PathBuf::from("t.conf")),
        warnings: vec![],
    }
}

fn load(text: &str) -> Settings {
    Settings::from_str(text, "t.conf").unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn good_files() {
    let deprecated_port =
        "the 'port' option is deprecated (as in Mosquitto): use 'listener' instead".to_string();
    let deprecated_bind =
        "the 'bind_address' option is deprecated (as in Mosquitto): use 'listener' instead"
            .to_string();
    let cases: Vec<(&str, Settings)> = vec![
        ("listener 1883\n", with_listeners(any(1883))),
        // Comments, blank lines, trailing whitespace, CRLF, a comment after the value.
        (
            "# comment\r\n\r\n   \nlistener 1884 127.0.0.1  \t\r\n  allow_anonymous true # yes\n",
            Settings { allow_anonymous: true, ..with_listeners(vec![v4([127, 0, 0, 1], 1884)]) },
        ),
        (
            "listener 1883 ::1\nlistener 8883 [::]\nlistener 1999 localhost\n",
            with_listeners(
                [vec![v6(Ipv6Addr::LOCALHOST, 1883), v6(Ipv6Addr::UNSPECIFIED, 8883)], loopback(1999)]
                    .concat(),
            ),
        ),
        (
            "port 1885\n",
            Settings { warnings: vec![deprecated_port.clone()], ..with_listeners(any(1885)) },
        ),
        (
            "bind_address 10.0.0.1\n",
            Settings { warnings: vec![deprecated_bind.clone()], ..with_listeners(vec![v4([10, 0, 0, 1], 1883)]) },
        ),
        // The default listener comes first, whatever the order of the lines.
        (
            "listener 9000 127.0.0.1\nport 1886\nbind_address 127.0.0.2\n",
            Settings {
                warnings: vec![deprecated_port, deprecated_bind],
                ..with_listeners(vec![v4([127, 0, 0, 2], 1886), v4([127, 0, 0, 1], 9000)])
            },
        ),
        (
            "listener 1883\nallow_anonymous false\nallow_anonymous 1\nretain_available false\nshards 3\ncpus 0-1,4\nspin_us 50\n",
            Settings {
                allow_anonymous: true,
                retain_available: false,
                shards: Some(3),
                cpus: Some(vec![0, 1, 4]),
                spin_us: 50,
                ..with_listeners(any(1883))
            },
        ),
        (
            "listener 1883\nlog_type error\nlog_type subscribe\nlog_dest stdout\nlog_timestamp false\n",
            Settings {
                log: LogSettings {
                    types: LogTypes { error: true, subscribe: true, ..LogTypes::NONE },
                    dest: LogDest { stderr: false, stdout: true },
                    timestamp: false,
                    verbose: false,
                },
                ..with_listeners(any(1883))
            },
        ),
        (
            "listener 1883\nlog_type all\nlog_dest stderr\nlog_dest stdout\n",
            Settings {
                log: LogSettings {
                    types: LogTypes::ALL,
                    dest: LogDest { stderr: true, stdout: true },
                    ..LogSettings::mosquitto_default()
                },
                ..with_listeners(any(1883))
            },
        ),
        (
            "listener 1883\nlog_type none\nlog_dest none\n",
            Settings {
                log: LogSettings {
                    types: LogTypes::NONE,
                    dest: LogDest { stderr: false, stdout: false },
                    ..LogSettings::mosquitto_default()
                },
                ..with_listeners(any(1883))
            },
        ),
        // Harmless Mosquitto settings that describe what Culex does anyway.
        (
            "listener 1883\npersistence false\npersistence_location /var/lib/mosquitto/\nconnection_messages true\nprotocol mqtt\nmax_qos 2\nper_listener_settings false\n",
            with_listeners(any(1883)),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(load(text), want, "{text:?}");
    }
}

#[test]
fn limits_from_files() {
    let text = "listener 1883
max_connections 500
max_inflight_messages 5
max_queued_messages 77
max_queued_bytes 4096
max_packet_size 2000
max_keepalive 60
persistent_client_expiration 2d
max_topic_alias 0
max_subscriptions_per_client 9
max_topic_length 300
max_topic_levels 12
connect_timeout_ms 2500
mesh_backlog_messages 1024
max_outgoing_bytes 65536
retained_messages_max 42
";
    let want = Limits {
        max_connections: 500,
        max_packet_size_bytes: 2000,
        max_inflight_messages: 5,
        receive_maximum: 5,
        max_queued_messages: 77,
        max_queued_bytes: 4096,
        max_subscriptions_per_client: 9,
        max_topic_length_bytes: 300,
        max_topic_levels: 12,
        max_keepalive_s: 60,
        connect_timeout_ms: 2500,
        max_topic_alias: 0,
        session_expiry_max_s: 2 * 86_400,
        mesh_backlog_messages: 1024,
        max_outgoing_bytes: 65_536,
        max_retained_messages: 42,
    };
    assert_eq!(load(text).limits, want);
}

#[test]
fn unlimited_values_become_finite_caps() {
    let limits = load(
        "listener 1883\nmax_connections -1\nmax_inflight_messages 0\nmax_queued_messages 0\nmax_queued_bytes 0\nmessage_size_limit 0\n",
    )
    .limits;
    assert_eq!(limits.max_connections, limits::MAX_CONNECTIONS_UNLIMITED);
    assert_eq!(
        limits.max_inflight_messages,
        limits::MAX_INFLIGHT_MESSAGES_UNLIMITED
    );
    assert_eq!(
        limits.receive_maximum,
        limits::MAX_INFLIGHT_MESSAGES_UNLIMITED
    );
    assert_eq!(
        limits.max_queued_messages,
        limits::MAX_QUEUED_MESSAGES_UNLIMITED
    );
    assert_eq!(limits.max_queued_bytes, limits::MAX_QUEUED_BYTES_UNLIMITED);
    assert_eq!(
        limits.max_packet_size_bytes,
        limits::MAX_PACKET_SIZE_BYTES_PROTOCOL
    );
}

#[test]
fn packet_size_options_combine_stricter_first() {
    let size = |text: &str| {
        load(&format!("listener 1883\n{text}"))
            .limits
            .max_packet_size_bytes
    };
    assert_eq!(size(""), limits::MAX_PACKET_SIZE_BYTES_DEFAULT);
    assert_eq!(size("max_packet_size 20\n"), 20);
    // A payload limit leaves room for the PUBLISH header around the payload.
    assert_eq!(
        size("message_size_limit 100\n"),
        100 + limits::PUBLISH_HEADROOM_BYTES
    );
    assert_eq!(size("message_size_limit 100\nmax_packet_size 5000\n"), 5000);
    assert_eq!(
        size("max_packet_size 500000\nmessage_size_limit 100\n"),
        100 + limits::PUBLISH_HEADROOM_BYTES
    );
    assert_eq!(
        size("message_size_limit 268435455\n"),
        limits::MAX_PACKET_SIZE_BYTES_PROTOCOL
    );
}

#[test]
fn bad_lines_name_file_line_and_reason() {
    let cases = [
        ("max_conections 10", "unknown option 'max_conections'"),
        ("  # indented comment", "unknown option '#'"),
        ("allow_anonymous\ttrue", "unknown option 'allow_anonymous\ttrue'"),
        ("listener", "missing value for 'listener'"),
        ("port", "missing value for 'port'"),
        ("allow_anonymous", "missing value for 'allow_anonymous'"),
        ("log_dest", "missing value for 'log_dest'"),
        ("port 1883 extra", "'port' takes one value, found extra 'extra'"),
        ("listener 1883 ::1 extra", "'listener' takes a port and an address, found extra 'extra'"),
        ("listener 0", "invalid port '0' for 'listener': expected 1 to 65535"),
        ("listener 65536", "invalid port '65536' for 'listener': expected 1 to 65535"),
        ("listener x", "invalid port 'x' for 'listener': expected 1 to 65535"),
        ("listener 1883 300.1.1.1", "invalid address '300.1.1.1' for 'listener': expected an IPv4 or IPv6 address"),
        ("listener 1883 ::g", "invalid address '::g' for 'listener': expected an IPv4 or IPv6 address"),
        ("listener 1883 broker.example", "'listener broker.example': host names other than localhost are supported by Mosquitto, not yet by Culex (give an IP address)"),
        ("listener 0 /run/mqtt.sock", "'listener 0 /run/mqtt.sock' is supported by Mosquitto, not yet by Culex"),
        ("allow_anonymous yes", "invalid value 'yes' for 'allow_anonymous': expected 'true' or 'false'"),
        ("retain_available TRUE", "invalid value 'TRUE' for 'retain_available': expected 'true' or 'false'"),
        ("max_connections 0", "invalid value '0' for 'max_connections': expected -1 (unlimited) or a whole number from 1 to 4294967295"),
        ("max_connections -2", "invalid value '-2' for 'max_connections': expected -1 (unlimited) or a whole number from 1 to 4294967295"),
        ("max_inflight_messages 70000", "invalid value '70000' for 'max_inflight_messages': expected a whole number from 0 to 65535"),
        ("max_queued_messages -1", "invalid value '-1' for 'max_queued_messages': expected a whole number from 0 to 4294967295"),
        ("max_queued_bytes 1k", "invalid value '1k' for 'max_queued_bytes': expected a whole number from 0 to 9223372036854775807"),
        ("max_packet_size 0", "invalid value '0' for 'max_packet_size': expected a whole number from 20 to 268435460"),
        ("max_packet_size 19", "invalid value '19' for 'max_packet_size': expected a whole number from 20 to 268435460"),
        ("message_size_limit 268435456", "invalid value '268435456' for 'message_size_limit': expected a whole number from 0 to 268435455"),
        ("max_keepalive 5", "invalid value '5' for 'max_keepalive': expected a whole number from 10 to 65535"),
        ("max_keepalive +60", "invalid value '+60' for 'max_keepalive': expected a whole number from 10 to 65535"),
        ("max_topic_alias 65536", "invalid value '65536' for 'max_topic_alias': expected a whole number from 0 to 65535"),
        ("persistent_client_expiration 5", "invalid value '5' for 'persistent_client_expiration': expected a number followed by h, d, w, m or y (no unit)"),
        ("persistent_client_expiration d", "invalid value 'd' for 'persistent_client_expiration': expected a number followed by h, d, w, m or y (no number)"),
        ("persistent_client_expiration 200y", "invalid value '200y' for 'persistent_client_expiration': expected a number followed by h, d, w, m or y (longer than 4294967295 seconds)"),
        ("log_type verbose", "invalid value 'verbose' for 'log_type': expected error, warning, notice, information, debug, subscribe, unsubscribe, websockets, all or none"),
        ("log_dest console", "invalid value 'console' for 'log_dest': expected stderr, stdout or none"),
        ("log_dest file /var/log/m.log", "'log_dest file /var/log/m.log' is supported by Mosquitto, not yet by Culex"),
        ("log_dest syslog", "'log_dest syslog' is supported by Mosquitto, not yet by Culex"),
        ("password_file /etc/mosquitto/passwd", "'password_file' is supported by Mosquitto, not yet by Culex"),
        ("acl_file /etc/mosquitto/acl", "'acl_file' is supported by Mosquitto, not yet by Culex"),
        ("certfile /etc/ssl/c.pem", "'certfile' is supported by Mosquitto, not yet by Culex"),
        ("include_dir /etc/mosquitto/conf.d", "'include_dir' is supported by Mosquitto, not yet by Culex"),
        ("connection bridge-01", "'connection' is supported by Mosquitto, not yet by Culex"),
        ("bridge_protocol_version mqttv311", "'bridge_protocol_version' is supported by Mosquitto, not yet by Culex"),
        ("persistence true", "'persistence true' is supported by Mosquitto, not yet by Culex"),
        ("protocol websockets", "'protocol websockets' is supported by Mosquitto, not yet by Culex"),
        ("shards 0", "invalid value '0' for 'shards': expected a whole number from 1 to 65535"),
        ("spin_us 1000001", "invalid value '1000001' for 'spin_us': expected a whole number from 0 to 1000000"),
        ("cpus 0-3,2", "invalid value '0-3,2' for 'cpus': expected a CPU list like 0-3,6 (CPU 2 appears twice (in '2'))"),
        ("connect_timeout_ms 0", "invalid value '0' for 'connect_timeout_ms': expected a whole number from 1 to 3600000"),
        ("max_topic_levels 0", "invalid value '0' for 'max_topic_levels': expected a whole number from 1 to 65535"),
    ];
    for (bad, reason) in cases {
        // The bad line sits on line 3, after a comment and a good line, with a CRLF end.
        let text = format!("# culex\nlistener 1883\n{bad}\r\nlistener 1884\n");
        let err = Settings::from_str(&text, "/etc/x.conf").expect_err(bad);
        assert_eq!(
            err.to_string(),
            format!("/etc/x.conf:3: {reason}"),
            "{bad:?}"
        );
    }
}

#[test]
fn repeated_listener_names_the_first_line() {
    let err = Settings::from_str(
        "listener 1883\n\nlistener 1884\nlistener 1883 ::\n",
        "a.conf",
    )
    .expect_err("[::]:1883 is opened twice");
    assert_eq!(
        err.to_string(),
        "a.conf:4: listener [::]:1883 is already defined on line 1"
    );
}

#[test]
fn no_file_is_local_only_and_anonymous() {
    let settings = Settings::load(&Cli::parse_from(["culex"])).expect("no file, no error");
    assert_eq!(
        settings,
        Settings {
            listeners: loopback(1883),
            allow_anonymous: true,
            config_file: None,
            ..with_listeners(vec![])
        }
    );
}

#[test]
fn port_flags_without_a_file_stay_on_loopback() {
    let settings = Settings::load(&Cli::parse_from([
        "culex", "-p", "1999", "-p", "2000", "-p", "1999",
    ]))
    .expect("valid ports");
    assert_eq!(
        settings.listeners,
        [loopback(1999), loopback(2000)].concat()
    );
    assert!(settings.allow_anonymous);
}

#[test]
fn too_many_port_flags() {
    let mut args = vec!["culex".to_string()];
    for port in 2000..2011 {
        args.extend(["-p".to_string(), port.to_string()]);
    }
    let err = Settings::load(&Cli::parse_from(args)).expect_err("11 ports is too many");
    assert_eq!(
        err.to_string(),
        "command line: -p given 11 times; at most 10 ports may be given on the command line"
    );
}

/// A configuration file on disk for one test, removed when dropped.
struct TempConf(PathBuf);

impl TempConf {
    fn new(name: &str, text: &str) -> TempConf {
        let path =
            std::env::temp_dir().join(format!("culex-config-{}-{name}.conf", std::process::id()));
        std::fs::write(&path, text).expect("temp dir is writable");
        TempConf(path)
    }
    fn load(&self, extra: &[&str]) -> Result<Settings, ConfigError> {
        let path = self.0.to_str().expect("temp path is UTF-8");
        let args = ["culex", "-c", path]
            .into_iter()
            .chain(extra.iter().copied());
        Settings::load(&Cli::parse_from(args))
    }
}

impl Drop for TempConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn port_flags_with_a_file() {
    // The file opens a listener: -p is ignored, as Mosquitto 2 does, with a warning.
    let with_listener = TempConf::new("listener", "listener 1884 127.0.0.1\n");
    let settings = with_listener.load(&["-p", "1999"]).expect("valid file");
    assert_eq!(settings.listeners, vec![v4([127, 0, 0, 1], 1884)]);
    assert!(!settings.allow_anonymous);
    assert_eq!(
        settings.config_file.as_deref(),
        Some(with_listener.0.as_path())
    );
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.starts_with("-p ignored")),
        "{:?}",
        settings.warnings
    );

    // The file opens none: local-only mode on the -p ports, anonymous allowed.
    let without = TempConf::new("nolistener", "log_type all\nmax_keepalive 30\n");
    let settings = without.load(&["-p", "1999"]).expect("valid file");
    assert_eq!(settings.listeners, loopback(1999));
    assert!(settings.allow_anonymous);
    assert_eq!(settings.limits.max_keepalive_s, 30);
    let settings = without.load(&[]).expect("valid file");
    assert_eq!(settings.listeners, loopback(1883));

    // ...unless the file refuses anonymous clients itself.
    let refusing = TempConf::new("refusing", "allow_anonymous false\n");
    assert!(
        !refusing
            .load(&["-p", "1999"])
            .expect("valid file")
            .allow_anonymous
    );
}

#[test]
fn flags_override_the_file() {
    let conf = TempConf::new(
        "override",
        "listener 1883\nshards 2\ncpus 0-1\nlog_type error\nlog_dest stdout\n",
    );
    let settings = conf
        .load(&["--shards", "4", "--cpus", "2,3", "-v"])
        .expect("valid");
    assert_eq!(settings.shards, Some(4));
    assert_eq!(settings.cpus, Some(vec![2, 3]));
    assert_eq!(settings.log.types, LogTypes::ALL);
    assert_eq!(
        settings.log.dest,
        LogDest {
            stderr: true,
            stdout: false
        }
    );
    assert!(settings.log.verbose);
    let settings = conf.load(&[]).expect("valid");
    assert_eq!(
        (settings.shards, settings.cpus),
        (Some(2), Some(vec![0, 1]))
    );
}

#[test]
fn unreadable_file_names_the_file() {
    let path =
        std::env::temp_dir().join(format!("culex-config-{}-missing.conf", std::process::id()));
    let err = Settings::load(&Cli::parse_from([
        "culex",
        "-c",
        path.to_str().expect("UTF-8"),
    ]))
    .expect_err("file does not exist");
    assert_eq!(err.line, None);
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read the configuration file: ",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn durations() {
    let good = [
        ("1h", 3600),
        ("2d", 2 * 86_400),
        ("1w", 7 * 86_400),
        ("1m", 30 * 86_400),
        ("1y", 365 * 86_400),
        ("0h", 0),
        ("14d", 14 * 86_400),
        ("136y", 136 * 365 * 86_400),
    ];
    for (text, seconds) in good {
        assert_eq!(parse_duration_s(text), Ok(seconds), "{text}");
    }
    for text in [
        "",
        "h",
        "5",
        "5s",
        "-1d",
        "1.5d",
        "1 d",
        "1hh",
        "137y",
        "99999999999999999999d",
    ] {
        assert!(parse_duration_s(text).is_err(), "{text:?} must be refused");
    }
}

#[test]
fn log_type_directives() {
    assert_eq!(
        LogTypes::default().filter_directives(),
        "info,culex_subscribe=off,culex_unsubscribe=off,culex_websockets=off"
    );
    assert_eq!(
        LogTypes::ALL.filter_directives(),
        "debug,culex_subscribe=info,culex_unsubscribe=info,culex_websockets=info"
    );
    let errors_and_subscribes = LogTypes {
        error: true,
        subscribe: true,
        ..LogTypes::NONE
    };
    assert_eq!(
        errors_and_subscribes.filter_directives(),
        "error,culex_subscribe=info,culex_unsubscribe=off,culex_websockets=off"
    );
    assert_eq!(
        LogTypes::NONE.filter_directives(),
        "off,culex_subscribe=off,culex_unsubscribe=off,culex_websockets=off"
    );
}

#[test]
fn every_option_in_the_example_file_is_accepted() {
    let example = include_str!("../../culex.conf.example");
    // Uncomment each example option line ('#name value'), keep prose comments ('# ...').
    let options: Vec<&str> = example
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
        .collect();
    assert!(options.len() >= 40, "only {} options found", options.len());
    // `listener 1883` twice would repeat a listener, so each line is checked on its own.
    for option in &options {
        let text = format!("listener 9999 127.0.0.9\n{option}\n");
        Settings::from_str(&text, "culex.conf.example")
            .unwrap_or_else(|err| panic!("example option {option:?}: {err}"));
    }
    // And the example as shipped (all commented) is local-only mode.
    assert_eq!(load(example).listeners, loopback(1883));
}

/// Mosquitto 2.0.11, checked by running it: a `max_connections` limit before any
/// `listener` line opens the default listener (1883, every interface); -1 does not, nor
/// does one after a `listener`.
#[test]
fn max_connections_before_a_listener_opens_the_default_listener() {
    let settings = load("max_connections 100\n");
    assert_eq!(settings.listeners, any(1883));
    assert!(!settings.allow_anonymous);
    assert_eq!(settings.limits.max_connections, 100);
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);

    let settings = load("max_connections 100\nlistener 1995 127.0.0.1\n");
    assert_eq!(
        settings.listeners,
        [any(1883), vec![v4([127, 0, 0, 1], 1995)]].concat()
    );

    let settings = load("max_connections 100\nport 1990\n");
    assert_eq!(settings.listeners, any(1990));

    let settings = load("listener 1995 127.0.0.1\nmax_connections 5\n");
    assert_eq!(settings.listeners, vec![v4([127, 0, 0, 1], 1995)]);

    let settings = load("max_connections -1\n");
    assert_eq!(settings.listeners, loopback(1883));
    assert!(settings.allow_anonymous);
}
