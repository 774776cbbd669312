//! The results folder: `runs.json` (every record), `summary.json` (medians, spreads, ratios,
//! and the machine, commit and commands that produced them), `charts/*.svg`, and `README.md`
//! with the table; plus `results/README.md`, the latest table for people.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::chart::{self, Curve};
use crate::record::RunRecord;
use crate::scenario::{Mode, ScenarioSpec};
use crate::summary::{markdown_table, summarise, CellSummary, TableKind, REFERENCE_BROKER};
use crate::targets;

/// Where and how the suite ran, recorded beside every figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub date_utc: String,
    pub commit: String,
    pub machine: Value,
    pub brokers: Vec<Value>,
    pub broker_cpus: String,
    pub culex_all_cpus: String,
    pub loadgen_cpus: String,
    pub quick: bool,
    pub repeat: usize,
    pub command: String,
    pub notes: Vec<String>,
    /// Scenario name → title and mode, in suite order.
    pub scenarios: Vec<Value>,
}

/// The machine, for the record: CPU model, cores, kernel, memory, open-files limit.
pub fn describe_machine() -> Value {
    let mut m = culex_loadgen::machine::describe();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let (_, nofile_hard) = culex_loadgen::machine::raise_nofile();
    if let Some(o) = m.as_object_mut() {
        o.insert("hostname".into(), json!(host.trim()));
        o.insert("memory_mib".into(), json!(mem_kb / 1024));
        o.insert("nofile_hard".into(), json!(nofile_hard));
    }
    m
}

pub fn scenario_meta(specs: &[ScenarioSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "title": s.title, "mode": s.mode, "kind": s.kind() }))
        .collect()
}

/// Writes everything derived from `records` into `dir` and the latest table to `latest`.
pub fn write_all(
    dir: &Path,
    latest: Option<&Path>,
    meta: &Meta,
    records: &[RunRecord],
) -> Result<Vec<PathBuf>, String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(dir.join("charts")).map_err(|e| io(dir, e))?;
    let runs = dir.join("runs.json");
    let text = serde_json::to_string_pretty(records).map_err(|e| e.to_string())?;
    std::fs::write(&runs, text).map_err(|e| io(&runs, e))?;
    let cells = summarise(records);
    let targets = targets::evaluate(&cells);
    let summary = dir.join("summary.json");
    let text =
        serde_json::to_string_pretty(&json!({ "meta": meta, "targets": targets, "cells": cells }))
            .map_err(|e| e.to_string())?;
    std::fs::write(&summary, text).map_err(|e| io(&summary, e))?;
    let charts = write_charts(dir, meta, &cells)?;
    let readme = render_readme(meta, &cells, dir, &charts);
    let path = dir.join("README.md");
    std::fs::write(&path, &readme).map_err(|e| io(&path, e))?;
    if let Some(latest) = latest {
        let text = render_latest(meta, &cells, dir, latest, &charts);
        std::fs::write(latest, text).map_err(|e| io(latest, e))?;
    }
    Ok(charts)
}

/// Reads back a results folder's `runs.json` and `summary.json` meta (for `report`).
pub fn read_back(dir: &Path) -> Result<(Meta, Vec<RunRecord>), String> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let records: Vec<RunRecord> =
        serde_json::from_str(&read("runs.json")?).map_err(|e| format!("runs.json: {e}"))?;
    let summary: Value =
        serde_json::from_str(&read("summary.json")?).map_err(|e| format!("summary.json: {e}"))?;
    let meta: Meta = serde_json::from_value(summary["meta"].clone())
        .map_err(|e| format!("summary.json meta: {e}"))?;
    Ok((meta, records))
}

fn mode_of(meta: &Meta, scenario: &str) -> Option<Mode> {
    meta.scenarios
        .iter()
        .find(|s| s["name"] == scenario)
        .and_then(|s| serde_json::from_value(s["mode"].clone()).ok())
}

fn title_of(meta: &Meta, scenario: &str) -> String {
    meta.scenarios
        .iter()
        .find(|s| s["name"] == scenario)
        .and_then(|s| s["title"].as_str())
        .unwrap_or(scenario)
        .to_string()
}

/// Scenarios in suite order with the table each belongs in.
fn table_rows(meta: &Meta) -> Vec<(String, TableKind)> {
    scenario_order(meta)
        .into_iter()
        .filter_map(|name| {
            let kind = match mode_of(meta, &name)? {
                Mode::Throughput | Mode::Latency => TableKind::Messages,
                Mode::Idle | Mode::ConnRamp => TableKind::Connections,
                Mode::LatencyCurve => return None,
            };
            Some((name, kind))
        })
        .collect()
}

fn scenario_order(meta: &Meta) -> Vec<String> {
    meta.scenarios
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect()
}

