//! The codec's one error type. Every variant is the peer's fault and names the MQTT 5 reason
//! code the spec gives for it, so the connection can close with exactly that code.

use super::reason::ReasonCode;
use super::topic::TopicError;

/// What was wrong with the bytes a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The fixed header announces a packet above the maximum packet size; refused before
    /// its body is buffered.
    PacketTooLarge { size_bytes: usize, max_bytes: u32 },
    /// Packet type 0 (reserved in every version), or 15 (AUTH) before MQTT 5.
    InvalidPacketType(u8),
    /// Reserved fixed-header flag bits not as the spec fixes them [MQTT-2.1.3-1].
    InvalidHeaderFlags { packet_type: u8, flags: u8 },
    /// A variable byte integer longer than 4 bytes [MQTT-1.5.5].
    VarIntTooLong,
    /// A variable byte integer not in its shortest form [MQTT-1.5.5-1].
    VarIntNotMinimal,
    /// The packet ended before a field it must hold.
    UnexpectedEnd { field: &'static str },
    /// Bytes left over after every field was read.
    TrailingBytes { count: usize },
    /// A string that is not well-formed UTF-8 (surrogates included) [MQTT-1.5.4-1].
    InvalidUtf8 { field: &'static str },
    /// U+0000 in a string [MQTT-1.5.4-2].
    NullCharacter { field: &'static str },
    /// QoS 3 in a fixed header, will flags or subscription options [MQTT-3.3.1-4].
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    DupOnQoS0,
    /// CONNECT's protocol name is neither `MQTT` nor `MQIsdp`, or does not fit its level.
    InvalidProtocolName,
    /// A protocol level this broker does not speak.
    UnsupportedProtocolVersion(u8),
    /// CONNECT's reserved flag bit set [MQTT-3.1.2-3].
    ConnectReservedFlag,
    /// Will QoS or retain set without the will flag [MQTT-3.1.2-11, -13, -15].
    InvalidWillFlags,
    /// MQTT 3.1.1: a password without a user name [MQTT-3.1.2-22].
    PasswordWithoutUserName,
    /// A packet identifier of zero where one is required [MQTT-2.2.1-3].
    ZeroPacketId,
    /// A PUBLISH topic that is not a valid topic name.
    InvalidTopicName(TopicError),
    /// A SUBSCRIBE/UNSUBSCRIBE filter that is not a valid topic filter.
    InvalidTopicFilter(TopicError),
    /// SUBSCRIBE or UNSUBSCRIBE with no filter [MQTT-3.8.3-3, 3.10.3-2].
    NoTopicFilters,
    /// Reserved bits of subscription options set [MQTT-3.8.3-5].
    SubscriptionOptionsReserved,
    /// Retain handling 3 [MQTT-3.8.3-5].
    InvalidRetainHandling,
    /// No Local on a shared subscription [MQTT-3.8.3-4].
    NoLocalOnSharedSubscription,
    /// A reason code not defined for this packet.
    InvalidReasonCode { packet_type: u8, code: u8 },
    /// A CONNACK acknowledge flags byte with reserved bits set [MQTT-3.2.2-1].
    ConnAckReservedFlags,
    /// A property identifier MQTT 5 does not define.
    UnknownProperty(u8),
    /// A defined property in a packet that may not carry it.
    PropertyNotAllowed { property: u8, packet_type: u8 },
    /// A single-valued property given twice.
    DuplicateProperty(u8),
    /// A property with a value the spec forbids (Receive Maximum 0, Maximum Packet Size 0,
    /// Topic Alias 0, Subscription Identifier 0, a boolean byte above 1, ...).
    InvalidPropertyValue { property: u8 },
    /// A property length that runs past the end of the packet.
    PropertiesOverrun,
    /// A packet other than CONNECT before CONNECT was decoded.
    FirstPacketNotConnect,
}

impl DecodeError {
    /// The MQTT 5 reason code the spec gives for this violation.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            DuplicateProperty(_)
            | PropertyNotAllowed { .. }
            | NoLocalOnSharedSubscription
            | FirstPacketNotConnect
            | InvalidPropertyValue { .. }
            | NoTopicFilters
            | ConnectReservedFlag => ReasonCode::ProtocolError,
            InvalidPacketType(_)
            | InvalidHeaderFlags { .. }
            | VarIntTooLong
            | VarIntNotMinimal
            | UnexpectedEnd { .. }
            | TrailingBytes { .. }
            | InvalidUtf8 { .. }
            | NullCharacter { .. }
            | InvalidQoS
            | DupOnQoS0
            | InvalidProtocolName
            | InvalidWillFlags
            | PasswordWithoutUserName
            | ZeroPacketId
            | SubscriptionOptionsReserved
            | InvalidRetainHandling
            | InvalidReasonCode { .. }
            | ConnAckReservedFlags
            | UnknownProperty(_)
            | PropertiesOverrun => ReasonCode::MalformedPacket,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} (reason {})", self, self.reason_code())
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded: a value the wire format cannot carry. These are our
/// own faults (or a caller's), never a peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The encoded packet would exceed 268,435,455 bytes, the most a remaining length holds.
    PacketTooLarge { size_bytes: usize },
    /// A string or binary field longer than 65,535 bytes.
    FieldTooLong { field: &'static str },
    /// A PUBLISH with QoS 1 or 2 and no packet identifier, or the reverse.
    PacketIdMismatch,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for EncodeError {}
