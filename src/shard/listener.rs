//! Accepting: every shard binds its own socket on every listener address with
//! SO_REUSEPORT, so the kernel spreads new connections over the shards and no accept
//! crosses a core. `max_connections` is counted across shards with one atomic.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;
use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use super::core::Core;
use super::runtime::Shard;
use super::transport::TcpTransport;

/// Pending connections the kernel queues per shard's socket before refusing more: the
/// usual `somaxconn`, so bursts of connects wait instead of failing.
const LISTEN_BACKLOG: i32 = 4096;
/// Pause after an accept error (EMFILE, ENFILE, ENOMEM) so a full descriptor table does
/// not turn the accept loop into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

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

/// This shard's listening socket for `addr`, as a glommio listener.
///
/// TCP_NODELAY is set here, once: accepted sockets inherit it from the listener (Linux
/// copies the listener's TCP state into each new socket), which spares every connect a
/// `setsockopt`. MQTT packets are small and latency-sensitive, and writes are already
/// batched per tick.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = bind_socket(addr)?;
    socket.set_nodelay(true)?;
    socket.listen(LISTEN_BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by a bound, listening socket we own; the listener
    // becomes its only owner and closes it when dropped.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Accepts until the shard stops.
pub async fn accept_loop<C: Core>(shard: Rc<Shard<C>>, listener: TcpListener) {
    // Accept errors in a row: a full descriptor table fails every accept until a
    // connection closes, so it is logged when it starts and when it ends, not every pause.
    let mut failures_count: u64 = 0;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shard.stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                if failures_count > 0 {
                    tracing::warn!(failures_count, "accepting again after failed accepts");
                    failures_count = 0;
                }
                if shard.shared.try_open_connection() {
                    shard.open(TcpTransport::new(stream), None);
                } else {
                    // At max_connections: close before reading anything, as Mosquitto
                    // does; the core never sees it.
                    tracing::debug!("max_connections reached, refusing a connection");
                }
            }
            Some(Err(e)) => {
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
                glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections get TCP_NODELAY from the listening socket, with no call of their own.
    #[test]
    fn accepted_connections_inherit_nodelay() {
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 * 1024)
            .spawn(|| async {
                let listener = listen("127.0.0.1:0".parse().expect("literal address"))
                    .expect("listen on loopback");
                let addr = listener.local_addr().expect("bound");
                let client = std::thread::spawn(move || std::net::TcpStream::connect(addr));
                let accepted = listener.accept().await.expect("accept");
                let _client = client.join().expect("client thread").expect("connect");
                accepted.nodelay().expect("getsockopt")
            })
            .expect("executor starts");
        assert!(handle.join().expect("executor runs"));
    }
}
