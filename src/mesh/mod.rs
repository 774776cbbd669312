//! Cross-shard messaging: one bounded single-producer/single-consumer queue per ordered
//! pair of shards (`crossbeam-channel`, bounded), carrying *batches*: everything one shard
//! produces for another during an executor turn travels as one `Vec`, so one push and at
//! most one wake-up per batch.
//!
//! Wake-ups: each shard has a [`Doorbell`], an eventfd registered in its epoll and the
//! `parked` flag its executor sets before it blocks. A producer rings only a parked
//! consumer (push, SeqCst fence, read `parked`; the consumer sets `parked`, fences, then
//! looks at its queues: one of the two sees the other), so a busy consumer costs the
//! producer no syscall; the consumer's executor finds the batches by asking
//! [`Inbound::wake_if_pending`] every turn.
//!
//! A full queue never blocks an executor (two shards sending to each other would
//! deadlock): the batch waits in a local backlog, in order, and is retried. Beyond
//! `limits.mesh_backlog_messages` queued messages, sheddable messages (QoS 0 publishes)
//! are dropped and counted; the rest are kept and counted as over the limit.
//!
//! What cannot be shed is bounded by pushing back: while the backlog is at its limit the
//! mesh says so ([`Mesh::pushing_back`]) and the shard stops reading from its connections,
//! so TCP slows the publishers instead of the backlog growing without bound. Reading
//! resumes once the backlog is down to half the limit (so it does not flap per batch).
//! A shard waiting for that sets its doorbell's `waiting_room` flag; the peers taking its
//! messages ring it (if parked), with the same fences as a push.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::router::ShardId;
use crate::shard::exec;

#[cfg(test)]
mod bench;

/// Batches one queue holds before the sender spills into its backlog. Each batch is a
/// turn's worth of messages, so this bounds memory by turns, not by messages.
pub const QUEUE_BATCHES: usize = 1024;

/// Batches the receiving shard takes per link before it lets its other tasks run.
const RECEIVE_BUDGET_BATCHES: usize = 64;

/// How long a shard waiting for room (a full queue, or pushing back) waits at most
/// before it retries on its own. Peers ring it when they take its messages; this only
/// covers a peer that has stopped and will never take them.
const ROOM_RETRY: Duration = Duration::from_millis(100);

/// How another thread wakes a parked shard: its executor's `parked` flag and an eventfd
/// in its epoll.
#[derive(Debug)]
pub struct Doorbell {
    parked: Arc<AtomicBool>,
    /// Set while the shard waits for its peers to take its messages (see
    /// [`Mesh::wake_if_room`]): only then does taking them ring it.
    waiting_room: AtomicBool,
    eventfd: OwnedFd,
}

impl Doorbell {
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes an initial count and flags and touches no memory of ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Doorbell {
            parked: Arc::new(AtomicBool::new(false)),
            waiting_room: AtomicBool::new(false),
            // SAFETY: a fresh descriptor from the kernel that nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The flag the shard's executor sets while it may block.
    pub fn parked(&self) -> Arc<AtomicBool> {
        self.parked.clone()
    }

    /// The eventfd, to register (edge-triggered) in the shard's epoll. Nobody reads it:
    /// every write raises a new edge, which is all a ring has to do (its count would
    /// overflow after 2^64 rings).
    pub fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Rings if the shard waits for room and is parked. Call after the count-down it
    /// announces.
    pub fn ring_if_waiting_room(&self) -> bool {
        fence(Ordering::SeqCst);
        self.waiting_room.load(Ordering::Relaxed) && self.ring_if_parked()
    }

    /// Rings if the shard is parked (or about to be). Call after the push it announces.
    pub fn ring_if_parked(&self) -> bool {
        fence(Ordering::SeqCst);
        if !self.parked.load(Ordering::Relaxed) {
            return false;
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: write(2) reads the 8 bytes of `one`, which lives across the call.
        let n = unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
        // EAGAIN only if the count were at its maximum: the shard is being woken anyway.
        let _ = n;
        true
    }
}

/// One shard's unconnected ends of the mesh: a sender to and a receiver from every peer.
pub struct MeshLinks<T: Send + 'static> {
    shard: ShardId,
    senders: Vec<Option<Link<T>>>,
    receivers: Vec<Option<Receiver<Vec<T>>>>,
    /// This shard's doorbell (its peers hold it too).
    doorbell: Arc<Doorbell>,
    /// Per link: messages sent and not yet taken by the receiver (shared by both ends).
    unreceived_from: Vec<Option<Upstream>>,
}

/// What a receiving shard knows of a sender: the count of its messages not yet taken,
/// and its doorbell, rung when it waits for that count to fall.
struct Upstream {
    unreceived: Arc<AtomicU64>,
    doorbell: Arc<Doorbell>,
}

/// A sending end: the queue, the receiver's doorbell, and the count of messages in it.
struct Link<T> {
    tx: Sender<Vec<T>>,
    doorbell: Arc<Doorbell>,
    unreceived: Arc<AtomicU64>,
}

impl<T: Send + 'static> std::fmt::Debug for MeshLinks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshLinks")
            .field("shard", &self.shard)
            .finish()
    }
}

