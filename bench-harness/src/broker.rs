//! The brokers under test: where each one's binary is, the config it runs with (kept in
//! `bench-harness/brokers/`), starting it pinned with `taskset`, waiting until it answers an
//! MQTT CONNECT, and stopping it by PID (SIGTERM, then SIGKILL). A broker that is not
//! installed, or that will not start, is skipped with a note instead of failing the suite.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The brokers the harness knows, by the name used on the command line and in results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrokerKind {
    Mosquitto,
    Rumqttd,
    Nats,
    /// Culex with one shard, pinned to the broker core (the like-for-like comparison).
    Culex1,
    /// Culex with a shard on every core (sharing cores with the loadgen on a small machine).
    CulexAll,
}

impl BrokerKind {
    pub const ALL: [BrokerKind; 5] = [
        BrokerKind::Mosquitto,
        BrokerKind::Culex1,
        BrokerKind::CulexAll,
        BrokerKind::Rumqttd,
        BrokerKind::Nats,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Mosquitto => "mosquitto",
            BrokerKind::Rumqttd => "rumqttd",
            BrokerKind::Nats => "nats",
            BrokerKind::Culex1 => "culex-1",
            BrokerKind::CulexAll => "culex-all",
        }
    }

    pub fn parse(name: &str) -> Option<BrokerKind> {
        BrokerKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn config_file(self) -> &'static str {
        match self {
            BrokerKind::Mosquitto => "mosquitto.conf",
            BrokerKind::Rumqttd => "rumqttd.toml",
            BrokerKind::Nats => "nats.conf",
            BrokerKind::Culex1 | BrokerKind::CulexAll => "culex.conf",
        }
    }
}

/// Where the harness finds things.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `bench-harness/brokers/`: the config templates.
    pub configs: PathBuf,
    /// The `culex` binary (built by the caller, release profile).
    pub culex: PathBuf,
    /// `$CULEX_PEERS_DIR` (default `/opt/culex-peers`), where install-peers.sh puts rumqttd.
    pub peers: PathBuf,
}

/// How a broker is placed on the machine.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Cores the broker may run on (`taskset -c`), e.g. "1" or "0-1".
    pub cpus: String,
    /// Shards for Culex (ignored by the others).
    pub shards: usize,
}

/// A broker that can be started: binary found, config written.
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub kind: BrokerKind,
    pub binary: PathBuf,
    pub version: String,
    pub placement: Placement,
    /// A command the broker runs under (e.g. valgrind), between taskset and the binary.
    pub wrapper: Vec<String>,
    template: String,
}

