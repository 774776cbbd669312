//! Decoding and encoding of whole packets, dispatching to the packet families.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::frame::{check_frame, FrameStatus};
use super::packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, PublishOverrides, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};
use super::reason::ReasonContext;
use super::types::ProtocolVersion;
use super::wire::{packet_len, varint_len, Counter, Reader, Sink};

/// Decodes one packet from the front of `buf` if a whole one is there, splitting it off
/// (zero-copy: the packet's `Bytes` share `buf`'s allocation). `Ok(None)`: more bytes needed.
///
/// `version` is `None` until CONNECT has been decoded: then only CONNECT is accepted.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size_bytes: u32,
) -> Result<Option<Packet>, DecodeError> {
    match check_frame(buf, max_packet_size_bytes)? {
        FrameStatus::NeedMore { .. } => Ok(None),
        FrameStatus::Complete {
            first_byte,
            header_len_bytes,
            total_len_bytes,
        } => {
            let mut body = buf.split_to(total_len_bytes).freeze();
            // Advancing moves a pointer; `slice` would cost a reference-count round trip.
            body.advance(header_len_bytes);
            decode_body(first_byte, body, version).map(Some)
        }
    }
}

/// Decodes exactly one whole packet held in `frame` (fixed header included).
pub fn decode_frame(frame: Bytes, version: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    match check_frame(&frame, u32::MAX)? {
        FrameStatus::NeedMore { .. } => Err(DecodeError::UnexpectedEnd {
            field: "fixed header or body",
        }),
        FrameStatus::Complete {
            first_byte,
            header_len_bytes,
            total_len_bytes,
        } => {
            if frame.len() > total_len_bytes {
                return Err(DecodeError::TrailingBytes {
                    count: frame.len() - total_len_bytes,
                });
            }
            let mut body = frame;
            body.advance(header_len_bytes);
            decode_body(first_byte, body, version)
        }
    }
}

/// The flags every packet type but PUBLISH must carry [MQTT-2.1.3-1].
fn required_flags(packet_type: u8) -> u8 {
    match packet_type {
        6 | 8 | 10 => 0b0010,
        _ => 0,
    }
}

#[inline]
fn decode_body(
    first_byte: u8,
    body: Bytes,
    version: Option<ProtocolVersion>,
) -> Result<Packet, DecodeError> {
    let packet_type = first_byte >> 4;
    let flags = first_byte & 0x0F;
    let Some(version) = version else {
        if packet_type != 1 {
            return Err(DecodeError::FirstPacketNotConnect);
        }
        check_flags(packet_type, flags)?;
        return Ok(Packet::Connect(Box::new(Connect::decode(body)?)));
    };
    if packet_type == 3 {
        return Publish::decode(flags, body, version).map(Packet::Publish);
    }
    if packet_type == 0 || (packet_type == 15 && !version.is_v5()) {
        return Err(DecodeError::InvalidPacketType(packet_type));
    }
    check_flags(packet_type, flags)?;
    Ok(match packet_type {
        1 => Packet::Connect(Box::new(Connect::decode(body)?)),
        2 => Packet::ConnAck(Box::new(ConnAck::decode(body, version)?)),
        4 => Packet::PubAck(Ack::decode(4, ReasonContext::PubAck, body, version)?),
        5 => Packet::PubRec(Ack::decode(5, ReasonContext::PubRec, body, version)?),
        6 => Packet::PubRel(Ack::decode(6, ReasonContext::PubRel, body, version)?),
        7 => Packet::PubComp(Ack::decode(7, ReasonContext::PubComp, body, version)?),
        8 => Packet::Subscribe(Subscribe::decode(body, version)?),
        9 => Packet::SubAck(SubAck::decode(body, version)?),
        10 => Packet::Unsubscribe(Unsubscribe::decode(body, version)?),
        11 => Packet::UnsubAck(UnsubAck::decode(body, version)?),
        12 => {
            Reader::new(body).finish()?;
            Packet::PingReq
        }
        13 => {
            Reader::new(body).finish()?;
            Packet::PingResp
        }
        14 => Packet::Disconnect(Disconnect::decode(body, version)?),
        _ => Packet::Auth(Box::new(Auth::decode(body)?)),
    })
}

fn check_flags(packet_type: u8, flags: u8) -> Result<(), DecodeError> {
    if flags != required_flags(packet_type) {
        return Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
    }
    Ok(())
}