impl<T: Send + 'static> MeshLinks<T> {
    /// This shard's doorbell: its executor uses the `parked` flag, its epoll the eventfd.
    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }
}

/// Creates the full mesh for `shard_count` shards; element `i` goes to shard `i`'s thread.
pub fn links<T: Send + 'static>(
    shard_count: u16,
    queue_batches: usize,
) -> io::Result<Vec<MeshLinks<T>>> {
    let n = usize::from(shard_count);
    let mut all = Vec::with_capacity(n);
    for i in 0..shard_count {
        all.push(MeshLinks {
            shard: ShardId(i),
            senders: (0..n).map(|_| None).collect(),
            receivers: (0..n).map(|_| None).collect(),
            doorbell: Arc::new(Doorbell::new()?),
            unreceived_from: (0..n).map(|_| None).collect(),
        });
    }
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = crossbeam_channel::bounded(queue_batches);
                let unreceived = Arc::new(AtomicU64::new(0));
                let doorbell = all[to].doorbell.clone();
                all[from].senders[to] = Some(Link {
                    tx,
                    doorbell,
                    unreceived: unreceived.clone(),
                });
                all[to].receivers[from] = Some(rx);
                let upstream = all[from].doorbell.clone();
                all[to].unreceived_from[from] = Some(Upstream {
                    unreceived,
                    doorbell: upstream,
                });
            }
        }
    }
    Ok(all)
}

/// Counters of one shard's outgoing mesh traffic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MeshStats {
    pub messages_sent_count: u64,
    pub batches_sent_count: u64,
    /// Messages waiting in backlogs now.
    pub backlog_messages: u64,
    /// QoS 0 messages dropped because a backlog was at its limit.
    pub shed_count: u64,
    /// Unsheddable messages kept although the backlog was at its limit.
    pub over_limit_count: u64,
    /// Messages dropped because the receiving shard had stopped.
    pub closed_count: u64,
    /// Times the backlog reached its limit and reading from connections was paused.
    pub pushbacks_count: u64,
    /// Doorbells rung (the peer was parked).
    pub rings_count: u64,
}

/// One shard's receiving side: a queue from every peer, and the task that takes them.
pub struct Inbound<T: Send + 'static> {
    receivers: Vec<(ShardId, Receiver<Vec<T>>)>,
    /// The receiving task, parked while every queue was empty.
    waker: Cell<Option<Waker>>,
    /// Our own doorbell, held as long as we may be rung: closing its last descriptor
    /// would take it out of our epoll, ring pending or not (a peer that rings and then
    /// stops must not take its ring with it).
    _doorbell: Arc<Doorbell>,
}

impl<T: Send + 'static> std::fmt::Debug for Inbound<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("links", &self.receivers.len())
            .finish()
    }
}

