//! The loadgen's packets, all encoded and decoded by the broker's own codec
//! (`culex::protocol`), so the two can never disagree on the wire format.
//!
//! Building a `Packet` per message would cost more than the broker under test, so the hot
//! path encodes once and copies: a [`PublishTemplate`] holds a PUBLISH the codec encoded at
//! setup, and each message is that template copied into the write buffer with its packet id
//! and payload stamp patched in place, at offsets learnt from the codec's own output (two
//! encodings that differ only in the packet id show where it sits; the payload is last).
//! Acknowledgements work the same way ([`Acks`]). CONNECT and SUBSCRIBE are encoded per
//! connection, straight from `Packet`s. Received packets go through `culex::protocol::decode`
//! (see `client::ReadBuf`).

use bytes::{Bytes, BytesMut};
use culex::protocol::{
    Ack, ClientId, Connect, ConnectProperties, Disconnect, EncodeError, Packet, PacketId,
    ProtocolVersion, Publish, PublishOverrides, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    TopicFilter, TopicName,
};
use std::num::NonZeroU16;

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

fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), String> {
    packet
        .encode(version, out)
        .map_err(|e| format!("encode {:?}: {e:?}", packet.packet_type()))
}

/// Appends CONNECT; `Err` names what the codec refused (a client id holding U+0000, say).
pub fn put_connect(out: &mut BytesMut, opts: &ConnectOptions<'_>) -> Result<(), String> {
    let client_id = ClientId::new(opts.client_id)
        .ok_or_else(|| format!("client id {:?} holds U+0000", opts.client_id))?;
    let mut properties = ConnectProperties::default();
    if opts.version == ProtocolVersion::V5 {
        properties.session_expiry_interval_s =
            (opts.session_expiry_s > 0).then_some(opts.session_expiry_s);
        properties.receive_maximum = NonZeroU16::new(opts.receive_maximum.max(1));
    }
    let connect = Packet::Connect(Box::new(Connect {
        protocol_version: opts.version,
        clean_start: opts.clean,
        keep_alive_s: opts.keepalive_s,
        client_id,
        will: None,
        user_name: None,
        password: None,
        properties,
    }));
    encode(&connect, opts.version, out)
}

/// Appends a SUBSCRIBE to one filter; `Err` for a filter the codec would not send.
pub fn put_subscribe(
    out: &mut BytesMut,
    version: ProtocolVersion,
    packet_id: u16,
    filter: &str,
    qos: QoS,
) -> Result<(), String> {
    let filter =
        TopicFilter::parse(filter).map_err(|e| format!("topic filter {filter:?}: {e:?}"))?;
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(packet_id).ok_or("SUBSCRIBE packet id 0")?,
        properties: Default::default(),
        filters: vec![(
            filter,
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
    });
    encode(&subscribe, version, out)
}

pub fn put_pingreq(out: &mut BytesMut, version: ProtocolVersion) {
    encode(&Packet::PingReq, version, out).expect("PINGREQ is two fixed bytes in every version");
}

pub fn put_disconnect(out: &mut BytesMut, version: ProtocolVersion) {
    let bye = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
    encode(&bye, version, out).expect("a plain DISCONNECT always encodes");
}

/// Where the packet id sits in an encoding: the codec writes the packet twice with ids whose
/// two bytes both differ, and the two outputs differ exactly there.
fn packet_id_offset(with_a: &[u8], with_b: &[u8]) -> usize {
    assert_eq!(
        with_a.len(),
        with_b.len(),
        "the packet id has a fixed width"
    );
    let differ: Vec<usize> = (0..with_a.len())
        .filter(|&i| with_a[i] != with_b[i])
        .collect();
    assert!(
        differ.len() == 2 && differ[1] == differ[0] + 1,
        "the two encodings differ only in the two packet id bytes: {differ:?}"
    );
    differ[0]
}

const ID_A: u16 = 0x0101;
const ID_B: u16 = 0xFEFE;

