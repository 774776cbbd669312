//! Socket readiness for a whole shard from one epoll instance, instead of one glommio
//! readiness `Source` per socket.
//!
//! Every socket of the shard (its listeners and its connections) is registered once,
//! edge-triggered, with a slot of the [`Readiness`] table as its data. A connection reads
//! and writes with plain non-blocking syscalls; when one would block, it clears the slot's
//! flag and leaves its waker there. The shard's executor ([`super::exec`]) is the poller:
//! between turns it calls [`Readiness::wait`], which sets the slots' flags and wakes their
//! wakers.
//!
//! Why: a glommio `TcpStream` keeps a pending POLL_ADD `Source` per socket (~512 B of an
//! idle connection's memory) and arms a new one after every short `recv` (an allocation,
//! an SQE and a CQE per message batch); here an idle connection costs one 24-byte slot,
//! and a busy shard pays one `epoll_wait` for a batch of events.
//!
//! Edge-triggered rules kept here: a flag is cleared only when the socket said EAGAIN, or
//! on a short read (the receive queue was empty at that moment, so data arriving later
//! raises a new edge). A hang-up or error seen in an event is sticky: it arrives once, and
//! a short read that returns the last data before a FIN must not hide it.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, Waker};

/// The socket can be read (or a listener accepted from) without blocking, as far as we know.
pub const READABLE: u8 = 1;
/// The socket can be written without blocking, as far as we know.
pub const WRITABLE: u8 = 2;
/// The peer hung up or the socket failed: reads and writes return at once from now on.
const CLOSED: u8 = 4;

/// Events taken per `epoll_wait`; more are taken by calling it again.
const EVENTS_PER_WAIT: usize = 256;

/// A registered socket's place in the table: an index and the generation of the slot when
/// it was handed out, so an event or a call for a slot since reused is recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotKey {
    index: u32,
    generation: u32,
}

impl SlotKey {
    fn data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    fn from_data(data: u64) -> SlotKey {
        SlotKey {
            index: data as u32,
            generation: (data >> 32) as u32,
        }
    }
}

#[derive(Default)]
struct Slot {
    generation: u32,
    /// READABLE | WRITABLE | CLOSED.
    ready: u8,
    in_use: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Slots {
    table: Vec<Slot>,
    /// Indexes of free slots in `table`: the table never holds more than `limit` slots.
    free: Vec<u32>,
}

/// A shard's epoll instance and the slot table of the sockets registered with it.
pub struct Readiness {
    epoll: OwnedFd,
    slots: RefCell<Slots>,
    /// Slots the table may hold: the shard's connections (at most `max_connections`)
    /// plus its listeners.
    limit: u32,
    /// Registrations refused because the table was full.
    pub full_count: Cell<u64>,
    /// Events that named a slot freed or reused since (counted, then ignored).
    pub stale_count: Cell<u64>,
}

/// The epoll instance itself, for an event loop outside the shard's executor to wait on
/// (the load generator's glommio cores do: it becomes readable when events are pending,
/// then [`Readiness::harvest`] takes them).
impl AsRawFd for Readiness {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("epoll", &self.epoll.as_raw_fd())
            .field("slots", &self.slots.borrow().table.len())
            .field("limit", &self.limit)
            .finish()
    }
}

