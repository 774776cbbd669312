//! DISCONNECT and AUTH (MQTT 5; DISCONNECT has no body before it).

use crate::protocol::properties::{AuthProperties, DisconnectProperties};
use crate::protocol::ReasonCode;

/// DISCONNECT. Before MQTT 5 it has no body: reason `Success`, no properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason_code: ReasonCode,
    pub properties: DisconnectProperties,
}

impl Disconnect {
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }
}

/// AUTH (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: AuthProperties,
}
