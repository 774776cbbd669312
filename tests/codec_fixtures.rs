//! Byte-exact fixtures of packets that REAL clients and a real broker put on the wire, each
//! spelled out field by field, each naming its origin (tool, version, command line). Every
//! fixture is decoded with trailing bytes after it, to prove the decoder stops at the
//! frame's edge, and the decoded struct is asserted whole. Where the encoding is canonical
//! our encoder must reproduce the captured bytes exactly.
//!
//! Origins:
//! - Eclipse Mosquitto 2.0.11's `mosquitto_pub` / `mosquitto_sub` (libmosquitto 2.0.11),
//!   captured by `scripts/capture-fixtures.py clients` (a fake server on 127.0.0.1).
//! - `/usr/sbin/mosquitto` 2.0.11's answers, captured by `scripts/capture-fixtures.py
//!   broker` (a raw socket to the real broker on 127.0.0.1).
//! - rumqttc 0.24 (the dev-dependency): captured live on every run by the tests at the end
//!   of this file, which drive the real client against an in-process fake server and
//!   compare what it sent with the fixtures spelled out here.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use culex::protocol::{
    decode, Ack, AckProperties, ClientId, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    DecodeError, Disconnect, DisconnectProperties, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties,
    UserProperty, Will, WillProperties,
};

/// Appended after every fixture: the start of another packet that must be left untouched.
const TRAILING: &[u8] = &[0xC0, 0x00, 0xE0];

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3_1_1: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Decodes `wire` followed by [`TRAILING`]: exactly one packet, the trailing bytes left.
fn decode_fixture(wire: &[u8], version: Option<ProtocolVersion>) -> Packet {
    let mut buf = BytesMut::from(wire);
    buf.extend_from_slice(TRAILING);
    let packet = decode(&mut buf, version, u32::MAX)
        .unwrap_or_else(|e| panic!("fixture refused: {e}"))
        .expect("the fixture is a whole packet");
    assert_eq!(&buf[..], TRAILING, "decode must stop at the frame's edge");
    packet
}

/// The encoding is canonical here: our encoder reproduces the captured bytes exactly.
fn assert_reencodes_exactly(packet: &Packet, version: ProtocolVersion, wire: &[u8]) {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .expect("a decoded packet encodes");
    assert_eq!(hex(&buf), hex(wire), "re-encoding differs from the capture");
    assert_eq!(packet.encoded_len(version), wire.len());
}

/// The peer chose one of several valid encodings (e.g. property order): ours may differ
/// in bytes, but must be as long and decode to the same packet.
fn assert_reencodes_equivalently(packet: &Packet, version: ProtocolVersion, wire: &[u8]) {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .expect("a decoded packet encodes");
    assert_eq!(buf.len(), wire.len(), "same fields, same length");
    let decoder = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    assert_eq!(
        decode(&mut buf, decoder, u32::MAX),
        Ok(Some(packet.clone()))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn text(s: &'static str) -> ByteString {
    ByteString::from_static(s)
}

fn topic(s: &'static str) -> TopicName {
    TopicName::parse(s).expect("fixture topic is valid")
}

fn filter(s: &'static str) -> TopicFilter {
    TopicFilter::parse(s).expect("fixture filter is valid")
}

fn client_id(s: &'static str) -> ClientId {
    ClientId::new(s).expect("fixture client id has no NUL")
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("fixture packet id is not zero")
}

fn user(name: &'static str, value: &'static str) -> UserProperty {
    UserProperty {
        name: text(name),
        value: text(value),
    }
}

/// Concatenates a fixture's fields, each written on its own commented line.
fn wire(fields: &[&[u8]]) -> Vec<u8> {
    fields.concat()
}

// ---------------------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub 2.0.11 (scripts/capture-fixtures.py clients)
// ---------------------------------------------------------------------------------------

/// `mosquitto_pub -V 31 -i c31 -k 30 -u alice -P pw --will-topic w/t --will-payload gone
///  --will-qos 1 --will-retain -t a/b -m hi -r -q 0 -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_pub_v31_connect_with_will_and_credentials() {
    let bytes = wire(&[
        &[0x10, 0x27],     // CONNECT, remaining length 39
        b"\x00\x06MQIsdp", // protocol name, MQTT 3.1's
        &[0x03],           // protocol level 3
        &[0xEE],           // flags: user name, password, will retain, will QoS 1, will, clean
        &[0x00, 0x1E],     // keep alive 30 s
        b"\x00\x03c31",    // client identifier
        b"\x00\x03w/t",    // will topic
        b"\x00\x04gone",   // will payload (2-byte length, then bytes)
        b"\x00\x05alice",  // user name
        b"\x00\x02pw",     // password
    ]);
    let packet = decode_fixture(&bytes, None);
    let expected = Packet::Connect(Box::new(Connect {
        protocol_version: V3_1,
        clean_start: true,
        keep_alive_s: 30,
        client_id: client_id("c31"),
        will: Some(Will {
            topic: topic("w/t"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        user_name: Some(text("alice")),
        password: Some(Bytes::from_static(b"pw")),
        properties: ConnectProperties::default(),
    }));
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1, &bytes);
}

/// The same `mosquitto_pub -V 31 ... -t a/b -m hi -r -q 0` run, after its CONNACK.
#[test]
fn mosquitto_pub_v31_publish_qos0_retained_and_disconnect() {
    let bytes = wire(&[
        &[0x31, 0x07],  // PUBLISH, QoS 0, RETAIN; remaining length 7
        b"\x00\x03a/b", // topic name
        b"hi",          // payload: the rest of the packet (no packet id at QoS 0)
    ]);
    let packet = decode_fixture(&bytes, Some(V3_1));
    let expected = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: topic("a/b"),
        packet_id: None,
        properties: Default::default(),
        payload: Bytes::from_static(b"hi"),
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1, &bytes);

    let bytes = [0xE0, 0x00]; // DISCONNECT, remaining length 0
    let packet = decode_fixture(&bytes, Some(V3_1));
    assert_eq!(
        packet,
        Packet::Disconnect(Disconnect::new(ReasonCode::Success))
    );
    assert_reencodes_exactly(&packet, V3_1, &bytes);
}

/// `mosquitto_pub -V 311 -i c311 -k 60 -t x/y/z -m hello -q 1 -r -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_pub_v311_connect_and_publish_qos1_retained() {
    let bytes = wire(&[
        &[0x10, 0x10],   // CONNECT, remaining length 16
        b"\x00\x04MQTT", // protocol name
        &[0x04],         // protocol level 4 (3.1.1)
        &[0x02],         // flags: clean session only
        &[0x00, 0x3C],   // keep alive 60 s
        b"\x00\x04c311", // client identifier
    ]);
    let packet = decode_fixture(&bytes, None);
    let expected = Packet::Connect(Box::new(Connect {
        protocol_version: V3_1_1,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id("c311"),
        will: None,
        user_name: None,
        password: None,
        properties: ConnectProperties::default(),
    }));
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);

    let bytes = wire(&[
        &[0x33, 0x0E],    // PUBLISH, QoS 1, RETAIN; remaining length 14
        b"\x00\x05x/y/z", // topic name
        &[0x00, 0x01],    // packet identifier 1
        b"hello",         // payload
    ]);
    let packet = decode_fixture(&bytes, Some(V3_1_1));
    let expected = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: topic("x/y/z"),
        packet_id: Some(pid(1)),
        properties: Default::default(),
        payload: Bytes::from_static(b"hello"),
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);
}

