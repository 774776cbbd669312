//! One connection as the core sees it: its read and write buffers, where it stands in the
//! protocol, and the state MQTT ties to the connection rather than the session (keepalive,
//! inbound topic aliases, the client's limits, the will).

use std::time::Instant;

use bytes::BytesMut;

use crate::protocol::{Packet, ProtocolVersion, Will};
use crate::session::{InboundAliases, Keepalive, SessionKey};

use super::ConnId;

/// An idle connection keeps no read buffer above this: allocate on data, shrink when idle.
const IDLE_READ_BUFFER_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; CONNECT must arrive before `deadline`.
    AwaitingConnect {
        deadline: Instant,
    },
    Connected,
    /// `Close` emitted; the last bytes wait for `take_outgoing`.
    Closing,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub id: ConnId,
    pub read_buf: BytesMut,
    pub out: BytesMut,
    /// `Writable` emitted and `take_outgoing` not yet called.
    pub writable_signalled: bool,
    pub phase: Phase,
    pub version: Option<ProtocolVersion>,
    pub client: Option<SessionKey>,
    pub keepalive: Keepalive,
    pub aliases: InboundAliases,
    /// The client's Maximum Packet Size (MQTT 5), or no limit.
    pub max_packet_bytes: u32,
    pub will: Option<Will>,
}

impl Conn {
    pub fn new(id: ConnId, deadline: Instant) -> Conn {
        Conn {
            id,
            read_buf: BytesMut::new(),
            out: BytesMut::new(),
            writable_signalled: false,
            phase: Phase::AwaitingConnect { deadline },
            version: None,
            client: None,
            keepalive: Keepalive::new(0, deadline),
            aliases: InboundAliases::new(0),
            max_packet_bytes: u32::MAX,
            will: None,
        }
    }

    pub fn is_v5(&self) -> bool {
        self.version.is_some_and(ProtocolVersion::is_v5)
    }

    /// Appends `packet`; true if the buffer went from empty to non-empty.
    pub fn write(&mut self, packet: &Packet) {
        let version = self.version.unwrap_or(ProtocolVersion::V3_1_1);
        if let Err(error) = packet.encode(version, &mut self.out) {
            // Only our own packets are encoded here; a failure is our bug, not the peer's.
            debug_assert!(false, "encoding {packet:?}: {error}");
            tracing::error!(conn = ?self.id, %error, "could not encode a packet");
        }
    }

    /// True once: when bytes are waiting and `Writable` has not been emitted for them.
    pub fn needs_signal(&mut self) -> bool {
        if !self.writable_signalled && !self.out.is_empty() && self.phase != Phase::Closing {
            self.writable_signalled = true;
            return true;
        }
        false
    }

    pub fn release_idle_read_buffer(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > IDLE_READ_BUFFER_BYTES {
            self.read_buf = BytesMut::new();
        }
    }
}
