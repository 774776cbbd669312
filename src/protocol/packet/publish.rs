//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP.

use bytes::{Bytes, BytesMut};

use crate::protocol::properties::{AckProperties, BoxedPublishProperties};
use crate::protocol::{PacketId, QoS, ReasonCode, TopicName};

/// PUBLISH. `packet_id` is `Some` exactly when `qos` is 1 or 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only for an MQTT 5 PUBLISH that names its topic by alias.
    pub topic: TopicName,
    pub packet_id: Option<PacketId>,
    /// Empty before MQTT 5. Out of line: most PUBLISH packets carry none, and a one-pointer
    /// field keeps `Publish` small to move and cheap to drop.
    pub properties: BoxedPublishProperties,
    /// A slice of the read buffer: shared, never copied per subscriber.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape; the `Packet` variant says which.
/// Before MQTT 5 only `packet_id` travels (reason is then `Success`, properties empty); in
/// MQTT 5 the reason code and properties are omitted when they are Success and empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: PacketId,
    pub reason_code: ReasonCode,
    pub properties: AckProperties,
}

impl Ack {
    /// A plain successful acknowledgement of `packet_id`.
    pub fn success(packet_id: PacketId) -> Ack {
        Ack {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

use std::num::{NonZeroU16, NonZeroU32};

use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::property_codec::{
    read_properties, read_publish_properties, write_properties, write_publish_properties,
};
use crate::protocol::reason::ReasonContext;
use crate::protocol::topic::TopicError;
use crate::protocol::types::ProtocolVersion;
use crate::protocol::wire::varint_len;
use crate::protocol::wire::{packet_len, scan, Counter, Reader, Sink};
use bytestring::ByteString;

use super::{read_packet_id, read_reason};

const PUBLISH_TYPE: u8 = super::PacketType::Publish as u8;
const DUP: u8 = 0x08;
const RETAIN: u8 = 0x01;

/// What a delivery changes in a PUBLISH it forwards: encode the stored message with these
/// instead of cloning it and editing the clone. The payload is appended once, unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOverrides<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// `Some` exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// MQTT 5: replaces the message's subscription identifiers.
    pub subscription_identifiers: &'a [NonZeroU32],
    /// MQTT 5: replaces the message's topic alias.
    pub topic_alias: Option<NonZeroU16>,
    /// MQTT 5: send an empty topic name, the receiver knowing it by `topic_alias`.
    pub omit_topic: bool,
}

impl<'a> PublishOverrides<'a> {
    /// The overrides that change nothing: `publish` encodes as it is.
    pub fn unchanged(publish: &'a Publish) -> PublishOverrides<'a> {
        PublishOverrides {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            packet_id: publish.packet_id,
            subscription_identifiers: &publish.properties.subscription_identifiers,
            topic_alias: publish.properties.topic_alias,
            omit_topic: publish.topic.is_empty(),
        }
    }
}

impl Publish {
    #[inline]
    pub(crate) fn decode(
        flags: u8,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0);
        }
        let mut reader = Reader::new(body);
        let topic_raw = reader.binary("topic name")?;
        let topic_scan = scan(&topic_raw);
        if topic_scan.nul {
            return Err(DecodeError::NullCharacter {
                field: "topic name",
            });
        }
        let topic_text = ByteString::try_from(topic_raw).map_err(|_| DecodeError::InvalidUtf8 {
            field: "topic name",
        })?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(read_packet_id(&mut reader)?)
        };
        let properties = if version.is_v5() {
            read_publish_properties(&mut reader)?
        } else {
            BoxedPublishProperties::default()
        };
        // An empty name is allowed only when a topic alias stands in for it [MQTT-3.3.2-1].
        let topic = if topic_text.is_empty() {
            if properties.topic_alias.is_none() {
                return Err(DecodeError::InvalidTopicName(TopicError::Empty));
            }
            TopicName::empty_for_alias()
        } else if topic_scan.wildcard {
            return Err(DecodeError::InvalidTopicName(TopicError::WildcardInName));
        } else {
            TopicName::from_checked(topic_text)
        };
        Ok(Publish {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            packet_id,
            properties,
            payload: reader.rest(),
        })
    }