/// `mosquitto_pub -V 311 -i c311q2 -t t -m q2 -q 2 -h 127.0.0.1 -p PORT`: PUBLISH, and
/// the PUBREL it sends after our PUBREC.
#[test]
fn mosquitto_pub_v311_publish_qos2_and_pubrel() {
    let bytes = wire(&[
        &[0x34, 0x07], // PUBLISH, QoS 2; remaining length 7
        b"\x00\x01t",  // topic name
        &[0x00, 0x01], // packet identifier 1
        b"q2",         // payload
    ]);
    let packet = decode_fixture(&bytes, Some(V3_1_1));
    let expected = Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: topic("t"),
        packet_id: Some(pid(1)),
        properties: Default::default(),
        payload: Bytes::from_static(b"q2"),
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);

    let bytes = [
        0x62, 0x02, // PUBREL (reserved flags 0010), remaining length 2
        0x00, 0x01, // packet identifier 1
    ];
    let packet = decode_fixture(&bytes, Some(V3_1_1));
    assert_eq!(packet, Packet::PubRel(Ack::success(pid(1))));
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);
}

/// `mosquitto_pub -V 5 -i c5 -k 20 -u bob -P secret -D connect session-expiry-interval 60
///  -D publish user-property a b -D publish message-expiry-interval 30 -t s/1 -m v5 -q 2
///  -r -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_pub_v5_connect_with_properties() {
    let bytes = wire(&[
        &[0x10, 0x24],                   // CONNECT, remaining length 36
        b"\x00\x04MQTT",                 // protocol name
        &[0x05],                         // protocol level 5
        &[0xC2],                         // flags: user name, password, clean start
        &[0x00, 0x14],                   // keep alive 20 s
        &[0x08],                         // properties: 8 bytes
        &[0x11, 0x00, 0x00, 0x00, 0x3C], //   session expiry interval 60 s
        &[0x21, 0x00, 0x14],             //   receive maximum 20 (libmosquitto's default)
        b"\x00\x02c5",                   // client identifier
        b"\x00\x03bob",                  // user name
        b"\x00\x06secret",               // password
    ]);
    let packet = decode_fixture(&bytes, None);
    let expected = Packet::Connect(Box::new(Connect {
        protocol_version: V5,
        clean_start: true,
        keep_alive_s: 20,
        client_id: client_id("c5"),
        will: None,
        user_name: Some(text("bob")),
        password: Some(Bytes::from_static(b"secret")),
        properties: ConnectProperties {
            session_expiry_interval_s: Some(60),
            receive_maximum: NonZeroU16::new(20),
            ..ConnectProperties::default()
        },
    }));
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);
}

/// The same `mosquitto_pub -V 5 ... -q 2 -r` run: PUBLISH with properties, PUBREL after
/// our PUBREC, DISCONNECT.
#[test]
fn mosquitto_pub_v5_publish_qos2_with_properties_pubrel_disconnect() {
    let bytes = wire(&[
        &[0x35, 0x16],                   // PUBLISH, QoS 2, RETAIN; remaining length 22
        b"\x00\x03s/1",                  // topic name
        &[0x00, 0x01],                   // packet identifier 1
        &[0x0C],                         // properties: 12 bytes
        b"\x26\x00\x01a\x00\x01b",       //   user property (0x26) a = b
        &[0x02, 0x00, 0x00, 0x00, 0x1E], //   message expiry interval 30 s
        b"v5",                           // payload
    ]);
    let packet = decode_fixture(&bytes, Some(V5));
    let expected = Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: topic("s/1"),
        packet_id: Some(pid(1)),
        properties: PublishProperties {
            message_expiry_interval_s: Some(30),
            user_properties: vec![user("a", "b")],
            ..PublishProperties::default()
        }
        .into(),
        payload: Bytes::from_static(b"v5"),
    });
    assert_eq!(packet, expected);
    // libmosquitto writes properties in the order given on its command line.
    assert_reencodes_equivalently(&packet, V5, &bytes);

    let bytes = [
        0x62, 0x02, // PUBREL, remaining length 2: reason Success and no properties omitted
        0x00, 0x01, // packet identifier 1
    ];
    let packet = decode_fixture(&bytes, Some(V5));
    assert_eq!(packet, Packet::PubRel(Ack::success(pid(1))));
    assert_reencodes_exactly(&packet, V5, &bytes);

    let bytes = [0xE0, 0x00]; // DISCONNECT, remaining length 0: Normal disconnection
    let packet = decode_fixture(&bytes, Some(V5));
    assert_eq!(
        packet,
        Packet::Disconnect(Disconnect::new(ReasonCode::Success))
    );
    assert_reencodes_exactly(&packet, V5, &bytes);
}

/// `mosquitto_pub -V 5 -i c5w --will-topic lw --will-payload x --will-qos 2
///  -D will will-delay-interval 10 -t q/1 -m m -q 1 -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_pub_v5_connect_with_will_properties_and_publish_qos1() {
    let bytes = wire(&[
        &[0x10, 0x20],                   // CONNECT, remaining length 32
        b"\x00\x04MQTT",                 // protocol name
        &[0x05],                         // protocol level 5
        &[0x16],                         // flags: will QoS 2, will, clean start
        &[0x00, 0x3C],                   // keep alive 60 s
        &[0x03],                         // properties: 3 bytes
        &[0x21, 0x00, 0x14],             //   receive maximum 20
        b"\x00\x03c5w",                  // client identifier
        &[0x05],                         // will properties: 5 bytes
        &[0x18, 0x00, 0x00, 0x00, 0x0A], //   will delay interval 10 s
        b"\x00\x02lw",                   // will topic
        b"\x00\x01x",                    // will payload
    ]);
    let packet = decode_fixture(&bytes, None);
    let expected = Packet::Connect(Box::new(Connect {
        protocol_version: V5,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id("c5w"),
        will: Some(Will {
            topic: topic("lw"),
            payload: Bytes::from_static(b"x"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval_s: Some(10),
                ..WillProperties::default()
            },
        }),
        user_name: None,
        password: None,
        properties: ConnectProperties {
            receive_maximum: NonZeroU16::new(20),
            ..ConnectProperties::default()
        },
    }));
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);

    let bytes = wire(&[
        &[0x32, 0x09],  // PUBLISH, QoS 1; remaining length 9
        b"\x00\x03q/1", // topic name
        &[0x00, 0x01],  // packet identifier 1
        &[0x00],        // properties: none
        b"m",           // payload
    ]);
    let packet = decode_fixture(&bytes, Some(V5));
    let expected = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic("q/1"),
        packet_id: Some(pid(1)),
        properties: Default::default(),
        payload: Bytes::from_static(b"m"),
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);
}

/// `mosquitto_pub -V 5 -i c5q0 -D publish payload-format-indicator 1 -D publish
///  content-type text/plain -t r/0 -m zero -q 0 -r -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_pub_v5_publish_qos0_retained_with_format_and_content_type() {
    let bytes = wire(&[
        &[0x31, 0x19],             // PUBLISH, QoS 0, RETAIN; remaining length 25
        b"\x00\x03r/0",            // topic name (no packet identifier at QoS 0)
        &[0x0F],                   // properties: 15 bytes
        &[0x01, 0x01],             //   payload format indicator: UTF-8
        b"\x03\x00\x0Atext/plain", //   content type (0x03)
        b"zero",                   // payload
    ]);
    let packet = decode_fixture(&bytes, Some(V5));
    let expected = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: topic("r/0"),
        packet_id: None,
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            content_type: Some(text("text/plain")),
            ..PublishProperties::default()
        }
        .into(),
        payload: Bytes::from_static(b"zero"),
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);
}

