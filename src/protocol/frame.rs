//! Framing: the fixed header, the remaining-length variable byte integer, and how many more
//! bytes a partial buffer needs. A packet above the maximum size is refused from its fixed
//! header, before its body is buffered.

use super::error::DecodeError;

/// The most a remaining length can say (four 7-bit groups).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// What a read buffer holds at its front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// One whole packet of `total_len_bytes` (fixed header included) is there.
    Complete {
        /// The first byte: packet type in the high nibble, flags in the low.
        first_byte: u8,
        header_len_bytes: usize,
        total_len_bytes: usize,
    },
    /// At least this many more bytes are needed before anything can be decoded.
    NeedMore { at_least_bytes: usize },
}

/// Looks at the front of `buf` without consuming it.
pub fn check_frame(buf: &[u8], max_packet_size_bytes: u32) -> Result<FrameStatus, DecodeError> {
    let _ = (buf, max_packet_size_bytes);
    unimplemented!("issue 2: codec")
}
