//! Messages waiting for a session beyond its inflight window (or while it is offline),
//! bounded in count and payload bytes. Under pressure QoS 0 is shed first: a QoS 1/2
//! message arriving at a full queue evicts the oldest QoS 0 one if there is any.

use std::collections::VecDeque;

use crate::protocol::QoS;

use super::Delivery;

/// A drained queue keeps its slots up to this many (a reconnecting or briefly slow
/// subscriber reuses them); beyond it the memory goes back.
const DRAINED_CAPACITY_KEPT: usize = 16;

/// What `push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Queued, after dropping the oldest QoS 0 message to make room.
    QueuedShedQos0,
    /// Not queued: the queue is full (count or bytes).
    Dropped,
}

#[derive(Debug)]
pub struct Queue {
    /// Allocated by the first push: most sessions never queue, and an empty deque and its
    /// byte count cost 40 B in every one of them.
    items: Option<Box<Items>>,
    max_count: u32,
    max_bytes: u64,
}

#[derive(Debug, Default)]
struct Items {
    deliveries: VecDeque<Delivery>,
    /// The payload bytes of `deliveries`.
    bytes: u64,
}

impl Queue {
    pub fn new(max_count: u32, max_bytes: u64) -> Queue {
        Queue {
            items: None,
            max_count,
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.items
            .as_ref()
            .map_or(0, |items| items.deliveries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        self.items.as_ref().map_or(0, |items| items.bytes)
    }

    /// Appends `delivery` if it fits, shedding queued QoS 0 messages for a QoS 1/2 one.
    pub fn push(&mut self, delivery: Delivery) -> Enqueued {
        let size = delivery.payload_len_bytes();
        if size > self.max_bytes {
            return Enqueued::Dropped;
        }
        if self.fits(size) {
            self.push_back(delivery, size);
            return Enqueued::Queued;
        }
        if delivery.qos == QoS::AtMostOnce {
            return Enqueued::Dropped;
        }
        // Shed QoS 0, oldest first, until the QoS 1/2 message fits.
        let mut shed = false;
        while !self.fits(size) {
            let Some(items) = self.items.as_deref_mut() else {
                break;
            };
            let Some(i) = items
                .deliveries
                .iter()
                .position(|d| d.qos == QoS::AtMostOnce)
            else {
                break;
            };
            if let Some(old) = items.deliveries.remove(i) {
                items.bytes -= old.payload_len_bytes();
                shed = true;
            }
        }
        if self.fits(size) {
            self.push_back(delivery, size);
            return if shed {
                Enqueued::QueuedShedQos0
            } else {
                Enqueued::Queued
            };
        }
        Enqueued::Dropped
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        let items = self.items.as_deref_mut()?;
        let delivery = items.deliveries.pop_front()?;
        items.bytes -= delivery.payload_len_bytes();
        if items.deliveries.is_empty() && items.deliveries.capacity() > DRAINED_CAPACITY_KEPT {
            // A burst's worth of slots is not kept by a session that has caught up.
            debug_assert_eq!(items.bytes, 0);
            self.items = None;
        }
        Some(delivery)
    }

    pub fn clear(&mut self) {
        self.items = None;
    }

    fn fits(&self, size: u64) -> bool {
        self.len() < self.max_count as usize && self.bytes() + size <= self.max_bytes
    }

    fn push_back(&mut self, delivery: Delivery, size: u64) {
        let items = self.items.get_or_insert_with(Box::default);
        items.bytes += size;
        items.deliveries.push_back(delivery);
        debug_assert!(items.deliveries.len() <= self.max_count as usize);
        debug_assert!(items.bytes <= self.max_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::inflight::tests::delivery;

    #[test]
    fn count_limit_drops_and_fifo_order_is_kept() {
        let mut q = Queue::new(2, 1000);
        assert_eq!(q.push(delivery(QoS::AtLeastOnce, b"1")), Enqueued::Queued);
        assert_eq!(q.push(delivery(QoS::AtLeastOnce, b"2")), Enqueued::Queued);
        assert_eq!(q.push(delivery(QoS::AtLeastOnce, b"3")), Enqueued::Dropped);
        assert_eq!(
            q.pop().map(|d| d.message.publish.payload.clone()),
            Some("1".into())
        );
        assert_eq!(
            q.pop().map(|d| d.message.publish.payload.clone()),
            Some("2".into())
        );
        assert!(q.pop().is_none());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn byte_limit_counts_payloads() {
        let mut q = Queue::new(100, 5);
        assert_eq!(q.push(delivery(QoS::AtLeastOnce, b"abc")), Enqueued::Queued);
        assert_eq!(
            q.push(delivery(QoS::AtLeastOnce, b"abc")),
            Enqueued::Dropped
        );
        assert_eq!(q.push(delivery(QoS::AtLeastOnce, b"ab")), Enqueued::Queued);
        assert_eq!(q.bytes(), 5);
        assert_eq!(
            q.push(delivery(QoS::AtLeastOnce, b"abcdef")),
            Enqueued::Dropped
        );
    }

    #[test]
    fn qos0_is_shed_first_for_qos1() {
        let mut q = Queue::new(2, 1000);
        q.push(delivery(QoS::AtMostOnce, b"zero"));
        q.push(delivery(QoS::AtLeastOnce, b"one"));
        assert_eq!(q.push(delivery(QoS::AtMostOnce, b"z2")), Enqueued::Dropped);
        assert_eq!(
            q.push(delivery(QoS::ExactlyOnce, b"two")),
            Enqueued::QueuedShedQos0
        );
        let left: Vec<_> = std::iter::from_fn(|| q.pop()).map(|d| d.qos).collect();
        assert_eq!(left, vec![QoS::AtLeastOnce, QoS::ExactlyOnce]);
    }
}
