//! MQTT 5 properties (spec 2.2.2): their identifiers, and one typed struct per packet family
//! holding exactly the properties that family may carry. A property in the wrong packet, or
//! a second copy of a single-valued one, is refused while decoding.
//!
//! Before MQTT 5 every struct here is simply `Default` and nothing is encoded.

use bytes::Bytes;
use bytestring::ByteString;
use std::num::{NonZeroU16, NonZeroU32};

use super::topic::TopicName;

/// Property identifiers (spec table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// A user property: a name/value pair of UTF-8 strings. May repeat, order kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    pub name: ByteString,
    pub value: ByteString,
}

/// CONNECT properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size_bytes: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: Vec<UserProperty>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

/// Will properties, inside CONNECT's payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval_s: Option<u32>,
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval_s: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
}

/// CONNACK properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// Only 0 or 1 may be sent; `None` means QoS 2 is available.
    pub maximum_qos: Option<super::QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size_bytes: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteString>,
    pub user_properties: Vec<UserProperty>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive_s: Option<u16>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

/// PUBLISH properties. `subscription_identifiers` may hold several (one per matching
/// subscription) on the way to a client; a client may not send any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval_s: Option<u32>,
    pub topic_alias: Option<NonZeroU16>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
    pub subscription_identifiers: Vec<NonZeroU32>,
    pub content_type: Option<ByteString>,
}

impl PublishProperties {
    /// True when nothing is set: the common case, which encodes as one zero byte.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval_s.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

/// Nothing set: what an absent [`BoxedPublishProperties`] reads as. `Vec::new` allocates
/// nothing, so this needs no lazy initialisation.
static NO_PUBLISH_PROPERTIES: PublishProperties = PublishProperties {
    payload_format_indicator: None,
    message_expiry_interval_s: None,
    topic_alias: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_identifiers: Vec::new(),
    content_type: None,
};

/// [`PublishProperties`] kept out of line, as they appear in [`Publish`](super::Publish).
///
/// Inline they are 160 bytes that every PUBLISH decoded, moved, routed and dropped pays
/// to copy and to drop, although most carry no property at all. Here they are one
/// pointer: `None` while nothing is set, so the common case allocates nothing and drops
/// for free. Reading goes through `Deref` (an absent set reads as all-empty); writing is
/// explicit, through [`make_mut`](Self::make_mut) (which allocates) or
/// [`get_mut`](Self::get_mut) (which does not), so a hot path cannot allocate by
/// accident. Equality compares contents: an allocated but empty set equals an absent one.
#[derive(Clone, Default)]
pub struct BoxedPublishProperties(Option<Box<PublishProperties>>);

impl BoxedPublishProperties {
    /// Boxes `properties`, unless nothing is set.
    pub fn new(properties: PublishProperties) -> BoxedPublishProperties {
        if properties.is_empty() {
            BoxedPublishProperties(None)
        } else {
            BoxedPublishProperties(Some(Box::new(properties)))
        }
    }

    /// The properties for writing, allocating an empty set first if none was.
    pub fn make_mut(&mut self) -> &mut PublishProperties {
        self.0.get_or_insert_with(Box::default)
    }

    /// The properties for writing if any were allocated; `None` means all are unset, so a
    /// caller that only clears fields has nothing to do.
    pub fn get_mut(&mut self) -> Option<&mut PublishProperties> {
        self.0.as_deref_mut()
    }

    /// The properties by value (a default set when none was allocated).
    pub fn into_inner(self) -> PublishProperties {
        self.0
            .map_or_else(PublishProperties::default, |boxed| *boxed)
    }
}

impl std::ops::Deref for BoxedPublishProperties {
    type Target = PublishProperties;

    fn deref(&self) -> &PublishProperties {
        self.0.as_deref().unwrap_or(&NO_PUBLISH_PROPERTIES)
    }
}

impl From<PublishProperties> for BoxedPublishProperties {
    fn from(properties: PublishProperties) -> BoxedPublishProperties {
        BoxedPublishProperties::new(properties)
    }
}

impl PartialEq for BoxedPublishProperties {
    fn eq(&self, other: &BoxedPublishProperties) -> bool {
        **self == **other
    }
}

impl Eq for BoxedPublishProperties {}

impl PartialEq<PublishProperties> for BoxedPublishProperties {
    fn eq(&self, other: &PublishProperties) -> bool {
        **self == *other
    }
}

/// Prints as the properties themselves, boxed or not.
impl std::fmt::Debug for BoxedPublishProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and
/// user properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    pub reason_string: Option<ByteString>,
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

/// SUBSCRIBE properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<NonZeroU32>,
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBSCRIBE properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: Vec<UserProperty>,
}

/// DISCONNECT properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub reason_string: Option<ByteString>,
    pub user_properties: Vec<UserProperty>,
    pub server_reference: Option<ByteString>,
}

/// AUTH properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<ByteString>,
    pub user_properties: Vec<UserProperty>,
}
