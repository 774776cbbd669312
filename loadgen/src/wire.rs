//! The client side of the MQTT wire format, specialised for load: encoders that append straight
//! into a connection's write buffer, and a frame scanner that finds whole packets in a read
//! buffer without building a `Packet` per message.
//!
//! Why not `culex::protocol` here: the hot path sends and receives millions of PUBLISH packets
//! per second; building a `Packet` (with its `Bytes` and properties) for each would cost more
//! than the broker we are measuring. The shared types (`QoS`, `ProtocolVersion`) still come from
//! the codec so the two agree on meaning, and `codec_agreement` below checks, both ways and in
//! every version, that what one writes the other reads the same.

use culex::protocol::{ProtocolVersion, QoS};

/// Control packet types (high nibble of the first byte), as MQTT names them.
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBACK: u8 = 9;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

/// What CONNECT carries for a load client (no will, no credentials).
#[derive(Debug, Clone)]
pub struct ConnectOptions<'a> {
    pub version: ProtocolVersion,
    pub client_id: &'a str,
    pub keepalive_s: u16,
    pub clean: bool,
    /// MQTT 5 only: how long the broker keeps the session after the connection closes.
    pub session_expiry_s: u32,
    /// MQTT 5 only: how many QoS 1/2 publishes the broker may have unacknowledged towards us.
    pub receive_maximum: u16,
}

/// Appends a variable byte integer (MQTT 1.5.5).
pub fn put_varint(buf: &mut Vec<u8>, mut value: usize) {
    debug_assert!(
        value <= 268_435_455,
        "remaining length above the MQTT maximum"
    );
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.push(byte);
        if value == 0 {
            return;
        }
    }
}

fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s);
}

pub fn put_connect(buf: &mut Vec<u8>, opts: &ConnectOptions<'_>) {
    let (name, level): (&[u8], u8) = match opts.version {
        ProtocolVersion::V3_1 => (b"MQIsdp", 3),
        ProtocolVersion::V3_1_1 => (b"MQTT", 4),
        ProtocolVersion::V5 => (b"MQTT", 5),
    };
    let mut props = Vec::new();
    if opts.version == ProtocolVersion::V5 {
        if opts.session_expiry_s > 0 {
            props.push(0x11);
            props.extend_from_slice(&opts.session_expiry_s.to_be_bytes());
        }
        props.push(0x21);
        props.extend_from_slice(&opts.receive_maximum.max(1).to_be_bytes());
    }
    let props_len = if opts.version == ProtocolVersion::V5 {
        varint_len(props.len()) + props.len()
    } else {
        0
    };
    let remaining = 2 + name.len() + 1 + 1 + 2 + props_len + 2 + opts.client_id.len();
    buf.push(0x10);
    put_varint(buf, remaining);
    put_str(buf, name);
    buf.push(level);
    buf.push(if opts.clean { 0x02 } else { 0 });
    buf.extend_from_slice(&opts.keepalive_s.to_be_bytes());
    if opts.version == ProtocolVersion::V5 {
        put_varint(buf, props.len());
        buf.extend_from_slice(&props);
    }
    put_str(buf, opts.client_id.as_bytes());
}

pub fn put_subscribe(
    buf: &mut Vec<u8>,
    version: ProtocolVersion,
    packet_id: u16,
    filter: &str,
    qos: QoS,
) {
    let v5 = version == ProtocolVersion::V5;
    let remaining = 2 + usize::from(v5) + 2 + filter.len() + 1;
    buf.push(0x82);
    put_varint(buf, remaining);
    buf.extend_from_slice(&packet_id.to_be_bytes());
    if v5 {
        buf.push(0); // no properties
    }
    put_str(buf, filter.as_bytes());
    buf.push(qos.bits());
}

/// Appends a PUBLISH whose payload is written by `fill` into the `payload_len` bytes reserved
/// for it; the payload is never built elsewhere and copied.
#[allow(clippy::too_many_arguments)]
pub fn put_publish(
    buf: &mut Vec<u8>,
    version: ProtocolVersion,
    topic: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: u16,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let v5 = version == ProtocolVersion::V5;
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id_len + usize::from(v5) + payload_len;
    buf.push(0x30 | (qos.bits() << 1) | u8::from(retain));
    put_varint(buf, remaining);
    put_str(buf, topic);
    if id_len > 0 {
        buf.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v5 {
        buf.push(0);
    }
    let start = buf.len();
    buf.resize(start + payload_len, 0);
    fill(&mut buf[start..]);
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP in the two-byte form every version accepts (in MQTT 5 an
/// omitted reason code means Success).
pub fn put_ack(buf: &mut Vec<u8>, kind: u8, packet_id: u16) {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    buf.push((kind << 4) | flags);
    buf.push(2);
    buf.extend_from_slice(&packet_id.to_be_bytes());
}

pub fn put_pingreq(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0xC0, 0x00]);
}

pub fn put_disconnect(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0xE0, 0x00]);
}

