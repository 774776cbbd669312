//! A shard's executor: one thread, a FIFO run queue of tasks, timers from a heap, and the
//! shard's own epoll ([`Readiness`]) as the reactor. It replaces glommio in the broker:
//! a glommio executor's park and wake-up cost 7 `io_uring_enter`, a `membarrier` and a
//! re-armed poll of the epoll fd (dup, failing recv, close) per sleep; here a sleep is one
//! `epoll_wait`, and a busy shard pays one `epoll_wait(.., 0)` per turn.
//!
//! One turn: run the woken tasks in order, at most [`RUN_BUDGET`] of them; take the
//! socket events (`epoll_wait` with timeout 0 when something is runnable, else until the
//! next timer, or forever); fire the timers that are due. Other threads reach a parked
//! shard only through a doorbell (an eventfd registered in the same epoll, see
//! [`crate::mesh`]): before it blocks, the executor sets its `parked` flag, fences and
//! asks the wake check whether anything arrived meanwhile.
//!
//! Tasks are `Rc`s and their wakers are not thread-safe: a waker used on any thread other
//! than its executor's aborts the process before it touches the task (see `Task::check`).

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use super::readiness::Readiness;

/// Tasks run per turn before the executor looks at its sockets and timers again, so a
/// storm of woken tasks does not starve I/O.
pub const RUN_BUDGET: usize = 256;

/// Every executor gets a distinct id; a task records its executor's, and a waker checks it
/// against the thread's current one.
static NEXT_EXECUTOR_ID: AtomicU32 = AtomicU32::new(1);

/// Distinct ids for the threads that spawn tasks.
static NEXT_THREAD_ID: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// The executor running on this thread, if any (null otherwise).
    static CURRENT: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
    /// This thread's id for task ownership checks (0: not yet given one).
    static THREAD_ID: Cell<u32> = const { Cell::new(0) };
}

/// This thread's id, given on first use.
fn thread_id() -> u32 {
    THREAD_ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// What the executor calls each turn and before it blocks: returns whether work arrived
/// from another thread (the callee wakes the task that takes it).
pub type WakeCheck = Box<dyn Fn() -> bool>;

struct Inner {
    id: u32,
    run_queue: RefCell<VecDeque<Rc<dyn Run>>>,
    /// Every live task, so that the executor can drop the unfinished ones when it ends
    /// (a parked task's waker often sits inside another task's state: a cycle).
    tasks: RefCell<Slab>,
    timers: RefCell<BinaryHeap<TimerEntry>>,
    timer_seq: Cell<u64>,
    readiness: Rc<Readiness>,
    spin: Duration,
    /// Set while the executor may block in `epoll_wait`; producers on other threads read
    /// it to decide whether to ring the doorbell.
    parked: Arc<AtomicBool>,
    wake_check: RefCell<Option<WakeCheck>>,
    /// Counters, read by tests and the shard's closing log line.
    stats: RefCell<ExecStats>,
}

/// What an executor has done, for tests and diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExecStats {
    pub polls_count: u64,
    /// `epoll_wait` calls that could block (the shard slept).
    pub parks_count: u64,
    pub timers_fired_count: u64,
}

/// The executor of one shard thread.
pub struct Executor {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl Executor {
    /// An executor whose reactor is `readiness`; an idle executor polls for `spin` before
    /// it blocks, and sets `parked` while it may block (see [`crate::mesh::Doorbell`]).
    pub fn new(readiness: Rc<Readiness>, spin: Duration, parked: Arc<AtomicBool>) -> Executor {
        Executor {
            inner: Rc::new(Inner {
                id: NEXT_EXECUTOR_ID.fetch_add(1, Ordering::Relaxed),
                run_queue: RefCell::new(VecDeque::new()),
                tasks: RefCell::new(Slab::default()),
                timers: RefCell::new(BinaryHeap::new()),
                timer_seq: Cell::new(0),
                readiness,
                spin,
                parked,
                wake_check: RefCell::new(None),
                stats: RefCell::new(ExecStats::default()),
            }),
        }
    }

