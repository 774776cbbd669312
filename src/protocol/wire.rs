//! The primitive field readers and writers every packet is built from: big-endian integers,
//! variable byte integers, length-prefixed strings and binary data (spec 1.5).
//!
//! Writing goes through [`Sink`], implemented both by `BytesMut` and by [`Counter`], so a
//! packet's length and its bytes come from the same code and cannot disagree.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};

/// A cursor over one packet's body. Strings and binary fields are split off as `Bytes`
/// sharing the read buffer (a reference-count bump, no copy).
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd { field });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    /// Consumes the next byte if it is zero: the one-byte form of an empty property block.
    pub(crate) fn skip_zero(&mut self) -> bool {
        if self.buf.first() == Some(&0) {
            self.buf.advance(1);
            true
        } else {
            false
        }
    }

    /// A variable byte integer: at most 4 bytes, in its shortest form.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match read_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEnd { field }),
        }
    }

    /// The next `n` bytes, split off.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Binary data: a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A UTF-8 string: well-formed (no surrogates) and without U+0000 [MQTT-1.5.4-1, -2].
    pub(crate) fn string(&mut self, field: &'static str) -> Result<ByteString, DecodeError> {
        let raw = self.binary(field)?;
        to_string(raw, field)
    }

    /// Everything left, split off.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Refuses bytes after the last field.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }
}

/// Checks the MQTT string rules on `raw` and wraps it without copying.
pub(crate) fn to_string(raw: Bytes, field: &'static str) -> Result<ByteString, DecodeError> {
    if scan(&raw).nul {
        return Err(DecodeError::NullCharacter { field });
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8 { field })
}

/// What one pass over a string's bytes found. NUL, `+` and `#` are ASCII, so they can be
/// looked for byte-wise whether or not the text turns out to be valid UTF-8.
pub(crate) struct Scan {
    pub(crate) nul: bool,
    pub(crate) wildcard: bool,
}

/// One branch-free pass through a byte-class table. Topics are short, and `memchr`'s setup
/// cost more than the scan itself on a 19-byte topic (callgrind: three memchr passes cost
/// about 280 instructions per PUBLISH; an eight-bytes-at-a-time variant measured no better
/// than this table).
#[inline]
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let found = bytes
        .iter()
        .fold(0u8, |found, &byte| found | BYTE_CLASS[usize::from(byte)]);
    Scan {
        nul: found & CLASS_NUL != 0,
        wildcard: found & CLASS_WILDCARD != 0,
    }
}

const CLASS_NUL: u8 = 1;
const CLASS_WILDCARD: u8 = 2;

/// The class of each byte value: NUL, a wildcard (`+`, `#`), or nothing of interest.
static BYTE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[0] = CLASS_NUL;
    table[b'+' as usize] = CLASS_WILDCARD;
    table[b'#' as usize] = CLASS_WILDCARD;
    table
};

/// Decodes a variable byte integer from the front of `buf`: `Ok(None)` if `buf` ends inside
/// it, else the value and how many bytes it took.
pub(crate) fn read_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            // A final zero group after others could have been left out [MQTT-1.5.5-1].
            if index > 0 && byte == 0 {
                return Err(DecodeError::VarIntNotMinimal);
            }
            return Ok(Some((value, index + 1)));
        }
        if index == 3 {
            return Err(DecodeError::VarIntTooLong);
        }
    }
    Ok(None)
}

/// How many bytes `value` takes as a variable byte integer.
pub(crate) const fn varint_len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Refuses a body longer than the fixed header's remaining length can say; otherwise the
/// bytes the whole packet takes (first byte, remaining length, body).
pub(crate) fn packet_len(body_len: usize) -> Result<usize, EncodeError> {
    let size_bytes = 1 + varint_len(body_len) + body_len;
    if body_len > super::frame::MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge { size_bytes });
    }
    Ok(size_bytes)
}

/// Where encoded bytes go: a buffer, or a counter that only adds up their length.
pub(crate) trait Sink {
    fn put_u8(&mut self, value: u8);
    fn put_u16(&mut self, value: u16);
    fn put_u32(&mut self, value: u32);
    fn put_slice(&mut self, bytes: &[u8]);
    fn put_varint(&mut self, value: u32);
    /// Records a value the wire cannot carry; only the counter, which runs first, keeps it.
    fn fail(&mut self, error: EncodeError);

