//! The measurement behind accepting on every shard (SO_REUSEPORT) rather than in one
//! acceptor that deals sockets out (`shared_accept`): connections accepted per second by
//! two executors on CPU 0, from four client threads. Ignored by default; run with
//! `cargo test --release --lib shard::accept_bench -- --ignored --nocapture`.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::net::{AcceptedTcpStream, TcpListener};
use glommio::{LocalExecutorBuilder, Placement};

use super::listener;

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 1500;

/// The broker's listening socket, made blocking again and given to glommio: this bench
/// compares glommio's two ways of accepting (io_uring accept), not the broker's epoll.
fn glommio_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = listener::listen(addr)?;
    socket.set_nonblocking(false)?;
    // SAFETY: `into_raw_fd` releases sole ownership of a listening socket; the glommio
    // listener becomes its only owner.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

fn executor() -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Fixed(0)).io_memory(64 * 1024)
}

/// Connects `CLIENTS * PER_CLIENT` times and waits until `accepted` counts them all.
fn drive_clients(addr: SocketAddr, accepted: &AtomicU64) -> f64 {
    let total = (CLIENTS * PER_CLIENT) as u64;
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..PER_CLIENT {
                    drop(TcpStream::connect(addr).expect("the listener accepts"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread finishes");
    }
    while accepted.load(Ordering::Relaxed) < total {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "accepts stalled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Two executors, each with its own SO_REUSEPORT socket on the same port.
fn reuseport() -> f64 {
    let probe = listener::bind_socket("127.0.0.1:0".parse().expect("literal address"))
        .expect("loopback binds");
    let addr = probe
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound");
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (accepted, stop, ready) = (accepted.clone(), stop.clone(), ready_tx.clone());
            executor()
                .spawn(move || async move {
                    let l = glommio_listener(addr).expect("reuseport bind");
                    ready.send(()).expect("bench waits");
                    accept_until(&l, &accepted, &stop, |s| drop(s.bind_to_executor())).await;
                })
                .expect("executor starts")
        })
        .collect();
    for _ in 0..2 {
        ready_rx.recv().expect("executors start");
    }
    drop(probe);
    let rate = drive_clients(addr, &accepted);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("executor ends");
    }
    rate
}

/// One acceptor dealing every other socket to a second executor over a shared channel.
fn shared_accept() -> f64 {
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = shared_channel::new_bounded::<AcceptedTcpStream>(1024);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let worker = {
        let accepted = accepted.clone();
        executor()
            .spawn(move || async move {
                let rx = rx.connect().await;
                while let Some(s) = rx.recv().await {
                    drop(s.bind_to_executor());
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("executor starts")
    };
    let acceptor = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        executor()
            .spawn(move || async move {
                let tx = tx.connect().await;
                let l = glommio_listener("127.0.0.1:0".parse().expect("literal address"))
                    .expect("loopback binds");
                addr_tx
                    .send(l.local_addr().expect("bound"))
                    .expect("bench waits");
                let mut turn = 0u64;
                while let Some(accepted_socket) = accept_or_stop(&l, &stop).await {
                    let Ok(s) = accepted_socket else { continue };
                    turn += 1;
                    if turn % 2 == 0 {
                        drop(s.bind_to_executor());
                        accepted.fetch_add(1, Ordering::Relaxed);
                    } else if tx.send(s).await.is_err() {
                        return;
                    }
                }
                tx.close();
            })
            .expect("executor starts")
    };
    let addr = addr_rx.recv().expect("acceptor listens");
    let rate = drive_clients(addr, &accepted);
    stop.store(true, Ordering::Relaxed);
    acceptor.join().expect("acceptor ends");
    worker.join().expect("worker ends");
    rate
}

async fn accept_until(
    l: &TcpListener,
    accepted: &AtomicU64,
    stop: &AtomicBool,
    take: impl Fn(AcceptedTcpStream),
) {
    while let Some(accepted_socket) = accept_or_stop(l, stop).await {
        if let Ok(s) = accepted_socket {
            take(s);
            accepted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The next accepted socket, or `None` once `stop` is set (checked every 5 ms).
async fn accept_or_stop(
    l: &TcpListener,
    stop: &AtomicBool,
) -> Option<glommio::Result<AcceptedTcpStream, ()>> {
    futures_lite::future::or(async { Some(l.shared_accept().await) }, async {
        while !stop.load(Ordering::Relaxed) {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        None
    })
    .await
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn reuseport_vs_shared_accept() {
    let a = reuseport();
    let b = shared_accept();
    println!("accepts/s, 2 executors on CPU 0: SO_REUSEPORT {a:.0}, shared_accept {b:.0}");
    assert!(a > 0.0 && b > 0.0);
}
