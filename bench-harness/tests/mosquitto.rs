//! One tiny scenario through the whole harness against a real Mosquitto: start it pinned,
//! drive it with culex-loadgen, sample /proc, stop it by PID, write the results folder.
//! Skips with a note when Mosquitto or the loadgen is missing. Bounded: two runs of about
//! two seconds each on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use culex_bench::broker::{BrokerKind, BrokerSpec, Paths, Placement};
use culex_bench::output::{self, Meta};
use culex_bench::runner::{Suite, SuiteOptions};
use culex_bench::scenario::ScenarioSpec;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The loadgen binary: $CULEX_LOADGEN, a release or debug build, or a fresh debug build.
fn loadgen() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CULEX_LOADGEN").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    for profile in ["release", "debug"] {
        let p = target_dir().join(profile).join("culex-loadgen");
        if p.is_file() {
            return Some(p);
        }
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "-q",
            "-p",
            "culex-loadgen",
            "--bin",
            "culex-loadgen",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .ok()?;
    let p = target_dir().join("debug").join("culex-loadgen");
    (status.success() && p.is_file()).then_some(p)
}

const PAIRS: &str = r#"
    name = "tiny-pairs"
    title = "tiny pairs, QoS 1"
    mode = "throughput"
    [loadgen]
    kind = "pairs"
    conns = 5
    qos = 1
    rate = 20.0
    warmup_s = 0.2
    duration_s = 1.5
    drain_s = 1.0
"#;

