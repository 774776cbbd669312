//! CONNECT and CONNACK.

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::properties::{ConnAckProperties, ConnectProperties, WillProperties};
use crate::protocol::{ClientId, ProtocolVersion, QoS, ReasonCode, TopicName};

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol_version: ProtocolVersion,
    /// Clean Session (3.1/3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    pub keep_alive_s: u16,
    pub client_id: ClientId,
    pub will: Option<Will>,
    pub user_name: Option<ByteString>,
    pub password: Option<Bytes>,
    /// Empty before MQTT 5.
    pub properties: ConnectProperties,
}

/// The will message a CONNECT may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Empty before MQTT 5.
    pub properties: WillProperties,
}

/// CONNACK. Before MQTT 5 the reason code travels as the 3.x return code
/// ([`ReasonCode::v3_connack_code`]) and properties are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason_code: ReasonCode,
    pub properties: ConnAckProperties,
}
