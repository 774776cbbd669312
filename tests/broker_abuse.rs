//! Bad input never takes the broker down, and each protocol violation gets the reason
//! code the spec names: a storm of malformed, truncated and random bytes on many
//! connections while a well-behaved pair exchanges QoS 1 messages without loss.
// Test code: a failed unwrap is a failed test. clippy.toml allows it in #[test] fns only,
// and these helpers sit beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use culex::protocol::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};

use common::{connect_packet, expect_publish, pid, Broker, RawClient};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Hostile byte strings: random, truncated, oversized lengths, valid CONNECT then junk.
fn hostile_payload(rng: &mut fastrand::Rng, kind: u32) -> Vec<u8> {
    let mut connect = BytesMut::new();
    Packet::Connect(Box::new(connect_packet(V5, "hostile", true, None)))
        .encode(V5, &mut connect)
        .expect("a test CONNECT encodes");
    match kind % 6 {
        0 => (0..rng.usize(1..512)).map(|_| rng.u8(..)).collect(),
        // CONNECT cut short, then silence.
        1 => connect[..rng.usize(1..connect.len())].to_vec(),
        // A remaining length of 268,435,455 (the maximum) with no body.
        2 => vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F],
        // A five-byte remaining length: malformed.
        3 => vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        // A valid CONNECT followed by random bytes.
        4 => {
            let mut v = connect.to_vec();
            v.extend((0..rng.usize(1..256)).map(|_| rng.u8(..)));
            v
        }
        // A valid CONNECT, then a PUBLISH with QoS 3 (malformed) and a valid one after.
        _ => {
            let mut v = connect.to_vec();
            v.extend_from_slice(&[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
            v
        }
    }
}

#[test]
fn hostile_connections_do_not_disturb_a_qos1_pair() {
    let broker = Broker::start(2);
    let addr = broker.addr();
    let mut sub = RawClient::connected(addr, V5, &broker.client_on("calm-sub", 0));
    sub.subscribe("calm/topic", QoS::AtLeastOnce);
    let mut publisher = RawClient::connected(addr, V5, &broker.client_on("calm-pub", 1));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..4u64)
        .map(|seed| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut kind = 0;
                let mut count = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && count < 400 {
                    let mut c = RawClient::open(addr, V5);
                    c.send_raw_lossy(&hostile_payload(&mut rng, kind));
                    kind += 1;
                    count += 1;
                    // Some hang up at once, some leave the connection open a while.
                    if kind % 3 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                count
            })
        })
        .collect();

    const N: u16 = 300;
    for i in 1..=N {
        publisher.publish("calm/topic", &i.to_be_bytes(), QoS::AtLeastOnce, i, false);
        match publisher.recv() {
            Packet::PubAck(a) => assert_eq!(a.packet_id, pid(i)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let p = expect_publish(sub.recv());
        assert_eq!(&p.payload[..], &i.to_be_bytes(), "in order, none lost");
        sub.send(&Packet::PubAck(Ack::success(p.packet_id.expect("QoS 1"))));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let hostile: u32 = attackers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(hostile > 0);
    // Still serving new clients.
    RawClient::connected(addr, V311, "after-the-storm");
}

#[test]
fn first_packet_must_be_connect() {
    let broker = Broker::start(1);
    let mut c = RawClient::open(broker.addr(), V311);
    c.send(&Packet::PingReq);
    assert!(c.try_recv().is_none(), "closed without an answer");
}

#[test]
fn second_connect_is_a_protocol_error() {
    let broker = Broker::start(2);
    let mut c = RawClient::connected(broker.addr(), V5, &broker.client_on("twice", 1));
    c.send(&Packet::Connect(Box::new(connect_packet(
        V5, "twice", true, None,
    ))));
    let d = c.expect_closed().expect("an MQTT 5 client is told why");
    assert_eq!(d.reason_code, ReasonCode::ProtocolError);
}

#[test]
fn malformed_packet_in_v5_gets_disconnect_0x81_and_v311_is_closed() {
    let broker = Broker::start(2);
    // SUBSCRIBE with header flags 0000 instead of the required 0010.
    let bad_subscribe = [0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00];
    let mut c5 = RawClient::connected(broker.addr(), V5, &broker.client_on("mal5", 0));
    c5.send_raw(&bad_subscribe);
    let d = c5.expect_closed().expect("an MQTT 5 client is told why");
    assert_eq!(d.reason_code, ReasonCode::MalformedPacket);
    let mut c3 = RawClient::connected(broker.addr(), V311, &broker.client_on("mal3", 1));
    c3.send_raw(&bad_subscribe);
    assert!(c3.expect_closed().is_none());
}

#[test]
fn unsupported_protocol_level_is_refused() {
    let broker = Broker::start(1);
    let mut c = RawClient::open(broker.addr(), V311);
    // CONNECT, protocol "MQTT" level 9, clean session, keepalive 60, client id "x".
    c.send_raw(&[
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x09, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x',
    ]);
    match c.try_recv() {
        // 3.1.1's return code 1: unacceptable protocol version.
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.reason_code, ReasonCode::UnsupportedProtocolVersion);
            assert!(c.try_recv().is_none(), "closed after the CONNACK");
        }
        None => {}
        Some(other) => panic!("expected CONNACK or close, got {other:?}"),
    }
}

