//! A connect storm of idle clients: every connection that got its CONNACK stays open and
//! served. Guards the bench's `idle-max` finding (fewer broker descriptors than clients)
//! against ever becoming true: the broker must not close idle clients by itself (connect
//! timeout, a keepalive swept with a stale clock, the accept loop, the linger path).
// Test code: a failed unwrap is a failed test. clippy.toml allows it in #[test] fns only,
// and these helpers sit beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use culex::protocol::{Packet, ProtocolVersion, ReasonCode};

use common::{connect_packet, Broker, RawClient};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Threads opening connections at once, and connections each: 3,000 in all, under the
/// default `somaxconn` (4096) so that the kernel's accept queue, not the broker, is never
/// what refuses one.
const STORM_THREADS: usize = 2;
const CONNS_PER_THREAD: usize = 1500;
/// Long enough for the shard's periodic sweeps (keepalive, connect timeout) to run a few
/// times over every connection.
const HOLD: Duration = Duration::from_secs(4);

/// Opens `count` sockets as fast as the kernel completes them, then sends every CONNECT,
/// then reads every CONNACK: the broker sees a burst of accepts, then a burst of CONNECTs.
fn storm(broker: &Broker, thread: usize, count: usize) -> Vec<RawClient> {
    let mut clients: Vec<RawClient> = (0..count)
        .map(|_| RawClient::open(broker.addr(), V311))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut connect = connect_packet(V311, &format!("storm-{thread}-{i}"), true, None);
        // The bench's keepalive: far longer than the test, so no client is due a ping.
        connect.keep_alive_s = 600;
        c.send(&Packet::Connect(Box::new(connect)));
    }
    for c in &mut clients {
        assert_eq!(c.connack().reason_code, ReasonCode::Success);
    }
    clients
}

fn broker_fd_count(broker: &Broker) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", broker.pid()))
        .expect("the broker is running")
        .count()
}

/// The broker's descriptors once the start-up probe connection (see `Broker::start`) is
/// closed, so that it is not counted as one of the storm's.
fn settled_fd_count(broker: &Broker) -> usize {
    let mut last = broker_fd_count(broker);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = broker_fd_count(broker);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// 3,000 clients connect at once and sit idle: after a few seconds the broker still holds
/// a descriptor for each, and each still answers PINGREQ with PINGRESP.
#[test]
fn a_connect_storm_of_idle_clients_stays_connected() {
    let broker = Broker::with_config(1, "max_connections -1");
    let baseline = settled_fd_count(&broker);
    let mut clients: Vec<RawClient> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..STORM_THREADS)
            .map(|t| {
                let broker = &broker;
                s.spawn(move || storm(broker, t, CONNS_PER_THREAD))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("storm thread"))
            .collect()
    });
    let total = STORM_THREADS * CONNS_PER_THREAD;
    assert_eq!(clients.len(), total);

    std::thread::sleep(HOLD);
    let held = broker_fd_count(&broker) - baseline;
    println!("broker descriptors for {total} idle clients after {HOLD:?}: {held}");
    assert!(held >= total, "broker holds {held} of {total} connections");

    for c in &mut clients {
        c.send(&Packet::PingReq);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        match c.try_recv() {
            Some(Packet::PingResp) => {}
            other => panic!("client {i}: {other:?} instead of PINGRESP"),
        }
    }
}
