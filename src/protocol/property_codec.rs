//! Reading and writing MQTT 5 properties (spec 2.2.2). One generic reader checks what every
//! property shares (a known identifier, allowed in this packet, not repeated unless it may
//! be, a legal value, inside the property length) and hands each value to the packet's
//! typed struct. Writing emits the set fields in one fixed order.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use bytestring::ByteString;

use super::error::DecodeError;
use super::properties::{
    id, AckProperties, AuthProperties, BoxedPublishProperties, ConnAckProperties,
    ConnectProperties, DisconnectProperties, PublishProperties, SubscribeProperties,
    UnsubscribeProperties, UserProperty, WillProperties,
};
use super::topic::TopicName;
use super::types::QoS;
use super::wire::{Reader, Sink};

/// Which property set is being read: the columns of spec table 2-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK.
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

impl PropertyContext {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// One property's value, typed by its identifier.
pub(crate) enum PropertyValue {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(u32),
    String(ByteString),
    Binary(Bytes),
    Pair(UserProperty),
}

#[derive(Clone, Copy)]
enum Kind {
    Byte,
    Bool,
    TwoByte,
    FourByte,
    VarInt,
    String,
    Binary,
    Pair,
}

/// The value type and the packets allowed to carry property `id`, or `None` if undefined.
fn describe(property: u8) -> Option<(Kind, u16)> {
    use PropertyContext as C;
    const fn mask(contexts: &[PropertyContext]) -> u16 {
        let mut bits = 0;
        let mut i = 0;
        while i < contexts.len() {
            bits |= contexts[i].bit();
            i += 1;
        }
        bits
    }
    const MESSAGE: u16 = mask(&[C::Publish, C::Will]);
    const ALL: u16 = mask(&[
        C::Connect,
        C::Will,
        C::ConnAck,
        C::Publish,
        C::Ack,
        C::Subscribe,
        C::Unsubscribe,
        C::Disconnect,
        C::Auth,
    ]);
    Some(match property {
        id::PAYLOAD_FORMAT_INDICATOR => (Kind::Bool, MESSAGE),
        id::MESSAGE_EXPIRY_INTERVAL => (Kind::FourByte, MESSAGE),
        id::CONTENT_TYPE => (Kind::String, MESSAGE),
        id::RESPONSE_TOPIC => (Kind::String, MESSAGE),
        id::CORRELATION_DATA => (Kind::Binary, MESSAGE),
        id::SUBSCRIPTION_IDENTIFIER => (Kind::VarInt, mask(&[C::Publish, C::Subscribe])),
        id::SESSION_EXPIRY_INTERVAL => (
            Kind::FourByte,
            mask(&[C::Connect, C::ConnAck, C::Disconnect]),
        ),
        id::ASSIGNED_CLIENT_IDENTIFIER => (Kind::String, mask(&[C::ConnAck])),
        id::SERVER_KEEP_ALIVE => (Kind::TwoByte, mask(&[C::ConnAck])),
        id::AUTHENTICATION_METHOD => (Kind::String, mask(&[C::Connect, C::ConnAck, C::Auth])),
        id::AUTHENTICATION_DATA => (Kind::Binary, mask(&[C::Connect, C::ConnAck, C::Auth])),
        id::REQUEST_PROBLEM_INFORMATION => (Kind::Bool, mask(&[C::Connect])),
        id::WILL_DELAY_INTERVAL => (Kind::FourByte, mask(&[C::Will])),
        id::REQUEST_RESPONSE_INFORMATION => (Kind::Bool, mask(&[C::Connect])),
        id::RESPONSE_INFORMATION => (Kind::String, mask(&[C::ConnAck])),
        id::SERVER_REFERENCE => (Kind::String, mask(&[C::ConnAck, C::Disconnect])),
        id::REASON_STRING => (
            Kind::String,
            mask(&[C::ConnAck, C::Ack, C::Disconnect, C::Auth]),
        ),
        id::RECEIVE_MAXIMUM => (Kind::TwoByte, mask(&[C::Connect, C::ConnAck])),
        id::TOPIC_ALIAS_MAXIMUM => (Kind::TwoByte, mask(&[C::Connect, C::ConnAck])),
        id::TOPIC_ALIAS => (Kind::TwoByte, mask(&[C::Publish])),
        id::MAXIMUM_QOS => (Kind::Byte, mask(&[C::ConnAck])),
        id::RETAIN_AVAILABLE => (Kind::Bool, mask(&[C::ConnAck])),
        id::USER_PROPERTY => (Kind::Pair, ALL),
        id::MAXIMUM_PACKET_SIZE => (Kind::FourByte, mask(&[C::Connect, C::ConnAck])),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => (Kind::Bool, mask(&[C::ConnAck])),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => (Kind::Bool, mask(&[C::ConnAck])),
        id::SHARED_SUBSCRIPTION_AVAILABLE => (Kind::Bool, mask(&[C::ConnAck])),
        _ => return None,
    })
}

/// A typed property struct the generic reader fills.
pub(crate) trait PropertySet: Default {
    const CONTEXT: PropertyContext;
    /// Stores one checked value. Identifiers this set does not hold never reach it (the
    /// reader refused them), but a mismatch is still an error rather than a panic.
    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError>;
    /// Writes the set fields, in the fixed order, without the property length.
    fn write<S: Sink>(&self, sink: &mut S);
}

/// Reads a property length and the properties it covers into a `P`, for a packet of
/// `packet_type` (named in `PropertyNotAllowed`).
#[inline]
pub(crate) fn read_properties<P: PropertySet>(
    reader: &mut Reader,
    packet_type: u8,
) -> Result<P, DecodeError> {
    let mut set = P::default();
    let len = reader.varint("property length")? as usize;
    if len == 0 {
        return Ok(set);
    }
    if len > reader.remaining() {
        return Err(DecodeError::PropertiesOverrun);
    }
    let mut props = Reader::new(reader.take(len, "properties")?);
    let mut seen: u64 = 0;
    while !props.is_empty() {
        let (property, value) = read_one(&mut props, P::CONTEXT, packet_type).map_err(overrun)?;
        let repeatable = property == id::USER_PROPERTY
            || (property == id::SUBSCRIPTION_IDENTIFIER && P::CONTEXT == PropertyContext::Publish);
        // Every defined identifier is below 64, so one bit each.
        let bit = 1u64 << property;
        if !repeatable && seen & bit != 0 {
            return Err(DecodeError::DuplicateProperty(property));
        }
        seen |= bit;
        set.apply(property, value)?;
    }
    Ok(set)
}

const PUBLISH_TYPE: u8 = super::packet::PacketType::Publish as u8;

/// PUBLISH properties, boxed only when present: a zero property length (the common case)
/// builds nothing, neither the 160-byte set nor its box.
pub(crate) fn read_publish_properties(
    reader: &mut Reader,
) -> Result<BoxedPublishProperties, DecodeError> {
    if reader.skip_zero() {
        return Ok(BoxedPublishProperties::default());
    }
    read_properties::<PublishProperties>(reader, PUBLISH_TYPE).map(BoxedPublishProperties::new)
}

/// Inside the property block, running out of bytes means the length was wrong.
fn overrun(error: DecodeError) -> DecodeError {
    match error {
        DecodeError::UnexpectedEnd { .. } => DecodeError::PropertiesOverrun,
        other => other,
    }
}

fn read_one(
    props: &mut Reader,
    context: PropertyContext,
    packet_type: u8,
) -> Result<(u8, PropertyValue), DecodeError> {
    // Identifiers are variable byte integers; every defined one fits in one byte.
    let raw = props.varint("property identifier")?;
    let property = u8::try_from(raw).map_err(|_| DecodeError::UnknownProperty(0xFF))?;
    let (kind, allowed) = describe(property).ok_or(DecodeError::UnknownProperty(property))?;
    if allowed & context.bit() == 0 {
        return Err(DecodeError::PropertyNotAllowed {
            property,
            packet_type,
        });
    }
    let invalid = DecodeError::InvalidPropertyValue { property };
    let value = match kind {
        Kind::Byte => {
            let byte = props.u8("property")?;
            if property == id::MAXIMUM_QOS && byte > 1 {
                return Err(invalid);
            }
            PropertyValue::Byte(byte)
        }
        Kind::Bool => {
            let byte = props.u8("property")?;
            if byte > 1 {
                return Err(invalid);
            }
            PropertyValue::Byte(byte)
        }
        Kind::TwoByte => PropertyValue::TwoByte(props.u16("property")?),
        Kind::FourByte => PropertyValue::FourByte(props.u32("property")?),
        Kind::VarInt => PropertyValue::VarInt(props.varint("property")?),
        Kind::String => PropertyValue::String(props.string("property")?),
        Kind::Binary => PropertyValue::Binary(props.binary("property")?),
        Kind::Pair => PropertyValue::Pair(UserProperty {
            name: props.string("user property name")?,
            value: props.string("user property value")?,
        }),
    };
    Ok((property, value))
}

/// The byte length of `set`'s properties, not counting the property length itself.
pub(crate) fn properties_len<P: PropertySet>(set: &P) -> usize {
    let mut counter = super::wire::Counter::default();
    set.write(&mut counter);
    counter.len
}

/// Writes the property length and then the properties.
pub(crate) fn write_properties<P: PropertySet, S: Sink>(set: &P, sink: &mut S) {
    sink.put_varint(properties_len(set) as u32);
    set.write(sink);
}

// Typed conversions: each refuses the wrong value kind and the zeroes the spec forbids.

fn nonzero_u16(property: u8, value: PropertyValue) -> Result<NonZeroU16, DecodeError> {
    match value {
        PropertyValue::TwoByte(v) => NonZeroU16::new(v),
        _ => None,
    }
    .ok_or(DecodeError::InvalidPropertyValue { property })
}

fn nonzero_u32(property: u8, value: PropertyValue) -> Result<NonZeroU32, DecodeError> {
    match value {
        PropertyValue::FourByte(v) | PropertyValue::VarInt(v) => NonZeroU32::new(v),
        _ => None,
    }
    .ok_or(DecodeError::InvalidPropertyValue { property })
}

fn u16_of(property: u8, value: PropertyValue) -> Result<u16, DecodeError> {
    match value {
        PropertyValue::TwoByte(v) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue { property }),
    }
}