#[test]
fn tiny_scenario_against_mosquitto() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = Paths {
        configs: manifest.join("brokers"),
        culex: PathBuf::from("/nonexistent"),
        peers: PathBuf::from("/nonexistent"),
    };
    let placement = Placement {
        cpus: "0".into(),
        shards: 1,
    };
    let spec = match BrokerSpec::find(BrokerKind::Mosquitto, &paths, placement) {
        Ok(s) => s,
        Err(note) => {
            eprintln!("skipped: {note}");
            return;
        }
    };
    let Some(loadgen) = loadgen() else {
        eprintln!("skipped: no culex-loadgen binary and it would not build");
        return;
    };
    let out = std::env::temp_dir().join(format!("culex-bench-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let scenario = ScenarioSpec::parse(PAIRS, Path::new("tiny-pairs.toml")).expect("valid");
    let options = SuiteOptions {
        out_dir: out.clone(),
        loadgen,
        loadgen_cpus: vec![0],
        repeat: 2,
        quick: false,
        sample_period: Duration::from_millis(50),
        conns_per_process_max: 19_000,
        start_timeout: Duration::from_secs(20),
        perf_stat: None,
    };
    let mut suite = Suite::new(options, vec![spec], Vec::new());
    suite.run_all(std::slice::from_ref(&scenario));

    assert_eq!(suite.records.len(), 2, "two repeats of one broker");
    for r in &suite.records {
        assert!(r.ok, "run failed: {:?}", r.note);
        assert_eq!(r.broker, "mosquitto");
        // 5 publishers at 20 msg/s each: about 100/s delivered, paced open loop (slow enough
        // for a debug-built loadgen on a busy machine). The rate is taken over the window the
        // harness reconstructs from the loadgen's setup time, so a stall on a loaded machine
        // moves it by a few tenths of a second (131/s was seen in CI): the band catches unit
        // and double-counting errors, the exact counts below catch losses.
        assert!(
            (50.0..180.0).contains(&r.delivered_per_s),
            "delivered {} msg/s",
            r.delivered_per_s
        );
        assert_eq!(r.lost_count, 0, "QoS 1 on loopback loses nothing");
        assert_eq!((r.connected_count, r.held_count), (10, 10));
        let cpu = r.broker_cpu_s.expect("the harness sampled the broker");
        // At 100 msg/s Mosquitto may use less than one 10 ms tick: only bound it above.
        assert!(
            (0.0..1.5).contains(&cpu),
            "broker cpu {cpu} s in a 1.5 s window"
        );
        assert!(
            r.broker_rss_max_bytes > 1 << 20,
            "mosquitto holds more than 1 MiB"
        );
        assert!(r
            .latency
            .is_some_and(|l| l.p50_us > 0.0 && l.p99_us >= l.p50_us));
        assert!(
            r.broker_stop.starts_with("stopped by SIGTERM"),
            "{}",
            r.broker_stop
        );
        for raw in &r.raw_files {
            assert!(out.join(raw).is_file(), "raw loadgen JSON {raw} kept");
        }
    }
    let meta = Meta {
        date_utc: "test".into(),
        commit: "test".into(),
        machine: output::describe_machine(),
        brokers: vec![serde_json::json!({ "name": "mosquitto" })],
        broker_cpus: "0".into(),
        culex_all_cpus: "0".into(),
        loadgen_cpus: "0".into(),
        quick: false,
        repeat: 2,
        command: "test".into(),
        notes: Vec::new(),
        scenarios: output::scenario_meta(std::slice::from_ref(&scenario)),
    };
    let charts = output::write_all(&out, None, &meta, &suite.records).expect("written");
    assert!(
        charts.iter().any(|c| c.ends_with("tiny-pairs.svg")),
        "{charts:?}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("valid JSON");
    let cell = &summary["cells"][0];
    assert_eq!(cell["broker"], "mosquitto");
    assert_eq!(cell["delivered_per_s"]["count"], 2);
    assert_eq!(cell["throughput_ratio"], 1.0, "mosquitto against itself");
    let readme = std::fs::read_to_string(out.join("README.md")).expect("README.md");
    assert!(readme.contains("| tiny-pairs | mosquitto |"), "{readme}");
    let _ = std::fs::remove_dir_all(&out);
}

/// culex-floor relays what the bench's scenarios send, as a broker would: Mosquitto's own
/// clients get a message through it, and a short loadgen QoS 1 pairs run delivers every
/// message. (Its figures are only meaningful if it does the same work the brokers do.)
#[test]
fn floor_relays_mosquitto_clients_and_the_loadgen() {
    let Some(loadgen) = loadgen() else {
        eprintln!("skipped: no culex-loadgen binary and it would not build");
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        l.local_addr()
            .expect("a bound listener has an address")
            .port()
    };
    let mut floor = Command::new(env!("CARGO_BIN_EXE_culex-floor"))
        .args(["-p", &port.to_string()])
        .spawn()
        .expect("start culex-floor");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let outcome = std::panic::catch_unwind(|| {
        assert!(up, "culex-floor did not listen");
        let have_clients = Command::new("mosquitto_sub").arg("--help").output().is_ok();
        if have_clients {
            let p = port.to_string();
            let sub = Command::new("mosquitto_sub")
                .args(["-p", &p, "-V", "5", "-t", "floor/a", "-C", "1", "-W", "5"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start mosquitto_sub");
            std::thread::sleep(Duration::from_millis(300));
            let published = Command::new("mosquitto_pub")
                .args([
                    "-p", &p, "-V", "311", "-t", "floor/a", "-q", "1", "-m", "hello",
                ])
                .status()
                .expect("run mosquitto_pub");
            assert!(published.success(), "mosquitto_pub failed");
            let out = sub.wait_with_output().expect("mosquitto_sub ends");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
        } else {
            eprintln!("note: no mosquitto clients; the loadgen part only");
        }
        let json = std::env::temp_dir().join(format!("culex-floor-test-{port}.json"));
        let status = Command::new(&loadgen)
            .args([
                "pairs", "-n", "5", "-q", "1", "--rate", "50", "-d", "1", "--drain", "1",
            ])
            .args(["--quiet", "-p", &port.to_string(), "--json"])
            .arg(&json)
            .status()
            .expect("run the loadgen");
        assert!(status.success(), "the loadgen failed against culex-floor");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("the loadgen's JSON"))
                .expect("JSON");
        let _ = std::fs::remove_file(&json);
        let received = report["messages"]["received"].as_u64().expect("received");
        assert!(received >= 200, "only {received} messages relayed");
        assert_eq!(report["messages"]["lost"].as_u64(), Some(0));
    });
    // Only the process this test started, by PID.
    let _ = floor.kill();
    let _ = floor.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
