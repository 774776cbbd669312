//! Starting and stopping the shards: checks that io_uring and enough locked memory are
//! there, places one pinned glommio executor per shard, connects the mesh, binds the
//! listeners, and runs each shard's tick until a stop is asked for; then stops in order
//! (wills first, across shards, then flush and close).

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::broker::ShardId;
use crate::mesh::{self, Mesh, MeshLinks};

use super::core::Core;
use super::listener;
use super::readiness::Readiness;
use super::runtime::{Envelope, Shard, Shared};

/// How often a shard ticks its core (keepalive sweep, expiries) and looks for a stop.
///
/// The tick comes from a ticker thread over a socket pair, not from a glommio timer: while
/// any glommio timer is pending, every time the executor goes to sleep it arms that timer
/// on its latency ring and cancels it on waking, an io_uring_enter each. At modest rates a
/// shard sleeps once per message, so the tick's timer cost two syscalls per message (strace
/// at 200 msg/s: 12 per message with it, 10 without); the ticker costs one read per tick.
pub const TICK: Duration = Duration::from_millis(100);
/// Locked memory glommio registers with io_uring per executor. Culex does no file I/O
/// through glommio's DMA buffers, so the minimum glommio accepts (64 KiB) would do; 128
/// KiB leaves room and keeps 32 shards under a common 8 MiB `ulimit -l`.
pub const IO_MEMORY_BYTES: usize = 128 * 1024;
/// glommio refuses to start an executor below this RLIMIT_MEMLOCK.
const MIN_MEMLOCK_BYTES: u64 = 512 * 1024;
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
    IoUringUnavailable(String),
    MemlockTooLow {
        limit_bytes: u64,
        needed_bytes: u64,
    },
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
            StartError::IoUringUnavailable(why) => write!(f, "io_uring is not available: {why}"),
            StartError::MemlockTooLow {
                limit_bytes,
                needed_bytes,
            } => write!(
                f,
                "locked-memory limit (RLIMIT_MEMLOCK) is {limit_bytes} bytes; Culex needs at \
                 least {needed_bytes} for its io_uring buffers. Raise it with `ulimit -l \
                 {}` (or `LimitMEMLOCK=` in a systemd unit, `--ulimit memlock=-1` for \
                 docker), or run fewer shards with --shards",
                needed_bytes.div_ceil(1024)
            ),
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
    handles: Vec<ExecutorJoinHandle<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
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
        // The ticker ends within a tick of the stop flag.
        if let Some(ticker) = self.ticker {
            if ticker.join().is_err() {
                failure.get_or_insert_with(|| StartError::Executor("ticker panicked".into()));
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
    probe_io_uring()?;
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
    check_memlock(shard_count)?;
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
    let links = mesh::links::<Envelope<C::Msg>>(shard_count, mesh::QUEUE_BATCHES);
    let mut bells = Vec::with_capacity(usize::from(shard_count));
    let mut ringers = Vec::with_capacity(usize::from(shard_count));
    for _ in 0..shard_count {
        let (ringer, bell) = tick_pair()
            .map_err(|e| StartError::Executor(format!("cannot make the tick socket: {e}")))?;
        ringers.push(ringer);
        bells.push(bell);
    }
    let ticker = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("culex-ticker".into())
            .spawn(move || run_ticker(&stop, &ringers))
            .map_err(|e| StartError::Executor(format!("cannot start the ticker: {e}")))?
    };
    let mut handles = Vec::with_capacity(usize::from(shard_count));
    for ((i, links), bell) in links.into_iter().enumerate().zip(bells) {
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
            bell,
        };
        // `spin_before_park` (`spin_us`): an idle shard polls its rings for that long after
        // its last work before it sleeps. Each sleep and wake-up costs glommio 8 syscalls
        // (io_uring_enter over its rings, its preemption timer, a membarrier) and ~13k of the
        // ~17k user-space instructions a message takes at 1,000 msg/s (callgrind), plus the
        // scheduler's wake-up latency, which is what the latency tail is made of. Spinning
        // costs at most `spin` of CPU per wake-up: little at low rates, a whole core once
        // messages come more often than that. See scripts/latency.sh.
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("culex-shard-{i}"))
            .io_memory(IO_MEMORY_BYTES);
        if !config.spin.is_zero() {
            builder = builder.spin_before_park(config.spin);
        }
        let spawned =
            builder.spawn(move || async move { run_shard(make_core(id, shard_count), plan).await });
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
        ticker: Some(ticker),
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
    /// Our end of the ticker's socket: a byte arrives every tick.
    bell: StdUnixStream,
}