fn u32_of(property: u8, value: PropertyValue) -> Result<u32, DecodeError> {
    match value {
        PropertyValue::FourByte(v) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue { property }),
    }
}

fn bool_of(property: u8, value: PropertyValue) -> Result<bool, DecodeError> {
    match value {
        PropertyValue::Byte(v) => Ok(v == 1),
        _ => Err(DecodeError::InvalidPropertyValue { property }),
    }
}

fn string_of(property: u8, value: PropertyValue) -> Result<ByteString, DecodeError> {
    match value {
        PropertyValue::String(v) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue { property }),
    }
}

fn binary_of(property: u8, value: PropertyValue) -> Result<Bytes, DecodeError> {
    match value {
        PropertyValue::Binary(v) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue { property }),
    }
}

/// A response topic must be a topic name (no wildcards) [MQTT-3.1.3-11, 3.3.2-14].
fn topic_of(property: u8, value: PropertyValue) -> Result<TopicName, DecodeError> {
    TopicName::parse(string_of(property, value)?)
        .map_err(|_| DecodeError::InvalidPropertyValue { property })
}

fn user_property(
    list: &mut Vec<UserProperty>,
    property: u8,
    value: PropertyValue,
) -> Result<(), DecodeError> {
    match value {
        PropertyValue::Pair(pair) => {
            list.push(pair);
            Ok(())
        }
        _ => Err(DecodeError::InvalidPropertyValue { property }),
    }
}

