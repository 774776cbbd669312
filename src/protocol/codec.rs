//! Decoding and encoding of whole packets, dispatching to the packet families.

use bytes::{Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::packet::Packet;
use super::types::ProtocolVersion;

/// Decodes one packet from the front of `buf` if a whole one is there, splitting it off
/// (zero-copy: the packet's `Bytes` share `buf`'s allocation). `Ok(None)`: more bytes needed.
///
/// `version` is `None` until CONNECT has been decoded: then only CONNECT is accepted.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size_bytes: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size_bytes);
    unimplemented!("issue 2: codec")
}

/// Decodes exactly one whole packet held in `frame` (fixed header included).
pub fn decode_frame(frame: Bytes, version: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    let _ = (frame, version);
    unimplemented!("issue 2: codec")
}

impl Packet {
    /// Appends the packet, as `version` spells it, to `buf`.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let _ = (version, buf);
        unimplemented!("issue 2: codec")
    }

    /// The number of bytes `encode` would append, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let _ = version;
        unimplemented!("issue 2: codec")
    }
}