impl Packet {
    /// Appends the packet, as `version` spells it, to `buf`. CONNECT is always written in
    /// its own `protocol_version`, which is what announces the version to the peer.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if let Packet::Publish(publish) = self {
            return publish.encode_with(version, &PublishOverrides::unchanged(publish), buf);
        }
        let mut counter = Counter::default();
        self.write_body(version, &mut counter);
        if let Some(error) = counter.error {
            return Err(error);
        }
        let body_len = counter.len;
        buf.reserve(packet_len(body_len)?);
        buf.put_u8(self.first_byte());
        Sink::put_varint(buf, body_len as u32);
        let start = buf.len();
        self.write_body(version, buf);
        debug_assert_eq!(buf.len() - start, body_len, "length and bytes disagree");
        Ok(())
    }

    /// The number of bytes `encode` would append, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        if let Packet::Publish(publish) = self {
            return publish.encoded_len_with(version, &PublishOverrides::unchanged(publish));
        }
        let mut counter = Counter::default();
        self.write_body(version, &mut counter);
        1 + varint_len(counter.len) + counter.len
    }

    fn first_byte(&self) -> u8 {
        let packet_type = self.packet_type() as u8;
        let flags = match self {
            Packet::Publish(publish) => {
                u8::from(publish.dup) << 3 | publish.qos.bits() << 1 | u8::from(publish.retain)
            }
            _ => required_flags(packet_type),
        };
        packet_type << 4 | flags
    }

    fn write_body<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        match self {
            Packet::Connect(connect) => connect.write(sink),
            Packet::ConnAck(connack) => connack.write(version, sink),
            Packet::Publish(publish) => {
                // `encode` takes the direct path; this serves `encoded_len`-style counting.
                let overrides = PublishOverrides::unchanged(publish);
                match publish.properties_len(version, &overrides) {
                    Ok(props_len) => publish.write_body(version, &overrides, props_len, sink),
                    Err(error) => sink.fail(error),
                }
            }
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => ack.write(version, sink),
            Packet::Subscribe(subscribe) => subscribe.write(version, sink),
            Packet::SubAck(suback) => suback.write(version, sink),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.write(version, sink),
            Packet::UnsubAck(unsuback) => unsuback.write(version, sink),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(disconnect) => disconnect.write(version, sink),
            Packet::Auth(auth) => auth.write(sink),
        }
    }
}