    /// Runs `main` and every task it spawns until `main` completes; then drops the tasks
    /// still pending and returns `main`'s output.
    pub fn run<T: 'static>(&self, main: impl Future<Output = T> + 'static) -> T {
        let previous = CURRENT.with(|c| c.replace(Rc::as_ptr(&self.inner)));
        assert!(
            previous.is_null(),
            "one executor per thread: a shard thread runs only its own"
        );
        let out = Rc::new(Cell::new(None));
        {
            let out = out.clone();
            spawn(async move { out.set(Some(main.await)) });
        }
        let result = loop {
            self.run_tasks();
            if let Some(v) = out.take() {
                break v;
            }
            self.poll_io();
        };
        self.drop_tasks();
        CURRENT.with(|c| c.set(std::ptr::null()));
        result
    }

    /// The first half of a turn: run woken tasks, at most a budget of them.
    fn run_tasks(&self) {
        let inner = &*self.inner;
        for _ in 0..RUN_BUDGET {
            let next = inner.run_queue.borrow_mut().pop_front();
            match next {
                Some(task) => {
                    inner.stats.borrow_mut().polls_count += 1;
                    task.run();
                }
                None => break,
            }
        }
    }

    /// The second half: take socket events (blocking if nothing is runnable), fire due
    /// timers, look for work from other threads.
    fn poll_io(&self) {
        let inner = &*self.inner;
        if !inner.run_queue.borrow().is_empty() {
            inner.readiness.wait(0);
        } else {
            self.idle();
        }
        self.fire_timers();
        // Every turn, not only before blocking: a busy shard is never rung.
        self.check_wakes();
    }

    /// Nothing to run: spin for a while if asked, then block until an event, the next
    /// timer, or the doorbell.
    fn idle(&self) {
        let inner = &*self.inner;
        if !inner.spin.is_zero() {
            let until = Instant::now() + inner.spin;
            loop {
                if inner.readiness.wait(0) > 0 || self.check_wakes() || self.timer_due() {
                    return;
                }
                if Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let timeout_ms = self.timeout_ms();
        if timeout_ms == 0 {
            inner.readiness.wait(0);
            return;
        }
        // Dekker with the producers: they push, fence, then read `parked`; we set `parked`,
        // fence, then look at the queues. One of the two sees the other.
        inner.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.check_wakes() {
            inner.parked.store(false, Ordering::Relaxed);
            inner.readiness.wait(0);
            return;
        }
        inner.stats.borrow_mut().parks_count += 1;
        inner.readiness.wait(timeout_ms);
        inner.parked.store(false, Ordering::Relaxed);
    }

    /// Asks the wake check; true if it found (and woke) work.
    fn check_wakes(&self) -> bool {
        match &*self.inner.wake_check.borrow() {
            Some(check) => check(),
            None => false,
        }
    }

    fn timer_due(&self) -> bool {
        match self.inner.timers.borrow().peek() {
            Some(t) => t.deadline <= Instant::now(),
            None => false,
        }
    }

    /// Milliseconds until the next timer, rounded up (waking early would only spin); -1
    /// (forever) without timers.
    fn timeout_ms(&self) -> i32 {
        let timers = self.inner.timers.borrow();
        let Some(next) = timers.peek() else {
            return -1;
        };
        let left = next.deadline.saturating_duration_since(Instant::now());
        let ms = left.as_micros().div_ceil(1000);
        i32::try_from(ms).unwrap_or(i32::MAX)
    }

    fn fire_timers(&self) {
        let inner = &*self.inner;
        if inner.timers.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let entry = {
                let mut timers = inner.timers.borrow_mut();
                match timers.peek() {
                    Some(t) if t.deadline <= now => timers.pop(),
                    _ => None,
                }
            };
            let Some(entry) = entry else { break };
            inner.stats.borrow_mut().timers_fired_count += 1;
            entry.state.fired.set(true);
            if let Some(w) = entry.state.waker.take() {
                w.wake();
            }
        }
    }

    /// Drops every unfinished task's future (which releases the wakers and `Rc`s it held),
    /// one at a time and with no borrow held: a future's drop may spawn or wake.
    fn drop_tasks(&self) {
        loop {
            let all = std::mem::take(&mut *self.inner.tasks.borrow_mut());
            if all.entries.is_empty() {
                break;
            }
            for task in all.entries.into_iter().flatten() {
                task.cancel();
            }
        }
        let queued = std::mem::take(&mut *self.inner.run_queue.borrow_mut());
        drop(queued);
        let timers = std::mem::take(&mut *self.inner.timers.borrow_mut());
        drop(timers);
    }
}

/// Runs `f` with the current thread's executor.
fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> R {
    let ptr = CURRENT.with(Cell::get);
    assert!(!ptr.is_null(), "no shard executor runs on this thread");
    // SAFETY: CURRENT is set only by `Executor::run`, which holds an `Rc` of the `Inner`
    // for as long as it runs and clears CURRENT before it returns; tasks and timers run
    // only inside `run`, on this thread, so the pointer is live and used by this thread
    // alone.
    f(unsafe { &*ptr })
}

/// Sets what the current executor asks each turn and before it blocks (see
/// [`WakeCheck`]).
pub fn set_wake_check(check: WakeCheck) {
    with_current(|inner| *inner.wake_check.borrow_mut() = Some(check));
}

/// What the current executor has done so far.
pub fn stats() -> ExecStats {
    with_current(|inner| *inner.stats.borrow())
}

/// Runs `future` as a task of the current thread's executor; it runs until it completes
/// or the executor ends (detached: nothing waits for it).
pub fn spawn<F: Future<Output = ()> + 'static>(future: F) {
    with_current(|inner| {
        let task = Rc::new(Task {
            state: Cell::new(SCHEDULED),
            thread: thread_id(),
            slot: Cell::new(0),
            future: UnsafeCell::new(Some(future)),
        });
        let slot = inner.tasks.borrow_mut().insert(task.clone());
        task.slot.set(slot);
        inner.run_queue.borrow_mut().push_back(task);
    })
}

