//! The measurement behind the mesh's choice of queue: glommio's `shared_channel` against
//! `crossbeam-channel`, between two executors pinned to CPUs 0 and 1. Ignored by default
//! (it wants quiet cores); run with
//! `cargo test --release --lib mesh::bench -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

const MESSAGES: u64 = 2_000_000;
const BATCH: u64 = 64;
const ROUND_TRIPS: u32 = 20_000;

fn placement(cpu: usize) -> Placement {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Placement::Fixed(cpu % cpus)
}

fn builder(cpu: usize) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement(cpu)).io_memory(64 * 1024)
}

/// Batches of `BATCH` numbers through a shared_channel; returns messages per second.
fn glommio_throughput() -> f64 {
    let (tx, rx) = shared_channel::new_bounded::<Vec<u64>>(1024);
    let start = Instant::now();
    let sender = builder(0)
        .spawn(move || async move {
            let tx = tx.connect().await;
            let mut next = 0;
            while next < MESSAGES {
                let batch: Vec<u64> = (next..next + BATCH).collect();
                next += BATCH;
                tx.send(batch)
                    .await
                    .expect("receiver lives until all arrived");
            }
        })
        .expect("executor starts");
    let receiver = builder(1)
        .spawn(move || async move {
            let rx = rx.connect().await;
            let mut sum = 0u64;
            while let Some(batch) = rx.recv().await {
                sum += batch.iter().sum::<u64>();
            }
            sum
        })
        .expect("executor starts");
    sender.join().expect("sender finishes");
    let sum = receiver.join().expect("receiver finishes");
    assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2);
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

/// The same through crossbeam: the receiving executor has no way to be woken by it, so
/// it polls (yielding between polls), which is the cost of this option.
fn crossbeam_throughput() -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u64>>(1024);
    let start = Instant::now();
    let sender = builder(0)
        .spawn(move || async move {
            let mut next = 0;
            while next < MESSAGES {
                let mut batch: Vec<u64> = (next..next + BATCH).collect();
                loop {
                    match tx.try_send(batch) {
                        Ok(()) => break,
                        Err(e) => {
                            batch = e.into_inner();
                            glommio::executor().yield_now().await;
                        }
                    }
                }
                next += BATCH;
            }
        })
        .expect("executor starts");
    let receiver = builder(1)
        .spawn(move || async move {
            let mut sum = 0u64;
            loop {
                match rx.try_recv() {
                    Ok(batch) => sum += batch.iter().sum::<u64>(),
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        glommio::executor().yield_now().await
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
            sum
        })
        .expect("executor starts");
    sender.join().expect("sender finishes");
    let sum = receiver.join().expect("receiver finishes");
    assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2);
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

/// One message there and back, `ROUND_TRIPS` times, with shared_channel (receivers park
/// and are woken by eventfd). Returns the mean one-way latency.
fn glommio_latency() -> Duration {
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u32>(16);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u32>(16);
    let echo = builder(1)
        .spawn(move || async move {
            let rx = ping_rx.connect().await;
            let tx = pong_tx.connect().await;
            while let Some(n) = rx.recv().await {
                tx.send(n).await.expect("pinger waits for the pong");
            }
        })
        .expect("executor starts");
    let pinger = builder(0)
        .spawn(move || async move {
            let tx = ping_tx.connect().await;
            let rx = pong_rx.connect().await;
            let start = Instant::now();
            for i in 0..ROUND_TRIPS {
                tx.send(i).await.expect("echo lives");
                assert_eq!(rx.recv().await, Some(i));
            }
            start.elapsed()
        })
        .expect("executor starts");
    let elapsed = pinger.join().expect("pinger finishes");
    echo.join().expect("echo finishes");
    elapsed / (2 * ROUND_TRIPS)
}

/// The same with crossbeam and polling receivers.
fn crossbeam_latency() -> Duration {
    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u32>(16);
    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u32>(16);
    let echo = builder(1)
        .spawn(move || async move {
            loop {
                match ping_rx.try_recv() {
                    Ok(n) => pong_tx.send(n).expect("pinger waits for the pong"),
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        glommio::executor().yield_now().await
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
        })
        .expect("executor starts");
    let pinger = builder(0)
        .spawn(move || async move {
            let start = Instant::now();
            for i in 0..ROUND_TRIPS {
                ping_tx.send(i).expect("echo lives");
                loop {
                    match pong_rx.try_recv() {
                        Ok(n) => {
                            assert_eq!(n, i);
                            break;
                        }
                        Err(_) => glommio::executor().yield_now().await,
                    }
                }
            }
            start.elapsed()
        })
        .expect("executor starts");
    let elapsed = pinger.join().expect("pinger finishes");
    echo.join().expect("echo finishes");
    elapsed / (2 * ROUND_TRIPS)
}

#[test]
#[ignore = "benchmark: wants two quiet cores; run by hand with --ignored --nocapture"]
fn shared_channel_vs_crossbeam() {
    let g = glommio_throughput();
    let c = crossbeam_throughput();
    let gl = glommio_latency();
    let cl = crossbeam_latency();
    println!("throughput, batches of {BATCH}: shared_channel {g:.0} msg/s, crossbeam {c:.0} msg/s");
    println!("one-way latency: shared_channel {gl:?}, crossbeam (polling) {cl:?}");
    assert!(g > 0.0 && c > 0.0);
}

/// Wake-ups: the receiver parks between messages; each message must wake it promptly.
/// Prints the worst delivery delay over `ROUNDS` messages sent 5 ms apart.
#[test]
#[ignore = "measurement; run by hand with --ignored --nocapture"]
fn parked_receiver_wakes_per_message() {
    const ROUNDS: u32 = 200;
    for (a, b) in [(0, 1), (1, 1)] {
        let (tx, rx) = shared_channel::new_bounded::<Instant>(16);
        let receiver = builder(b)
            .spawn(move || async move {
                let rx = rx.connect().await;
                let mut worst = Duration::ZERO;
                let mut slow = 0;
                while let Some(sent) = rx.recv().await {
                    let d = sent.elapsed();
                    worst = worst.max(d);
                    if d > Duration::from_millis(5) {
                        slow += 1;
                    }
                }
                (worst, slow)
            })
            .expect("executor starts");
        let sender = builder(a)
            .spawn(move || async move {
                let tx = tx.connect().await;
                for _ in 0..ROUNDS {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    tx.send(Instant::now()).await.expect("receiver lives");
                }
            })
            .expect("executor starts");
        sender.join().expect("sender finishes");
        let (worst, slow) = receiver.join().expect("receiver finishes");
        println!("cpus {a}->{b}: worst wake-up {worst:?}, {slow} of {ROUNDS} over 5 ms");
    }
}
