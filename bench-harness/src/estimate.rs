//! How long a suite will take, worked out from the scenario files before anything runs, so
//! `culex-bench run` can say it up front (the full suite must fit in 45 minutes here).

use crate::runner::hold_budget_s;
use crate::scenario::{Mode, ScenarioSpec};

/// Seconds each run spends outside the loadgen's phases: starting the broker and waiting for
/// its first CONNACK, the 200 ms settle, the loadgen's own start and exit, stopping the broker
/// (measured over a --quick suite on this machine: 2–3 s, NATS with JetStream the slowest).
pub const RUN_OVERHEAD_S: f64 = 2.5;

/// Connections per second the estimate assumes for setup (Mosquitto and NATS are slower
/// than Culex; their connects dominate the idle rows).
const CONNECT_PER_S: f64 = 4_000.0;

/// Connection scenarios, one loadgen process: the average over the brokers here, where
/// Mosquitto's and rumqttd's last connects wait out the loadgen's 10 s timeout (a --quick
/// suite: 10k took 1.4 s on Culex, 4.6 s on NATS, 10.4–10.8 s on rumqttd and Mosquitto).
const CONN_SCENARIO_CONNECT_PER_S: f64 = 1_800.0;

/// Connection scenarios: closing the clients and stopping a broker that holds them
/// (Mosquitto with 10k clients outlasts its 10 s SIGTERM grace), per connection.
const TEARDOWN_PER_CONN_S: f64 = 1.0 / 2_000.0;

/// What a suite will run: how many broker × loadgen runs and their estimated seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub run_count: usize,
    pub seconds: f64,
}

/// Clients the loadgen opens for one run of `s`.
fn clients(s: &ScenarioSpec, quick: bool) -> f64 {
    let get = |k: &str, d: f64| s.loadgen_f64(quick, k).unwrap_or(d);
    match s.kind().as_str() {
        "pairs" => 2.0 * get("conns", 100.0),
        "conn" | "mixed" => get("conns", 100.0),
        "fan-out" => 1.0 + get("subscribers", 1.0),
        _ => get("publishers", 10.0) + get("subscribers", 1.0),
    }
}

/// Seconds for one run of `s` (one broker, one load point).
pub fn run_seconds(s: &ScenarioSpec, quick: bool, conns_per_process_max: usize) -> f64 {
    let get = |k: &str, d: f64| s.loadgen_f64(quick, k).unwrap_or(d);
    let clients = clients(s, quick);
    let multi = matches!(s.mode, Mode::Idle | Mode::ConnRamp)
        && (s.processes > 1 || clients as usize > conns_per_process_max);
    let connections = matches!(s.mode, Mode::Idle | Mode::ConnRamp);
    let setup = if multi {
        hold_budget_s(clients as usize, conns_per_process_max)
    } else if connections {
        clients / CONN_SCENARIO_CONNECT_PER_S
    } else {
        clients / CONNECT_PER_S
    };
    let teardown = if connections {
        clients.min((conns_per_process_max + 1_000) as f64) * TEARDOWN_PER_CONN_S
    } else {
        0.0
    };
    RUN_OVERHEAD_S
        + setup
        + teardown
        + 0.02
        + get("warmup_s", 0.0)
        + get("duration_s", 10.0)
        + get("drain_s", 2.0).max(0.1)
}

/// The whole suite: every scenario × its repeats × `brokers` (a latency curve adds one run
/// per load point after its saturation run).
pub fn suite(
    specs: &[ScenarioSpec],
    brokers: usize,
    repeat: usize,
    quick: bool,
    conns_per_process_max: usize,
) -> Estimate {
    let mut est = Estimate {
        run_count: 0,
        seconds: 0.0,
    };
    for s in specs {
        let repeats = if quick {
            1
        } else {
            s.repeat.unwrap_or(repeat).max(1)
        };
        let points = 1 + s.fractions(quick).len();
        let runs = repeats * brokers * points;
        est.run_count += runs;
        est.seconds += runs as f64 * run_seconds(s, quick, conns_per_process_max);
    }
    est
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> ScenarioSpec {
        ScenarioSpec::parse(text, Path::new("t.toml")).expect("valid scenario")
    }

    #[test]
    fn a_run_is_its_phases_plus_overhead() {
        let s = spec(
            r#"
            title = "t"
            mode = "throughput"
            [loadgen]
            kind = "pairs"
            conns = 2000
            warmup_s = 1.0
            duration_s = 5.0
            drain_s = 1.0
            [quick]
            duration_s = 2.0
        "#,
        );
        let full = run_seconds(&s, false, 19_000);
        assert!(
            (full - (RUN_OVERHEAD_S + 1.0 + 0.02 + 7.0)).abs() < 1e-9,
            "{full}"
        );
        assert!((run_seconds(&s, true, 19_000) - (full - 3.0)).abs() < 1e-9);
        let e = suite(std::slice::from_ref(&s), 5, 3, false, 19_000);
        assert_eq!(e.run_count, 15);
        assert!((e.seconds - 15.0 * full).abs() < 1e-9);
        assert_eq!(
            suite(&[s], 5, 3, true, 19_000).run_count,
            5,
            "quick: one repeat"
        );
    }

    #[test]
    fn curves_add_a_run_per_point_and_split_idle_runs_hold() {
        let curve = spec(
            r#"
            title = "c"
            mode = "latency-curve"
            repeat = 1
            [curve]
            fractions = [0.5, 1.0]
            quick_fractions = [1.0]
            [loadgen]
            kind = "pairs"
        "#,
        );
        assert_eq!(suite(&[curve], 4, 3, false, 19_000).run_count, 4 * 3);
        let idle = spec(
            r#"
            title = "i"
            mode = "idle"
            processes = 2
            [loadgen]
            kind = "conn"
            conns = 19500
            duration_s = 3.0
            drain_s = 0.1
        "#,
        );
        let secs = run_seconds(&idle, false, 19_000);
        let hold = hold_budget_s(19_500, 19_000);
        assert!(
            (secs - (RUN_OVERHEAD_S + hold + 19_500.0 * TEARDOWN_PER_CONN_S + 0.02 + 3.1)).abs()
                < 1e-9,
            "{secs}"
        );
    }

    #[test]
    fn the_full_suite_fits_in_45_minutes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let specs = crate::scenario::load_dir(&dir).expect("shipped scenarios parse");
        // culex-1, culex-all, mosquitto, nats, rumqttd; --repeat 3.
        let e = suite(&specs, 5, 3, false, 19_000);
        assert!(e.seconds <= 45.0 * 60.0, "{:.1} min", e.seconds / 60.0);
    }
}
