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

use bytes::Bytes;

use crate::protocol::error::DecodeError;
use crate::protocol::property_codec::{read_properties, write_properties};
use crate::protocol::reason::ReasonContext;
use crate::protocol::types::ProtocolVersion;
use crate::protocol::wire::{Reader, Sink};

use super::{read_packet_id, read_reason};

const SUBSCRIBE_TYPE: u8 = 8;
const SUBACK_TYPE: u8 = 9;
const UNSUBSCRIBE_TYPE: u8 = 10;
const UNSUBACK_TYPE: u8 = 11;

// Subscription options bits (spec 3.8.3.1).
const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

impl SubscriptionOptions {
    fn decode(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved);
        }
        let qos = QoS::from_bits(byte & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let retain_handling = match (byte >> RETAIN_HANDLING_SHIFT) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & NO_LOCAL != 0,
            retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    fn byte(&self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos.bits();
        if version.is_v5() {
            if self.no_local {
                byte |= NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

impl Subscribe {
    pub(crate) fn decode(body: Bytes, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
        let mut reader = Reader::new(body);
        let packet_id = read_packet_id(&mut reader)?;
        let properties = if version.is_v5() {
            read_properties(&mut reader, SUBSCRIBE_TYPE)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !reader.is_empty() {
            let filter = TopicFilter::parse(reader.string("topic filter")?)
                .map_err(DecodeError::InvalidTopicFilter)?;
            let options = SubscriptionOptions::decode(reader.u8("subscription options")?, version)?;
            if options.no_local && filter.shared().is_some() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        sink.put_u16(self.packet_id.get());
        if version.is_v5() {
            write_properties(&self.properties, sink);
        }
        for (filter, options) in &self.filters {
            sink.put_prefixed("topic filter", filter.as_str().as_bytes());
            sink.put_u8(options.byte(version));
        }
    }
}

impl SubAck {
    pub(crate) fn decode(body: Bytes, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let mut reader = Reader::new(body);
        let packet_id = read_packet_id(&mut reader)?;
        let properties = if version.is_v5() {
            read_properties(&mut reader, SUBACK_TYPE)?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(reader.remaining());
        while !reader.is_empty() {
            let reason = if version.is_v5() {
                read_reason(&mut reader, ReasonContext::SubAck, SUBACK_TYPE)?
            } else {
                let code = reader.u8("return code")?;
                match code {
                    0 => ReasonCode::Success,
                    1 => ReasonCode::GrantedQoS1,
                    2 => ReasonCode::GrantedQoS2,
                    0x80 => ReasonCode::UnspecifiedError,
                    _ => {
                        return Err(DecodeError::InvalidReasonCode {
                            packet_type: SUBACK_TYPE,
                            code,
                        })
                    }
                }
            };
            reason_codes.push(reason);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::UnexpectedEnd {
                field: "reason code",
            });
        }
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        sink.put_u16(self.packet_id.get());
        if version.is_v5() {
            write_properties(&self.properties, sink);
            for reason in &self.reason_codes {
                sink.put_u8(reason.code());
            }
        } else {
            for reason in &self.reason_codes {
                sink.put_u8(reason.v3_suback_code());
            }
        }
    }
}

impl Unsubscribe {
    pub(crate) fn decode(
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let mut reader = Reader::new(body);
        let packet_id = read_packet_id(&mut reader)?;
        let properties = if version.is_v5() {
            read_properties(&mut reader, UNSUBSCRIBE_TYPE)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !reader.is_empty() {
            let filter = TopicFilter::parse(reader.string("topic filter")?)
                .map_err(DecodeError::InvalidTopicFilter)?;
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        sink.put_u16(self.packet_id.get());
        if version.is_v5() {
            write_properties(&self.properties, sink);
        }
        for filter in &self.filters {
            sink.put_prefixed("topic filter", filter.as_str().as_bytes());
        }
    }
}

impl UnsubAck {
    pub(crate) fn decode(body: Bytes, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let mut reader = Reader::new(body);
        let packet_id = read_packet_id(&mut reader)?;
        if !version.is_v5() {
            reader.finish()?;
            return Ok(UnsubAck {
                packet_id,
                properties: AckProperties::default(),
                reason_codes: Vec::new(),
            });
        }
        let properties = read_properties(&mut reader, UNSUBACK_TYPE)?;
        let mut reason_codes = Vec::with_capacity(reader.remaining());
        while !reader.is_empty() {
            reason_codes.push(read_reason(
                &mut reader,
                ReasonContext::UnsubAck,
                UNSUBACK_TYPE,
            )?);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::UnexpectedEnd {
                field: "reason code",
            });
        }
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        sink.put_u16(self.packet_id.get());
        if version.is_v5() {
            write_properties(&self.properties, sink);
            for reason in &self.reason_codes {
                sink.put_u8(reason.code());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::test_support::{assert_encodes_to, round_trip};
    use crate::protocol::Packet;
    use std::num::NonZeroU32;

    #[test]
    fn v311_subscribe_two_filters() {
        let frame = [
            0x82, 0x0C, // SUBSCRIBE, remaining length 12
            0x00, 0x01, // packet id 1
            0x00, 0x03, b'a', b'/', b'+', 0x01, // "a/+" QoS 1
            0x00, 0x01, b'#', 0x02, // "#" QoS 2
        ];
        let Packet::Subscribe(subscribe) = round_trip(&frame, ProtocolVersion::V3_1_1) else {
            panic!("expected SUBSCRIBE");
        };
        assert_eq!(subscribe.filters.len(), 2);
        assert_eq!(subscribe.filters[0].0.as_str(), "a/+");
        assert_eq!(subscribe.filters[0].1.qos, QoS::AtLeastOnce);
        assert_eq!(subscribe.filters[1].1.qos, QoS::ExactlyOnce);
    }

    #[test]
    fn v5_subscribe_with_options_and_identifier() {
        let frame = [
            0x82, 0x0B, // SUBSCRIBE, remaining length 11
            0x00, 0x02, // packet id 2
            0x02, 0x0B, 0x05, // properties: subscription identifier 5
            0x00, 0x03, b'a', b'/', b'b', // "a/b"
            0x2D, // retain handling 2, retain as published, no local, QoS 1
        ];
        let Packet::Subscribe(subscribe) = round_trip(&frame, ProtocolVersion::V5) else {
            panic!("expected SUBSCRIBE");
        };
        assert_eq!(
            subscribe.properties.subscription_identifier,
            NonZeroU32::new(5)
        );
        let options = subscribe.filters[0].1;
        assert_eq!(options.qos, QoS::AtLeastOnce);
        assert!(options.no_local && options.retain_as_published);
        assert_eq!(options.retain_handling, RetainHandling::DoNotSend);
    }

    #[test]
    fn suback_v3_and_v5() {
        // SUBACK 1: granted QoS 1, failure.
        let Packet::SubAck(suback) = round_trip(
            &[0x90, 0x04, 0x00, 0x01, 0x01, 0x80],
            ProtocolVersion::V3_1_1,
        ) else {
            panic!("expected SUBACK");
        };
        assert_eq!(
            suback.reason_codes,
            vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError]
        );
        // v5: no properties, topic filter invalid.
        let Packet::SubAck(suback) =
            round_trip(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x8F], ProtocolVersion::V5)
        else {
            panic!("expected SUBACK");
        };
        assert_eq!(suback.reason_codes, vec![ReasonCode::TopicFilterInvalid]);
        // Every failure is 0x80 in 3.1.1.
        assert_encodes_to(
            &Packet::SubAck(suback),
            ProtocolVersion::V3_1_1,
            &[0x90, 0x03, 0x00, 0x01, 0x80],
        );
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        // UNSUBSCRIBE 1 "#" in 3.1.1 and in 5 (empty properties).
        round_trip(
            &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, b'#'],
            ProtocolVersion::V3_1_1,
        );
        round_trip(
            &[0xA2, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'#'],
            ProtocolVersion::V5,
        );
        // UNSUBACK 1: bare in 3.1.1; with "no subscription existed" in 5.
        round_trip(&[0xB0, 0x02, 0x00, 0x01], ProtocolVersion::V3_1_1);
        let Packet::UnsubAck(unsuback) =
            round_trip(&[0xB0, 0x04, 0x00, 0x01, 0x00, 0x11], ProtocolVersion::V5)
        else {
            panic!("expected UNSUBACK");
        };
        assert_eq!(
            unsuback.reason_codes,
            vec![ReasonCode::NoSubscriptionExisted]
        );
        assert_encodes_to(
            &Packet::UnsubAck(unsuback),
            ProtocolVersion::V3_1_1,
            &[0xB0, 0x02, 0x00, 0x01],
        );
    }
}
