//! Issue #5's performance targets, checked against a suite's cells: for each target, Culex with
//! one shard (pinned to one core), Mosquitto from the same run, their ratio, the bound, and
//! whether it is met. Written into `summary.json` and at the top of the results READMEs.

use serde::{Deserialize, Serialize};

use crate::stats::{ratio, Spread};
use crate::summary::{CellSummary, REFERENCE_BROKER};

/// The broker the targets are about: one shard on one core, against Mosquitto on one core.
pub const TARGET_BROKER: &str = "culex-1";

/// Which figure of a cell a target bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Delivered msgs/s; the bound is on the ratio to Mosquitto's.
    ThroughputRatio,
    CpuUsPerMsg,
    P99Us,
    P999Us,
    RssPerConnBytes,
    CpuUsPerConnect,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::ThroughputRatio => "delivered msg/s",
            Metric::CpuUsPerMsg => "broker CPU µs/msg",
            Metric::P99Us => "p99 µs",
            Metric::P999Us => "p99.9 µs",
            Metric::RssPerConnBytes => "RSS per connection, B",
            Metric::CpuUsPerConnect => "broker CPU µs/connect",
        }
    }

    fn of(self, c: &CellSummary) -> Option<Spread> {
        match self {
            Metric::ThroughputRatio => c.delivered_per_s,
            Metric::CpuUsPerMsg => c.broker_cpu_us_per_msg,
            Metric::P99Us => c.p99_us,
            Metric::P999Us => c.p999_us,
            Metric::RssPerConnBytes => c.rss_per_conn_bytes,
            Metric::CpuUsPerConnect => c.cpu_us_per_connect,
        }
    }
}

/// Which side of the bound passes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(b) => v >= b,
            Bound::AtMost(b) => v <= b,
        }
    }
}

/// One row of issue #5's target table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The scenario file that measures it.
    pub scenario: &'static str,
    /// The row as the issue words it.
    pub row: &'static str,
    pub metric: Metric,
    pub bound: Bound,
}

const fn t(scenario: &'static str, row: &'static str, metric: Metric, bound: Bound) -> Target {
    Target {
        scenario,
        row,
        metric,
        bound,
    }
}

/// Issue #5, "Must show": 1.25× the fastest broker measured on this machine, per core.
pub const TARGETS: [Target; 12] = [
    t(
        "fan-in",
        "fan-in 50 → 1, QoS 0, max rate",
        Metric::ThroughputRatio,
        Bound::AtLeast(13.0),
    ),
    t(
        "fan-in",
        "fan-in 50 → 1, QoS 0, max rate",
        Metric::CpuUsPerMsg,
        Bound::AtMost(0.34),
    ),
    t(
        "pairs-qos0",
        "500 pairs, QoS 0, max rate",
        Metric::ThroughputRatio,
        Bound::AtLeast(15.0),
    ),
    t(
        "pairs-qos0",
        "500 pairs, QoS 0, max rate",
        Metric::CpuUsPerMsg,
        Bound::AtMost(0.45),
    ),
    t(
        "fan-out",
        "fan-out 1 → 500, QoS 0 (per delivery)",
        Metric::ThroughputRatio,
        Bound::AtLeast(35.0),
    ),
    t(
        "fan-out",
        "fan-out 1 → 500, QoS 0 (per delivery)",
        Metric::CpuUsPerMsg,
        Bound::AtMost(0.14),
    ),
    t(
        "pairs-qos1",
        "100 pairs, QoS 1, 10 in flight each",
        Metric::ThroughputRatio,
        Bound::AtLeast(7.5),
    ),
    t(
        "pairs-qos1",
        "100 pairs, QoS 1, 10 in flight each",
        Metric::CpuUsPerMsg,
        Bound::AtMost(1.4),
    ),
    t(
        "latency-20k",
        "100 pairs, QoS 0 at 20k msgs/s total",
        Metric::P99Us,
        Bound::AtMost(300.0),
    ),
    t(
        "latency-20k",
        "100 pairs, QoS 0 at 20k msgs/s total",
        Metric::P999Us,
        Bound::AtMost(1000.0),
    ),
    t(
        "idle-19500",
        "19,500 idle connections, keepalive 60 s",
        Metric::RssPerConnBytes,
        Bound::AtMost(736.0),
    ),
    t(
        "idle-19500",
        "19,500 idle connections, keepalive 60 s",
        Metric::CpuUsPerConnect,
        Bound::AtMost(17.0),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Met,
    NotMet,
    /// The scenario, Culex or (for a ratio) Mosquitto has no figure in this run.
    NotMeasured,
}

/// A target with this run's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRow {
    pub scenario: String,
    pub row: String,
    pub metric: Metric,
    pub bound: Bound,
    /// Culex (1 shard): median and spread over the repeats.
    pub culex: Option<Spread>,
    /// Mosquitto's median in the same run.
    pub mosquitto: Option<f64>,
    /// Culex's median over Mosquitto's.
    pub ratio: Option<f64>,
    /// The figure the bound applies to: the ratio for throughput, Culex's median otherwise.
    pub checked: Option<f64>,
    pub verdict: Verdict,
}

