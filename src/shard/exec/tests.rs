//! The executor on real threads and a real epoll: task order, timers, the doorbell, and
//! the parked/push race that must never lose a wake-up.

use std::sync::mpsc;

use super::*;
use crate::mesh::Doorbell;

/// An executor over a fresh epoll with `doorbell` registered in it.
fn executor(doorbell: &Doorbell) -> Executor {
    let readiness = Rc::new(Readiness::new(16).expect("epoll"));
    readiness
        .register(doorbell.fd())
        .expect("watch the doorbell");
    Executor::new(readiness, Duration::ZERO, doorbell.parked())
}

/// Runs `f` on a thread of its own and fails the test if it has not finished in
/// `limit`: a lost wake-up shows as a thread blocked forever in `epoll_wait`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the executor finished in time (no lost wake-up)")
}

/// A cross-thread queue as the mesh uses one: the executor's wake check wakes the task
/// waiting in `recv` when a message is there.
struct Inbox {
    rx: Rc<crossbeam_channel::Receiver<u32>>,
    waiting: Rc<Cell<Option<Waker>>>,
}

impl Inbox {
    /// Installs the wake check for `rx` on the current executor.
    fn install(rx: crossbeam_channel::Receiver<u32>) -> Inbox {
        let inbox = Inbox {
            rx: Rc::new(rx),
            waiting: Rc::new(Cell::new(None)),
        };
        let (rx, waiting) = (inbox.rx.clone(), inbox.waiting.clone());
        set_wake_check(Box::new(move || {
            if rx.is_empty() {
                return false;
            }
            if let Some(w) = waiting.take() {
                w.wake();
            }
            true
        }));
        inbox
    }

