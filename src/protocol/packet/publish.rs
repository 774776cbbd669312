//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP.

use bytes::Bytes;

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