/// `mosquitto_sub -V 31 -i s31 -t a/+ -q 1 -E -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_sub_v31_connect_and_subscribe() {
    let bytes = wire(&[
        &[0x10, 0x11],     // CONNECT, remaining length 17
        b"\x00\x06MQIsdp", // protocol name
        &[0x03],           // protocol level 3
        &[0x02],           // flags: clean session
        &[0x00, 0x3C],     // keep alive 60 s
        b"\x00\x03s31",    // client identifier
    ]);
    let packet = decode_fixture(&bytes, None);
    let expected = Packet::Connect(Box::new(Connect {
        protocol_version: V3_1,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id("s31"),
        will: None,
        user_name: None,
        password: None,
        properties: ConnectProperties::default(),
    }));
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1, &bytes);

    let bytes = wire(&[
        &[0x82, 0x08],  // SUBSCRIBE (reserved flags 0010), remaining length 8
        &[0x00, 0x01],  // packet identifier 1
        b"\x00\x03a/+", // topic filter
        &[0x01],        // requested QoS 1
    ]);
    let packet = decode_fixture(&bytes, Some(V3_1));
    let expected = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![(filter("a/+"), qos_only(QoS::AtLeastOnce))],
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1, &bytes);
}

/// `mosquitto_sub -V 311 -i s311 -t 'a/#' -t b -q 2 -E -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_sub_v311_subscribe_two_filters() {
    let bytes = wire(&[
        &[0x82, 0x0C],  // SUBSCRIBE, remaining length 12
        &[0x00, 0x01],  // packet identifier 1
        b"\x00\x03a/#", // topic filter 1
        &[0x02],        //   requested QoS 2
        b"\x00\x01b",   // topic filter 2
        &[0x02],        //   requested QoS 2
    ]);
    let packet = decode_fixture(&bytes, Some(V3_1_1));
    let expected = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![
            (filter("a/#"), qos_only(QoS::ExactlyOnce)),
            (filter("b"), qos_only(QoS::ExactlyOnce)),
        ],
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);
}

/// `mosquitto_sub -V 5 -i s5 -D subscribe subscription-identifier 7 -t '$share/g/x/+'
///  -q 1 -E -h 127.0.0.1 -p PORT`
#[test]
fn mosquitto_sub_v5_shared_subscription_with_identifier() {
    let bytes = wire(&[
        &[0x10, 0x12],       // CONNECT, remaining length 18
        b"\x00\x04MQTT",     // protocol name
        &[0x05],             // protocol level 5
        &[0x02],             // flags: clean start
        &[0x00, 0x3C],       // keep alive 60 s
        &[0x03],             // properties: 3 bytes
        &[0x21, 0x00, 0x14], //   receive maximum 20
        b"\x00\x02s5",       // client identifier
    ]);
    let packet = decode_fixture(&bytes, None);
    let expected = Packet::Connect(Box::new(Connect {
        protocol_version: V5,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id("s5"),
        will: None,
        user_name: None,
        password: None,
        properties: ConnectProperties {
            receive_maximum: NonZeroU16::new(20),
            ..ConnectProperties::default()
        },
    }));
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);

    let bytes = wire(&[
        &[0x82, 0x14],           // SUBSCRIBE, remaining length 20
        &[0x00, 0x01],           // packet identifier 1
        &[0x02],                 // properties: 2 bytes
        &[0x0B, 0x07],           //   subscription identifier 7 (a variable byte integer)
        b"\x00\x0C$share/g/x/+", // topic filter: shared, group g, filter x/+
        &[0x01],                 // options: QoS 1, no No Local / RAP, retain handling 0
    ]);
    let packet = decode_fixture(&bytes, Some(V5));
    let expected = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties {
            subscription_identifier: NonZeroU32::new(7),
            user_properties: vec![],
        },
        filters: vec![(filter("$share/g/x/+"), qos_only(QoS::AtLeastOnce))],
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);
}

/// `mosquitto_sub -V 311 -i p311 -k 5 -t p -W 6 -h 127.0.0.1 -p PORT`: SUBSCRIBE, then the
/// PINGREQ its 5 s keep alive sends.
#[test]
fn mosquitto_sub_v311_subscribe_qos0_and_pingreq() {
    let bytes = wire(&[
        &[0x82, 0x06], // SUBSCRIBE, remaining length 6
        &[0x00, 0x01], // packet identifier 1
        b"\x00\x01p",  // topic filter
        &[0x00],       // requested QoS 0
    ]);
    let packet = decode_fixture(&bytes, Some(V3_1_1));
    let expected = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![(filter("p"), qos_only(QoS::AtMostOnce))],
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);

    let bytes = [0xC0, 0x00]; // PINGREQ, remaining length 0
    let packet = decode_fixture(&bytes, Some(V3_1_1));
    assert_eq!(packet, Packet::PingReq);
    assert_reencodes_exactly(&packet, V3_1_1, &bytes);
}

/// `mosquitto_sub -V 5 -i p5 -k 5 -t p -W 6 -h 127.0.0.1 -p PORT`: SUBSCRIBE, PINGREQ, and
/// on the -W timeout a DISCONNECT with reason 0x04 (Disconnect with Will Message).
#[test]
fn mosquitto_sub_v5_subscribe_pingreq_and_disconnect_with_will() {
    let bytes = wire(&[
        &[0x82, 0x07], // SUBSCRIBE, remaining length 7
        &[0x00, 0x01], // packet identifier 1
        &[0x00],       // properties: none
        b"\x00\x01p",  // topic filter
        &[0x00],       // options: QoS 0
    ]);
    let packet = decode_fixture(&bytes, Some(V5));
    let expected = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![(filter("p"), qos_only(QoS::AtMostOnce))],
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);

    let bytes = [0xC0, 0x00]; // PINGREQ, remaining length 0
    let packet = decode_fixture(&bytes, Some(V5));
    assert_eq!(packet, Packet::PingReq);
    assert_reencodes_exactly(&packet, V5, &bytes);

    let bytes = [
        0xE0, 0x01, // DISCONNECT, remaining length 1
        0x04, // reason: Disconnect with Will Message; no properties (may be omitted)
    ];
    let packet = decode_fixture(&bytes, Some(V5));
    let expected = Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::DisconnectWithWillMessage,
        properties: DisconnectProperties::default(),
    });
    assert_eq!(packet, expected);
    assert_reencodes_exactly(&packet, V5, &bytes);
}

