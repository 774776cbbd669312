//! The byte pipe a connection reads and writes: plain TCP today; TLS and WebSocket
//! implement the same [`Transport`] later without touching the connection driver.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A connection's byte stream, polled by the connection driver on its executor.
pub trait Transport: Sized + 'static {
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

/// Plain TCP on a glommio stream (readiness-based: the read buffer is only borrowed during
/// the `recv`, so an idle connection pins none).
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Wraps an accepted stream. TCP_NODELAY comes with it from the listening socket
    /// (see [`super::listener::listen`]), not from a `setsockopt` per connection.
    pub fn new(stream: TcpStream) -> TcpTransport {
        TcpTransport { stream }
    }

    /// Adopts a socket handed over by another shard.
    pub fn from_fd(fd: OwnedFd) -> TcpTransport {
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        // SAFETY: `raw` comes from an `OwnedFd` we just consumed, so it is an open socket
        // descriptor that nothing else owns or will close; the stream takes sole ownership.
        let stream = unsafe { TcpStream::from_raw_fd(raw) };
        TcpTransport { stream }
    }
}

impl Transport for TcpTransport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }

    fn into_fd(self) -> io::Result<OwnedFd> {
        // glommio's stream cannot give its descriptor up, so duplicate it and let the
        // stream close the original (with its pending readiness poll) when dropped.
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the stream keeps open for the
        // duration of the call; it touches no memory of ours.
        let dup = unsafe { libc::fcntl(self.stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is a fresh descriptor returned by the kernel, owned by no one else.
        Ok(unsafe { OwnedFd::from_raw_fd(dup) })
    }
}
