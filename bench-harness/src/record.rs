//! One run's record: the figures the harness keeps from a broker × scenario × repeat (and load
//! point), read out of `culex-loadgen --json` and the harness's own `/proc` samples.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// From the loadgen's `{ "count", "p50", … }` object in nanoseconds; `None` when empty.
    pub fn from_loadgen(v: &Value) -> Option<Latency> {
        let count = v.get("count")?.as_u64()?;
        if count == 0 {
            return None;
        }
        let us = |k: &str| v.get(k).and_then(Value::as_f64).map(|ns| ns / 1e3);
        Some(Latency {
            count,
            p50_us: us("p50")?,
            p90_us: us("p90")?,
            p99_us: us("p99")?,
            p999_us: us("p99.9")?,
            max_us: us("max")?,
        })
    }
}

/// Everything kept from one run. Fields added later read as their defaults, so `report`
/// still redraws older results folders.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    pub scenario: String,
    pub broker: String,
    pub repeat_index: usize,
    /// Latency curve: the fraction of saturation this run offered (None otherwise).
    pub load_fraction: Option<f64>,
    /// Messages per second the loadgen was asked for (None: as fast as possible).
    pub offered_per_s: Option<f64>,
    /// False when the run produced no usable figures; `note` says why.
    pub ok: bool,
    pub note: Option<String>,
    pub loadgen_exit_codes: Vec<i32>,
    pub window_s: f64,
    pub sent_per_s: f64,
    /// Deliveries to subscribers per second (publishes per second for publish-only runs).
    pub delivered_per_s: f64,
    pub window_delivered_count: u64,
    pub latency: Option<Latency>,
    pub connect_latency: Option<Latency>,
    /// Broker CPU seconds in the window, from the harness's own samples of /proc/PID/stat.
    pub broker_cpu_s: Option<f64>,
    /// The same figure as the loadgen measured it at the window's exact edges (cross-check).
    pub broker_cpu_s_loadgen: Option<f64>,
    pub broker_cpu_us_per_msg: Option<f64>,
    /// Connection scenarios: broker CPU seconds from the loadgens' start until every client
    /// was connected (or failed), and that per connection made.
    pub broker_cpu_connect_s: Option<f64>,
    pub broker_cpu_us_per_connect: Option<f64>,
    /// Several loadgen processes: the Unix ms instant they all began their hold at.
    pub hold_until_unix_ms: Option<u64>,
    /// Seconds of the window every loadgen process measured at once (the sampled window).
    pub shared_window_s: Option<f64>,
    /// /proc samples taken over the whole run, and inside the measured window.
    pub sample_count: usize,
    pub window_sample_count: usize,
    pub broker_rss_baseline_bytes: u64,
    pub broker_rss_max_bytes: u64,
    /// File descriptors the broker held: before any client, and at most in the window.
    pub broker_fd_baseline_count: u64,
    pub broker_fd_max_count: Option<u64>,
    /// (RSS in the window − RSS before any client) / connections the broker held (its open
    /// descriptors over the baseline; the loadgen's count where fds were not sampled).
    pub rss_per_conn_bytes: Option<f64>,
    pub connected_count: u64,
    pub held_count: u64,
    pub dropped_count: u64,
    pub connect_failed: BTreeMap<String, u64>,
    /// Seconds the loadgen took to connect (and subscribe) every client.
    pub setup_s: Option<f64>,
    /// Connections per second over the setup phase.
    pub conn_per_s: Option<f64>,
    pub expected_count: u64,
    pub received_count: u64,
    pub lost_count: u64,
    pub duplicated_count: u64,
    pub violations: Vec<String>,
    pub broker_stop: String,
    /// Raw loadgen JSON files of this run, relative to the results folder.
    pub raw_files: Vec<String>,
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_f64()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

