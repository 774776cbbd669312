//! Accepting: every shard binds its own socket on every listener address with
//! SO_REUSEPORT, so the kernel spreads new connections over the shards and no accept
//! crosses a core. `max_connections` is counted across shards with one atomic.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;
use socket2::{Domain, Protocol, Socket, Type};

use super::core::Core;
use super::readiness::READABLE;
use super::runtime::Shard;
use super::transport::TcpTransport;

/// Pending connections the kernel queues per shard's socket before refusing more: the
/// usual `somaxconn`, so bursts of connects wait instead of failing.
const LISTEN_BACKLOG: i32 = 4096;
/// Seconds the kernel holds a connection that has sent nothing before queueing it for
/// `accept` regardless (see [`set_defer_accept`]).
const DEFER_ACCEPT_S: libc::c_int = 1;
/// Pause after an accept error (EMFILE, ENFILE, ENOMEM) so a full descriptor table does
/// not turn the accept loop into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Connections accepted per turn of the accept loop before it lets other tasks run.
const ACCEPT_BUDGET: u32 = 64;

/// A socket bound to `addr` with SO_REUSEPORT (so every shard can bind it) and
/// SO_REUSEADDR (so a restart is not refused while old connections sit in TIME_WAIT).
/// IPv6 sockets are v6-only, so `[::1]` and `127.0.0.1` can both be listened on.
pub fn bind_socket(addr: SocketAddr) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// This shard's socket for `addr`, bound and set up but not yet listening (see
/// [`start_listening`]), non-blocking, to be registered with the shard's epoll by
/// [`accept_loop`].
///
/// TCP_NODELAY is set here, once: accepted sockets inherit it from the listener (Linux
/// copies the listener's TCP state into each new socket), which spares every connect a
/// `setsockopt`. MQTT packets are small and latency-sensitive, and writes are already
/// batched per tick.
pub fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let socket = bind_socket(addr)?;
    socket.set_nodelay(true)?;
    set_defer_accept(&socket)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// From here on the kernel queues connections for the socket.
pub fn start_listening(socket: &Socket) -> io::Result<()> {
    socket.listen(LISTEN_BACKLOG)
}

/// [`bind`] and [`start_listening`] at once (for tests and benches).
#[cfg(test)]
pub fn listen(addr: SocketAddr) -> io::Result<Socket> {
    let socket = bind(addr)?;
    start_listening(&socket)?;
    Ok(socket)
}

/// TCP_DEFER_ACCEPT: the kernel queues a connection for `accept` once its first bytes
/// (the CONNECT: MQTT clients speak first) have arrived, so the shard accepts and reads it
/// in one wake-up instead of accepting, finding nothing to read, and waking again.
/// A client that stays silent is accepted after about this long anyway, and then meets
/// `connect_timeout_ms` as before.
fn set_defer_accept(socket: &Socket) -> io::Result<()> {
    let seconds: libc::c_int = DEFER_ACCEPT_S;
    // SAFETY: setsockopt reads one c_int at the pointer, which is ours and live for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts until the shard stops: woken by the listener's readiness edge, it accepts
/// until EAGAIN (every connect queued since, one `accept4` each, no `fcntl`), with a
/// budget per turn so a connect storm does not starve the connections already open.
pub async fn accept_loop<C: Core>(shard: Rc<Shard<C>>, listener: Socket) {
    let readiness = shard.readiness.clone();
    let key = match readiness.register(listener.as_raw_fd()) {
        Ok(key) => key,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the listening socket; not accepting");
            return;
        }
    };
    // Accept errors in a row: a full descriptor table fails every accept until a
    // connection closes, so it is logged when it starts and when it ends, not every pause.
    let mut failures_count: u64 = 0;
    'serve: loop {
        let ready = future::or(
            async {
                future::poll_fn(|cx| readiness.poll_ready(key, READABLE, cx)).await;
                true
            },
            async {
                shard.stop.wait().await;
                false
            },
        )
        .await;
        if !ready {
            break 'serve;
        }
        for _ in 0..ACCEPT_BUDGET {
            match accept(&listener) {
                Ok(Some(fd)) => {
                    if failures_count > 0 {
                        tracing::warn!(failures_count, "accepting again after failed accepts");
                        failures_count = 0;
                    }
                    if !shard.shared.try_open_connection() {
                        // At max_connections: close before reading anything, as
                        // Mosquitto does; the core never sees it.
                        tracing::debug!("max_connections reached, refusing a connection");
                        continue;
                    }
                    match TcpTransport::register(fd, &readiness) {
                        Ok(io) => shard.open(io, None),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot watch an accepted socket; closing it");
                            shard.shared.connection_closed();
                        }
                    }
                }
                Ok(None) => {
                    readiness.clear(key, READABLE);
                    continue 'serve;
                }
                Err(e) => {
                    if failures_count == 0 {
                        tracing::warn!(
                            error = %e,
                            connections = shard.open_count(),
                            "accept failed; retrying every {ACCEPT_ERROR_PAUSE:?} until it works"
                        );
                    } else {
                        tracing::debug!(error = %e, failures_count, "accept failed again");
                    }
                    failures_count += 1;
                    // The listener stays flagged readable: the pending connects are
                    // retried after the pause without waiting for a new edge.
                    super::exec::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue 'serve;
                }
            }
        }
        // Budget spent, connects may remain (still flagged readable): let the others run.
        futures_lite::future::yield_now().await;
    }
    readiness.release(key);
}

