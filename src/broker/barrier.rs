//! Replies held until other shards have caught up. A SUBACK whose SUBSCRIBE changed the
//! routes other shards keep waits until every other shard has applied them, and the
//! PUBACK/PUBREC of a retained PUBLISH stored on another shard waits until the owner has
//! stored it; otherwise a client could act on the acknowledgement (publish from a
//! connection on another shard, subscribe on a third) before the broker knows what it
//! acknowledged.
//!
//! The mesh is FIFO per ordered pair of shards, so a [`MeshMessage::Barrier`] sent after
//! the route changes (or the `RetainedSet`) is answered by [`MeshMessage::BarrierAck`] only
//! once the receiver has applied everything before it. A connection's replies leave in the
//! order their packets arrived: once one is held, later ones queue behind it even when they
//! need no barrier. Single-shard brokers never hold anything: no barrier is ever started
//! and the queue stays empty, which costs one `is_empty` per reply.

use std::collections::VecDeque;
use std::time::Instant;

use crate::protocol::{Packet, ReasonCode, TopicFilter};
use crate::router::{ShardId, SubscriptionEntry};

use super::conn::Phase;
use super::{ConnId, MeshMessage, Output, ShardCore};

/// Replies one connection may have held at once. A client has at most one packet awaiting
/// a reply per packet identifier (SUBSCRIBE, UNSUBSCRIBE and PUBLISH share the 16-bit
/// space, and PUBCOMP cannot be asked for before its PUBREC is out), so a conforming
/// client never reaches this; one that does is refused rather than growing the queue.
/// The broker-wide barrier table is bounded by connections × this.
pub(super) const HELD_REPLIES_MAX: usize = u16::MAX as usize;

/// A reply to the client, possibly waiting for a barrier. Deliveries go on being written
/// while it waits, but nothing written after its place leaves before it.
#[derive(Debug)]
pub(super) struct HeldReply {
    /// Its place in the connection's outgoing buffer; set when it is held.
    pub at: usize,
    /// The barrier this reply waits for; `None` once it has passed or if the reply only
    /// queues behind an earlier held one to keep the order.
    pub barrier: Option<u64>,
    pub packet: Packet,
    /// Retained messages to ask for once the SUBACK is written: they follow it.
    pub retained: Vec<(TopicFilter, SubscriptionEntry)>,
}

impl HeldReply {
    pub fn new(
        barrier: Option<u64>,
        packet: Packet,
        retained: Vec<(TopicFilter, SubscriptionEntry)>,
    ) -> HeldReply {
        HeldReply {
            at: 0,
            barrier,
            packet,
            retained,
        }
    }
}

/// One connection's held replies, oldest first. The deque is allocated when a first reply
/// is held and freed when the last one leaves: a single-shard broker never holds any, and
/// an empty deque would cost 32 B in every connection.
// The box is the point: 8 B in every connection instead of an empty deque's 32.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(super) struct HeldReplies(Option<Box<VecDeque<HeldReply>>>);

impl HeldReplies {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |held| held.len())
    }

    pub fn front(&self) -> Option<&HeldReply> {
        self.0.as_ref().and_then(|held| held.front())
    }

    #[cfg(test)]
    pub fn back_mut(&mut self) -> Option<&mut HeldReply> {
        self.0.as_mut().and_then(|held| held.back_mut())
    }

    pub fn push_back(&mut self, reply: HeldReply) {
        self.0.get_or_insert_with(Box::default).push_back(reply);
    }

    pub fn pop_front(&mut self) -> Option<HeldReply> {
        let held = self.0.as_mut()?;
        let reply = held.pop_front();
        if held.is_empty() {
            self.0 = None;
        }
        reply
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut HeldReply> {
        self.0.iter_mut().flat_map(|held| held.iter_mut())
    }

    /// All of them, leaving none.
    pub fn take(&mut self) -> VecDeque<HeldReply> {
        self.0.take().map(|held| *held).unwrap_or_default()
    }
}

/// A barrier sent to other shards for one held reply.
#[derive(Debug)]
pub(super) struct PendingBarrier {
    conn: ConnId,
    acks_left: u16,
}

