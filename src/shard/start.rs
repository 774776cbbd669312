//! Starting and stopping the shards: starts one pinned thread per shard running its own executor ([`super::exec`])
//! over its epoll, connects the mesh, binds the listeners, and runs each shard's tick until
//! a stop is asked for; then stops in order (wills first, across shards, then flush and
//! close).

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::broker::ShardId;
use crate::mesh::{self, Mesh, MeshLinks};

use super::core::Core;
use super::exec::{self, Executor};
use super::listener;
use super::readiness::Readiness;
use super::runtime::{Envelope, Shard, Shared};

/// How often a shard ticks its core (keepalive sweep, expiries) and looks for a stop.
///
/// A timer of the shard's executor: a pending timer costs nothing when the shard sleeps
/// (it only sets `epoll_wait`'s timeout). Under glommio it did cost two io_uring_enter per
/// sleep, so a ticker thread rang each shard over a socket pair instead.
pub const TICK: Duration = Duration::from_millis(100);
/// How long start waits for the shards to bind their listeners.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// On stop, how long each shard waits for the others to publish wills before closing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// On stop, time left to deliver what crossed the mesh (wills to other shards' clients).
const DELIVER_GRACE: Duration = Duration::from_millis(200);
/// On stop, how long closing connections may take to flush.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the runtime needs from the configuration.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub listeners: Vec<SocketAddr>,
    /// Shards to run; `None`: one per CPU this process may run on.
    pub shards: Option<u16>,
    /// CPUs to pin shards to, in order (shard `i` on `cpus[i % len]`); `None`: the
    /// process's affinity mask.
    pub cpus: Option<Vec<usize>>,
    pub max_connections: u32,
    pub mesh_backlog_messages: u32,
    /// How long an idle shard keeps polling for work before it sleeps (zero: it sleeps at
    /// once).
    pub spin: Duration,
    /// Setting it stops the broker. Made before `start` so a signal handler can hold it
    /// from the first moment the broker listens.
    pub stop: Arc<AtomicBool>,
}