/// One publisher's PUBLISH, encoded by the codec once and copied per message.
pub struct PublishTemplate {
    version: ProtocolVersion,
    qos: QoS,
    /// The packet the codec encodes; its payload is a slice of `filler`.
    publish: Publish,
    /// `payload_max` bytes: every payload length is a slice of it.
    filler: Bytes,
    /// `publish` encoded with a `fixed_len`-byte payload (and packet id `ID_A` at QoS 1/2).
    bytes: Vec<u8>,
    fixed_len: usize,
    /// Offset of the packet id in `bytes` (QoS 1/2).
    packet_id_at: Option<usize>,
    /// Offset of the payload in `bytes`.
    payload_at: usize,
    /// Bytes of the largest message.
    max_len: usize,
}

impl PublishTemplate {
    /// Encodes `topic` at `fixed_len` payload bytes; messages of any length up to
    /// `payload_max` can be written, other lengths than `fixed_len` through the codec.
    pub fn new(
        version: ProtocolVersion,
        topic: &str,
        qos: QoS,
        retain: bool,
        fixed_len: usize,
        payload_max: usize,
    ) -> Result<PublishTemplate, String> {
        let topic = TopicName::parse(topic).map_err(|e| format!("topic {topic:?}: {e:?}"))?;
        let filler = Bytes::from(vec![0u8; payload_max.max(fixed_len)]);
        let mut publish = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: None,
            properties: Default::default(),
            payload: filler.slice(..fixed_len),
        };
        let encode_with_id = |publish: &Publish, id: u16| -> Result<BytesMut, String> {
            let mut out = BytesMut::new();
            let overrides = PublishOverrides {
                packet_id: (qos != QoS::AtMostOnce)
                    .then(|| PacketId::new(id))
                    .flatten(),
                ..PublishOverrides::unchanged(publish)
            };
            publish
                .encode_with(version, &overrides, &mut out)
                .map_err(|e: EncodeError| format!("PUBLISH does not encode: {e:?}"))?;
            Ok(out)
        };
        // The largest message must encode, so every smaller one does.
        publish.payload = filler.clone();
        let max_len = encode_with_id(&publish, ID_A)?.len();
        publish.payload = filler.slice(..fixed_len);
        let bytes = encode_with_id(&publish, ID_A)?;
        let packet_id_at = (qos != QoS::AtMostOnce)
            .then(|| encode_with_id(&publish, ID_B).map(|b| packet_id_offset(&bytes, &b)))
            .transpose()?;
        Ok(PublishTemplate {
            version,
            qos,
            payload_at: bytes.len() - fixed_len,
            publish,
            filler,
            bytes: bytes.to_vec(),
            fixed_len,
            packet_id_at,
            max_len,
        })
    }

    /// Bytes of the largest message `put` writes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Appends one PUBLISH with `packet_id` (ignored at QoS 0) and a `payload_len`-byte
    /// payload that `fill` writes (the stamp; the rest stays as the template has it).
    pub fn put(
        &mut self,
        out: &mut BytesMut,
        packet_id: u16,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let start = out.len();
        if payload_len == self.fixed_len {
            out.extend_from_slice(&self.bytes);
            if let Some(at) = self.packet_id_at {
                debug_assert_ne!(packet_id, 0, "QoS 1/2 packet ids are non-zero");
                out[start + at..start + at + 2].copy_from_slice(&packet_id.to_be_bytes());
            }
            fill(&mut out[start + self.payload_at..]);
            return;
        }
        // Another length: the remaining length changes, so let the codec write the header.
        self.publish.payload = self.filler.slice(..payload_len);
        let overrides = PublishOverrides {
            packet_id: if self.qos == QoS::AtMostOnce {
                None
            } else {
                Some(PacketId::new(packet_id).expect("QoS 1/2 packet ids are non-zero"))
            },
            ..PublishOverrides::unchanged(&self.publish)
        };
        self.publish
            .encode_with(self.version, &overrides, out)
            .expect("no larger than the payload_max message that encoded at setup");
        let payload_at = out.len() - payload_len;
        fill(&mut out[payload_at..]);
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP as the codec writes them in one version, copied per
/// acknowledgement with the packet id patched in.
#[derive(Debug, Clone)]
pub struct Acks {
    /// Indexed by [`AckKind`].
    encoded: [(Vec<u8>, usize); 4],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck = 0,
    PubRec = 1,
    PubRel = 2,
    PubComp = 3,
}

impl Acks {
    pub fn new(version: ProtocolVersion) -> Acks {
        let encode_kind = |kind: AckKind, id: u16| {
            let ack = Ack::success(PacketId::new(id).expect("ID_A and ID_B are non-zero"));
            let packet = match kind {
                AckKind::PubAck => Packet::PubAck(ack),
                AckKind::PubRec => Packet::PubRec(ack),
                AckKind::PubRel => Packet::PubRel(ack),
                AckKind::PubComp => Packet::PubComp(ack),
            };
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out).expect("a successful ack always encodes");
            out
        };
        let one = |kind| {
            let a = encode_kind(kind, ID_A);
            let at = packet_id_offset(&a, &encode_kind(kind, ID_B));
            (a.to_vec(), at)
        };
        Acks {
            encoded: [
                one(AckKind::PubAck),
                one(AckKind::PubRec),
                one(AckKind::PubRel),
                one(AckKind::PubComp),
            ],
        }
    }

    pub fn put(&self, out: &mut BytesMut, kind: AckKind, packet_id: PacketId) {
        let (bytes, at) = &self.encoded[kind as usize];
        let start = out.len();
        out.extend_from_slice(bytes);
        out[start + at..start + at + 2].copy_from_slice(&packet_id.get().to_be_bytes());
    }
}

