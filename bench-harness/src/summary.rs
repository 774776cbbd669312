//! From run records to the suite's verdict: per scenario × broker × load point, the median
//! and spread of each figure over the repeats, and the ratio of each broker's medians to
//! Mosquitto's from the same run. Written as `summary.json` and the Markdown table of
//! `results/README.md`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::record::RunRecord;
use crate::stats::{ratio, spread, Spread};

/// The reference every ratio is taken against.
pub const REFERENCE_BROKER: &str = "mosquitto";

/// One cell's figures over its repeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSummary {
    pub scenario: String,
    pub broker: String,
    pub load_fraction: Option<f64>,
    pub runs: usize,
    pub ok_runs: usize,
    pub delivered_per_s: Option<Spread>,
    pub offered_per_s: Option<Spread>,
    pub p50_us: Option<Spread>,
    pub p99_us: Option<Spread>,
    pub p999_us: Option<Spread>,
    pub broker_cpu_us_per_msg: Option<Spread>,
    pub broker_rss_max_bytes: Option<Spread>,
    /// The broker's RSS after start-up, before any client.
    pub broker_rss_baseline_bytes: Option<Spread>,
    pub rss_per_conn_bytes: Option<Spread>,
    pub held_count: Option<Spread>,
    /// Connections the broker held by its own descriptor count (over its baseline).
    pub broker_conn_count: Option<Spread>,
    pub conn_per_s: Option<Spread>,
    pub connect_p99_us: Option<Spread>,
    /// Broker CPU over the connect phase per connection made (connection scenarios).
    #[serde(default)]
    pub cpu_us_per_connect: Option<Spread>,
    pub lost_count: u64,
    pub expected_count: u64,
    /// Distinct notes of the runs (connect failures, why a run failed).
    pub notes: Vec<String>,
    /// This cell's medians over Mosquitto's in the same scenario and load point.
    pub throughput_ratio: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub rss_per_conn_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    #[serde(default)]
    pub p999_ratio: Option<f64>,
    #[serde(default)]
    pub cpu_per_connect_ratio: Option<f64>,
}

fn spread_of(records: &[&RunRecord], f: impl Fn(&RunRecord) -> Option<f64>) -> Option<Spread> {
    let v: Vec<f64> = records
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| f(r))
        .collect();
    spread(&v)
}

fn median(s: &Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

/// Groups key: scenario, broker, load fraction in percent (so it can be ordered and compared).
type Key = (String, String, Option<i64>);

fn key(r: &RunRecord) -> Key {
    (
        r.scenario.clone(),
        r.broker.clone(),
        r.load_fraction.map(|f| (f * 1000.0).round() as i64),
    )
}

/// Summarises every cell; ratios are filled against Mosquitto's cell with the same scenario
/// and load point.
pub fn summarise(records: &[RunRecord]) -> Vec<CellSummary> {
    let mut groups: BTreeMap<Key, Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(key(r)).or_default().push(r);
    }
    let mut cells: Vec<CellSummary> = groups.values().map(|g| summarise_cell(g)).collect();
    let reference: BTreeMap<(String, Option<i64>), CellSummary> = cells
        .iter()
        .filter(|c| c.broker == REFERENCE_BROKER)
        .map(|c| ((c.scenario.clone(), pct(c.load_fraction)), c.clone()))
        .collect();
    for c in &mut cells {
        let Some(m) = reference.get(&(c.scenario.clone(), pct(c.load_fraction))) else {
            continue;
        };
        let r = |a: &Option<Spread>, b: &Option<Spread>| ratio(median(a)?, median(b)?);
        c.throughput_ratio = r(&c.delivered_per_s, &m.delivered_per_s);
        c.cpu_ratio = r(&c.broker_cpu_us_per_msg, &m.broker_cpu_us_per_msg);
        c.rss_per_conn_ratio = r(&c.rss_per_conn_bytes, &m.rss_per_conn_bytes);
        c.p99_ratio = r(&c.p99_us, &m.p99_us);
        c.p999_ratio = r(&c.p999_us, &m.p999_us);
        c.cpu_per_connect_ratio = r(&c.cpu_us_per_connect, &m.cpu_us_per_connect);
    }
    cells
}

fn pct(f: Option<f64>) -> Option<i64> {
    f.map(|f| (f * 1000.0).round() as i64)
}