/// Lets the other woken tasks run once before this one goes on.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Completes once `duration` has passed (at the first turn after it).
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: Instant::now() + duration,
        state: None,
    }
}

/// A timer: registered with the executor's heap on its first poll.
pub struct Sleep {
    deadline: Instant,
    state: Option<Rc<TimerState>>,
}

#[derive(Default)]
struct TimerState {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(state) = &self.state {
            if state.fired.get() {
                return Poll::Ready(());
            }
            state.waker.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        if self.deadline <= Instant::now() {
            return Poll::Ready(());
        }
        let state = Rc::new(TimerState::default());
        state.waker.set(Some(cx.waker().clone()));
        let deadline = self.deadline;
        with_current(|inner| {
            let seq = inner.timer_seq.get();
            inner.timer_seq.set(seq.wrapping_add(1));
            inner.timers.borrow_mut().push(TimerEntry {
                deadline,
                seq,
                state: state.clone(),
            });
        });
        self.state = Some(state);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // The heap entry stays until its deadline (bounded by time); the task it would
        // wake is released now.
        if let Some(state) = &self.state {
            drop(state.waker.take());
        }
    }
}

/// A heap entry: earliest deadline first, then in the order armed.
struct TimerEntry {
    deadline: Instant,
    seq: u64,
    state: Rc<TimerState>,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && self.seq == other.seq
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// The live tasks: a slab of slots, indexes of free slots reused first. Bounded by the
/// tasks alive (one per connection plus a few per shard).
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Rc<dyn Run>>>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, task: Rc<dyn Run>) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(task);
                i
            }
            None => {
                self.entries.push(Some(task));
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 live tasks")
            }
        }
    }

    fn remove(&mut self, slot: u32) -> Option<Rc<dyn Run>> {
        let taken = self.entries.get_mut(slot as usize)?.take();
        if taken.is_some() {
            self.free.push(slot);
        }
        taken
    }
}

/// The task is in the run queue (a wake-up while it is queued adds nothing).
const SCHEDULED: u8 = 1;
/// The task is being polled (a wake-up then queues it again, to be polled once more).
const RUNNING: u8 = 2;
/// The future completed or was dropped.
const DONE: u8 = 4;

/// A spawned future with its scheduling state. 16 bytes of `Rc` counts, 16 of header,
/// then the future: an 80-byte connection future makes a 112-byte block (glommio's was
/// 128).
struct Task<F> {
    state: Cell<u8>,
    /// The thread that owns it (see `thread_id`); wakers check it (see `Task::check`).
    thread: u32,
    /// Its place in the executor's slab of live tasks.
    slot: Cell<u32>,
    future: UnsafeCell<Option<F>>,
}

/// The type-erased face of a task the executor keeps.
trait Run {
    fn run(self: Rc<Self>);
    /// Drops the future unfinished (the executor is ending).
    fn cancel(self: Rc<Self>);
}