impl<T: Send + 'static> Inbound<T> {
    /// Whether some peer's queue holds a batch.
    pub fn pending(&self) -> bool {
        self.receivers.iter().any(|(_, rx)| !rx.is_empty())
    }

    /// The executor's wake check: wakes the receiving task if a batch is waiting, and
    /// says whether one is.
    pub fn wake_if_pending(&self) -> bool {
        // No waker: the receiving task is queued or running and looks at the queues itself,
        // so a busy shard does not scan every peer's queue twice per turn.
        let Some(waker) = self.waker.take() else {
            return false;
        };
        if self.pending() {
            waker.wake();
            return true;
        }
        self.waker.set(Some(waker));
        false
    }

    /// Takes up to a budget of batches from every peer, in each peer's order, and hands
    /// each to `each`. Returns the number of batches taken.
    pub fn receive(&self, mut each: impl FnMut(ShardId, Vec<T>)) -> usize {
        let mut taken = 0;
        for (from, rx) in &self.receivers {
            for _ in 0..RECEIVE_BUDGET_BATCHES {
                match rx.try_recv() {
                    Ok(batch) => {
                        taken += 1;
                        each(*from, batch);
                    }
                    // A closed peer (stopped) sends nothing more; the shard is stopping.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        taken
    }

    /// Resolves once a batch is waiting (woken through [`Inbound::wake_if_pending`]).
    pub fn ready(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.pending() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    /// Takes batches for as long as the executor runs: `each` gets every batch, in order.
    pub async fn run(&self, mut each: impl FnMut(ShardId, Vec<T>)) {
        loop {
            if self.receive(&mut each) == 0 {
                self.ready().await;
            } else {
                exec::yield_now().await;
            }
        }
    }
}

/// One shard's sending side of the mesh.
pub struct Mesh<T: Send + 'static> {
    shard: ShardId,
    /// `None` for this shard itself and, after [`Mesh::close`], for every peer.
    senders: RefCell<Vec<Option<Link<T>>>>,
    /// Messages produced this turn, per destination.
    outbox: RefCell<Vec<Vec<T>>>,
    /// Batches a full queue refused, per destination, oldest first.
    backlog: RefCell<Vec<VecDeque<Vec<T>>>>,
    backlog_limit_messages: u64,
    /// Per source: messages sent here and not yet taken (we count them down).
    unreceived_from: Vec<Option<Upstream>>,
    /// This shard's doorbell (its `waiting_room` flag is ours to set).
    doorbell: Arc<Doorbell>,
    /// Messages our peers had not taken at the last flush: the flusher waits for less.
    unreceived_at_flush: Cell<u64>,
    /// The flusher, waiting for room.
    room_waker: Cell<Option<Waker>>,
    sheddable: fn(&T) -> bool,
    flush_pending: Cell<bool>,
    flusher: Cell<Option<Waker>>,
    /// The backlog reached its limit and has not yet fallen to half of it.
    pushing_back: Cell<bool>,
    /// Bumped each time pushing back ends, so a reader knows whether its waker was used.
    resume_epoch: Cell<u64>,
    /// Tasks waiting for pushing back to end.
    room_waiters: RefCell<Vec<Waker>>,
    stats: RefCell<MeshStats>,
}

impl<T: Send + 'static> std::fmt::Debug for Mesh<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("shard", &self.shard)
            .field("stats", &self.stats.borrow())
            .finish()
    }
}

