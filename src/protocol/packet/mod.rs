//! The packets of MQTT 3.1, 3.1.1 and 5.0, one file per family, and the one `Packet` enum
//! the rest of the broker matches on.

pub mod connect;
pub mod disconnect;
pub mod publish;
pub mod subscribe;

pub use connect::{ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use publish::{Ack, Publish, PublishOverrides, PUBACK_TYPE, PUBCOMP_TYPE, PUBREC_TYPE};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// The control packet type, the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    /// Boxed, like `Connect`: once per connection, and its inline properties (256 B) would
    /// otherwise set the size every PUBLISH-carrying `Packet` is moved at.
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// Boxed for the same reason as `ConnAck` (128 B, rare).
    Auth(Box<Auth>),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

use crate::protocol::error::DecodeError;
use crate::protocol::reason::{ReasonCode, ReasonContext};
use crate::protocol::types::PacketId;
use crate::protocol::wire::Reader;

/// A packet identifier, refusing zero [MQTT-2.2.1-3].
pub(crate) fn read_packet_id(reader: &mut Reader) -> Result<PacketId, DecodeError> {
    PacketId::new(reader.u16("packet identifier")?).ok_or(DecodeError::ZeroPacketId)
}

/// An MQTT 5 reason code, refusing one the spec does not define for this packet.
pub(crate) fn read_reason(
    reader: &mut Reader,
    context: ReasonContext,
    packet_type: u8,
) -> Result<ReasonCode, DecodeError> {
    let code = reader.u8("reason code")?;
    ReasonCode::from_code(code)
        .filter(|reason| reason.valid_for(context))
        .ok_or(DecodeError::InvalidReasonCode { packet_type, code })
}