fn qos_only(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

// ---------------------------------------------------------------------------------------
// The Mosquitto 2.0.11 broker's answers (scripts/capture-fixtures.py broker)
// ---------------------------------------------------------------------------------------
// `/usr/sbin/mosquitto -c CONF` with CONF = `listener PORT 127.0.0.1`, `allow_anonymous
// true`, `persistence false`; a raw socket sent CONNECT (client id raw311 / raw5, clean,
// keep alive 60), SUBSCRIBE a/b QoS 2 + c/# QoS 1 (id 1), PUBLISH QoS 1 to a/b (id 2),
// PUBLISH QoS 2 to z (id 3), PUBREL (id 3), UNSUBSCRIBE c/# (id 4), PINGREQ.

/// MQTT 3.1.1: CONNACK, SUBACK, the delivered PUBLISH, PUBACK, PUBREC, PUBCOMP, UNSUBACK,
/// PINGRESP, in the order the broker sent them.
#[test]
fn mosquitto_broker_v311_answers() {
    let connack = [
        0x20, 0x02, // CONNACK, remaining length 2
        0x00, // acknowledge flags: no session present
        0x00, // return code 0: accepted
    ];
    let suback = [
        0x90, 0x04, // SUBACK, remaining length 4
        0x00, 0x01, // packet identifier 1
        0x02, // a/b: granted QoS 2
        0x01, // c/#: granted QoS 1
    ];
    let delivered = wire(&[
        &[0x32, 0x09],  // PUBLISH, QoS 1; remaining length 9
        b"\x00\x03a/b", // topic name
        &[0x00, 0x01],  // packet identifier 1: the broker's own numbering
        b"p1",          // payload
    ]);
    let puback = [0x40, 0x02, 0x00, 0x02]; // PUBACK, length 2, packet identifier 2
    let pubrec = [0x50, 0x02, 0x00, 0x03]; // PUBREC, length 2, packet identifier 3
    let pubcomp = [0x70, 0x02, 0x00, 0x03]; // PUBCOMP, length 2, packet identifier 3
    let unsuback = [0xB0, 0x02, 0x00, 0x04]; // UNSUBACK, length 2, packet identifier 4
    let pingresp = [0xD0, 0x00]; // PINGRESP, remaining length 0

    let expected: [(&[u8], Packet); 8] = [
        (
            &connack,
            Packet::ConnAck(Box::new(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: ConnAckProperties::default(),
            })),
        ),
        (
            &suback,
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::GrantedQoS2, ReasonCode::GrantedQoS1],
            }),
        ),
        (
            &delivered,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic("a/b"),
                packet_id: Some(pid(1)),
                properties: Default::default(),
                payload: Bytes::from_static(b"p1"),
            }),
        ),
        (&puback, Packet::PubAck(Ack::success(pid(2)))),
        (&pubrec, Packet::PubRec(Ack::success(pid(3)))),
        (&pubcomp, Packet::PubComp(Ack::success(pid(3)))),
        (
            &unsuback,
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(4),
                properties: AckProperties::default(),
                reason_codes: vec![],
            }),
        ),
        (&pingresp, Packet::PingResp),
    ];
    for (bytes, packet) in expected {
        assert_eq!(
            decode_fixture(bytes, Some(V3_1_1)),
            packet,
            "{}",
            hex(bytes)
        );
        assert_reencodes_exactly(&packet, V3_1_1, bytes);
    }
}

/// MQTT 5: the same exchange. CONNACK carries Mosquitto's defaults as properties; acks
/// with reason Success and no properties use the short forms.
#[test]
fn mosquitto_broker_v5_answers() {
    let connack = [
        0x20, 0x09, // CONNACK, remaining length 9
        0x00, // acknowledge flags: no session present
        0x00, // reason: Success
        0x06, // properties: 6 bytes
        0x22, 0x00, 0x0A, //   topic alias maximum 10
        0x21, 0x00, 0x14, //   receive maximum 20
    ];
    let suback = [
        0x90, 0x05, // SUBACK, remaining length 5
        0x00, 0x01, // packet identifier 1
        0x00, // properties: none
        0x02, // a/b: Granted QoS 2
        0x01, // c/#: Granted QoS 1
    ];
    let delivered = wire(&[
        &[0x32, 0x0A],  // PUBLISH, QoS 1; remaining length 10
        b"\x00\x03a/b", // topic name
        &[0x00, 0x01],  // packet identifier 1
        &[0x00],        // properties: none
        b"p1",          // payload
    ]);
    let puback = [0x40, 0x02, 0x00, 0x02]; // PUBACK, id 2; Success and no properties omitted
    let pubrec = [0x50, 0x02, 0x00, 0x03]; // PUBREC, id 3, likewise
    let pubcomp = [0x70, 0x02, 0x00, 0x03]; // PUBCOMP, id 3, likewise
    let unsuback = [
        0xB0, 0x04, // UNSUBACK, remaining length 4
        0x00, 0x04, // packet identifier 4
        0x00, // properties: none
        0x00, // c/#: Success
    ];

    let connack_packet = Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            topic_alias_maximum: Some(10),
            receive_maximum: NonZeroU16::new(20),
            ..ConnAckProperties::default()
        },
    }));
    assert_eq!(decode_fixture(&connack, Some(V5)), connack_packet);
    // Mosquitto lists topic alias maximum before receive maximum: either order is valid.
    assert_reencodes_equivalently(&connack_packet, V5, &connack);

    let expected: [(&[u8], Packet); 6] = [
        (
            &suback,
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::GrantedQoS2, ReasonCode::GrantedQoS1],
            }),
        ),
        (
            &delivered,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic("a/b"),
                packet_id: Some(pid(1)),
                properties: Default::default(),
                payload: Bytes::from_static(b"p1"),
            }),
        ),
        (&puback, Packet::PubAck(Ack::success(pid(2)))),
        (&pubrec, Packet::PubRec(Ack::success(pid(3)))),
        (&pubcomp, Packet::PubComp(Ack::success(pid(3)))),
        (
            &unsuback,
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(4),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
        ),
    ];
    for (bytes, packet) in expected {
        assert_eq!(decode_fixture(bytes, Some(V5)), packet, "{}", hex(bytes));
        assert_reencodes_exactly(&packet, V5, bytes);
    }
}

// ---------------------------------------------------------------------------------------
// rumqttc 0.24 (dev-dependency), the sessions of `rumqttc_v311_session` and
// `rumqttc_v5_session` below; `rumqttc_sends_exactly_the_fixtures` re-captures them live
// ---------------------------------------------------------------------------------------

/// What rumqttc's 3.1.1 API sends: `MqttOptions::new("rumqttc-311", ..)`, keep alive 30 s,
/// credentials carol/pw311, will `status/rc` "offline" QoS 1 retained; then publish QoS 1,
/// publish QoS 2 retained, subscribe, unsubscribe, disconnect.
fn rumqttc_v311_frames() -> Vec<Vec<u8>> {
    vec![
        wire(&[
            &[0x10, 0x39],          // CONNECT, remaining length 57
            b"\x00\x04MQTT",        // protocol name
            &[0x04],                // protocol level 4
            &[0xEE],                // flags: user, password, will retain, will QoS 1, will, clean
            &[0x00, 0x1E],          // keep alive 30 s
            b"\x00\x0Brumqttc-311", // client identifier
            b"\x00\x09status/rc",   // will topic
            b"\x00\x07offline",     // will payload
            b"\x00\x05carol",       // user name
            b"\x00\x05pw311",       // password
        ]),
        wire(&[
            &[0x32, 0x12],        // PUBLISH, QoS 1; remaining length 18
            b"\x00\x09rc/v311/a", // topic name
            &[0x00, 0x01],        // packet identifier 1
            b"hello",             // payload
        ]),
        wire(&[
            &[0x35, 0x0C],    // PUBLISH, QoS 2, RETAIN; remaining length 12
            b"\x00\x05rc/q2", // topic name
            &[0x00, 0x02],    // packet identifier 2
            b"two",           // payload
        ]),
        wire(&[
            &[0x62, 0x02], // PUBREL, remaining length 2
            &[0x00, 0x02], // packet identifier 2
        ]),
        wire(&[
            &[0x82, 0x0B],     // SUBSCRIBE, remaining length 11
            &[0x00, 0x03],     // packet identifier 3
            b"\x00\x06rc/+/b", // topic filter
            &[0x02],           // requested QoS 2
        ]),
        wire(&[
            &[0xA2, 0x0A],     // UNSUBSCRIBE (reserved flags 0010), remaining length 10
            &[0x00, 0x04],     // packet identifier 4
            b"\x00\x06rc/+/b", // topic filter
        ]),
        wire(&[&[0xE0, 0x00]]), // DISCONNECT
    ]
}