fn not_allowed(property: u8, context: PropertyContext) -> DecodeError {
    let packet_type = match context {
        PropertyContext::Connect | PropertyContext::Will => 1,
        PropertyContext::ConnAck => 2,
        PropertyContext::Publish => 3,
        PropertyContext::Ack => 4,
        PropertyContext::Subscribe => 8,
        PropertyContext::Unsubscribe => 10,
        PropertyContext::Disconnect => 14,
        PropertyContext::Auth => 15,
    };
    DecodeError::PropertyNotAllowed {
        property,
        packet_type,
    }
}

// Writers, one per value kind; each writes nothing for an unset field.

fn put_u8<S: Sink>(sink: &mut S, property: u8, value: Option<u8>) {
    if let Some(v) = value {
        sink.put_u8(property);
        sink.put_u8(v);
    }
}

fn put_bool<S: Sink>(sink: &mut S, property: u8, value: Option<bool>) {
    put_u8(sink, property, value.map(u8::from));
}

fn put_u16<S: Sink>(sink: &mut S, property: u8, value: Option<u16>) {
    if let Some(v) = value {
        sink.put_u8(property);
        sink.put_u16(v);
    }
}

fn put_u32<S: Sink>(sink: &mut S, property: u8, value: Option<u32>) {
    if let Some(v) = value {
        sink.put_u8(property);
        sink.put_u32(v);
    }
}