/// Helpers the packet families' tests share: decode with trailing bytes after the frame,
/// and check that encoding gives the same bytes back.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Bytes after the frame that the decoder must leave alone.
    const TRAILER: [u8; 2] = [0xEE, 0xFF];
    const MAX: u32 = 1 << 20;

    /// Decodes `frame` (followed by a trailer) and checks the decoder stopped at its edge.
    pub(crate) fn decode_one(
        frame: &[u8],
        version: Option<ProtocolVersion>,
    ) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(frame);
        buf.extend_from_slice(&TRAILER);
        let packet = decode(&mut buf, version, MAX)?.expect("a whole frame is buffered");
        assert_eq!(
            &buf[..],
            &TRAILER,
            "the decoder must stop at the frame's edge"
        );
        Ok(packet)
    }

    /// Decodes `frame`, encodes the packet again and checks the bytes and length agree.
    pub(crate) fn round_trip(frame: &[u8], version: ProtocolVersion) -> Packet {
        let connect_first = matches!(frame.first(), Some(byte) if byte >> 4 == 1);
        let decode_version = if connect_first { None } else { Some(version) };
        let packet = decode_one(frame, decode_version).expect("test frame is valid");
        assert_encodes_to(&packet, version, frame);
        packet
    }

    /// Encodes `packet` after some existing bytes and compares with `expected`.
    pub(crate) fn assert_encodes_to(packet: &Packet, version: ProtocolVersion, expected: &[u8]) {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        packet
            .encode(version, &mut buf)
            .expect("test packet encodes");
        assert_eq!(&buf[6..], expected, "encoding of {packet:?}");
        assert_eq!(packet.encoded_len(version), expected.len());
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::protocol::ReasonCode;

    const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);
    const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);

    #[test]
    fn only_connect_is_accepted_first() {
        // PINGREQ before CONNECT.
        assert_eq!(
            decode_one(&[0xC0, 0x00], None),
            Err(DecodeError::FirstPacketNotConnect)
        );
        assert_eq!(
            DecodeError::FirstPacketNotConnect.reason_code(),
            ReasonCode::ProtocolError
        );
    }

    #[test]
    fn partial_frames_decode_to_none_and_leave_the_buffer() {
        // PUBLISH announcing 5 body bytes, only 2 there.
        let mut buf = BytesMut::from(&[0x30, 0x05, 0x00, 0x01][..]);
        assert_eq!(decode(&mut buf, V4, 1024), Ok(None));
        assert_eq!(buf.len(), 4);
    }

    #[test]
    fn two_packets_in_one_buffer_decode_one_at_a_time() {
        // PINGREQ, PINGRESP, then half a PUBLISH header.
        let mut buf = BytesMut::from(&[0xC0, 0x00, 0xD0, 0x00, 0x30][..]);
        assert_eq!(decode(&mut buf, V4, 1024), Ok(Some(Packet::PingReq)));
        assert_eq!(decode(&mut buf, V4, 1024), Ok(Some(Packet::PingResp)));
        assert_eq!(decode(&mut buf, V4, 1024), Ok(None));
        assert_eq!(&buf[..], &[0x30]);
    }

    #[test]
    fn ping_round_trips_and_refuses_a_body() {
        round_trip(&[0xC0, 0x00], ProtocolVersion::V3_1_1);
        round_trip(&[0xD0, 0x00], ProtocolVersion::V5);
        // PINGREQ with one body byte.
        assert_eq!(
            decode_one(&[0xC0, 0x01, 0x00], V4),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn auth_is_a_v5_packet_only() {
        assert_eq!(
            decode_one(&[0xF0, 0x00], V4),
            Err(DecodeError::InvalidPacketType(15))
        );
        assert!(decode_one(&[0xF0, 0x00], V5).is_ok());
    }

    #[test]
    fn v31_and_v311_spell_the_common_packets_alike() {
        let frames: [&[u8]; 11] = [
            &[0x20, 0x02, 0x00, 0x05],             // CONNACK: refused, not authorized
            &[0x30, 0x04, 0x00, 0x01, b't', b'p'], // PUBLISH QoS 0 "t", payload "p"
            &[0x3B, 0x05, 0x00, 0x01, b't', 0x00, 0x02], // PUBLISH DUP QoS 1 retain, id 2
            &[0x50, 0x02, 0x00, 0x03],             // PUBREC 3
            &[0x62, 0x02, 0x00, 0x03],             // PUBREL 3
            &[0x70, 0x02, 0x00, 0x03],             // PUBCOMP 3
            &[0x82, 0x06, 0x00, 0x04, 0x00, 0x01, b'#', 0x00], // SUBSCRIBE 4 "#" QoS 0
            &[0x90, 0x03, 0x00, 0x04, 0x02],       // SUBACK 4: granted QoS 2
            &[0xA2, 0x05, 0x00, 0x05, 0x00, 0x01, b'+'], // UNSUBSCRIBE 5 "+"
            &[0xB0, 0x02, 0x00, 0x05],             // UNSUBACK 5
            &[0xE0, 0x00],                         // DISCONNECT
        ];
        for frame in frames {
            let v31 = round_trip(frame, ProtocolVersion::V3_1);
            let v311 = round_trip(frame, ProtocolVersion::V3_1_1);
            assert_eq!(v31, v311);
        }
    }

    #[test]
    fn values_the_wire_cannot_carry_are_refused_when_encoding() {
        let long = bytestring::ByteString::from("x".repeat(70_000));
        let mut suback = crate::protocol::SubAck {
            packet_id: crate::protocol::PacketId::new(1).expect("nonzero"),
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success],
        };
        suback.properties.reason_string = Some(long);
        let packet = Packet::SubAck(suback);
        let mut buf = BytesMut::new();
        assert_eq!(
            packet.encode(ProtocolVersion::V5, &mut buf),
            Err(EncodeError::FieldTooLong { field: "property" })
        );
        assert!(buf.is_empty(), "nothing is written when encoding fails");
        // 3.1.1 does not carry the reason string, so the same packet encodes.
        assert!(packet.encode(ProtocolVersion::V3_1_1, &mut buf).is_ok());
    }

    #[test]
    fn decode_frame_takes_exactly_one_frame() {
        let frame = Bytes::from_static(&[0xC0, 0x00]);
        assert_eq!(decode_frame(frame, V4), Ok(Packet::PingReq));
        let two = Bytes::from_static(&[0xC0, 0x00, 0xC0]);
        assert_eq!(
            decode_frame(two, V4),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        let short = Bytes::from_static(&[0x30, 0x05, 0x00]);
        assert!(matches!(
            decode_frame(short, V4),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }
}

/// A rough timing of the broker's hot path; run in release:
/// `cargo test --release --lib protocol::codec::timing -- --ignored --nocapture`.
#[cfg(test)]
mod timing {
    use super::*;
    use crate::protocol::{PacketId, QoS, TopicName};
    use std::hint::black_box;
    use std::time::Instant;

    fn sample_frame(version: ProtocolVersion) -> Bytes {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::parse("sensors/floor1/temp").expect("valid topic"),
            packet_id: PacketId::new(42),
            properties: Default::default(),
            payload: Bytes::from(vec![0x5A; 64]),
        };
        let mut buf = BytesMut::new();
        Packet::Publish(publish)
            .encode(version, &mut buf)
            .expect("valid publish");
        buf.freeze()
    }

    /// Every PUBLISH is moved from the decoder through routing and dropped: its size is a
    /// per-message cost. The properties stay out of line (one pointer, `None` when unset).
    /// `ConnAck` and `Auth` are boxed for the same reason; `Disconnect` (104 B) now sets
    /// `Packet`'s size.
    #[test]
    fn publish_stays_small() {
        assert_eq!(
            std::mem::size_of::<crate::protocol::BoxedPublishProperties>(),
            std::mem::size_of::<usize>()
        );
        assert!(std::mem::size_of::<Publish>() <= 80);
        assert!(std::mem::size_of::<Packet>() <= 104);
    }

    /// Unset properties are not allocated, read as empty, and compare by content.
    #[test]
    fn boxed_publish_properties_allocate_only_when_set() {
        use crate::protocol::{BoxedPublishProperties, PublishProperties};
        let mut none = BoxedPublishProperties::default();
        assert!(none.is_empty() && none.get_mut().is_none());
        // Boxing an empty set keeps nothing, so it still equals the absent one.
        let mut empty = BoxedPublishProperties::new(PublishProperties::default());
        assert!(empty.get_mut().is_none());
        assert_eq!(none, empty);
        let mut set = BoxedPublishProperties::default();
        set.make_mut().message_expiry_interval_s = Some(5);
        assert_eq!(set.message_expiry_interval_s, Some(5));
        assert_ne!(set, none);
        // Cleared again, an allocated set equals an absent one.
        if let Some(properties) = set.get_mut() {
            properties.message_expiry_interval_s = None;
        }
        assert_eq!(set, none);
        assert_eq!(set.into_inner(), PublishProperties::default());
        // A v5 PUBLISH with a zero property length decodes to the unallocated form.
        let Ok(Some(Packet::Publish(mut publish))) = decode(
            &mut BytesMut::from(&sample_frame(ProtocolVersion::V5)[..]),
            Some(ProtocolVersion::V5),
            1 << 20,
        ) else {
            panic!("sample frame decodes");
        };
        assert!(publish.properties.get_mut().is_none());
    }

    #[test]
    #[ignore = "prints sizes for the report"]
    fn packet_sizes() {
        println!(
            "Packet {} B, Publish {} B, PublishProperties {} B, DecodeError {} B",
            std::mem::size_of::<Packet>(),
            std::mem::size_of::<Publish>(),
            std::mem::size_of::<crate::protocol::PublishProperties>(),
            std::mem::size_of::<DecodeError>()
        );
    }

    #[test]
    #[ignore = "timing, run in release"]
    fn publish_decode_plus_encode_ns() {
        // CULEX_TIMING_ROUNDS lets callgrind run a short count.
        let rounds: u32 = std::env::var("CULEX_TIMING_ROUNDS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(2_000_000);
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let frame = sample_frame(version);
            let mut read_buf = BytesMut::with_capacity(4096);
            let mut write_buf = BytesMut::with_capacity(4096);
            let start = Instant::now();
            for _ in 0..rounds {
                read_buf.extend_from_slice(&frame);
                let packet = decode(&mut read_buf, Some(version), 1 << 20)
                    .expect("valid frame")
                    .expect("whole frame");
                write_buf.clear();
                packet.encode(version, &mut write_buf).expect("encodes");
                black_box(&write_buf);
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(rounds);
            println!("{version:?}: decode + encode QoS 1 PUBLISH, 64 B payload: {ns:.1} ns/op");
        }
    }
}
