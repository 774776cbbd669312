//! Figures: what each core counts (`CoreStats`), merged into one `Summary` at the end, printed
//! for people, written as JSON, and the verdict on losses that decides the exit status.

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Latencies are recorded in nanoseconds, up to an hour; 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("bounds are valid constants")
}

/// Counters and histograms one core keeps; merged across cores with `merge`.
#[derive(Debug, Clone)]
pub struct CoreStats {
    pub connected_count: u64,
    pub connect_failed: BTreeMap<String, u64>,
    /// Connections that ended before the run did (broker closed, I/O error).
    pub dropped_count: u64,
    pub subscribed_count: u64,
    pub subscribe_failed_count: u64,
    pub sent_count: u64,
    pub acked_count: u64,
    pub received_count: u64,
    pub unique_count: u64,
    pub duplicate_count: u64,
    pub out_of_order_count: u64,
    pub retained_received_count: u64,
    pub foreign_count: u64,
    pub gaps_dropped_count: u64,
    pub connect_latency: Histogram<u64>,
    pub subscribe_latency: Histogram<u64>,
    /// Publish → acknowledgement (PUBACK, or PUBCOMP for QoS 2), from the actual send.
    pub ack_latency: Histogram<u64>,
    /// From the intended send time (coordinated omission corrected).
    pub latency: Histogram<u64>,
    /// From the actual send time.
    pub latency_uncorrected: Histogram<u64>,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            connected_count: 0,
            connect_failed: BTreeMap::new(),
            dropped_count: 0,
            subscribed_count: 0,
            subscribe_failed_count: 0,
            sent_count: 0,
            acked_count: 0,
            received_count: 0,
            unique_count: 0,
            duplicate_count: 0,
            out_of_order_count: 0,
            retained_received_count: 0,
            foreign_count: 0,
            gaps_dropped_count: 0,
            connect_latency: new_histogram(),
            subscribe_latency: new_histogram(),
            ack_latency: new_histogram(),
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
        }
    }
}

impl CoreStats {
    pub fn fail_connect(&mut self, reason: impl Into<String>) {
        *self.connect_failed.entry(reason.into()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &CoreStats) {
        self.connected_count += other.connected_count;
        for (reason, n) in &other.connect_failed {
            *self.connect_failed.entry(reason.clone()).or_insert(0) += n;
        }
        self.dropped_count += other.dropped_count;
        self.subscribed_count += other.subscribed_count;
        self.subscribe_failed_count += other.subscribe_failed_count;
        self.sent_count += other.sent_count;
        self.acked_count += other.acked_count;
        self.received_count += other.received_count;
        self.unique_count += other.unique_count;
        self.duplicate_count += other.duplicate_count;
        self.out_of_order_count += other.out_of_order_count;
        self.retained_received_count += other.retained_received_count;
        self.foreign_count += other.foreign_count;
        self.gaps_dropped_count += other.gaps_dropped_count;
        for (mine, theirs) in [
            (&mut self.connect_latency, &other.connect_latency),
            (&mut self.subscribe_latency, &other.subscribe_latency),
            (&mut self.ack_latency, &other.ack_latency),
            (&mut self.latency, &other.latency),
            (&mut self.latency_uncorrected, &other.latency_uncorrected),
        ] {
            mine.add(theirs)
                .expect("all histograms share the same bounds");
        }
    }
}

/// The end-of-run figures.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: CoreStats,
    pub qos: u8,
    pub expected_count: u64,
    /// Seconds over which the rates are measured (warm-up excluded).
    pub window_s: f64,
    pub window_sent_count: u64,
    pub window_received_count: u64,
    pub loadgen_cpu_s: f64,
    pub broker_cpu_s: Option<f64>,
    pub held_count: u64,
}

impl Summary {
    pub fn lost_count(&self) -> u64 {
        self.expected_count.saturating_sub(self.stats.unique_count)
    }

