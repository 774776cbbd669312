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
/// Written as a plain function returning an `async move` block over one [`Serving`]
/// value: an `async fn` keeps its arguments twice in its state (as captured and as
/// locals), and a `poll_fn` closure over the parts holds a reference to each. This state
/// is what every connection's task holds, idle ones included (408 bytes as an `async fn`,
/// 192 like this).
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<C: Core, T: Transport>(
    shard: Rc<Shard<C>>,
    conn: ConnId,
    signal: Rc<ConnSignal>,
    io: T,
) -> impl std::future::Future<Output = ()> {
    let mut s = Serving {
        shard,
        conn,
        signal,
        io,
        pending: BytesMut::new(),
    };
    async move {
        let ending = future::poll_fn(|cx| s.poll(cx)).await;
        s.shard.forget(s.conn);
        match ending {
            Ending::Lost => {
                // A connection the core already closed (it failed while flushing) is
                // forgotten by the core; only one it still serves is reported lost.
                if !s.signal.close.get() || s.signal.closed_by_runtime.get() {
                    let now = s.shard.now();
                    s.shard.core.borrow_mut().connection_lost(s.conn, now);
                    s.shard.pump();
                }
                s.shard.shared.connection_closed();
            }
            Ending::Closed => {
                if s.signal.closed_by_runtime.get() {
                    let now = s.shard.now();
                    s.shard.core.borrow_mut().connection_lost(s.conn, now);
                    s.shard.pump();
                }
                // A task of its own: the linger state (a timer, the drain loop) would
                // otherwise size every connection's task, idle ones included, for a step
                // only closing ones take.
                glommio::spawn_local(linger_then_close(s.shard, s.io)).detach();
            }
            Ending::HandOff(to, received) => match s.io.into_fd() {
                // Still counted: the connection lives on, on shard `to`.
                Ok(fd) => s.shard.mesh.push(to, Envelope::Adopt { fd, received }),
                Err(e) => {
                    let conn = s.conn;
                    tracing::warn!(?conn, error = %e, "hand-off failed; closing the connection");
                    s.shard.shared.connection_closed();
                }
            },
        }
    }
}

/// A connection's task state while it serves: everything it owns, in one place.
struct Serving<C: Core, T> {
    shard: Rc<Shard<C>>,
    conn: ConnId,
    signal: Rc<ConnSignal>,
    io: T,
    /// Bytes taken from the core and not yet written (written ones are advanced past).
    pending: BytesMut,
}

impl<C: Core, T: Transport> Serving<C, T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        self.signal.register(cx.waker());
        self.signal.running.set(true);
        let poll = drive(
            &self.shard,
            self.conn,
            &self.signal,
            &mut self.io,
            &mut self.pending,
            cx,
        );
        self.signal.running.set(false);
        poll
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
            if signal.paused_in_epoch.replace(Some(epoch)) != Some(epoch) {
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
    future::or(drain, glommio::timer::sleep(LINGER)).await;
}
