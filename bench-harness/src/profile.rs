//! `culex-bench profile`: one scenario against one broker, twice. First under `perf stat`
//! attached to the broker (context switches, syscalls, task clock; cycles and instructions
//! where the machine exposes a PMU: a VM often does not), then under callgrind at a fixed,
//! paced load, for an instruction count per message that stays put on a noisy machine.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker::BrokerSpec;
use crate::record::RunRecord;
use crate::runner::{Suite, SuiteOptions};
use crate::scenario::{Mode, ScenarioSpec};

/// The counters asked of `perf stat` (a syscall is one `raw_syscalls:sys_enter`).
pub const PERF_EVENTS: &str =
    "task-clock,context-switches,cpu-migrations,cycles,instructions,raw_syscalls:sys_enter";

pub struct ProfileOptions {
    pub scenario: ScenarioSpec,
    pub broker: BrokerSpec,
    pub loadgen: PathBuf,
    pub loadgen_cpus: Vec<usize>,
    pub out_dir: PathBuf,
    pub quick: bool,
    /// Messages per second over all publishers under callgrind (it runs the broker ~50× slower).
    pub callgrind_rate: f64,
    pub callgrind_duration_s: f64,
}

/// One `perf stat -x,` line: the event and its count (`None`: "<not supported>"/"<not counted>").
pub fn parse_perf_csv(text: &str) -> Vec<(String, Option<f64>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let event = f.get(2)?.trim();
            if event.is_empty() {
                return None;
            }
            Some((event.to_string(), f.first()?.trim().parse::<f64>().ok()))
        })
        .collect()
}

/// Total instructions (Ir) from a callgrind output file's `summary:` (or `totals:`) line.
pub fn parse_callgrind_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn suite(opts: &ProfileOptions, out: &Path, broker: BrokerSpec, perf: Option<PathBuf>) -> Suite {
    let options = SuiteOptions {
        out_dir: out.to_path_buf(),
        loadgen: opts.loadgen.clone(),
        loadgen_cpus: opts.loadgen_cpus.clone(),
        repeat: 1,
        quick: opts.quick,
        sample_period: Duration::from_millis(50),
        conns_per_process_max: 19_000,
        start_timeout: Duration::from_secs(120),
        perf_stat: perf.map(|p| (PERF_EVENTS.to_string(), p)),
    };
    Suite::new(options, vec![broker], Vec::new())
}

/// What the counts are divided by: messages delivered over the whole run, or connections.
fn units(r: &RunRecord, mode: Mode) -> (f64, &'static str) {
    match mode {
        Mode::Idle | Mode::ConnRamp => (r.connected_count as f64, "connection"),
        _ => (
            r.received_count.max(r.window_delivered_count) as f64,
            "message",
        ),
    }
}

fn only_record(suite: &Suite, what: &str) -> Result<RunRecord, String> {
    let r = suite
        .records
        .first()
        .cloned()
        .ok_or_else(|| format!("{what}: no run was made"))?;
    if !r.ok {
        return Err(format!(
            "{what}: the run failed: {}",
            r.note.unwrap_or_default()
        ));
    }
    Ok(r)
}

