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
    /// Messages per second over all publishers under callgrind (it runs the broker ~50× slower);
    /// a second pass runs at twice this.
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
    // Mosquitto drops root before valgrind writes: the directory and the file are open to all.
    let cg_file = cg_dir.join("callgrind.out");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cg_dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("{}: {e}", cg_dir.display()))?;
    }
    let mut broker = opts.broker.clone();
    broker.wrapper = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", cg_file.display()),
    ];
    // Two paced runs of the same length, the second at twice the rate: the difference cancels
    // start-up, connects and shutdown *and* whatever the broker spends per second of idling
    // (timers, polling), leaving the instructions each extra message costs.
    let mut passes = Vec::new();
    for (k, rate) in [opts.callgrind_rate, 2.0 * opts.callgrind_rate]
        .into_iter()
        .enumerate()
    {
        let mut paced = toml::Table::new();
        if !matches!(mode, Mode::Idle | Mode::ConnRamp) {
            paced.insert("total_rate".into(), rate.into());
            paced.insert("rate".into(), 0.0.into());
        }
        paced.insert("duration_s".into(), opts.callgrind_duration_s.into());
        paced.insert("warmup_s".into(), 0.0.into());
        let scenario = opts.scenario.with_overrides(&paced)?;
        let mut s = suite(opts, &cg_dir.join(format!("pass{k}")), broker.clone(), None);
        fresh_writable(&cg_file)?;
        s.run_all(std::slice::from_ref(&scenario));
        let run = only_record(&s, "callgrind pass")?;
        let ir = std::fs::read_to_string(&cg_file)
            .ok()
            .and_then(|t| parse_callgrind_total(&t));
        let kept = cg_dir.join(format!("callgrind.out.pass{k}"));
        let _ = std::fs::rename(&cg_file, &kept);
        if ir.is_none() {
            eprintln!(
                "note: no callgrind total in {} (broker {}; its log is under {})",
                kept.display(),
                run.broker_stop,
                cg_dir.display()
            );
        }
        let n = units(&run, mode).0;
        passes.push(json!({
            "total_rate": rate,
            "duration_s": opts.callgrind_duration_s,
            "units": n,
            "total_instructions": ir,
            "instructions_per_unit_with_fixed_costs": ir.filter(|_| n > 0.0).map(|ir| ir as f64 / n),
            "broker_stop": run.broker_stop,
        }));
    }
    let marginal = marginal_per_unit(&passes);

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
            "passes": passes,
            "instructions_per_unit": marginal,
            "note": "instructions_per_unit = (Ir at 2×rate - Ir at rate) / (units at 2×rate - \
                     units at rate), same duration: start-up, connects, shutdown and idle \
                     time cancel out",
        },
    });
    let path = opts.out_dir.join("profile.json");
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(result)
}

/// An empty file anyone may write: Mosquitto started as root drops to its own user before
/// valgrind writes the profile into it.
fn fresh_writable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "").map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// (Ir₂ − Ir₁) / (units₂ − units₁) over two passes, `None` unless both counted and the
/// longer pass did more work.
pub fn marginal_per_unit(passes: &[Value]) -> Option<f64> {
    let get = |p: &Value, k: &str| p.get(k).and_then(Value::as_f64);
    let (a, b) = (passes.first()?, passes.get(1)?);
    let (ir_a, ir_b) = (get(a, "total_instructions")?, get(b, "total_instructions")?);
    let (n_a, n_b) = (get(a, "units")?, get(b, "units")?);
    (n_b > n_a).then(|| (ir_b - ir_a) / (n_b - n_a))
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
    fn marginal_cost_cancels_fixed_cost() {
        // 5M instructions of start-up plus 2,000 per message.
        let pass = |n: f64| json!({ "units": n, "total_instructions": 5e6 + 2000.0 * n });
        let m = marginal_per_unit(&[pass(1000.0), pass(3000.0)]).expect("two passes");
        assert!((m - 2000.0).abs() < 1e-9, "{m}");
        assert_eq!(marginal_per_unit(&[pass(1000.0)]), None);
        let missing = json!({ "units": 3000.0, "total_instructions": null });
        assert_eq!(marginal_per_unit(&[pass(1000.0), missing]), None);
        assert_eq!(marginal_per_unit(&[pass(1000.0), pass(1000.0)]), None);
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
