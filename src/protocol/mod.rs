//! The MQTT 3.1 / 3.1.1 / 5.0 codec. Pure: bytes in, packets out, and back. No I/O, no clock,
//! no glommio; it depends on `bytes` alone (and `bytestring`, a UTF-8-checked `Bytes`).
//!
//! Decoding is zero-copy: topics, strings and payloads are `Bytes` slices of the read buffer.
//! Every malformed input is a [`DecodeError`] naming the MQTT 5 reason code the spec gives.
//!
//! ```text
//! read buffer ──check_frame──▶ NeedMore(n) | Complete{len} ──decode──▶ Packet
//! Packet ──encode(version)──▶ BytesMut          encoded_len(version) without writing
//! ```

pub mod codec;
pub mod error;
pub mod frame;
pub mod packet;
pub mod properties;
mod property_codec;
pub mod reason;
pub mod topic;
pub mod types;
mod wire;

pub use codec::{decode, decode_frame};
pub use error::{DecodeError, EncodeError};
pub use frame::{check_frame, FrameStatus, MAX_REMAINING_LENGTH};
pub use packet::*;
pub use properties::*;
pub use reason::{ReasonCode, ReasonContext};
pub use topic::{SharedFilter, TopicError, TopicFilter, TopicName};
pub use types::{ClientId, PacketId, ProtocolVersion, QoS};
