//! One connection's task: reads into the shard's scratch buffer and hands the bytes to
//! the core; writes what the core has for it, everything pending in one write; and ends
//! by loss, by the core's close, or by moving to its home shard.
//!
//! While the mesh pushes back (another shard's backlog is at its limit), a connection
//! writes but does not read.
//!
//! An idle connection holds no read buffer and no write buffer: the scratch buffer is
//! borrowed only for the `recv` itself (the stream is readiness-based), and a drained
//! write buffer is dropped.

use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_lite::future;

use crate::broker::{ConnId, ShardId};

use super::core::Core;
use super::runtime::{ConnSignal, Envelope, Shard};
use super::transport::Transport;

/// Reads one connection may do per turn before it lets other tasks run.
const READ_BUDGET: u32 = 16;
/// How long a closing connection drains what the peer still sends, so that closing with
/// unread bytes does not reset the connection and destroy our last packet (a CONNACK with
/// an error, a DISCONNECT) before the peer read it.
const LINGER: Duration = Duration::from_millis(500);
/// Bytes a closing connection drains at most before it closes regardless.
const LINGER_BYTES: usize = 256 * 1024;

/// Why a connection's task ended.
enum Ending {
    /// The peer closed or the socket failed: the core must be told.
    Lost,
    /// The core closed it; flushed.
    Closed,
    /// The client lives on another shard.
    HandOff(ShardId, BytesMut),
}

/// Serves `conn` until it ends, then settles its accounts with the core and the shard.
///
/// The task's future is [`Serving`] itself, a hand-written future rather than an `async`
/// block: an `async` block keeps its state discriminant and a reference to its captured
/// state besides the state, and this value is what every connection's task holds, idle
/// ones included. At 80 bytes the executor's task (16 bytes of `Rc` counts, a 16-byte
/// header, then the future; see `exec.rs`) is a 112-byte block.
pub(crate) fn serve<C: Core, T: Transport>(
    shard: Rc<Shard<C>>,
    conn: ConnId,
    signal: Rc<ConnSignal>,
    io: T,
) -> Serving<C, T> {
    Serving {
        shard,
        conn,
        signal,
        io: Some(io),
        pending: BytesMut::new(),
    }
}

/// A connection's task state while it serves: everything it owns, in one place.
pub(crate) struct Serving<C: Core, T> {
    shard: Rc<Shard<C>>,
    conn: ConnId,
    signal: Rc<ConnSignal>,
    /// `None` once the connection has ended (the socket went to linger, to another shard,
    /// or was closed).
    io: Option<T>,
    /// Bytes taken from the core and not yet written (written ones are advanced past).
    pending: BytesMut,
}

