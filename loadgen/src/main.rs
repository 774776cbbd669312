//! `culex-loadgen`: parse the command line (or a TOML scenario file), run, report. The exit
//! status is 2 when losses or duplicates exceed what the QoS allows or a client could not
//! connect or subscribe, 1 on errors.

use clap::{Args, Parser, Subcommand};
use culex_loadgen::run::{run, Options};
use culex_loadgen::scenario::{Kind, Scenario};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "culex-loadgen",
    version,
    about = "Thread-per-core MQTT load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open and hold connections: connect latency, connections held, failures by reason.
    Conn(Flags),
    /// Publishers only.
    Pub(Flags),
    /// Subscribers only (count what others publish).
    Sub(Flags),
    /// P publishers → S subscribers on one topic.
    FanIn(Flags),
    /// 1 publisher → S subscribers.
    FanOut(Flags),
    /// N publisher/subscriber pairs on distinct topics (N = --conns).
    Pairs(Flags),
    /// Publishers → one `$share` group of S subscribers.
    Shared(Flags),
    /// Subscribers on `+` and `#` filters over P publishers' topics.
    Wildcard(Flags),
    /// A subscribe storm over many retained topics.
    Retained(Flags),
    /// IoT: --conns devices publishing rarely, --consumers reading everything.
    Mixed(Flags),
    /// Runs a TOML scenario file (fields as in `Scenario`; `kind = "fan-in"` …).
    Run {
        file: PathBuf,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args, Clone)]
struct Output {
    /// Write every figure, the scenario and the machine as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write latency in HdrHistogram's interval log format.
    #[arg(long)]
    hdr_log: Option<PathBuf>,
    /// Broker process to sample CPU time from (/proc/PID/stat).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct Flags {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, short, default_value_t = 1883)]
    port: u16,
    /// 3 (3.1), 4 (3.1.1) or 5.
    #[arg(long, default_value_t = 4)]
    mqtt_version: u8,
    /// Cores to run on: `1`, `0,2`, `0-3`.
    #[arg(long, default_value = "0")]
    cpus: String,
    /// Connections (`conn`, `mixed`) or pairs (`pairs`).
    #[arg(long, short = 'n', default_value_t = 100)]
    conns: usize,
    #[arg(long, short = 'P', default_value_t = 10)]
    publishers: usize,
    #[arg(long, short = 'S', default_value_t = 1)]
    subscribers: usize,
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Connections opened per second (0: as fast as they open).
    #[arg(long, default_value_t = 0.0)]
    conn_rate: f64,
    /// Source addresses: `127.0.0.1-127.0.0.50` or a comma list.
    #[arg(long)]
    source: Option<String>,
    #[arg(long, default_value_t = 60)]
    keepalive: u16,
    /// Persistent sessions (clean session / clean start off).
    #[arg(long)]
    persistent: bool,
    /// MQTT 5 session expiry interval, seconds.
    #[arg(long, default_value_t = 0)]
    session_expiry: u32,
    /// Client id template (%i index, %c core, %r random).
    #[arg(long, default_value = "culex-lg-%c-%i")]
    client_id: String,
    /// Topic template (the scenario picks one when empty).
    #[arg(long, default_value = "")]
    topic: String,
    #[arg(long, short, default_value_t = 0)]
    qos: u8,
    /// Payload bytes: `64` or a range `32-512` (at least 30: the stamp).
    #[arg(long, default_value = "64")]
    payload: String,
    /// Messages per second per publisher.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Messages per second over all publishers (neither rate: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    total_rate: f64,
    #[arg(long, default_value_t = 100)]
    max_inflight: u16,
    /// Unpaced QoS 0: most messages published but not yet delivered (0: 4 per publisher,
    /// at least 1000).
    #[arg(long, default_value_t = 0)]
    outstanding: u64,
    /// Seconds measured (after the warm-up).
    #[arg(long, short, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Seconds to wait for the last deliveries after publishing stops.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Start the run (warm-up, measured window) no earlier than this Unix time in ms:
    /// several processes given the same instant measure together (0: at once).
    #[arg(long, default_value_t = 0)]
    hold_until: u64,
    #[arg(long)]
    retain: bool,
    #[arg(long, default_value_t = 1000)]
    retained_topics: usize,
    /// Pacing granularity, microseconds.
    #[arg(long, default_value_t = 1000)]
    tick_us: u64,
    /// Idle executors poll this long before sleeping, microseconds: precise pacing and
    /// receive timestamps at modest rates, at the price of busy cores (0: sleep at once).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Test hook: subscriber 0 disconnects this many seconds into the run.
    #[arg(long, default_value_t = 0.0)]
    drop_subscriber_after: f64,
    #[command(flatten)]
    output: Output,
}

fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("--cpus: `{part}` is not a core or a range");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

fn parse_sources(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("--source: `{part}` is not an address or an IPv4 range");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
                let b: Ipv4Addr = b.parse().map_err(|_| bad())?;
                if u32::from(b) < u32::from(a) || u32::from(b) - u32::from(a) > 65_535 {
                    return Err(bad());
                }
                out.extend((u32::from(a)..=u32::from(b)).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

fn parse_payload(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--payload: `{s}` is not a size or a range");
    match s.split_once('-') {
        Some((a, b)) => Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)),
        None => {
            let n = s.parse().map_err(|_| bad())?;
            Ok((n, n))
        }
    }
}

fn scenario_from(kind: Kind, f: &Flags) -> Result<Scenario, String> {
    let (payload_min_bytes, payload_max_bytes) = parse_payload(&f.payload)?;
    Ok(Scenario {
        kind,
        host: f.host.clone(),
        port: f.port,
        mqtt_version: f.mqtt_version,
        cpus: parse_cpus(&f.cpus)?,
        conns: f.conns,
        publishers: f.publishers,
        subscribers: f.subscribers,
        consumers: f.consumers,
        conn_rate: f.conn_rate,
        sources: f
            .source
            .as_deref()
            .map(parse_sources)
            .transpose()?
            .unwrap_or_default(),
        keepalive_s: f.keepalive,
        clean: !f.persistent,
        session_expiry_s: f.session_expiry,
        client_id: f.client_id.clone(),
        topic: f.topic.clone(),
        qos: f.qos,
        payload_min_bytes,
        payload_max_bytes,
        rate: f.rate,
        total_rate: f.total_rate,
        max_inflight: f.max_inflight,
        outstanding_max: f.outstanding,
        duration_s: f.duration,
        warmup_s: f.warmup,
        drain_s: f.drain,
        hold_until_unix_ms: f.hold_until,
        retain: f.retain,
        retained_topics: f.retained_topics,
        tick_us: f.tick_us,
        spin_us: f.spin_us,
        drop_subscriber_after_s: f.drop_subscriber_after,
        broker_pid: f.output.broker_pid,
        ..Scenario::default()
    })
}

fn resolve(command: Command) -> Result<(Scenario, Output), String> {
    let (kind, flags) = match command {
        Command::Run { file, output } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut sc: Scenario =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            if output.broker_pid.is_some() {
                sc.broker_pid = output.broker_pid;
            }
            return Ok((sc, output));
        }
        Command::Conn(f) => (Kind::Conn, f),
        Command::Pub(f) => (Kind::Pub, f),
        Command::Sub(f) => (Kind::Sub, f),
        Command::FanIn(f) => (Kind::FanIn, f),
        Command::FanOut(f) => (Kind::FanOut, f),
        Command::Pairs(f) => (Kind::Pairs, f),
        Command::Shared(f) => (Kind::Shared, f),
        Command::Wildcard(f) => (Kind::Wildcard, f),
        Command::Retained(f) => (Kind::Retained, f),
        Command::Mixed(f) => (Kind::Mixed, f),
    };
    Ok((scenario_from(kind, &flags)?, flags.output))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (scenario, output) = match resolve(cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        hdr_log: output.hdr_log.clone(),
        quiet: output.quiet,
    };
    let summary = match run(&scenario, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{}", summary.human());
    if let Some(path) = &output.json {
        let scenario_json = serde_json::to_value(&scenario).unwrap_or_default();
        let json = summary.to_json(&scenario_json, &culex_loadgen::machine::describe());
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    let violations = summary.violations();
    if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        for v in violations {
            eprintln!("FAIL: {v}");
        }
        ExitCode::from(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn cpu_and_source_lists() {
        assert_eq!(parse_cpus("0-2,5"), Ok(vec![0, 1, 2, 5]));
        assert!(parse_cpus("x").is_err());
        let s = parse_sources("127.0.0.1-127.0.0.3,::1").expect("valid");
        assert_eq!(s.len(), 4);
        assert_eq!(s[2], "127.0.0.3".parse::<IpAddr>().expect("literal"));
        assert!(parse_sources("127.0.0.5-127.0.0.1").is_err());
        assert_eq!(parse_payload("32-512"), Ok((32, 512)));
    }
}
