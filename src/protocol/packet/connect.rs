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

use crate::protocol::error::DecodeError;
use crate::protocol::property_codec::{read_properties, write_properties};
use crate::protocol::reason::ReasonContext;
use crate::protocol::wire::{Reader, Sink};

use super::read_reason;

const CONNECT_TYPE: u8 = 1;
const CONNACK_TYPE: u8 = 2;

// Connect flag bits (spec 3.1.2.3).
const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USER_NAME: u8 = 0x80;

impl Connect {
    /// Decodes CONNECT's body. The protocol name and level are checked before anything else,
    /// so an unsupported level is reported as such (the broker answers it with a CONNACK)
    /// even when the rest would not parse in any version we know.
    pub(crate) fn decode(body: Bytes) -> Result<Connect, DecodeError> {
        let mut reader = Reader::new(body);
        let protocol_version = read_protocol(&mut reader)?;
        let flags = reader.u8("connect flags")?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_qos =
            QoS::from_bits((flags >> WILL_QOS_SHIFT) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let has_will = flags & WILL != 0;
        if !has_will && (will_qos != QoS::AtMostOnce || flags & WILL_RETAIN != 0) {
            return Err(DecodeError::InvalidWillFlags);
        }
        if !protocol_version.is_v5() && flags & PASSWORD != 0 && flags & USER_NAME == 0 {
            return Err(DecodeError::PasswordWithoutUserName);
        }
        let keep_alive_s = reader.u16("keep alive")?;
        let properties = if protocol_version.is_v5() {
            read_properties(&mut reader, CONNECT_TYPE)?
        } else {
            ConnectProperties::default()
        };
        let client_id = ClientId::new(reader.string("client identifier")?).ok_or(
            DecodeError::NullCharacter {
                field: "client identifier",
            },
        )?;
        let will = if has_will {
            let properties = if protocol_version.is_v5() {
                read_properties(&mut reader, CONNECT_TYPE)?
            } else {
                WillProperties::default()
            };
            let topic = TopicName::parse(reader.string("will topic")?)
                .map_err(DecodeError::InvalidTopicName)?;
            let payload = reader.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: flags & WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        let user_name = if flags & USER_NAME != 0 {
            Some(reader.string("user name")?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(reader.binary("password")?)
        } else {
            None
        };
        reader.finish()?;
        Ok(Connect {
            protocol_version,
            clean_start: flags & CLEAN_START != 0,
            keep_alive_s,
            client_id,
            will,
            user_name,
            password,
            properties,
        })
    }

    /// Writes the body in the packet's own `protocol_version`.
    pub(crate) fn write<S: Sink>(&self, sink: &mut S) {
        let version = self.protocol_version;
        sink.put_prefixed("protocol name", version.protocol_name().as_bytes());
        sink.put_u8(version.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos.bits() << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.user_name.is_some() {
            flags |= USER_NAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        sink.put_u8(flags);
        sink.put_u16(self.keep_alive_s);
        if version.is_v5() {
            write_properties(&self.properties, sink);
        }
        sink.put_prefixed("client identifier", self.client_id.as_str().as_bytes());
        if let Some(will) = &self.will {
            if version.is_v5() {
                write_properties(&will.properties, sink);
            }
            sink.put_prefixed("will topic", will.topic.as_str().as_bytes());
            sink.put_prefixed("will payload", &will.payload);
        }
        if let Some(user_name) = &self.user_name {
            sink.put_prefixed("user name", user_name.as_bytes());
        }
        if let Some(password) = &self.password {
            sink.put_prefixed("password", password);
        }
    }
}

/// Reads the protocol name and level: `MQIsdp`/3, `MQTT`/4 or `MQTT`/5.
fn read_protocol(reader: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    let name = reader.binary("protocol name")?;
    let level = reader.u8("protocol level")?;
    let expected_name = match &name[..] {
        b"MQTT" => "MQTT",
        b"MQIsdp" => "MQIsdp",
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let version =
        ProtocolVersion::from_level(level).ok_or(DecodeError::UnsupportedProtocolVersion(level))?;
    if version.protocol_name() != expected_name {
        return Err(DecodeError::InvalidProtocolName);
    }
    Ok(version)
}

impl ConnAck {
    pub(crate) fn decode(body: Bytes, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let mut reader = Reader::new(body);
        let flags = reader.u8("acknowledge flags")?;
        if flags & !0x01 != 0 {
            return Err(DecodeError::ConnAckReservedFlags);
        }
        let (reason_code, properties) = if version.is_v5() {
            let reason = read_reason(&mut reader, ReasonContext::ConnAck, CONNACK_TYPE)?;
            (reason, read_properties(&mut reader, CONNACK_TYPE)?)
        } else {
            let code = reader.u8("return code")?;
            let reason =
                ReasonCode::from_v3_connack_code(code).ok_or(DecodeError::InvalidReasonCode {
                    packet_type: CONNACK_TYPE,
                    code,
                })?;
            (reason, ConnAckProperties::default())
        };
        reader.finish()?;
        Ok(ConnAck {
            session_present: flags & 0x01 != 0,
            reason_code,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, sink: &mut S) {
        sink.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            sink.put_u8(self.reason_code.code());
            write_properties(&self.properties, sink);
        } else {
            sink.put_u8(self.reason_code.v3_connack_code());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::test_support::{assert_encodes_to, decode_one, round_trip};
    use crate::protocol::{DecodeError, Packet};
    use std::num::NonZeroU16;

    fn connect_of(packet: Packet) -> Connect {
        match packet {
            Packet::Connect(connect) => *connect,
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    #[test]
    fn v311_connect_with_credentials() {
        let frame = [
            0x10, 0x16, // CONNECT, remaining length 22
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // level 4: MQTT 3.1.1
            0xC2, // user name, password, clean session
            0x00, 0x3C, // keep alive 60 s
            0x00, 0x03, b'c', b'i', b'd', // client id "cid"
            0x00, 0x01, b'u', // user name "u"
            0x00, 0x02, b'p', b'w', // password "pw"
        ];
        let connect = connect_of(round_trip(&frame, ProtocolVersion::V3_1_1));
        assert_eq!(connect.protocol_version, ProtocolVersion::V3_1_1);
        assert!(connect.clean_start);
        assert_eq!(connect.keep_alive_s, 60);
        assert_eq!(connect.client_id.as_str(), "cid");
        assert_eq!(connect.user_name.as_deref(), Some("u"));
        assert_eq!(connect.password.as_deref(), Some(&b"pw"[..]));
        assert!(connect.will.is_none());
    }

    #[test]
    fn v5_connect_with_will_and_properties() {
        let frame = [
            0x10, 0x1F, // CONNECT, remaining length 31
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x05, // level 5
            0x2E, // will retain, will QoS 1, will flag, clean start
            0x00, 0x0A, // keep alive 10 s
            0x05, 0x11, 0x00, 0x00, 0x00, 0x3C, // properties: session expiry 60 s
            0x00, 0x01, b'a', // client id "a"
            0x02, 0x01, 0x01, // will properties: payload format indicator 1
            0x00, 0x03, b'w', b'/', b't', // will topic "w/t"
            0x00, 0x02, b'h', b'i', // will payload "hi"
        ];
        let connect = connect_of(round_trip(&frame, ProtocolVersion::V5));
        assert_eq!(connect.properties.session_expiry_interval_s, Some(60));
        let will = connect.will.expect("will flag set");
        assert_eq!(will.topic.as_str(), "w/t");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
        assert_eq!(will.properties.payload_format_indicator, Some(true));
        assert_eq!(&will.payload[..], b"hi");
    }

    #[test]
    fn v31_connect_with_empty_client_id() {
        let frame = [
            0x10, 0x0E, // CONNECT, remaining length 14
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name
            0x03, // level 3: MQTT 3.1
            0x00, // no flags
            0x00, 0x00, // keep alive off
            0x00, 0x00, // client id ""
        ];
        let connect = connect_of(round_trip(&frame, ProtocolVersion::V3_1));
        assert_eq!(connect.protocol_version, ProtocolVersion::V3_1);
        assert!(connect.client_id.is_empty());
    }

    #[test]
    fn unsupported_level_is_reported_before_the_rest_is_parsed() {
        let frame = [
            0x10, 0x08, // CONNECT, remaining length 8
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x06, // level 6: unknown
            0xFF, // flags that would be invalid in any version
        ];
        let error = decode_one(&frame, None).expect_err("level 6 is refused");
        assert_eq!(error, DecodeError::UnsupportedProtocolVersion(6));
        assert_eq!(error.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    }

    #[test]
    fn connack_v3_and_v5() {
        // CONNACK, session present, accepted.
        let packet = round_trip(&[0x20, 0x02, 0x01, 0x00], ProtocolVersion::V3_1_1);
        assert_eq!(
            packet,
            Packet::ConnAck(Box::new(ConnAck {
                session_present: true,
                reason_code: ReasonCode::Success,
                properties: ConnAckProperties::default(),
            }))
        );
        let frame = [
            0x20, 0x06, // CONNACK, remaining length 6
            0x00, // no session
            0x86, // bad user name or password
            0x03, 0x21, 0x00, 0x0A, // properties: receive maximum 10
        ];
        let Packet::ConnAck(connack) = round_trip(&frame, ProtocolVersion::V5) else {
            panic!("expected CONNACK");
        };
        assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
        assert_eq!(connack.properties.receive_maximum, NonZeroU16::new(10));
        // The same refusal spelled for 3.1.1: return code 4, no properties.
        assert_encodes_to(
            &Packet::ConnAck(connack),
            ProtocolVersion::V3_1_1,
            &[0x20, 0x02, 0x00, 0x04],
        );
    }
}