/// The fields of a received PUBLISH the subscriber looks at, borrowed from the read buffer.
///
/// Why not `culex::protocol::decode` here (every other received packet goes through it): a
/// `Publish` costs about 400 instructions more per message (UTF-8 and wildcard checks of the
/// topic, three reference counts on the buffer), which callgrind shows as most of the
/// subscriber's own work per message. The broker under test has validated what it forwards;
/// `view_agrees_with_the_codec` checks this reading against the codec's in every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    pub qos: QoS,
    pub retain: bool,
    /// `Some` exactly at QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    pub topic: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> PublishView<'a> {
    /// Reads a whole PUBLISH frame whose fixed header is `header_len` bytes (as
    /// `culex::protocol::check_frame` found it); `None` when it is malformed.
    pub fn parse(frame: &'a [u8], header_len: usize, version: ProtocolVersion) -> Option<Self> {
        let first_byte = *frame.first()?;
        let qos = QoS::from_bits((first_byte >> 1) & 0x03)?;
        let body = frame.get(header_len..)?;
        let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
        let topic = body.get(2..2 + topic_len)?;
        let mut at = 2 + topic_len;
        let mut packet_id = None;
        if qos != QoS::AtMostOnce {
            let id = body.get(at..at + 2)?;
            packet_id = Some(PacketId::new(u16::from_be_bytes([id[0], id[1]]))?);
            at += 2;
        }
        if version.is_v5() {
            // Skip the properties: a variable byte integer length, then that many bytes.
            let mut props_len = 0usize;
            for i in 0..4 {
                let byte = *body.get(at)?;
                at += 1;
                props_len |= usize::from(byte & 0x7F) << (7 * i);
                if byte & 0x80 == 0 {
                    break;
                }
                if i == 3 {
                    return None;
                }
            }
            at += props_len;
        }
        Some(PublishView {
            qos,
            retain: first_byte & 0x01 != 0,
            packet_id,
            topic,
            payload: body.get(at..)?,
        })
    }
}

