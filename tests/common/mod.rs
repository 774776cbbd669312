//! What the broker's integration tests share: a `culex` process of their own on an
//! ephemeral loopback port, killed by PID when dropped (also on panic); a raw-packet
//! client built on `culex::protocol` for exact reason codes and malformed input; and
//! client ids chosen to live on a given shard.
// Test code: a failed unwrap is a failed test. clippy.toml allows it in #[test] fns only,
// and these helpers sit beside them.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use culex::protocol::{
    decode, ClientId, ConnAck, Connect, ConnectProperties, Disconnect, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName, Will,
};
use culex::router::{home_shard, ShardId};

/// How long a test waits for any one thing before failing rather than hanging.
pub const WAIT: Duration = Duration::from_secs(5);
/// Starts tried before a test gives up (see `Broker::start_with`).
const START_ATTEMPTS: u32 = 5;

/// A `culex` process on 127.0.0.1 and its own port.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub shards: u16,
    config: Option<PathBuf>,
}

impl Broker {
    /// Starts `culex --shards N` listening on a free port (local-only mode).
    pub fn start(shards: u16) -> Broker {
        Broker::start_with(shards, None)
    }

    /// Starts with a mosquitto.conf whose text is `config` plus a `listener` line for the
    /// chosen port.
    pub fn with_config(shards: u16, config: &str) -> Broker {
        Broker::start_with(shards, Some(config))
    }

    fn start_with(shards: u16, config: Option<&str>) -> Broker {
        // `free_port` releases the port before culex binds it, so another socket (often a
        // client's ephemeral port) can take it meanwhile; culex then exits with "address in
        // use". Such a start is retried on a fresh port.
        for _ in 0..START_ATTEMPTS {
            let mut broker = Broker::spawn(shards, config);
            if broker.wait_listening() {
                return broker;
            }
        }
        panic!("culex did not start listening in {START_ATTEMPTS} attempts");
    }

    fn spawn(shards: u16, config: Option<&str>) -> Broker {
        let port = free_port();
        // CULEX_BIN runs another build (a release binary, for measurements).
        let program =
            std::env::var("CULEX_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_culex").to_string());
        let mut cmd = Command::new(program);
        cmd.arg("--shards").arg(shards.to_string());
        // CULEX_TEST_VERBOSE=1 shows the broker's debug log; otherwise it stays quiet.
        let verbose = std::env::var_os("CULEX_TEST_VERBOSE").is_some();
        if verbose {
            cmd.arg("-v");
        }
        let config_path = config.map(|text| {
            let path =
                std::env::temp_dir().join(format!("culex-test-{}-{port}.conf", std::process::id()));
            let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{text}\n");
            std::fs::write(&path, text).expect("temp dir is writable");
            cmd.arg("-c").arg(&path);
            path
        });
        if config.is_none() {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let child = cmd.spawn().expect("the culex binary runs");
        Broker {
            child: Some(child),
            port,
            shards,
            config: config_path,
        }
    }

    /// Waits until the broker accepts; false if it exited first (its port was taken).
    ///
    /// Ready means several probes in a row were accepted and the broker is still running
    /// after them. One accepted probe was not enough: about one full test run in four, the
    /// first client right after it was refused (always in the test that starts first
    /// among brokers started at once; not understood yet, see results/notes.md).
    fn wait_listening(&mut self) -> bool {
        const PROBES_IN_A_ROW: u32 = 3;
        let deadline = Instant::now() + WAIT;
        let mut accepted = 0;
        while accepted < PROBES_IN_A_ROW {
            if Broker::accepts(self.addr()) {
                accepted += 1;
            } else {
                accepted = 0;
            }
            let child = self.child.as_mut().expect("just spawned");
            if child.try_wait().expect("the child can be polled").is_some() {
                self.child = None;
                return false;
            }
            assert!(Instant::now() < deadline, "culex did not start listening");
            std::thread::sleep(Duration::from_millis(if accepted > 0 { 5 } else { 20 }));
        }
        true
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether something listens at `addr`. A connect to a port nobody listens on yet can
    /// succeed by connecting to itself: the port is in the ephemeral range, and the kernel
    /// may pick that very port as the probe's own (TCP simultaneous open). Such a socket
    /// also holds the port, so the broker's bind fails. Seen as "connection refused" right
    /// after a start that looked successful.
    fn accepts(addr: SocketAddr) -> bool {
        match TcpStream::connect(addr) {
            Ok(probe) => probe.local_addr().ok() != Some(addr),
            Err(_) => false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The broker's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the broker is running");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit pid_t");
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("waitpid works") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("culex did not exit within {WAIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A client id whose home is `shard`, starting with `prefix`.
    pub fn client_on(&self, prefix: &str, shard: u16) -> String {
        client_on(prefix, shard, self.shards)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(path) = self.config.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A port nobody listens on now (the kernel's choice for port 0, released), and never
/// one this test process handed out before: the kernel may offer a released port again,
/// and two brokers of parallel tests would then both bind it (SO_REUSEPORT lets them)
/// and share each other's clients.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("loopback is available")
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// The first id `prefix-N` whose home shard is `shard` among `shard_count`.
pub fn client_on(prefix: &str, shard: u16, shard_count: u16) -> String {
    (0..10_000)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| home_shard(id, shard_count) == ShardId(shard))
        .expect("some id among 10,000 hashes to every shard")
}

/// An MQTT client that speaks packets exactly as told, for reason codes and abuse.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

impl RawClient {
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).expect("broker listens");
        stream
            .set_read_timeout(Some(WAIT))
            .expect("timeouts are settable");
        stream.set_nodelay(true).expect("nodelay is settable");
        RawClient {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Opens and sends CONNECT; returns the CONNACK.
    pub fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
    ) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(addr, version);
        c.send(&Packet::Connect(Box::new(connect_packet(
            version, client_id, true, None,
        ))));
        let ack = c.connack();
        (c, ack)
    }

    /// Connects and asserts success.
    pub fn connected(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
        let (c, ack) = RawClient::connect(addr, version, client_id);
        assert_eq!(
            ack.reason_code,
            ReasonCode::Success,
            "CONNACK for {client_id}"
        );
        c
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet
            .encode(self.version, &mut out)
            .expect("test packets encode");
        self.send_raw(&out);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("broker reads");
    }

    /// Writes, ignoring a broker that already closed (abuse tests).
    pub fn send_raw_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next packet, or `None` when the broker closed the connection.
    pub fn try_recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, Some(self.version), u32::MAX)
                .expect("the broker sends well-formed packets")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no packet from the broker within {WAIT:?}: {e}"),
            }
        }
    }

