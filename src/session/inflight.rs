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
    /// Allocated by the first QoS 1/2 delivery and freed by `clear`: every session holds an
    /// `Inflight` and most idle ones never use it (an empty window inline cost 64 B more
    /// per session). Not freed when it drains: ping-pong QoS 1 traffic would then allocate
    /// once per message.
    state: Option<Box<Window>>,
}

#[derive(Debug, Default)]
struct Window {
    /// In send order, which is also `step` order.
    entries: VecDeque<Entry>,
    /// The ids in `entries`, kept only once an entry has outlived a whole lap of ids (so the
    /// next id may be one in use): then a free id is found without scanning the window. With
    /// `max_inflight_messages 0` the window is 65,535 and a scan per delivery made one busy
    /// subscriber cost a shard its whole core (the two-shard QoS 1 stall). Dropped when the
    /// window empties; while `None`, no id in use can come round again.
    used: Option<FxHashSet<PacketId>>,
    /// Steps taken through the id space so far: the next id is `id_at(next_step)`.
    next_step: u64,
}

#[derive(Debug)]
struct Entry {
    id: PacketId,
    /// When `id` was taken, counted in ids handed out or skipped: the ids of two entries can
    /// only be equal if their steps lie a multiple of `ID_LAP` apart.
    step: u64,
    state: InflightState,
}

/// Distinct packet identifiers (1 to 65535): `id_at` comes round to the same id after this
/// many steps.
const ID_LAP: u64 = u16::MAX as u64;

fn id_at(step: u64) -> PacketId {
    let id = u16::try_from(step % ID_LAP).expect("below 65535") + 1;
    PacketId::new(id).expect("1 to 65535")
}

