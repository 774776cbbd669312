//! The broker's life as a process: SIGTERM publishes the wills of connected clients
//! (MQTT 5 rules: not for a client that disconnected normally), tells MQTT 5 clients the
//! server is shutting down, and exits 0; an idle connection costs a few KB of RSS.
// Test code: a failed unwrap is a failed test. clippy.toml allows it in #[test] fns only,
// and these helpers sit beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use culex::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

use common::{connect_packet, expect_publish, will, Broker, RawClient};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn connect_with_will(
    broker: &Broker,
    version: ProtocolVersion,
    id: &str,
    topic: &str,
) -> RawClient {
    let mut c = RawClient::open(broker.addr(), version);
    c.send(&Packet::Connect(Box::new(connect_packet(
        version,
        id,
        true,
        Some(will(topic, id.as_bytes())),
    ))));
    assert_eq!(c.connack().reason_code, ReasonCode::Success);
    c
}

/// Collects what a watcher receives until the broker closes it: will topics, and the
/// DISCONNECT reason if one came.
fn drain_watcher(watcher: &mut RawClient) -> (Vec<String>, Option<ReasonCode>) {
    let mut wills = Vec::new();
    let mut disconnect = None;
    while let Some(p) = watcher.try_recv() {
        match p {
            Packet::Publish(_) => wills.push(expect_publish(p).topic.as_str().to_string()),
            Packet::Disconnect(d) => disconnect = Some(d.reason_code),
            other => panic!("unexpected {other:?}"),
        }
    }
    wills.sort();
    (wills, disconnect)
}

/// Everyone on one shard (of three): the dying clients' wills (MQTT 5 and 3.1.1) reach the
/// watcher before its DISCONNECT 0x8B; the client that disconnected normally leaves no
/// will; the process exits 0.
#[test]
fn sigterm_publishes_wills_and_exits_zero() {
    let mut broker = Broker::start(3);
    let _w5 = connect_with_will(&broker, V5, &broker.client_on("dying5", 1), "wills/five");
    let _w3 = connect_with_will(&broker, V311, &broker.client_on("dying3", 1), "wills/three");
    let polite = connect_with_will(&broker, V5, &broker.client_on("polite", 1), "wills/polite");
    polite.disconnect();
    let mut watcher = RawClient::connected(broker.addr(), V5, &broker.client_on("watcher", 1));
    watcher.subscribe("wills/#", QoS::AtLeastOnce);

    let status = broker.terminate();
    assert!(status.success(), "culex exits 0 on SIGTERM: {status:?}");
    let (wills, disconnect) = drain_watcher(&mut watcher);
    assert_eq!(
        wills,
        vec!["wills/five".to_string(), "wills/three".to_string()]
    );
    assert_eq!(disconnect, Some(ReasonCode::ServerShuttingDown));
}

/// The same with the watcher and the dying clients on different shards: the runtime stops
/// in two phases (every shard publishes its wills, then every shard closes), so a will
/// reaches a watcher on a shard that would otherwise have stopped first.
#[test]
fn sigterm_publishes_wills_across_shards() {
    let mut broker = Broker::start(3);
    let mut watcher = RawClient::connected(broker.addr(), V5, &broker.client_on("watcher", 0));
    watcher.subscribe("wills/#", QoS::AtLeastOnce);
    let _w5 = connect_with_will(&broker, V5, &broker.client_on("dying5", 1), "wills/five");
    let _w3 = connect_with_will(&broker, V311, &broker.client_on("dying3", 2), "wills/three");
    assert!(broker.terminate().success());
    let (wills, disconnect) = drain_watcher(&mut watcher);
    assert_eq!(
        wills,
        vec!["wills/five".to_string(), "wills/three".to_string()]
    );
    assert_eq!(disconnect, Some(ReasonCode::ServerShuttingDown));
}

#[test]
fn sigterm_with_no_clients_exits_zero_promptly() {
    let mut broker = Broker::start(2);
    let started = std::time::Instant::now();
    assert!(broker.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Connected, idle MQTT clients on one shard: the broker's RSS growth per client, taken
/// as the slope between 1,000 and 3,000 clients so that one-off growth (allocator arenas,
/// table resizes) at the start does not count.
#[test]
fn idle_clients_cost_a_few_kilobytes() {
    const FIRST: usize = 1000;
    const MORE: usize = 2000;
    let broker = Broker::start(1);
    let connect = |range: std::ops::Range<usize>| -> Vec<RawClient> {
        range
            .map(|i| RawClient::connected(broker.addr(), V311, &format!("idle-{i}")))
            .collect()
    };
    let first = connect(0..FIRST);
    std::thread::sleep(Duration::from_millis(200));
    let before = broker.rss_bytes();
    let more = connect(FIRST..FIRST + MORE);
    std::thread::sleep(Duration::from_millis(200));
    let per_client = broker.rss_bytes().saturating_sub(before) / MORE as u64;
    println!("broker RSS per idle MQTT client: {per_client} bytes");
    // A guard against regressions, not the target: the runtime's share is under 2 KB
    // (see `shard::tests::idle_connections_are_cheap`); the rest is the core's.
    assert!(per_client < 16 * 1024, "{per_client} bytes per idle client");
    drop((first, more));
}

/// The shards wait in epoll, not io_uring, so no locked memory is needed: a broker started
/// under a 64 KiB RLIMIT_MEMLOCK (below what glommio's executors required, where it used to
/// refuse to start) serves a client. Containers and systemd units with the default limit
/// need no `ulimit -l`.
#[test]
fn low_memlock_does_not_stop_the_broker() {
    use std::os::unix::process::CommandExt;
    let port = common::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_culex"));
    cmd.args(["-p", &port.to_string(), "--shards", "2"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe, on a stack value it owns.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("culex runs");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let connack = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("culex exited under a low memlock limit: {status}");
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            break RawClient::connect(addr, V311, "memlock").1;
        }
        assert!(std::time::Instant::now() < deadline, "culex never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Only the process this test started, by PID.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(connack.reason_code, ReasonCode::Success);
}

/// A configuration error is printed with its file and line, and the exit status is 1.
#[test]
fn bad_configuration_exits_one_naming_the_line() {
    let path = std::env::temp_dir().join(format!("culex-bad-{}.conf", std::process::id()));
    std::fs::write(&path, "listener 1883 127.0.0.1\nno_such_option 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_culex"))
        .arg("-c")
        .arg(&path)
        .output()
        .expect("culex runs");
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":2"), "names line 2: {stderr}");
}
