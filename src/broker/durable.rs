//! The one place every change to a session's durable state passes: a per-shard log (a later
//! issue) hooks `ShardCore::record` to make sessions, subscriptions, queued and inflight
//! QoS 1/2 messages, retained messages and wills survive a restart. Today it records nothing.

use crate::protocol::{PacketId, TopicFilter, TopicName};
use crate::session::SessionKey;

/// One change to durable state, borrowed from the core at the moment it happens.
#[derive(Debug, Clone, Copy)]
pub enum DurableChange<'a> {
    SessionCreated {
        session: SessionKey,
    },
    SessionEnded {
        session: SessionKey,
    },
    Subscribed {
        session: SessionKey,
        filter: &'a TopicFilter,
    },
    Unsubscribed {
        session: SessionKey,
        filter: &'a TopicFilter,
    },
    /// A QoS 1/2 message entered the session's queue.
    Queued {
        session: SessionKey,
    },
    /// Messages left the front of the queue unsent (expired, or too large for the client).
    QueueDropped {
        session: SessionKey,
        dropped_count: u32,
    },
    /// A QoS 1/2 message left the queue, was sent and is inflight under `packet_id`.
    InflightSent {
        session: SessionKey,
        packet_id: PacketId,
    },
    /// An inflight message completed (PUBACK, PUBCOMP) or moved to PUBREL.
    InflightAcked {
        session: SessionKey,
        packet_id: PacketId,
    },
    /// Inbound QoS 2 state changed for `packet_id`.
    InboundQos2 {
        session: SessionKey,
        packet_id: PacketId,
    },
    RetainedSet {
        topic: &'a TopicName,
    },
    WillSet {
        session: SessionKey,
    },
}
