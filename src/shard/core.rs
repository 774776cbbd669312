//! The seam between the I/O runtime and the broker's pure logic: the [`Core`] trait names
//! exactly what a shard feeds in (bytes, mesh messages, time) and carries out
//! ([`CoreOutput`]). [`crate::broker::ShardCore`] implements it; the runtime's own tests
//! drive it with small scripted cores, so the I/O layer is tested without the broker.

use std::time::Instant;

use bytes::BytesMut;

use crate::broker::{ConnId, MeshMessage, Output, ShardCore, ShardId};

/// What the core asks the runtime to do (the shape of [`Output`], generic over the mesh
/// message so the runtime can be tested with a core of its own).
#[derive(Debug)]
pub enum CoreOutput<M> {
    /// Bytes wait for `conn`: the runtime takes them once its previous write finished.
    Writable { conn: ConnId },
    /// Flush what is pending for `conn`, then close it.
    Close { conn: ConnId },
    /// Move `conn`'s socket to shard `to`, with the bytes already received.
    HandOff {
        conn: ConnId,
        to: ShardId,
        received: BytesMut,
    },
    /// Send `msg` to shard `to`, batched by the mesh.
    Mesh { to: ShardId, msg: M },
}

/// One shard's logic as the runtime sees it. Every method is synchronous and cheap: the
/// runtime calls it with the core borrowed briefly, never across an `.await`.
pub trait Core: 'static {
    /// What shards send each other. `Send`, because it crosses threads.
    type Msg: Send + 'static;

    fn connection_opened(&mut self, conn: ConnId, now: Instant);
    fn received(&mut self, conn: ConnId, bytes: &[u8], now: Instant);
    fn connection_lost(&mut self, conn: ConnId, now: Instant);
    fn mesh_received(&mut self, from: ShardId, msg: Self::Msg, now: Instant);
    fn tick(&mut self, now: Instant);
    /// First phase of stopping: publish every connected client's will now, keeping the
    /// connections open, so wills reach subscribers on every shard before any closes.
    /// The default does nothing (the will then goes out in `shutdown`).
    fn publish_wills_for_shutdown(&mut self, now: Instant) {
        let _ = now;
    }
    /// Second phase: say goodbye and close; the runtime then flushes and closes every
    /// connection still open.
    fn shutdown(&mut self, now: Instant);
    fn poll_output(&mut self) -> Option<CoreOutput<Self::Msg>>;
    fn take_outgoing(&mut self, conn: ConnId) -> BytesMut;
    /// A buffer `take_outgoing` returned, fully written: the core may reuse it.
    fn recycle(&mut self, buf: BytesMut) {
        let _ = buf;
    }
    /// Whether `msg` may be dropped when the queue to its shard is full and the backlog
    /// is at its limit (QoS 0 publishes may; route changes, QoS 1/2 and hand-offs not).
    fn sheddable(msg: &Self::Msg) -> bool;
}

impl Core for ShardCore {
    type Msg = MeshMessage;

    fn connection_opened(&mut self, conn: ConnId, now: Instant) {
        ShardCore::connection_opened(self, conn, now)
    }

    fn received(&mut self, conn: ConnId, bytes: &[u8], now: Instant) {
        ShardCore::received(self, conn, bytes, now)
    }

    fn connection_lost(&mut self, conn: ConnId, now: Instant) {
        ShardCore::connection_lost(self, conn, now)
    }

    fn mesh_received(&mut self, from: ShardId, msg: MeshMessage, now: Instant) {
        ShardCore::mesh_received(self, from, msg, now)
    }

    fn tick(&mut self, now: Instant) {
        ShardCore::tick(self, now)
    }

    fn publish_wills_for_shutdown(&mut self, now: Instant) {
        ShardCore::publish_wills_for_shutdown(self, now)
    }

    fn shutdown(&mut self, now: Instant) {
        ShardCore::shutdown(self, now)
    }

    fn poll_output(&mut self) -> Option<CoreOutput<MeshMessage>> {
        ShardCore::poll_output(self).map(|output| match output {
            Output::Writable { conn } => CoreOutput::Writable { conn },
            Output::Close { conn } => CoreOutput::Close { conn },
            Output::HandOff { conn, to, received } => CoreOutput::HandOff { conn, to, received },
            Output::Mesh { to, msg } => CoreOutput::Mesh { to, msg },
        })
    }

    fn take_outgoing(&mut self, conn: ConnId) -> BytesMut {
        ShardCore::take_outgoing(self, conn)
    }

    fn recycle(&mut self, buf: BytesMut) {
        ShardCore::recycle(self, buf)
    }

    fn sheddable(msg: &MeshMessage) -> bool {
        msg.is_sheddable()
    }
}
