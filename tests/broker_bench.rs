//! Quick measurements against Mosquitto in the same run (ignored by default: they want a
//! release build and quiet cores). Fan-in: 50 publishers send 64-byte QoS 0 messages to
//! one subscriber at a paced total rate (`FAN_IN_RATE`, default 100,000 msg/s; `0`:
//! as fast as they can write); the broker is pinned to CPU 0, this load to CPU 1;
//! reported are the messages the subscriber received per second and the broker's CPU
//! time (utime + stime from /proc) per message. Hand-off: connections per second when every client's home
//! is another shard than the one that accepted it, against one shard.
//!
//! `taskset -c 1 cargo test --release --test broker_bench -- --ignored --nocapture`
//! (or `CULEX_BIN=path/to/release/culex` with a debug test build: the load side only
//! writes pre-encoded buffers and counts frames).
// Test code: a failed unwrap is a failed test. clippy.toml allows it in #[test] fns only,
// and these helpers sit beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use culex::protocol::{Packet, ProtocolVersion, QoS};

use common::{connect_packet, free_port, publish_packet, RawClient};

const PUBLISHERS: usize = 50;
const PAYLOAD_BYTES: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Messages per write.
const BATCH: usize = 32;

/// Time between one publisher's batches for the total `FAN_IN_RATE`; `None`: unpaced.
fn pace_interval() -> Option<Duration> {
    let rate: u64 = std::env::var("FAN_IN_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    (rate > 0).then(|| Duration::from_secs_f64((PUBLISHERS * BATCH) as f64 / rate as f64))
}

/// A broker process pinned to CPU 0, killed by PID on drop.
struct Pinned(Child);

impl Pinned {
    fn start(program: &str, args: &[&str], port: u16) -> Pinned {
        let child = Command::new("taskset")
            .arg("-c")
            .arg("0")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("taskset runs");
        let deadline = Instant::now() + Duration::from_secs(5);
        // A probe on a port nobody listens on yet may connect to itself (the port is in
        // the ephemeral range): only a connection from another port counts.
        while !TcpStream::connect(("127.0.0.1", port))
            .and_then(|probe| probe.local_addr())
            .is_ok_and(|local| local.port() != port)
        {
            assert!(Instant::now() < deadline, "{program} did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Pinned(child)
    }

    /// utime + stime of the broker (taskset execs it, so the PID is the broker's).
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros(ticks * 1_000_000 / hz)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Counts whole MQTT packets in a byte stream without decoding them.
#[derive(Default)]
struct FrameCounter {
    pending: Vec<u8>,
}

impl FrameCounter {
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        let mut count = 0;
        loop {
            let mut len = 0usize;
            let mut shift = 0;
            let mut i = at + 1;
            let complete = loop {
                let Some(&b) = self.pending.get(i) else {
                    break false;
                };
                len |= usize::from(b & 0x7F) << shift;
                shift += 7;
                i += 1;
                if b & 0x80 == 0 {
                    break true;
                }
            };
            if !complete || i + len > self.pending.len() {
                break;
            }
            at = i + len;
            count += 1;
        }
        self.pending.drain(..at);
        count
    }
}

/// What one fan-in run measured.
struct FanIn {
    delivered_per_s: f64,
    published_per_s: f64,
    cpu_per_delivered: Duration,
}

fn fan_in(broker: &Pinned, addr: SocketAddr) -> FanIn {
    let mut sub = RawClient::connected(addr, V311, "bench-sub");
    sub.subscribe("bench/#", QoS::AtMostOnce);
    let mut sub_stream = sub_stream(sub);
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            let stop = stop.clone();
            let published = published.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = BytesMut::new();
                Packet::Connect(Box::new(connect_packet(
                    V311,
                    &format!("bench-pub-{i}"),
                    true,
                    None,
                )))
                .encode(V311, &mut buf)
                .unwrap();
                s.write_all(&buf).unwrap();
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).unwrap();
                let mut batch = BytesMut::new();
                let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
                let topic = format!("bench/{i}");
                for _ in 0..BATCH {
                    let mut p = publish_packet(&topic, &[], QoS::AtMostOnce, 0, false);
                    p.payload = payload.clone();
                    Packet::Publish(p).encode(V311, &mut batch).unwrap();
                }
                // Open loop: batch k leaves at start + k * interval, late or not.
                let interval = pace_interval();
                let start = Instant::now();
                let mut sent = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(interval) = interval {
                        let due = start + interval * sent;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    if s.write_all(&batch).is_err() {
                        return;
                    }
                    sent += 1;
                    published.fetch_add(BATCH as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let counter = {
        let received = received.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut frames = FrameCounter::default();
            let mut chunk = vec![0u8; 256 * 1024];
            sub_stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                match sub_stream.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        received.fetch_add(frames.feed(&chunk[..n]), Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        })
    };
    std::thread::sleep(WARMUP);
    let sample = || {
        (
            received.load(Ordering::Relaxed),
            published.load(Ordering::Relaxed),
            broker.cpu_time(),
            Instant::now(),
        )
    };
    let (got0, pub0, cpu0, t0) = sample();
    std::thread::sleep(MEASURE);
    let (got1, pub1, cpu1, t1) = sample();
    stop.store(true, Ordering::Relaxed);
    let secs = (t1 - t0).as_secs_f64();
    let delivered = got1 - got0;
    counter.join().unwrap();
    drop(publishers); // they end when the broker goes away or on the stop flag
    FanIn {
        delivered_per_s: delivered as f64 / secs,
        published_per_s: (pub1 - pub0) as f64 / secs,
        cpu_per_delivered: (cpu1 - cpu0) / u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
    }
}

fn report(name: &str, run: &FanIn) {
    println!(
        "  {name:<10} {:>9.0} msg/s delivered ({:>9.0} written by publishers), \
         {:?} broker CPU per delivered message",
        run.delivered_per_s, run.published_per_s, run.cpu_per_delivered
    );
}

/// The subscriber's socket, for raw reading (its CONNACK and SUBACK are already read).
fn sub_stream(sub: RawClient) -> TcpStream {
    sub.into_stream()
}

/// The broker binary: `CULEX_BIN` if set, else the one cargo built with this test.
fn culex_bin() -> String {
    std::env::var("CULEX_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_culex").to_string())
}

#[test]
#[ignore = "benchmark: release build, broker on CPU 0, load on CPU 1"]
fn fan_in_50_to_1_qos0_against_mosquitto() {
    let port = free_port();
    let mosquitto = Pinned::start("/usr/sbin/mosquitto", &["-p", &port.to_string()], port);
    let m = fan_in(&mosquitto, SocketAddr::from(([127, 0, 0, 1], port)));
    drop(mosquitto);

    let port = free_port();
    let culex = Pinned::start(
        &culex_bin(),
        &["-p", &port.to_string(), "--shards", "1", "--cpus", "0"],
        port,
    );
    let c = fan_in(&culex, SocketAddr::from(([127, 0, 0, 1], port)));
    drop(culex);

    println!("fan-in {PUBLISHERS}->1, QoS 0, {PAYLOAD_BYTES} B payloads, broker on CPU 0:");
    report("mosquitto", &m);
    report("culex", &c);
    assert!(c.delivered_per_s > 0.0 && m.delivered_per_s > 0.0);
}

/// Connections per second through CONNECT/CONNACK, each client id's home chosen to be
/// (a) the shard that accepts it (one shard), (b) any of two shards, so about half of the
/// connections are handed off.
#[test]
#[ignore = "benchmark: release build, broker on CPU 0, load on CPU 1"]
fn hand_off_cost_in_connections_per_second() {
    // Eight connectors in parallel, so the broker's CPU, not one client's round trips,
    // sets the rate.
    const CONNECTORS: usize = 8;
    const CONNECTIONS: usize = 500;
    let connect_rate = |broker: &Pinned, port: u16| {
        let cpu_before = broker.cpu_time();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let threads: Vec<_> = (0..CONNECTORS)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..CONNECTIONS {
                        drop(RawClient::connected(
                            addr,
                            V311,
                            &format!("handoff-{t}-{i}"),
                        ));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = CONNECTORS * CONNECTIONS;
        let cpu = (broker.cpu_time() - cpu_before) / u32::try_from(n).unwrap();
        (n as f64 / started.elapsed().as_secs_f64(), cpu)
    };
    let port = free_port();
    let mosquitto = Pinned::start("/usr/sbin/mosquitto", &["-p", &port.to_string()], port);
    let (rate, cpu) = connect_rate(&mosquitto, port);
    println!("mosquitto on CPU 0: {rate:.0} CONNECT/CONNACK per second, {cpu:?} CPU each");
    drop(mosquitto);
    for shards in ["1", "2"] {
        let port = free_port();
        let culex = Pinned::start(
            &culex_bin(),
            &["-p", &port.to_string(), "--shards", shards, "--cpus", "0"],
            port,
        );
        let (rate, cpu) = connect_rate(&culex, port);
        drop(culex);
        println!(
            "culex, {shards} shard(s) on CPU 0: {rate:.0} CONNECT/CONNACK per second, \
             {cpu:?} CPU each"
        );
    }
}
