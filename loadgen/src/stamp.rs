//! The stamp every load message carries at the front of its payload: who sent it, its sequence
//! number, when it was meant to be sent and when it was sent. A subscriber needs nothing else to
//! measure latency and to tell losses, duplicates and reordering apart.

/// Marks a payload as ours: a message from another client is counted but not measured.
const MAGIC: [u8; 2] = *b"CX";

/// Bytes the stamp occupies; payloads may not be smaller.
pub const STAMP_BYTES: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher_id: u32,
    pub seq: u64,
    /// Nanoseconds since the run's epoch when the schedule meant this message to leave.
    pub intended_ns: u64,
    /// Nanoseconds since the run's epoch when it was written to the socket buffer.
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp at the front of `payload` (the rest is left as it is).
    pub fn write(&self, payload: &mut [u8]) {
        assert!(
            payload.len() >= STAMP_BYTES,
            "payload smaller than the stamp"
        );
        payload[0..2].copy_from_slice(&MAGIC);
        payload[2..6].copy_from_slice(&self.publisher_id.to_le_bytes());
        payload[6..14].copy_from_slice(&self.seq.to_le_bytes());
        payload[14..22].copy_from_slice(&self.intended_ns.to_le_bytes());
        payload[22..30].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads a stamp; `None` for a payload that is not ours.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let stamp = payload.get(..STAMP_BYTES)?;
        if stamp[0..2] != MAGIC {
            return None;
        }
        let u64_at = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&stamp[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let mut id = [0u8; 4];
        id.copy_from_slice(&stamp[2..6]);
        Some(Stamp {
            publisher_id: u32::from_le_bytes(id),
            seq: u64_at(6),
            intended_ns: u64_at(14),
            sent_ns: u64_at(22),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_leaves_the_rest() {
        let stamp = Stamp {
            publisher_id: 0xDEAD_BEEF,
            seq: u64::MAX - 3,
            intended_ns: 123_456_789,
            sent_ns: 123_456_999,
        };
        let mut payload = vec![0x55u8; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert!(payload[STAMP_BYTES..].iter().all(|&b| b == 0x55));
    }

    #[test]
    fn foreign_and_short_payloads_are_not_stamps() {
        assert_eq!(
            Stamp::read(b"hello world, this is not a stamp at all"),
            None
        );
        let mut payload = vec![0u8; STAMP_BYTES];
        Stamp {
            publisher_id: 1,
            seq: 2,
            intended_ns: 3,
            sent_ns: 4,
        }
        .write(&mut payload);
        assert_eq!(Stamp::read(&payload[..STAMP_BYTES - 1]), None);
    }
}
