//! The outbound inflight window: QoS 1/2 deliveries sent to the client and not yet
//! acknowledged, in send order, and the packet identifiers they hold. The window is the
//! client's Receive Maximum (capped by the broker's `max_inflight_messages`).

use std::collections::VecDeque;

use rustc_hash::FxHashSet;

use crate::protocol::{PacketId, QoS};

use super::Delivery;

/// Where one outbound QoS 1/2 delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflightState {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2). Resent with DUP.
    Published(Delivery),
    /// QoS 2: PUBREC received, PUBREL sent; waiting for PUBCOMP. Resent as PUBREL.
    Released,
}

#[derive(Debug)]
pub struct Inflight {
    window: u16,
    next_id: PacketId,
    /// Allocated by the first QoS 1/2 delivery and freed by `clear`: every session holds an
    /// `Inflight`, most idle ones never use it, and the empty deque and set cost 64 B each.
    window_state: Option<Box<WindowState>>,
}

#[derive(Debug, Default)]
struct WindowState {
    entries: VecDeque<(PacketId, InflightState)>,
    /// The ids in `entries`, so taking a free id does not scan the window: with
    /// `max_inflight_messages 0` the window is 65,535 and a scan per delivery made one
    /// busy subscriber cost a shard its whole core (the two-shard QoS 1 stall).
    used: FxHashSet<PacketId>,
}

impl Inflight {
    pub fn new(window: u16) -> Inflight {
        Inflight {
            window: window.max(1),
            next_id: PacketId::new(1).expect("1 is a valid packet id"),
            window_state: None,
        }
    }

    /// A new connection may announce a different Receive Maximum.
    pub fn set_window(&mut self, window: u16) {
        self.window = window.max(1);
    }

    pub fn window(&self) -> u16 {
        self.window
    }

    pub fn len(&self) -> usize {
        self.window_state.as_ref().map_or(0, |w| w.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for one more unacknowledged delivery.
    pub fn has_room(&self) -> bool {
        self.len() < usize::from(self.window)
    }

    /// Takes a free packet id for `delivery` (QoS 1 or 2) and records it as sent.
    pub fn insert(&mut self, delivery: Delivery) -> PacketId {
        self.insert_get(delivery).0
    }

    /// [`Inflight::insert`], also lending the delivery back as stored, so a caller writes
    /// it from the window rather than cloning it first.
    pub fn insert_get(&mut self, delivery: Delivery) -> (PacketId, &Delivery) {
        debug_assert!(delivery.qos != QoS::AtMostOnce, "QoS 0 is never inflight");
        debug_assert!(self.has_room(), "inflight window overrun");
        let state = self.window_state.get_or_insert_with(Box::default);
        // At most `window` (< 65535) ids are in use, so a free one is always found.
        let mut id = self.next_id;
        while state.used.contains(&id) {
            id = id.next();
        }
        state.used.insert(id);
        debug_assert_eq!(state.used.len(), state.entries.len() + 1);
        self.next_id = id.next();
        state
            .entries
            .push_back((id, InflightState::Published(delivery)));
        match state.entries.back() {
            Some((_, InflightState::Published(stored))) => (id, stored),
            _ => unreachable!("the entry was pushed just above"),
        }
    }

    /// PUBACK: true if `id` was a QoS 1 delivery awaiting it (now complete).
    pub fn puback(&mut self, id: PacketId) -> bool {
        self.remove_if(
            id,
            |state| matches!(state, InflightState::Published(d) if d.qos == QoS::AtLeastOnce),
        )
    }

    /// PUBREC: a QoS 2 delivery moves to `Released` (true: send PUBREL). With an error
    /// reason the exchange ends there (`failed`) and the id is freed.
    pub fn pubrec(&mut self, id: PacketId, failed: bool) -> bool {
        let Some(state) = self.window_state.as_deref_mut() else {
            return false;
        };
        let Some(i) = state.position(id) else {
            return false;
        };
        match &state.entries[i].1 {
            InflightState::Published(d) if d.qos == QoS::ExactlyOnce => {
                if failed {
                    state.entries.remove(i);
                    state.used.remove(&id);
                } else {
                    state.entries[i].1 = InflightState::Released;
                }
                true
            }
            // A repeated PUBREC: answer with PUBREL again.
            InflightState::Released => !failed,
            InflightState::Published(_) => false,
        }
    }

    /// PUBCOMP: true if `id` was released and is now complete.
    pub fn pubcomp(&mut self, id: PacketId) -> bool {
        self.remove_if(id, |state| matches!(state, InflightState::Released))
    }

    /// Every entry, oldest first, for a resend after reconnection.
    pub fn iter(&self) -> impl Iterator<Item = &(PacketId, InflightState)> {
        self.window_state.iter().flat_map(|w| w.entries.iter())
    }

    /// Keeps the entries for which `keep` says so, in order (resending after a reconnection
    /// visits each and may drop those that can no longer be sent).
    pub fn retain(&mut self, mut keep: impl FnMut(PacketId, &InflightState) -> bool) {
        if let Some(state) = self.window_state.as_deref_mut() {
            state.entries.retain(|(id, state)| keep(*id, state));
            state.used = state.entries.iter().map(|(id, _)| *id).collect();
        }
    }

    /// Drops every entry (the session was discarded), and the memory that held them.
    pub fn clear(&mut self) {
        self.window_state = None;
    }

    fn remove_if(&mut self, id: PacketId, test: impl Fn(&InflightState) -> bool) -> bool {
        let Some(state) = self.window_state.as_deref_mut() else {
            return false;
        };
        match state.position(id) {
            Some(i) if test(&state.entries[i].1) => {
                state.entries.remove(i);
                state.used.remove(&id);
                debug_assert_eq!(state.used.len(), state.entries.len());
                true
            }
            _ => false,
        }
    }
}

impl WindowState {
    fn position(&self, id: PacketId) -> Option<usize> {
        self.entries.iter().position(|(used, _)| *used == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::{Publish, TopicName};
    use crate::session::Message;
    use bytes::Bytes;
    use std::sync::Arc;

    pub(crate) fn delivery(qos: QoS, payload: &'static [u8]) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                publish: Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: TopicName::parse("t").expect("valid"),
                    packet_id: None,
                    properties: Default::default(),
                    payload: Bytes::from_static(payload),
                },
                expires_at: None,
                origin: None,
            }),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
        }
    }

