//! The byte pipe a connection reads and writes: plain TCP today; TLS and WebSocket
//! implement the same [`Transport`] later without touching the connection driver.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use super::readiness::{Readiness, SlotKey, READABLE, WRITABLE};

/// A connection's byte stream, polled by the connection driver on its executor.
pub trait Transport: Sized + Unpin + 'static {
    /// Read into `buf` (the shard's scratch buffer, borrowed only for this call).
    /// `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Half-close: no more writes (the peer sees end of stream once it read the rest).
    fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Give up the socket so another shard can adopt it. A transport with state above
    /// the socket (TLS) cannot move and returns an error.
    fn into_fd(self) -> io::Result<OwnedFd>;
}

/// Plain TCP on a non-blocking socket registered with the shard's [`Readiness`]: `recv`
/// and `send` directly, parked in the readiness slot when the socket would block. The
/// read buffer is only borrowed during the `recv`, so an idle connection pins none.
#[derive(Debug)]
pub struct TcpTransport {
    /// `None` only once handed off (see [`Transport::into_fd`]).
    fd: Option<OwnedFd>,
    key: SlotKey,
    readiness: Rc<Readiness>,
}

impl TcpTransport {
    /// Registers a non-blocking socket (accepted here or adopted from another shard) with
    /// the shard's epoll. TCP_NODELAY comes with an accepted socket from the listening
    /// socket (see [`super::listener::bind`]), not from a `setsockopt` per connection.
    pub fn register(fd: OwnedFd, readiness: &Rc<Readiness>) -> io::Result<TcpTransport> {
        let key = readiness.register(fd.as_raw_fd())?;
        Ok(TcpTransport {
            fd: Some(fd),
            key,
            readiness: readiness.clone(),
        })
    }

    fn raw(&self) -> libc::c_int {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Runs `syscall` (one non-blocking `recv` or `send` on the descriptor, returning a
    /// byte count or -1) until it succeeds or fails, or parks the task until the socket's
    /// next `flag` edge when it would block.
    fn until_blocked(
        &mut self,
        flag: u8,
        cx: &Context<'_>,
        mut syscall: impl FnMut(libc::c_int) -> isize,
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.readiness.poll_ready(self.key, flag, cx).is_pending() {
                return Poll::Pending;
            }
            let n = syscall(self.raw());
            if n >= 0 {
                return Poll::Ready(Ok(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.readiness.clear(self.key, flag),
                io::ErrorKind::Interrupted => {}
                _ => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Transport for TcpTransport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        let read = self.until_blocked(READABLE, cx, |fd| {
            // SAFETY: recv writes at most `len` bytes into `buf`, which we borrow mutably
            // for the call; the descriptor is ours and open.
            unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) }
        });
        // A short read emptied the receive queue: data arriving after it raises a new
        // edge, so skip the `recv` that would only say EAGAIN. (A hang-up already seen
        // stays flagged and keeps the slot readable.)
        if let Poll::Ready(Ok(n)) = read {
            if n > 0 && n < len {
                self.readiness.clear(self.key, READABLE);
            }
        }
        read
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.until_blocked(WRITABLE, cx, |fd| {
            // SAFETY: send reads at most `buf.len()` bytes from `buf`, borrowed for the
            // call; the descriptor is ours and open. MSG_NOSIGNAL: a peer that is gone is
            // an error here, not a SIGPIPE for the process.
            unsafe {
                libc::send(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            }
        })
    }

    fn poll_shutdown_write(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // SAFETY: shutdown takes a descriptor we own and a flag; no memory.
        if unsafe { libc::shutdown(self.raw(), libc::SHUT_WR) } < 0 {
            return Poll::Ready(Err(io::Error::last_os_error()));
        }
        Poll::Ready(Ok(()))
    }

    fn into_fd(mut self) -> io::Result<OwnedFd> {
        let fd = self
            .fd
            .take()
            .expect("the descriptor is taken only here, which consumes the transport");
        // Off this shard's epoll before another shard registers it in its own.
        self.readiness.deregister(fd.as_raw_fd(), self.key)?;
        Ok(fd)
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            // Closing the only descriptor of the socket removes it from the epoll
            // instance; free the slot first so no event is delivered for it.
            self.readiness.release(self.key);
            drop(fd);
        }
    }
}