impl ShardCore {
    /// Sends a barrier to each of `shards` (after what this shard already sent them) and
    /// returns its id, for a reply of `conn` to wait on.
    pub(super) fn start_barrier(
        &mut self,
        conn: ConnId,
        shards: impl Iterator<Item = ShardId>,
    ) -> u64 {
        let id = self.next_barrier;
        self.next_barrier += 1;
        let mut acks_left = 0u16;
        for shard in shards {
            debug_assert_ne!(shard, self.shard, "a barrier is for other shards");
            acks_left += 1;
            self.outputs.push_back(Output::Mesh {
                to: shard,
                msg: MeshMessage::Barrier { id },
            });
        }
        debug_assert!(acks_left > 0, "a barrier waits for at least one shard");
        self.barriers.insert(id, PendingBarrier { conn, acks_left });
        self.stats.barriers_started_count += 1;
        id
    }

    /// Writes `reply` to `conn` now, or queues it if it waits for a barrier or an earlier
    /// reply of `conn` is held.
    pub(super) fn reply(&mut self, conn: ConnId, reply: HeldReply, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return self.forget_barrier(reply.barrier);
        };
        if reply.barrier.is_none() && c.held.is_empty() {
            return self.write_reply(conn, reply, now);
        }
        if c.phase != Phase::Connected {
            return self.forget_barrier(reply.barrier);
        }
        if c.held.len() >= HELD_REPLIES_MAX {
            self.stats.held_replies_refused_count += 1;
            self.forget_barrier(reply.barrier);
            return self.protocol_error(conn, ReasonCode::QuotaExceeded, now);
        }
        let at = c.out.len();
        c.held.push_back(HeldReply { at, ..reply });
        debug_assert!(c.held.len() <= HELD_REPLIES_MAX);
    }

    /// One more shard applied everything this shard sent it before barrier `id`.
    pub(super) fn on_barrier_ack(&mut self, id: u64, now: Instant) {
        let Some(pending) = self.barriers.get_mut(&id) else {
            // Its connection closed meanwhile: nothing waits any more.
            return;
        };
        pending.acks_left = pending.acks_left.saturating_sub(1);
        if pending.acks_left > 0 {
            return;
        }
        let conn = pending.conn;
        self.barriers.remove(&id);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let held = c.held.iter_mut().find(|r| r.barrier == Some(id));
        debug_assert!(held.is_some(), "a live barrier has its reply held");
        if let Some(reply) = held {
            reply.barrier = None;
        }
        self.release_held(conn, now);
    }

    /// Writes the held replies at the front of `conn`'s queue whose barriers have passed,
    /// each in its place, and lets the bytes up to the next held one leave.
    fn release_held(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if !c.held.front().is_some_and(|r| r.barrier.is_none()) {
                break;
            }
            let Some(reply) = c.held.pop_front() else {
                break;
            };
            c.write_at(reply.at, &reply.packet);
            self.request_retained_after(conn, reply.retained, now);
        }
        self.signal(conn);
    }

    fn write_reply(&mut self, conn: ConnId, reply: HeldReply, now: Instant) {
        debug_assert!(reply.barrier.is_none());
        self.send(conn, &reply.packet);
        self.request_retained_after(conn, reply.retained, now);
    }

    /// Asks for the retained messages a written SUBACK announced.
    fn request_retained_after(
        &mut self,
        conn: ConnId,
        retained: Vec<(TopicFilter, SubscriptionEntry)>,
        now: Instant,
    ) {
        if retained.is_empty() {
            return;
        }
        let Some(key) = self
            .conns
            .get(&conn)
            .filter(|c| c.phase == Phase::Connected)
            .and_then(|c| c.client)
        else {
            return;
        };
        for (filter, entry) in retained {
            self.request_retained(key, &filter, entry, now);
        }
    }

    /// `conn` is closing or gone: its held replies are dropped with their barriers (acks
    /// still on their way find nothing and are ignored).
    pub(super) fn drop_held(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.held.is_empty() {
            return;
        }
        let held = c.held.take();
        for reply in held {
            self.stats.held_replies_dropped_count += 1;
            self.forget_barrier(reply.barrier);
        }
    }

    pub(super) fn forget_barrier(&mut self, barrier: Option<u64>) {
        if let Some(id) = barrier {
            self.barriers.remove(&id);
        }
    }

    /// Replies held for connections on this shard (all connections).
    pub fn held_replies_count(&self) -> usize {
        self.conns.values().map(|c| c.held.len()).sum()
    }

    /// Barriers this shard waits for.
    pub fn pending_barriers_count(&self) -> usize {
        self.barriers.len()
    }
}