/// Looks for `name` on PATH and in the usual system directories.
fn which(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    extra
        .iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// First line of `binary ARG`'s output (stdout or stderr), for the record.
fn version_of(binary: &Path, arg: &str) -> String {
    let out = Command::new(binary).arg(arg).stdin(Stdio::null()).output();
    match out {
        Ok(o) => {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(_) => "unknown".into(),
    }
}

impl BrokerSpec {
    /// Finds the broker's binary and config; `Err` is the note saying why it is skipped.
    pub fn find(
        kind: BrokerKind,
        paths: &Paths,
        placement: Placement,
    ) -> Result<BrokerSpec, String> {
        let (binary, version_arg) = match kind {
            BrokerKind::Mosquitto => (which("mosquitto", &[]), "-h"),
            BrokerKind::Rumqttd => (which("rumqttd", &[paths.peers.join("bin")]), "--version"),
            BrokerKind::Nats => (which("nats-server", &[]), "--version"),
            BrokerKind::Culex1 | BrokerKind::CulexAll => (
                Some(paths.culex.clone()).filter(|p| p.is_file()),
                "--version",
            ),
        };
        let binary = binary.ok_or_else(|| match kind {
            BrokerKind::Culex1 | BrokerKind::CulexAll => format!(
                "{}: no culex binary at {} (cargo build --release --bin culex)",
                kind.name(),
                paths.culex.display()
            ),
            _ => format!(
                "{}: not installed (scripts/install-peers.sh installs it)",
                kind.name()
            ),
        })?;
        let config = paths.configs.join(kind.config_file());
        let template = std::fs::read_to_string(&config)
            .map_err(|e| format!("{}: cannot read {}: {e}", kind.name(), config.display()))?;
        Ok(BrokerSpec {
            kind,
            version: version_of(&binary, version_arg),
            binary,
            placement,
            wrapper: Vec::new(),
            template,
        })
    }

    /// The config text for a run on `ports` whose scratch directory is `dir`.
    pub fn config_text(&self, ports: Ports, dir: &Path) -> String {
        render(&self.template, ports, dir)
    }

    /// The command line (after `taskset -c CPUS`) for a config at `config`.
    fn args(&self, config: &Path) -> Vec<String> {
        let c = config.display().to_string();
        match self.kind {
            BrokerKind::Mosquitto => vec!["-c".into(), c],
            BrokerKind::Rumqttd => vec!["-c".into(), c, "-q".into()],
            BrokerKind::Nats => vec!["-c".into(), c],
            BrokerKind::Culex1 | BrokerKind::CulexAll => vec![
                "-c".into(),
                c,
                "--shards".into(),
                self.placement.shards.to_string(),
                // Its own pinning too: shard i goes on cpus[i], inside the taskset mask.
                "--cpus".into(),
                self.placement.cpus.clone(),
            ],
        }
    }

    /// Starts the broker pinned to its cores on free loopback ports, logging to `log`, and
    /// waits until it answers an MQTT CONNECT on a socket it owns; a broker that exits or
    /// stays silent for `timeout` is stopped and refused.
    pub fn start(&self, scratch: &Path, log: &Path, timeout: Duration) -> Result<Running, String> {
        let name = self.kind.name();
        std::fs::create_dir_all(scratch)
            .map_err(|e| format!("{name}: cannot create {}: {e}", scratch.display()))?;
        // Fresh ports per run: other people's brokers share this machine's loopback.
        let ports = Ports {
            mqtt: free_port().map_err(|e| format!("{name}: no free port: {e}"))?,
            aux: free_port().map_err(|e| format!("{name}: no free port: {e}"))?,
        };
        let config = scratch.join(self.kind.config_file());
        std::fs::write(&config, self.config_text(ports, scratch))
            .map_err(|e| format!("{name}: cannot write {}: {e}", config.display()))?;
        let log_file = std::fs::File::create(log)
            .map_err(|e| format!("{name}: cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("{name}: log: {e}"))?;
        // taskset execs the broker (and valgrind runs its guest in its own process), so the
        // child's PID is the broker's own.
        let child = Command::new("taskset")
            .arg("-c")
            .arg(&self.placement.cpus)
            .args(&self.wrapper)
            .arg(&self.binary)
            .args(self.args(&config))
            .current_dir(scratch)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                format!(
                    "{name}: cannot start taskset {}: {e}",
                    self.binary.display()
                )
            })?;
        let mut running = Running {
            pid: child.id(),
            port: ports.mqtt,
            port_v5: match self.kind {
                BrokerKind::Rumqttd => ports.aux,
                _ => ports.mqtt,
            },
            // Under valgrind a clean shutdown (which is when callgrind writes) takes far longer.
            stop_grace: if self.wrapper.is_empty() {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(90)
            },
            child: Some(child),
            name,
        };
        let addr = running.addr();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = running.exited() {
                let tail = log_tail(log, 5);
                return Err(format!(
                    "{name}: exited with {status} before accepting: {tail}"
                ));
            }
            // Ours must be the listener: a port taken in the meantime would answer for us.
            if listens_on(running.pid, ports.mqtt)
                && probe(addr, Duration::from_millis(500)).is_ok()
            {
                return Ok(running);
            }
            if Instant::now() > deadline {
                running.stop();
                return Err(format!("{name}: no CONNACK on {addr} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The ports of one broker run: MQTT, and a second one some brokers need for themselves
/// (NATS's client port, rumqttd's MQTT 5 listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub mqtt: u16,
    pub aux: u16,
}

/// A loopback port nobody listens on now (the kernel's pick for port 0, released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether `pid` owns a TCP socket listening on `port` (from /proc/net/tcp{,6} and the
/// process's file descriptors).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        inodes.extend(listening_inodes(&text, port));
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let l = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            l.parse::<u64>().ok()
        })
        .any(|inode| inodes.contains(&inode))
}

/// Inodes of the sockets in LISTEN state (0A) on `port` in a /proc/net/tcp table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            let listening = *f.get(3)? == "0A";
            let ours = u16::from_str_radix(local_port, 16).ok()? == port;
            (listening && ours).then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Fills a config template's `{port}`, `{port_aux}` and `{dir}` (the run's scratch directory).
pub fn render(template: &str, ports: Ports, dir: &Path) -> String {
    template
        .replace("{port_aux}", &ports.aux.to_string())
        .replace("{port}", &ports.mqtt.to_string())
        .replace("{dir}", &dir.display().to_string())
}

/// The last `n` non-empty lines of a log, joined, for an error message.
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// An MQTT 3.1.1 CONNECT, its CONNACK, and a DISCONNECT: "accepting" means answering MQTT, not
/// only a listening socket (NATS opens its port before its MQTT layer is ready).
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let client_id = b"culex-bench-probe";
    let mut connect = vec![0x10, (10 + 2 + client_id.len()) as u8];
    // Protocol name "MQTT", level 4, flags: clean session, keepalive 10 s.
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10]);
    connect.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    connect.extend_from_slice(client_id);
    s.write_all(&connect).map_err(|e| e.to_string())?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).map_err(|e| e.to_string())?;
    // CONNACK, remaining length 2, session-present flags, return code 0 (accepted).
    if connack[0] != 0x20 || connack[1] != 2 || connack[3] != 0 {
        return Err(format!("unexpected CONNACK {connack:02x?}"));
    }
    let _ = s.write_all(&[0xE0, 0]);
    Ok(())
}