/// Brokers in the order they ran, so each keeps its colour in every chart.
fn broker_order(cells: &[CellSummary], meta: &Meta) -> Vec<String> {
    let mut order: Vec<String> = meta
        .brokers
        .iter()
        .filter_map(|b| b["name"].as_str().map(String::from))
        .collect();
    for c in cells {
        if !order.contains(&c.broker) {
            order.push(c.broker.clone());
        }
    }
    order
}

fn write_charts(dir: &Path, meta: &Meta, cells: &[CellSummary]) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let brokers = broker_order(cells, meta);
    for scenario in scenario_order(meta) {
        let mine: Vec<&CellSummary> = cells.iter().filter(|c| c.scenario == scenario).collect();
        if mine.is_empty() {
            continue; // not run (yet): the suite writes after every scenario
        }
        let title = title_of(meta, &scenario);
        let path = dir.join("charts").join(format!("{scenario}.svg"));
        let result = match mode_of(meta, &scenario) {
            Some(Mode::Throughput) => {
                let bars = per_broker(&brokers, &mine, |c| c.delivered_per_s);
                chart::bars(
                    &path,
                    &title,
                    "delivered msg/s (median, whiskers: min–max)",
                    &bars,
                )
            }
            Some(Mode::Latency) => {
                let bars = per_broker(&brokers, &mine, |c| c.p99_us);
                chart::bars(
                    &path,
                    &title,
                    "p99 latency µs (median, whiskers: min–max)",
                    &bars,
                )
            }
            Some(Mode::ConnRamp) => {
                let bars = per_broker(&brokers, &mine, |c| c.conn_per_s);
                chart::bars(
                    &path,
                    &title,
                    "connections/s (median, whiskers: min–max)",
                    &bars,
                )
            }
            Some(Mode::Idle) => {
                let bars = per_broker(&brokers, &mine, |c| c.held_count);
                chart::bars(&path, &title, "connections held", &bars)
            }
            Some(Mode::LatencyCurve) => {
                let curves = latency_curves(&brokers, &mine);
                chart::latency_curves(&path, &title, &curves)
            }
            None => continue,
        };
        match result {
            Ok(()) => written.push(path),
            Err(e) => eprintln!("note: {e}"),
        }
    }
    let memory = memory_series(&brokers, cells, meta);
    let path = dir.join("charts").join("memory-vs-connections.svg");
    if !memory.is_empty() {
        match chart::memory(&path, "Broker RSS vs idle connections held", &memory) {
            Ok(()) => written.push(path),
            Err(e) => eprintln!("note: {e}"),
        }
    }
    Ok(written)
}

fn per_broker(
    brokers: &[String],
    cells: &[&CellSummary],
    f: impl Fn(&CellSummary) -> Option<crate::stats::Spread>,
) -> Vec<(String, crate::stats::Spread)> {
    brokers
        .iter()
        .filter_map(|b| {
            let c = cells
                .iter()
                .find(|c| &c.broker == b && c.load_fraction.is_none())?;
            Some((b.clone(), f(c)?))
        })
        .collect()
}

