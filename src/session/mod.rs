//! The per-client session state, pure: what a client's session holds between packets and
//! across connections (subscriptions, the outbound inflight window and the queue beyond it,
//! inbound QoS 2 state, the will) and the per-connection sub-states the broker keeps beside
//! it (keepalive, inbound topic aliases). No I/O and no clock reads: time comes in as
//! `Instant` arguments. The broker (`crate::broker`) decides; these types hold and check.
//!
//! | file             | owns                                                          |
//! |------------------|---------------------------------------------------------------|
//! | `inflight.rs`    | packet-id allocation, unacknowledged QoS 1/2 towards a client  |
//! | `queue.rs`       | messages waiting beyond the inflight window, bounded          |
//! | `qos2.rs`        | inbound QoS 2 packet ids awaiting PUBREL (exactly once)        |
//! | `will.rs`        | the will message and when it is due                           |
//! | `keepalive.rs`   | the 1.5 × keep-alive deadline                                  |
//! | `topic_alias.rs` | inbound topic aliases (MQTT 5)                                 |

pub mod inflight;
pub mod keepalive;
pub mod qos2;
pub mod queue;
pub mod topic_alias;
pub mod will;

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::protocol::{Publish, QoS, TopicFilter};
use crate::router::SubscriptionEntry;

pub use inflight::{Inflight, InflightState};
pub use keepalive::Keepalive;
pub use qos2::InboundQos2;
pub use queue::{Enqueued, Queue};
pub use topic_alias::{AliasError, InboundAliases};
pub use will::{will_due_at, PendingWill};

/// A key naming one session on its home shard; never reused while the shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub NonZeroU64);

/// One published message as the router carries it: the PUBLISH as received (topic
/// resolved, no topic alias, no subscription identifiers), shared by every delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub publish: Publish,
    /// MQTT 5 message expiry: not delivered at or after this instant.
    pub expires_at: Option<Instant>,
    /// The publishing session, for No Local; only meaningful on the publisher's shard.
    pub origin: Option<SessionKey>,
}

impl Message {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The message expiry interval left at `now`, rounded up so a live message never says 0.
    pub fn remaining_expiry_s(&self, now: Instant) -> Option<u32> {
        let at = self.expires_at?;
        let left = at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    /// The expiry instant of a message received at `now` with `interval_s`.
    pub fn expiry_from(interval_s: Option<u32>, now: Instant) -> Option<Instant> {
        interval_s.map(|s| now + Duration::from_secs(u64::from(s)))
    }
}

/// One message on its way to one session: the shared message plus what this subscriber's
/// subscriptions made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// The QoS of the delivery: the message's, capped by the subscription's maximum.
    pub qos: QoS,
    /// The RETAIN flag as this subscriber sees it.
    pub retain: bool,
    /// MQTT 5: the identifiers of every matching subscription that had one.
    pub subscription_ids: Vec<NonZeroU32>,
}

impl Delivery {
    /// Bytes this delivery holds against a queue's byte limit.
    pub fn payload_len_bytes(&self) -> u64 {
        self.message.publish.payload.len() as u64
    }
}

/// The durable part of a client's session: what survives its connection when the session
/// expiry interval allows.
#[derive(Debug)]
pub struct Session {
    pub client_id: StoredClientId,
    pub subscriptions: Subscriptions,
    pub inflight: Inflight,
    pub queue: Queue,
    pub qos2: InboundQos2,
    /// Seconds the session outlives its connection (0: ends with it).
    pub expiry_interval_s: u32,
    /// Set while no connection is attached: when the session ends.
    pub expires_at: Option<Instant>,
}

impl Session {
    pub fn new(client_id: &str, inflight_window: u16, queue: Queue) -> Session {
        Session {
            client_id: StoredClientId::new(client_id),
            subscriptions: Subscriptions::default(),
            inflight: Inflight::new(inflight_window),
            queue,
            qos2: InboundQos2::default(),
            expiry_interval_s: 0,
            expires_at: None,
        }
    }

