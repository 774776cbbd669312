//! The thread-per-core engine: one pinned glommio executor per chosen core, each running its
//! share of the clients plus one control task. Cores share only atomics (`Shared`) for the
//! phase of the run and the running totals; everything per message stays on its core.

use culex::shard::Readiness;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client;
use crate::conn;
use crate::report::{new_histogram, CoreStats};
use crate::scenario::{ClientPlan, Kind, Plan, Scenario};
use crate::signal::{Slots, DROP, FLOW, PING, RUN, STOP};

pub const PHASE_SETUP: u8 = 0;
pub const PHASE_RUN: u8 = 1;
pub const PHASE_STOP: u8 = 2;

/// What the cores and the coordinating main thread share: the clock's epoch, the phase, and
/// totals that the progress line and the end-of-run drain read.
pub struct Shared {
    pub epoch: Instant,
    pub phase: AtomicU8,
    pub run_start_ns: AtomicU64,
    /// Clients past setup (connected and subscribed, or failed).
    pub ready_count: AtomicU64,
    pub open_count: AtomicU64,
    pub publishers_done_count: AtomicU64,
    pub sent_count: AtomicU64,
    pub received_count: AtomicU64,
    /// Distinct deliveries (duplicates excluded): what the drain waits for.
    pub unique_count: AtomicU64,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            epoch: Instant::now(),
            phase: AtomicU8::new(PHASE_SETUP),
            run_start_ns: AtomicU64::new(0),
            ready_count: AtomicU64::new(0),
            open_count: AtomicU64::new(0),
            publishers_done_count: AtomicU64::new(0),
            sent_count: AtomicU64::new(0),
            received_count: AtomicU64::new(0),
            unique_count: AtomicU64::new(0),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// One second's (or the last partial interval's) latencies from one core.
pub struct Interval {
    pub latency: Histogram<u64>,
    pub latency_uncorrected: Histogram<u64>,
}

/// Everything a client task on this core can reach.
pub struct Core {
    pub shared: Arc<Shared>,
    pub scenario: Scenario,
    pub addr: SocketAddr,
    pub stats: RefCell<CoreStats>,
    pub interval: RefCell<Interval>,
    pub slots: Slots,
    /// Subscriber deliveries each message should make (0: nobody of ours listens).
    pub receivers_per_message: u64,
    /// Unpaced QoS 0 publishers pause while this many messages are published but not yet
    /// delivered: the broker's own pace sets the rate instead of an ever-growing backlog.
    pub outstanding_max: u64,
    /// Publisher slots waiting for deliveries (see `outstanding_max`); subscribers on this
    /// core wake them, others are woken by a short timer.
    pub flow_waiters: RefCell<Vec<usize>>,
    /// Whether any subscriber runs on this core (and so wakes `flow_waiters`).
    pub local_subscribers: bool,
    /// Each publisher's pace (`None`: as fast as the broker takes them), from the plan.
    pub rate_per_publisher: Option<f64>,
    /// The core's epoll instance, which every client socket of the core waits in
    /// (`None` when it could not be created: every connect then fails, saying so).
    pub readiness: Option<Rc<Readiness>>,
}

impl Core {
    pub fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }

    /// Latencies are recorded only after the warm-up.
    pub fn measure_from_ns(&self) -> u64 {
        self.shared.run_start_ns.load(Ordering::Acquire) + (self.scenario.warmup_s * 1e9) as u64
    }

    pub fn take_interval(&self) -> Interval {
        std::mem::replace(
            &mut *self.interval.borrow_mut(),
            Interval {
                latency: new_histogram(),
                latency_uncorrected: new_histogram(),
            },
        )
    }
}

/// What every core takes from the plan about pacing and flow.
#[derive(Debug, Clone, Copy)]
struct Flow {
    receivers_per_message: u64,
    outstanding_max: u64,
    rate_per_publisher: Option<f64>,
}