    /// Appends this PUBLISH with `overrides` applied (the broker's delivery path: no clone).
    pub fn encode_with(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if overrides.qos == QoS::AtMostOnce && overrides.packet_id.is_some()
            || overrides.qos != QoS::AtMostOnce && overrides.packet_id.is_none()
        {
            return Err(EncodeError::PacketIdMismatch);
        }
        if !overrides.omit_topic && (!version.is_v5() || self.has_no_properties(overrides)) {
            return self.encode_plain(version, overrides, buf);
        }
        self.encode_general(version, overrides, buf)
    }

    /// [`Publish::encode_with`] for any PUBLISH: a length pass, then the fields.
    fn encode_general(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let props_len = self.properties_len(version, overrides)?;
        let body_len = self.body_len(version, overrides, props_len);
        buf.reserve(packet_len(body_len)?);
        let mut first_byte = PUBLISH_TYPE << 4 | overrides.qos.bits() << 1;
        if overrides.dup {
            first_byte |= DUP;
        }
        if overrides.retain {
            first_byte |= RETAIN;
        }
        buf.put_u8(first_byte);
        buf.put_varint(body_len as u32);
        self.write_body(version, overrides, props_len, buf);
        Ok(())
    }

    /// [`Publish::encode_with`] for the delivery nearly every message takes: a topic name and
    /// no property (or MQTT 3.x). The same bytes, in four copies and no length pass.
    #[inline(always)]
    fn encode_plain(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let topic = self.topic.as_str().as_bytes();
        let Ok(topic_len) = u16::try_from(topic.len()) else {
            return Err(EncodeError::FieldTooLong {
                field: "topic name",
            });
        };
        // Packet identifier (QoS 1/2), then MQTT 5's empty property block.
        let mut middle = [0u8; 3];
        let mut middle_len = 0;
        if let Some(id) = overrides.packet_id {
            middle[..2].copy_from_slice(&id.get().to_be_bytes());
            middle_len = 2;
        }
        if version.is_v5() {
            middle[middle_len] = 0;
            middle_len += 1;
        }
        let body_len = 2 + topic.len() + middle_len + self.payload.len();
        let size_bytes = packet_len(body_len)?;
        // First byte, remaining length (at most 4 bytes), topic length.
        let mut head = [0u8; 7];
        head[0] = PUBLISH_TYPE << 4
            | u8::from(overrides.dup) << 3
            | overrides.qos.bits() << 1
            | u8::from(overrides.retain);
        let mut head_len = 1;
        let mut rest = body_len;
        loop {
            let byte = (rest & 0x7F) as u8;
            rest >>= 7;
            if rest == 0 {
                head[head_len] = byte;
                head_len += 1;
                break;
            }
            head[head_len] = byte | 0x80;
            head_len += 1;
        }
        head[head_len..head_len + 2].copy_from_slice(&topic_len.to_be_bytes());
        head_len += 2;
        buf.reserve(size_bytes);
        buf.extend_from_slice(&head[..head_len]);
        buf.extend_from_slice(topic);
        buf.extend_from_slice(&middle[..middle_len]);
        buf.extend_from_slice(&self.payload);
        Ok(())
    }

    /// Everything after the fixed header, given the already computed property length.
    pub(crate) fn write_body<S: Sink>(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
        props_len: usize,
        sink: &mut S,
    ) {
        let topic: &[u8] = if overrides.omit_topic {
            &[]
        } else {
            self.topic.as_str().as_bytes()
        };
        sink.put_prefixed("topic name", topic);
        if let Some(packet_id) = overrides.packet_id {
            sink.put_u16(packet_id.get());
        }
        if version.is_v5() {
            sink.put_varint(props_len as u32);
            // Zero bytes of properties means none is set: nothing to walk.
            if props_len != 0 {
                write_publish_properties(
                    &self.properties,
                    overrides.topic_alias,
                    overrides.subscription_identifiers,
                    sink,
                );
            }
        }
        sink.put_slice(&self.payload);
    }

    /// The exact number of bytes `encode_with` appends.
    pub fn encoded_len_with(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
    ) -> usize {
        let props_len = self.properties_len(version, overrides).unwrap_or(0);
        let body_len = self.body_len(version, overrides, props_len);
        1 + varint_len(body_len) + body_len
    }