/// What `rumqttc::v5` sends: client id rumqttc-5, clean start off, keep alive 30 s,
/// session expiry 120 s, receive maximum 32, user property app=culex, will `status/rc5`
/// "bye" QoS 0 with will delay 5 s; PUBLISH QoS 1 with message expiry, user property and
/// content type; PUBLISH QoS 2 retained; SUBSCRIBE two filters with subscription id 9 and
/// v5 options; UNSUBSCRIBE; DISCONNECT.
fn rumqttc_v5_frames() -> Vec<Vec<u8>> {
    vec![
        wire(&[
            &[0x10, 0x42],                   // CONNECT, remaining length 66
            b"\x00\x04MQTT",                 // protocol name
            &[0x05],                         // protocol level 5
            &[0x04],                         // flags: will (QoS 0, not retained); no clean start
            &[0x00, 0x1E],                   // keep alive 30 s
            &[0x15],                         // properties: 21 bytes
            &[0x11, 0x00, 0x00, 0x00, 0x78], //   session expiry interval 120 s
            &[0x21, 0x00, 0x20],             //   receive maximum 32
            b"\x26\x00\x03app\x00\x05culex", //   user property (0x26) app = culex
            b"\x00\x09rumqttc-5",            // client identifier
            &[0x05],                         // will properties: 5 bytes
            &[0x18, 0x00, 0x00, 0x00, 0x05], //   will delay interval 5 s
            b"\x00\x0Astatus/rc5",           // will topic
            b"\x00\x03bye",                  // will payload
        ]),
        wire(&[
            &[0x32, 0x25],                   // PUBLISH, QoS 1; remaining length 37
            b"\x00\x05rc/v5",                // topic name
            &[0x00, 0x01],                   // packet identifier 1
            &[0x19],                         // properties: 25 bytes
            &[0x02, 0x00, 0x00, 0x00, 0x1E], //   message expiry interval 30 s
            b"\x26\x00\x01k\x00\x01v",       //   user property (0x26) k = v
            b"\x03\x00\x0Atext/plain",       //   content type (0x03)
            b"hi",                           // payload
        ]),
        wire(&[
            &[0x35, 0x0D],    // PUBLISH, QoS 2, RETAIN; remaining length 13
            b"\x00\x05rc/q2", // topic name
            &[0x00, 0x02],    // packet identifier 2
            &[0x00],          // properties: none
            b"two",           // payload
        ]),
        wire(&[
            &[0x62, 0x02], // PUBREL, remaining length 2 (short form)
            &[0x00, 0x02], // packet identifier 2
        ]),
        wire(&[
            &[0x82, 0x15],     // SUBSCRIBE, remaining length 21
            &[0x00, 0x03],     // packet identifier 3
            &[0x02],           // properties: 2 bytes
            &[0x0B, 0x09],     //   subscription identifier 9
            b"\x00\x06rc/+/b", // topic filter 1
            &[0x1E],           //   QoS 2, No Local, RAP, retain handling 1
            b"\x00\x04rc/#",   // topic filter 2
            &[0x20],           //   QoS 0, retain handling 2 (do not send)
        ]),
        wire(&[
            &[0xA2, 0x09],   // UNSUBSCRIBE, remaining length 9
            &[0x00, 0x04],   // packet identifier 4
            &[0x00],         // properties: none
            b"\x00\x04rc/#", // topic filter
        ]),
        wire(&[&[0xE0, 0x00]]), // DISCONNECT: Normal disconnection
    ]
}

fn rumqttc_v311_packets() -> Vec<Packet> {
    vec![
        Packet::Connect(Box::new(Connect {
            protocol_version: V3_1_1,
            clean_start: true,
            keep_alive_s: 30,
            client_id: client_id("rumqttc-311"),
            will: Some(Will {
                topic: topic("status/rc"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            user_name: Some(text("carol")),
            password: Some(Bytes::from_static(b"pw311")),
            properties: ConnectProperties::default(),
        })),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic("rc/v311/a"),
            packet_id: Some(pid(1)),
            properties: Default::default(),
            payload: Bytes::from_static(b"hello"),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: topic("rc/q2"),
            packet_id: Some(pid(2)),
            properties: Default::default(),
            payload: Bytes::from_static(b"two"),
        }),
        Packet::PubRel(Ack::success(pid(2))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            properties: SubscribeProperties::default(),
            filters: vec![(filter("rc/+/b"), qos_only(QoS::ExactlyOnce))],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            properties: UnsubscribeProperties::default(),
            filters: vec![filter("rc/+/b")],
        }),
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    ]
}

fn rumqttc_v5_packets() -> Vec<Packet> {
    vec![
        Packet::Connect(Box::new(Connect {
            protocol_version: V5,
            clean_start: false,
            keep_alive_s: 30,
            client_id: client_id("rumqttc-5"),
            will: Some(Will {
                topic: topic("status/rc5"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: WillProperties {
                    will_delay_interval_s: Some(5),
                    ..WillProperties::default()
                },
            }),
            user_name: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval_s: Some(120),
                receive_maximum: NonZeroU16::new(32),
                user_properties: vec![user("app", "culex")],
                ..ConnectProperties::default()
            },
        })),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic("rc/v5"),
            packet_id: Some(pid(1)),
            properties: PublishProperties {
                message_expiry_interval_s: Some(30),
                user_properties: vec![user("k", "v")],
                content_type: Some(text("text/plain")),
                ..PublishProperties::default()
            }
            .into(),
            payload: Bytes::from_static(b"hi"),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: topic("rc/q2"),
            packet_id: Some(pid(2)),
            properties: Default::default(),
            payload: Bytes::from_static(b"two"),
        }),
        Packet::PubRel(Ack::success(pid(2))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            properties: SubscribeProperties {
                subscription_identifier: NonZeroU32::new(9),
                user_properties: vec![],
            },
            filters: vec![
                (
                    filter("rc/+/b"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendAtSubscribeIfNew,
                    },
                ),
                (
                    filter("rc/#"),
                    SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            properties: UnsubscribeProperties::default(),
            filters: vec![filter("rc/#")],
        }),
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    ]
}

/// Decodes a whole captured session as one stream, the way a connection's read buffer
/// holds it: CONNECT first with no version, then the rest in the version it chose.
fn assert_session_decodes(frames: &[Vec<u8>], packets: &[Packet], version: ProtocolVersion) {
    assert_eq!(frames.len(), packets.len());
    let mut decoder = None;
    for (bytes, packet) in frames.iter().zip(packets) {
        assert_eq!(&decode_fixture(bytes, decoder), packet, "{}", hex(bytes));
        decoder = Some(version);
    }
    let stream: Vec<u8> = frames.concat();
    let mut buf = BytesMut::from(&stream[..]);
    let mut decoder = None;
    for packet in packets {
        assert_eq!(
            decode(&mut buf, decoder, u32::MAX).as_ref(),
            Ok(&Some(packet.clone()))
        );
        decoder = Some(version);
    }
    assert!(buf.is_empty());
}

#[test]
fn rumqttc_v311_fixtures_decode() {
    let frames = rumqttc_v311_frames();
    let packets = rumqttc_v311_packets();
    assert_session_decodes(&frames, &packets, V3_1_1);
    for (bytes, packet) in frames.iter().zip(&packets) {
        assert_reencodes_exactly(packet, V3_1_1, bytes);
    }
}

#[test]
fn rumqttc_v5_fixtures_decode() {
    let frames = rumqttc_v5_frames();
    let packets = rumqttc_v5_packets();
    assert_session_decodes(&frames, &packets, V5);
    for (bytes, packet) in frames.iter().zip(&packets) {
        assert_reencodes_exactly(packet, V5, bytes);
    }
}

