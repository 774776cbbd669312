//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.

use crate::protocol::properties::{AckProperties, SubscribeProperties, UnsubscribeProperties};
use crate::protocol::{PacketId, QoS, ReasonCode, TopicFilter};

/// MQTT 5 retain handling (spec 3.8.3.1). Before MQTT 5 it is always `SendAtSubscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    #[default]
    SendAtSubscribe = 0,
    SendAtSubscribeIfNew = 1,
    DoNotSend = 2,
}

/// The options byte of one SUBSCRIBE entry. Before MQTT 5 only `qos` travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE: at least one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub properties: SubscribeProperties,
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

/// SUBACK: one reason code per filter, in order. Before MQTT 5 each is sent as a 3.x return
/// code ([`ReasonCode::v3_suback_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub properties: AckProperties,
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE: at least one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub properties: UnsubscribeProperties,
    pub filters: Vec<TopicFilter>,
}

/// UNSUBACK. Before MQTT 5 it carries no reason codes (`reason_codes` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    pub properties: AckProperties,
    pub reason_codes: Vec<ReasonCode>,
}