fn summarise_cell(g: &[&RunRecord]) -> CellSummary {
    let first = g[0];
    let mut notes: Vec<String> = g.iter().filter_map(|r| r.note.clone()).collect();
    notes.sort();
    notes.dedup();
    CellSummary {
        scenario: first.scenario.clone(),
        broker: first.broker.clone(),
        load_fraction: first.load_fraction,
        runs: g.len(),
        ok_runs: g.iter().filter(|r| r.ok).count(),
        delivered_per_s: spread_of(g, |r| Some(r.delivered_per_s)),
        offered_per_s: spread_of(g, |r| r.offered_per_s),
        p50_us: spread_of(g, |r| r.latency.map(|l| l.p50_us)),
        p99_us: spread_of(g, |r| r.latency.map(|l| l.p99_us)),
        p999_us: spread_of(g, |r| r.latency.map(|l| l.p999_us)),
        broker_cpu_us_per_msg: spread_of(g, |r| r.broker_cpu_us_per_msg),
        broker_rss_max_bytes: spread_of(g, |r| Some(r.broker_rss_max_bytes as f64)),
        broker_rss_baseline_bytes: spread_of(g, |r| Some(r.broker_rss_baseline_bytes as f64)),
        rss_per_conn_bytes: spread_of(g, |r| r.rss_per_conn_bytes),
        held_count: spread_of(g, |r| Some(r.held_count as f64)),
        broker_conn_count: spread_of(g, |r| {
            r.broker_fd_max_count
                .map(|f| f.saturating_sub(r.broker_fd_baseline_count) as f64)
        }),
        conn_per_s: spread_of(g, |r| r.conn_per_s),
        connect_p99_us: spread_of(g, |r| r.connect_latency.map(|l| l.p99_us)),
        cpu_us_per_connect: spread_of(g, |r| r.broker_cpu_us_per_connect),
        lost_count: g.iter().map(|r| r.lost_count).sum(),
        expected_count: g.iter().map(|r| r.expected_count).sum(),
        notes,
        throughput_ratio: None,
        cpu_ratio: None,
        rss_per_conn_ratio: None,
        p99_ratio: None,
        p999_ratio: None,
        cpu_per_connect_ratio: None,
    }
}

/// `12.3k ±4%` style: the median with its spread, compact for a table.
fn fmt_spread(s: &Option<Spread>, scale: f64, unit: &str) -> String {
    match s {
        None => "-".into(),
        Some(s) => {
            let v = s.median / scale;
            let num = if v >= 100.0 {
                format!("{v:.0}")
            } else if v >= 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            };
            if s.count > 1 {
                format!("{num}{unit} ±{:.0}%", s.rel_spread * 50.0)
            } else {
                format!("{num}{unit}")
            }
        }
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}×"))
}

/// Which table a scenario's cells go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Messages: rates, latency, CPU per message, losses.
    Messages,
    /// Connections: how many are held, memory per connection, connect rate.
    Connections,
}

fn lost_text(c: &CellSummary) -> String {
    match c.expected_count {
        0 => "-".to_string(),
        _ if c.lost_count == 0 => "0".to_string(),
        n => format!(
            "{} ({:.2}%)",
            c.lost_count,
            c.lost_count as f64 * 100.0 / n as f64
        ),
    }
}

