//! The coordinator: checks limits, starts the cores, walks the run through its phases (setup,
//! warm-up, measure, drain, stop), prints a progress line each second, samples CPU time over
//! the measured window, and merges the cores' figures into one `Summary`.

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::machine;
use crate::report::{fmt_ns, new_histogram, CoreStats, Summary};
use crate::scenario::{Kind, Scenario};
use crate::stamp::Stamp;
use crate::wire;
use crate::worker::{self, Interval, Shared, PHASE_RUN, PHASE_STOP};

pub struct Options {
    pub hdr_log: Option<std::path::PathBuf>,
    pub quiet: bool,
}

pub fn run(scenario: &Scenario, opts: &Options) -> Result<Summary, String> {
    scenario.validate()?;
    let addr: SocketAddr = (scenario.host.as_str(), scenario.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}:{}: {e}", scenario.host, scenario.port))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", scenario.host))?;
    let plan = scenario.plan();
    let (nofile, _) = machine::raise_nofile();
    for w in machine::limit_warnings(plan.clients.len(), scenario.sources.len(), nofile) {
        eprintln!("warning: {w}");
    }
    if !plan.retained_topics.is_empty() {
        set_retained(addr, scenario, &plan.retained_topics, true)?;
    }
    let shared = Arc::new(Shared::new());
    let (tx, rx) = mpsc::channel::<Interval>();
    let handles = worker::start(scenario, &plan, addr, shared.clone(), tx)?;
    let mut progress = Progress::new(opts, &shared, plan.clients.len())?;

    // Setup: every client connected (and subscribed) or failed.
    let total = plan.clients.len() as u64;
    let ramp_s = if scenario.conn_rate > 0.0 {
        total as f64 / scenario.conn_rate
    } else {
        0.0
    };
    let setup_deadline = Instant::now() + Duration::from_secs_f64(ramp_s + 30.0);
    while shared.ready_count.load(Ordering::Acquire) < total && Instant::now() < setup_deadline {
        progress.tick(&rx);
    }
    let setup_s = shared.epoch.elapsed().as_secs_f64();
    hold(scenario.hold_until_unix_ms, &mut progress, &rx);

    // Run: publishers start on their schedules; the window excludes the warm-up.
    let run_start = shared.now_ns() + 20_000_000;
    shared.run_start_ns.store(run_start, Ordering::Release);
    shared.phase.store(PHASE_RUN, Ordering::Release);
    let measure_from = run_start + (scenario.warmup_s * 1e9) as u64;
    let measure_to = measure_from + (scenario.duration_s * 1e9) as u64;
    progress.until(&rx, measure_from);
    let w0 = Sample::take(&shared, scenario.broker_pid);
    let w0_unix_ms = unix_ms();
    progress.until(&rx, measure_to);
    let w1 = Sample::take(&shared, scenario.broker_pid);
    if !opts.quiet {
        // A harness running several processes intersects these to find the shared window.
        eprintln!("window unix ms {w0_unix_ms} {}", unix_ms());
    }

    // Drain: publishers finish their QoS handshakes, subscribers get the last deliveries.
    let pubs = plan.publishers as u64;
    let drain = Duration::from_secs_f64(scenario.drain_s.max(0.1));
    let mut last = (shared.unique_count.load(Ordering::Relaxed), Instant::now());
    loop {
        let done = shared.publishers_done_count.load(Ordering::Acquire) >= pubs;
        let unique = shared.unique_count.load(Ordering::Relaxed);
        let expected = expected_count(&shared, &plan, scenario);
        if done && (unique >= expected || scenario.kind == Kind::Sub) {
            break;
        }
        if unique != last.0 {
            last = (unique, Instant::now());
        } else if done && last.1.elapsed() > drain {
            break;
        }
        if done && Instant::now() > w1.at + drain * 5 + Duration::from_secs(5) {
            eprintln!("warning: deliveries still trickling in; stopping the drain");
            break;
        } else if last.1.elapsed() > drain * 4 + Duration::from_secs(10) {
            eprintln!("warning: publishers did not finish; stopping anyway");
            break;
        }
        progress.tick_for(&rx, Duration::from_millis(20));
    }
    let held = shared.open_count.load(Ordering::Acquire);
    shared.phase.store(PHASE_STOP, Ordering::Release);
    let mut stats = CoreStats::default();
    for h in handles {
        let core = h.join().map_err(|e| format!("an executor failed: {e}"))?;
        stats.merge(&core);
    }
    progress.drain(&rx);
    stats.latency = progress.latency;
    stats.latency_uncorrected = progress.latency_uncorrected;
    if !plan.retained_topics.is_empty() {
        set_retained(addr, scenario, &plan.retained_topics, false)?;
    }
    let expected = if scenario.kind == Kind::Retained {
        stats.subscribed_count * plan.retained_topics.len() as u64
    } else {
        stats.sent_count * plan.receivers_per_message
    };
    if !opts.quiet {
        eprintln!("setup took {setup_s:.2} s");
    }
    Ok(Summary {
        qos: scenario.qos,
        expected_count: expected,
        window_s: (w1.at - w0.at).as_secs_f64(),
        window_sent_count: w1.sent - w0.sent,
        window_received_count: w1.received - w0.received,
        loadgen_cpu_s: (w1.own_cpu - w0.own_cpu).as_secs_f64(),
        broker_cpu_s: match (w0.broker_cpu, w1.broker_cpu) {
            (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
            _ => None,
        },
        held_count: held,
        stats,
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits (ticking progress) until `until_unix_ms`; returns at once when it is 0 or past.
fn hold(until_unix_ms: u64, progress: &mut Progress<'_>, rx: &mpsc::Receiver<Interval>) {
    if until_unix_ms == 0 {
        return;
    }
    let now = unix_ms();
    if now > until_unix_ms {
        eprintln!(
            "warning: setup ended {} ms after the hold-until instant",
            now - until_unix_ms
        );
        return;
    }
    while unix_ms() < until_unix_ms {
        let left = Duration::from_millis(until_unix_ms.saturating_sub(unix_ms()));
        progress.tick_for(rx, left.min(Duration::from_millis(200)));
    }
}

fn expected_count(shared: &Shared, plan: &crate::scenario::Plan, sc: &Scenario) -> u64 {
    if sc.kind == Kind::Retained {
        // Every subscriber that got in gets every retained message.
        return shared.open_count.load(Ordering::Relaxed) * plan.retained_topics.len() as u64;
    }
    shared.sent_count.load(Ordering::Relaxed) * plan.receivers_per_message
}

struct Sample {
    at: Instant,
    sent: u64,
    received: u64,
    own_cpu: Duration,
    broker_cpu: Option<Duration>,
}

impl Sample {
    fn take(shared: &Shared, broker_pid: Option<u32>) -> Sample {
        Sample {
            at: Instant::now(),
            sent: shared.sent_count.load(Ordering::Relaxed),
            received: shared.received_count.load(Ordering::Relaxed),
            own_cpu: machine::own_cpu(),
            broker_cpu: broker_pid.and_then(machine::process_cpu),
        }
    }
}

/// The once-a-second line on stderr and the HDR interval log.
struct Progress<'a> {
    shared: &'a Shared,
    quiet: bool,
    total_clients: usize,
    last_at: Instant,
    last_sent: u64,
    last_received: u64,
    second: hdrhistogram::Histogram<u64>,
    latency: hdrhistogram::Histogram<u64>,
    latency_uncorrected: hdrhistogram::Histogram<u64>,
    log: Option<HdrLog>,
}

struct HdrLog {
    file: std::io::BufWriter<std::fs::File>,
    start: Instant,
    start_wall: SystemTime,
    header_written: bool,
}

impl<'a> Progress<'a> {
    fn new(
        opts: &Options,
        shared: &'a Shared,
        total_clients: usize,
    ) -> Result<Progress<'a>, String> {
        let log = match &opts.hdr_log {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                Some(HdrLog {
                    file: std::io::BufWriter::new(file),
                    start: Instant::now(),
                    start_wall: SystemTime::now(),
                    header_written: false,
                })
            }
            None => None,
        };
        Ok(Progress {
            shared,
            quiet: opts.quiet,
            total_clients,
            last_at: Instant::now(),
            last_sent: 0,
            last_received: 0,
            second: new_histogram(),
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
            log,
        })
    }

    fn absorb(&mut self, rx: &mpsc::Receiver<Interval>) {
        while let Ok(i) = rx.try_recv() {
            let _ = self.second.add(&i.latency);
            let _ = self.latency.add(&i.latency);
            let _ = self.latency_uncorrected.add(&i.latency_uncorrected);
        }
    }

    fn tick_for(&mut self, rx: &mpsc::Receiver<Interval>, d: Duration) {
        std::thread::sleep(d);
        self.absorb(rx);
        if self.last_at.elapsed() >= Duration::from_secs(1) {
            self.print();
        }
    }

    fn tick(&mut self, rx: &mpsc::Receiver<Interval>) {
        self.tick_for(rx, Duration::from_millis(20));
    }

    fn until(&mut self, rx: &mpsc::Receiver<Interval>, at_ns: u64) {
        while self.shared.now_ns() < at_ns {
            let left = Duration::from_nanos(at_ns - self.shared.now_ns());
            self.tick_for(rx, left.min(Duration::from_millis(20)));
        }
    }

    fn drain(&mut self, rx: &mpsc::Receiver<Interval>) {
        self.absorb(rx);
        self.print();
        if let Some(log) = &mut self.log {
            let _ = log.file.flush();
        }
    }

    fn print(&mut self) {
        let elapsed = self.last_at.elapsed().as_secs_f64().max(1e-3);
        let sent = self.shared.sent_count.load(Ordering::Relaxed);
        let received = self.shared.received_count.load(Ordering::Relaxed);
        if !self.quiet {
            let p99 = if !self.second.is_empty() {
                fmt_ns(self.second.value_at_quantile(0.99))
            } else {
                "-".into()
            };
            eprintln!(
                "[{:6.1}s] conns {}/{} | out {:.0}/s | in {:.0}/s | p99 {}",
                self.shared.epoch.elapsed().as_secs_f64(),
                self.shared.open_count.load(Ordering::Relaxed),
                self.total_clients,
                (sent - self.last_sent) as f64 / elapsed,
                (received - self.last_received) as f64 / elapsed,
                p99
            );
        }
        if let Some(log) = &mut self.log {
            let start = self.last_at.saturating_duration_since(log.start);
            log.write(&self.second, start, self.last_at.elapsed());
        }
        self.second.reset();
        self.last_at = Instant::now();
        self.last_sent = sent;
        self.last_received = received;
    }
}