/// Every target against `cells` (the latency-curve points are not used).
pub fn evaluate(cells: &[CellSummary]) -> Vec<TargetRow> {
    let find = |scenario: &str, broker: &str| {
        cells
            .iter()
            .find(|c| c.scenario == scenario && c.broker == broker && c.load_fraction.is_none())
    };
    TARGETS
        .iter()
        .map(|t| {
            let culex = find(t.scenario, TARGET_BROKER).and_then(|c| t.metric.of(c));
            let mosquitto = find(t.scenario, REFERENCE_BROKER)
                .and_then(|c| t.metric.of(c))
                .map(|s| s.median);
            let ratio = culex.zip(mosquitto).and_then(|(c, m)| ratio(c.median, m));
            let checked = match t.metric {
                Metric::ThroughputRatio => ratio,
                _ => culex.map(|c| c.median),
            };
            let verdict = match checked {
                None => Verdict::NotMeasured,
                Some(v) if t.bound.holds(v) => Verdict::Met,
                Some(_) => Verdict::NotMet,
            };
            TargetRow {
                scenario: t.scenario.into(),
                row: t.row.into(),
                metric: t.metric,
                bound: t.bound,
                culex,
                mosquitto,
                ratio,
                checked,
                verdict,
            }
        })
        .collect()
}

/// A figure with as many digits as it needs to be read (`0.34`, `12.5`, `736`, `1.76M`).
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn bound_text(t: &TargetRow) -> String {
    let (op, b) = match t.bound {
        Bound::AtLeast(b) => ("≥", b),
        Bound::AtMost(b) => ("≤", b),
    };
    match t.metric {
        Metric::ThroughputRatio => format!("{op} {}× Mosquitto", num(b)),
        _ => format!("{op} {}", num(b)),
    }
}

