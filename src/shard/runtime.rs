//! One shard's live state on its executor: the core, the open connections' signals, the
//! scratch read buffer, the mesh, the coarse clock. [`Shard::pump`] is the one place the
//! core's outputs are carried out.

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use bytes::BytesMut;
use rustc_hash::FxHashMap;

use crate::broker::{ConnId, ShardId};
use crate::mesh::Mesh;

use super::connection;
use super::core::{Core, CoreOutput};
use super::readiness::Readiness;
use super::transport::{TcpTransport, Transport};

/// Bytes of the per-shard read buffer every connection reads into in turn. 64 KiB lets
/// one `recv` take a burst of small publishes; only the core keeps what it needs.
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// What travels between shards: the core's own messages, and sockets being handed over.
#[derive(Debug)]
pub enum Envelope<M> {
    Core(M),
    /// A client's socket and the bytes already read from it (CONNECT included).
    Adopt {
        fd: OwnedFd,
        received: BytesMut,
    },
}

/// State every shard shares, all atomics touched once per connection, never per packet.
#[derive(Debug)]
pub struct Shared {
    pub connections: AtomicU32,
    pub max_connections: u32,
    pub refused_count: AtomicU64,
    pub stop: Arc<AtomicBool>,
    /// Shards that have called `core.shutdown` and flushed their mesh.
    pub shards_drained: AtomicU16,
}

impl Shared {
    /// Counts a new connection unless the broker is at `max_connections`.
    pub fn try_open_connection(&self) -> bool {
        let before = self.connections.fetch_add(1, Ordering::Relaxed);
        if before >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            self.refused_count.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn connection_closed(&self) {
        let before = self.connections.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "closed more connections than were opened");
    }
}

/// How the core reaches one connection's task: flags it sets, a waker to wake it.
///
/// One per connection, idle ones included, so it is kept small (40 bytes, a 56-byte
/// block with its `Rc` counts): the rare parting state (hand-off, last bytes before a
/// close) sits behind one box.
#[derive(Default)]
pub struct ConnSignal {
    pub writable: Cell<bool>,
    pub close: Cell<bool>,
    /// The runtime, not the core, asked for the close (stopping): the core must then be
    /// told the connection is gone.
    pub closed_by_runtime: Cell<bool>,
    /// Set while the connection's own task is running: it rechecks its flags before it
    /// sleeps, so waking it would only cost a spurious poll.
    pub running: Cell<bool>,
    /// The mesh's pushing-back episode in which this connection stopped reading and left
    /// its waker with the mesh (see [`crate::mesh::Mesh::pushing_back`]), as its epoch
    /// plus one: 0 until it first paused (an `Option<u64>` would take 8 bytes more).
    pub paused_in_epoch: Cell<u64>,
    /// Set once, when the connection is leaving: to another shard, or closing.
    pub parting: Cell<Option<Box<Parting>>>,
    waker: Cell<Option<Waker>>,
}

/// How a connection leaves, as the core asked.
#[derive(Debug)]
pub enum Parting {
    /// Hand the socket to shard `.0` with the bytes already received.
    HandOff(ShardId, BytesMut),
    /// What the core had pending for the connection when it asked to close it, taken at
    /// once so the core may forget the connection right after `Close`; `None` once taken.
    LastBytes(Option<BytesMut>),
}

impl ConnSignal {
    /// Takes the hand-off, if the core asked for one.
    pub fn take_handoff(&self) -> Option<(ShardId, BytesMut)> {
        match self.parting.take() {
            Some(parting) if matches!(*parting, Parting::HandOff(..)) => match *parting {
                Parting::HandOff(to, received) => Some((to, received)),
                Parting::LastBytes(_) => unreachable!("matched as a hand-off just above"),
            },
            // Put back as it was (the same box: this runs on every turn of a closing
            // connection).
            other => {
                self.parting.set(other);
                None
            }
        }
    }

    /// Takes the last bytes of a closing connection (once).
    pub fn take_last_bytes(&self) -> Option<BytesMut> {
        let mut parting = self.parting.take();
        let last = match parting.as_deref_mut() {
            Some(Parting::LastBytes(last)) => last.take(),
            _ => None,
        };
        self.parting.set(parting);
        last
    }
}

impl std::fmt::Debug for ConnSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSignal")
            .field("writable", &self.writable.get())
            .field("close", &self.close.get())
            .finish()
    }
}

impl ConnSignal {
    pub fn register(&self, waker: &Waker) {
        match self.waker.take() {
            Some(w) if w.will_wake(waker) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(waker.clone())),
        }
    }

    pub fn wake(&self) {
        if !self.running.get() {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }
}

/// A wait-for-stop signal for the shard's own tasks (listeners).
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.stopped.get() {
                std::task::Poll::Ready(())
            } else {
                // One entry per waiting task (a listener polls this once per accept).
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// One shard, shared by its tasks through an `Rc`.
pub struct Shard<C: Core> {
    pub id: ShardId,
    pub core: RefCell<C>,
    pub mesh: Rc<Mesh<Envelope<C::Msg>>>,
    pub shared: Arc<Shared>,
    pub scratch: RefCell<Box<[u8]>>,
    /// The shard's epoll: readiness of its listeners and connections.
    pub readiness: Rc<Readiness>,
    pub stop: StopSignal,
    conns: RefCell<FxHashMap<ConnId, Rc<ConnSignal>>>,
    next_conn: Cell<u32>,
    clock: Cell<Instant>,
}

impl<C: Core> std::fmt::Debug for Shard<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("connections", &self.conns.borrow().len())
            .finish()
    }
}

