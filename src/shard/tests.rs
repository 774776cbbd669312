//! The runtime driven by a scripted line-based core (no MQTT): reads, batched writes,
//! close, hand-off of a socket to another shard, mesh messages, `max_connections`, stop,
//! and the memory an idle connection costs.
//!
//! The script, one command per line:
//! `HOME n` (first line) — hand the connection to shard n, or answer `home n` if here;
//! `SEND n text` — mesh `text` to shard n, which writes `from s: text` to its clients;
//! `BYE` — answer `bye` and close;
//! `MORE n` — answer `more 1` … `more n`, each written only when the runtime takes the
//! previous one (as the broker refills a subscriber's buffer from its queue in
//! `take_outgoing`); anything else is echoed.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::*;
use crate::broker::{ConnId, ShardId};

#[derive(Default)]
struct ConnState {
    received: BytesMut,
    out: BytesMut,
    lines_seen: u32,
    closing: bool,
    /// `MORE`: (next number to write, last number).
    more: Option<(u32, u32)>,
}

struct ScriptCore {
    shard: ShardId,
    conns: HashMap<ConnId, ConnState>,
    outputs: VecDeque<CoreOutput<String>>,
}

impl ScriptCore {
    fn new(shard: ShardId) -> Self {
        ScriptCore {
            shard,
            conns: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    fn write(&mut self, conn: ConnId, text: &str) {
        let state = self
            .conns
            .get_mut(&conn)
            .expect("writes go to open connections");
        if state.out.is_empty() {
            self.outputs.push_back(CoreOutput::Writable { conn });
        }
        state.out.put_slice(text.as_bytes());
    }

    fn line(&mut self, conn: ConnId, line: &str) -> bool {
        let first = {
            let state = self.conns.get_mut(&conn).expect("open");
            state.lines_seen += 1;
            state.lines_seen == 1
        };
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        match words.as_slice() {
            ["HOME", n] if first => {
                let to = ShardId(n.parse().expect("script: HOME takes a shard number"));
                if to != self.shard {
                    let state = self.conns.remove(&conn).expect("open");
                    self.outputs.push_back(CoreOutput::HandOff {
                        conn,
                        to,
                        received: state.received,
                    });
                    return false;
                }
                let text = format!("home {}\n", self.shard.0);
                self.write(conn, &text);
            }
            ["SEND", n, text] => {
                let to = ShardId(n.parse().expect("script: SEND takes a shard number"));
                self.outputs.push_back(CoreOutput::Mesh {
                    to,
                    msg: (*text).to_string(),
                });
            }
            ["MORE", n] => {
                let last: u32 = n.parse().expect("script: MORE takes a count");
                self.conns.get_mut(&conn).expect("open").more = Some((2, last));
                self.write(conn, "more 1\n");
            }
            ["BYE"] => {
                self.write(conn, "bye\n");
                self.outputs.push_back(CoreOutput::Close { conn });
                // Forgotten once the runtime took what is pending (it does at `Close`).
                self.conns.get_mut(&conn).expect("open").closing = true;
                return false;
            }
            _ => {
                let text = format!("{line}\n");
                self.write(conn, &text);
            }
        }
        true
    }
}

impl Core for ScriptCore {
    type Msg = String;

    fn connection_opened(&mut self, conn: ConnId, _now: Instant) {
        assert!(self.conns.insert(conn, ConnState::default()).is_none());
    }

    fn received(&mut self, conn: ConnId, bytes: &[u8], _now: Instant) {
        let Some(state) = self.conns.get_mut(&conn) else {
            panic!("bytes for a connection the core closed or handed off");
        };
        state.received.put_slice(bytes);
        loop {
            let Some(state) = self.conns.get_mut(&conn) else {
                return;
            };
            let Some(end) = state.received.iter().position(|&b| b == b'\n') else {
                return;
            };
            // Keep the unconsumed bytes of a connection that may still be handed off.
            let handing = state.lines_seen == 0;
            let line_bytes = if handing {
                state.received[..end].to_vec()
            } else {
                state.received.split_to(end + 1)[..end].to_vec()
            };
            let line = String::from_utf8(line_bytes).expect("script is text");
            if !self.line(conn, &line) {
                return;
            }
            if handing {
                if let Some(state) = self.conns.get_mut(&conn) {
                    let _ = state.received.split_to(end + 1);
                }
            }
        }
    }

    fn connection_lost(&mut self, conn: ConnId, _now: Instant) {
        assert!(
            self.conns.remove(&conn).is_some(),
            "lost an unknown connection"
        );
    }

    fn mesh_received(&mut self, from: ShardId, msg: String, _now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let text = format!("from {}: {msg}\n", from.0);
            self.write(conn, &text);
        }
    }

    fn tick(&mut self, _now: Instant) {}

    fn shutdown(&mut self, _now: Instant) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, s)| !s.closing)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.write(conn, "stopping\n");
        }
    }

    fn poll_output(&mut self) -> Option<CoreOutput<String>> {
        self.outputs.pop_front()
    }

    fn take_outgoing(&mut self, conn: ConnId) -> BytesMut {
        match self.conns.get(&conn).map(|s| s.closing) {
            Some(true) => self.conns.remove(&conn).map(|s| s.out).unwrap_or_default(),
            Some(false) => {
                let state = self.conns.get_mut(&conn).expect("known");
                let out = state.out.split();
                // Room again: the next part is written now, and the runtime is told so
                // through an output it must carry out without waiting for other events.
                if let Some((next, last)) = state.more {
                    state.more = (next < last).then_some((next + 1, last));
                    let text = format!("more {next}\n");
                    self.write(conn, &text);
                }
                out
            }
            None => panic!("take_outgoing for {conn:?}, which the core does not know"),
        }
    }

    fn sheddable(_msg: &String) -> bool {
        false
    }
}

