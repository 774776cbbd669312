//! Inbound QoS 2: the packet ids of PUBLISHes received and routed, awaiting PUBREL. A
//! PUBLISH re-sent with one of these ids is acknowledged again but not routed again
//! (exactly once), and these count against the Receive Maximum the broker announced.

use rustc_hash::FxHashSet;

use crate::protocol::PacketId;

#[derive(Debug, Default)]
pub struct InboundQos2 {
    /// Allocated by the first QoS 2 PUBLISH: an empty set costs 32 B in every session, and
    /// most clients never publish at QoS 2.
    awaiting_rel: Option<Box<FxHashSet<PacketId>>>,
}

impl InboundQos2 {
    /// A QoS 2 PUBLISH with `id` arrived: true if it is new (route it), false if it is a
    /// re-send of one already routed.
    pub fn receive(&mut self, id: PacketId) -> bool {
        self.awaiting_rel
            .get_or_insert_with(Box::default)
            .insert(id)
    }

    pub fn contains(&self, id: PacketId) -> bool {
        self.awaiting_rel
            .as_ref()
            .is_some_and(|ids| ids.contains(&id))
    }

    /// PUBREL: true if `id` was awaiting it.
    pub fn release(&mut self, id: PacketId) -> bool {
        self.awaiting_rel
            .as_mut()
            .is_some_and(|ids| ids.remove(&id))
    }

    pub fn len(&self) -> usize {
        self.awaiting_rel.as_ref().map_or(0, |ids| ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every id, and the memory that held them.
    pub fn clear(&mut self) {
        self.awaiting_rel = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resent_id_is_not_new_until_released() {
        let id = PacketId::new(7).expect("valid");
        let mut q = InboundQos2::default();
        assert!(q.receive(id));
        assert!(!q.receive(id));
        assert_eq!(q.len(), 1);
        assert!(q.release(id));
        assert!(!q.release(id));
        assert!(q.receive(id), "after PUBREL the id starts a new message");
    }
}