/// The Markdown tables of the headline cells, scenarios in suite order and brokers in run
/// order (latency-curve points are charted, not tabled).
pub fn markdown_table(
    cells: &[CellSummary],
    scenarios: &[(String, TableKind)],
    brokers: &[String],
) -> String {
    let rows = |kind: TableKind| {
        scenarios
            .iter()
            .filter(move |(_, k)| *k == kind)
            .flat_map(move |(name, _)| {
                brokers.iter().filter_map(move |b| {
                    cells.iter().find(|c| {
                        &c.scenario == name && &c.broker == b && c.load_fraction.is_none()
                    })
                })
            })
    };
    let mut out = String::new();
    if scenarios.iter().any(|(_, k)| *k == TableKind::Messages) {
        out +=
            "| scenario | broker | delivered msg/s | vs Mosquitto | p50 µs | p99 µs | p99.9 µs | \
         broker CPU µs/msg | CPU vs Mosquitto | broker RSS MiB | lost |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n";
    }
    for c in rows(TableKind::Messages) {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.scenario,
            c.broker,
            fmt_spread(&c.delivered_per_s, 1.0, ""),
            fmt_ratio(c.throughput_ratio),
            fmt_spread(&c.p50_us, 1.0, ""),
            fmt_spread(&c.p99_us, 1.0, ""),
            fmt_spread(&c.p999_us, 1.0, ""),
            fmt_spread(&c.broker_cpu_us_per_msg, 1.0, ""),
            fmt_ratio(c.cpu_ratio),
            fmt_spread(&c.broker_rss_max_bytes, 1048576.0, ""),
            lost_text(c),
        );
    }
    if scenarios.iter().any(|(_, k)| *k == TableKind::Connections) {
        if !out.is_empty() {
            out += "\n";
        }
        out += "| scenario | broker | held (loadgen) | held (broker fds) | broker RSS MiB | RSS per connection, B \
                | vs Mosquitto | connections/s | connect p99 µs | broker CPU µs/connect |\n\
                |---|---|---|---|---|---|---|---|---|---|\n";
        for c in rows(TableKind::Connections) {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.scenario,
                c.broker,
                fmt_spread(&c.held_count, 1.0, ""),
                fmt_spread(&c.broker_conn_count, 1.0, ""),
                fmt_spread(&c.broker_rss_max_bytes, 1048576.0, ""),
                fmt_spread(&c.rss_per_conn_bytes, 1.0, ""),
                fmt_ratio(c.rss_per_conn_ratio),
                fmt_spread(&c.conn_per_s, 1.0, ""),
                fmt_spread(&c.connect_p99_us, 1.0, ""),
                fmt_spread(&c.cpu_us_per_connect, 1.0, ""),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Latency;

    fn rec(broker: &str, rate: f64, cpu: f64, p99: f64) -> RunRecord {
        RunRecord {
            scenario: "pairs".into(),
            broker: broker.into(),
            ok: true,
            delivered_per_s: rate,
            broker_cpu_us_per_msg: Some(cpu),
            latency: Some(Latency {
                count: 10,
                p99_us: p99,
                ..Latency::default()
            }),
            ..RunRecord::default()
        }
    }

    #[test]
    fn medians_and_ratios_against_mosquitto() {
        let records = vec![
            rec("mosquitto", 100.0, 10.0, 50.0),
            rec("culex-1", 900.0, 1.0, 10.0),
            rec("mosquitto", 120.0, 8.0, 40.0),
            rec("culex-1", 1100.0, 1.2, 20.0),
            rec("mosquitto", 80.0, 12.0, 60.0),
            rec("culex-1", 1000.0, 0.8, 30.0),
        ];
        let cells = summarise(&records);
        let culex = cells.iter().find(|c| c.broker == "culex-1").expect("cell");
        let d = culex.delivered_per_s.expect("rates");
        assert_eq!(
            (d.median, d.min, d.max, d.count),
            (1000.0, 900.0, 1100.0, 3)
        );
        assert_eq!(culex.throughput_ratio, Some(10.0));
        assert_eq!(culex.cpu_ratio, Some(0.1));
        assert_eq!(culex.p99_ratio, Some(20.0 / 50.0));
        let mosq = cells
            .iter()
            .find(|c| c.broker == "mosquitto")
            .expect("cell");
        assert_eq!(mosq.throughput_ratio, Some(1.0));
        let brokers = ["mosquitto".to_string(), "culex-1".to_string()];
        let table = markdown_table(&cells, &[("pairs".into(), TableKind::Messages)], &brokers);
        assert!(
            table.contains("| pairs | culex-1 | 1000 ±10% | 10.00× |"),
            "{table}"
        );
        let mosquitto_row = table.find("| pairs | mosquitto |").expect("row");
        assert!(
            mosquitto_row < table.find("| pairs | culex-1 |").expect("row"),
            "run order"
        );
        assert!(
            !table.contains("connections held"),
            "no connection scenario, no table"
        );
    }

    #[test]
    fn failed_runs_do_not_count_and_no_reference_means_no_ratio() {
        let mut bad = rec("culex-1", 0.0, 0.0, 0.0);
        bad.ok = false;
        bad.note = Some("exited".into());
        let cells = summarise(&[bad, rec("culex-1", 500.0, 1.0, 5.0)]);
        assert_eq!(cells.len(), 1);
        let c = &cells[0];
        assert_eq!((c.runs, c.ok_runs), (2, 1));
        assert_eq!(c.delivered_per_s.map(|s| s.median), Some(500.0));
        assert_eq!(
            c.throughput_ratio, None,
            "no mosquitto cell to compare with"
        );
        assert_eq!(c.notes, vec!["exited".to_string()]);
    }
}