    pub(crate) fn properties_len(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
    ) -> Result<usize, EncodeError> {
        if !version.is_v5() || self.has_no_properties(overrides) {
            return Ok(0);
        }
        let mut counter = Counter::default();
        write_publish_properties(
            &self.properties,
            overrides.topic_alias,
            overrides.subscription_identifiers,
            &mut counter,
        );
        match counter.error {
            Some(error) => Err(error),
            None => Ok(counter.len),
        }
    }

    /// The common case on the hot path: no property set, so the property block is one zero
    /// byte and neither the length pass nor the write pass needs to walk the fields.
    fn has_no_properties(&self, overrides: &PublishOverrides<'_>) -> bool {
        let p = &self.properties;
        overrides.topic_alias.is_none()
            && overrides.subscription_identifiers.is_empty()
            && p.payload_format_indicator.is_none()
            && p.message_expiry_interval_s.is_none()
            && p.response_topic.is_none()
            && p.correlation_data.is_none()
            && p.user_properties.is_empty()
            && p.content_type.is_none()
    }

    fn body_len(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
        props_len: usize,
    ) -> usize {
        let topic_len = if overrides.omit_topic {
            0
        } else {
            self.topic.len()
        };
        let id_len = if overrides.packet_id.is_some() { 2 } else { 0 };
        let props = if version.is_v5() {
            varint_len(props_len) + props_len
        } else {
            0
        };
        2 + topic_len + id_len + props + self.payload.len()
    }
}

/// The packet type of PUBACK, for [`Ack::write_short`] and [`Ack::take_short_puback`].
pub const PUBACK_TYPE: u8 = super::PacketType::PubAck as u8;
/// The packet type of PUBREC.
pub const PUBREC_TYPE: u8 = super::PacketType::PubRec as u8;
/// The packet type of PUBCOMP.
pub const PUBCOMP_TYPE: u8 = super::PacketType::PubComp as u8;