impl RunRecord {
    /// Adds the figures of one loadgen process's JSON (several processes share idle runs).
    pub fn absorb_loadgen(&mut self, json: &Value) {
        let window_s = f(json, &["window", "seconds"]).unwrap_or(0.0);
        self.window_s = self.window_s.max(window_s);
        self.sent_per_s += f(json, &["window", "sent_per_s"]).unwrap_or(0.0);
        let received_per_s = f(json, &["window", "received_per_s"]).unwrap_or(0.0);
        let window_received = u(json, &["window", "received"]);
        // A publish-only run has no subscriber: its publishes are what the broker took in.
        let receivers = json
            .pointer("/scenario/kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "pub");
        if receivers {
            self.delivered_per_s += received_per_s;
            self.window_delivered_count += window_received;
        } else {
            self.delivered_per_s += f(json, &["window", "sent_per_s"]).unwrap_or(0.0);
            self.window_delivered_count += u(json, &["window", "sent"]);
        }
        // Several processes run one idle scenario together; their latencies are not merged
        // (connect latency is what those runs report), the first process's stand in.
        if self.latency.is_none() {
            self.latency = json.get("latency_ns").and_then(Latency::from_loadgen);
        }
        if self.broker_cpu_s_loadgen.is_none() {
            self.broker_cpu_s_loadgen = f(json, &["cpu", "broker_s"]);
        }
        if self.connect_latency.is_none() {
            self.connect_latency = json
                .pointer("/connections/connect_latency_ns")
                .and_then(Latency::from_loadgen);
        }
        self.connected_count += u(json, &["connections", "connected"]);
        self.held_count += u(json, &["connections", "held_at_end"]);
        self.dropped_count += u(json, &["connections", "dropped"]);
        if let Some(m) = json
            .pointer("/connections/failed_by_reason")
            .and_then(Value::as_object)
        {
            for (reason, n) in m {
                *self.connect_failed.entry(reason.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
            }
        }
        self.expected_count += u(json, &["messages", "expected"]);
        self.received_count += u(json, &["messages", "received"]);
        self.lost_count += u(json, &["messages", "lost"]);
        self.duplicated_count += u(json, &["messages", "duplicated"]);
        if let Some(v) = json.get("violations").and_then(Value::as_array) {
            self.violations
                .extend(v.iter().filter_map(|s| s.as_str().map(String::from)));
        }
    }

    /// Broker CPU per delivered message, from the harness's window CPU (or the loadgen's).
    pub fn finish_cpu(&mut self) {
        let cpu = self.broker_cpu_s.or(self.broker_cpu_s_loadgen);
        self.broker_cpu_us_per_msg = match cpu {
            Some(c) if self.window_delivered_count > 0 => {
                Some(c * 1e6 / self.window_delivered_count as f64)
            }
            _ => None,
        };
        self.broker_cpu_us_per_connect = match self.broker_cpu_connect_s {
            Some(c) if self.connected_count > 0 => Some(c * 1e6 / self.connected_count as f64),
            _ => None,
        };
    }
}

/// Parses `window unix ms 1700000000000 1700000003000` (the measured window's wall-clock
/// edges) from the loadgen's stderr.
pub fn window_unix_ms(stderr: &str) -> Option<(u64, u64)> {
    let rest = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("window unix ms "))?;
    let mut words = rest.split_whitespace();
    let from = words.next()?.parse().ok()?;
    let to = words.next()?.parse().ok()?;
    (to >= from).then_some((from, to))
}

/// Parses `setup took 1.23 s` from the loadgen's stderr.
pub fn setup_seconds(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("setup took "))
        .and_then(|rest| rest.trim_end_matches(" s").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loadgen_json(kind: &str, received: u64) -> Value {
        json!({
            "scenario": { "kind": kind },
            "connections": { "connected": 200, "held_at_end": 200, "dropped": 1,
                "failed_by_reason": { "refused": 2 },
                "connect_latency_ns": { "count": 200, "p50": 100000, "p90": 200000,
                    "p99": 300000, "p99.9": 400000, "max": 500000 } },
            "messages": { "expected": 1000, "received": received, "lost": 1000 - received,
                "duplicated": 0 },
            "window": { "seconds": 2.0, "sent": 900, "received": received,
                "sent_per_s": 450.0, "received_per_s": received as f64 / 2.0 },
            "cpu": { "broker_s": 0.5 },
            "latency_ns": { "count": 5, "p50": 1000, "p90": 2000, "p99": 3000,
                "p99.9": 4000, "max": 9000 },
            "violations": ["10 messages lost at QoS 1"],
        })
    }

    #[test]
    fn absorbs_loadgen_json() {
        let mut r = RunRecord::default();
        r.absorb_loadgen(&loadgen_json("pairs", 990));
        assert_eq!(r.delivered_per_s, 495.0);
        assert_eq!((r.window_delivered_count, r.lost_count), (990, 10));
        let lat = r.latency.expect("latency present");
        assert_eq!((lat.p50_us, lat.p999_us, lat.max_us), (1.0, 4.0, 9.0));
        assert_eq!(r.connect_failed.get("refused"), Some(&2));
        r.broker_cpu_s = Some(0.099);
        r.finish_cpu();
        let us = r.broker_cpu_us_per_msg.expect("cpu and deliveries");
        assert!((us - 100.0).abs() < 1e-9, "{us}");
    }

    #[test]
    fn publish_only_counts_publishes_and_processes_add_up() {
        let mut r = RunRecord::default();
        r.absorb_loadgen(&loadgen_json("pub", 0));
        r.absorb_loadgen(&loadgen_json("pub", 0));
        assert_eq!(r.delivered_per_s, 900.0);
        assert_eq!(r.window_delivered_count, 1800);
        assert_eq!((r.connected_count, r.dropped_count), (400, 2));
        r.finish_cpu();
        let us = r
            .broker_cpu_us_per_msg
            .expect("falls back to the loadgen's cpu");
        assert!((us - 0.5e6 / 1800.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_per_connect_over_the_connections_made() {
        let mut r = RunRecord::default();
        r.absorb_loadgen(&loadgen_json("conn", 0));
        r.broker_cpu_connect_s = Some(0.004);
        r.finish_cpu();
        let us = r.broker_cpu_us_per_connect.expect("cpu and connections");
        assert!((us - 20.0).abs() < 1e-9, "{us}");
        r.connected_count = 0;
        r.finish_cpu();
        assert_eq!(r.broker_cpu_us_per_connect, None, "nothing connected");
    }

    #[test]
    fn window_edges_from_stderr() {
        let err =
            "[   1.0s] conns 5/5\nwindow unix ms 1700000000123 1700000003125\nsetup took 1 s\n";
        assert_eq!(
            window_unix_ms(err),
            Some((1_700_000_000_123, 1_700_000_003_125))
        );
        assert_eq!(window_unix_ms("window unix ms 5 4\n"), None, "backwards");
        assert_eq!(window_unix_ms("window unix ms 5\n"), None);
        assert_eq!(window_unix_ms("nothing"), None);
    }

    #[test]
    fn setup_time_from_stderr() {
        let err = "[   1.0s] conns 5/5 | out 0/s\nsetup took 1.25 s\n";
        assert_eq!(setup_seconds(err), Some(1.25));
        assert_eq!(setup_seconds("nothing"), None);
    }
}