    /// What the run promised and did not keep: any loss at QoS 1/2, any duplicate at QoS 2,
    /// and any client that could not connect or subscribe (its messages were never counted).
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let failed: u64 = self.stats.connect_failed.values().sum();
        if failed > 0 {
            v.push(format!(
                "{failed} connections failed: {:?}",
                self.stats.connect_failed
            ));
        }
        if self.stats.subscribe_failed_count > 0 {
            v.push(format!(
                "{} subscriptions refused",
                self.stats.subscribe_failed_count
            ));
        }
        if self.qos >= 1 && self.lost_count() > 0 {
            v.push(format!(
                "{} messages lost at QoS {}",
                self.lost_count(),
                self.qos
            ));
        }
        if self.qos == 2 && self.stats.duplicate_count > 0 {
            v.push(format!(
                "{} duplicates at QoS 2",
                self.stats.duplicate_count
            ));
        }
        v
    }

    fn per_s(&self, n: u64) -> f64 {
        if self.window_s > 0.0 {
            n as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// CPU seconds per message handled (sent + received) by the loadgen, in microseconds.
    pub fn loadgen_cpu_us_per_msg(&self) -> Option<f64> {
        let msgs = self.window_sent_count + self.window_received_count;
        (msgs > 0).then(|| self.loadgen_cpu_s * 1e6 / msgs as f64)
    }

    /// Broker CPU per delivered message, in microseconds (per publish when nothing is delivered).
    pub fn broker_cpu_us_per_msg(&self) -> Option<f64> {
        let msgs = self
            .window_received_count
            .max(if self.window_received_count == 0 {
                self.window_sent_count
            } else {
                0
            });
        let cpu = self.broker_cpu_s?;
        (msgs > 0).then(|| cpu * 1e6 / msgs as f64)
    }

    pub fn human(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let fmt_opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} µs"));
        out += &format!(
            "connections: {} connected, {} held at end, {} dropped, failures: {}\n",
            s.connected_count,
            self.held_count,
            s.dropped_count,
            if s.connect_failed.is_empty() {
                "none".to_string()
            } else {
                format!("{:?}", s.connect_failed)
            }
        );
        out += &format!(
            "QoS {}: sent {} (acked {}), received {}, expected {}, lost {}, duplicated {}, \
             out-of-order {}, retained {}\n",
            self.qos,
            s.sent_count,
            s.acked_count,
            s.unique_count,
            self.expected_count,
            self.lost_count(),
            s.duplicate_count,
            s.out_of_order_count,
            s.retained_received_count
        );
        out += &format!(
            "rate over {:.2} s: {:.0} msg/s out, {:.0} msg/s in\n",
            self.window_s,
            self.per_s(self.window_sent_count),
            self.per_s(self.window_received_count)
        );
        out += &format!(
            "cpu: loadgen {:.2} s ({} / msg), broker {} ({} / delivered msg)\n",
            self.loadgen_cpu_s,
            fmt_opt(self.loadgen_cpu_us_per_msg()),
            self.broker_cpu_s
                .map_or("-".into(), |c| format!("{c:.2} s")),
            fmt_opt(self.broker_cpu_us_per_msg()),
        );
        for (name, h) in [
            ("latency (from intended)", &s.latency),
            ("latency (uncorrected)", &s.latency_uncorrected),
            ("ack latency", &s.ack_latency),
            ("connect latency", &s.connect_latency),
            ("subscribe latency", &s.subscribe_latency),
        ] {
            if !h.is_empty() {
                out += &format!("{name:<24} {}\n", percentile_line(h));
            }
        }
        out
    }

    pub fn to_json(&self, scenario: &Value, machine: &Value) -> Value {
        let s = &self.stats;
        json!({
            "tool": { "name": "culex-loadgen", "version": env!("CARGO_PKG_VERSION") },
            "scenario": scenario,
            "machine": machine,
            "connections": {
                "connected": s.connected_count,
                "held_at_end": self.held_count,
                "dropped": s.dropped_count,
                "failed_by_reason": s.connect_failed,
                "subscribed": s.subscribed_count,
                "subscribe_failed": s.subscribe_failed_count,
                "connect_latency_ns": percentiles(&s.connect_latency),
                "subscribe_latency_ns": percentiles(&s.subscribe_latency),
            },
            "messages": {
                "qos": self.qos,
                "sent": s.sent_count,
                "acked": s.acked_count,
                "received": s.unique_count,
                "received_with_duplicates": s.received_count,
                "expected": self.expected_count,
                "lost": self.lost_count(),
                "duplicated": s.duplicate_count,
                "out_of_order": s.out_of_order_count,
                "retained_received": s.retained_received_count,
                "foreign": s.foreign_count,
                "gaps_written_off": s.gaps_dropped_count,
            },
            "window": {
                "seconds": self.window_s,
                "sent": self.window_sent_count,
                "received": self.window_received_count,
                "sent_per_s": self.per_s(self.window_sent_count),
                "received_per_s": self.per_s(self.window_received_count),
            },
            "cpu": {
                "loadgen_s": self.loadgen_cpu_s,
                "loadgen_us_per_msg": self.loadgen_cpu_us_per_msg(),
                "broker_s": self.broker_cpu_s,
                "broker_us_per_delivered_msg": self.broker_cpu_us_per_msg(),
            },
            "latency_ns": percentiles(&s.latency),
            "latency_uncorrected_ns": percentiles(&s.latency_uncorrected),
            "ack_latency_ns": percentiles(&s.ack_latency),
            "violations": self.violations(),
        })
    }
}