impl<F: Future<Output = ()> + 'static> Task<F> {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        Self::waker_clone,
        Self::waker_wake,
        Self::waker_wake_by_ref,
        Self::waker_drop,
    );

    /// Aborts unless this is the task's own thread. Wakers must be `Send`, but the task's
    /// counts are not atomic: used from another thread, they would race.
    fn check(ptr: *const ()) {
        // SAFETY: `ptr` comes from a waker, which holds a strong count: the task is alive.
        // `thread` is written once, before the task is shared, and only read after, so
        // reading it from any thread is no data race.
        let owner = unsafe { (*(ptr as *const Task<F>)).thread };
        if thread_id() != owner {
            eprintln!("culex: a task's waker was used off its shard's thread; aborting");
            std::process::abort();
        }
    }

    fn raw(task: Rc<Self>) -> RawWaker {
        RawWaker::new(Rc::into_raw(task) as *const (), &Self::VTABLE)
    }

    unsafe fn waker_clone(ptr: *const ()) -> RawWaker {
        Self::check(ptr);
        // SAFETY: `ptr` is an `Rc<Task<F>>` turned raw by `raw` (the vtable is this
        // type's), and this thread owns it (checked).
        unsafe { Rc::increment_strong_count(ptr as *const Task<F>) };
        RawWaker::new(ptr, &Self::VTABLE)
    }

    unsafe fn waker_wake(ptr: *const ()) {
        Self::check(ptr);
        // SAFETY: as in `waker_clone`; waking by value consumes the waker's count.
        let task = unsafe { Rc::from_raw(ptr as *const Task<F>) };
        task.schedule();
    }

    unsafe fn waker_wake_by_ref(ptr: *const ()) {
        Self::check(ptr);
        // SAFETY: as in `waker_clone`; the waker keeps its count, we take one of our own.
        let task = unsafe {
            Rc::increment_strong_count(ptr as *const Task<F>);
            Rc::from_raw(ptr as *const Task<F>)
        };
        task.schedule();
    }

    unsafe fn waker_drop(ptr: *const ()) {
        Self::check(ptr);
        // SAFETY: as in `waker_clone`; dropping the waker releases its count.
        drop(unsafe { Rc::from_raw(ptr as *const Task<F>) });
    }

    /// Queues the task unless it is queued already or done; a task woken while it runs is
    /// queued to run again.
    fn schedule(self: Rc<Self>) {
        let state = self.state.get();
        if state & (SCHEDULED | DONE) != 0 {
            return;
        }
        let current = CURRENT.with(Cell::get);
        if current.is_null() {
            // The executor has ended (a waker dropped or used late): nothing runs it now.
            return;
        }
        self.state.set(state | SCHEDULED);
        // SAFETY: see `with_current`: a non-null CURRENT is this thread's live executor.
        let inner = unsafe { &*current };
        inner.run_queue.borrow_mut().push_back(self);
    }
}

impl<F: Future<Output = ()> + 'static> Run for Task<F> {
    fn run(self: Rc<Self>) {
        let state = self.state.get();
        if state & DONE != 0 {
            return;
        }
        self.state.set((state & !SCHEDULED) | RUNNING);
        // SAFETY: the waker owns one strong count, created here from ours.
        let waker = unsafe { Waker::from_raw(Self::raw(self.clone())) };
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the future is only touched here and in `cancel`, never re-entrantly
        // (a task runs only from the run queue, one at a time, and `RUNNING` tasks are
        // never run or cancelled: `cancel` runs after the run loop), and it never moves
        // out of the `Rc`'s allocation while it is `Some`, so pinning it is sound.
        let poll = unsafe {
            match &mut *self.future.get() {
                Some(f) => Pin::new_unchecked(f).poll(&mut cx),
                None => Poll::Ready(()),
            }
        };
        let state = self.state.get() & !RUNNING;
        if poll.is_ready() {
            self.state.set(DONE);
            // SAFETY: as above; the future is finished and dropped in place.
            unsafe { *self.future.get() = None };
            let slot = self.slot.get();
            let removed = with_current(|inner| inner.tasks.borrow_mut().remove(slot));
            drop(removed);
        } else {
            self.state.set(state);
        }
    }

    fn cancel(self: Rc<Self>) {
        self.state.set(DONE);
        // SAFETY: see `run`; the executor's run loop has ended, nothing polls it now, and
        // the future is dropped in place (it may be pinned).
        unsafe { *self.future.get() = None };
    }
}

#[cfg(test)]
mod tests;
