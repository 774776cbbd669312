//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP.

use bytes::{Bytes, BytesMut};

use crate::protocol::properties::{AckProperties, PublishProperties};
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
    /// Empty before MQTT 5.
    pub properties: PublishProperties,
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
use crate::protocol::frame::MAX_REMAINING_LENGTH;
use crate::protocol::property_codec::{
    read_properties, write_properties, write_publish_properties,
};
use crate::protocol::reason::ReasonContext;
use crate::protocol::types::ProtocolVersion;
use crate::protocol::wire::varint_len;
use crate::protocol::wire::{Counter, Reader, Sink};

use super::{read_packet_id, read_reason};

const PUBLISH_TYPE: u8 = 3;
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
        let topic_text = reader.string("topic name")?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(read_packet_id(&mut reader)?)
        };
        let properties: PublishProperties = if version.is_v5() {
            read_properties(&mut reader, PUBLISH_TYPE)?
        } else {
            PublishProperties::default()
        };
        // An empty name is allowed only when a topic alias stands in for it [MQTT-3.3.2-1].
        let topic = if topic_text.is_empty() && properties.topic_alias.is_some() {
            TopicName::empty_for_alias()
        } else {
            TopicName::parse(topic_text).map_err(DecodeError::InvalidTopicName)?
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
        let props_len = self.properties_len(version, overrides)?;
        let body_len = self.body_len(version, overrides, props_len);
        if body_len > MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge {
                size_bytes: 1 + varint_len(body_len) + body_len,
            });
        }
        buf.reserve(1 + varint_len(body_len) + body_len);
        let mut first_byte = PUBLISH_TYPE << 4 | overrides.qos.bits() << 1;
        if overrides.dup {
            first_byte |= DUP;
        }
        if overrides.retain {
            first_byte |= RETAIN;
        }
        buf.put_u8(first_byte);
        buf.put_varint(body_len as u32);
        let topic: &[u8] = if overrides.omit_topic {
            &[]
        } else {
            self.topic.as_str().as_bytes()
        };
        buf.put_prefixed("topic name", topic);
        if let Some(packet_id) = overrides.packet_id {
            buf.put_u16(packet_id.get());
        }
        if version.is_v5() {
            buf.put_varint(props_len as u32);
            write_publish_properties(
                &self.properties,
                overrides.topic_alias,
                overrides.subscription_identifiers,
                buf,
            );
        }
        buf.put_slice(&self.payload);
        Ok(())
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

    fn properties_len(
        &self,
        version: ProtocolVersion,
        overrides: &PublishOverrides<'_>,
    ) -> Result<usize, EncodeError> {
        if !version.is_v5() {
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