/// The packet id of a received PUBACK, PUBREC, PUBREL or PUBCOMP, read in place from the
/// whole frame (`header_len` as `check_frame` found it); `None` when it has none.
///
/// Why not `culex::protocol::decode_frame`: it cost ~385 instructions per 4-byte ack in
/// callgrind (copy, `Ack` with its properties, drop), against ~50 for all the rest a QoS 1/2
/// publisher does with one; acks arrive once per message. The reason code that MQTT 5 may add
/// is not needed: a refused message completes the flow all the same.
/// `ack_id_agrees_with_the_codec` checks this against the codec.
pub fn ack_packet_id(frame: &[u8], header_len: usize) -> Option<PacketId> {
    let id = frame.get(header_len..header_len + 2)?;
    PacketId::new(u16::from_be_bytes([id[0], id[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{Stamp, STAMP_BYTES};
    use culex::protocol as codec;

    const VERSIONS: [ProtocolVersion; 3] = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];

    fn decode_all(bytes: &[u8], version: Option<ProtocolVersion>) -> Vec<Packet> {
        let mut buf = BytesMut::from(bytes);
        let mut packets = Vec::new();
        while let Some(p) = codec::decode(&mut buf, version, u32::MAX).expect("valid") {
            packets.push(p);
        }
        assert!(buf.is_empty(), "the codec consumed every byte we wrote");
        packets
    }

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            publisher_id: 7,
            seq,
            intended_ns: 1000 + seq,
            sent_ns: 2000 + seq,
        }
    }

    /// The bytes a template writes equal what the codec writes for the same PUBLISH built as
    /// a `Packet`, in every version, QoS, and for the fixed and other payload lengths.
    #[test]
    fn template_bytes_equal_the_codec_for_every_version() {
        for version in VERSIONS {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for retain in [false, true] {
                    // 100 bytes of payload keeps a one-byte remaining length; 200 needs two.
                    let mut tpl =
                        PublishTemplate::new(version, "lg/t/1", qos, retain, 100, 300).unwrap();
                    for (i, len) in [100usize, STAMP_BYTES, 200, 300, 100]
                        .into_iter()
                        .enumerate()
                    {
                        let id = 0x1234 + i as u16;
                        let mut ours = BytesMut::new();
                        tpl.put(&mut ours, id, len, |p| stamp(i as u64).write(p));
                        let mut payload = vec![0u8; len];
                        stamp(i as u64).write(&mut payload);
                        let expected = Packet::Publish(Publish {
                            dup: false,
                            qos,
                            retain,
                            topic: TopicName::parse("lg/t/1").unwrap(),
                            packet_id: (qos != QoS::AtMostOnce)
                                .then(|| PacketId::new(id))
                                .flatten(),
                            properties: Default::default(),
                            payload: Bytes::from(payload),
                        });
                        let mut theirs = BytesMut::new();
                        expected.encode(version, &mut theirs).unwrap();
                        assert_eq!(
                            ours, theirs,
                            "{version:?} {qos:?} retain {retain} len {len}"
                        );
                        assert_eq!(decode_all(&ours, Some(version)), vec![expected]);
                    }
                }
            }
        }
    }

    /// The subscriber's borrowed reading of a PUBLISH finds what the codec's decode finds,
    /// in every version and QoS, with and without MQTT 5 properties; a cut frame is refused.
    #[test]
    fn view_agrees_with_the_codec() {
        for version in VERSIONS {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut publish = Publish {
                    dup: false,
                    qos,
                    retain: qos == QoS::AtLeastOnce,
                    topic: TopicName::parse("lg/view/1").unwrap(),
                    packet_id: (qos != QoS::AtMostOnce)
                        .then(|| PacketId::new(300))
                        .flatten(),
                    properties: Default::default(),
                    payload: Bytes::from(vec![0x5A; 200]),
                };
                if version.is_v5() {
                    publish.properties.make_mut().message_expiry_interval_s = Some(9);
                    publish.properties.make_mut().content_type = Some("x/y".into());
                }
                let mut buf = BytesMut::new();
                Packet::Publish(publish.clone())
                    .encode(version, &mut buf)
                    .unwrap();
                let codec::FrameStatus::Complete {
                    header_len_bytes, ..
                } = codec::check_frame(&buf, u32::MAX).unwrap()
                else {
                    panic!("one whole frame")
                };
                let view = PublishView::parse(&buf, header_len_bytes, version).unwrap();
                let [Packet::Publish(decoded)] = &decode_all(&buf, Some(version))[..] else {
                    panic!("one PUBLISH")
                };
                assert_eq!(view.qos, decoded.qos);
                assert_eq!(view.retain, decoded.retain);
                assert_eq!(view.packet_id, decoded.packet_id);
                assert_eq!(view.topic, decoded.topic.as_str().as_bytes());
                assert_eq!(view.payload, &decoded.payload[..]);
                let body_start = header_len_bytes + 2 + "lg/view/1".len();
                for cut in header_len_bytes..body_start {
                    assert_eq!(
                        PublishView::parse(&buf[..cut], header_len_bytes, version),
                        None,
                        "{version:?} {qos:?} cut at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn ack_id_agrees_with_the_codec() {
        for version in VERSIONS {
            for with_reason in [false, true] {
                let id = PacketId::new(if with_reason { 0x0203 } else { 0xFEDC }).unwrap();
                // MQTT 5 adds the reason code (and a longer body) when it is not Success.
                let ack = |reason| Ack {
                    reason_code: if with_reason && version.is_v5() {
                        reason
                    } else {
                        ReasonCode::Success
                    },
                    ..Ack::success(id)
                };
                for packet in [
                    Packet::PubAck(ack(ReasonCode::PacketIdentifierInUse)),
                    Packet::PubRec(ack(ReasonCode::PacketIdentifierInUse)),
                    Packet::PubRel(ack(ReasonCode::PacketIdentifierNotFound)),
                    Packet::PubComp(ack(ReasonCode::PacketIdentifierNotFound)),
                ] {
                    let mut buf = BytesMut::new();
                    packet.encode(version, &mut buf).unwrap();
                    let codec::FrameStatus::Complete {
                        header_len_bytes, ..
                    } = codec::check_frame(&buf, u32::MAX).unwrap()
                    else {
                        panic!("one whole frame")
                    };
                    assert_eq!(decode_all(&buf, Some(version)), vec![packet]);
                    let ours = ack_packet_id(&buf, header_len_bytes);
                    assert_eq!(ours, Some(id), "{version:?}");
                    assert_eq!(ack_packet_id(&buf[..3], header_len_bytes), None);
                }
            }
        }
    }

    /// The template against the spec's own bytes, so a codec bug cannot hide behind the
    /// comparison above.
    #[test]
    fn template_spells_the_spec_bytes() {
        let mut tpl =
            PublishTemplate::new(ProtocolVersion::V5, "a/b", QoS::AtLeastOnce, true, 30, 30)
                .expect("valid topic");
        let mut buf = BytesMut::new();
        tpl.put(&mut buf, 0x0A0B, 30, |p| p.fill(0xEE));
        #[rustfmt::skip]
        let head = [
            0x33, 38,                   // PUBLISH QoS 1 retain, remaining length 2+3+2+1+30
            0, 3, b'a', b'/', b'b',     // topic
            0x0A, 0x0B,                 // packet id
            0,                          // MQTT 5: no properties
        ];
        assert_eq!(&buf[..head.len()], head);
        assert!(buf[head.len()..].iter().all(|&b| b == 0xEE));
        assert_eq!(buf.len(), head.len() + 30);

        let mut tpl =
            PublishTemplate::new(ProtocolVersion::V3_1, "t", QoS::AtMostOnce, false, 40, 40)
                .expect("valid topic");
        let mut buf = BytesMut::new();
        tpl.put(&mut buf, 0, 40, |_| {});
        assert_eq!(&buf[..5], [0x30, 43, 0, 1, b't']);
        assert_eq!(buf.len(), 45);
    }

    #[test]
    fn acks_equal_the_codec_for_every_version() {
        for version in VERSIONS {
            let acks = Acks::new(version);
            for (kind, make) in [
                (AckKind::PubAck, Packet::PubAck as fn(Ack) -> Packet),
                (AckKind::PubRec, Packet::PubRec),
                (AckKind::PubRel, Packet::PubRel),
                (AckKind::PubComp, Packet::PubComp),
            ] {
                for id in [1u16, 0x0102, 0xFFFF] {
                    let id = PacketId::new(id).unwrap();
                    let mut ours = BytesMut::new();
                    acks.put(&mut ours, kind, id);
                    let mut theirs = BytesMut::new();
                    make(Ack::success(id)).encode(version, &mut theirs).unwrap();
                    assert_eq!(ours, theirs, "{version:?} {kind:?}");
                }
            }
        }
    }

    #[test]
    fn connect_311_spells_the_spec_bytes() {
        let mut buf = BytesMut::new();
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
        )
        .unwrap();
        #[rustfmt::skip]
        let expected = [
            0x10, 14,                           // CONNECT, remaining length
            0, 4, b'M', b'Q', b'T', b'T',       // protocol name
            4,                                  // level 3.1.1
            0x02,                               // clean session
            0, 60,                              // keepalive
            0, 2, b'a', b'b',                   // client id
        ];
        assert_eq!(&buf[..], expected);
    }

    #[test]
    fn connect_and_subscribe_carry_what_we_ask_in_every_version() {
        for version in VERSIONS {
            let mut buf = BytesMut::new();
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
            )
            .unwrap();
            let [Packet::Connect(c)] = &decode_all(&buf, None)[..] else {
                panic!("not one CONNECT")
            };
            assert_eq!(c.protocol_version, version);
            assert_eq!(c.client_id.as_str(), "lg-7");
            assert_eq!(c.keep_alive_s, 30);
            assert!(!c.clean_start);
            if version == ProtocolVersion::V5 {
                assert_eq!(c.properties.session_expiry_interval_s, Some(60));
                assert_eq!(c.properties.receive_maximum.map(|r| r.get()), Some(50));
            }

            let mut buf = BytesMut::new();
            put_subscribe(&mut buf, version, 9, "a/+/c", QoS::AtLeastOnce).unwrap();
            put_pingreq(&mut buf, version);
            put_disconnect(&mut buf, version);
            let packets = decode_all(&buf, Some(version));
            let Packet::Subscribe(s) = &packets[0] else {
                panic!("not SUBSCRIBE")
            };
            assert_eq!(s.packet_id.get(), 9);
            assert_eq!(s.filters.len(), 1);
            assert_eq!(s.filters[0].0.as_str(), "a/+/c");
            assert_eq!(s.filters[0].1.qos, QoS::AtLeastOnce);
            assert_eq!(packets[1], Packet::PingReq);
            let Packet::Disconnect(d) = &packets[2] else {
                panic!("not DISCONNECT")
            };
            assert_eq!(d.reason_code, ReasonCode::Success);
        }
    }

    #[test]
    fn what_the_codec_refuses_is_an_error_not_a_packet() {
        let v = ProtocolVersion::V3_1_1;
        assert!(PublishTemplate::new(v, "a/#", QoS::AtMostOnce, false, 64, 64).is_err());
        assert!(PublishTemplate::new(v, "", QoS::AtMostOnce, false, 64, 64).is_err());
        let mut buf = BytesMut::new();
        assert!(put_subscribe(&mut buf, v, 1, "a/#/b", QoS::AtMostOnce).is_err());
        assert!(put_subscribe(&mut buf, v, 0, "a", QoS::AtMostOnce).is_err());
        let opts = ConnectOptions {
            version: v,
            client_id: "nul\0",
            keepalive_s: 0,
            clean: true,
            session_expiry_s: 0,
            receive_maximum: 1,
        };
        assert!(put_connect(&mut buf, &opts).is_err());
        assert!(buf.is_empty(), "nothing half-written");
    }
}
