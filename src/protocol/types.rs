//! Small checked values shared by every packet: QoS, packet identifiers, protocol versions,
//! client identifiers. Each is a newtype so that only a checked value can exist.

use bytestring::ByteString;
use std::num::NonZeroU16;

/// Quality of service. QoS 3 does not exist: `QoS::try_from(3)` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The two bits as they stand in a fixed header or subscription option.
    pub const fn bits(self) -> u8 {
        self as u8
    }

    pub const fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

impl TryFrom<u8> for QoS {
    type Error = u8;
    fn try_from(bits: u8) -> Result<Self, u8> {
        QoS::from_bits(bits).ok_or(bits)
    }
}

/// A packet identifier. Zero is never valid on the wire [MQTT-2.2.1-3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    pub const fn new(id: u16) -> Option<PacketId> {
        match NonZeroU16::new(id) {
            Some(id) => Some(PacketId(id)),
            None => None,
        }
    }

    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The next identifier after this one, wrapping from 65535 to 1.
    pub const fn next(self) -> PacketId {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(id) => PacketId(id),
            None => PacketId(NonZeroU16::MIN),
        }
    }
}

impl From<PacketId> for u16 {
    fn from(id: PacketId) -> u16 {
        id.get()
    }
}

/// The protocol level byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`.
    V3_1 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`.
    V3_1_1 = 4,
    /// MQTT 5.0, protocol name `MQTT`.
    V5 = 5,
}

impl ProtocolVersion {
    pub const fn level(self) -> u8 {
        self as u8
    }

    pub const fn from_level(level: u8) -> Option<ProtocolVersion> {
        match level {
            3 => Some(ProtocolVersion::V3_1),
            4 => Some(ProtocolVersion::V3_1_1),
            5 => Some(ProtocolVersion::V5),
            _ => None,
        }
    }

    /// The protocol name CONNECT carries for this level.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            _ => "MQTT",
        }
    }

    /// MQTT 5 packets carry properties and reason codes; earlier versions do not.
    pub const fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }
}

/// A client identifier as sent in CONNECT: valid UTF-8, no U+0000. It may be empty (the
/// broker then assigns one or refuses, by version and clean-session rules). Length rules
/// beyond the codec's (MQTT 3.1's 23 bytes) are the broker's policy, not the codec's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientId(ByteString);

impl ClientId {
    /// Checks the MQTT string rules; `None` if `id` holds U+0000.
    pub fn new(id: impl Into<ByteString>) -> Option<ClientId> {
        let id = id.into();
        if id.contains('\0') {
            return None;
        }
        Some(ClientId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_byte_string(&self) -> &ByteString {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_three_is_refused() {
        assert_eq!(QoS::try_from(3), Err(3));
        assert_eq!(QoS::try_from(2), Ok(QoS::ExactlyOnce));
    }

    #[test]
    fn packet_id_zero_is_refused_and_wraps_to_one() {
        assert!(PacketId::new(0).is_none());
        assert_eq!(PacketId::new(65535).map(PacketId::next), PacketId::new(1));
    }
}