/// One whole packet found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub first_byte: u8,
    pub header_len: usize,
    pub total_len: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first_byte >> 4
    }
}

/// Errors that end a load connection: the broker sent something we cannot frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    MalformedLength,
    MalformedPublish,
}

/// Finds the whole packet at the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn scan(buf: &[u8]) -> Result<Option<Frame>, WireError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let header_len = 2 + i;
            let total_len = header_len + remaining;
            return Ok((buf.len() >= total_len).then_some(Frame {
                first_byte,
                header_len,
                total_len,
            }));
        }
    }
    Err(WireError::MalformedLength)
}

/// The parts of a received PUBLISH the load generator looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    pub qos: u8,
    pub retain: bool,
    pub packet_id: u16,
    pub topic: &'a [u8],
    pub payload: &'a [u8],
}

/// Parses the body of a PUBLISH frame (`packet` is the whole frame).
pub fn parse_publish<'a>(
    packet: &'a [u8],
    frame: &Frame,
    version: ProtocolVersion,
) -> Result<PublishView<'a>, WireError> {
    let qos = (frame.first_byte >> 1) & 0x03;
    let body = packet
        .get(frame.header_len..frame.total_len)
        .ok_or(WireError::MalformedPublish)?;
    let topic_len = usize::from(u16::from_be_bytes([
        *body.first().ok_or(WireError::MalformedPublish)?,
        *body.get(1).ok_or(WireError::MalformedPublish)?,
    ]));
    let mut at = 2 + topic_len;
    let topic = body.get(2..at).ok_or(WireError::MalformedPublish)?;
    let mut packet_id = 0;
    if qos > 0 {
        let id = body.get(at..at + 2).ok_or(WireError::MalformedPublish)?;
        packet_id = u16::from_be_bytes([id[0], id[1]]);
        at += 2;
    }
    if version == ProtocolVersion::V5 {
        let (props_len, len_len) = read_varint(body.get(at..).unwrap_or(&[]))?;
        at += len_len + props_len;
    }
    let payload = body.get(at..).ok_or(WireError::MalformedPublish)?;
    Ok(PublishView {
        qos,
        retain: frame.first_byte & 1 == 1,
        packet_id,
        topic,
        payload,
    })
}

fn read_varint(buf: &[u8]) -> Result<(usize, usize), WireError> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *buf.get(i).ok_or(WireError::MalformedPublish)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(WireError::MalformedLength)
}

/// The packet id of an ack (PUBACK/PUBREC/PUBREL/PUBCOMP) frame.
pub fn ack_packet_id(packet: &[u8], frame: &Frame) -> Result<u16, WireError> {
    let id = packet
        .get(frame.header_len..frame.header_len + 2)
        .ok_or(WireError::MalformedPublish)?;
    Ok(u16::from_be_bytes([id[0], id[1]]))
}

/// CONNACK's return code (3.1.1) or reason code (5.0): 0 means accepted.
pub fn connack_code(packet: &[u8], frame: &Frame) -> Option<u8> {
    packet.get(frame.header_len + 1).copied()
}