/// The fixtures above are what rumqttc really sends: captured again on every run.
#[tokio::test]
async fn rumqttc_sends_exactly_the_fixtures() {
    let hex_all = |frames: &[Vec<u8>]| frames.iter().map(|f| hex(f)).collect::<Vec<_>>();
    let captured = capture(rumqttc_v311_session).await;
    assert_eq!(hex_all(&captured), hex_all(&rumqttc_v311_frames()));
    let captured = capture(rumqttc_v5_session).await;
    assert_eq!(hex_all(&captured), hex_all(&rumqttc_v5_frames()));
}

// ---------------------------------------------------------------------------------------
// rumqttc 0.24, captured live against an in-process fake server
// ---------------------------------------------------------------------------------------

/// Reads one whole frame with its own minimal framing (not our codec: the capture must not
/// depend on the code under test). `None` at end of stream.
async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut frame = vec![stream.read_u8().await.ok()?];
    let mut remaining = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = stream.read_u8().await.ok()?;
        frame.push(byte);
        remaining |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let start = frame.len();
    frame.resize(start + remaining, 0);
    stream.read_exact(&mut frame[start..]).await.ok()?;
    Some(frame)
}

/// The answer that lets the client proceed (CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK,
/// UNSUBACK), built by hand for the same reason.
fn fake_server_answer(frame: &[u8], v5: bool) -> Option<Vec<u8>> {
    let header_len = 1 + frame[1..].iter().position(|b| b & 0x80 == 0)? + 1;
    let body = &frame[header_len..];
    let packet_id_at = |at: usize| body.get(at..at + 2).map(<[u8]>::to_vec);
    match frame[0] >> 4 {
        1 if v5 => Some(vec![0x20, 0x03, 0x00, 0x00, 0x00]),
        1 => Some(vec![0x20, 0x02, 0x00, 0x00]),
        3 => {
            let qos = (frame[0] >> 1) & 3;
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let id = packet_id_at(2 + topic_len)?;
            match qos {
                1 => Some([&[0x40, 0x02][..], &id].concat()),
                2 => Some([&[0x50, 0x02][..], &id].concat()),
                _ => None,
            }
        }
        6 => Some([&[0x70, 0x02][..], &packet_id_at(0)?].concat()),
        // SUBACK granting QoS 1 to every filter; a well-behaved client accepts any count.
        8 if v5 => Some([&[0x90, 0x04][..], &packet_id_at(0)?, &[0x00, 0x01]].concat()),
        8 => Some([&[0x90, 0x03][..], &packet_id_at(0)?, &[0x01]].concat()),
        10 if v5 => Some([&[0xB0, 0x04][..], &packet_id_at(0)?, &[0x00, 0x00]].concat()),
        10 => Some([&[0xB0, 0x02][..], &packet_id_at(0)?].concat()),
        12 => Some(vec![0xD0, 0x00]),
        _ => None,
    }
}

/// Accepts one connection on 127.0.0.1, records every frame the client sends until its
/// DISCONNECT (or the end of the stream), answering so that it proceeds.
async fn fake_server(listener: tokio::net::TcpListener) -> Vec<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let (mut stream, _) = listener.accept().await.expect("the client connects");
    let mut frames = Vec::new();
    let mut v5 = false;
    while let Some(frame) = read_frame(&mut stream).await {
        if frame[0] >> 4 == 1 {
            // CONNECT: the protocol level follows the 2-byte-prefixed protocol name.
            let name_len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
            v5 = frame.get(4 + name_len) == Some(&5);
        }
        if let Some(answer) = fake_server_answer(&frame, v5) {
            stream.write_all(&answer).await.expect("the client reads");
        }
        let disconnect = frame[0] >> 4 == 14;
        frames.push(frame);
        if disconnect {
            break;
        }
    }
    frames
}

/// Runs `client` (which drives a real rumqttc client to `port`) against the fake server,
/// both bounded in time, and returns what the client sent.
async fn capture<F, Fut>(client: F) -> Vec<Vec<u8>>
where
    F: FnOnce(u16) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let port = listener.local_addr().expect("bound").port();
    let server = tokio::spawn(fake_server(listener));
    let client = tokio::spawn(client(port));
    let frames = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the client finishes within 10 s")
        .expect("the fake server does not panic");
    client.abort();
    frames
}

/// rumqttc's 3.1.1 API, one step per acknowledgement so the packet order is fixed:
/// CONNECT, PUBLISH QoS 1, PUBLISH QoS 2 retained, PUBREL, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT.
async fn rumqttc_v311_session(port: u16) {
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet as P, QoS as Q};
    let mut options = MqttOptions::new("rumqttc-311", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials("carol", "pw311");
    options.set_last_will(LastWill::new("status/rc", "offline", Q::AtLeastOnce, true));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    while let Ok(event) = eventloop.poll().await {
        let Event::Incoming(incoming) = event else {
            continue;
        };
        let step = match incoming {
            P::ConnAck(_) => client.try_publish("rc/v311/a", Q::AtLeastOnce, false, "hello"),
            P::PubAck(_) => client.try_publish("rc/q2", Q::ExactlyOnce, true, "two"),
            P::PubComp(_) => client.try_subscribe("rc/+/b", Q::ExactlyOnce),
            P::SubAck(_) => client.try_unsubscribe("rc/+/b"),
            P::UnsubAck(_) => client.try_disconnect(),
            _ => Ok(()),
        };
        step.expect("the request channel has room");
    }
}

