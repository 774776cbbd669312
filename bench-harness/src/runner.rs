//! The suite: for each scenario, each repeat, each broker in turn (A B A B …, so a drift of the
//! machine touches every broker alike): start the broker pinned to its cores, run
//! `culex-loadgen` pinned to the others while sampling the broker's `/proc`, stop the broker,
//! and keep a `RunRecord` plus the raw loadgen JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::broker::{BrokerSpec, Running};
use crate::record::{setup_seconds, window_unix_ms, RunRecord};
use crate::sample::{self, Sampler};
use crate::scenario::{Mode, ScenarioSpec};

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// `results/<date>-<commit>-<machine>/`.
    pub out_dir: PathBuf,
    pub loadgen: PathBuf,
    /// Cores the loadgen runs on (`taskset -c` and its executors).
    pub loadgen_cpus: Vec<usize>,
    pub repeat: usize,
    pub quick: bool,
    pub sample_period: Duration,
    /// Connections per loadgen process at most (its own open-files limit, less headroom).
    pub conns_per_process_max: usize,
    /// How long a broker may take to answer its first CONNECT (long under valgrind).
    pub start_timeout: Duration,
    /// `perf stat` attached to the broker while the loadgen runs: events and output file.
    pub perf_stat: Option<(String, PathBuf)>,
}

/// One broker's run of one load point, before it becomes a record.
struct Cell<'a> {
    scenario: &'a ScenarioSpec,
    broker: &'a BrokerSpec,
    repeat_index: usize,
    load_fraction: Option<f64>,
    offered_per_s: Option<f64>,
}

impl Cell<'_> {
    fn tag(&self) -> String {
        let mut t = format!("{}-r{}", self.broker.kind.name(), self.repeat_index);
        if let Some(f) = self.load_fraction {
            t += &format!("-at{:03}", (f * 100.0).round() as u32);
        }
        t
    }
}

pub struct Suite {
    pub options: SuiteOptions,
    pub brokers: Vec<BrokerSpec>,
    /// Why some brokers are not in the run.
    pub notes: Vec<String>,
    pub records: Vec<RunRecord>,
    /// Brokers that would not start: skipped for the rest of the suite.
    broken: BTreeSet<String>,
}

impl Suite {
    pub fn new(options: SuiteOptions, brokers: Vec<BrokerSpec>, notes: Vec<String>) -> Suite {
        Suite {
            options,
            brokers,
            notes,
            records: Vec::new(),
            broken: BTreeSet::new(),
        }
    }

    pub fn run_all(&mut self, scenarios: &[ScenarioSpec]) {
        for s in scenarios {
            eprintln!("== {} ({})", s.name, s.title);
            match s.mode {
                Mode::LatencyCurve => self.run_curve(s),
                _ => self.run_plain(s),
            }
        }
    }

    fn repeats(&self, s: &ScenarioSpec) -> usize {
        if self.options.quick {
            1
        } else {
            s.repeat.unwrap_or(self.options.repeat).max(1)
        }
    }

    fn run_plain(&mut self, s: &ScenarioSpec) {
        for r in 0..self.repeats(s) {
            for b in self.brokers.clone() {
                let cell = Cell {
                    scenario: s,
                    broker: &b,
                    repeat_index: r,
                    load_fraction: None,
                    offered_per_s: None,
                };
                self.run_and_keep(&cell);
            }
        }
    }

    /// Saturation first (unpaced), then each fraction of it, per broker and repeat.
    fn run_curve(&mut self, s: &ScenarioSpec) {
        let fractions = s.fractions(self.options.quick);
        for r in 0..self.repeats(s) {
            for b in self.brokers.clone() {
                let sat = Cell {
                    scenario: s,
                    broker: &b,
                    repeat_index: r,
                    load_fraction: None,
                    offered_per_s: None,
                };
                let Some(saturation) = self.run_and_keep(&sat).filter(|v| *v > 0.0) else {
                    continue;
                };
                for &fraction in &fractions {
                    let cell = Cell {
                        load_fraction: Some(fraction),
                        offered_per_s: Some(saturation * fraction),
                        ..sat
                    };
                    self.run_and_keep(&cell);
                }
            }
        }
    }