/// The targets as a Markdown table, with a count of those met.
pub fn markdown(rows: &[TargetRow]) -> String {
    let met = rows.iter().filter(|r| r.verdict == Verdict::Met).count();
    let measured = rows
        .iter()
        .filter(|r| r.verdict != Verdict::NotMeasured)
        .count();
    let mut out = format!(
        "Issue #5's targets: Culex with 1 shard on one core against Mosquitto on one core, \
         loadgen on the other core, same run. **{met} of {} met** ({measured} measured).\n\n\
         | target (64-byte payloads) | figure | Culex (1 shard) | Mosquitto | ratio | target | verdict |\n\
         |---|---|---|---|---|---|---|\n",
        rows.len()
    );
    for r in rows {
        let culex = r.culex.map_or("-".into(), |s| {
            if s.count > 1 {
                format!("{} ±{:.0}%", num(s.median), s.rel_spread * 50.0)
            } else {
                num(s.median)
            }
        });
        let verdict = match r.verdict {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::NotMeasured => "not measured",
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.row,
            r.metric.label(),
            culex,
            r.mosquitto.map_or("-".into(), num),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}×")),
            bound_text(r),
            verdict,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Latency, RunRecord};
    use crate::summary::summarise;

    fn run(scenario: &str, broker: &str, rate: f64, cpu: f64) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            broker: broker.into(),
            ok: true,
            delivered_per_s: rate,
            broker_cpu_us_per_msg: Some(cpu),
            ..RunRecord::default()
        }
    }

    fn row<'a>(rows: &'a [TargetRow], scenario: &str, metric: Metric) -> &'a TargetRow {
        rows.iter()
            .find(|r| r.scenario == scenario && r.metric == metric)
            .expect("every target has a row")
    }

    #[test]
    fn every_target_names_a_shipped_scenario() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let specs = crate::scenario::load_dir(&dir).expect("shipped scenarios parse");
        for t in TARGETS {
            assert!(
                specs.iter().any(|s| s.name == t.scenario),
                "no scenario {}",
                t.scenario
            );
        }
    }

    #[test]
    fn ratios_and_bounds_decide_the_verdict() {
        let mut records = vec![
            // fan-in: 14× Mosquitto (met) at 0.40 µs/msg (not met: bound 0.34).
            run("fan-in", "mosquitto", 100_000.0, 9.0),
            run("fan-in", "culex-1", 1_400_000.0, 0.40),
            // pairs-qos0: only Culex ran, so no ratio.
            run("pairs-qos0", "culex-1", 900_000.0, 0.30),
            // culex-all does not count toward the targets.
            run("fan-out", "mosquitto", 100_000.0, 10.0),
            run("fan-out", "culex-all", 9_000_000.0, 0.01),
        ];
        let mut idle = run("idle-19500", "culex-1", 0.0, 0.0);
        idle.rss_per_conn_bytes = Some(736.0);
        idle.broker_cpu_us_per_connect = Some(17.5);
        records.push(idle);
        let mut lat = run("latency-20k", "culex-1", 20_000.0, 1.0);
        lat.latency = Some(Latency {
            count: 100,
            p99_us: 250.0,
            p999_us: 1200.0,
            ..Latency::default()
        });
        records.push(lat);
        let rows = evaluate(&summarise(&records));
        assert_eq!(rows.len(), TARGETS.len());

        let r = row(&rows, "fan-in", Metric::ThroughputRatio);
        assert_eq!(
            (r.ratio, r.checked, r.verdict),
            (Some(14.0), Some(14.0), Verdict::Met)
        );
        assert_eq!(r.mosquitto, Some(100_000.0));
        let r = row(&rows, "fan-in", Metric::CpuUsPerMsg);
        assert_eq!((r.checked, r.verdict), (Some(0.40), Verdict::NotMet));
        assert!((r.ratio.expect("both ran") - 0.40 / 9.0).abs() < 1e-12);

        let r = row(&rows, "pairs-qos0", Metric::ThroughputRatio);
        assert_eq!((r.ratio, r.verdict), (None, Verdict::NotMeasured));
        let r = row(&rows, "pairs-qos0", Metric::CpuUsPerMsg);
        assert_eq!(r.verdict, Verdict::Met, "absolute bounds need no Mosquitto");

        let r = row(&rows, "fan-out", Metric::ThroughputRatio);
        assert_eq!(r.verdict, Verdict::NotMeasured, "culex-all is not culex-1");

        let r = row(&rows, "idle-19500", Metric::RssPerConnBytes);
        assert_eq!(r.verdict, Verdict::Met, "the bound is inclusive");
        let r = row(&rows, "idle-19500", Metric::CpuUsPerConnect);
        assert_eq!(r.verdict, Verdict::NotMet);
        assert_eq!(
            row(&rows, "latency-20k", Metric::P99Us).verdict,
            Verdict::Met
        );
        assert_eq!(
            row(&rows, "latency-20k", Metric::P999Us).verdict,
            Verdict::NotMet
        );
        assert_eq!(
            row(&rows, "pairs-qos1", Metric::CpuUsPerMsg).verdict,
            Verdict::NotMeasured
        );

        let md = markdown(&rows);
        assert!(md.contains("**4 of 12 met** (7 measured)"), "{md}");
        assert!(
            md.contains(
                "| fan-in 50 → 1, QoS 0, max rate | delivered msg/s | 1.40M | 100000 | 14.00× \
                 | ≥ 13.0× Mosquitto | met |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| broker CPU µs/msg | 0.40 | 9.00 | 0.04× | ≤ 0.34 | **not met** |"),
            "{md}"
        );
    }
}