/// One shard's whole life on its executor.
async fn run_shard<C: Core>(core: C, plan: ShardPlan<C::Msg>) {
    let ShardPlan {
        id,
        shard_count,
        links,
        shared,
        addrs,
        backlog_messages,
        ready,
        go,
        bell,
    } = plan;
    // SAFETY: `into_raw_fd` hands over sole ownership of an open socket descriptor; the
    // glommio stream takes it and is the only one to close it.
    let mut bell = unsafe { glommio::net::UnixStream::from_raw_fd(bell.into_raw_fd()) };
    let mut rung = [0u8; 64];
    let sheddable = |e: &Envelope<C::Msg>| match e {
        Envelope::Core(m) => C::sheddable(m),
        Envelope::Adopt { .. } => false,
    };
    let (mesh, inbound) = Mesh::connect(links, backlog_messages, sheddable).await;
    let mesh = Rc::new(mesh);
    // Room for every connection the broker may hold (all may end up on this shard) and
    // this shard's listeners.
    let slots = shared
        .max_connections
        .saturating_add(u32::try_from(addrs.len()).unwrap_or(u32::MAX));
    let readiness = match Readiness::new(slots) {
        Ok(r) => Rc::new(r),
        Err(e) => {
            let why = format!("shard {}: cannot create its epoll instance: {e}", id.0);
            let _ = ready.send(Err(StartError::Executor(why)));
            return;
        }
    };
    glommio::spawn_local(readiness.clone().run()).detach();
    let shard = Rc::new(Shard::new(
        id,
        core,
        mesh.clone(),
        shared.clone(),
        readiness,
    ));
    glommio::spawn_local(mesh.clone().run_flusher()).detach();
    for (from, rx) in inbound {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(batch) = rx.recv().await {
                let count = batch.len();
                for envelope in batch {
                    shard.mesh_received(from, envelope);
                }
                shard.mesh.taken(from, count);
            }
        })
        .detach();
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
        glommio::spawn_local(listener::accept_loop(shard.clone(), l)).detach();
    }
    let _ = ready.send(Ok(()));
    drop(ready);

    while !shared.stop.load(Ordering::Relaxed) {
        // Several ticks may be waiting (a busy shard): one read takes them all, one tick runs.
        match bell.read(&mut rung).await {
            Ok(n) if n > 0 => {}
            // The ticker is gone (it leaves only after a stop): tick on our own timer.
            _ => glommio::timer::sleep(TICK).await,
        }
        let now = shard.update_clock();
        shard.core.borrow_mut().tick(now);
        shard.pump();
    }
    stop_shard(&shard, shard_count).await;
}

/// A socket pair for one shard's tick: the ticker's end (non-blocking: a shard that has not
/// read its last ticks just misses this one) and the shard's end.
fn tick_pair() -> std::io::Result<(StdUnixStream, StdUnixStream)> {
    let (ringer, bell) = StdUnixStream::pair()?;
    ringer.set_nonblocking(true)?;
    bell.set_nonblocking(true)?;
    Ok((ringer, bell))
}

/// Rings every shard's bell once per tick until the stop flag is set, then once more so
/// that every shard sees the stop at once, and ends.
fn run_ticker(stop: &AtomicBool, ringers: &[StdUnixStream]) {
    loop {
        std::thread::sleep(TICK);
        let stopping = stop.load(Ordering::Relaxed);
        for mut ringer in ringers {
            // Full (WouldBlock): the shard has unread ticks, so this one adds nothing.
            // Closed: the shard has stopped.
            let _ = ringer.write(&[1]);
        }
        if stopping {
            return;
        }
    }
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
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    glommio::timer::sleep(DELIVER_GRACE).await;

    let now = shard.update_clock();
    shard.core.borrow_mut().shutdown(now);
    shard.pump();
    shard.mesh.flush();
    // Connections the core did not close are closed too; each writes what it has first.
    shard.close_all();
    wait_closed(shard).await;
    let mesh = shard.mesh.stats();
    let r = &shard.readiness;
    tracing::debug!(
        shard = shard.id.0,
        ?mesh,
        readiness_full = r.full_count.get(),
        readiness_stale = r.stale_count.get(),
        readiness_arms = r.arm_count.get(),
        "shard stopped"
    );
}

/// Waits (bounded) until the shard has no open connection.
async fn wait_closed<C: Core>(shard: &Shard<C>) {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while shard.open_count() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// io_uring_setup(2) with a one-entry ring: the cheapest proof that this process may use
/// io_uring at all (kernel support, `kernel.io_uring_disabled`, seccomp).
fn probe_io_uring() -> Result<(), StartError> {
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup reads and writes exactly `struct io_uring_params` (120
    // bytes) at the pointer, which `params` provides, aligned and zeroed.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` is the ring descriptor the kernel just gave us and nothing else
        // holds; closing it releases the probe ring.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .unwrap_or(0);
    let why = match err.raw_os_error() {
        Some(libc::ENOSYS) => format!(
            "the kernel has no io_uring ({err}). Culex needs Linux 5.10 or newer with \
             CONFIG_IO_URING; in a container, a seccomp profile may also hide it: run with \
             `--security-opt seccomp=unconfined` or a profile that allows io_uring_setup, \
             io_uring_enter and io_uring_register"
        ),
        Some(libc::EPERM) if disabled > 0 => format!(
            "io_uring is disabled by `kernel.io_uring_disabled = {disabled}` ({err}). \
             Enable it with `sysctl -w kernel.io_uring_disabled=0` (or, for value 1, add \
             this user to the group in `kernel.io_uring_group`)"
        ),
        Some(libc::EPERM) => format!(
            "io_uring_setup was refused ({err}), most likely by a container's seccomp \
             profile: run with `--security-opt seccomp=unconfined` or a profile that allows \
             io_uring_setup, io_uring_enter and io_uring_register"
        ),
        _ => format!("io_uring_setup failed: {err}"),
    };
    Err(StartError::IoUringUnavailable(why))
}

/// glommio needs `MIN_MEMLOCK_BYTES` to start and registers `IO_MEMORY_BYTES` per shard.
fn check_memlock(shard_count: u16) -> Result<(), StartError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit` at the pointer we pass, which is ours.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(()); // Cannot tell; glommio will say if it is too low.
    }
    let current = limit.rlim_cur;
    if current == libc::RLIM_INFINITY {
        return Ok(());
    }
    let needed = MIN_MEMLOCK_BYTES.max(IO_MEMORY_BYTES as u64 * u64::from(shard_count));
    if current < needed {
        return Err(StartError::MemlockTooLow {
            limit_bytes: current,
            needed_bytes: needed,
        });
    }
    Ok(())
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
