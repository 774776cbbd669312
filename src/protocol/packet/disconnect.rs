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

use bytes::Bytes;

use crate::protocol::error::DecodeError;
use crate::protocol::property_codec::{read_properties, write_properties};
use crate::protocol::reason::ReasonContext;
use crate::protocol::types::ProtocolVersion;
use crate::protocol::wire::{Reader, Sink};

use super::read_reason;

const DISCONNECT_TYPE: u8 = 14;
const AUTH_TYPE: u8 = 15;

impl Disconnect {
    pub(crate) fn decode(body: Bytes, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
        let mut reader = Reader::new(body);
        let mut disconnect = Disconnect::new(ReasonCode::Success);
        // MQTT 5: length 0 means Success, length 1 a reason without properties.
        if version.is_v5() && !reader.is_empty() {
            disconnect.reason_code =
                read_reason(&mut reader, ReasonContext::Disconnect, DISCONNECT_TYPE)?;
            if !reader.is_empty() {
                disconnect.properties = read_properties(&mut reader, DISCONNECT_TYPE)?;
            }
        }
        reader.finish()?;
        Ok(disconnect)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        if !version.is_v5() {
            return;
        }
        let no_properties = is_empty(&self.properties);
        if self.reason_code == ReasonCode::Success && no_properties {
            return;
        }
        sink.put_u8(self.reason_code.code());
        if !no_properties {
            write_properties(&self.properties, sink);
        }
    }
}

fn is_empty(properties: &DisconnectProperties) -> bool {
    properties.session_expiry_interval_s.is_none()
        && properties.reason_string.is_none()
        && properties.user_properties.is_empty()
        && properties.server_reference.is_none()
}

impl Auth {
    /// AUTH: length 0 means Success; otherwise a reason code and properties follow
    /// (unlike DISCONNECT, the spec gives AUTH no reason-only form).
    pub(crate) fn decode(body: Bytes) -> Result<Auth, DecodeError> {
        let mut reader = Reader::new(body);
        let mut auth = Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        };
        if !reader.is_empty() {
            auth.reason_code = read_reason(&mut reader, ReasonContext::Auth, AUTH_TYPE)?;
            auth.properties = read_properties(&mut reader, AUTH_TYPE)?;
        }
        reader.finish()?;
        Ok(auth)
    }

    pub(crate) fn write<S: Sink>(&self, sink: &mut S) {
        let properties = &self.properties;
        let no_properties = properties.authentication_method.is_none()
            && properties.authentication_data.is_none()
            && properties.reason_string.is_none()
            && properties.user_properties.is_empty();
        if self.reason_code == ReasonCode::Success && no_properties {
            return;
        }
        sink.put_u8(self.reason_code.code());
        write_properties(properties, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::test_support::{assert_encodes_to, round_trip};
    use crate::protocol::Packet;

    #[test]
    fn disconnect_forms() {
        assert_eq!(
            round_trip(&[0xE0, 0x00], ProtocolVersion::V3_1_1),
            Packet::Disconnect(Disconnect::new(ReasonCode::Success))
        );
        // v5 length 0: normal disconnection.
        round_trip(&[0xE0, 0x00], ProtocolVersion::V5);
        // v5 length 1: reason only.
        assert_eq!(
            round_trip(&[0xE0, 0x01, 0x04], ProtocolVersion::V5),
            Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage))
        );
        let frame = [
            0xE0, 0x07, // DISCONNECT, remaining length 7
            0x8B, // server shutting down
            0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // properties: session expiry 10 s
        ];
        let packet = round_trip(&frame, ProtocolVersion::V5);
        // Before 5 DISCONNECT has no body at all.
        assert_encodes_to(&packet, ProtocolVersion::V3_1_1, &[0xE0, 0x00]);
    }

    #[test]
    fn auth_forms() {
        round_trip(&[0xF0, 0x00], ProtocolVersion::V5);
        let frame = [
            0xF0, 0x0A, // AUTH, remaining length 10
            0x18, // continue authentication
            0x08, 0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // method "SCRAM"
        ];
        let Packet::Auth(auth) = round_trip(&frame, ProtocolVersion::V5) else {
            panic!("expected AUTH");
        };
        assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
        assert_eq!(
            auth.properties.authentication_method.as_deref(),
            Some("SCRAM")
        );
    }
}