    #[test]
    fn window_bounds_and_ids_are_distinct_and_reused_after_ack() {
        let mut w = Inflight::new(2);
        let a = w.insert(delivery(QoS::AtLeastOnce, b"a"));
        let b = w.insert(delivery(QoS::ExactlyOnce, b"b"));
        assert_ne!(a, b);
        assert!(!w.has_room());
        // PUBACK for the QoS 2 one is not an acknowledgement of it.
        assert!(!w.puback(b));
        assert!(w.puback(a));
        assert!(!w.puback(a), "a second PUBACK finds nothing");
        assert!(w.has_room());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn qos2_goes_through_pubrec_then_pubcomp() {
        let mut w = Inflight::new(5);
        let id = w.insert(delivery(QoS::ExactlyOnce, b"x"));
        assert!(!w.pubcomp(id), "PUBCOMP before PUBREC is not accepted");
        assert!(w.pubrec(id, false));
        assert_eq!(
            w.iter().next().map(|e| &e.1),
            Some(&InflightState::Released)
        );
        assert!(w.pubrec(id, false), "a repeated PUBREC is answered again");
        assert!(w.pubcomp(id));
        assert!(w.is_empty());
    }

    #[test]
    fn retain_keeps_order_and_frees_dropped_ids() {
        let mut w = Inflight::new(3);
        let a = w.insert(delivery(QoS::AtLeastOnce, b"a"));
        let b = w.insert(delivery(QoS::AtLeastOnce, b"b"));
        let c = w.insert(delivery(QoS::AtLeastOnce, b"c"));
        w.retain(|id, _| id != b);
        let left: Vec<_> = w.iter().map(|(id, _)| *id).collect();
        assert_eq!(left, vec![a, c]);
        assert!(w.has_room());
    }

    #[test]
    fn failed_pubrec_frees_the_id() {
        let mut w = Inflight::new(5);
        let id = w.insert(delivery(QoS::ExactlyOnce, b"x"));
        assert!(w.pubrec(id, true));
        assert!(w.is_empty());
    }

    #[test]
    fn ids_skip_those_in_use_across_wrap() {
        let mut w = Inflight::new(3);
        w.next_id = PacketId::new(65535).expect("valid");
        let a = w.insert(delivery(QoS::AtLeastOnce, b"a"));
        let b = w.insert(delivery(QoS::AtLeastOnce, b"b"));
        assert_eq!((a.get(), b.get()), (65535, 1));
        w.next_id = a;
        let c = w.insert(delivery(QoS::AtLeastOnce, b"c"));
        assert_eq!(c.get(), 2, "65535 and 1 are taken");
    }

    /// The widest window (`max_inflight_messages 0`): all 65,535 ids in use at once, each
    /// once; an id freed by PUBACK, by a failed PUBREC or by `retain` is the one the next
    /// delivery takes, since every other id is still held.
    #[test]
    fn full_65535_window_hands_out_each_id_once_and_reuses_freed_ones() {
        let mut w = Inflight::new(u16::MAX);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..u16::MAX {
            assert!(seen.insert(w.insert(delivery(QoS::ExactlyOnce, b"m"))));
        }
        assert!(!w.has_room());
        let freed = PacketId::new(40_000).expect("non-zero");
        assert!(w.pubrec(freed, true), "a failed PUBREC ends the exchange");
        assert_eq!(w.insert(delivery(QoS::AtLeastOnce, b"n")), freed);
        assert!(w.puback(freed));
        assert_eq!(w.insert(delivery(QoS::AtLeastOnce, b"o")), freed);
        let dropped = PacketId::new(7).expect("non-zero");
        w.retain(|id, _| id != dropped);
        assert_eq!(w.insert(delivery(QoS::AtLeastOnce, b"p")), dropped);
        assert_eq!(w.len(), usize::from(u16::MAX));
    }
}
