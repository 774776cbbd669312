//! Cross-shard messaging: one bounded single-producer/single-consumer queue per ordered
//! pair of shards (glommio's `shared_channel`, which wakes a parked executor through its
//! eventfd), carrying *batches*: everything one shard produces for another during an
//! executor turn travels as one `Vec`, so one push and at most one wake-up per batch.
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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};
use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use glommio::{GlommioError, ResourceType};

use crate::router::ShardId;

#[cfg(test)]
mod bench;

/// Batches one queue holds before the sender spills into its backlog. Each batch is a
/// turn's worth of messages, so this bounds memory by turns, not by messages.
pub const QUEUE_BATCHES: usize = 1024;

/// How long a shard waits before retrying a backlog whose queue was full.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

/// One shard's unconnected ends of the mesh: a sender to and a receiver from every peer.
pub struct MeshLinks<T: Send + 'static> {
    shard: ShardId,
    senders: Vec<Option<SharedSender<Vec<T>>>>,
    receivers: Vec<Option<SharedReceiver<Vec<T>>>>,
    /// Per link: messages sent and not yet taken by the receiver (shared by both ends).
    unreceived_to: Vec<Option<Arc<AtomicU64>>>,
    unreceived_from: Vec<Option<Arc<AtomicU64>>>,
}

impl<T: Send + 'static> std::fmt::Debug for MeshLinks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshLinks")
            .field("shard", &self.shard)
            .finish()
    }
}

/// Creates the full mesh for `shard_count` shards; element `i` goes to shard `i`'s thread.
pub fn links<T: Send + 'static>(shard_count: u16, queue_batches: usize) -> Vec<MeshLinks<T>> {
    let n = usize::from(shard_count);
    let mut all: Vec<MeshLinks<T>> = (0..shard_count)
        .map(|i| MeshLinks {
            shard: ShardId(i),
            senders: (0..n).map(|_| None).collect(),
            receivers: (0..n).map(|_| None).collect(),
            unreceived_to: (0..n).map(|_| None).collect(),
            unreceived_from: (0..n).map(|_| None).collect(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(queue_batches);
                all[from].senders[to] = Some(tx);
                all[to].receivers[from] = Some(rx);
                let unreceived = Arc::new(AtomicU64::new(0));
                all[from].unreceived_to[to] = Some(unreceived.clone());
                all[to].unreceived_from[from] = Some(unreceived);
            }
        }
    }
    all
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
}

/// A receiving end, connected, with the shard it comes from.
pub type Inbound<T> = (ShardId, ConnectedReceiver<Vec<T>>);