impl Ack {
    /// Decodes PUBACK, PUBREC, PUBREL or PUBCOMP (`packet_type` 4 to 7).
    pub(crate) fn decode(
        packet_type: u8,
        context: ReasonContext,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Ack, DecodeError> {
        let mut reader = Reader::new(body);
        let packet_id = read_packet_id(&mut reader)?;
        let mut ack = Ack::success(packet_id);
        // MQTT 5 short forms: length 2 means Success, length 3 a reason without properties.
        if version.is_v5() && !reader.is_empty() {
            ack.reason_code = read_reason(&mut reader, context, packet_type)?;
            if !reader.is_empty() {
                ack.properties = read_properties(&mut reader, packet_type)?;
            }
        }
        reader.finish()?;
        Ok(ack)
    }

    /// Appends a PUBACK, PUBREC or PUBCOMP (`packet_type` 4, 5 or 7) without properties,
    /// straight to `buf`: the broker's reply on every QoS 1/2 message, so no `Packet` is built
    /// and no length pass runs. The bytes are exactly what [`Packet::encode`] writes for
    /// `Ack { packet_id, reason_code, properties: empty }` in `version` (3.x carries no
    /// reason; MQTT 5 omits a Success one).
    ///
    /// [`Packet::encode`]: crate::protocol::Packet::encode
    #[inline]
    pub fn write_short(
        packet_type: u8,
        packet_id: PacketId,
        reason_code: ReasonCode,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) {
        debug_assert!(
            matches!(packet_type, 4 | 5 | 7),
            "PUBREL has flags: not here"
        );
        let [hi, lo] = packet_id.get().to_be_bytes();
        if version.is_v5() && reason_code != ReasonCode::Success {
            buf.extend_from_slice(&[packet_type << 4, 3, hi, lo, reason_code.code()]);
        } else {
            buf.extend_from_slice(&[packet_type << 4, 2, hi, lo]);
        }
    }

    /// Takes a PUBACK in its 4-byte form (no reason code, no properties: every 3.x PUBACK and
    /// MQTT 5's Success one) off the front of `buf`, the client's reply to each QoS 1
    /// delivery, without framing it into a `Packet`. `None` (and `buf` untouched) for
    /// anything else, which the general [`decode`] then handles, errors included.
    ///
    /// [`decode`]: crate::protocol::decode
    #[inline]
    pub fn take_short_puback(buf: &mut BytesMut) -> Option<PacketId> {
        match buf[..] {
            [first, 2, hi, lo, ..] if first == PUBACK_TYPE << 4 => {
                let id = PacketId::new(u16::from_be_bytes([hi, lo]))?;
                bytes::Buf::advance(buf, 4);
                Some(id)
            }
            _ => None,
        }
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        sink.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return;
        }
        let no_properties = self.properties.is_empty();
        if self.reason_code == ReasonCode::Success && no_properties {
            return;
        }
        sink.put_u8(self.reason_code.code());
        if !no_properties {
            write_properties(&self.properties, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short path writes what the general one does, byte for byte, across remaining
    /// length boundaries, every flag, both encodings and with or without a packet id.
    #[test]
    fn plain_encoding_matches_the_general_one() {
        let id = PacketId::new(0x1234);
        for payload_len in [0, 1, 64, 110, 120, 127, 128, 16_370, 16_383, 16_384, 70_000] {
            for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                    for (dup, retain) in [(false, false), (true, false), (false, true)] {
                        let publish = Publish {
                            dup: false,
                            qos: QoS::AtMostOnce,
                            retain: false,
                            topic: TopicName::parse("a/b/c").expect("valid"),
                            packet_id: None,
                            properties: Default::default(),
                            payload: Bytes::from(vec![7u8; payload_len]),
                        };
                        let overrides = PublishOverrides {
                            dup: dup && qos != QoS::AtMostOnce,
                            qos,
                            retain,
                            packet_id: id.filter(|_| qos != QoS::AtMostOnce),
                            subscription_identifiers: &[],
                            topic_alias: None,
                            omit_topic: false,
                        };
                        let mut plain = BytesMut::new();
                        let mut general = BytesMut::new();
                        publish
                            .encode_with(version, &overrides, &mut plain)
                            .expect("encodes");
                        publish
                            .encode_general(version, &overrides, &mut general)
                            .expect("encodes");
                        assert_eq!(plain, general, "{payload_len} B, {version:?}, {qos:?}");
                        assert_eq!(plain.len(), publish.encoded_len_with(version, &overrides));
                    }
                }
            }
        }
    }

    #[test]
    fn short_acks_encode_as_packets_do_and_short_pubacks_decode() {
        let id = PacketId::new(0xBEEF).expect("nonzero");
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for reason in [ReasonCode::Success, ReasonCode::NoMatchingSubscribers] {
                for (packet_type, kind) in [
                    (PUBACK_TYPE, Packet::PubAck as fn(Ack) -> Packet),
                    (PUBREC_TYPE, Packet::PubRec),
                    (PUBCOMP_TYPE, Packet::PubComp),
                ] {
                    let mut ack = Ack::success(id);
                    if version.is_v5() {
                        ack.reason_code = reason;
                    }
                    let mut expected = BytesMut::new();
                    kind(ack).encode(version, &mut expected).expect("encodes");
                    let mut short = BytesMut::new();
                    Ack::write_short(packet_type, id, reason, version, &mut short);
                    assert_eq!(short, expected, "{version:?} {reason:?} {packet_type}");
                }
            }
        }
        let mut buf = BytesMut::from(&[0x40, 2, 0xBE, 0xEF, 0xC0, 0][..]);
        assert_eq!(Ack::take_short_puback(&mut buf), Some(id));
        assert_eq!(&buf[..], &[0xC0, 0], "only the PUBACK is taken");
        // Not the short form: left for the general decoder (which reports the errors).
        for other in [
            &[0x40, 2, 0, 0][..],         // packet id 0
            &[0x40, 3, 0xBE, 0xEF, 0x10], // MQTT 5 with a reason code
            &[0x42, 2, 0xBE, 0xEF],       // reserved flags set
            &[0x50, 2, 0xBE, 0xEF],       // PUBREC
            &[0x40, 2, 0xBE],             // not all there yet
        ] {
            let mut buf = BytesMut::from(other);
            assert_eq!(Ack::take_short_puback(&mut buf), None, "{other:?}");
            assert_eq!(&buf[..], other);
        }
    }
    use crate::protocol::codec::test_support::{assert_encodes_to, decode_one, round_trip};
    use crate::protocol::Packet;