    async fn recv(&self) -> u32 {
        std::future::poll_fn(|cx| match self.rx.try_recv() {
            Ok(v) => Poll::Ready(v),
            Err(_) => {
                self.waiting.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

#[test]
fn woken_tasks_run_in_order_and_main_returns() {
    let order = within(Duration::from_secs(10), || {
        let bell = Doorbell::new().expect("eventfd");
        executor(&bell).run(async {
            let order = Rc::new(RefCell::new(Vec::new()));
            for i in 0..3 {
                let order = order.clone();
                spawn(async move {
                    order.borrow_mut().push(i);
                    yield_now().await;
                    order.borrow_mut().push(10 + i);
                });
            }
            yield_now().await;
            yield_now().await;
            let v = order.borrow().clone();
            v
        })
    });
    assert_eq!(order, vec![0, 1, 2, 10, 11, 12]);
}

#[test]
fn timers_fire_in_deadline_order_not_arming_order() {
    let (order, elapsed, stats) = within(Duration::from_secs(10), || {
        let bell = Doorbell::new().expect("eventfd");
        executor(&bell).run(async {
            let start = Instant::now();
            let order = Rc::new(RefCell::new(Vec::new()));
            for ms in [30u64, 10, 20, 10] {
                let order = order.clone();
                spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(ms);
                });
            }
            sleep(Duration::from_millis(40)).await;
            let v = order.borrow().clone();
            (v, start.elapsed(), stats())
        })
    });
    assert_eq!(order, vec![10, 10, 20, 30]);
    assert!(elapsed >= Duration::from_millis(40), "{elapsed:?}");
    assert_eq!(stats.timers_fired_count, 5);
    // Idle between timers: the executor slept in epoll_wait, it did not spin.
    assert!(stats.parks_count >= 3, "{stats:?}");
    assert!(stats.parks_count < 100, "{stats:?}");
}

/// A dropped timer releases its task at once and fires nothing.
#[test]
fn a_dropped_sleep_wakes_nobody() {
    let polls = within(Duration::from_secs(10), || {
        let bell = Doorbell::new().expect("eventfd");
        executor(&bell).run(async {
            let polls = Rc::new(Cell::new(0u32));
            {
                let polls = polls.clone();
                spawn(async move {
                    let short = sleep(Duration::from_millis(5));
                    let long = sleep(Duration::from_secs(60));
                    futures_lite::future::or(
                        async {
                            short.await;
                        },
                        async {
                            long.await;
                        },
                    )
                    .await;
                    polls.set(polls.get() + 1);
                });
            }
            sleep(Duration::from_millis(30)).await;
            polls.get()
        })
    });
    assert_eq!(polls, 1);
}

/// A task parked while every queue was empty is woken from another thread: the producer
/// pushes and rings the parked shard's doorbell; the wake check finds the message.
#[test]
fn another_thread_wakes_a_parked_executor_through_the_doorbell() {
    let bell = Arc::new(Doorbell::new().expect("eventfd"));
    let (tx, rx) = crossbeam_channel::bounded::<u32>(4);
    let producer = {
        let bell = bell.clone();
        std::thread::spawn(move || {
            // Long enough for the executor to park.
            std::thread::sleep(Duration::from_millis(50));
            tx.send(7).expect("the executor is running");
            bell.ring_if_parked()
        })
    };
    let (got, stats) = within(Duration::from_secs(10), move || {
        executor(&bell).run(async move {
            let inbox = Inbox::install(rx);
            let got = inbox.recv().await;
            (got, stats())
        })
    });
    assert_eq!(got, 7);
    assert!(
        producer.join().expect("producer"),
        "the executor was parked: rung"
    );
    assert!(stats.parks_count >= 1, "{stats:?}");
}

/// The parked/push race, many times over: a producer pushes one message at a time with
/// pauses of varying length, ringing only when it sees the consumer parked; the consumer
/// parks between messages. Every message arrives, and the consumer never sleeps through
/// one (it would block forever: no timer is pending).
#[test]
fn no_wake_up_is_lost_between_parking_and_pushing() {
    const MESSAGES: u32 = 20_000;
    let bell = Arc::new(Doorbell::new().expect("eventfd"));
    let (tx, rx) = crossbeam_channel::bounded::<u32>(64);
    let producer = {
        let bell = bell.clone();
        std::thread::spawn(move || {
            let mut rings = 0u32;
            for i in 0..MESSAGES {
                tx.send(i).expect("the consumer is running");
                if bell.ring_if_parked() {
                    rings += 1;
                }
                // Mostly back to back, sometimes a pause long enough to park in.
                match i % 97 {
                    0 => std::thread::sleep(Duration::from_micros(200)),
                    n if n % 7 == 0 => std::thread::yield_now(),
                    _ => {}
                }
            }
            rings
        })
    };
    let (count, stats) = within(Duration::from_secs(60), move || {
        executor(&bell).run(async move {
            let inbox = Inbox::install(rx);
            let mut next = 0u32;
            while next < MESSAGES {
                let v = inbox.recv().await;
                assert_eq!(v, next, "in order");
                next += 1;
            }
            (next, stats())
        })
    });
    let rings = producer.join().expect("producer");
    assert_eq!(count, MESSAGES);
    assert!(stats.parks_count > 0, "the race was run: {stats:?}");
    assert!(rings > 0);
}

/// A task still parked when `run` returns is dropped then (its waker often sits in
/// another task's state, a cycle that would otherwise leak both).
#[test]
fn unfinished_tasks_are_dropped_when_the_executor_ends() {
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let bell = Doorbell::new().expect("eventfd");
    let flag = Flag(dropped.clone());
    executor(&bell).run(async move {
        spawn(async move {
            let _flag = flag;
            // Parked forever: only the executor's end drops it.
            std::future::pending::<()>().await;
        });
        yield_now().await;
    });
    assert!(dropped.get(), "the pending task's future was dropped");
}

/// Each idle connection holds one task: with `Rc`'s 16 bytes of counts, an 80-byte
/// future (with a niche, as every connection future has: its `Rc`s) makes a 112-byte
/// block (glommio's was 128).
#[test]
fn a_task_header_is_16_bytes() {
    #[allow(dead_code)]
    struct Eighty(Box<u8>, [u64; 9]);
    impl Future for Eighty {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }
    assert_eq!(std::mem::size_of::<Task<Eighty>>(), 16 + 80);
}