impl Readiness {
    /// A new epoll instance with room for `limit` sockets.
    pub fn new(limit: u32) -> io::Result<Readiness> {
        // SAFETY: epoll_create1 takes flags only and touches no memory of ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Readiness {
            // SAFETY: `fd` is a fresh descriptor from the kernel that nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(Slots::default()),
            limit,
            full_count: Cell::new(0),
            stale_count: Cell::new(0),
        })
    }

    /// Registers `fd` (edge-triggered, read and write) and gives it a slot, assumed both
    /// readable and writable until a syscall says otherwise (the socket may hold data
    /// already). The caller keeps `fd` open until it calls [`Self::release`] or
    /// [`Self::deregister`].
    pub fn register(&self, fd: RawFd) -> io::Result<SlotKey> {
        let key = {
            let mut slots = self.slots.borrow_mut();
            let index = match slots.free.pop() {
                Some(index) => index,
                None if slots.table.len() < self.limit as usize => {
                    slots.table.push(Slot::default());
                    u32::try_from(slots.table.len() - 1).expect("at most `limit` (a u32) slots")
                }
                None => {
                    drop(slots);
                    self.full_count.set(self.full_count.get() + 1);
                    return Err(io::Error::from_raw_os_error(libc::EMFILE));
                }
            };
            let slot = &mut slots.table[index as usize];
            slot.in_use = true;
            slot.ready = READABLE | WRITABLE;
            SlotKey {
                index,
                generation: slot.generation,
            }
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: key.data(),
        };
        // SAFETY: epoll_ctl reads one `epoll_event` at the pointer, which is ours and live.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.release(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Removes `fd` from the epoll instance and frees its slot. Needed when the
    /// descriptor lives on (handed to another shard): a registration follows the open
    /// file, not the descriptor number, so it would keep firing here.
    pub fn deregister(&self, fd: RawFd, key: SlotKey) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since 2.6.9).
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        self.release(key);
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Frees the slot of a socket about to be closed (closing its only descriptor removes
    /// it from the epoll instance, so no `EPOLL_CTL_DEL` is needed). Later events for the
    /// old key are stale and ignored.
    pub fn release(&self, key: SlotKey) {
        let waker = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.table.get_mut(key.index as usize) else {
                return;
            };
            if !slot.in_use || slot.generation != key.generation {
                return;
            }
            slot.in_use = false;
            slot.generation = slot.generation.wrapping_add(1);
            slot.ready = 0;
            let waker = slot.waker.take();
            slots.free.push(key.index);
            waker
        };
        // Dropped outside the borrow: dropping a task's last waker may drop the task.
        drop(waker);
    }

    /// Whether the socket may be ready for `flag` (READABLE or WRITABLE); a hang-up or an
    /// error counts as ready, so the syscall reports it.
    pub fn is_ready(&self, key: SlotKey, flag: u8) -> bool {
        let slots = self.slots.borrow();
        match slots.table.get(key.index as usize) {
            Some(slot) if slot.generation == key.generation => slot.ready & (flag | CLOSED) != 0,
            _ => true,
        }
    }

    /// The socket said EAGAIN (or drained short) for `flag`: wait for its next edge, and
    /// be woken then through `waker`.
    pub fn clear(&self, key: SlotKey, flag: u8) {
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.table.get_mut(key.index as usize) {
            if slot.generation == key.generation {
                slot.ready &= !flag;
            }
        }
    }

    /// Leaves `waker` in the slot, to be woken at the socket's next event.
    pub fn park(&self, key: SlotKey, waker: &Waker) {
        let old = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.table.get_mut(key.index as usize) else {
                return;
            };
            if slot.generation != key.generation {
                return;
            }
            match &slot.waker {
                Some(w) if w.will_wake(waker) => None,
                _ => slot.waker.replace(waker.clone()),
            }
        };
        drop(old);
    }

    /// Polls for `flag` readiness: ready, or parked until the next event.
    pub fn poll_ready(&self, key: SlotKey, flag: u8, cx: &Context<'_>) -> Poll<()> {
        if self.is_ready(key, flag) {
            Poll::Ready(())
        } else {
            self.park(key, cx.waker());
            Poll::Pending
        }
    }

    /// Takes every pending event without blocking: sets the slots' flags and wakes their
    /// wakers. Returns the number of events.
    pub fn harvest(&self) -> usize {
        self.wait(0)
    }

    /// Waits up to `timeout_ms` (-1: forever, 0: not at all) for events, then takes every
    /// pending one: sets the slots' flags and wakes their wakers. Returns the number of
    /// events. This is the shard executor's only blocking call.
    pub fn wait(&self, timeout_ms: i32) -> usize {
        // Left uninitialised: zeroing 3 KiB per wait was 40 % of a shard's instructions at
        // 1,000 msg/s (callgrind), and only the entries the kernel fills are read.
        let mut events = [const { MaybeUninit::<libc::epoll_event>::uninit() }; EVENTS_PER_WAIT];
        let mut total = 0;
        let mut timeout = timeout_ms;
        loop {
            // SAFETY: epoll_wait writes at most `EVENTS_PER_WAIT` events into `events`,
            // which has exactly that many (`MaybeUninit<T>` has `T`'s layout).
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr().cast::<libc::epoll_event>(),
                    EVENTS_PER_WAIT as libc::c_int,
                    timeout,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    // A signal: return to the executor, which looks at its timers and
                    // flags and waits again.
                    return total;
                }
                tracing::error!(error = %e, "epoll_wait failed");
                return total;
            }
            let n = n as usize;
            for event in &events[..n] {
                // SAFETY: the kernel filled the first `n` entries.
                let event = unsafe { event.assume_init() };
                // Copied out: the struct is packed on x86-64.
                let (mask, data) = (event.events, event.u64);
                self.deliver(SlotKey::from_data(data), mask);
            }
            total += n;
            if n < EVENTS_PER_WAIT {
                return total;
            }
            // A full batch: take the rest without blocking.
            timeout = 0;
        }
    }

    fn deliver(&self, key: SlotKey, mask: u32) {
        let mut ready = 0;
        if mask & (libc::EPOLLIN as u32) != 0 {
            ready |= READABLE;
        }
        if mask & (libc::EPOLLOUT as u32) != 0 {
            ready |= WRITABLE;
        }
        if mask & ((libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32) != 0 {
            ready |= CLOSED;
        }
        let waker = {
            let mut slots = self.slots.borrow_mut();
            match slots.table.get_mut(key.index as usize) {
                Some(slot) if slot.in_use && slot.generation == key.generation => {
                    slot.ready |= ready;
                    slot.waker.take()
                }
                _ => {
                    drop(slots);
                    self.stale_count.set(self.stale_count.get() + 1);
                    return;
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1, no executor: the table, the edges and the transport's
    //! use of them, driven by hand with a counting waker.
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::{Duration, Instant};

    use std::rc::Rc;

    use super::*;
    use crate::shard::transport::{TcpTransport, Transport};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    /// A connected pair: our client end, and the accepted end (non-blocking) as the
    /// broker would hold it.
    fn pair() -> (TcpStream, OwnedFd) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let client = TcpStream::connect(listener.local_addr().expect("bound")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        (client, OwnedFd::from(server))
    }

    /// Harvests until at least one event came (the loopback delivers within microseconds).
    fn harvest_some(r: &Readiness) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = r.harvest();
            if n > 0 || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn read(io: &mut TcpTransport, waker: &Waker, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        io.poll_read(&mut Context::from_waker(waker), buf)
    }

    /// A connection that stopped reading with data pending (mesh pushback) gets no new
    /// edge for that data: the slot must stay readable until a read drains it, so that
    /// resuming reads it at once.
    #[test]
    fn pending_data_stays_readable_without_a_new_edge() {
        let r = Rc::new(Readiness::new(8).expect("epoll"));
        let (mut client, fd) = pair();
        let mut io = TcpTransport::register(fd, &r).expect("register");
        let (woken, waker) = waker();
        let mut buf = [0u8; 4];
        // Nothing yet: parks.
        r.harvest();
        assert!(read(&mut io, &waker, &mut buf).is_pending());
        client.write_all(b"abcdef").expect("send");
        assert!(harvest_some(&r) > 0);
        assert_eq!(
            woken.0.load(Ordering::Relaxed),
            1,
            "the edge wakes the parked reader"
        );
        // Paused: the edge is consumed, nothing new arrives.
        assert_eq!(r.harvest(), 0);
        // Resumed: a full buffer leaves the slot readable, the short read drains it.
        assert!(matches!(
            read(&mut io, &waker, &mut buf),
            Poll::Ready(Ok(4))
        ));
        assert!(matches!(
            read(&mut io, &waker, &mut buf),
            Poll::Ready(Ok(2))
        ));
        assert_eq!(&buf[..2], b"ef");
        assert!(read(&mut io, &waker, &mut buf).is_pending());
        // Later data raises a new edge.
        client.write_all(b"g").expect("send");
        assert!(harvest_some(&r) > 0);
        assert_eq!(woken.0.load(Ordering::Relaxed), 2);
        assert!(matches!(
            read(&mut io, &waker, &mut buf),
            Poll::Ready(Ok(1))
        ));
    }

    /// A write that would block parks; the peer reading makes room, and that edge (no
    /// new data, only EPOLLOUT) wakes the writer, which then goes on.
    #[test]
    fn a_full_send_buffer_resumes_when_the_peer_reads() {
        use std::io::Read;
        let r = Rc::new(Readiness::new(8).expect("epoll"));
        let (mut client, fd) = pair();
        let mut io = TcpTransport::register(fd, &r).expect("register");
        let (woken, waker) = waker();
        let chunk = [7u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            match io.poll_write(&mut Context::from_waker(&waker), &chunk) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => panic!("send failed: {e}"),
                Poll::Pending => break,
            }
            assert!(written < 256 * 1024 * 1024, "the send buffer never filled");
        }
        r.harvest();
        let before = woken.0.load(Ordering::Relaxed);
        // Drain everything written so far: the kernel's send buffer empties.
        let mut sink = vec![0u8; written];
        client.read_exact(&mut sink).expect("read what was written");
        assert!(harvest_some(&r) > 0);
        assert!(
            woken.0.load(Ordering::Relaxed) > before,
            "room to write wakes the writer"
        );
        assert!(matches!(
            io.poll_write(&mut Context::from_waker(&waker), &chunk),
            Poll::Ready(Ok(n)) if n > 0
        ));
    }

    /// Data and FIN seen in one event: the short read that returns the data must not
    /// hide the end of stream, which raises no further edge.
    #[test]
    fn hang_up_with_the_last_data_is_not_lost() {
        let r = Rc::new(Readiness::new(8).expect("epoll"));
        let (mut client, fd) = pair();
        let mut io = TcpTransport::register(fd, &r).expect("register");
        let (_, waker) = waker();
        client.write_all(b"last").expect("send");
        client.shutdown(std::net::Shutdown::Write).expect("FIN");
        std::thread::sleep(Duration::from_millis(20));
        assert!(harvest_some(&r) > 0);
        let mut buf = [0u8; 64];
        assert!(matches!(
            read(&mut io, &waker, &mut buf),
            Poll::Ready(Ok(4))
        ));
        assert!(matches!(
            read(&mut io, &waker, &mut buf),
            Poll::Ready(Ok(0))
        ));
    }

    /// A slot freed and handed out again has a new generation: an event or a call naming
    /// the old key touches nothing of the new socket.
    #[test]
    fn a_stale_key_does_not_reach_the_slots_next_socket() {
        let r = Readiness::new(1).expect("epoll");
        let (_a, fd_a) = pair();
        let old = r.register(fd_a.as_raw_fd()).expect("register");
        r.release(old);
        drop(fd_a);
        let (_b, fd_b) = pair();
        let new = r
            .register(fd_b.as_raw_fd())
            .expect("the freed slot is reused");
        assert_eq!(new.index, old.index);
        assert_ne!(new, old);
        let (woken, waker) = waker();
        r.clear(new, READABLE);
        r.park(new, &waker);
        // The old key: ignored, counted.
        r.deliver(old, libc::EPOLLIN as u32);
        r.clear(old, WRITABLE);
        assert_eq!(r.stale_count.get(), 1);
        assert_eq!(woken.0.load(Ordering::Relaxed), 0);
        assert!(!r.is_ready(new, READABLE));
        assert!(r.is_ready(new, WRITABLE));
        // The new key: woken.
        r.deliver(new, libc::EPOLLIN as u32);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(r.is_ready(new, READABLE));
    }

    /// The table is bounded: a registration beyond the limit is refused and counted.
    #[test]
    fn the_table_refuses_beyond_its_limit() {
        let r = Readiness::new(1).expect("epoll");
        let (_a, fd_a) = pair();
        let (_b, fd_b) = pair();
        let _key = r.register(fd_a.as_raw_fd()).expect("room for one");
        assert!(r.register(fd_b.as_raw_fd()).is_err());
        assert_eq!(r.full_count.get(), 1);
    }

    /// Handing a socket off removes it from this shard's epoll (a registration follows
    /// the open file, so it would keep firing here) and the adopting shard's epoll sees
    /// its events.
    #[test]
    fn hand_off_deregisters_from_the_old_shard() {
        let here = Rc::new(Readiness::new(8).expect("epoll"));
        let there = Rc::new(Readiness::new(8).expect("epoll"));
        let (mut client, fd) = pair();
        let io = TcpTransport::register(fd, &here).expect("register");
        harvest_some(&here); // the registration's own first event
        let fd = io.into_fd().expect("hand off");
        let mut adopted = TcpTransport::register(fd, &there).expect("adopt");
        there.harvest();
        client.write_all(b"x").expect("send");
        assert!(harvest_some(&there) > 0);
        assert_eq!(here.harvest(), 0, "the old shard hears nothing of it");
        let (_, waker) = waker();
        let mut buf = [0u8; 8];
        assert!(matches!(
            read(&mut adopted, &waker, &mut buf),
            Poll::Ready(Ok(1))
        ));
    }
}