impl Inflight {
    pub fn new(window: u16) -> Inflight {
        Inflight {
            window: window.max(1),
            state: None,
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
        self.state.as_ref().map_or(0, |w| w.entries.len())
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
        self.state
            .get_or_insert_with(Box::default)
            .insert_get(delivery)
    }

    /// PUBACK: true if `id` was a QoS 1 delivery awaiting it (now complete).
    pub fn puback(&mut self, id: PacketId) -> bool {
        self.state.as_deref_mut().is_some_and(|w| {
            w.remove_if(
                id,
                |state| matches!(state, InflightState::Published(d) if d.qos == QoS::AtLeastOnce),
            )
        })
    }

    /// PUBREC: a QoS 2 delivery moves to `Released` (true: send PUBREL). With an error
    /// reason the exchange ends there (`failed`) and the id is freed.
    pub fn pubrec(&mut self, id: PacketId, failed: bool) -> bool {
        let Some(w) = self.state.as_deref_mut() else {
            return false;
        };
        let Some(i) = w.position(id) else {
            return false;
        };
        match &w.entries[i].state {
            InflightState::Published(d) if d.qos == QoS::ExactlyOnce => {
                if failed {
                    w.remove_at(i);
                } else {
                    w.entries[i].state = InflightState::Released;
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
        self.state
            .as_deref_mut()
            .is_some_and(|w| w.remove_if(id, |state| matches!(state, InflightState::Released)))
    }

    /// Every entry, oldest first, for a resend after reconnection.
    pub fn iter(&self) -> impl Iterator<Item = (PacketId, &InflightState)> {
        self.state
            .iter()
            .flat_map(|w| w.entries.iter().map(|e| (e.id, &e.state)))
    }

    /// Keeps the entries for which `keep` says so, in order (resending after a reconnection
    /// visits each and may drop those that can no longer be sent).
    pub fn retain(&mut self, mut keep: impl FnMut(PacketId, &InflightState) -> bool) {
        let Some(w) = self.state.as_deref_mut() else {
            return;
        };
        w.entries.retain(|e| keep(e.id, &e.state));
        if let Some(used) = &mut w.used {
            *used = w.entries.iter().map(|e| e.id).collect();
        }
        w.forget_used_if_empty();
    }

    /// Drops every entry (the session was discarded), and the memory that held them.
    pub fn clear(&mut self) {
        self.state = None;
    }
}

impl Window {
    fn insert_get(&mut self, delivery: Delivery) -> (PacketId, &Delivery) {
        let mut step = self.next_step;
        let mut id = id_at(step);
        // Entries are in step order: if the oldest was taken less than a lap ago, every id
        // in use lies strictly between its step and this one, so `id` is free. The common
        // case; otherwise look the ids up (kept from now on until the window empties).
        if self
            .entries
            .front()
            .is_some_and(|oldest| step - oldest.step >= ID_LAP)
        {
            let entries = &self.entries;
            let used = self
                .used
                .get_or_insert_with(|| entries.iter().map(|e| e.id).collect());
            // At most `window` (< 65535) ids are in use, so a free one is always found.
            while used.contains(&id) {
                step += 1;
                id = id_at(step);
            }
        }
        if let Some(used) = &mut self.used {
            used.insert(id);
            debug_assert_eq!(used.len(), self.entries.len() + 1);
        }
        self.next_step = step + 1;
        self.entries.push_back(Entry {
            id,
            step,
            state: InflightState::Published(delivery),
        });
        match self.entries.back() {
            Some(Entry {
                state: InflightState::Published(stored),
                ..
            }) => (id, stored),
            _ => unreachable!("the entry was pushed just above"),
        }
    }

    fn position(&self, id: PacketId) -> Option<usize> {
        // Clients acknowledge in send order nearly always: the oldest entry first.
        if self.entries.front().is_some_and(|oldest| oldest.id == id) {
            return Some(0);
        }
        self.entries.iter().position(|e| e.id == id)
    }

    fn remove_if(&mut self, id: PacketId, test: impl Fn(&InflightState) -> bool) -> bool {
        match self.position(id) {
            Some(i) if test(&self.entries[i].state) => {
                self.remove_at(i);
                true
            }
            _ => false,
        }
    }

    fn remove_at(&mut self, i: usize) {
        let removed = if i == 0 {
            // In order: nothing behind it moves.
            self.entries.pop_front()
        } else {
            self.entries.remove(i)
        };
        if let (Some(used), Some(removed)) = (&mut self.used, removed) {
            used.remove(&removed.id);
            debug_assert_eq!(used.len(), self.entries.len());
        }
        self.forget_used_if_empty();
    }

    /// With no entry left, no id in use can come round again: the set is not needed.
    fn forget_used_if_empty(&mut self) {
        if self.entries.is_empty() && self.used.is_some() {
            self.used = None;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::{Publish, TopicName};
    use crate::session::Message;
    use bytes::Bytes;
    use std::sync::Arc;

    impl Inflight {
        /// The window's inner state, allocated if it was not yet.
        fn win(&mut self) -> &mut Window {
            self.state.get_or_insert_with(Box::default)
        }
    }

    /// An idle session's window costs only its own 16 B: nothing is allocated until the
    /// first QoS 1/2 delivery, and `clear` frees what was.
    #[test]
    fn an_unused_window_allocates_nothing() {
        assert_eq!(std::mem::size_of::<Inflight>(), 16);
        let mut w = Inflight::new(10);
        assert!(w.state.is_none() && w.is_empty() && w.has_room());
        assert!(!w.puback(PacketId::new(1).expect("non-zero")));
        w.retain(|_, _| true);
        assert!(w.state.is_none());
        let id = w.insert(delivery(QoS::AtLeastOnce, b"a"));
        assert!(w.state.is_some());
        assert!(w.puback(id));
        assert!(w.state.is_some(), "kept while the session lives");
        w.clear();
        assert!(w.state.is_none());
    }

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
        assert_eq!(w.iter().next().map(|e| e.1), Some(&InflightState::Released));
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
        let left: Vec<_> = w.iter().map(|(id, _)| id).collect();
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
        w.win().next_step = 65534;
        let a = w.insert(delivery(QoS::AtLeastOnce, b"a"));
        let b = w.insert(delivery(QoS::AtLeastOnce, b"b"));
        assert_eq!((a.get(), b.get()), (65535, 1));
        // A whole lap of ids later (as if 65,533 deliveries had come and gone meanwhile),
        // the next id would be `a`'s again.
        w.win().next_step = 65534 + ID_LAP;
        let c = w.insert(delivery(QoS::AtLeastOnce, b"c"));
        assert_eq!(c.get(), 2, "65535 and 1 are taken");
    }

    /// Deliveries acknowledged in order never need the id set; one left unacknowledged for
    /// a whole lap of ids makes the window look ids up, skipping it, until the window
    /// empties again.
    #[test]
    fn an_entry_outliving_a_lap_of_ids_is_skipped_and_in_order_acks_need_no_set() {
        let mut w = Inflight::new(10);
        let stuck = w.insert(delivery(QoS::AtLeastOnce, b"s"));
        for _ in 0..3 * ID_LAP {
            let id = w.insert(delivery(QoS::AtLeastOnce, b"m"));
            assert_ne!(id, stuck, "an id in use is never handed out twice");
            assert!(w.puback(id));
        }
        assert!(
            w.win().used.is_some(),
            "the stuck entry made the window track its ids"
        );
        assert_eq!(w.len(), 1);
        assert!(w.puback(stuck));
        assert!(w.win().used.is_none(), "an empty window forgets them");
        for _ in 0..2 * ID_LAP {
            let id = w.insert(delivery(QoS::AtLeastOnce, b"m"));
            assert!(w.puback(id));
            assert!(w.win().used.is_none());
        }
        // Out of order: the middle one first, then the rest; ids stay distinct throughout.
        let ids: Vec<_> = (0..3)
            .map(|_| w.insert(delivery(QoS::AtLeastOnce, b"o")))
            .collect();
        assert!(w.puback(ids[1]));
        assert!(!w.puback(ids[1]));
        assert!(w.puback(ids[0]) && w.puback(ids[2]));
        assert!(w.is_empty());
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