    const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);
    const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);

    fn publish_of(packet: Packet) -> Publish {
        match packet {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn v311_qos1_publish() {
        let frame = [
            0x32, 0x0A, // PUBLISH QoS 1, remaining length 10
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            0x00, 0x07, // packet id 7
            b'h', b'e', b'y', // payload
        ];
        let publish = publish_of(round_trip(&frame, ProtocolVersion::V3_1_1));
        assert_eq!(publish.topic.as_str(), "a/b");
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        assert_eq!(publish.packet_id, PacketId::new(7));
        assert_eq!(&publish.payload[..], b"hey");
        assert!(!publish.dup && !publish.retain);
    }

    #[test]
    fn v5_publish_by_alias_has_an_empty_topic() {
        let frame = [
            0x31, 0x07, // PUBLISH QoS 0 retain, remaining length 7
            0x00, 0x00, // topic "" (named by alias)
            0x03, 0x23, 0x00, 0x05, // properties: topic alias 5
            b'x', // payload
        ];
        let publish = publish_of(round_trip(&frame, ProtocolVersion::V5));
        assert!(publish.topic.is_empty());
        assert!(publish.retain);
        assert_eq!(publish.properties.topic_alias, NonZeroU16::new(5));
    }

    #[test]
    fn empty_topic_without_alias_is_refused() {
        let frame = [
            0x30, 0x03, // PUBLISH QoS 0, remaining length 3
            0x00, 0x00, // topic ""
            0x00, // no properties
        ];
        assert_eq!(
            decode_one(&frame, V5),
            Err(DecodeError::InvalidTopicName(TopicError::Empty))
        );
    }

    #[test]
    fn v5_publish_with_every_message_property() {
        let frame = [
            0x3D, 0x2A, // PUBLISH DUP QoS 2 retain, remaining length 42
            0x00, 0x01, b't', // topic "t"
            0x01, 0x00, // packet id 256
            0x23, // property length 35
            0x01, 0x01, // payload format indicator: UTF-8
            0x02, 0x00, 0x00, 0x00, 0x1E, // message expiry 30 s
            0x08, 0x00, 0x01, b'r', // response topic "r"
            0x09, 0x00, 0x02, 0xCA, 0xFE, // correlation data
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x0B, 0x01, // subscription identifier 1
            0x0B, 0x80, 0x01, // subscription identifier 128
            0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type "text"
            b'!', // payload
        ];
        let publish = publish_of(round_trip(&frame, ProtocolVersion::V5));
        let props = &publish.properties;
        assert_eq!(props.payload_format_indicator, Some(true));
        assert_eq!(props.message_expiry_interval_s, Some(30));
        assert_eq!(
            props.response_topic.as_ref().map(TopicName::as_str),
            Some("r")
        );
        assert_eq!(props.correlation_data.as_deref(), Some(&[0xCA, 0xFE][..]));
        assert_eq!(props.user_properties.len(), 1);
        assert_eq!(
            props.subscription_identifiers,
            vec![NonZeroU32::MIN, NonZeroU32::new(128).expect("nonzero")]
        );
        assert_eq!(props.content_type.as_deref(), Some("text"));
        assert_eq!(publish.packet_id, PacketId::new(256));
    }

    #[test]
    fn encode_with_overrides_delivery_fields_without_a_clone() {
        let frame = [
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            0x00, // no properties
            b'x', // payload
        ];
        let publish = publish_of(round_trip(&frame, ProtocolVersion::V5));
        let ids = [NonZeroU32::new(3).expect("nonzero")];
        let overrides = PublishOverrides {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            packet_id: PacketId::new(9),
            subscription_identifiers: &ids,
            topic_alias: NonZeroU16::new(2),
            omit_topic: false,
        };
        let expected = [
            0x33, 0x0E, // PUBLISH QoS 1 retain, remaining length 14
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            0x00, 0x09, // packet id 9
            0x05, 0x23, 0x00, 0x02, 0x0B, 0x03, // properties: alias 2, subscription id 3
            b'x', // payload
        ];
        let mut buf = BytesMut::new();
        publish
            .encode_with(ProtocolVersion::V5, &overrides, &mut buf)
            .expect("valid overrides");
        assert_eq!(&buf[..], &expected);
        assert_eq!(
            publish.encoded_len_with(ProtocolVersion::V5, &overrides),
            expected.len()
        );
        // Once the alias is known the topic can be left out; 3.1.1 drops properties.
        let by_alias = PublishOverrides {
            omit_topic: true,
            ..overrides
        };
        let mut buf = BytesMut::new();
        publish
            .encode_with(ProtocolVersion::V5, &by_alias, &mut buf)
            .expect("valid overrides");
        assert_eq!(&buf[..4], &[0x33, 0x0B, 0x00, 0x00]);
        let mut buf = BytesMut::new();
        publish
            .encode_with(ProtocolVersion::V3_1_1, &overrides, &mut buf)
            .expect("valid overrides");
        assert_eq!(
            &buf[..],
            &[0x33, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x09, b'x']
        );
    }

    #[test]
    fn qos_and_packet_id_must_agree_when_encoding() {
        let publish = publish_of(
            decode_one(&[0x30, 0x04, 0x00, 0x01, b't', b'x'], V4).expect("valid publish"),
        );
        let overrides = PublishOverrides {
            qos: QoS::AtLeastOnce,
            ..PublishOverrides::unchanged(&publish)
        };
        assert_eq!(
            publish.encode_with(ProtocolVersion::V3_1_1, &overrides, &mut BytesMut::new()),
            Err(EncodeError::PacketIdMismatch)
        );
        // A subscription identifier above 268,435,455 has no variable-byte-integer form.
        let too_big = [NonZeroU32::new(1 << 28).expect("nonzero")];
        let overrides = PublishOverrides {
            subscription_identifiers: &too_big,
            ..PublishOverrides::unchanged(&publish)
        };
        assert_eq!(
            publish.encode_with(ProtocolVersion::V5, &overrides, &mut BytesMut::new()),
            Err(EncodeError::FieldTooLong {
                field: "variable byte integer"
            })
        );
    }

    #[test]
    fn acks_v3_and_v5_short_forms() {
        let id = PacketId::new(7).expect("nonzero");
        // PUBACK 7 in 3.1.1.
        assert_eq!(
            round_trip(&[0x40, 0x02, 0x00, 0x07], ProtocolVersion::V3_1_1),
            Packet::PubAck(Ack::success(id))
        );
        // PUBREL must carry flags 0b0010.
        assert_eq!(
            round_trip(&[0x62, 0x02, 0x00, 0x07], ProtocolVersion::V3_1_1),
            Packet::PubRel(Ack::success(id))
        );
        // v5 length 2: Success.
        assert_eq!(
            round_trip(&[0x70, 0x02, 0x00, 0x07], ProtocolVersion::V5),
            Packet::PubComp(Ack::success(id))
        );
        // v5 length 3: PUBREC with "no matching subscribers", no properties.
        let Packet::PubRec(ack) = round_trip(&[0x50, 0x03, 0x00, 0x07, 0x10], ProtocolVersion::V5)
        else {
            panic!("expected PUBREC");
        };
        assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
        // v5 length 4 with empty properties decodes, and encodes back in the short form.
        let packet = decode_one(&[0x40, 0x04, 0x00, 0x07, 0x10, 0x00], V5).expect("valid");
        assert_encodes_to(
            &packet,
            ProtocolVersion::V5,
            &[0x40, 0x03, 0x00, 0x07, 0x10],
        );
        // v5 with a reason string.
        let frame = [
            0x40, 0x08, // PUBACK, remaining length 8
            0x00, 0x07, // packet id 7
            0x87, // not authorized
            0x04, 0x1F, 0x00, 0x01, b'n', // properties: reason string "n"
        ];
        let Packet::PubAck(ack) = round_trip(&frame, ProtocolVersion::V5) else {
            panic!("expected PUBACK");
        };
        assert_eq!(ack.properties.reason_string.as_deref(), Some("n"));
        // 3.1.1 drops reason and properties.
        assert_encodes_to(
            &Packet::PubAck(ack),
            ProtocolVersion::V3_1_1,
            &[0x40, 0x02, 0x00, 0x07],
        );
    }
}