const QUANTILES: [(&str, f64); 6] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("max", 1.0),
];

pub fn percentiles(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), json!(h.len()));
    if !h.is_empty() {
        for (name, q) in QUANTILES {
            m.insert(name.into(), json!(h.value_at_quantile(q)));
        }
        m.insert("mean".into(), json!(h.mean()));
    }
    Value::Object(m)
}

/// `p50 12.3µs p90 … max …` with units chosen per value.
pub fn percentile_line(h: &Histogram<u64>) -> String {
    QUANTILES
        .iter()
        .map(|(name, q)| format!("{name} {}", fmt_ns(h.value_at_quantile(*q))))
        .collect::<Vec<_>>()
        .join("  ")
}

pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns}ns"),
        10_000..=9_999_999 => format!("{:.1}µs", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = CoreStats::default();
        let mut b = CoreStats::default();
        a.sent_count = 3;
        b.sent_count = 4;
        a.fail_connect("refused");
        b.fail_connect("refused");
        b.fail_connect("timeout");
        for v in [100, 200, 300] {
            a.latency.record(v).expect("in range");
        }
        b.latency.record(1_000_000).expect("in range");
        a.merge(&b);
        assert_eq!(a.sent_count, 7);
        assert_eq!(a.connect_failed.get("refused"), Some(&2));
        assert_eq!(a.connect_failed.get("timeout"), Some(&1));
        assert_eq!(a.latency.len(), 4);
        assert!(
            a.latency.max() >= 999_000,
            "the other core's slow message survives the merge"
        );
        assert!(a.latency.value_at_quantile(0.5) <= 300);
    }

    #[test]
    fn losses_break_qos1_but_not_qos0() {
        let stats = CoreStats {
            unique_count: 390,
            ..CoreStats::default()
        };
        let mut summary = Summary {
            stats,
            qos: 1,
            expected_count: 400,
            window_s: 2.0,
            window_sent_count: 400,
            window_received_count: 390,
            loadgen_cpu_s: 0.001,
            broker_cpu_s: Some(0.002),
            held_count: 3,
        };
        assert_eq!(summary.lost_count(), 10);
        assert_eq!(summary.violations().len(), 1);
        summary.qos = 0;
        assert!(summary.violations().is_empty());
        summary.stats.fail_connect("connect: ConnectionRefused");
        assert_eq!(
            summary.violations().len(),
            1,
            "a client that never connected is a failure"
        );
        let us = summary
            .loadgen_cpu_us_per_msg()
            .expect("messages were handled");
        assert!((us - 1000.0 / 790.0).abs() < 1e-9);
        let us = summary.broker_cpu_us_per_msg().expect("broker pid given");
        assert!((us - 2000.0 / 390.0).abs() < 1e-9);
        let json = summary.to_json(&json!({}), &json!({}));
        assert_eq!(json["messages"]["lost"], 10);
    }
}