    /// Runs a cell unless its broker is known broken; returns its delivered msgs/s.
    fn run_and_keep(&mut self, cell: &Cell<'_>) -> Option<f64> {
        let name = cell.broker.kind.name();
        if self.broken.contains(name) {
            return None;
        }
        let record = self.run_cell(cell);
        eprintln!(
            "   {:<28} {:>12.0} msg/s  p99 {:>10}  cpu {:>8} µs/msg  rss {:>7.1} MiB  held {:>6}{}",
            cell.tag(),
            record.delivered_per_s,
            record
                .latency
                .map_or("-".into(), |l| format!("{:.0} µs", l.p99_us)),
            record
                .broker_cpu_us_per_msg
                .map_or("-".into(), |c| format!("{c:.2}")),
            record.broker_rss_max_bytes as f64 / 1048576.0,
            record.held_count,
            record
                .note
                .as_ref()
                .map_or(String::new(), |n| format!("  [{n}]"))
        );
        let delivered = record.ok.then_some(record.delivered_per_s);
        if !record.ok && record.broker_stop == "never started" {
            self.broken.insert(name.to_string());
            self.notes.push(format!(
                "{name}: skipped after `{}`: {}",
                cell.scenario.name,
                record.note.clone().unwrap_or_default()
            ));
        }
        self.records.push(record);
        delivered
    }