impl<C: Core> Shard<C> {
    pub fn new(
        id: ShardId,
        core: C,
        mesh: Rc<Mesh<Envelope<C::Msg>>>,
        shared: Arc<Shared>,
        readiness: Rc<Readiness>,
    ) -> Self {
        Shard {
            id,
            core: RefCell::new(core),
            mesh,
            shared,
            scratch: RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice()),
            readiness,
            stop: StopSignal::default(),
            conns: RefCell::new(FxHashMap::default()),
            next_conn: Cell::new(0),
            clock: Cell::new(Instant::now()),
        }
    }

    /// The coarse clock: read once per tick and per I/O wake-up, not per packet.
    pub fn now(&self) -> Instant {
        self.clock.get()
    }

    pub fn update_clock(&self) -> Instant {
        let now = Instant::now();
        self.clock.set(now);
        now
    }

    pub fn open_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Starts serving a connection accepted here or adopted from another shard (then with
    /// the bytes that came with it). The connection is already counted in `Shared`.
    pub fn open<T: Transport>(self: &Rc<Self>, io: T, received: Option<BytesMut>) {
        let conn = self.allocate_conn_id();
        let signal = Rc::new(ConnSignal::default());
        self.conns.borrow_mut().insert(conn, signal.clone());
        let now = self.update_clock();
        {
            let mut core = self.core.borrow_mut();
            core.connection_opened(conn, now);
            if let Some(bytes) = received.filter(|b| !b.is_empty()) {
                core.received(conn, &bytes, now);
            }
        }
        self.pump();
        super::exec::spawn(connection::serve(self.clone(), conn, signal, io));
    }

    /// The connection's task has ended; its id may be reused.
    pub fn forget(&self, conn: ConnId) {
        self.conns.borrow_mut().remove(&conn);
    }

    /// Asks every open connection to flush and close (shutdown's last step).
    pub fn close_all(&self) {
        for signal in self.conns.borrow().values() {
            if !signal.close.get() {
                signal.closed_by_runtime.set(true);
                signal.close.set(true);
                signal.wake();
            }
        }
    }

    /// Carries out everything the core asked for since the last pump.
    pub fn pump(&self) {
        loop {
            let output = self.core.borrow_mut().poll_output();
            let Some(output) = output else { break };
            match output {
                CoreOutput::Writable { conn } => self.signal(conn, |s| s.writable.set(true)),
                CoreOutput::Close { conn } => {
                    let last = self.core.borrow_mut().take_outgoing(conn);
                    self.signal(conn, |s| {
                        s.writable.set(false);
                        s.parting
                            .set(Some(Box::new(Parting::LastBytes(Some(last)))));
                        s.close.set(true);
                    })
                }
                CoreOutput::HandOff { conn, to, received } => self.signal(conn, |s| {
                    s.parting
                        .set(Some(Box::new(Parting::HandOff(to, received))))
                }),
                CoreOutput::Mesh { to, msg } => self.mesh.push(to, Envelope::Core(msg)),
            }
        }
    }

    fn signal(&self, conn: ConnId, set: impl FnOnce(&ConnSignal)) {
        let conns = self.conns.borrow();
        match conns.get(&conn) {
            Some(signal) => {
                set(signal);
                signal.wake();
            }
            // The core names only connections it was told about and not since closed or
            // handed off; a miss is its bug, not the peer's. Logged, not fatal: a shard
            // must not die for one stale output.
            None => tracing::error!(
                shard = self.id.0,
                ?conn,
                "core output for unknown connection"
            ),
        }
    }

    /// Mesh input: a core message, or a socket to adopt.
    pub fn mesh_received(self: &Rc<Self>, from: ShardId, envelope: Envelope<C::Msg>) {
        match envelope {
            Envelope::Core(msg) => {
                let now = self.now();
                self.core.borrow_mut().mesh_received(from, msg, now);
                self.pump();
            }
            Envelope::Adopt { fd, received } => {
                if self.stop.stopped.get() {
                    // Stopping: close it (dropping the fd) rather than adopt.
                    self.shared.connection_closed();
                    return;
                }
                match TcpTransport::register(fd, &self.readiness) {
                    Ok(io) => self.open(io, Some(received)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch an adopted socket; closing it");
                        self.shared.connection_closed();
                    }
                }
            }
        }
    }

    fn allocate_conn_id(&self) -> ConnId {
        let conns = self.conns.borrow();
        loop {
            let id = ConnId(self.next_conn.get());
            self.next_conn.set(self.next_conn.get().wrapping_add(1));
            // Ids wrap after 2^32 connections; skip the few still open.
            if !conns.contains_key(&id) {
                return id;
            }
        }
    }
}