    /// The connection went away at `now`: when does the session end?
    pub fn detach(&mut self, now: Instant) {
        self.expires_at = Some(now + Duration::from_secs(u64::from(self.expiry_interval_s)));
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Client ids up to this long are kept inline: the space a `ClientId` took in the session
/// anyway, so the id costs no allocation (MQTT 3.1 caps ids at 23 bytes, and clients
/// rarely go beyond).
const INLINE_CLIENT_ID_BYTES: usize = 30;

/// A client id as its session keeps it, for as long as the session lives: a copy (it must
/// not pin the buffer the CONNECT was read into), inline when short, boxed otherwise.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredClientId {
    Inline {
        len: u8,
        bytes: [u8; INLINE_CLIENT_ID_BYTES],
    },
    Boxed(Box<str>),
}

impl StoredClientId {
    pub fn new(id: &str) -> StoredClientId {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_CLIENT_ID_BYTES => {
                let mut bytes = [0; INLINE_CLIENT_ID_BYTES];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                StoredClientId::Inline { len, bytes }
            }
            _ => StoredClientId::Boxed(id.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            StoredClientId::Inline { len, bytes } => {
                let id = &bytes[..usize::from(*len)];
                // SAFETY: `new` copied exactly `len` bytes from a `&str` (all of it), so they
                // are valid UTF-8, and nothing changes them afterwards (no `&mut` access is
                // given out).
                unsafe { std::str::from_utf8_unchecked(id) }
            }
            StoredClientId::Boxed(id) => id,
        }
    }
}

impl std::fmt::Debug for StoredClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A session's subscriptions by filter. The map is allocated by the first SUBSCRIBE and
/// freed by the last UNSUBSCRIBE: an empty map costs 32 B in every session, and a
/// publisher-only client never subscribes.
#[derive(Debug, Default)]
pub struct Subscriptions(Option<Box<FxHashMap<TopicFilter, SubscriptionEntry>>>);

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains_key(&self, filter: &TopicFilter) -> bool {
        self.0.as_ref().is_some_and(|map| map.contains_key(filter))
    }

    /// Adds or replaces the subscription to `filter`; returns the one replaced.
    pub fn insert(
        &mut self,
        filter: TopicFilter,
        entry: SubscriptionEntry,
    ) -> Option<SubscriptionEntry> {
        self.0
            .get_or_insert_with(Box::default)
            .insert(filter, entry)
    }

    pub fn remove(&mut self, filter: &TopicFilter) -> Option<SubscriptionEntry> {
        let map = self.0.as_mut()?;
        let removed = map.remove(filter);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    pub fn keys(&self) -> impl Iterator<Item = &TopicFilter> {
        self.0.iter().flat_map(|map| map.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TopicName;
    use bytes::Bytes;

    fn message(expiry: Option<Instant>) -> Message {
        Message {
            publish: Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: TopicName::parse("a/b").expect("valid"),
                packet_id: None,
                properties: Default::default(),
                payload: Bytes::from_static(b"x"),
            },
            expires_at: expiry,
            origin: None,
        }
    }

    #[test]
    fn remaining_expiry_rounds_up_and_expires_at_the_instant() {
        let now = Instant::now();
        let m = message(Some(now + Duration::from_millis(1500)));
        assert_eq!(m.remaining_expiry_s(now), Some(2));
        assert!(!m.is_expired(now + Duration::from_millis(1499)));
        assert!(m.is_expired(now + Duration::from_millis(1500)));
        assert_eq!(message(None).remaining_expiry_s(now), None);
    }

    #[test]
    fn client_ids_are_kept_inline_when_short_and_whole_either_way() {
        for id in [
            "",
            "a",
            "culex-lg-conn-19499",
            "ünïcödé-ïd-of-30-bytes-abc",
            &"x".repeat(31),
        ] {
            assert_eq!(StoredClientId::new(id).as_str(), id);
        }
        let inline = "123456789012345678901234567890";
        assert!(matches!(
            StoredClientId::new(inline),
            StoredClientId::Inline { len: 30, .. }
        ));
        assert!(matches!(
            StoredClientId::new(&"x".repeat(31)),
            StoredClientId::Boxed(_)
        ));
        assert_eq!(std::mem::size_of::<StoredClientId>(), 32);
    }

    #[test]
    fn a_detached_session_expires_after_its_interval() {
        let now = Instant::now();
        let mut s = Session::new("", 10, Queue::new(10, 100));
        s.expiry_interval_s = 5;
        assert!(!s.is_expired(now));
        s.detach(now);
        assert!(!s.is_expired(now + Duration::from_secs(4)));
        assert!(s.is_expired(now + Duration::from_secs(5)));
    }
}