impl<T: Send + 'static> Mesh<T> {
    /// This shard's ends: the sending mesh and the receiving side.
    pub fn new(
        links: MeshLinks<T>,
        backlog_limit_messages: u32,
        sheddable: fn(&T) -> bool,
    ) -> (Mesh<T>, Inbound<T>) {
        let MeshLinks {
            shard,
            senders,
            receivers,
            doorbell,
            unreceived_from,
        } = links;
        let n = senders.len();
        let inbound = Inbound {
            receivers: receivers
                .into_iter()
                .enumerate()
                .filter_map(|(i, rx)| {
                    let from = u16::try_from(i).expect("shard indices fit u16: links() made them");
                    rx.map(|rx| (ShardId(from), rx))
                })
                .collect(),
            waker: Cell::new(None),
            _doorbell: doorbell.clone(),
        };
        let mesh = Mesh {
            shard,
            senders: RefCell::new(senders),
            outbox: RefCell::new((0..n).map(|_| Vec::new()).collect()),
            backlog: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
            backlog_limit_messages: u64::from(backlog_limit_messages),
            unreceived_from,
            doorbell,
            unreceived_at_flush: Cell::new(0),
            room_waker: Cell::new(None),
            sheddable,
            flush_pending: Cell::new(false),
            flusher: Cell::new(None),
            pushing_back: Cell::new(false),
            resume_epoch: Cell::new(0),
            room_waiters: RefCell::new(Vec::new()),
            stats: RefCell::new(MeshStats::default()),
        };
        (mesh, inbound)
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Queues `msg` for shard `to`; it leaves with this turn's batch.
    pub fn push(&self, to: ShardId, msg: T) {
        let to = usize::from(to.0);
        debug_assert!(
            to != usize::from(self.shard.0),
            "a shard never messages itself"
        );
        let mut outbox = self.outbox.borrow_mut();
        let Some(slot) = outbox.get_mut(to) else {
            debug_assert!(false, "mesh message to shard {to}, which does not exist");
            return;
        };
        slot.push(msg);
        if !self.flush_pending.replace(true) {
            // A flusher waiting for room for one peer flushes this turn's batches for the
            // others at once, instead of when the slow peer has taken something.
            if let Some(w) = self.flusher.take().or_else(|| self.room_waker.take()) {
                w.wake();
            }
        }
    }

    pub fn stats(&self) -> MeshStats {
        self.stats.borrow().clone()
    }

    /// The receiving shard has handled `messages_count` messages from `from`: they no
    /// longer count against `from`'s backlog.
    pub fn taken(&self, from: ShardId, messages_count: usize) {
        if let Some(Some(upstream)) = self.unreceived_from.get(usize::from(from.0)) {
            let before = upstream
                .unreceived
                .fetch_sub(messages_count as u64, Ordering::Relaxed);
            debug_assert!(before >= messages_count as u64, "took more than was sent");
            // A sender waiting for room is told; one that is not costs a fence, no syscall.
            upstream.doorbell.ring_if_waiting_room();
        }
    }

    /// Messages sent to other shards and not yet taken by them.
    fn unreceived_messages(&self) -> u64 {
        self.senders
            .borrow()
            .iter()
            .flatten()
            .map(|l| l.unreceived.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether the shard should stop reading from its connections: the backlog of
    /// messages other shards have not yet taken is at its limit.
    pub fn pushing_back(&self) -> bool {
        self.pushing_back.get()
    }

    /// Which pushing-back episode is current: a reader that registered in an earlier one
    /// had its waker used and must register again.
    pub fn resume_epoch(&self) -> u64 {
        self.resume_epoch.get()
    }

    /// Wakes `waker` when pushing back ends. Register once per episode
    /// ([`Mesh::resume_epoch`]): every waker is kept until then.
    pub fn wake_on_room(&self, waker: &Waker) {
        self.room_waiters.borrow_mut().push(waker.clone());
    }

    /// Starts or ends pushing back after a flush left `backlog_messages` held (in the
    /// backlog and in peers' queues).
    fn update_pushback(&self, backlog_messages: u64, stats: &mut MeshStats) {
        if !self.pushing_back.get() {
            if backlog_messages >= self.backlog_limit_messages {
                self.pushing_back.set(true);
                stats.pushbacks_count += 1;
            }
        } else if backlog_messages <= self.backlog_limit_messages / 2 {
            self.pushing_back.set(false);
            self.resume_epoch
                .set(self.resume_epoch.get().wrapping_add(1));
            let waiters = std::mem::take(&mut *self.room_waiters.borrow_mut());
            for w in waiters {
                w.wake();
            }
        }
    }

    /// Moves this turn's batches and any backlog into the queues, as far as they have room,
    /// and rings the doorbell of each parked peer that got a batch. Returns whether some
    /// backlog remains.
    pub fn flush(&self) -> bool {
        self.flush_pending.set(false);
        let mut outbox = self.outbox.borrow_mut();
        let mut backlog = self.backlog.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        let mut remaining = false;
        let senders = self.senders.borrow();
        for (to, link) in senders.iter().enumerate() {
            let queued = &mut backlog[to];
            let Some(link) = link else {
                // Closed (or ourselves): what was meant for it is dropped and counted.
                let dropped: usize =
                    outbox[to].drain(..).count() + queued.drain(..).map(|b| b.len()).sum::<usize>();
                stats.closed_count += dropped as u64;
                continue;
            };
            if !outbox[to].is_empty() {
                // Behind any backlog, so a pair's messages stay in order.
                queued.push_back(std::mem::take(&mut outbox[to]));
            }
            let mut sent = false;
            while let Some(batch) = queued.pop_front() {
                let len = batch.len() as u64;
                // Counted before the send: the peer may take the batch and count it down
                // before `try_send` even returns.
                link.unreceived.fetch_add(len, Ordering::Relaxed);
                match link.tx.try_send(batch) {
                    Ok(()) => {
                        stats.messages_sent_count += len;
                        stats.batches_sent_count += 1;
                        sent = true;
                    }
                    Err(TrySendError::Full(batch)) => {
                        link.unreceived.fetch_sub(len, Ordering::Relaxed);
                        queued.push_front(batch);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        link.unreceived.fetch_sub(len, Ordering::Relaxed);
                        stats.closed_count += len;
                    }
                }
            }
            if sent && link.doorbell.ring_if_parked() {
                stats.rings_count += 1;
            }
            if !queued.is_empty() {
                remaining = true;
            }
        }
        drop(senders);
        let waiting: u64 = backlog.iter().flatten().map(|b| b.len() as u64).sum();
        if waiting > self.backlog_limit_messages {
            self.shed(&mut backlog, &mut stats, waiting);
        }
        stats.backlog_messages = backlog.iter().flatten().map(|b| b.len() as u64).sum();
        // What a slow peer has not taken counts too: its queue holds batches, not messages,
        // so 1,024 large batches can hide millions of messages from the backlog.
        let unreceived = self.unreceived_messages();
        self.unreceived_at_flush.set(unreceived);
        let held = stats.backlog_messages + unreceived;
        self.update_pushback(held, &mut stats);
        remaining
    }

    /// The executor's wake check of a shard with this mesh and `inbound`: wakes the task
    /// that has work from another thread (batches to take, room for ours), and says whether
    /// there was any.
    pub fn wake_check(self: &Rc<Self>, inbound: &Rc<Inbound<T>>) -> exec::WakeCheck {
        let (mesh, inbound) = (self.clone(), inbound.clone());
        Box::new(move || {
            // Both, always: each may have a task to wake.
            let received = inbound.wake_if_pending();
            let room = mesh.wake_if_room();
            received || room
        })
    }

    /// The executor's wake check for the sending side: wakes the flusher waiting for room
    /// once peers have taken some of our messages, and says whether it did.
    pub fn wake_if_room(&self) -> bool {
        let Some(waker) = self.room_waker.take() else {
            return false;
        };
        if self.unreceived_messages() < self.unreceived_at_flush.get() {
            waker.wake();
            return true;
        }
        self.room_waker.set(Some(waker));
        false
    }

    /// Resolves once peers have taken some of what they had not at the last flush (or
    /// after [`ROOM_RETRY`]).
    async fn room(&self) {
        // Set before looking at the counts: a peer counting down after our look sees the
        // flag and rings (both sides fence between their store and their load).
        self.doorbell.waiting_room.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let taken = std::future::poll_fn(|cx| {
            if self.flush_pending.get()
                || self.unreceived_messages() < self.unreceived_at_flush.get()
            {
                Poll::Ready(())
            } else {
                self.room_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        });
        futures_lite::future::or(taken, exec::sleep(ROOM_RETRY)).await;
        self.room_waker.set(None);
        self.doorbell.waiting_room.store(false, Ordering::Relaxed);
    }

    /// The backlog is over its limit: drop sheddable messages, newest first, until it is
    /// not; what cannot be shed stays and is counted.
    fn shed(&self, backlog: &mut [VecDeque<Vec<T>>], stats: &mut MeshStats, mut waiting: u64) {
        'outer: for queue in backlog.iter_mut() {
            for batch in queue.iter_mut().rev() {
                let before = batch.len() as u64;
                let excess = waiting.saturating_sub(self.backlog_limit_messages);
                if excess == 0 {
                    break 'outer;
                }
                let mut dropped = 0;
                batch.retain(|m| {
                    if dropped < excess && (self.sheddable)(m) {
                        dropped += 1;
                        false
                    } else {
                        true
                    }
                });
                debug_assert_eq!(before - batch.len() as u64, dropped);
                stats.shed_count += dropped;
                waiting -= dropped;
            }
            queue.retain(|b| !b.is_empty());
        }
        if waiting > self.backlog_limit_messages {
            stats.over_limit_count += waiting - self.backlog_limit_messages;
        }
    }

    /// The flusher: runs after the tasks that pushed this turn (the executor runs woken
    /// tasks in order), so one turn's messages leave as one batch per destination.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            WaitFlush { mesh: &self }.await;
            // While pushing back, nothing new is pushed: keep checking whether the peers
            // have caught up, or readers would never resume. Peers taking our messages
            // ring us.
            while self.flush() || self.pushing_back() {
                self.room().await;
            }
        }
    }

    /// Closes every sending end, so peers' receivers end; later messages are dropped and
    /// counted as closed.
    pub fn close(&self) {
        let mut senders = self.senders.borrow_mut();
        for link in senders.iter_mut().filter_map(Option::take) {
            // A receiver parked on an empty queue learns of the close from a ring.
            link.doorbell.ring_if_parked();
        }
    }
}

