//! A table of malformed packets, each spelled out byte by byte, with the exact
//! `DecodeError` the codec must report and the MQTT 5 reason code the connection closes
//! with. Covers framing, every packet family, every version, properties, UTF-8, topics and
//! fixed-header flags.

use bytes::BytesMut;
use culex::protocol::{decode, DecodeError, ProtocolVersion, ReasonCode, TopicError};

use DecodeError as E;
use ReasonCode as R;

const V31: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1);
const V311: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);
const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);
/// Before CONNECT: the version is not known yet.
const FIRST: Option<ProtocolVersion> = None;

const MAX_PACKET_SIZE_BYTES: u32 = 1024;

struct Case {
    name: &'static str,
    version: Option<ProtocolVersion>,
    bytes: &'static [u8],
    error: DecodeError,
    reason: ReasonCode,
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // ---- framing ----
        Case { name: "remaining length in five bytes", version: V311,
            bytes: &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], // PUBLISH, 4 bytes all continuing
            error: E::VarIntTooLong, reason: R::MalformedPacket },
        Case { name: "remaining length 0 in two bytes", version: V311,
            bytes: &[0xC0, 0x80, 0x00], // PINGREQ, 0 padded to 2 bytes
            error: E::VarIntNotMinimal, reason: R::MalformedPacket },
        Case { name: "packet above the maximum size", version: V311,
            bytes: &[0x30, 0xFF, 0x7F], // PUBLISH announcing 16383 body bytes; none sent
            error: E::PacketTooLarge { size_bytes: 16386, max_bytes: MAX_PACKET_SIZE_BYTES },
            reason: R::PacketTooLarge },
        Case { name: "packet type 0", version: V311,
            bytes: &[0x00, 0x00], // reserved type, empty body
            error: E::InvalidPacketType(0), reason: R::MalformedPacket },
        Case { name: "AUTH before MQTT 5", version: V311,
            bytes: &[0xF0, 0x00], // AUTH, empty body
            error: E::InvalidPacketType(15), reason: R::MalformedPacket },
        Case { name: "PUBLISH before CONNECT", version: FIRST,
            bytes: &[0x30, 0x03, 0x00, 0x01, b't'], // PUBLISH "t"
            error: E::FirstPacketNotConnect, reason: R::ProtocolError },

        // ---- fixed-header flags ----
        Case { name: "PUBREL flags 0000", version: V311,
            bytes: &[0x60, 0x02, 0x00, 0x01], // PUBREL must carry 0010
            error: E::InvalidHeaderFlags { packet_type: 6, flags: 0 }, reason: R::MalformedPacket },
        Case { name: "SUBSCRIBE flags 0000", version: V311,
            bytes: &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], // id 1, "a" QoS 0
            error: E::InvalidHeaderFlags { packet_type: 8, flags: 0 }, reason: R::MalformedPacket },
        Case { name: "UNSUBSCRIBE flags 0000", version: V5,
            bytes: &[0xA0, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'], // id 1, no props, "a"
            error: E::InvalidHeaderFlags { packet_type: 10, flags: 0 }, reason: R::MalformedPacket },
        Case { name: "PINGREQ flags 0001", version: V311,
            bytes: &[0xC1, 0x00],
            error: E::InvalidHeaderFlags { packet_type: 12, flags: 1 }, reason: R::MalformedPacket },
        Case { name: "CONNECT flags 0001", version: FIRST,
            bytes: &[0x11, 0x00],
            error: E::InvalidHeaderFlags { packet_type: 1, flags: 1 }, reason: R::MalformedPacket },
        Case { name: "PUBACK flags 0010", version: V311,
            bytes: &[0x42, 0x02, 0x00, 0x01],
            error: E::InvalidHeaderFlags { packet_type: 4, flags: 2 }, reason: R::MalformedPacket },

        // ---- PUBLISH ----
        Case { name: "PUBLISH QoS 3", version: V311,
            bytes: &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01], // "t", id 1
            error: E::InvalidQoS, reason: R::MalformedPacket },
        Case { name: "DUP on QoS 0", version: V311,
            bytes: &[0x38, 0x03, 0x00, 0x01, b't'], // DUP, QoS 0, "t"
            error: E::DupOnQoS0, reason: R::MalformedPacket },
        Case { name: "QoS 1 with packet id 0", version: V311,
            bytes: &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00], // "t", id 0
            error: E::ZeroPacketId, reason: R::MalformedPacket },
        Case { name: "QoS 1 without packet id", version: V311,
            bytes: &[0x32, 0x03, 0x00, 0x01, b't'], // "t", then nothing
            error: E::UnexpectedEnd { field: "packet identifier" }, reason: R::MalformedPacket },
        Case { name: "wildcard in topic name", version: V311,
            bytes: &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'], // "a/+"
            error: E::InvalidTopicName(TopicError::WildcardInName), reason: R::TopicNameInvalid },
        Case { name: "empty topic in 3.1.1", version: V311,
            bytes: &[0x30, 0x02, 0x00, 0x00], // ""
            error: E::InvalidTopicName(TopicError::Empty), reason: R::TopicNameInvalid },
        Case { name: "empty topic in 3.1", version: V31,
            bytes: &[0x30, 0x03, 0x00, 0x00, b'x'], // "", payload "x"
            error: E::InvalidTopicName(TopicError::Empty), reason: R::TopicNameInvalid },
        Case { name: "empty topic in 5 without a topic alias", version: V5,
            bytes: &[0x30, 0x03, 0x00, 0x00, 0x00], // "", no properties
            error: E::InvalidTopicName(TopicError::Empty), reason: R::TopicNameInvalid },
        Case { name: "topic not UTF-8", version: V311,
            bytes: &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28], // C3 needs a continuation byte
            error: E::InvalidUtf8 { field: "topic name" }, reason: R::MalformedPacket },
        Case { name: "topic holding a UTF-16 surrogate", version: V5,
            bytes: &[0x30, 0x06, 0x00, 0x03, 0xED, 0xA0, 0x80, 0x00], // U+D800, no props
            error: E::InvalidUtf8 { field: "topic name" }, reason: R::MalformedPacket },
        Case { name: "topic holding U+0000", version: V311,
            bytes: &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'], // "a\0b"
            error: E::NullCharacter { field: "topic name" }, reason: R::MalformedPacket },
        Case { name: "topic length past the packet", version: V311,
            bytes: &[0x30, 0x03, 0x00, 0x05, b'a'], // says 5 bytes, 1 there
            error: E::UnexpectedEnd { field: "topic name" }, reason: R::MalformedPacket },

        // ---- properties (MQTT 5) ----
        Case { name: "unknown property 0x05", version: V5,
            bytes: &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x05, 0x00], // "t", props: 05 00
            error: E::UnknownProperty(0x05), reason: R::MalformedPacket },
        Case { name: "session expiry in PUBLISH", version: V5,
            bytes: &[0x30, 0x09, 0x00, 0x01, b't', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01],
            error: E::PropertyNotAllowed { property: 0x11, packet_type: 3 }, reason: R::ProtocolError },
        Case { name: "topic alias twice", version: V5,
            bytes: &[0x30, 0x0A, 0x00, 0x01, b't', 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02],
            error: E::DuplicateProperty(0x23), reason: R::ProtocolError },
        Case { name: "topic alias 0", version: V5,
            bytes: &[0x30, 0x07, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00],
            error: E::InvalidPropertyValue { property: 0x23 }, reason: R::ProtocolError },
        Case { name: "payload format indicator 2", version: V5,
            bytes: &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x01, 0x02],
            error: E::InvalidPropertyValue { property: 0x01 }, reason: R::ProtocolError },
        Case { name: "subscription identifier 0", version: V5,
            bytes: &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x0B, 0x00],
            error: E::InvalidPropertyValue { property: 0x0B }, reason: R::ProtocolError },
        Case { name: "property length past the packet", version: V5,
            bytes: &[0x30, 0x06, 0x00, 0x01, b't', 0x05, 0x01, 0x01], // says 5, 2 there
            error: E::PropertiesOverrun, reason: R::MalformedPacket },
        Case { name: "property value past the property length", version: V5,
            // props length 2 covers 02 00, but message expiry needs 4 value bytes
            bytes: &[0x30, 0x09, 0x00, 0x01, b't', 0x02, 0x02, 0x00, 0x00, 0x00, 0x01],
            error: E::PropertiesOverrun, reason: R::MalformedPacket },
        Case { name: "user property name not UTF-8", version: V5,
            bytes: &[0x30, 0x0B, 0x00, 0x01, b't', 0x07, 0x26, 0x00, 0x01, 0xFF, 0x00, 0x01, b'v'],
            error: E::InvalidUtf8 { field: "user property name" }, reason: R::MalformedPacket },
        Case { name: "response topic with a wildcard", version: V5,
            bytes: &[0x30, 0x08, 0x00, 0x01, b't', 0x04, 0x08, 0x00, 0x01, b'#'],
            error: E::InvalidPropertyValue { property: 0x08 }, reason: R::ProtocolError },

        // ---- CONNECT ----
        Case { name: "protocol name MQTX", version: FIRST,
            bytes: &[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'X', 0x04, 0x02, 0x00, 0x3C,
                     0x00, 0x01, b'c'], // level 4, clean, keep alive 60, id "c"
            error: E::InvalidProtocolName, reason: R::MalformedPacket },
        Case { name: "protocol level 7", version: FIRST,
            bytes: &[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x07, 0x02, 0x00, 0x3C,
                     0x00, 0x01, b'c'],
            error: E::UnsupportedProtocolVersion(7), reason: R::UnsupportedProtocolVersion },
        Case { name: "MQIsdp with level 4", version: FIRST,
            bytes: &[0x10, 0x0F, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x04, 0x02,
                     0x00, 0x3C, 0x00, 0x01, b'c'],
            error: E::InvalidProtocolName, reason: R::MalformedPacket },
        Case { name: "CONNECT reserved flag", version: FIRST,
            bytes: &[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x03, 0x00, 0x3C,
                     0x00, 0x01, b'c'], // flags 0000_0011
            error: E::ConnectReservedFlag, reason: R::ProtocolError },
        Case { name: "will QoS without will flag", version: FIRST,
            bytes: &[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x0A, 0x00, 0x3C,
                     0x00, 0x01, b'c'], // flags 0000_1010: will QoS 1, clean
            error: E::InvalidWillFlags, reason: R::MalformedPacket },
        Case { name: "will retain without will flag", version: FIRST,
            bytes: &[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x22, 0x00, 0x3C,
                     0x00, 0x01, b'c'], // flags 0010_0010: will retain, clean
            error: E::InvalidWillFlags, reason: R::MalformedPacket },
        Case { name: "will QoS 3", version: FIRST,
            bytes: &[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x1E, 0x00, 0x3C,
                     0x00, 0x01, b'c'], // flags 0001_1110: will QoS 3, will, clean
            error: E::InvalidQoS, reason: R::MalformedPacket },
        Case { name: "3.1.1 password without user name", version: FIRST,
            bytes: &[0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x42, 0x00, 0x3C,
                     0x00, 0x01, b'c', 0x00, 0x01, b'p'], // flags 0100_0010, password "p"
            error: E::PasswordWithoutUserName, reason: R::MalformedPacket },
        Case { name: "client id holding U+0000", version: FIRST,
            bytes: &[0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C,
                     0x00, 0x02, b'a', 0x00], // id "a\0"
            error: E::NullCharacter { field: "client identifier" }, reason: R::MalformedPacket },
        Case { name: "will topic with a wildcard", version: FIRST,
            bytes: &[0x10, 0x11, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x06, 0x00, 0x3C,
                     0x00, 0x00, // id ""
                     0x00, 0x01, b'#', // will topic "#"
                     0x00, 0x00], // will payload empty
            error: E::InvalidTopicName(TopicError::WildcardInName), reason: R::TopicNameInvalid },
        Case { name: "byte after the last CONNECT field", version: FIRST,
            bytes: &[0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C,
                     0x00, 0x01, b'c', 0x00],
            error: E::TrailingBytes { count: 1 }, reason: R::MalformedPacket },
        Case { name: "CONNECT cut inside the keep alive", version: FIRST,
            bytes: &[0x10, 0x09, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00],
            error: E::UnexpectedEnd { field: "keep alive" }, reason: R::MalformedPacket },
        Case { name: "receive maximum 0", version: FIRST,
            bytes: &[0x10, 0x11, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
                     0x03, 0x21, 0x00, 0x00, // props: receive maximum 0
                     0x00, 0x01, b'c'],
            error: E::InvalidPropertyValue { property: 0x21 }, reason: R::ProtocolError },
        Case { name: "maximum packet size 0", version: FIRST,
            bytes: &[0x10, 0x13, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
                     0x05, 0x27, 0x00, 0x00, 0x00, 0x00, // props: maximum packet size 0
                     0x00, 0x01, b'c'],
            error: E::InvalidPropertyValue { property: 0x27 }, reason: R::ProtocolError },
        Case { name: "request problem information 2", version: FIRST,
            bytes: &[0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
                     0x02, 0x17, 0x02, // props: request problem information 2
                     0x00, 0x01, b'c'],
            error: E::InvalidPropertyValue { property: 0x17 }, reason: R::ProtocolError },
        Case { name: "session expiry among will properties", version: FIRST,
            bytes: &[0x10, 0x19, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x3C,
                     0x00, // no CONNECT props
                     0x00, 0x01, b'c', // id "c"
                     0x05, 0x11, 0x00, 0x00, 0x00, 0x01, // will props: session expiry (not allowed)
                     0x00, 0x01, b'w', // will topic "w"
                     0x00, 0x00], // will payload empty
            error: E::PropertyNotAllowed { property: 0x11, packet_type: 1 }, reason: R::ProtocolError },

        // ---- CONNACK ----
        Case { name: "CONNACK reserved flag bits", version: V311,
            bytes: &[0x20, 0x02, 0x02, 0x00], // flags 0000_0010
            error: E::ConnAckReservedFlags, reason: R::MalformedPacket },
        Case { name: "3.1.1 CONNACK return code 6", version: V311,
            bytes: &[0x20, 0x02, 0x00, 0x06],
            error: E::InvalidReasonCode { packet_type: 2, code: 6 }, reason: R::MalformedPacket },
        Case { name: "5 CONNACK with a PUBACK reason", version: V5,
            bytes: &[0x20, 0x03, 0x00, 0x10, 0x00], // 0x10 no matching subscribers
            error: E::InvalidReasonCode { packet_type: 2, code: 0x10 }, reason: R::MalformedPacket },
        Case { name: "maximum QoS 2", version: V5,
            bytes: &[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02],
            error: E::InvalidPropertyValue { property: 0x24 }, reason: R::ProtocolError },
        Case { name: "3.1.1 CONNACK with a third byte", version: V311,
            bytes: &[0x20, 0x03, 0x00, 0x00, 0x00],
            error: E::TrailingBytes { count: 1 }, reason: R::MalformedPacket },

        // ---- PUBACK, PUBREC, PUBREL, PUBCOMP ----
        Case { name: "3.1.1 PUBACK with a reason byte", version: V311,
            bytes: &[0x40, 0x03, 0x00, 0x01, 0x00],
            error: E::TrailingBytes { count: 1 }, reason: R::MalformedPacket },
        Case { name: "PUBACK reason packet id not found", version: V5,
            bytes: &[0x40, 0x03, 0x00, 0x01, 0x92], // 0x92 belongs to PUBREL/PUBCOMP
            error: E::InvalidReasonCode { packet_type: 4, code: 0x92 }, reason: R::MalformedPacket },
        Case { name: "PUBREL reason no matching subscribers", version: V5,
            bytes: &[0x62, 0x03, 0x00, 0x01, 0x10],
            error: E::InvalidReasonCode { packet_type: 6, code: 0x10 }, reason: R::MalformedPacket },
        Case { name: "PUBCOMP packet id 0", version: V311,
            bytes: &[0x70, 0x02, 0x00, 0x00],
            error: E::ZeroPacketId, reason: R::MalformedPacket },
        Case { name: "topic alias in PUBACK", version: V5,
            bytes: &[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
            error: E::PropertyNotAllowed { property: 0x23, packet_type: 4 }, reason: R::ProtocolError },
        Case { name: "PUBREC of one byte", version: V31,
            bytes: &[0x50, 0x01, 0x00],
            error: E::UnexpectedEnd { field: "packet identifier" }, reason: R::MalformedPacket },

        // ---- SUBSCRIBE ----
        Case { name: "SUBSCRIBE without filters", version: V311,
            bytes: &[0x82, 0x02, 0x00, 0x01],
            error: E::NoTopicFilters, reason: R::ProtocolError },
        Case { name: "3.1.1 options with bit 2 set", version: V311,
            bytes: &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04],
            error: E::SubscriptionOptionsReserved, reason: R::MalformedPacket },
        Case { name: "5 options with bit 6 set", version: V5,
            bytes: &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40],
            error: E::SubscriptionOptionsReserved, reason: R::MalformedPacket },
        Case { name: "retain handling 3", version: V5,
            bytes: &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30],
            error: E::InvalidRetainHandling, reason: R::MalformedPacket },
        Case { name: "subscription QoS 3", version: V31,
            bytes: &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03],
            error: E::InvalidQoS, reason: R::MalformedPacket },
        Case { name: "no local on a shared subscription", version: V5,
            bytes: &[0x82, 0x10, 0x00, 0x01, 0x00,
                     0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'a',
                     0x04], // no local
            error: E::NoLocalOnSharedSubscription, reason: R::ProtocolError },
        Case { name: "filter with # in the middle", version: V311,
            bytes: &[0x82, 0x0A, 0x00, 0x01, 0x00, 0x05, b'a', b'/', b'#', b'/', b'b', 0x00],
            error: E::InvalidTopicFilter(TopicError::MultiLevelWildcardMisplaced),
            reason: R::TopicFilterInvalid },
        Case { name: "filter without its options byte", version: V311,
            bytes: &[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
            error: E::UnexpectedEnd { field: "subscription options" }, reason: R::MalformedPacket },
        Case { name: "two subscription identifiers in SUBSCRIBE", version: V5,
            bytes: &[0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00],
            error: E::DuplicateProperty(0x0B), reason: R::ProtocolError },
        Case { name: "SUBSCRIBE packet id 0", version: V311,
            bytes: &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00],
            error: E::ZeroPacketId, reason: R::MalformedPacket },

        // ---- UNSUBSCRIBE, SUBACK, UNSUBACK ----
        Case { name: "UNSUBSCRIBE without filters", version: V5,
            bytes: &[0xA2, 0x03, 0x00, 0x01, 0x00], // id 1, no props, nothing else
            error: E::NoTopicFilters, reason: R::ProtocolError },
        Case { name: "UNSUBSCRIBE filter a+", version: V311,
            bytes: &[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', b'+'],
            error: E::InvalidTopicFilter(TopicError::SingleLevelWildcardMisplaced),
            reason: R::TopicFilterInvalid },
        Case { name: "3.1.1 SUBACK return code 3", version: V311,
            bytes: &[0x90, 0x03, 0x00, 0x01, 0x03],
            error: E::InvalidReasonCode { packet_type: 9, code: 3 }, reason: R::MalformedPacket },
        Case { name: "5 UNSUBACK reason disconnect with will", version: V5,
            bytes: &[0xB0, 0x04, 0x00, 0x01, 0x00, 0x04],
            error: E::InvalidReasonCode { packet_type: 11, code: 0x04 }, reason: R::MalformedPacket },
        Case { name: "3.1.1 UNSUBACK with a reason byte", version: V311,
            bytes: &[0xB0, 0x03, 0x00, 0x01, 0x00],
            error: E::TrailingBytes { count: 1 }, reason: R::MalformedPacket },

        // ---- DISCONNECT, AUTH, PING ----
        Case { name: "3.1.1 DISCONNECT with a body", version: V311,
            bytes: &[0xE0, 0x01, 0x00],
            error: E::TrailingBytes { count: 1 }, reason: R::MalformedPacket },
        Case { name: "DISCONNECT reason continue authentication", version: V5,
            bytes: &[0xE0, 0x01, 0x18],
            error: E::InvalidReasonCode { packet_type: 14, code: 0x18 }, reason: R::MalformedPacket },
        Case { name: "server reference twice in DISCONNECT", version: V5,
            bytes: &[0xE0, 0x0A, 0x9C, 0x08, 0x1C, 0x00, 0x01, b'a', 0x1C, 0x00, 0x01, b'b'],
            error: E::DuplicateProperty(0x1C), reason: R::ProtocolError },
        Case { name: "AUTH reason disconnect with will", version: V5,
            bytes: &[0xF0, 0x02, 0x04, 0x00],
            error: E::InvalidReasonCode { packet_type: 15, code: 0x04 }, reason: R::MalformedPacket },
        Case { name: "session expiry in AUTH", version: V5,
            bytes: &[0xF0, 0x07, 0x18, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01],
            error: E::PropertyNotAllowed { property: 0x11, packet_type: 15 }, reason: R::ProtocolError },
        Case { name: "PINGRESP with a body", version: V5,
            bytes: &[0xD0, 0x01, 0x00],
            error: E::TrailingBytes { count: 1 }, reason: R::MalformedPacket },
    ]
}

#[test]
fn every_malformed_packet_names_its_error_and_reason() {
    let cases = cases();
    assert!(cases.len() >= 45, "the table must cover at least 45 inputs");
    let mut failures = Vec::new();
    for case in &cases {
        // Guard the table itself: a one-byte remaining length must match the bytes given,
        // or a case could pass for the wrong reason. Framing cases use longer varints.
        if case.bytes.len() >= 2 && case.bytes[1] < 0x80 {
            assert_eq!(
                usize::from(case.bytes[1]),
                case.bytes.len() - 2,
                "{}: remaining length does not match the bytes",
                case.name
            );
        }
        let mut buf = BytesMut::from(case.bytes);
        let got = decode(&mut buf, case.version, MAX_PACKET_SIZE_BYTES);
        if got != Err(case.error.clone()) {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.error, got
            ));
        } else if case.error.reason_code() != case.reason {
            failures.push(format!(
                "{}: reason {} instead of {}",
                case.name,
                case.error.reason_code(),
                case.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn case_names_are_distinct() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|case| case.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "two cases share a name");
}
