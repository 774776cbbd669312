//! Hostile and random input never panics the core or disturbs other clients: random bytes
//! after a valid CONNECT, random byte corruptions of valid packets, and random packet
//! sequences, on a multi-shard network.

mod core_harness;

use core_harness::*;
use culex::protocol::{Packet, QoS};

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n
    }
}

/// Valid packets a client may send, encoded for `version`.
fn sample_packets(version: Version) -> Vec<Vec<u8>> {
    let packets = vec![
        Packet::Publish(publish("a/b", QoS::AtMostOnce, None, b"zero")),
        Packet::Publish(publish("a/b", QoS::AtLeastOnce, Some(pid(1)), b"one")),
        Packet::Publish(publish("a/c", QoS::ExactlyOnce, Some(pid(2)), b"two")),
        Packet::PubRel(ack(pid(2))),
        Packet::PubAck(ack(pid(1))),
        Packet::PubRec(ack(pid(3))),
        Packet::PubComp(ack(pid(3))),
        subscribe(4, &[("a/#", options(QoS::ExactlyOnce))], None),
        subscribe(5, &[("$share/g/a/+", options(QoS::AtLeastOnce))], None),
        unsubscribe(6, &["a/#"]),
        Packet::PingReq,
    ];
    packets
        .iter()
        .map(|p| {
            let mut buf = bytes::BytesMut::new();
            p.encode(version, &mut buf).expect("sample packets encode");
            buf.to_vec()
        })
        .collect()
}

#[test]
fn random_and_corrupted_input_never_panics_and_spares_a_bystander() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut net = Net::new(3);
    let watcher = net.client(V4, &net.id_on(0, "watcher"));
    net.subscribe(watcher, "probe", QoS::AtLeastOnce);
    let prober = net.client(V4, &net.id_on(2, "prober"));
    for round in 0..300 {
        let version = [V3, V4, V5][round % 3];
        let id = format!("fuzz{round}");
        let sock = net.client(version, &id);
        let samples = sample_packets(version);
        for _ in 0..20 {
            if net.is_closed(sock) {
                break;
            }
            let mut bytes = samples[rng.below(samples.len())].clone();
            match rng.below(4) {
                // Flip one byte.
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                // Truncate (the rest may arrive as the start of the next packet).
                1 => bytes.truncate(rng.below(bytes.len()) + 1),
                // Pure noise.
                2 => bytes = (0..rng.below(40) + 1).map(|_| rng.next() as u8).collect(),
                _ => {}
            }
            net.send_raw(sock, &bytes);
            net.recv(sock);
        }
        if !net.is_closed(sock) {
            net.lose(sock);
        }
        if round % 50 == 0 {
            net.advance(std::time::Duration::from_secs(1));
        }
    }
    net.publish(prober, "probe", QoS::AtLeastOnce, b"alive");
    let got = net.recv(watcher);
    assert!(payloads(&got).contains(&"alive".to_string()));
    // Every fuzzing session was clean: none is left behind.
    let sessions: usize = net.cores.iter().map(|c| c.session_count()).sum();
    assert_eq!(sessions, 2, "only the watcher and the prober remain");
    let open: u64 = net
        .cores
        .iter()
        .map(|c| c.stats().connections_current)
        .sum();
    assert_eq!(open, 2);
}