    /// A two-byte length and the bytes (string or binary data).
    fn put_prefixed(&mut self, field: &'static str, bytes: &[u8]) {
        match u16::try_from(bytes.len()) {
            Ok(len) => {
                self.put_u16(len);
                self.put_slice(bytes);
            }
            Err(_) => self.fail(EncodeError::FieldTooLong { field }),
        }
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put_u8(&mut self, value: u8) {
        BufMut::put_u8(self, value);
    }
    #[inline]
    fn put_u16(&mut self, value: u16) {
        BufMut::put_u16(self, value);
    }
    #[inline]
    fn put_u32(&mut self, value: u32) {
        BufMut::put_u32(self, value);
    }
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn put_varint(&mut self, mut value: u32) {
        loop {
            let byte = (value & 0x7F) as u8;
            value >>= 7;
            if value == 0 {
                BufMut::put_u8(self, byte);
                return;
            }
            BufMut::put_u8(self, byte | 0x80);
        }
    }
    fn fail(&mut self, _error: EncodeError) {}
}

/// Adds up the length of what would be written, and the first error met.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) len: usize,
    pub(crate) error: Option<EncodeError>,
}

impl Sink for Counter {
    #[inline]
    fn put_u8(&mut self, _value: u8) {
        self.len += 1;
    }
    #[inline]
    fn put_u16(&mut self, _value: u16) {
        self.len += 2;
    }
    #[inline]
    fn put_u32(&mut self, _value: u32) {
        self.len += 4;
    }
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
    }
    #[inline]
    fn put_varint(&mut self, value: u32) {
        // Above four 7-bit groups the value has no wire form (a subscription identifier
        // set too high by a caller, say); refuse rather than write five bytes.
        if value as usize > super::frame::MAX_REMAINING_LENGTH {
            self.fail(EncodeError::FieldTooLong {
                field: "variable byte integer",
            });
        }
        self.len += varint_len(value as usize);
    }
    fn fail(&mut self, error: EncodeError) {
        self.error.get_or_insert(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_nul_and_wildcards_anywhere() {
        let plain = scan(b"sensors/floor1/temp");
        assert!(!plain.nul && !plain.wildcard);
        assert!(scan(b"a/b\0").nul);
        assert!(scan(b"+/b").wildcard);
        assert!(scan(b"a/#").wildcard);
        assert!(!scan(b"").nul);
        // Past the first eight-byte word, and every position of a word.
        for at in 0..24 {
            let mut text = vec![b'a'; 24];
            text[at] = 0;
            assert!(scan(&text).nul && !scan(&text).wildcard, "NUL at {at}");
            text[at] = b'#';
            assert!(scan(&text).wildcard && !scan(&text).nul, "# at {at}");
            text[at] = 0x80 | b'+'; // a byte that differs from '+' only in the high bit
            assert!(!scan(&text).wildcard, "0xAB at {at}");
        }
    }

    #[test]
    fn varints_encode_in_their_shortest_form_and_decode_back() {
        for value in [
            0u32,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut buf = BytesMut::new();
            buf.put_varint(value);
            assert_eq!(buf.len(), varint_len(value as usize));
            buf.extend_from_slice(&[0xAA]); // a trailing byte the reader must not touch
            assert_eq!(
                read_varint(&buf),
                Ok(Some((value, varint_len(value as usize))))
            );
        }
    }

    #[test]
    fn varints_refuse_five_bytes_and_padding() {
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::VarIntTooLong)
        );
        // 0 spelled in two bytes.
        assert_eq!(
            read_varint(&[0x80, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
        // 128 spelled in three bytes.
        assert_eq!(
            read_varint(&[0x80, 0x81, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
        assert_eq!(read_varint(&[0x80, 0x80]), Ok(None));
    }

    #[test]
    fn strings_refuse_nul_and_bad_utf8() {
        let mut reader = Reader::new(Bytes::from_static(&[0, 3, b'a', 0, b'b']));
        assert_eq!(
            reader.string("s"),
            Err(DecodeError::NullCharacter { field: "s" })
        );
        // U+D800, a surrogate, as CESU-style bytes.
        let mut reader = Reader::new(Bytes::from_static(&[0, 3, 0xED, 0xA0, 0x80]));
        assert_eq!(
            reader.string("s"),
            Err(DecodeError::InvalidUtf8 { field: "s" })
        );
        let mut reader = Reader::new(Bytes::from_static(&[0, 2, b'h', b'i', 9]));
        assert_eq!(reader.string("s").as_deref(), Ok("hi"));
        assert_eq!(
            reader.finish(),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }
}