/// Why the broker could not start (or a shard failed).
#[derive(Debug)]
pub enum StartError {
    NoCpus,
    NoListener,
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    Executor(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoCpus => write!(f, "no CPU to run a shard on (check --cpus)"),
            StartError::NoListener => write!(f, "no address to listen on"),
            StartError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Executor(why) => write!(f, "a shard failed: {why}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The running broker.
#[derive(Debug)]
pub struct Running {
    addrs: Vec<SocketAddr>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    shard_count: u16,
}

impl Running {
    /// The addresses listened on (ports resolved when the configuration said 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// The flag that stops the broker when set (a signal handler sets it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits until every shard has stopped.
    pub fn wait(self) -> Result<(), StartError> {
        let mut failure = None;
        for handle in self.handles {
            if let Err(e) = handle.join() {
                failure.get_or_insert_with(|| StartError::Executor(format!("{e:?}")));
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Starts the shards, each with a core from `make_core(shard, shard_count)`, and returns
/// once every shard listens.
pub fn start<C, F>(config: RuntimeConfig, make_core: F) -> Result<Running, StartError>
where
    C: Core,
    F: Fn(ShardId, u16) -> C + Send + Sync + 'static,
{
    let cpus = match &config.cpus {
        Some(cpus) => cpus.clone(),
        None => allowed_cpus(),
    };
    if cpus.is_empty() {
        return Err(StartError::NoCpus);
    }
    let shard_count = match config.shards {
        Some(n) => n.max(1),
        None => u16::try_from(cpus.len()).unwrap_or(u16::MAX),
    };
    // Held until every shard listens, so a port 0 stays ours meanwhile.
    let (addrs, probes) = resolve_listeners(&config.listeners)?;

    let stop = config.stop.clone();
    let shared = Arc::new(Shared {
        connections: AtomicU32::new(0),
        max_connections: config.max_connections,
        refused_count: AtomicU64::new(0),
        stop: stop.clone(),
        shards_drained: AtomicU16::new(0),
    });
    let make_core = Arc::new(make_core);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
    // Shards bind their sockets, report ready, and listen only once every shard is ready
    // (a `go` each): a broker that fails to start never accepted a connection it would
    // then reset. A shard whose `go` sender is dropped unsent gives up.
    let mut go_senders = Vec::with_capacity(usize::from(shard_count));
    let links = mesh::links::<Envelope<C::Msg>>(shard_count, mesh::QUEUE_BATCHES)
        .map_err(|e| StartError::Executor(format!("cannot make a shard's doorbell: {e}")))?;
    let mut handles = Vec::with_capacity(usize::from(shard_count));
    for (i, links) in links.into_iter().enumerate() {
        let id = ShardId(u16::try_from(i).expect("at most shard_count (a u16) shards"));
        let cpu = cpus[i % cpus.len()];
        let make_core = make_core.clone();
        let plan = ShardPlan {
            id,
            shard_count,
            links,
            shared: shared.clone(),
            addrs: addrs.clone(),
            backlog_messages: config.mesh_backlog_messages,
            ready: ready_tx.clone(),
            go: {
                let (tx, rx) = mpsc::channel();
                go_senders.push(tx);
                rx
            },
            cpu,
            spin: config.spin,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("culex-shard-{i}"))
            .spawn(move || shard_thread(make_core(id, shard_count), plan));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(StartError::Executor(format!("shard {i} on CPU {cpu}: {e}")));
            }
        }
    }
    drop(ready_tx);
    let running = Running {
        addrs,
        handles,
        stop,
        shard_count,
    };
    // Every shard reports twice: bound and ready to listen, then (once the gate opened)
    // listening, so the broker accepts on every shard when this returns.
    for phase in 0..2 {
        for _ in 0..shard_count {
            let outcome = ready_rx
                .recv_timeout(READY_TIMEOUT)
                .unwrap_or_else(|e| Err(StartError::Executor(format!("shard did not start: {e}"))));
            if let Err(e) = outcome {
                go_senders.clear();
                running.stop();
                let _ = running.wait();
                return Err(e);
            }
        }
        if phase == 0 {
            for go in &go_senders {
                let _ = go.send(());
            }
        }
    }
    drop(probes);
    Ok(running)
}

/// What one shard's thread is given to start with.
struct ShardPlan<M: Send + 'static> {
    id: ShardId,
    shard_count: u16,
    links: MeshLinks<Envelope<M>>,
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    backlog_messages: u32,
    /// Told once the shard is ready to listen, then once it listens (or why it cannot).
    ready: mpsc::Sender<Result<(), StartError>>,
    /// Sent once every shard is ready: then this one listens.
    go: mpsc::Receiver<()>,
    cpu: usize,
    /// How long the executor polls before it sleeps.
    spin: Duration,
}

/// A shard's thread: pinned to its CPU, with its epoll, its executor, and its doorbell in
/// that epoll; runs the shard until it stops.
fn shard_thread<C: Core>(core: C, plan: ShardPlan<C::Msg>) {
    let id = plan.id;
    if let Err(e) = pin_to_cpu(plan.cpu) {
        let why = format!(
            "shard {} on CPU {}: cannot pin the thread: {e}",
            id.0, plan.cpu
        );
        let _ = plan.ready.send(Err(StartError::Executor(why)));
        return;
    }
    // Room for every connection the broker may hold (all may end up on this shard), this
    // shard's listeners and its doorbell.
    let slots = plan
        .shared
        .max_connections
        .saturating_add(u32::try_from(plan.addrs.len()).unwrap_or(u32::MAX))
        .saturating_add(1);
    let readiness = match Readiness::new(slots) {
        Ok(r) => Rc::new(r),
        Err(e) => {
            let why = format!("shard {}: cannot create its epoll instance: {e}", id.0);
            let _ = plan.ready.send(Err(StartError::Executor(why)));
            return;
        }
    };
    let doorbell = plan.links.doorbell().clone();
    // The registration lives as long as the epoll: the doorbell is never deregistered.
    if let Err(e) = readiness.register(doorbell.fd()) {
        let why = format!("shard {}: cannot watch its doorbell: {e}", id.0);
        let _ = plan.ready.send(Err(StartError::Executor(why)));
        return;
    }
    // `spin` (`spin_us`): an idle shard polls its epoll for that long after its last work
    // before it sleeps, saving the scheduler's wake-up latency at the price of at most
    // `spin` of CPU per wake-up: little at low rates, a whole core once messages come
    // more often than that. See scripts/latency.sh.
    let executor = Executor::new(readiness.clone(), plan.spin, doorbell.parked());
    executor.run(run_shard(core, plan, readiness));
}

/// Pins the calling thread to `cpu` (as glommio's `Placement::Fixed` did).
fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a zeroed cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `cpu` of `set`, and `cpu < CPU_SETSIZE` (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from `set`, ours.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One shard's whole life on its executor.
async fn run_shard<C: Core>(core: C, plan: ShardPlan<C::Msg>, readiness: Rc<Readiness>) {
    let ShardPlan {
        id,
        shard_count,
        links,
        shared,
        addrs,
        backlog_messages,
        ready,
        go,
        ..
    } = plan;
    let sheddable = |e: &Envelope<C::Msg>| match e {
        Envelope::Core(m) => C::sheddable(m),
        Envelope::Adopt { .. } => false,
    };
    let (mesh, inbound) = Mesh::new(links, backlog_messages, sheddable);
    let mesh = Rc::new(mesh);
    let inbound = Rc::new(inbound);
    let shard = Rc::new(Shard::new(
        id,
        core,
        mesh.clone(),
        shared.clone(),
        readiness,
    ));
    exec::spawn(mesh.clone().run_flusher());
    {
        exec::set_wake_check(mesh.wake_check(&inbound));
        let shard = shard.clone();
        exec::spawn(async move {
            inbound
                .run(|from, batch| {
                    let count = batch.len();
                    for envelope in batch {
                        shard.mesh_received(from, envelope);
                    }
                    shard.mesh.taken(from, count);
                })
                .await
        });
    }
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        match listener::bind(*addr) {
            Ok(l) => listeners.push((*addr, l)),
            Err(error) => {
                let _ = ready.send(Err(StartError::Listen { addr: *addr, error }));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    // Blocks this thread until every shard is ready; nothing of this shard's can run
    // before it listens anyway.
    if go.recv().is_err() {
        return;
    }
    for (addr, l) in listeners {
        if let Err(error) = listener::start_listening(&l) {
            let _ = ready.send(Err(StartError::Listen { addr, error }));
            return;
        }
        exec::spawn(listener::accept_loop(shard.clone(), l));
    }
    let _ = ready.send(Ok(()));
    drop(ready);

    while !shared.stop.load(Ordering::Relaxed) {
        exec::sleep(TICK).await;
        let now = shard.update_clock();
        shard.core.borrow_mut().tick(now);
        shard.pump();
    }
    stop_shard(&shard, shard_count).await;
}

/// Stops one shard in two phases. First: no more accepts, and the core publishes wills
/// while every connection stays open; each shard waits until all have done so, then
/// gives the mesh a moment to deliver (a will's subscribers may live on any shard).
/// Second: the core says goodbye (DISCONNECT 0x8B to MQTT 5 clients) and closes; what it
/// leaves open is flushed and closed here.
async fn stop_shard<C: Core>(shard: &Rc<Shard<C>>, shard_count: u16) {
    shard.stop.stop();
    let now = shard.update_clock();
    shard.core.borrow_mut().publish_wills_for_shutdown(now);
    shard.pump();
    shard.mesh.flush();
    shard.shared.shards_drained.fetch_add(1, Ordering::AcqRel);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while shard.shared.shards_drained.load(Ordering::Acquire) < shard_count
        && Instant::now() < deadline
    {
        exec::sleep(Duration::from_millis(5)).await;
    }
    exec::sleep(DELIVER_GRACE).await;

    let now = shard.update_clock();
    shard.core.borrow_mut().shutdown(now);
    shard.pump();
    shard.mesh.flush();
    // Connections the core did not close are closed too; each writes what it has first.
    shard.close_all();
    wait_closed(shard).await;
    let mesh = shard.mesh.stats();
    let r = &shard.readiness;
    let executor = exec::stats();
    tracing::debug!(
        shard = shard.id.0,
        ?mesh,
        ?executor,
        readiness_full = r.full_count.get(),
        readiness_stale = r.stale_count.get(),
        "shard stopped"
    );
}

/// Waits (bounded) until the shard has no open connection.
async fn wait_closed<C: Core>(shard: &Shard<C>) {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while shard.open_count() > 0 && Instant::now() < deadline {
        exec::sleep(Duration::from_millis(5)).await;
    }
}

/// The CPUs this process may run on (its affinity mask), in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads bit `cpu` of `set`, and `cpu < CPU_SETSIZE`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Binds every configured address once, before any shard, to fail early with a clear
/// error and to learn the port the kernel picks for port 0; shards then bind the same
/// addresses (SO_REUSEPORT). The probe sockets never listen, so they take no connections.
fn resolve_listeners(
    addrs: &[SocketAddr],
) -> Result<(Vec<SocketAddr>, Vec<socket2::Socket>), StartError> {
    let mut resolved = Vec::with_capacity(addrs.len());
    let mut probes = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let socket = match listener::bind_socket(addr) {
            Ok(socket) => socket,
            // A host without IPv6 cannot bind [::1]; with another listener left, go on
            // without it (local-only mode lists both loopbacks).
            Err(error) if addr.is_ipv6() && addrs.len() > 1 && no_ipv6(&error) => {
                tracing::warn!(%addr, %error, "IPv6 unavailable; not listening there");
                continue;
            }
            Err(error) => return Err(StartError::Listen { addr, error }),
        };
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        resolved.push(local);
        probes.push(socket);
    }
    if resolved.is_empty() {
        return Err(StartError::NoListener);
    }
    Ok((resolved, probes))
}

fn no_ipv6(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}
