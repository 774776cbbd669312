//! Executor-local wake-ups without timers: each client task owns a slot; the core's control
//! task sets flags on slots (run, ping, stop) and wakes exactly the tasks that wait on them.
//! One waker per slot, replaced on every poll, so memory never grows with the number of polls.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

pub const RUN: u8 = 1;
pub const PING: u8 = 2;
pub const STOP: u8 = 4;
/// Test hook: this client disconnects now, as a crashed subscriber would.
pub const DROP: u8 = 8;
/// Deliveries arrived: a publisher held back by the outstanding limit may send again.
pub const FLOW: u8 = 16;

#[derive(Default)]
struct Slot {
    flags: u8,
    waker: Option<Waker>,
}

#[derive(Default)]
pub struct Slots {
    slots: RefCell<Vec<Slot>>,
}

impl Slots {
    pub fn with_len(n: usize) -> Slots {
        Slots {
            slots: RefCell::new((0..n).map(|_| Slot::default()).collect()),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `flags` on `slot` and wakes its task if it waits.
    pub fn raise(&self, slot: usize, flags: u8) {
        let waker = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot];
            s.flags |= flags;
            s.waker.take()
        };
        // Woken outside the borrow: a waker may run code that touches the slots again.
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the flags raised on `slot` so far (0 if none), without waiting.
    pub fn take(&self, slot: usize) -> u8 {
        std::mem::take(&mut self.slots.borrow_mut()[slot].flags)
    }

    /// Waits until some flag is raised on `slot`, and takes them.
    pub fn wait(&self, slot: usize) -> SlotWait<'_> {
        SlotWait { slots: self, slot }
    }
}

pub struct SlotWait<'a> {
    slots: &'a Slots,
    slot: usize,
}

impl Future for SlotWait<'_> {
    type Output = u8;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
        let mut slots = self.slots.slots.borrow_mut();
        let s = &mut slots[self.slot];
        if s.flags != 0 {
            return Poll::Ready(std::mem::take(&mut s.flags));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn raise_wakes_only_the_waiting_slot_and_flags_accumulate() {
        let slots = Slots::with_len(2);
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = slots.wait(0);
        assert_eq!(Pin::new(&mut wait).poll(&mut cx), Poll::Pending);
        slots.raise(1, PING);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "slot 1 has no waiter");
        slots.raise(0, RUN);
        slots.raise(0, STOP);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut wait).poll(&mut cx), Poll::Ready(RUN | STOP));
        assert_eq!(slots.take(0), 0);
        assert_eq!(slots.take(1), PING);
    }
}
