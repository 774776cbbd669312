//! Framing: the fixed header, the remaining-length variable byte integer, and how many more
//! bytes a partial buffer needs. A packet above the maximum size is refused from its fixed
//! header, before its body is buffered.

use super::error::DecodeError;
use super::wire::read_varint;

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
    let Some((&first_byte, after_first)) = buf.split_first() else {
        return Ok(FrameStatus::NeedMore { at_least_bytes: 1 });
    };
    let Some((remaining_len, varint_len)) = read_varint(after_first)? else {
        // Each varint byte says only whether another follows: ask for one more.
        return Ok(FrameStatus::NeedMore { at_least_bytes: 1 });
    };
    let header_len_bytes = 1 + varint_len;
    let total_len_bytes = header_len_bytes + remaining_len as usize;
    if total_len_bytes > max_packet_size_bytes as usize {
        return Err(DecodeError::PacketTooLarge {
            size_bytes: total_len_bytes,
            max_bytes: max_packet_size_bytes,
        });
    }
    if buf.len() < total_len_bytes {
        return Ok(FrameStatus::NeedMore {
            at_least_bytes: total_len_bytes - buf.len(),
        });
    }
    Ok(FrameStatus::Complete {
        first_byte,
        header_len_bytes,
        total_len_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 1024;

    #[test]
    fn partial_buffers_say_how_much_more_is_needed() {
        assert_eq!(
            check_frame(&[], MAX),
            Ok(FrameStatus::NeedMore { at_least_bytes: 1 })
        );
        // PUBLISH, no remaining length yet.
        assert_eq!(
            check_frame(&[0x30], MAX),
            Ok(FrameStatus::NeedMore { at_least_bytes: 1 })
        );
        // Remaining length 200 = 0xC8 0x01: the second byte is still missing.
        assert_eq!(
            check_frame(&[0x30, 0xC8], MAX),
            Ok(FrameStatus::NeedMore { at_least_bytes: 1 })
        );
        // Header complete (3 bytes), 10 of 200 body bytes there.
        let mut buf = vec![0x30, 0xC8, 0x01];
        buf.extend_from_slice(&[0; 10]);
        assert_eq!(
            check_frame(&buf, MAX),
            Ok(FrameStatus::NeedMore {
                at_least_bytes: 190
            })
        );
    }

    #[test]
    fn a_complete_frame_stops_at_its_edge() {
        // PINGREQ (0xC0 0x00) followed by the first byte of the next packet.
        assert_eq!(
            check_frame(&[0xC0, 0x00, 0x30], MAX),
            Ok(FrameStatus::Complete {
                first_byte: 0xC0,
                header_len_bytes: 2,
                total_len_bytes: 2
            })
        );
    }

    #[test]
    fn oversized_packets_are_refused_from_the_header_alone() {
        // Remaining length 2000 (0xD0 0x0F): total 2003 > 1024, no body needed to say so.
        assert_eq!(
            check_frame(&[0x30, 0xD0, 0x0F], MAX),
            Err(DecodeError::PacketTooLarge {
                size_bytes: 2003,
                max_bytes: MAX
            })
        );
        // Exactly at the maximum is fine: 1021 body + 3 header = 1024.
        assert_eq!(
            check_frame(&[0x30, 0xFD, 0x07], MAX),
            Ok(FrameStatus::NeedMore {
                at_least_bytes: 1021
            })
        );
    }

    #[test]
    fn bad_remaining_lengths_are_malformed() {
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], u32::MAX),
            Err(DecodeError::VarIntTooLong)
        );
        assert_eq!(
            check_frame(&[0x30, 0x80, 0x00], MAX),
            Err(DecodeError::VarIntNotMinimal)
        );
    }
}