fn put_str<S: Sink>(sink: &mut S, property: u8, value: Option<&ByteString>) {
    if let Some(v) = value {
        sink.put_u8(property);
        sink.put_prefixed("property", v.as_bytes());
    }
}

fn put_bin<S: Sink>(sink: &mut S, property: u8, value: Option<&Bytes>) {
    if let Some(v) = value {
        sink.put_u8(property);
        sink.put_prefixed("property", v);
    }
}

fn put_users<S: Sink>(sink: &mut S, list: &[UserProperty]) {
    for pair in list {
        sink.put_u8(id::USER_PROPERTY);
        sink.put_prefixed("user property name", pair.name.as_bytes());
        sink.put_prefixed("user property value", pair.value.as_bytes());
    }
}

pub(crate) fn put_subscription_ids<S: Sink>(sink: &mut S, ids: &[NonZeroU32]) {
    for v in ids {
        sink.put_u8(id::SUBSCRIPTION_IDENTIFIER);
        sink.put_varint(v.get());
    }
}

impl PropertySet for ConnectProperties {
    const CONTEXT: PropertyContext = PropertyContext::Connect;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::SESSION_EXPIRY_INTERVAL => {
                self.session_expiry_interval_s = Some(u32_of(property, value)?)
            }
            id::RECEIVE_MAXIMUM => self.receive_maximum = Some(nonzero_u16(property, value)?),
            id::MAXIMUM_PACKET_SIZE => {
                self.maximum_packet_size_bytes = Some(nonzero_u32(property, value)?)
            }
            id::TOPIC_ALIAS_MAXIMUM => self.topic_alias_maximum = Some(u16_of(property, value)?),
            id::REQUEST_RESPONSE_INFORMATION => {
                self.request_response_information = Some(bool_of(property, value)?)
            }
            id::REQUEST_PROBLEM_INFORMATION => {
                self.request_problem_information = Some(bool_of(property, value)?)
            }
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            id::AUTHENTICATION_METHOD => {
                self.authentication_method = Some(string_of(property, value)?)
            }
            id::AUTHENTICATION_DATA => self.authentication_data = Some(binary_of(property, value)?),
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_u32(
            sink,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval_s,
        );
        put_u16(
            sink,
            id::RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        put_u32(
            sink,
            id::MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size_bytes.map(NonZeroU32::get),
        );
        put_u16(sink, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_bool(
            sink,
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_bool(
            sink,
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_users(sink, &self.user_properties);
        put_str(
            sink,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin(
            sink,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_ref(),
        );
    }
}

impl PropertySet for WillProperties {
    const CONTEXT: PropertyContext = PropertyContext::Will;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::WILL_DELAY_INTERVAL => self.will_delay_interval_s = Some(u32_of(property, value)?),
            id::PAYLOAD_FORMAT_INDICATOR => {
                self.payload_format_indicator = Some(bool_of(property, value)?)
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                self.message_expiry_interval_s = Some(u32_of(property, value)?)
            }
            id::CONTENT_TYPE => self.content_type = Some(string_of(property, value)?),
            id::RESPONSE_TOPIC => self.response_topic = Some(topic_of(property, value)?),
            id::CORRELATION_DATA => self.correlation_data = Some(binary_of(property, value)?),
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_u32(sink, id::WILL_DELAY_INTERVAL, self.will_delay_interval_s);
        put_bool(
            sink,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        put_u32(
            sink,
            id::MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval_s,
        );
        put_str(sink, id::CONTENT_TYPE, self.content_type.as_ref());
        put_str(
            sink,
            id::RESPONSE_TOPIC,
            self.response_topic.as_ref().map(TopicName::as_byte_string),
        );
        put_bin(sink, id::CORRELATION_DATA, self.correlation_data.as_ref());
        put_users(sink, &self.user_properties);
    }
}

impl PropertySet for ConnAckProperties {
    const CONTEXT: PropertyContext = PropertyContext::ConnAck;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::SESSION_EXPIRY_INTERVAL => {
                self.session_expiry_interval_s = Some(u32_of(property, value)?)
            }
            id::RECEIVE_MAXIMUM => self.receive_maximum = Some(nonzero_u16(property, value)?),
            id::MAXIMUM_QOS => {
                let qos = match value {
                    PropertyValue::Byte(v) => QoS::from_bits(v),
                    _ => None,
                };
                self.maximum_qos = Some(qos.ok_or(DecodeError::InvalidPropertyValue { property })?)
            }
            id::RETAIN_AVAILABLE => self.retain_available = Some(bool_of(property, value)?),
            id::MAXIMUM_PACKET_SIZE => {
                self.maximum_packet_size_bytes = Some(nonzero_u32(property, value)?)
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                self.assigned_client_identifier = Some(string_of(property, value)?)
            }
            id::TOPIC_ALIAS_MAXIMUM => self.topic_alias_maximum = Some(u16_of(property, value)?),
            id::REASON_STRING => self.reason_string = Some(string_of(property, value)?),
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                self.wildcard_subscription_available = Some(bool_of(property, value)?)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                self.subscription_identifiers_available = Some(bool_of(property, value)?)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                self.shared_subscription_available = Some(bool_of(property, value)?)
            }
            id::SERVER_KEEP_ALIVE => self.server_keep_alive_s = Some(u16_of(property, value)?),
            id::RESPONSE_INFORMATION => {
                self.response_information = Some(string_of(property, value)?)
            }
            id::SERVER_REFERENCE => self.server_reference = Some(string_of(property, value)?),
            id::AUTHENTICATION_METHOD => {
                self.authentication_method = Some(string_of(property, value)?)
            }
            id::AUTHENTICATION_DATA => self.authentication_data = Some(binary_of(property, value)?),
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_u32(
            sink,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval_s,
        );
        put_u16(
            sink,
            id::RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        put_u8(sink, id::MAXIMUM_QOS, self.maximum_qos.map(QoS::bits));
        put_bool(sink, id::RETAIN_AVAILABLE, self.retain_available);
        put_u32(
            sink,
            id::MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size_bytes.map(NonZeroU32::get),
        );
        put_str(
            sink,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_ref(),
        );
        put_u16(sink, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_str(sink, id::REASON_STRING, self.reason_string.as_ref());
        put_users(sink, &self.user_properties);
        put_bool(
            sink,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_bool(
            sink,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_bool(
            sink,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16(sink, id::SERVER_KEEP_ALIVE, self.server_keep_alive_s);
        put_str(
            sink,
            id::RESPONSE_INFORMATION,
            self.response_information.as_ref(),
        );
        put_str(sink, id::SERVER_REFERENCE, self.server_reference.as_ref());
        put_str(
            sink,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin(
            sink,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_ref(),
        );
    }
}

impl PropertySet for PublishProperties {
    const CONTEXT: PropertyContext = PropertyContext::Publish;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::PAYLOAD_FORMAT_INDICATOR => {
                self.payload_format_indicator = Some(bool_of(property, value)?)
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                self.message_expiry_interval_s = Some(u32_of(property, value)?)
            }
            id::TOPIC_ALIAS => self.topic_alias = Some(nonzero_u16(property, value)?),
            id::RESPONSE_TOPIC => self.response_topic = Some(topic_of(property, value)?),
            id::CORRELATION_DATA => self.correlation_data = Some(binary_of(property, value)?),
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            id::SUBSCRIPTION_IDENTIFIER => self
                .subscription_identifiers
                .push(nonzero_u32(property, value)?),
            id::CONTENT_TYPE => self.content_type = Some(string_of(property, value)?),
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        write_publish_properties(self, self.topic_alias, &self.subscription_identifiers, sink);
    }
}

/// PUBLISH properties with the topic alias and subscription identifiers given separately,
/// so a delivery can replace them without cloning the rest.
pub(crate) fn write_publish_properties<S: Sink>(
    props: &PublishProperties,
    topic_alias: Option<NonZeroU16>,
    subscription_identifiers: &[NonZeroU32],
    sink: &mut S,
) {
    put_bool(
        sink,
        id::PAYLOAD_FORMAT_INDICATOR,
        props.payload_format_indicator,
    );
    put_u32(
        sink,
        id::MESSAGE_EXPIRY_INTERVAL,
        props.message_expiry_interval_s,
    );
    put_u16(sink, id::TOPIC_ALIAS, topic_alias.map(NonZeroU16::get));
    put_str(
        sink,
        id::RESPONSE_TOPIC,
        props.response_topic.as_ref().map(TopicName::as_byte_string),
    );
    put_bin(sink, id::CORRELATION_DATA, props.correlation_data.as_ref());
    put_users(sink, &props.user_properties);
    put_subscription_ids(sink, subscription_identifiers);
    put_str(sink, id::CONTENT_TYPE, props.content_type.as_ref());
}

impl PropertySet for AckProperties {
    const CONTEXT: PropertyContext = PropertyContext::Ack;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::REASON_STRING => self.reason_string = Some(string_of(property, value)?),
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_str(sink, id::REASON_STRING, self.reason_string.as_ref());
        put_users(sink, &self.user_properties);
    }
}

impl PropertySet for SubscribeProperties {
    const CONTEXT: PropertyContext = PropertyContext::Subscribe;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::SUBSCRIPTION_IDENTIFIER => {
                self.subscription_identifier = Some(nonzero_u32(property, value)?)
            }
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        let ids = self.subscription_identifier.as_slice();
        put_subscription_ids(sink, ids);
        put_users(sink, &self.user_properties);
    }
}

impl PropertySet for UnsubscribeProperties {
    const CONTEXT: PropertyContext = PropertyContext::Unsubscribe;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_users(sink, &self.user_properties);
    }
}

impl PropertySet for DisconnectProperties {
    const CONTEXT: PropertyContext = PropertyContext::Disconnect;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::SESSION_EXPIRY_INTERVAL => {
                self.session_expiry_interval_s = Some(u32_of(property, value)?)
            }
            id::REASON_STRING => self.reason_string = Some(string_of(property, value)?),
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            id::SERVER_REFERENCE => self.server_reference = Some(string_of(property, value)?),
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_u32(
            sink,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval_s,
        );
        put_str(sink, id::REASON_STRING, self.reason_string.as_ref());
        put_users(sink, &self.user_properties);
        put_str(sink, id::SERVER_REFERENCE, self.server_reference.as_ref());
    }
}

impl PropertySet for AuthProperties {
    const CONTEXT: PropertyContext = PropertyContext::Auth;

    fn apply(&mut self, property: u8, value: PropertyValue) -> Result<(), DecodeError> {
        match property {
            id::AUTHENTICATION_METHOD => {
                self.authentication_method = Some(string_of(property, value)?)
            }
            id::AUTHENTICATION_DATA => self.authentication_data = Some(binary_of(property, value)?),
            id::REASON_STRING => self.reason_string = Some(string_of(property, value)?),
            id::USER_PROPERTY => user_property(&mut self.user_properties, property, value)?,
            _ => return Err(not_allowed(property, Self::CONTEXT)),
        }
        Ok(())
    }

    fn write<S: Sink>(&self, sink: &mut S) {
        put_str(
            sink,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin(
            sink,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_ref(),
        );
        put_str(sink, id::REASON_STRING, self.reason_string.as_ref());
        put_users(sink, &self.user_properties);
    }
}