fn latency_curves(brokers: &[String], cells: &[&CellSummary]) -> Vec<Curve> {
    brokers
        .iter()
        .filter_map(|b| {
            let mut points: Vec<(f64, f64, f64, f64)> = cells
                .iter()
                .filter(|c| &c.broker == b && c.load_fraction.is_some())
                .filter_map(|c| {
                    Some((
                        c.offered_per_s?.median,
                        c.p50_us?.median,
                        c.p99_us?.median,
                        c.p999_us?.median,
                    ))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!points.is_empty()).then(|| Curve {
                broker: b.clone(),
                points,
            })
        })
        .collect()
}

fn memory_series(
    brokers: &[String],
    cells: &[CellSummary],
    meta: &Meta,
) -> Vec<(String, Vec<(f64, f64)>)> {
    brokers
        .iter()
        .filter_map(|b| {
            let idle = cells
                .iter()
                .filter(|c| &c.broker == b && mode_of(meta, &c.scenario) == Some(Mode::Idle));
            // The broker at rest anchors the line at zero connections.
            let rest = idle
                .clone()
                .filter_map(|c| c.broker_rss_baseline_bytes.map(|s| s.median / 1048576.0))
                .reduce(f64::min)
                .map(|mib| (0.0, mib));
            let pts: Vec<(f64, f64)> = idle
                .filter_map(|c| {
                    let held = c.broker_conn_count.or(c.held_count)?.median;
                    Some((held, c.broker_rss_max_bytes?.median / 1048576.0))
                })
                .filter(|p| p.0 > 0.0)
                .chain(rest)
                .collect();
            (!pts.is_empty()).then(|| (b.clone(), pts))
        })
        .collect()
}

fn header(meta: &Meta) -> String {
    let m = &meta.machine;
    let mut out =
        format!(
        "- date (UTC): {}\n- commit: `{}`\n- machine: {} — {} cores, {}, {} MiB RAM, kernel {}, \
         open-files hard limit {}\n- pinning: single-core brokers on CPU {}, culex-all on CPUs \
         {}, culex-loadgen on CPU {} (`taskset`)\n- mode: {}\n",
        meta.date_utc,
        meta.commit,
        m["hostname"].as_str().unwrap_or("?"),
        m["cores"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["memory_mib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["nofile_hard"],
        meta.broker_cpus,
        meta.culex_all_cpus,
        meta.loadgen_cpus,
        if meta.quick {
            "--quick (short runs, 1 repeat: indicative only)".to_string()
        } else {
            format!("full, {} repeats per cell (median ± half the range)", meta.repeat)
        },
    );
    out += "- brokers:\n";
    for b in &meta.brokers {
        out += &format!(
            "  - {}: `{}` ({})\n",
            b["name"].as_str().unwrap_or("?"),
            b["binary"].as_str().unwrap_or("?"),
            b["version"].as_str().unwrap_or("?")
        );
    }
    if !meta.notes.is_empty() {
        out += "- notes:\n";
        for n in &meta.notes {
            out += &format!("  - {n}\n");
        }
    }
    out
}

fn cell_notes(cells: &[CellSummary]) -> String {
    let mut out = String::new();
    for c in cells.iter().filter(|c| !c.notes.is_empty()) {
        for n in &c.notes {
            out += &format!("- {} / {}: {n}\n", c.scenario, c.broker);
        }
    }
    out
}

fn render_readme(meta: &Meta, cells: &[CellSummary], dir: &Path, charts: &[PathBuf]) -> String {
    let mut out = format!("# culex-bench results, {}\n\n", meta.date_utc);
    out += &header(meta);
    out += &format!("\nReproduce:\n\n```sh\n{}\n```\n\n", meta.command);
    out += &format!(
        "Ratios are each broker's median over {REFERENCE_BROKER}'s median in the same run \
         (throughput: higher is better; CPU per message: lower is better).\n\n"
    );
    out += &targets::markdown(&targets::evaluate(cells));
    out += "\n";
    out += &markdown_table(cells, &table_rows(meta), &broker_order(cells, meta));
    let notes = cell_notes(cells);
    if !notes.is_empty() {
        out += "\nRun notes:\n\n";
        out += &notes;
    }
    out += "\nCharts:\n\n";
    for c in charts {
        let rel = c.strip_prefix(dir).unwrap_or(c).display().to_string();
        out += &format!("- [{rel}]({rel})\n");
    }
    out
}

fn render_latest(
    meta: &Meta,
    cells: &[CellSummary],
    dir: &Path,
    latest: &Path,
    charts: &[PathBuf],
) -> String {
    let base = latest.parent().unwrap_or(Path::new("."));
    let rel = dir.strip_prefix(base).unwrap_or(dir).display().to_string();
    let mut out = String::from(
        "# Culex benchmark results\n\nThe latest suite run, side by side with Mosquitto and \
         the other peers. Every figure below comes from one run of `culex-bench` on the \
         machine named here; each results folder holds the raw JSON of every run, \
         `summary.json`, the charts, and the broker and loadgen logs.\n\n",
    );
    out += &format!("Latest: [`{rel}/`]({rel}/)\n\n");
    // Observations people wrote about these figures live beside the table, not in it: the
    // table is regenerated on every run, notes.md is not.
    if let Ok(notes) = std::fs::read_to_string(base.join("notes.md")) {
        out += notes.trim_end();
        out += "\n\n";
    }
    out += &header(meta);
    out += &format!(
        "\nReproduce (from the repository root):\n\n```sh\n{}\n```\n\n",
        meta.command
    );
    out += &targets::markdown(&targets::evaluate(cells));
    out += "\nAll brokers, every scenario (ratios to Mosquitto from the same run):\n\n";
    out += &markdown_table(cells, &table_rows(meta), &broker_order(cells, meta));
    let notes = cell_notes(cells);
    if !notes.is_empty() {
        out += "\nRun notes:\n\n";
        out += &notes;
    }
    out += "\nCharts:\n\n";
    for c in charts {
        let r = c.strip_prefix(base).unwrap_or(c).display().to_string();
        out += &format!("- [{r}]({r})\n");
    }
    out
}

/// The current UTC time as (`2026-11-24`, `2026-11-24T05:12:00Z`), without a date crate.
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_from_unix(secs)
}

/// Days-from-civil inverted (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
pub fn utc_from_unix(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}-{month:02}-{day:02}");
    let time = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_to_civil_date() {
        assert_eq!(utc_from_unix(0).1, "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC: a leap day in a century leap year.
        assert_eq!(utc_from_unix(951_827_696).1, "2000-02-29T12:34:56Z");
        assert_eq!(utc_from_unix(1_795_000_000).0, "2026-11-18");
    }
}