/// Runs both passes and writes `profile.json` into `out_dir`; returns its content.
pub fn run(opts: &ProfileOptions) -> Result<Value, String> {
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| format!("{}: {e}", opts.out_dir.display()))?;
    let mode = opts.scenario.mode;

    // Pass 1: perf stat over the loadgen run, the scenario as written.
    let perf_out = opts.out_dir.join("perf-stat.csv");
    let mut s = suite(
        opts,
        &opts.out_dir.join("perf"),
        opts.broker.clone(),
        Some(perf_out.clone()),
    );
    s.run_all(std::slice::from_ref(&opts.scenario));
    let perf_run = only_record(&s, "perf pass")?;
    let (n, unit) = units(&perf_run, mode);
    let counts = parse_perf_csv(&std::fs::read_to_string(&perf_out).unwrap_or_default());
    let perf: Vec<Value> = counts
        .iter()
        .map(|(event, v)| {
            json!({
                "event": event,
                "count": v,
                "per_unit": v.filter(|_| n > 0.0).map(|v| v / n),
                "supported": v.is_some(),
            })
        })
        .collect();

    // Pass 2: callgrind at a fixed pace, so the count only moves when the code does.
    let cg_dir = opts.out_dir.join("callgrind");
    std::fs::create_dir_all(&cg_dir).map_err(|e| format!("{}: {e}", cg_dir.display()))?;
    // Mosquitto started as root drops to its own user before valgrind writes the profile:
    // the file must exist already and be writable by anyone.
    let cg_file = cg_dir.join("callgrind.out");
    std::fs::write(&cg_file, "").map_err(|e| format!("{}: {e}", cg_file.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [(&cg_dir, 0o777), (&cg_file, 0o666)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    let mut broker = opts.broker.clone();
    broker.wrapper = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", cg_file.display()),
    ];
    let mut paced = toml::Table::new();
    if !matches!(mode, Mode::Idle | Mode::ConnRamp) {
        paced.insert("total_rate".into(), opts.callgrind_rate.into());
        paced.insert("rate".into(), 0.0.into());
    }
    paced.insert("duration_s".into(), opts.callgrind_duration_s.into());
    paced.insert("warmup_s".into(), 0.0.into());
    let scenario = opts.scenario.with_overrides(&paced)?;
    let mut s = suite(opts, &cg_dir, broker, None);
    s.run_all(std::slice::from_ref(&scenario));
    let cg_run = only_record(&s, "callgrind pass")?;
    let (cg_n, _) = units(&cg_run, mode);
    let total_ir = std::fs::read_to_string(&cg_file)
        .ok()
        .and_then(|t| parse_callgrind_total(&t))
        .unwrap_or(0);
    if total_ir == 0 {
        eprintln!(
            "note: no callgrind total in {} (see the broker log under {})",
            cg_file.display(),
            cg_dir.join("logs").display()
        );
    }

    let result = json!({
        "scenario": opts.scenario.name,
        "broker": opts.broker.kind.name(),
        "broker_version": opts.broker.version,
        "unit": unit,
        "perf": {
            "events": perf,
            "units": n,
            "delivered_per_s": perf_run.delivered_per_s,
            "note": "counts cover the whole loadgen run (setup, window, drain); \
                     unsupported counters (no PMU in a VM) are null",
        },
        "callgrind": {
            "total_instructions": (total_ir > 0).then_some(total_ir),
            "units": cg_n,
            "instructions_per_unit": (total_ir > 0 && cg_n > 0.0).then(|| total_ir as f64 / cg_n),
            "paced_total_rate": opts.callgrind_rate,
            "duration_s": opts.callgrind_duration_s,
            "note": "includes start-up, connects and shutdown: compare runs of the same scenario",
        },
    });
    let path = opts.out_dir.join("profile.json");
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_with_unsupported_counters() {
        let text = "# started on Tue\n\n\
            <not supported>,,cycles,0,100.00,,\n\
            1234,,context-switches,786296,100.00,,\n\
            98765,,raw_syscalls:sys_enter,786296,100.00,,\n\
            12.5,msec,task-clock,12500000,100.00,0.9,CPUs utilized\n";
        let parsed = parse_perf_csv(text);
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[0], ("cycles".to_string(), None));
        assert_eq!(parsed[1], ("context-switches".to_string(), Some(1234.0)));
        assert_eq!(parsed[2].1, Some(98765.0));
        assert_eq!(parsed[3], ("task-clock".to_string(), Some(12.5)));
    }

    #[test]
    fn callgrind_summary_line() {
        let text =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456789\n\nfl=x\n";
        assert_eq!(parse_callgrind_total(text), Some(123_456_789));
        assert_eq!(parse_callgrind_total("events: Ir\ntotals: 42\n"), Some(42));
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);
    }
}