/// A started broker; stopped by PID when `stop` is called or when dropped.
#[derive(Debug)]
pub struct Running {
    pub pid: u32,
    pub port: u16,
    /// Where MQTT 5 clients connect: `port`, except for rumqttd, which speaks 3.1.1 and 5 on
    /// separate listeners.
    pub port_v5: u16,
    /// How long SIGTERM has before SIGKILL.
    stop_grace: Duration,
    child: Option<Child>,
    name: &'static str,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, up to `stop_grace` to exit, then SIGKILL. Returns how it ended, for the record.
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had exited on its own ({status})");
        }
        let pid = libc::pid_t::try_from(self.pid).expect("Linux PIDs fit in pid_t");
        // SAFETY: kill() only sends a signal; `pid` is our own child, not yet reaped (try_wait
        // above saw it running), so the PID cannot have been reused by another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + self.stop_grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return format!("stopped by SIGTERM ({status})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        format!(
            "{} ignored SIGTERM for {:?}; killed",
            self.name, self.stop_grace
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in BrokerKind::ALL {
            assert_eq!(BrokerKind::parse(k.name()), Some(k));
        }
        assert_eq!(BrokerKind::parse("hivemq"), None);
    }

    const PORTS: Ports = Ports {
        mqtt: 18833,
        aux: 19833,
    };

    #[test]
    fn templates_fill_port_aux_before_port() {
        let t = "listen {port}\naux {port_aux}\nstore {dir}/js\n";
        let out = render(t, PORTS, Path::new("/tmp/x"));
        assert_eq!(out, "listen 18833\naux 19833\nstore /tmp/x/js\n");
    }

    #[test]
    fn shipped_configs_are_loopback_only() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("brokers");
        for k in BrokerKind::ALL {
            let text = std::fs::read_to_string(dir.join(k.config_file())).expect("shipped");
            let rendered = render(&text, PORTS, Path::new("/tmp"));
            assert!(
                rendered.contains("127.0.0.1"),
                "{} binds loopback",
                k.name()
            );
            assert!(
                !rendered.contains("0.0.0.0"),
                "{} never binds all",
                k.name()
            );
            assert!(
                !rendered.contains("{port") && !rendered.contains("{dir}"),
                "{}: a placeholder was left unfilled",
                k.name()
            );
        }
    }

    #[test]
    fn finds_our_own_listener_and_no_other() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let me = std::process::id();
        assert!(listens_on(me, port), "this test process listens on {port}");
        // PID 1 is not us: it does not own our socket.
        assert!(!listens_on(1, port));
        drop(l);
        assert!(!listens_on(me, port), "closed");
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:49F3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n\
            1: 0100007F:49F3 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n";
        assert_eq!(
            listening_inodes(table, 0x49F3),
            vec![4242],
            "established sockets do not count"
        );
        assert!(listening_inodes(table, 1883).is_empty());
    }

    #[test]
    fn probe_fails_on_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        assert!(probe(addr, Duration::from_millis(200)).is_err());
    }
}