/// Resolves when something was pushed since the last flush.
struct WaitFlush<'a, T: Send + 'static> {
    mesh: &'a Mesh<T>,
}

impl<T: Send + 'static> Future for WaitFlush<'_, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.mesh.flush_pending.get() {
            Poll::Ready(())
        } else {
            self.mesh.flusher.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::exec::{self, Executor};
    use crate::shard::readiness::Readiness;

    fn qos0(m: &u32) -> bool {
        m % 2 == 0
    }

    /// Runs `f` as the main task of a shard-like thread: its own epoll with the doorbell
    /// of `links` registered, an executor, and the wake check on its inbound side.
    fn shard<T: Send + 'static, R: Send + 'static, Fut: Future<Output = R> + 'static>(
        links: MeshLinks<T>,
        backlog: u32,
        sheddable: fn(&T) -> bool,
        f: impl FnOnce(Rc<Mesh<T>>, Rc<Inbound<T>>) -> Fut + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        std::thread::spawn(move || {
            let readiness = Rc::new(Readiness::new(4).unwrap());
            readiness.register(links.doorbell().fd()).unwrap();
            let parked = links.doorbell().parked();
            let executor = Executor::new(readiness, Duration::ZERO, parked);
            executor.run(async move {
                let (mesh, inbound) = Mesh::new(links, backlog, sheddable);
                let (mesh, inbound) = (Rc::new(mesh), Rc::new(inbound));
                exec::set_wake_check(mesh.wake_check(&inbound));
                f(mesh, inbound).await
            })
        })
    }

    /// Two shards on threads: shard 0 sends 10,000 numbered messages; shard 1 gets them
    /// all, in order, in far fewer batches than messages.
    #[test]
    fn pair_delivers_in_order_in_batches() {
        let mut links = links::<u32>(2, 4).unwrap();
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let sender = shard(l0, 1_000_000, qos0, |mesh, _| async move {
            exec::spawn(mesh.clone().run_flusher());
            for round in 0..100u32 {
                for i in 0..100u32 {
                    mesh.push(ShardId(1), round * 100 + i);
                }
                exec::yield_now().await;
                exec::yield_now().await;
            }
            while mesh.flush() {
                exec::sleep(Duration::from_millis(1)).await;
            }
            let stats = mesh.stats();
            mesh.close();
            stats
        });
        let receiver = shard(l1, 1_000_000, qos0, |_, inbound| async move {
            let mut got = Vec::new();
            let mut batches = 0;
            while got.len() < 10_000 {
                inbound.ready().await;
                inbound.receive(|from, batch| {
                    assert_eq!(from, ShardId(0));
                    batches += 1;
                    got.extend(batch);
                });
            }
            (got, batches)
        });
        let stats = sender.join().unwrap();
        let (got, batches) = receiver.join().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<u32>>());
        assert_eq!(stats.messages_sent_count, 10_000);
        assert!(batches <= 200, "{batches} batches for 10,000 messages");
        assert_eq!(stats.shed_count, 0);
    }

    /// Nobody drains shard 1's queue: shard 0's backlog fills to its limit, then sheds
    /// only sheddable (even) messages and keeps the odd ones, counting both. (No
    /// executor needed: pushing and flushing are plain calls.)
    #[test]
    fn full_queue_spills_then_sheds_only_sheddable() {
        let mut links = links::<u32>(2, 1).unwrap();
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let (_peer, _inbound1) = Mesh::new(l1, 10, qos0);
        let (mesh, _inbound) = Mesh::new(l0, 10, qos0);
        // First batch fills the one-slot queue.
        mesh.push(ShardId(1), 1);
        assert!(!mesh.flush());
        // 40 more: 20 odd (kept) and 20 even (shed down to the limit).
        for i in 0..40u32 {
            mesh.push(ShardId(1), i);
            mesh.flush();
        }
        let stats = mesh.stats();
        assert_eq!(stats.messages_sent_count, 1);
        // 40 waiting over a limit of 10: every even one goes, 20 odd ones stay.
        assert_eq!(stats.shed_count, 20);
        assert_eq!(stats.backlog_messages, 20);
        assert!(stats.over_limit_count > 0);
    }

    /// A producer rings only a parked peer: a busy (not parked) one costs no syscall.
    #[test]
    fn rings_only_a_parked_peer() {
        let mut links = links::<u32>(2, 8).unwrap();
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let parked = l1.doorbell().parked();
        let (_peer, inbound) = Mesh::new(l1, 10, qos0);
        let (mesh, _) = Mesh::new(l0, 10, qos0);
        mesh.push(ShardId(1), 1);
        mesh.flush();
        assert_eq!(mesh.stats().rings_count, 0, "not parked: not rung");
        parked.store(true, Ordering::Relaxed);
        mesh.push(ShardId(1), 2);
        mesh.flush();
        assert_eq!(mesh.stats().rings_count, 1, "parked: rung");
        let mut got = Vec::new();
        inbound.receive(|_, b| got.extend(b));
        assert_eq!(got, vec![1, 2]);
    }

    /// Unsheddable messages to a peer that does not take them: once the backlog and the
    /// peer's queue hold the limit, the mesh pushes back and keeps a reader's waker; when
    /// the peer takes them, pushing back ends (at half the limit) and the reader is woken.
    #[test]
    fn pushes_back_until_the_peer_takes_its_messages() {
        fn never(_: &u32) -> bool {
            false
        }
        let mut links = links::<u32>(2, 2).unwrap();
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let (full_tx, full_rx) = std::sync::mpsc::channel::<()>();
        let receiver = shard(l1, 10, never, move |mesh, inbound| async move {
            // Take nothing until the sender has seen the pushback.
            while full_rx.try_recv().is_err() {
                exec::sleep(Duration::from_millis(1)).await;
            }
            let mut got = Vec::new();
            while got.len() < 11 {
                inbound.ready().await;
                inbound.receive(|from, batch| {
                    let count = batch.len();
                    got.extend(batch);
                    mesh.taken(from, count);
                });
            }
            got
        });
        let sender = shard(l0, 10, never, move |mesh, _| async move {
            // Two batches of 4 fill the two-slot queue: 8 held, under the limit.
            for batch in 0..2u32 {
                for i in 0..4 {
                    mesh.push(ShardId(1), batch * 4 + i);
                }
                assert!(!mesh.flush());
            }
            assert!(!mesh.pushing_back(), "8 held, limit 10");
            // Two more wait in the backlog: 10 held, at the limit.
            mesh.push(ShardId(1), 8);
            mesh.push(ShardId(1), 9);
            assert!(mesh.flush());
            assert!(mesh.pushing_back());
            let woken = Rc::new(Cell::new(false));
            let epoch = mesh.resume_epoch();
            let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
            {
                let (mesh, woken) = (mesh.clone(), woken.clone());
                exec::spawn(async move {
                    std::future::poll_fn(move |cx| {
                        if mesh.pushing_back() {
                            mesh.wake_on_room(cx.waker());
                            Poll::Pending
                        } else {
                            woken.set(true);
                            Poll::Ready(())
                        }
                    })
                    .await;
                    let _ = done_tx.send(());
                });
            }
            exec::yield_now().await;
            assert!(!woken.get(), "no room yet");
            let released = std::time::Instant::now();
            full_tx.send(()).unwrap();
            exec::spawn(mesh.clone().run_flusher());
            mesh.push(ShardId(1), 10);
            // Parked with no timer but the flusher's fallback: only a ring wakes us early.
            std::future::poll_fn(|cx| {
                if mesh.pushing_back() {
                    mesh.wake_on_room(cx.waker());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            exec::yield_now().await;
            done_rx.try_recv().expect("the reader was woken too");
            assert!(woken.get());
            // The peer rang when it took the messages: no wait for the fallback retry.
            let resumed_after = released.elapsed();
            assert!(
                resumed_after < ROOM_RETRY * 4 / 5,
                "resumed after {resumed_after:?}"
            );
            assert!(!mesh.pushing_back());
            assert_ne!(mesh.resume_epoch(), epoch, "a new episode after the resume");
            while mesh.flush() {
                exec::sleep(Duration::from_millis(1)).await;
            }
            let stats = mesh.stats();
            mesh.close();
            stats
        });
        let stats = sender.join().unwrap();
        let got = receiver.join().unwrap();
        // Pushing back drops nothing: every message arrives, in order.
        assert_eq!(got, (0..=10).collect::<Vec<u32>>());
        assert_eq!(stats.shed_count, 0);
        assert_eq!(stats.pushbacks_count, 1);
    }
}
