//! Inbound QoS 2: the packet ids of PUBLISHes received and routed, awaiting PUBREL. A
//! PUBLISH re-sent with one of these ids is acknowledged again but not routed again
//! (exactly once), and these count against the Receive Maximum the broker announced.

use rustc_hash::FxHashSet;

use crate::protocol::PacketId;

#[derive(Debug, Default)]
pub struct InboundQos2 {
    awaiting_rel: FxHashSet<PacketId>,
}

impl InboundQos2 {
    /// A QoS 2 PUBLISH with `id` arrived: true if it is new (route it), false if it is a
    /// re-send of one already routed.
    pub fn receive(&mut self, id: PacketId) -> bool {
        self.awaiting_rel.insert(id)
    }

    pub fn contains(&self, id: PacketId) -> bool {
        self.awaiting_rel.contains(&id)
    }

    /// PUBREL: true if `id` was awaiting it.
    pub fn release(&mut self, id: PacketId) -> bool {
        self.awaiting_rel.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.awaiting_rel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.awaiting_rel.is_empty()
    }

    pub fn clear(&mut self) {
        self.awaiting_rel.clear();
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