    fn run_cell(&self, cell: &Cell<'_>) -> RunRecord {
        let mut record = RunRecord {
            scenario: cell.scenario.name.clone(),
            broker: cell.broker.kind.name().to_string(),
            repeat_index: cell.repeat_index,
            load_fraction: cell.load_fraction,
            offered_per_s: cell.offered_per_s,
            ..RunRecord::default()
        };
        let scratch = std::env::temp_dir().join(format!(
            "culex-bench-{}-{}",
            std::process::id(),
            cell.broker.kind.name()
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        let logs = self.options.out_dir.join("logs").join(&cell.scenario.name);
        let _ = std::fs::create_dir_all(&logs);
        let broker_log = logs.join(format!("{}.broker.log", cell.tag()));
        let mut running = match cell
            .broker
            .start(&scratch, &broker_log, Duration::from_secs(20))
        {
            Ok(r) => r,
            Err(e) => {
                record.note = Some(e);
                record.broker_stop = "never started".into();
                return record;
            }
        };
        self.measure(cell, &running, &scratch, &logs, &mut record);
        record.broker_stop = running.stop();
        trim_log(&broker_log, LOG_KEEP_BYTES);
        if let Some(line) = limit_line(&broker_log) {
            // What stopped the broker from taking more connections, in its own words.
            let note = format!("broker log: {line}");
            record.note = Some(match record.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
        let _ = std::fs::remove_dir_all(&scratch);
        record.finish_cpu();
        record
    }

    /// Runs the loadgen processes against a started broker and fills `record`.
    fn measure(
        &self,
        cell: &Cell<'_>,
        running: &Running,
        scratch: &Path,
        logs: &Path,
        record: &mut RunRecord,
    ) {
        // Let the broker settle so the baseline is its resting size, not its start-up peak.
        std::thread::sleep(Duration::from_millis(200));
        record.broker_rss_baseline_bytes = sample::rss_bytes(running.pid).unwrap_or(0);
        record.broker_fd_baseline_count = sample::fd_count(running.pid).unwrap_or(0);
        let sampler = Sampler::start(running.pid, self.options.sample_period);
        let spawned_at_s = sampler.started().elapsed().as_secs_f64();
        // The sampler's clock in Unix seconds, to place the loadgens' wall-clock windows.
        let origin_unix_s = unix_ms() as f64 / 1e3 - spawned_at_s;
        let hold_until = (self.processes(cell.scenario) > 1).then(|| {
            let budget = hold_budget_s(
                self.conns(cell.scenario),
                self.options.conns_per_process_max,
            );
            unix_ms() + (budget * 1e3) as u64
        });
        record.hold_until_unix_ms = hold_until;
        let perf = self.options.perf_stat.as_ref().and_then(|(events, out)| {
            Command::new("perf")
                .args(["stat", "-x", ",", "-e", events, "-o"])
                .arg(out)
                .args(["-p", &running.pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| eprintln!("note: perf stat did not start: {e}"))
                .ok()
        });
        let outcome = self.run_loadgen(cell, running, scratch, logs, hold_until);
        if let Some(mut perf) = perf {
            // perf stat writes its counts when interrupted, as after Ctrl-C.
            let pid = libc::pid_t::try_from(perf.id()).expect("Linux PIDs fit in pid_t");
            // SAFETY: kill() only sends a signal, to our own child that has not been reaped.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let _ = perf.wait();
        }
        let samples = sampler.finish();
        let runs = match outcome {
            Ok(runs) => runs,
            Err(e) => {
                record.note = Some(e);
                return;
            }
        };
        for run in &runs {
            record.loadgen_exit_codes.push(run.exit_code);
            record.raw_files.push(run.raw_file.clone());
            record.absorb_loadgen(&run.json);
        }
        let setup_s = runs.iter().filter_map(|r| r.setup_s).fold(0.0, f64::max);
        record.setup_s = Some(setup_s);
        if setup_s > 0.0 {
            record.conn_per_s = Some(record.connected_count as f64 / setup_s);
        }
        if matches!(cell.scenario.mode, Mode::Idle | Mode::ConnRamp) {
            // The connect phase: from the loadgens' start until the last one had every client
            // connected (or failed); the broker's CPU over it is what connecting cost.
            let connect = sample::window(&samples, spawned_at_s, spawned_at_s + setup_s);
            record.broker_cpu_connect_s = connect.map(|w| w.cpu_s);
        }
        // The measured window: where every loadgen process was in its own window at once (so
        // all clients were connected), by the wall-clock edges each printed; failing those,
        // the loadgen measures from setup + 20 ms (its start offset) + warm-up.
        let windows: Option<Vec<(u64, u64)>> = runs.iter().map(|r| r.window_unix_ms).collect();
        let (from, to) = match windows.as_deref() {
            Some(w) if !w.is_empty() => match overlap(w) {
                Some((a, b)) => (
                    a as f64 / 1e3 - origin_unix_s,
                    b as f64 / 1e3 - origin_unix_s,
                ),
                None => {
                    record.note = Some(format!(
                        "the loadgen processes' windows did not overlap ({w:?} unix ms): \
                         connects outlasted the shared hold"
                    ));
                    return;
                }
            },
            _ => {
                let warmup_s = cell
                    .scenario
                    .loadgen_f64(self.options.quick, "warmup_s")
                    .unwrap_or(0.0);
                let from = spawned_at_s + setup_s + 0.02 + warmup_s;
                (from, from + record.window_s)
            }
        };
        record.shared_window_s = Some(to - from);
        record.sample_count = samples.len();
        if let Some(w) = sample::window(&samples, from, to) {
            record.window_sample_count = w.sample_count;
            record.broker_cpu_s = Some(w.cpu_s);
            record.broker_rss_max_bytes = w.rss_max_bytes;
            record.broker_fd_max_count = w.fd_max_count;
        }
        // The broker's own descriptors say how many connections it really holds: a client
        // that got its CONNACK and never reads again cannot tell that it was closed since.
        let held = match record.broker_fd_max_count {
            Some(fds) => fds.saturating_sub(record.broker_fd_baseline_count),
            None => record.held_count,
        };
        if held > 0 && record.broker_rss_max_bytes > 0 {
            let grown =
                record.broker_rss_max_bytes as f64 - record.broker_rss_baseline_bytes as f64;
            record.rss_per_conn_bytes = Some(grown / held as f64);
        }
        record.ok = record.window_s > 0.0;
        if record.connected_count == 0 {
            record.ok = false;
            record.note = Some(format!("no client connected: {:?}", record.connect_failed));
        } else if !record.connect_failed.is_empty() {
            record.note = Some(format!("connect failures {:?}", record.connect_failed));
        }
    }

    /// Starts the scenario's loadgen processes, waits for them, reads their JSON.
    fn run_loadgen(
        &self,
        cell: &Cell<'_>,
        broker: &Running,
        scratch: &Path,
        logs: &Path,
        hold_until: Option<u64>,
    ) -> Result<Vec<LoadgenRun>, String> {
        let s = cell.scenario;
        let conns = self.conns(s);
        let processes = self.processes(s);
        let raw_dir = self.options.out_dir.join("raw").join(&s.name);
        std::fs::create_dir_all(&raw_dir).map_err(|e| format!("{}: {e}", raw_dir.display()))?;
        let mut children = Vec::new();
        for p in 0..processes {
            let v5 = s.loadgen_f64(self.options.quick, "mqtt_version") == Some(5.0);
            let port = if v5 { broker.port_v5 } else { broker.port };
            let mut table = self.loadgen_table(cell, port, p, processes, conns);
            if let Some(at) = hold_until {
                table.insert("hold_until_unix_ms".into(), (at as i64).into());
            }
            let file = scratch.join(format!("loadgen-{p}.toml"));
            let text = toml::to_string(&table).map_err(|e| format!("loadgen toml: {e}"))?;
            std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
            let suffix = if processes > 1 {
                format!("-p{p}")
            } else {
                String::new()
            };
            let raw = raw_dir.join(format!("{}{suffix}.loadgen.json", cell.tag()));
            let err_log = logs.join(format!("{}{suffix}.loadgen.log", cell.tag()));
            let err_file = std::fs::File::create(&err_log)
                .map_err(|e| format!("{}: {e}", err_log.display()))?;
            let child = Command::new("taskset")
                .arg("-c")
                .arg(cpu_list(&self.options.loadgen_cpus))
                .arg(&self.options.loadgen)
                .arg("run")
                .arg(&file)
                .arg("--json")
                .arg(&raw)
                .arg("--broker-pid")
                .arg(broker.pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err_file)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.options.loadgen.display()))?;
            children.push((child, raw, err_log));
        }
        let deadline = Instant::now() + self.time_limit(s);
        let mut runs = Vec::new();
        let mut problems = Vec::new();
        for (mut child, raw, err_log) in children {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(st)) => break Some(st),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            let stderr = std::fs::read_to_string(&err_log).unwrap_or_default();
            let Some(status) = status else {
                problems.push(format!(
                    "loadgen overran its time limit ({})",
                    err_log.display()
                ));
                continue;
            };
            // Exit 2 means losses beyond what the QoS allows: the figures are still valid.
            let json = std::fs::read_to_string(&raw)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            let Some(json) = json else {
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error"))
                    .unwrap_or("");
                problems.push(format!("loadgen {status}, no JSON: {last}"));
                continue;
            };
            runs.push(LoadgenRun {
                exit_code: status.code().unwrap_or(-1),
                raw_file: relative(&raw, &self.options.out_dir),
                setup_s: setup_seconds(&stderr),
                window_unix_ms: window_unix_ms(&stderr),
                json,
            });
        }
        if runs.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(runs)
    }

    /// The `[loadgen]` table for process `p` of `processes`.
    fn loadgen_table(
        &self,
        cell: &Cell<'_>,
        port: u16,
        p: usize,
        processes: usize,
        conns: usize,
    ) -> toml::Table {
        let mut extra = toml::Table::new();
        extra.insert("host".into(), "127.0.0.1".into());
        extra.insert("port".into(), i64::from(port).into());
        let cpus: Vec<toml::Value> = self
            .options
            .loadgen_cpus
            .iter()
            .map(|c| toml::Value::Integer(*c as i64))
            .collect();
        extra.insert("cpus".into(), toml::Value::Array(cpus));
        if let Some(rate) = cell.offered_per_s {
            extra.insert("total_rate".into(), rate.into());
            extra.insert("rate".into(), 0.0.into());
        }
        if processes > 1 {
            // Split the connections; distinct client ids (one process must not take over
            // another's sessions) and source addresses (ephemeral ports run out per address).
            let share = conns / processes + usize::from(p < conns % processes);
            extra.insert("conns".into(), (share as i64).into());
            extra.insert("client_id".into(), format!("culex-bench-p{p}-%c-%i").into());
            let base = 2 + p * 4;
            let sources: Vec<toml::Value> = (base..base + 4)
                .map(|i| toml::Value::String(format!("127.0.0.{i}")))
                .collect();
            extra.insert("sources".into(), toml::Value::Array(sources));
        }
        cell.scenario.loadgen_table(self.options.quick, &extra)
    }

    fn conns(&self, s: &ScenarioSpec) -> usize {
        s.loadgen_f64(self.options.quick, "conns").unwrap_or(100.0) as usize
    }

    /// Loadgen processes for a scenario: connection scenarios split their clients so no
    /// process passes its own open-files limit.
    fn processes(&self, s: &ScenarioSpec) -> usize {
        if s.mode == Mode::Idle || s.mode == Mode::ConnRamp {
            s.processes
                .max(self.conns(s).div_ceil(self.options.conns_per_process_max))
        } else {
            1
        }
    }

    /// How long a loadgen process may take before it is killed: its phases plus room for a
    /// slow setup (its own setup deadline is 30 s beyond the connection ramp).
    fn time_limit(&self, s: &ScenarioSpec) -> Duration {
        let q = self.options.quick;
        let get = |k: &str, d: f64| s.loadgen_f64(q, k).unwrap_or(d);
        let conns = get("conns", 100.0);
        let rate = get("conn_rate", 0.0);
        let ramp = if rate > 0.0 { conns / rate } else { 0.0 };
        let hold = if self.processes(s) > 1 {
            hold_budget_s(self.conns(s), self.options.conns_per_process_max)
        } else {
            0.0
        };
        let secs = ramp
            + hold
            + 30.0
            + get("warmup_s", 0.0)
            + get("duration_s", 10.0)
            + 4.0 * get("drain_s", 2.0).max(0.1)
            + 40.0;
        Duration::from_secs_f64(secs)
    }
}

struct LoadgenRun {
    exit_code: i32,
    raw_file: String,
    setup_s: Option<f64>,
    /// The measured window's edges as the process printed them.
    window_unix_ms: Option<(u64, u64)>,
    json: Value,
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where every window `[from, to)` overlaps, or `None` when they do not all meet.
pub fn overlap(windows: &[(u64, u64)]) -> Option<(u64, u64)> {
    let from = windows.iter().map(|w| w.0).max()?;
    let to = windows.iter().map(|w| w.1).min()?;
    (to > from).then_some((from, to))
}

/// Seconds from the loadgens' start to the shared instant they begin their hold: room for
/// the slowest broker here to connect everyone (NATS takes ~2,800 connections/s, Mosquitto
/// 19,500 in 11.8 s when some connects time out, and a connect caught in the kernel's
/// accept-queue retries waits 1 + 3 s more), and for the
/// attempts beyond the open-files limit to time out (the loadgen's connect timeout is 10 s,
/// but the kernel's SYN retries and the queue of attempts behind them stretch it).
pub fn hold_budget_s(conns: usize, conns_per_process_max: usize) -> f64 {
    let reachable = conns.min(conns_per_process_max + 1_000);
    // Observed: with 100,000 attempts the last process finished setup ~31 s in.
    let timeouts = if conns > reachable { 25.0 } else { 0.0 };
    4.0 + reachable as f64 / 2_000.0 + timeouts
}

/// A broker log kept in the results folder is cut to its head and tail past this size (NATS
/// logs a line per refused connection: 14 MB in one 100k run).
pub const LOG_KEEP_BYTES: usize = 256 * 1024;

/// Keeps the first and last `max_bytes / 2` of a log, with a line saying what was cut.
pub fn trim_log(path: &Path, max_bytes: usize) {
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    if text.len() <= max_bytes {
        return;
    }
    let half = max_bytes / 2;
    let mut out = text[..half].to_vec();
    out.extend_from_slice(
        format!(
            "\n[… culex-bench cut {} bytes here …]\n",
            text.len() - 2 * half
        )
        .as_bytes(),
    );
    out.extend_from_slice(&text[text.len() - half..]);
    let _ = std::fs::write(path, out);
}

/// The first line of a broker log that names a resource limit (open files, memory,
/// connection caps), trimmed to a readable length.
pub fn limit_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let hit = text.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        [
            "open files",
            "emfile",
            "too many",
            "out of memory",
            "maximum connections",
            "max_connections",
        ]
        .iter()
        .any(|k| l.contains(k))
    })?;
    Some(hit.trim().chars().take(160).collect())
}