/// SUBACK's first return code: 0x80 and above is a refusal.
pub fn suback_code(packet: &[u8], frame: &Frame, version: ProtocolVersion) -> Option<u8> {
    let mut at = frame.header_len + 2;
    if version == ProtocolVersion::V5 {
        let (len, len_len) = read_varint(packet.get(at..)?).ok()?;
        at += len_len + len;
    }
    packet.get(at).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_311_spells_the_spec_bytes() {
        let mut buf = Vec::new();
        put_connect(
            &mut buf,
            &ConnectOptions {
                version: ProtocolVersion::V3_1_1,
                client_id: "ab",
                keepalive_s: 60,
                clean: true,
                session_expiry_s: 0,
                receive_maximum: 10,
            },
        );
        #[rustfmt::skip]
        let expected = [
            0x10, 14,                           // CONNECT, remaining length
            0, 4, b'M', b'Q', b'T', b'T',       // protocol name
            4,                                  // level 3.1.1
            0x02,                               // clean session
            0, 60,                              // keepalive
            0, 2, b'a', b'b',                   // client id
        ];
        assert_eq!(buf, expected);
    }

    #[test]
    fn connect_v5_carries_properties() {
        let mut buf = Vec::new();
        put_connect(
            &mut buf,
            &ConnectOptions {
                version: ProtocolVersion::V5,
                client_id: "c",
                keepalive_s: 0,
                clean: false,
                session_expiry_s: 300,
                receive_maximum: 20,
            },
        );
        #[rustfmt::skip]
        let expected = [
            0x10, 22,
            0, 4, b'M', b'Q', b'T', b'T', 5, 0x00, 0, 0,
            8,                                  // properties length
            0x11, 0, 0, 1, 44,                  // session expiry 300
            0x21, 0, 20,                        // receive maximum 20
            0, 1, b'c',
        ];
        assert_eq!(buf, expected);
    }

    #[test]
    fn publish_round_trips_through_scan_and_parse() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = Vec::new();
            put_publish(
                &mut buf,
                version,
                b"a/b",
                QoS::AtLeastOnce,
                true,
                7,
                200,
                |p| p.fill(0xAB),
            );
            buf.extend_from_slice(&[0xD0]); // start of a next packet: the scan must stop before it
            let frame = scan(&buf).expect("valid").expect("whole");
            assert_eq!(frame.kind(), PUBLISH);
            assert_eq!(
                frame.header_len, 3,
                "200+ byte body needs a two-byte length"
            );
            assert_eq!(frame.total_len, buf.len() - 1);
            let view = parse_publish(&buf, &frame, version).expect("valid publish");
            assert_eq!(view.qos, 1);
            assert!(view.retain);
            assert_eq!(view.packet_id, 7);
            assert_eq!(view.topic, b"a/b");
            assert_eq!(view.payload.len(), 200);
            assert!(view.payload.iter().all(|&b| b == 0xAB));
        }
    }

    #[test]
    fn scan_waits_for_whole_frames_and_rejects_five_byte_lengths() {
        let mut buf = Vec::new();
        put_publish(
            &mut buf,
            ProtocolVersion::V3_1_1,
            b"t",
            QoS::AtMostOnce,
            false,
            0,
            10,
            |_| {},
        );
        for cut in 0..buf.len() {
            assert_eq!(scan(&buf[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            scan(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(WireError::MalformedLength)
        );
    }

    #[test]
    fn acks_and_subscribe() {
        let mut buf = Vec::new();
        put_ack(&mut buf, PUBREL, 0x0102);
        assert_eq!(buf, [0x62, 2, 1, 2]);
        let frame = scan(&buf).expect("valid").expect("whole");
        assert_eq!(ack_packet_id(&buf, &frame), Ok(0x0102));

        let mut buf = Vec::new();
        put_subscribe(&mut buf, ProtocolVersion::V5, 1, "x/#", QoS::ExactlyOnce);
        assert_eq!(buf, [0x82, 9, 0, 1, 0, 0, 3, b'x', b'/', b'#', 2]);

        let suback_v5 = [0x90, 4, 0, 1, 0, 0x80];
        let frame = scan(&suback_v5).expect("valid").expect("whole");
        assert_eq!(
            suback_code(&suback_v5, &frame, ProtocolVersion::V5),
            Some(0x80)
        );
    }
}

/// The loadgen's encoder and scanner against the broker's codec: what one writes the other
/// must read the same way, in every protocol version.
#[cfg(test)]
mod codec_agreement {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use culex::protocol::{self as codec, Ack, ConnAck, Packet, PacketId, SubAck, TopicName};

    const VERSIONS: [ProtocolVersion; 3] = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];

    fn decode(bytes: &[u8], version: Option<ProtocolVersion>) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let packet = codec::decode(&mut buf, version, 1 << 20)
            .expect("the codec accepts what the loadgen writes")
            .expect("one whole packet");
        assert!(buf.is_empty(), "the codec consumed exactly our frame");
        packet
    }

    #[test]
    fn codec_reads_our_connect_subscribe_publish_and_acks() {
        for version in VERSIONS {
            let mut buf = Vec::new();
            put_connect(
                &mut buf,
                &ConnectOptions {
                    version,
                    client_id: "lg-7",
                    keepalive_s: 30,
                    clean: false,
                    session_expiry_s: 60,
                    receive_maximum: 50,
                },
            );
            let Packet::Connect(c) = decode(&buf, None) else {
                panic!("not a CONNECT")
            };
            assert_eq!(c.protocol_version, version);
            assert_eq!(c.client_id.as_str(), "lg-7");
            assert_eq!(c.keep_alive_s, 30);
            assert!(!c.clean_start);
            if version == ProtocolVersion::V5 {
                assert_eq!(c.properties.session_expiry_interval_s, Some(60));
                assert_eq!(c.properties.receive_maximum.map(|r| r.get()), Some(50));
            }

            let mut buf = Vec::new();
            put_subscribe(&mut buf, version, 9, "a/+/c", QoS::AtLeastOnce);
            let Packet::Subscribe(s) = decode(&buf, Some(version)) else {
                panic!("not SUBSCRIBE")
            };
            assert_eq!(s.packet_id.get(), 9);
            assert_eq!(s.filters.len(), 1);
            assert_eq!(s.filters[0].0.as_str(), "a/+/c");
            assert_eq!(s.filters[0].1.qos, QoS::AtLeastOnce);

            let mut buf = Vec::new();
            put_publish(
                &mut buf,
                version,
                b"x/y",
                QoS::ExactlyOnce,
                true,
                513,
                64,
                |p| p.fill(7),
            );
            let Packet::Publish(p) = decode(&buf, Some(version)) else {
                panic!("not PUBLISH")
            };
            assert_eq!(p.topic.as_str(), "x/y");
            assert_eq!(p.qos, QoS::ExactlyOnce);
            assert!(p.retain);
            assert_eq!(p.packet_id.map(PacketId::get), Some(513));
            assert_eq!(p.payload, Bytes::from(vec![7u8; 64]));

            for kind in [PUBACK, PUBREC, PUBREL, PUBCOMP] {
                let mut buf = Vec::new();
                put_ack(&mut buf, kind, 42);
                let id = match decode(&buf, Some(version)) {
                    Packet::PubAck(a) if kind == PUBACK => a.packet_id,
                    Packet::PubRec(a) if kind == PUBREC => a.packet_id,
                    Packet::PubRel(a) if kind == PUBREL => a.packet_id,
                    Packet::PubComp(a) if kind == PUBCOMP => a.packet_id,
                    other => panic!("ack kind {kind} decoded as {other:?}"),
                };
                assert_eq!(id.get(), 42);
            }
        }
    }

    #[test]
    fn we_read_what_the_codec_writes() {
        for version in VERSIONS {
            let publish = Packet::Publish(codec::Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: TopicName::parse("t/1").expect("valid topic"),
                packet_id: PacketId::new(77),
                properties: Default::default(),
                payload: Bytes::from_static(b"0123456789012345678901234567890123"),
            });
            let connack = Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: codec::ReasonCode::Success,
                properties: Default::default(),
            });
            let suback = Packet::SubAck(SubAck {
                packet_id: PacketId::new(1).expect("non-zero"),
                properties: Default::default(),
                reason_codes: vec![codec::ReasonCode::GrantedQoS1],
            });
            let puback = Packet::PubAck(Ack::success(PacketId::new(300).expect("non-zero")));
            let mut buf = BytesMut::new();
            for p in [&connack, &suback, &publish, &puback] {
                p.encode(version, &mut buf).expect("encodable");
            }
            let mut rest: &[u8] = &buf;
            let mut next = || {
                let frame = scan(rest).expect("valid").expect("whole");
                let (packet, tail) = rest.split_at(frame.total_len);
                rest = tail;
                (frame, packet.to_vec())
            };
            let (f, p) = next();
            assert_eq!((f.kind(), connack_code(&p, &f)), (CONNACK, Some(0)));
            let (f, p) = next();
            assert_eq!((f.kind(), suback_code(&p, &f, version)), (SUBACK, Some(1)));
            let (f, p) = next();
            let view = parse_publish(&p, &f, version).expect("valid publish");
            assert_eq!((view.topic, view.packet_id, view.qos), (&b"t/1"[..], 77, 1));
            assert_eq!(view.payload, b"0123456789012345678901234567890123");
            let (f, p) = next();
            assert_eq!((f.kind(), ack_packet_id(&p, &f)), (PUBACK, Ok(300)));
            assert!(rest.is_empty());
        }
    }
}