impl<C: Core, T: Transport> std::future::Future for Serving<C, T> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Every field is `Unpin` (`Transport: Unpin`), so the state may be used in place.
        let s = self.get_mut();
        let Some(io) = s.io.as_mut() else {
            return Poll::Ready(());
        };
        s.signal.register(cx.waker());
        s.signal.running.set(true);
        let poll = drive(&s.shard, s.conn, &s.signal, io, &mut s.pending, cx);
        s.signal.running.set(false);
        match poll {
            Poll::Ready(ending) => {
                if let Some(io) = s.io.take() {
                    s.finish(ending, io);
                }
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C: Core, T: Transport> Serving<C, T> {
    /// The connection ended: tell the core and the shard, and pass the socket on.
    fn finish(&mut self, ending: Ending, io: T) {
        self.shard.forget(self.conn);
        match ending {
            Ending::Lost => {
                // A connection the core already closed (it failed while flushing) is
                // forgotten by the core; only one it still serves is reported lost.
                if !self.signal.close.get() || self.signal.closed_by_runtime.get() {
                    let now = self.shard.now();
                    self.shard.core.borrow_mut().connection_lost(self.conn, now);
                    self.shard.pump();
                }
                self.shard.shared.connection_closed();
            }
            Ending::Closed => {
                if self.signal.closed_by_runtime.get() {
                    let now = self.shard.now();
                    self.shard.core.borrow_mut().connection_lost(self.conn, now);
                    self.shard.pump();
                }
                // A task of its own: the linger state (a timer, the drain loop) would
                // otherwise size every connection's task, idle ones included, for a step
                // only closing ones take.
                super::exec::spawn(linger_then_close(self.shard.clone(), io));
            }
            Ending::HandOff(to, received) => match io.into_fd() {
                // Still counted: the connection lives on, on shard `to`.
                Ok(fd) => self.shard.mesh.push(to, Envelope::Adopt { fd, received }),
                Err(e) => {
                    let conn = self.conn;
                    tracing::warn!(?conn, error = %e, "hand-off failed; closing the connection");
                    self.shard.shared.connection_closed();
                }
            },
        }
    }
}

/// One poll of a connection: write, then read, until both would block.
fn drive<C: Core, T: Transport>(
    shard: &Shard<C>,
    conn: ConnId,
    signal: &ConnSignal,
    io: &mut T,
    pending: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<Ending> {
    let mut reads = 0;
    loop {
        // Hand off before reading more: the home shard must see this client's bytes in
        // order, and the core has forgotten the connection.
        if let Some((to, received)) = signal.take_handoff() {
            return Poll::Ready(Ending::HandOff(to, received));
        }
        let flushed = match write(shard, conn, signal, io, pending, cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(_)) => return Poll::Ready(Ending::Lost),
            Poll::Pending => false,
        };
        if signal.close.get() {
            return if flushed {
                Poll::Ready(Ending::Closed)
            } else {
                Poll::Pending
            };
        }
        // Another shard is not taking our messages as fast as our clients send them:
        // stop reading (TCP then slows the publishers) rather than queue without bound.
        if shard.mesh.pushing_back() {
            let epoch = shard.mesh.resume_epoch();
            let mark = epoch.wrapping_add(1);
            if signal.paused_in_epoch.replace(mark) != mark {
                shard.mesh.wake_on_room(cx.waker());
            }
            return Poll::Pending;
        }
        if reads == READ_BUDGET {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let read = {
            let mut scratch = shard.scratch.borrow_mut();
            match io.poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ending::Lost),
                Poll::Ready(Ok(n)) => {
                    let now = shard.now();
                    shard.core.borrow_mut().received(conn, &scratch[..n], now);
                    true
                }
                Poll::Pending => false,
            }
        };
        if !read {
            return Poll::Pending;
        }
        shard.pump();
        reads += 1;
    }
}

/// Writes everything the core has for `conn`: one write per batch the core accumulated,
/// taking the next batch only when the previous one is fully written.
fn write<C: Core, T: Transport>(
    shard: &Shard<C>,
    conn: ConnId,
    signal: &ConnSignal,
    io: &mut T,
    pending: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        if pending.is_empty() {
            if signal.writable.replace(false) {
                *pending = shard.core.borrow_mut().take_outgoing(conn);
                // Taking makes room, and the core may refill this buffer from the
                // session's queue (or unblock others): carry that out now, not at the
                // next event or tick. Until then a stale output could also name a
                // connection that has ended meanwhile.
                shard.pump();
            } else if let Some(last) = signal.take_last_bytes() {
                *pending = last;
            } else {
                // Drop the buffer: an idle connection keeps no write memory.
                *pending = BytesMut::new();
                return Poll::Ready(Ok(()));
            }
            continue;
        }
        match io.poll_write(cx, pending) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                pending.advance(n);
                if pending.is_empty() {
                    shard.core.borrow_mut().recycle(std::mem::take(pending));
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// A closing connection's last step: [`linger`], close the socket, and give its place in
/// `max_connections` back.
async fn linger_then_close<C: Core, T: Transport>(shard: Rc<Shard<C>>, mut io: T) {
    linger(&shard, &mut io).await;
    drop(io);
    shard.shared.connection_closed();
}

/// Half-closes, then reads and discards until the peer closes too (bounded in time and
/// bytes), so our last bytes reach it instead of being destroyed by a reset.
async fn linger<C: Core, T: Transport>(shard: &Shard<C>, io: &mut T) {
    let drain = async {
        if future::poll_fn(|cx| io.poll_shutdown_write(cx))
            .await
            .is_err()
        {
            return;
        }
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let n = future::poll_fn(|cx| {
                let mut scratch = shard.scratch.borrow_mut();
                io.poll_read(cx, &mut scratch)
            })
            .await;
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    future::or(drain, super::exec::sleep(LINGER)).await;
}