impl HdrLog {
    /// Appends one interval in HdrHistogram's interval log format (the header goes out with
    /// the first interval only; each chunk from the writer repeats it).
    fn write(&mut self, h: &hdrhistogram::Histogram<u64>, start: Duration, length: Duration) {
        let mut serializer = V2DeflateSerializer::new();
        let mut text = Vec::new();
        let ok = {
            let mut builder = IntervalLogWriterBuilder::new();
            builder
                .with_start_time(self.start_wall)
                .with_max_value_divisor(1e6);
            builder.add_comment("culex-loadgen latency from intended send time, ns (max in ms)");
            match builder.begin_log_with(&mut text, &mut serializer) {
                Ok(mut w) => w.write_histogram(h, start, length, None).is_ok(),
                Err(_) => false,
            }
        };
        if !ok {
            return;
        }
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let header = line.starts_with(b"#") || line.starts_with(b"\"");
            if header && self.header_written {
                continue;
            }
            let _ = self.file.write_all(line);
            let _ = self.file.write_all(b"\n");
        }
        self.header_written = true;
    }
}

/// Sets (or clears) the retained messages the `retained` storm subscribes over, with a plain
/// blocking client: setup is not what the scenario measures.
fn set_retained(
    addr: SocketAddr,
    sc: &Scenario,
    topics: &[String],
    set: bool,
) -> Result<(), String> {
    let err = |e: std::io::Error| format!("retained setup: {e}");
    let mut s = TcpStream::connect(addr).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(err)?;
    let version = sc.protocol_version();
    let mut out = bytes::BytesMut::new();
    wire::put_connect(
        &mut out,
        &wire::ConnectOptions {
            version,
            client_id: "culex-lg-retained-setup",
            // Not 0: rumqttd refuses a zero keepalive (ZeroKeepAlive) and resets the setup.
            keepalive_s: 60,
            clean: true,
            session_expiry_s: 0,
            receive_maximum: 65535,
        },
    )?;
    let len = if set { sc.payload_min_bytes } else { 0 };
    for (i, topic) in topics.iter().enumerate() {
        let id = (i % 65535 + 1) as u16;
        let stamp = Stamp {
            publisher_id: u32::MAX,
            seq: i as u64,
            intended_ns: 0,
            sent_ns: 0,
        };
        let qos = culex::protocol::QoS::AtLeastOnce;
        let mut template = wire::PublishTemplate::new(version, topic, qos, true, len, len)
            .map_err(|e| format!("retained setup: {e}"))?;
        template.put(&mut out, id, len, |p| {
            if set {
                stamp.write(p)
            }
        });
    }
    s.write_all(&out).map_err(err)?;
    // Wait for CONNACK and every PUBACK, then the broker closes after DISCONNECT.
    let mut acks = 0usize;
    let mut buf = bytes::BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while acks < topics.len() {
        let n = s.read(&mut chunk).map_err(err)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(packet) = culex::protocol::decode(&mut buf, Some(version), u32::MAX)
            .map_err(|e| format!("retained setup: {e:?}"))?
        {
            acks += usize::from(matches!(packet, culex::protocol::Packet::PubAck(_)));
        }
    }
    if acks < topics.len() {
        return Err(format!(
            "retained setup: {acks} of {} retained messages acknowledged",
            topics.len()
        ));
    }
    let mut bye = bytes::BytesMut::new();
    wire::put_disconnect(&mut bye, version);
    let _ = s.write_all(&bye);
    Ok(())
}