/// rumqttc's MQTT 5 API (`rumqttc::v5`), the same steps, with properties on CONNECT, the
/// will, PUBLISH and SUBSCRIBE, and v5 subscription options.
async fn rumqttc_v5_session(port: u16) {
    use rumqttc::v5::mqttbytes::v5::{
        ConnectProperties as CP, Filter, LastWill, LastWillProperties, Packet as P,
        PublishProperties as PP, RetainForwardRule, SubscribeProperties as SP,
    };
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut options = MqttOptions::new("rumqttc-5", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_start(false);
    let mut connect_properties = CP::new();
    connect_properties.session_expiry_interval = Some(120);
    connect_properties.receive_maximum = Some(32);
    connect_properties.user_properties = vec![("app".into(), "culex".into())];
    options.set_connect_properties(connect_properties);
    let will_properties = LastWillProperties {
        delay_interval: Some(5),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![],
    };
    options.set_last_will(LastWill::new(
        "status/rc5",
        "bye",
        Q::AtMostOnce,
        false,
        Some(will_properties),
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    while let Ok(event) = eventloop.poll().await {
        let Event::Incoming(incoming) = event else {
            continue;
        };
        let step = match incoming {
            P::ConnAck(_) => {
                let properties = PP {
                    message_expiry_interval: Some(30),
                    user_properties: vec![("k".into(), "v".into())],
                    content_type: Some("text/plain".into()),
                    ..PP::default()
                };
                client.try_publish_with_properties("rc/v5", Q::AtLeastOnce, false, "hi", properties)
            }
            P::PubAck(..) => client.try_publish("rc/q2", Q::ExactlyOnce, true, "two"),
            P::PubComp(..) => {
                let mut no_local = Filter::new("rc/+/b", Q::ExactlyOnce);
                no_local.nolocal = true;
                no_local.preserve_retain = true;
                no_local.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
                let mut never = Filter::new("rc/#", Q::AtMostOnce);
                never.retain_forward_rule = RetainForwardRule::Never;
                let properties = SP {
                    id: Some(9),
                    user_properties: vec![],
                };
                client.try_subscribe_many_with_properties([no_local, never], properties)
            }
            P::SubAck(..) => client.try_unsubscribe("rc/#"),
            P::UnsubAck(..) => client.try_disconnect(),
            _ => Ok(()),
        };
        step.expect("the request channel has room");
    }
}

// ---------------------------------------------------------------------------------------
// Hand-made malformed packets: each breaks one rule of the spec, and must be refused with
// the error naming that rule (and so the reason code the connection closes with)
// ---------------------------------------------------------------------------------------

type Check = fn(&DecodeError) -> bool;

/// (what is wrong, decoder version, the bytes, the error it must give).
fn malformed_cases() -> Vec<(&'static str, Option<ProtocolVersion>, Vec<u8>, Check)> {
    use culex::protocol::TopicError;
    use DecodeError as E;
    vec![
        (
            "packet type 0 is reserved",
            Some(V3_1_1),
            vec![0x00, 0x00],
            |e| *e == E::InvalidPacketType(0),
        ),
        (
            "PUBLISH with QoS 3 [MQTT-3.3.1-4]",
            Some(V3_1_1),
            wire(&[&[0x36, 0x05], b"\x00\x01t", &[0x00, 0x01]]),
            |e| *e == E::InvalidQoS,
        ),
        (
            "DUP on a QoS 0 PUBLISH [MQTT-3.3.1-2]",
            Some(V3_1_1),
            wire(&[&[0x38, 0x03], b"\x00\x01t"]),
            |e| *e == E::DupOnQoS0,
        ),
        (
            "PUBREL flags must be 0010 [MQTT-3.6.1-1]",
            Some(V3_1_1),
            vec![0x60, 0x02, 0x00, 0x01],
            |e| {
                *e == E::InvalidHeaderFlags {
                    packet_type: 6,
                    flags: 0,
                }
            },
        ),
        (
            "SUBSCRIBE flags must be 0010 [MQTT-3.8.1-1]",
            Some(V5),
            wire(&[&[0x80, 0x07, 0x00, 0x01, 0x00], b"\x00\x01a", &[0x00]]),
            |e| {
                *e == E::InvalidHeaderFlags {
                    packet_type: 8,
                    flags: 0,
                }
            },
        ),
        (
            "PINGREQ flags must be 0000",
            Some(V3_1_1),
            vec![0xC1, 0x00],
            |e| {
                *e == E::InvalidHeaderFlags {
                    packet_type: 12,
                    flags: 1,
                }
            },
        ),
        (
            "PUBACK of packet identifier 0 [MQTT-2.2.1-3]",
            Some(V3_1_1),
            vec![0x40, 0x02, 0x00, 0x00],
            |e| *e == E::ZeroPacketId,
        ),
        (
            "QoS 1 PUBLISH with packet identifier 0",
            Some(V5),
            wire(&[&[0x32, 0x06], b"\x00\x01t", &[0x00, 0x00], &[0x00]]),
            |e| *e == E::ZeroPacketId,
        ),
        (
            "wildcard in a PUBLISH topic [MQTT-3.3.2-2]",
            Some(V3_1_1),
            wire(&[&[0x30, 0x05], b"\x00\x03a/+"]),
            |e| *e == E::InvalidTopicName(TopicError::WildcardInName),
        ),
        (
            "U+0000 in a PUBLISH topic [MQTT-1.5.4-2]",
            Some(V3_1_1),
            wire(&[&[0x30, 0x03], b"\x00\x01\x00"]),
            |e| {
                matches!(
                    e,
                    E::NullCharacter { .. } | E::InvalidTopicName(TopicError::NullCharacter)
                )
            },
        ),
        (
            "ill-formed UTF-8 in a PUBLISH topic [MQTT-1.5.4-1]",
            Some(V3_1_1),
            wire(&[&[0x30, 0x03], b"\x00\x01\xFF"]),
            |e| matches!(e, E::InvalidUtf8 { .. }),
        ),
        (
            "UTF-16 surrogate (CESU-8 bytes) in a topic [MQTT-1.5.4-1]",
            Some(V5),
            wire(&[&[0x30, 0x06], b"\x00\x03\xED\xA0\x80", &[0x00]]),
            |e| matches!(e, E::InvalidUtf8 { .. }),
        ),
        (
            "MQTT 5 PUBLISH with an empty topic and no alias",
            Some(V5),
            wire(&[&[0x30, 0x03], b"\x00\x00", &[0x00]]),
            |e| e.reason_code().is_error() && !matches!(e, E::UnexpectedEnd { .. }),
        ),
        (
            "CONNECT reserved flag set [MQTT-3.1.2-3]",
            None,
            wire(&[
                &[0x10, 0x0D],
                b"\x00\x04MQTT",
                &[0x04, 0x03, 0x00, 0x3C],
                b"\x00\x01c",
            ]),
            |e| *e == E::ConnectReservedFlag,
        ),
        (
            "CONNECT will QoS without the will flag [MQTT-3.1.2-11]",
            None,
            wire(&[
                &[0x10, 0x0D],
                b"\x00\x04MQTT",
                &[0x04, 0x0A, 0x00, 0x3C],
                b"\x00\x01c",
            ]),
            |e| *e == E::InvalidWillFlags,
        ),
        (
            "CONNECT will retain without the will flag [MQTT-3.1.2-13]",
            None,
            wire(&[
                &[0x10, 0x0D],
                b"\x00\x04MQTT",
                &[0x04, 0x22, 0x00, 0x3C],
                b"\x00\x01c",
            ]),
            |e| *e == E::InvalidWillFlags,
        ),
        (
            "CONNECT will QoS 3 [MQTT-3.1.2-14]",
            None,
            wire(&[
                &[0x10, 0x13],
                b"\x00\x04MQTT",
                &[0x04, 0x1E, 0x00, 0x3C],
                b"\x00\x01c",
                b"\x00\x01w",
                b"\x00\x01x",
            ]),
            |e| *e == E::InvalidQoS,
        ),
        (
            "MQTT 3.1.1 CONNECT with a password and no user name [MQTT-3.1.2-22]",
            None,
            wire(&[
                &[0x10, 0x11],
                b"\x00\x04MQTT",
                &[0x04, 0x42, 0x00, 0x3C],
                b"\x00\x01c",
                b"\x00\x02pw",
            ]),
            |e| *e == E::PasswordWithoutUserName,
        ),
        (
            "CONNECT protocol name MQTX",
            None,
            wire(&[
                &[0x10, 0x0D],
                b"\x00\x04MQTX",
                &[0x04, 0x02, 0x00, 0x3C],
                b"\x00\x01c",
            ]),
            |e| *e == E::InvalidProtocolName,
        ),
        (
            "CONNECT protocol level 6",
            None,
            wire(&[
                &[0x10, 0x0D],
                b"\x00\x04MQTT",
                &[0x06, 0x02, 0x00, 0x3C],
                b"\x00\x01c",
            ]),
            |e| *e == E::UnsupportedProtocolVersion(6),
        ),
        (
            "CONNECT name MQIsdp with level 4",
            None,
            wire(&[
                &[0x10, 0x0F],
                b"\x00\x06MQIsdp",
                &[0x04, 0x02, 0x00, 0x3C],
                b"\x00\x01c",
            ]),
            |e| *e == E::InvalidProtocolName,
        ),
        (
            "MQTT 5 CONNECT with receive maximum 0",
            None,
            wire(&[
                &[0x10, 0x11],
                b"\x00\x04MQTT",
                &[0x05, 0x02, 0x00, 0x3C],
                &[0x03, 0x21, 0x00, 0x00],
                b"\x00\x01c",
            ]),
            |e| *e == E::InvalidPropertyValue { property: 0x21 },
        ),
        (
            "CONNACK acknowledge flags with reserved bits [MQTT-3.2.2-1]",
            Some(V3_1_1),
            vec![0x20, 0x02, 0x02, 0x00],
            |e| *e == E::ConnAckReservedFlags,
        ),
        (
            "SUBSCRIBE with no filter [MQTT-3.8.3-3]",
            Some(V3_1_1),
            vec![0x82, 0x02, 0x00, 0x01],
            |e| *e == E::NoTopicFilters,
        ),
        (
            "UNSUBSCRIBE with no filter [MQTT-3.10.3-2]",
            Some(V5),
            vec![0xA2, 0x03, 0x00, 0x01, 0x00],
            |e| *e == E::NoTopicFilters,
        ),
        (
            "MQTT 3.1.1 subscription options with reserved bits [MQTT-3.8.3-4]",
            Some(V3_1_1),
            wire(&[&[0x82, 0x06, 0x00, 0x01], b"\x00\x01a", &[0x04]]),
            |e| *e == E::SubscriptionOptionsReserved,
        ),
        (
            "MQTT 5 subscription options with bits 6-7 set [MQTT-3.8.3-5]",
            Some(V5),
            wire(&[&[0x82, 0x07, 0x00, 0x01, 0x00], b"\x00\x01a", &[0xC1]]),
            |e| *e == E::SubscriptionOptionsReserved,
        ),
        (
            "MQTT 5 retain handling 3 [MQTT-3.8.3-5]",
            Some(V5),
            wire(&[&[0x82, 0x07, 0x00, 0x01, 0x00], b"\x00\x01a", &[0x30]]),
            |e| *e == E::InvalidRetainHandling,
        ),
        (
            "No Local on a shared subscription [MQTT-3.8.3-4]",
            Some(V5),
            wire(&[
                &[0x82, 0x10, 0x00, 0x01, 0x00],
                b"\x00\x0A$share/g/a",
                &[0x04],
            ]),
            |e| *e == E::NoLocalOnSharedSubscription,
        ),
        (
            "SUBSCRIBE filter with # not last [MQTT-4.7.1-2]",
            Some(V3_1_1),
            wire(&[&[0x82, 0x0A, 0x00, 0x01], b"\x00\x05a/#/b", &[0x00]]),
            |e| *e == E::InvalidTopicFilter(TopicError::MultiLevelWildcardMisplaced),
        ),
        (
            "unknown property 0x7F",
            Some(V5),
            wire(&[&[0x32, 0x07], b"\x00\x01t", &[0x00, 0x01], &[0x01, 0x7F]]),
            |e| *e == E::UnknownProperty(0x7F),
        ),
        (
            "session expiry interval in a PUBLISH",
            Some(V5),
            wire(&[
                &[0x32, 0x0B],
                b"\x00\x01t",
                &[0x00, 0x01],
                &[0x05, 0x11, 0x00, 0x00, 0x00, 0x3C],
            ]),
            |e| {
                *e == E::PropertyNotAllowed {
                    property: 0x11,
                    packet_type: 3,
                }
            },
        ),
        (
            "message expiry interval given twice",
            Some(V5),
            wire(&[
                &[0x32, 0x10],
                b"\x00\x01t",
                &[0x00, 0x01],
                &[0x0A],
                &[0x02, 0x00, 0x00, 0x00, 0x3C],
                &[0x02, 0x00, 0x00, 0x00, 0x3C],
            ]),
            |e| *e == E::DuplicateProperty(0x02),
        ),
        (
            "topic alias 0 [MQTT-3.3.2-8]",
            Some(V5),
            wire(&[&[0x30, 0x07], b"\x00\x01t", &[0x03, 0x23, 0x00, 0x00]]),
            |e| *e == E::InvalidPropertyValue { property: 0x23 },
        ),
        (
            "payload format indicator 2",
            Some(V5),
            wire(&[&[0x30, 0x06], b"\x00\x01t", &[0x02, 0x01, 0x02]]),
            |e| *e == E::InvalidPropertyValue { property: 0x01 },
        ),
        (
            "subscription identifier 0 in SUBSCRIBE",
            Some(V5),
            wire(&[
                &[0x82, 0x09, 0x00, 0x01],
                &[0x02, 0x0B, 0x00],
                b"\x00\x01a",
                &[0x00],
            ]),
            |e| *e == E::InvalidPropertyValue { property: 0x0B },
        ),
        (
            "property length past the end of the packet",
            Some(V5),
            wire(&[&[0x32, 0x07], b"\x00\x01t", &[0x00, 0x01], &[0x0A, 0x01]]),
            |e| matches!(e, E::PropertiesOverrun | E::UnexpectedEnd { .. }),
        ),
        (
            "PUBACK reason 0x04 (only for DISCONNECT)",
            Some(V5),
            vec![0x40, 0x03, 0x00, 0x01, 0x04],
            |e| {
                *e == E::InvalidReasonCode {
                    packet_type: 4,
                    code: 0x04,
                }
            },
        ),
        (
            "MQTT 3.1.1 PUBACK one byte too long",
            Some(V3_1_1),
            vec![0x40, 0x03, 0x00, 0x01, 0x00],
            |e| *e == E::TrailingBytes { count: 1 },
        ),
        (
            "MQTT 3.1.1 PINGREQ with a body",
            Some(V3_1_1),
            vec![0xC0, 0x01, 0x00],
            |e| matches!(e, E::TrailingBytes { count: 1 }),
        ),
        (
            "string length past the end of the packet",
            Some(V3_1_1),
            wire(&[&[0x30, 0x03], b"\x00\x05a"]),
            |e| matches!(e, E::UnexpectedEnd { .. }),
        ),
    ]
}

#[test]
fn malformed_packets_are_refused_with_the_rule_they_break() {
    let mut wrong = Vec::new();
    for (what, version, bytes, check) in malformed_cases() {
        let mut buf = BytesMut::from(&bytes[..]);
        match decode(&mut buf, version, u32::MAX) {
            Err(e) if check(&e) => {}
            other => wrong.push(format!("{what}: [{}] gave {other:?}", hex(&bytes))),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The positive twins of two refusals above: what MQTT 5 allows that 3.1.1 does not.
#[test]
fn v5_allows_a_password_without_a_user_name() {
    let bytes = wire(&[
        &[0x10, 0x12],             // CONNECT, remaining length 18
        b"\x00\x04MQTT",           // protocol name
        &[0x05, 0x42, 0x00, 0x3C], // level 5; flags: password, clean start; keep alive 60
        &[0x00],                   // properties: none
        b"\x00\x01c",              // client identifier
        b"\x00\x02pw",             // password
    ]);
    let Packet::Connect(connect) = decode_fixture(&bytes, None) else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.user_name, None);
    assert_eq!(connect.password, Some(Bytes::from_static(b"pw")));
}

/// The maximum packet size is checked from the fixed header by `decode` too.
#[test]
fn decode_refuses_a_packet_above_the_maximum_size() {
    let bytes = wire(&[&[0x30, 0x0B], b"\x00\x01t", b"payload!"]); // 13 bytes in all
    let mut buf = BytesMut::from(&bytes[..2]);
    assert!(matches!(
        decode(&mut buf, Some(V3_1_1), 12),
        Err(DecodeError::PacketTooLarge {
            size_bytes: 13,
            max_bytes: 12
        })
    ));
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        decode(&mut buf, Some(V3_1_1), 13),
        Ok(Some(Packet::Publish(_)))
    ));
}