/// `[0, 2, 3]` as `0,2,3` for taskset.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_lines_from_broker_logs() {
        let dir = std::env::temp_dir().join(format!("culex-bench-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("b.log");
        std::fs::write(
            &log,
            "1700: mosquitto starting\n1701: Error: Too many open files\n",
        )
        .expect("write");
        assert_eq!(
            limit_line(&log).as_deref(),
            Some("1701: Error: Too many open files")
        );
        std::fs::write(&log, "all fine\n").expect("write");
        assert_eq!(limit_line(&log), None);
        assert_eq!(limit_line(&dir.join("missing.log")), None);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(cpu_list(&[0, 2, 3]), "0,2,3");
    }

    #[test]
    fn the_shared_window_is_where_every_process_measured() {
        assert_eq!(overlap(&[(100, 400), (250, 500)]), Some((250, 400)));
        assert_eq!(overlap(&[(100, 400)]), Some((100, 400)));
        // One process connected after the other had finished holding: no common window.
        assert_eq!(overlap(&[(100, 200), (300, 400)]), None);
        assert_eq!(
            overlap(&[(100, 200), (200, 400)]),
            None,
            "touching is not overlapping"
        );
        assert_eq!(overlap(&[]), None);
    }

    #[test]
    fn hold_budget_grows_with_connections_and_waits_out_timeouts() {
        let b10k = hold_budget_s(10_000, 19_000);
        let b19k = hold_budget_s(19_500, 19_000);
        assert!(b10k < b19k, "{b10k} {b19k}");
        // 19,500 at NATS's ~2,800/s takes ~7 s: the budget covers it with room for retries.
        assert!(b19k > 19_500.0 / 2_800.0 + 3.0, "{b19k}");
        // Beyond the open-files limit the extra attempts time out (10 s) before setup ends.
        let b100k = hold_budget_s(100_000, 19_000);
        assert!(b100k >= b19k + 20.0 && b100k < 45.0, "{b100k}");
    }

    #[test]
    fn long_logs_keep_head_and_tail() {
        let dir = std::env::temp_dir().join(format!("culex-bench-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("b.log");
        let text = format!("FIRST\n{}LAST\n", "x".repeat(10_000));
        std::fs::write(&log, &text).expect("write");
        trim_log(&log, 100);
        let cut = std::fs::read_to_string(&log).expect("read");
        assert!(cut.starts_with("FIRST") && cut.ends_with("LAST\n"), "{cut}");
        assert!(cut.len() < 200 && cut.contains("cut 9911 bytes"), "{cut}");
        std::fs::write(&log, "short\n").expect("write");
        trim_log(&log, 100);
        assert_eq!(std::fs::read_to_string(&log).expect("read"), "short\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
