//! The broker's logic for one shard, pure: connections' bytes, mesh messages and time go
//! in; bytes to write, connections to close, hand-offs and mesh messages come out. The
//! `shard` layer performs the outputs; nothing here touches a socket, glommio or a clock.
//!
//! ```text
//!  shard (I/O) ──received(conn, bytes)──▶ ShardCore ──poll_output()──▶ Write / Close /
//!              ──mesh_received(msg)────▶  (sessions,                   HandOff / Mesh
//!              ──tick(now)─────────────▶   trie replica,
//!                                          retained partition)
//! ```

use std::time::Instant;

use bytes::BytesMut;

pub use crate::router::ShardId;

/// A connection on this shard, assigned by the shard layer; unique among open connections
/// of one shard. Opaque to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// A message from one shard to another. Plain data, `Send`; payloads are shared `Bytes`.
#[derive(Debug, Clone)]
pub enum MeshMessage {
    /// Placeholder until the broker issue defines the mesh protocol.
    Nop,
}

/// What the core asks the shard layer to do.
#[derive(Debug)]
pub enum Output {
    /// `conn` has bytes waiting: the shard calls [`ShardCore::take_outgoing`] once its
    /// previous write to `conn` has finished. Emitted when the buffer goes from empty to
    /// non-empty, not per packet.
    Writable { conn: ConnId },
    /// Flush what is pending for `conn`, then close it.
    Close { conn: ConnId },
    /// `conn`'s client lives on shard `to`: move the socket there with the bytes the core
    /// has already received (CONNECT included), and forget it here.
    HandOff {
        conn: ConnId,
        to: ShardId,
        received: BytesMut,
    },
    /// Send `msg` to shard `to` (batched by the mesh).
    Mesh { to: ShardId, msg: MeshMessage },
}

/// One shard's broker state.
#[derive(Debug)]
pub struct ShardCore {
    _private: (),
}

impl ShardCore {
    /// A new connection was accepted on this shard (or adopted by hand-off, followed by
    /// `received` with the bytes that came with it).
    pub fn connection_opened(&mut self, conn: ConnId, now: Instant) {
        let _ = (conn, now);
        unimplemented!("issue 3")
    }

    /// Bytes read from `conn`. The core decodes every whole packet and keeps the rest.
    pub fn received(&mut self, conn: ConnId, bytes: &[u8], now: Instant) {
        let _ = (conn, bytes, now);
        unimplemented!("issue 3")
    }

    /// The socket closed or failed (not by the core's own `Close`).
    pub fn connection_lost(&mut self, conn: ConnId, now: Instant) {
        let _ = (conn, now);
        unimplemented!("issue 3")
    }

    pub fn mesh_received(&mut self, from: ShardId, msg: MeshMessage, now: Instant) {
        let _ = (from, msg, now);
        unimplemented!("issue 3")
    }

    /// Periodic: keepalive sweep, expiries, will delays.
    pub fn tick(&mut self, now: Instant) {
        let _ = now;
        unimplemented!("issue 3")
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        unimplemented!("issue 3")
    }

    /// Everything pending for `conn`, leaving its buffer empty.
    pub fn take_outgoing(&mut self, conn: ConnId) -> BytesMut {
        let _ = conn;
        unimplemented!("issue 3")
    }
}