/// One shard's sending side of the mesh.
pub struct Mesh<T: Send + 'static> {
    shard: ShardId,
    senders: Vec<Option<ConnectedSender<Vec<T>>>>,
    /// Messages produced this turn, per destination.
    outbox: RefCell<Vec<Vec<T>>>,
    /// Batches a full queue refused, per destination, oldest first.
    backlog: RefCell<Vec<VecDeque<Vec<T>>>>,
    backlog_limit_messages: u64,
    /// Per destination: messages in its queue, not yet taken (it counts them down).
    unreceived_to: Vec<Option<Arc<AtomicU64>>>,
    /// Per source: the same counters, seen from the receiving end.
    unreceived_from: Vec<Option<Arc<AtomicU64>>>,
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
    /// Connects this shard's ends. Every shard must call it at the same time: a channel's
    /// `connect` waits for its peer, so the ends are connected concurrently, not in turn.
    pub async fn connect(
        links: MeshLinks<T>,
        backlog_limit_messages: u32,
        sheddable: fn(&T) -> bool,
    ) -> (Mesh<T>, Vec<Inbound<T>>) {
        let MeshLinks {
            shard,
            senders,
            receivers,
            unreceived_to,
            unreceived_from,
        } = links;
        let sender_tasks: Vec<_> = senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
            .collect();
        let receiver_tasks: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, glommio::spawn_local(r.connect()))))
            .collect();
        let mut connected = Vec::with_capacity(sender_tasks.len());
        for task in sender_tasks {
            connected.push(match task {
                Some(t) => Some(t.await),
                None => None,
            });
        }
        let mut inbound = Vec::with_capacity(receiver_tasks.len());
        for (i, task) in receiver_tasks {
            let from = u16::try_from(i).expect("shard indices fit u16: links() made them");
            inbound.push((ShardId(from), task.await));
        }
        let n = connected.len();
        let mesh = Mesh {
            shard,
            senders: connected,
            outbox: RefCell::new((0..n).map(|_| Vec::new()).collect()),
            backlog: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
            backlog_limit_messages: u64::from(backlog_limit_messages),
            unreceived_to,
            unreceived_from,
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
            if let Some(w) = self.flusher.take() {
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
        if let Some(Some(unreceived)) = self.unreceived_from.get(usize::from(from.0)) {
            let before = unreceived.fetch_sub(messages_count as u64, Ordering::Relaxed);
            debug_assert!(before >= messages_count as u64, "took more than was sent");
        }
    }

    /// Messages sent to other shards and not yet taken by them.
    fn unreceived_messages(&self) -> u64 {
        self.unreceived_to
            .iter()
            .flatten()
            .map(|u| u.load(Ordering::Relaxed))
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

    /// Moves this turn's batches and any backlog into the queues, as far as they have room.
    /// Returns whether some backlog remains.
    pub fn flush(&self) -> bool {
        self.flush_pending.set(false);
        let mut outbox = self.outbox.borrow_mut();
        let mut backlog = self.backlog.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        let mut remaining = false;
        for (to, sender) in self.senders.iter().enumerate() {
            let Some(sender) = sender else { continue };
            let queued = &mut backlog[to];
            if !outbox[to].is_empty() {
                // Behind any backlog, so a pair's messages stay in order.
                queued.push_back(std::mem::take(&mut outbox[to]));
            }
            let unreceived = self.unreceived_to.get(to).and_then(Option::as_ref);
            while let Some(batch) = queued.pop_front() {
                let len = batch.len() as u64;
                // Counted before the send: the peer may take the batch and count it down
                // before `try_send` even returns.
                if let Some(u) = unreceived {
                    u.fetch_add(len, Ordering::Relaxed);
                }
                match sender.try_send(batch) {
                    Ok(()) => {
                        stats.messages_sent_count += len;
                        stats.batches_sent_count += 1;
                    }
                    Err(GlommioError::WouldBlock(ResourceType::Channel(batch))) => {
                        if let Some(u) = unreceived {
                            u.fetch_sub(len, Ordering::Relaxed);
                        }
                        queued.push_front(batch);
                        break;
                    }
                    Err(_) => {
                        if let Some(u) = unreceived {
                            u.fetch_sub(len, Ordering::Relaxed);
                        }
                        stats.closed_count += len;
                    }
                }
            }
            if !queued.is_empty() {
                remaining = true;
            }
        }
        let waiting: u64 = backlog.iter().flatten().map(|b| b.len() as u64).sum();
        if waiting > self.backlog_limit_messages {
            self.shed(&mut backlog, &mut stats, waiting);
        }
        stats.backlog_messages = backlog.iter().flatten().map(|b| b.len() as u64).sum();
        // What a slow peer has not taken counts too: its queue holds batches, not messages,
        // so 1,024 large batches can hide millions of messages from the backlog.
        let held = stats.backlog_messages + self.unreceived_messages();
        self.update_pushback(held, &mut stats);
        remaining
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

    /// The flusher: runs after the tasks that pushed this turn (glommio runs woken tasks
    /// in order), so one turn's messages leave as one batch per destination.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            WaitFlush { mesh: &self }.await;
            // While pushing back, nothing new is pushed: keep checking whether the peers
            // have caught up, or readers would never resume.
            while self.flush() || self.pushing_back() {
                glommio::timer::sleep(BACKLOG_RETRY).await;
            }
        }
    }

    /// Closes every sending end, so peers' receivers end.
    pub fn close(&self) {
        for s in self.senders.iter().flatten() {
            s.close();
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
    use glommio::{LocalExecutorBuilder, Placement};

    fn qos0(m: &u32) -> bool {
        m % 2 == 0
    }

    /// Two executors on threads: shard 0 sends 10,000 numbered messages; shard 1 gets
    /// them all, in order, in far fewer batches than messages.
    #[test]
    fn pair_delivers_in_order_in_batches() {
        let mut links = links::<u32>(2, 4);
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let sender = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(move || async move {
                let (mesh, _inbound) = Mesh::connect(l0, 1_000_000, qos0).await;
                let mesh = Rc::new(mesh);
                glommio::spawn_local(mesh.clone().run_flusher()).detach();
                for round in 0..100u32 {
                    for i in 0..100u32 {
                        mesh.push(ShardId(1), round * 100 + i);
                    }
                    glommio::yield_if_needed().await;
                    glommio::executor().yield_now().await;
                }
                while mesh.flush() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                let stats = mesh.stats();
                mesh.close();
                stats
            })
            .unwrap();
        let receiver = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(move || async move {
                let (_mesh, mut inbound) = Mesh::connect(l1, 1_000_000, qos0).await;
                let (from, rx) = inbound.pop().unwrap();
                assert_eq!(from, ShardId(0));
                let mut got = Vec::new();
                let mut batches = 0;
                while let Some(batch) = rx.recv().await {
                    batches += 1;
                    got.extend(batch);
                }
                (got, batches)
            })
            .unwrap();
        let stats = sender.join().unwrap();
        let (got, batches) = receiver.join().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<u32>>());
        assert_eq!(stats.messages_sent_count, 10_000);
        assert!(batches <= 200, "{batches} batches for 10,000 messages");
        assert_eq!(stats.shed_count, 0);
    }

    /// Nobody drains shard 1's queue: shard 0's backlog fills to its limit, then sheds
    /// only sheddable (even) messages and keeps the odd ones, counting both.
    #[test]
    fn full_queue_spills_then_sheds_only_sheddable() {
        let mut links = links::<u32>(2, 1);
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let receiver = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(move || async move {
                let (_mesh, inbound) = Mesh::connect(l1, 10, qos0).await;
                // Hold the queue undrained until the sender is done.
                while rx.try_recv().is_err() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                drop(inbound);
            })
            .unwrap();
        let sender = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(move || async move {
                let (mesh, _inbound) = Mesh::connect(l0, 10, qos0).await;
                // First batch fills the one-slot queue.
                mesh.push(ShardId(1), 1);
                assert!(!mesh.flush());
                // 40 more: 20 odd (kept) and 20 even (shed down to the limit).
                for i in 0..40u32 {
                    mesh.push(ShardId(1), i);
                    mesh.flush();
                }
                mesh.stats()
            })
            .unwrap();
        let stats = sender.join().unwrap();
        tx.send(()).unwrap();
        receiver.join().unwrap();
        assert_eq!(stats.messages_sent_count, 1);
        // 40 waiting over a limit of 10: every even one goes, 20 odd ones stay.
        assert_eq!(stats.shed_count, 20);
        assert_eq!(stats.backlog_messages, 20);
        assert!(stats.over_limit_count > 0);
    }

    /// Unsheddable messages to a peer that does not take them: once the backlog and the
    /// peer's queue hold the limit, the mesh pushes back and keeps a reader's waker; when
    /// the peer takes them, pushing back ends (at half the limit) and the reader is woken.
    #[test]
    fn pushes_back_until_the_peer_takes_its_messages() {
        fn never(_: &u32) -> bool {
            false
        }
        let mut links = links::<u32>(2, 2);
        let l1 = links.pop().unwrap();
        let l0 = links.pop().unwrap();
        let (full_tx, full_rx) = std::sync::mpsc::channel::<()>();
        let receiver = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(move || async move {
                let (mesh, mut inbound) = Mesh::connect(l1, 10, never).await;
                let (from, rx) = inbound.pop().unwrap();
                // Take nothing until the sender has seen the pushback.
                while full_rx.try_recv().is_err() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                let mut got = Vec::new();
                while let Some(batch) = rx.recv().await {
                    let count = batch.len();
                    got.extend(batch);
                    mesh.taken(from, count);
                }
                got
            })
            .unwrap();
        let sender = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(move || async move {
                let (mesh, _inbound) = Mesh::connect(l0, 10, never).await;
                let mesh = Rc::new(mesh);
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
                let reader = {
                    let (mesh, woken) = (mesh.clone(), woken.clone());
                    glommio::spawn_local(futures_lite::future::poll_fn(move |cx| {
                        if mesh.pushing_back() {
                            mesh.wake_on_room(cx.waker());
                            Poll::Pending
                        } else {
                            woken.set(true);
                            Poll::Ready(())
                        }
                    }))
                };
                glommio::executor().yield_now().await;
                assert!(!woken.get(), "no room yet");
                full_tx.send(()).unwrap();
                glommio::spawn_local(mesh.clone().run_flusher()).detach();
                mesh.push(ShardId(1), 10);
                reader.await;
                assert!(woken.get());
                assert!(!mesh.pushing_back());
                assert_ne!(mesh.resume_epoch(), epoch, "a new episode after the resume");
                while mesh.flush() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                let stats = mesh.stats();
                mesh.close();
                stats
            })
            .unwrap();
        let stats = sender.join().unwrap();
        let got = receiver.join().unwrap();
        // Pushing back drops nothing: every message arrives, in order.
        assert_eq!(got, (0..=10).collect::<Vec<u32>>());
        assert_eq!(stats.shed_count, 0);
        assert_eq!(stats.pushbacks_count, 1);
    }
}