    pub fn recv(&mut self) -> Packet {
        self.try_recv().expect("the broker closed the connection")
    }

    /// Whether anything arrives within `wait` (`None` if nothing; panics on close).
    pub fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        self.stream.set_read_timeout(Some(wait)).expect("settable");
        let got = loop {
            if let Ok(Some(p)) = decode(&mut self.buf, Some(self.version), u32::MAX) {
                break Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        self.stream.set_read_timeout(Some(WAIT)).expect("settable");
        got
    }

    pub fn connack(&mut self) -> ConnAck {
        match self.recv() {
            Packet::ConnAck(a) => *a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Reads until the broker closes; returns the DISCONNECT it sent first, if any.
    pub fn expect_closed(&mut self) -> Option<Disconnect> {
        let mut disconnect = None;
        while let Some(p) = self.try_recv() {
            match p {
                Packet::Disconnect(d) => disconnect = Some(d),
                other => panic!("expected the connection to close, got {other:?}"),
            }
        }
        disconnect
    }

    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![(
                TopicFilter::parse(filter.to_string()).expect("test filters are valid"),
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            )],
        }));
        match self.recv() {
            Packet::SubAck(a) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, id: u16, retain: bool) {
        self.send(&Packet::Publish(publish_packet(
            topic, payload, qos, id, retain,
        )));
    }

    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// The socket, for tests that read raw bytes once the handshake is done.
    pub fn into_stream(self) -> TcpStream {
        assert!(self.buf.is_empty(), "no packet left unread");
        self.stream
    }

    /// Drops the TCP connection without DISCONNECT (so the will is published).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("test packet ids are non-zero")
}

pub fn connect_packet(
    version: ProtocolVersion,
    client_id: &str,
    clean_start: bool,
    will: Option<Will>,
) -> Connect {
    Connect {
        protocol_version: version,
        clean_start,
        keep_alive_s: 60,
        client_id: ClientId::new(client_id.to_string()).expect("test ids are valid"),
        will,
        user_name: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, id: u16, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::parse(topic.to_string()).expect("test topics are valid"),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        properties: Default::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

pub fn will(topic: &str, payload: &[u8]) -> Will {
    Will {
        topic: TopicName::parse(topic.to_string()).expect("test topics are valid"),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// The PUBLISH a subscriber received, or a panic naming what came instead.
pub fn expect_publish(p: Packet) -> Publish {
    match p {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Runs an external client (mosquitto_pub/sub), killed if it outlives `WAIT`.
pub fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("waitpid works").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output is collected")
}

/// A child process (a long-running mosquitto_sub) killed by PID when dropped.
pub struct Tool(pub Option<Child>);

impl Tool {
    pub fn spawn(program: &str, args: &[&str]) -> Tool {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        Tool(Some(child))
    }

    /// Waits (bounded) for it to exit by itself, and returns its stdout.
    pub fn output(mut self) -> String {
        let mut child = self.0.take().expect("running");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("waitpid works").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().expect("output is collected");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
