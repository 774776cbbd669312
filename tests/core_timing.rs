//! A rough timing of the pure core's hot paths (no sockets, one shard), run in release:
//! `cargo test --release --test core_timing -- --ignored --nocapture`. It measures what the
//! core costs per message: decode, route, encode into each subscriber's buffer, hand over.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use culex::broker::{ConnId, CoreConfig, Output, ShardCore, ShardId};
use culex::protocol::{
    ClientId, Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

fn encode(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(V4, &mut buf).expect("encodes");
    buf
}

fn connect(core: &mut ShardCore, conn: u32, now: Instant) {
    core.connection_opened(ConnId(conn), now);
    let c = Connect {
        protocol_version: V4,
        clean_start: true,
        keep_alive_s: 0,
        client_id: ClientId::default(),
        will: None,
        user_name: None,
        password: None,
        properties: Default::default(),
    };
    core.received(ConnId(conn), &encode(&Packet::Connect(Box::new(c))), now);
}

fn subscribe(core: &mut ShardCore, conn: u32, filter: &str, now: Instant) {
    let s = Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::parse(filter).expect("valid"),
            SubscriptionOptions::default(),
        )],
    };
    core.received(ConnId(conn), &encode(&Packet::Subscribe(s)), now);
}

/// Drains outputs, taking every writable buffer; returns bytes handed to sockets.
fn drain(core: &mut ShardCore) -> usize {
    let mut bytes = 0;
    while let Some(output) = core.poll_output() {
        if let Output::Writable { conn } = output {
            bytes += core.take_outgoing(conn).len();
        }
    }
    bytes
}

fn publishes(topic: &str, count: usize) -> BytesMut {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::parse(topic).expect("valid"),
        packet_id: None,
        properties: Default::default(),
        payload: Bytes::from(vec![0x5A; 64]),
    };
    let one = encode(&Packet::Publish(p));
    let mut batch = BytesMut::new();
    for _ in 0..count {
        batch.extend_from_slice(&one);
    }
    batch
}

fn report(name: &str, deliveries: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name}: {:.2}M deliveries/s, {:.0} ns/delivery",
        deliveries as f64 / secs / 1e6,
        secs * 1e9 / deliveries as f64
    );
}

#[test]
#[ignore = "timing, run in release"]
fn fan_out_1_to_500_qos0() {
    let now = Instant::now();
    let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
    for conn in 1..=500 {
        connect(&mut core, conn, now);
        subscribe(&mut core, conn, "fan/out", now);
    }
    connect(&mut core, 1000, now);
    drain(&mut core);
    let batch = publishes("fan/out", 20);
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        core.received(ConnId(1000), &batch, now);
        drain(&mut core);
    }
    report("fan-out 1→500 QoS 0", rounds * 20 * 500, started);
    assert_eq!(core.stats().messages_sent_count, rounds * 20 * 500);
}

#[test]
#[ignore = "timing, run in release"]
fn pairs_500_qos0() {
    let now = Instant::now();
    let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
    for pair in 0..500u32 {
        connect(&mut core, 2 * pair + 1, now);
        subscribe(&mut core, 2 * pair + 1, &format!("pair/{pair}"), now);
        connect(&mut core, 2 * pair + 2, now);
    }
    drain(&mut core);
    let batches: Vec<BytesMut> = (0..500)
        .map(|p| publishes(&format!("pair/{p}"), 10))
        .collect();
    let rounds = 100;
    let started = Instant::now();
    for _ in 0..rounds {
        for (pair, batch) in batches.iter().enumerate() {
            core.received(ConnId(2 * pair as u32 + 2), batch, now);
        }
        drain(&mut core);
    }
    report("500 pairs QoS 0", rounds * 500 * 10, started);
    assert_eq!(core.stats().messages_sent_count, rounds * 500 * 10);
}

#[test]
#[ignore = "timing, run in release"]
fn fan_in_50_to_1_qos0() {
    let now = Instant::now();
    let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
    connect(&mut core, 1, now);
    subscribe(&mut core, 1, "in/+", now);
    for conn in 2..=51 {
        connect(&mut core, conn, now);
    }
    drain(&mut core);
    let batches: Vec<BytesMut> = (0..50).map(|p| publishes(&format!("in/{p}"), 10)).collect();
    let rounds = 1000;
    let started = Instant::now();
    for _ in 0..rounds {
        for (i, batch) in batches.iter().enumerate() {
            core.received(ConnId(i as u32 + 2), batch, now);
        }
        drain(&mut core);
    }
    report("fan-in 50→1 QoS 0", rounds * 50 * 10, started);
    assert_eq!(core.stats().messages_sent_count, rounds * 50 * 10);
}

fn qos1_publishes(topic: &str, count: u16) -> BytesMut {
    let mut batch = BytesMut::new();
    for id in 1..=count {
        let p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::parse(topic).expect("valid"),
            packet_id: PacketId::new(id),
            properties: Default::default(),
            payload: Bytes::from(vec![0x5A; 64]),
        };
        batch.extend_from_slice(&encode(&Packet::Publish(p)));
    }
    batch
}

#[test]
#[ignore = "timing, run in release"]
fn pairs_100_qos1() {
    let now = Instant::now();
    let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
    for pair in 0..100u32 {
        connect(&mut core, 2 * pair + 1, now);
        let s = Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            properties: Default::default(),
            filters: vec![(
                TopicFilter::parse(format!("pair/{pair}")).expect("valid"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            )],
        };
        core.received(ConnId(2 * pair + 1), &encode(&Packet::Subscribe(s)), now);
        connect(&mut core, 2 * pair + 2, now);
    }
    drain(&mut core);
    let per_round = 10u16;
    let batches: Vec<BytesMut> = (0..100)
        .map(|p| qos1_publishes(&format!("pair/{p}"), per_round))
        .collect();
    let rounds = 200u32;
    // The core allocates outbound ids in sequence from 1; acknowledge them in that order.
    let mut next_id = 1u16;
    let started = Instant::now();
    for _ in 0..rounds {
        for (pair, batch) in batches.iter().enumerate() {
            core.received(ConnId(2 * pair as u32 + 2), batch, now);
        }
        drain(&mut core);
        let mut acks = BytesMut::new();
        for _ in 0..per_round {
            let id = PacketId::new(next_id).expect("non-zero");
            next_id = id.next().get();
            acks.extend_from_slice(&encode(&Packet::PubAck(culex::protocol::Ack::success(id))));
        }
        for pair in 0..100u32 {
            core.received(ConnId(2 * pair + 1), &acks, now);
        }
        drain(&mut core);
    }
    report(
        "100 pairs QoS 1",
        u64::from(rounds) * 100 * u64::from(per_round),
        started,
    );
    assert_eq!(
        core.stats().messages_sent_count,
        u64::from(rounds) * 100 * u64::from(per_round)
    );
}
