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

use bytes::BytesMut;
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

/// Bytes taken from the core and not yet written.
#[derive(Default)]
struct Pending {
    out: BytesMut,
    written: usize,
}

/// Serves `conn` until it ends, then settles its accounts with the core and the shard.
///
/// An `async move` block rather than an `async fn`: an `async fn` keeps its arguments
/// twice in its state (as captured and as locals), and this state is what every
/// connection's task holds, idle ones included.
// Written out on purpose: see above (the `async fn` form is 408 bytes, this one 264).
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<C: Core, T: Transport>(
    shard: Rc<Shard<C>>,
    conn: ConnId,
    signal: Rc<ConnSignal>,
    mut io: T,
) -> impl std::future::Future<Output = ()> {
    async move {
        let mut pending = Pending::default();
        let ending = future::poll_fn(|cx| {
            signal.register(cx.waker());
            signal.running.set(true);
            let poll = drive(&shard, conn, &signal, &mut io, &mut pending, cx);
            signal.running.set(false);
            poll
        })
        .await;
        shard.forget(conn);
        match ending {
            Ending::Lost => {
                // A connection the core already closed (it failed while flushing) is
                // forgotten by the core; only one it still serves is reported lost.
                if !signal.close.get() || signal.closed_by_runtime.get() {
                    let now = shard.now();
                    shard.core.borrow_mut().connection_lost(conn, now);
                    shard.pump();
                }
                shard.shared.connection_closed();
            }
            Ending::Closed => {
                if signal.closed_by_runtime.get() {
                    let now = shard.now();
                    shard.core.borrow_mut().connection_lost(conn, now);
                    shard.pump();
                }
                // Boxed: the linger state (a timer, the drain loop) would otherwise size every
                // connection's task, idle ones included, for a step only closing ones take.
                Box::pin(linger(&shard, &mut io)).await;
                shard.shared.connection_closed();
            }
            Ending::HandOff(to, received) => match io.into_fd() {
                // Still counted: the connection lives on, on shard `to`.
                Ok(fd) => shard.mesh.push(to, Envelope::Adopt { fd, received }),
                Err(e) => {
                    tracing::warn!(?conn, error = %e, "hand-off failed; closing the connection");
                    shard.shared.connection_closed();
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
    pending: &mut Pending,
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
    pending: &mut Pending,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        if pending.written == pending.out.len() {
            pending.written = 0;
            if signal.writable.replace(false) {
                pending.out = shard.core.borrow_mut().take_outgoing(conn);
            } else if let Some(last) = signal.take_last_bytes() {
                pending.out = last;
            } else {
                return Poll::Ready(Ok(()));
            }
            continue;
        }
        match io.poll_write(cx, &pending.out[pending.written..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                pending.written += n;
                if pending.written == pending.out.len() {
                    // Drop the buffer: an idle connection keeps no write memory.
                    pending.out = BytesMut::new();
                    pending.written = 0;
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
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