/// One `accept4`: a non-blocking, close-on-exec socket, `None` when none is pending.
/// A connection that failed before it was accepted (ECONNABORTED) is skipped.
fn accept(listener: &Socket) -> io::Result<Option<OwnedFd>> {
    loop {
        // SAFETY: null address pointers ask for no peer address; the descriptor is our
        // listening socket, open for the call.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor from the kernel that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) | Some(libc::ECONNABORTED) => {}
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Connections get TCP_NODELAY from the listening socket, with no call of their own.
    #[test]
    fn accepted_connections_inherit_nodelay() {
        let (listener, addr) = loopback_listener();
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        // MQTT clients speak first; the listener defers the accept until they do.
        client.write_all(b"x").expect("send");
        let accepted = accept_within(&listener, Duration::from_secs(5)).expect("accepted");
        assert!(accepted.nodelay().expect("getsockopt"));
        assert!(
            accepted.nonblocking().expect("fcntl"),
            "accept4 made it non-blocking"
        );
    }

    /// TCP_DEFER_ACCEPT: a connection that has sent nothing is not handed to `accept`
    /// (no wake-up for a socket with nothing to read); its first bytes make it acceptable,
    /// and they are there to read at once.
    #[test]
    fn a_connection_is_accepted_with_its_first_bytes() {
        let (listener, addr) = loopback_listener();
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        // Well within the deferral (DEFER_ACCEPT_S, and the kernel's SYN-ACK retransmit).
        assert!(
            accept_within(&listener, Duration::from_millis(300)).is_none(),
            "accepted before the client sent anything"
        );
        client.write_all(b"CONNECT").expect("send");
        let accepted = accept_within(&listener, Duration::from_secs(5)).expect("accepted");
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        let n = accepted
            .recv(&mut buf)
            .expect("the bytes came with the connection");
        assert_eq!(n, 7);
    }

    /// A listening socket on a free loopback port, and its address.
    fn loopback_listener() -> (Socket, std::net::SocketAddr) {
        let listener =
            listen("127.0.0.1:0".parse().expect("literal address")).expect("listen on loopback");
        let addr = listener
            .local_addr()
            .expect("bound")
            .as_socket()
            .expect("an IP socket");
        (listener, addr)
    }

    /// Polls `accept` until it yields a connection or `within` has passed.
    fn accept_within(listener: &Socket, within: Duration) -> Option<Socket> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match accept(listener).expect("accept4") {
                Some(fd) => return Some(Socket::from(fd)),
                None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                None => return None,
            }
        }
    }
}
