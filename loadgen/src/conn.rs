//! A client's socket, waited for through its core's one epoll instance (culex's own
//! [`Readiness`] and [`TcpTransport`]) instead of a glommio `TcpStream` per socket.
//!
//! Why: the loadgen and the broker it measures share loopback, where the sender's `send`
//! runs the receiver's whole receive path and its wake-up. A glommio stream waits with an
//! io_uring POLL_ADD per socket, and each such wake is task work sent with a signal: an
//! interrupt to the loadgen's core, billed to the broker that sent the data, even while the
//! loadgen is busy. On one epoll per core, an event on a busy core only joins the ready
//! list; one io_uring poll on the epoll fd (armed only while the core waits) is the only
//! wake left. Real clients (mosquitto_pub, paho) wait with epoll or poll too.

use culex::shard::{Readiness, TcpTransport, Transport};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// One connection's byte stream: non-blocking `recv`/`send`, parked in the core's
/// readiness slot when the socket would block. Closing drops the socket.
#[derive(Debug)]
pub struct Conn {
    io: TcpTransport,
}

impl Conn {
    /// Registers a socket whose non-blocking `connect` was started (or has finished).
    ///
    /// The handshake needs no wait of its own: a `send` on a socket still in SYN_SENT says
    /// EAGAIN, the transport then parks for writability, which comes with the handshake's
    /// end (or, refused, an error event that the next `send` reports). So the first write
    /// (the CONNECT) waits for the connect, and the connect latency still counts both.
    pub fn register(socket: socket2::Socket, readiness: &Rc<Readiness>) -> io::Result<Conn> {
        // SAFETY: `into_raw_fd` hands over the only owner of the socket's descriptor; the
        // `OwnedFd` becomes its sole owner and closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) };
        Ok(Conn {
            io: TcpTransport::register(fd, readiness)?,
        })
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io.poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io.poll_write(cx, buf)
    }

    /// Nothing is buffered above the socket.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends the FIN now; the descriptor itself closes when the `Conn` is dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.poll_shutdown_write(cx)
    }
}

/// The core's epoll instance, with room for one socket per client of the core, and its
/// poller task (which runs until the executor ends).
pub fn start_readiness(clients: usize) -> io::Result<Rc<Readiness>> {
    let limit = u32::try_from(clients.max(1)).unwrap_or(u32::MAX);
    let readiness = Rc::new(Readiness::new(limit)?);
    glommio::spawn_local(poll_through_glommio(readiness.clone())).detach();
    Ok(readiness)
}

/// The poller of a glommio core: forever, take the pending events, then wait through
/// glommio until the epoll fd is readable again.
///
/// glommio 0.9 has no public call that polls an arbitrary descriptor, but its streams arm a
/// poll on theirs when made, and a read waits for that poll. So a fresh `dup` of the epoll
/// fd goes into a glommio `UnixStream`, which is read: once the poll fired the read fails
/// (ENOTSOCK: it is no socket), which means "ready". A stream cannot be re-armed after
/// that, hence a new `dup` per wait: `fcntl`, a failing `recvfrom` and a `close` per sleep
/// of the core, which only a core that sleeps pays. (The broker's shards run their own
/// executor, whose sleep is the `epoll_wait` itself.)
async fn poll_through_glommio(readiness: Rc<Readiness>) {
    let mut byte = [0u8; 1];
    loop {
        readiness.harvest();
        // SAFETY: F_DUPFD_CLOEXEC on the epoll fd `readiness` owns; it touches no memory.
        let dup = unsafe { libc::fcntl(readiness.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            let e = io::Error::last_os_error();
            eprintln!("culex-loadgen: cannot duplicate the epoll fd ({e}); polling it by timer");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        }
        // SAFETY: `dup` is a fresh descriptor nothing else owns; the stream takes sole
        // ownership and closes it when dropped, which removes nothing from the epoll
        // instance (`dup` names the epoll file itself, not a registered socket).
        let mut waiter = unsafe { glommio::net::UnixStream::from_raw_fd(dup) };
        // Err(ENOTSOCK) once the poll fired; Ok never comes (it is no socket).
        let _ = waiter.read(&mut byte).await;
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1 inside a glommio executor, as the loadgen runs them.
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};

    /// A non-blocking connect begun as `client::connect` begins it.
    fn connecting(addr: SocketAddr) -> Socket {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket.set_nonblocking(true).expect("non-blocking");
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => panic!("connect: {e}"),
        }
        socket
    }

    fn in_executor<T, F, Fut>(f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
        T: Send + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("executor ran")
    }

    /// The first write waits for the handshake; bytes then go both ways, and closing sends
    /// the FIN the peer reads as end of stream.
    #[test]
    fn a_connection_carries_bytes_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("addr");
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut hello = [0u8; 5];
            s.read_exact(&mut hello).expect("read");
            s.write_all(b"world").expect("write");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("read to the FIN");
            (hello, rest)
        });
        let got = in_executor(move || async move {
            let readiness = start_readiness(1).expect("epoll");
            let mut conn = Conn::register(connecting(addr), &readiness).expect("register");
            conn.write_all(b"hello").await.expect("write");
            let mut world = [0u8; 5];
            conn.read_exact(&mut world).await.expect("read");
            conn.write_all(b"bye").await.expect("write");
            conn.close().await.expect("close");
            world
        });
        assert_eq!(&got, b"world");
        let (hello, rest) = peer.join().expect("peer");
        assert_eq!(&hello, b"hello");
        assert_eq!(rest, b"bye");
    }

    /// Nobody listens: the write that waited for the handshake reports the refusal (the
    /// loadgen counts it as `connect: ConnectionRefused`).
    #[test]
    fn a_refused_connect_fails_the_first_write() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .expect("listen")
            .local_addr()
            .expect("addr");
        // The listener is gone: the port refuses.
        let kind = in_executor(move || async move {
            let readiness = start_readiness(1).expect("epoll");
            let mut conn = Conn::register(connecting(addr), &readiness).expect("register");
            conn.write_all(b"hello").await.map_err(|e| e.kind())
        });
        assert_eq!(kind, Err(io::ErrorKind::ConnectionRefused));
    }
}