fn config(shards: u16, max_connections: u32) -> RuntimeConfig {
    RuntimeConfig {
        listeners: vec!["127.0.0.1:0".parse().unwrap()],
        shards: Some(shards),
        cpus: None,
        max_connections,
        mesh_backlog_messages: 1000,
        spin: Duration::ZERO,
        stop: Default::default(),
    }
}

fn broker(shards: u16, max_connections: u32) -> (Running, SocketAddr) {
    let running =
        start(config(shards, max_connections), |id, _| ScriptCore::new(id)).expect("broker starts");
    let addr = running.local_addrs()[0];
    (running, addr)
}

/// A line client with no heap read buffer, so the idle-memory test measures the broker.
struct Client {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            stream,
            rest: Vec::new(),
        }
    }

    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }

    fn try_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.rest.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.rest.drain(..=end).collect();
                return Ok(String::from_utf8(line).unwrap());
            }
            let mut buf = [0u8; 256];
            let n = match self.stream.read(&mut buf) {
                // A blocked read may see a signal meant for this process.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if n == 0 {
                return Ok(String::from_utf8(std::mem::take(&mut self.rest)).unwrap());
            }
            self.rest.extend_from_slice(&buf[..n]);
        }
    }

    fn line(&mut self) -> String {
        self.try_line().unwrap()
    }

    /// The broker closed the connection: end of stream, or a reset when it closed with
    /// our bytes unread (as a refused connection is).
    fn at_eof(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(0) => self.rest.is_empty(),
            Ok(_) => panic!("unexpected bytes before the close: {rest:?}"),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn echoes_and_closes_after_flushing() {
    let (running, addr) = broker(1, 100);
    let mut c = Client::connect(addr);
    c.send("hello\nworld\n");
    assert_eq!(c.line(), "hello\n");
    assert_eq!(c.line(), "world\n");
    // `bye` is written before the close; the peer reads it, then end of stream.
    c.send("BYE\n");
    assert_eq!(c.line(), "bye\n");
    assert!(c.at_eof());
    running.stop();
    running.wait().unwrap();
}

/// A shard that spins before it parks (`spin_us`) serves, sleeps between bursts, and
/// still stops when asked: the stop flag is seen while spinning, not only after a wake-up.
#[test]
fn spinning_shards_serve_and_stop() {
    let running = start(
        RuntimeConfig {
            spin: Duration::from_millis(1),
            ..config(2, 100)
        },
        |id, _| ScriptCore::new(id),
    )
    .expect("broker starts");
    let addr = running.local_addrs()[0];
    for _ in 0..3 {
        let mut c = Client::connect(addr);
        c.send("ping\n");
        assert_eq!(c.line(), "ping\n");
        // Longer than the spin, so the shard parks between clients.
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    running.stop();
    running.wait().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );
}

/// Outputs the core produces while the runtime takes a connection's bytes (a queue
/// refilling the buffer) are carried out at once, not left until some other event or the
/// next tick pumps the core: 200 parts would take 20 s at one per 100 ms tick.
#[test]
fn outputs_made_while_taking_bytes_are_carried_out_at_once() {
    let (running, addr) = broker(1, 100);
    let mut c = Client::connect(addr);
    let started = Instant::now();
    c.send("MORE 200\n");
    for i in 1..=200 {
        assert_eq!(c.line(), format!("more {i}\n"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "200 parts took {:?}: the runtime waited for ticks",
        started.elapsed()
    );
    running.stop();
    running.wait().unwrap();
}

#[test]
fn hand_off_moves_the_socket_and_its_bytes_to_the_home_shard() {
    let (running, addr) = broker(2, 100);
    for i in 0..20 {
        let home = i % 2;
        let mut c = Client::connect(addr);
        // The line after HOME travels with the socket: the home shard echoes it.
        c.send(&format!("HOME {home}\nfirst {i}\n"));
        assert_eq!(c.line(), format!("home {home}\n"));
        assert_eq!(c.line(), format!("first {i}\n"));
        c.send("after\n");
        assert_eq!(c.line(), "after\n");
    }
    running.stop();
    running.wait().unwrap();
}

#[test]
fn mesh_carries_messages_between_shards() {
    let (running, addr) = broker(4, 100);
    let mut on = Vec::new();
    for home in 0..4 {
        let mut c = Client::connect(addr);
        c.send(&format!("HOME {home}\n"));
        assert_eq!(c.line(), format!("home {home}\n"));
        on.push(c);
    }
    on[0].send("SEND 3 over\n");
    assert_eq!(on[3].line(), "from 0: over\n");
    on[3].send("SEND 1 back\n");
    assert_eq!(on[1].line(), "from 3: back\n");
    running.stop();
    running.wait().unwrap();
}

#[test]
fn max_connections_refuses_beyond_the_limit_and_frees_on_close() {
    let (running, addr) = broker(2, 2);
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    a.send("a\n");
    b.send("b\n");
    assert_eq!(a.line(), "a\n");
    assert_eq!(b.line(), "b\n");
    let mut c = Client::connect(addr);
    // Clients speak first (the listener defers accepting a silent one for a second).
    c.send("c\n");
    assert!(c.at_eof(), "the third connection is closed unanswered");
    a.send("BYE\n");
    assert_eq!(a.line(), "bye\n");
    assert!(a.at_eof());
    // The count drops once the closed connection's task ended (after its linger).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut d = Client::connect(addr);
        let echoed = d.stream.write_all(b"d\n").is_ok() && d.try_line().is_ok_and(|l| l == "d\n");
        if echoed {
            break;
        }
        assert!(Instant::now() < deadline, "a slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    running.stop();
    running.wait().unwrap();
}

#[test]
fn stop_lets_the_core_say_goodbye_then_closes_every_connection() {
    let (running, addr) = broker(2, 100);
    let mut clients: Vec<Client> = (0..2)
        .map(|home| {
            let mut c = Client::connect(addr);
            c.send(&format!("HOME {home}\n"));
            assert_eq!(c.line(), format!("home {home}\n"));
            c
        })
        .collect();
    let started = Instant::now();
    running.stop();
    for c in &mut clients {
        assert_eq!(c.line(), "stopping\n");
        assert!(c.at_eof());
    }
    running.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn more_shards_than_cores_run() {
    let (running, addr) = broker(6, 100);
    assert_eq!(running.shard_count(), 6);
    for home in 0..6 {
        let mut c = Client::connect(addr);
        c.send(&format!("HOME {home}\nx\n"));
        assert_eq!(c.line(), format!("home {home}\n"));
        assert_eq!(c.line(), "x\n");
    }
    running.stop();
    running.wait().unwrap();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Opens 2,000 connections that each exchanged one line and then sit idle, and measures
/// what they cost the process (both ends live here; the client's std sockets hold no
/// user-space memory, so the growth is the broker's: task, stream, signal, core state).
#[test]
fn idle_connections_are_cheap() {
    const N: usize = 2000;
    let (running, addr) = broker(1, 10_000);
    let mut warm = Client::connect(addr);
    warm.send("warm\n");
    assert_eq!(warm.line(), "warm\n");
    let before = rss_bytes();
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = Client::connect(addr);
        c.send(&format!("{i}\n"));
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.line(), format!("{i}\n"));
    }
    let per_conn = (rss_bytes().saturating_sub(before)) / N as u64;
    println!("RSS per idle connection: {per_conn} bytes");
    assert!(per_conn < 8 * 1024, "{per_conn} bytes per idle connection");
    drop(clients);
    running.stop();
    running.wait().unwrap();
}

/// Every connection, idle ones included, holds one task (this future after the
/// executor's 32 bytes of counts and header, plus a 16-byte entry in its table of live
/// tasks), one signal (in an `Rc`) and one readiness slot: a field added here costs
/// 19,500 × its size at the idle target, and more where it pushes a block into
/// mimalloc's next size class (112 → 128 bytes for the task, 56 → 64 for the signal).
#[test]
fn per_connection_runtime_state_stays_small() {
    fn output_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    let serve = output_size(connection::serve::<ScriptCore, TcpTransport> as fn(_, _, _, _) -> _);
    assert!(serve <= 80, "connection task state: {serve} bytes");
    let signal = std::mem::size_of::<runtime::ConnSignal>();
    assert!(signal <= 40, "ConnSignal: {signal} bytes");
}