/// Limits reached from outside: `max_connections`, `max_packet_size`, `max_keepalive`.
/// Each answers the one client with the right code and leaves the others alone.
#[test]
fn limits_answer_with_the_right_code_and_spare_other_clients() {
    let broker = Broker::with_config(
        2,
        "max_connections 4\nmax_packet_size 1000\nmax_keepalive 30\n",
    );
    let addr = broker.addr();
    let mut a = RawClient::connected(addr, V5, &broker.client_on("lim-a", 0));
    a.subscribe("lim/#", QoS::AtMostOnce);
    let (mut b, ack) = RawClient::connect(addr, V5, &broker.client_on("lim-b", 1));
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // CONNACK announces the limits: server keep alive (asked 60 > 30) and packet size.
    assert_eq!(ack.properties.server_keep_alive_s, Some(30));
    assert_eq!(
        ack.properties.maximum_packet_size_bytes.map(|n| n.get()),
        Some(1000)
    );

    // Too large: b is disconnected with 0x95; a is unaffected.
    b.publish("lim/big", &[0u8; 2000], QoS::AtMostOnce, 0, false);
    let d = b.expect_closed().expect("told why");
    assert_eq!(d.reason_code, ReasonCode::PacketTooLarge);
    // Our close lets the broker finish its side and free the slot.
    drop(b);
    std::thread::sleep(Duration::from_millis(200));

    // Four connections at most: the fifth is closed unanswered.
    let c = RawClient::connected(addr, V311, "lim-c");
    let d = RawClient::connected(addr, V311, "lim-d");
    let e = RawClient::connected(addr, V311, "lim-e");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut refused = RawClient::open(addr, V311);
    refused.send_raw_lossy(&{
        let mut buf = BytesMut::new();
        Packet::Connect(Box::new(connect_packet(V311, "lim-f", true, None)))
            .encode(V311, &mut buf)
            .unwrap();
        buf
    });
    assert!(
        refused.try_recv().is_none(),
        "the fifth connection is refused"
    );
    assert!(Instant::now() < deadline + Duration::from_secs(5));

    let mut publisher = c;
    publisher.publish("lim/ok", b"fine", QoS::AtMostOnce, 0, false);
    let p = expect_publish(a.recv());
    assert_eq!(&p.payload[..], b"fine");
    drop((d, e));
}

/// Per-client limits from the configuration, each answered with the code the spec names
/// while another client on the same broker carries on: receive maximum (0x93), topic
/// levels (SUBACK 0x8F, DISCONNECT 0x90), subscriptions per client (SUBACK 0x97), topic
/// aliases (0x94).
#[test]
fn per_client_limits_answer_with_the_right_code() {
    use culex::protocol::{
        PublishProperties, Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter,
    };
    let broker = Broker::with_config(
        2,
        "max_inflight_messages 2\nmax_topic_levels 3\nmax_subscriptions_per_client 2\nmax_topic_alias 2\n",
    );
    let addr = broker.addr();
    let mut bystander = RawClient::connected(addr, V5, &broker.client_on("bystander", 0));
    bystander.subscribe("ok/#", QoS::AtMostOnce);

    // Receive maximum 2, announced in CONNACK; a third unreleased QoS 2 publish is 0x93.
    let (mut q2, ack) = RawClient::connect(addr, V5, &broker.client_on("qos2", 1));
    assert_eq!(ack.properties.receive_maximum.map(|n| n.get()), Some(2));
    for id in 1..=2 {
        q2.publish("ok/q2", b"x", QoS::ExactlyOnce, id, false);
        assert!(matches!(q2.recv(), Packet::PubRec(_)));
    }
    q2.publish("ok/q2", b"x", QoS::ExactlyOnce, 3, false);
    let d = q2.expect_closed().expect("told why");
    assert_eq!(d.reason_code, ReasonCode::ReceiveMaximumExceeded);

    // Topic levels and subscriptions per client.
    let mut subs = RawClient::connected(addr, V5, &broker.client_on("subs", 1));
    let filters = |list: &[&str]| Subscribe {
        packet_id: pid(9),
        properties: SubscribeProperties::default(),
        filters: list
            .iter()
            .map(|f| {
                (
                    TopicFilter::parse(f.to_string()).unwrap(),
                    SubscriptionOptions::default(),
                )
            })
            .collect(),
    };
    subs.send(&Packet::Subscribe(filters(&[
        "a/b/c/d", "x/1", "x/2", "x/3",
    ])));
    match subs.recv() {
        Packet::SubAck(a) => assert_eq!(
            a.reason_codes,
            vec![
                ReasonCode::TopicFilterInvalid,
                ReasonCode::Success,
                ReasonCode::Success,
                ReasonCode::QuotaExceeded
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    subs.publish("a/b/c/d", b"deep", QoS::AtMostOnce, 0, false);
    let d = subs.expect_closed().expect("told why");
    assert_eq!(d.reason_code, ReasonCode::TopicNameInvalid);

    // Topic alias 5 when the broker allows 2.
    let (mut aliaser, ack) = RawClient::connect(addr, V5, &broker.client_on("alias", 0));
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
    let mut p = common::publish_packet("ok/alias", b"a", QoS::AtMostOnce, 0, false);
    p.properties = PublishProperties {
        topic_alias: std::num::NonZeroU16::new(5),
        ..PublishProperties::default()
    }
    .into();
    aliaser.send(&Packet::Publish(p));
    let d = aliaser.expect_closed().expect("told why");
    assert_eq!(d.reason_code, ReasonCode::TopicAliasInvalid);

    // The bystander is unaffected: it may have the accepted QoS 2 messages, then this.
    let mut publisher = RawClient::connected(addr, V5, &broker.client_on("pub-ok", 1));
    publisher.publish("ok/fine", b"fine", QoS::AtMostOnce, 0, false);
    loop {
        let p = expect_publish(bystander.recv());
        if &p.payload[..] == b"fine" {
            break;
        }
    }
}