/// Starts one executor per core of the scenario; each returns its stats when the run stops.
pub fn start(
    scenario: &Scenario,
    plan: &Plan,
    addr: SocketAddr,
    shared: Arc<Shared>,
    intervals: Sender<Interval>,
) -> Result<Vec<glommio::ExecutorJoinHandle<CoreStats>>, String> {
    let mut handles = Vec::new();
    for (slot, &cpu) in scenario.cpus.iter().enumerate() {
        let clients: Vec<ClientPlan> = plan
            .clients
            .iter()
            .filter(|c| c.core_slot == slot)
            .cloned()
            .collect();
        let scenario = scenario.clone();
        let shared = shared.clone();
        let intervals = intervals.clone();
        let flow = Flow {
            receivers_per_message: plan.receivers_per_message,
            outstanding_max: scenario.outstanding_window(plan.publishers),
            rate_per_publisher: plan.rate_per_publisher,
        };
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("loadgen-{cpu}"))
            .io_memory(scenario.io_memory_bytes);
        if scenario.spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(scenario.spin_us));
        }
        let handle = builder
            .spawn(move || async move {
                run_core(scenario, clients, addr, shared, intervals, flow).await
            })
            .map_err(|e| {
                format!(
                    "cannot start an executor on core {cpu}: {e} (io_uring disabled, core \
                     missing, or locked-memory limit too small: see `ulimit -l`)"
                )
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

async fn run_core(
    scenario: Scenario,
    clients: Vec<ClientPlan>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    intervals: Sender<Interval>,
    flow: Flow,
) -> CoreStats {
    let readiness = match conn::start_readiness(clients.len()) {
        Ok(readiness) => Some(readiness),
        Err(e) => {
            eprintln!("cannot create this core's epoll instance: {e}");
            None
        }
    };
    let core = Rc::new(Core {
        shared,
        scenario,
        addr,
        stats: RefCell::new(CoreStats::default()),
        interval: RefCell::new(Interval {
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
        }),
        slots: Slots::with_len(clients.len()),
        receivers_per_message: flow.receivers_per_message,
        outstanding_max: flow.outstanding_max,
        rate_per_publisher: flow.rate_per_publisher,
        flow_waiters: RefCell::new(Vec::new()),
        local_subscribers: clients
            .iter()
            .any(|c| matches!(c.role, crate::scenario::Role::Subscriber { .. })),
        readiness,
    });
    let drop_slot = clients.iter().position(|c| {
        core.scenario.drop_subscriber_after_s > 0.0
            && c.index == 0
            && matches!(c.role, crate::scenario::Role::Subscriber { .. })
    });
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(slot, plan)| glommio::spawn_local(client::run(core.clone(), plan, slot)).detach())
        .collect();
    control(&core, drop_slot, &intervals).await;
    for task in tasks {
        task.await;
    }
    let _ = intervals.send(core.take_interval());
    let stats = core.stats.borrow().clone();
    stats
}

/// The core's control loop: opens the run gate, spreads keepalive pings over time, ships the
/// last second's latencies to the main thread, fires the test hook, and stops every client.
async fn control(core: &Core, drop_slot: Option<usize>, intervals: &Sender<Interval>) {
    const TICK: Duration = Duration::from_millis(100);
    let n = core.slots.len();
    // Each client pings once per half keepalive; slots take turns, one bucket per tick.
    let buckets = (u64::from(core.scenario.keepalive_s) * 5).max(1) as usize;
    let mut tick: usize = 0;
    let mut running = false;
    let mut dropped = false;
    loop {
        glommio::timer::sleep(TICK).await;
        tick += 1;
        let phase = core.shared.phase.load(Ordering::Acquire);
        if phase == PHASE_STOP {
            (0..n).for_each(|s| core.slots.raise(s, STOP));
            return;
        }
        if phase == PHASE_RUN && !running {
            running = true;
            (0..n).for_each(|s| core.slots.raise(s, RUN));
        }
        if core.scenario.keepalive_s > 0 {
            (tick % buckets..n)
                .step_by(buckets)
                .for_each(|s| core.slots.raise(s, PING));
        }
        if let (Some(slot), true, false) = (drop_slot, running, dropped) {
            let at = core.shared.run_start_ns.load(Ordering::Acquire)
                + (core.scenario.drop_subscriber_after_s * 1e9) as u64;
            if core.now_ns() >= at {
                dropped = true;
                core.slots.raise(slot, DROP);
            }
        }
        let waiters = std::mem::take(&mut *core.flow_waiters.borrow_mut());
        waiters.into_iter().for_each(|s| core.slots.raise(s, FLOW));
        if tick % 10 == 0 {
            let _ = intervals.send(core.take_interval());
        }
    }
}

/// Whether clients of this scenario subscribe at the run gate rather than at connect (the
/// retained storm measures exactly that subscribe).
pub fn subscribe_at_run(scenario: &Scenario) -> bool {
    scenario.kind == Kind::Retained
}
