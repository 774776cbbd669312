//! `culex-bench`: runs scenarios against Culex and its peers and writes `results/`.
//!
//! `culex-bench run` builds the broker and the loadgen (release), runs the suite, and writes
//! `results/<date>-<commit>-<machine>/` plus `results/README.md`; `report DIR` redraws a
//! folder's summary and charts from its `runs.json`; `list` shows what would run.

use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use culex_bench::broker::{BrokerKind, BrokerSpec, Paths, Placement};
use culex_bench::output::{self, Meta};
use culex_bench::runner::{cpu_list, Suite, SuiteOptions};
use culex_bench::scenario::{self, ScenarioSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "culex-bench",
    version,
    about = "Culex against Mosquitto and the rest, side by side"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite (or part of it) and write a results folder.
    Run(RunArgs),
    /// Rewrite summary.json, the charts and the READMEs of a results folder from its runs.json.
    Report {
        dir: PathBuf,
        /// Also rewrite results/README.md from this folder.
        #[arg(long)]
        latest: bool,
    },
    /// Show the scenarios and which brokers are runnable.
    List(CommonArgs),
    /// perf stat and a callgrind instruction count of one broker under one scenario.
    Profile(ProfileArgs),
}

#[derive(clap::Args)]
struct ProfileArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Scenario name (a file under bench-harness/scenarios).
    scenario: String,
    /// Broker to profile.
    #[arg(long, default_value = "culex-1")]
    broker: String,
    /// The scenario's full durations instead of its --quick ones.
    #[arg(long)]
    full: bool,
    /// Messages per second over all publishers under callgrind.
    #[arg(long, default_value_t = 2000.0)]
    callgrind_rate: f64,
    #[arg(long, default_value_t = 3.0)]
    callgrind_duration: f64,
    #[arg(long)]
    loadgen: Option<PathBuf>,
    #[arg(long)]
    no_build: bool,
}

#[derive(clap::Args, Clone)]
struct CommonArgs {
    /// Repository root (default: where this crate was built from).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The culex binary (default: $CARGO_TARGET_DIR/release/culex).
    #[arg(long)]
    culex: Option<PathBuf>,
    /// Where install-peers.sh put rumqttd (default: $CULEX_PEERS_DIR or /opt/culex-peers).
    #[arg(long)]
    peers: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Short durations and one repeat: a smoke run of the whole suite.
    #[arg(long)]
    quick: bool,
    /// Runs per cell (medians and spread are over these).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Brokers, comma-separated (mosquitto, culex-1, culex-all, rumqttd, nats).
    #[arg(long, value_delimiter = ',')]
    brokers: Vec<String>,
    /// Scenarios by name, comma-separated (default: all under bench-harness/scenarios).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// The culex-loadgen binary (default: $CARGO_TARGET_DIR/release/culex-loadgen).
    #[arg(long)]
    loadgen: Option<PathBuf>,
    /// Do not run `cargo build --release` for culex and culex-loadgen first.
    #[arg(long)]
    no_build: bool,
    /// Results folder (default: results/<date>-<commit>-<machine>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Leave results/README.md alone.
    #[arg(long)]
    no_latest: bool,
}

fn root_of(common: &CommonArgs) -> PathBuf {
    common.root.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench-harness sits inside the workspace")
            .to_path_buf()
    })
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn paths(common: &CommonArgs) -> Paths {
    let root = root_of(common);
    Paths {
        configs: root.join("bench-harness").join("brokers"),
        culex: common
            .culex
            .clone()
            .unwrap_or_else(|| target_dir(&root).join("release").join("culex")),
        peers: common.peers.clone().unwrap_or_else(|| {
            std::env::var_os("CULEX_PEERS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/opt/culex-peers"))
        }),
    }
}

/// Single-core brokers on the last core, the loadgen on the others; culex-all on every core.
struct Cores {
    broker: Vec<usize>,
    loadgen: Vec<usize>,
    all: Vec<usize>,
}

fn cores() -> Cores {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all: Vec<usize> = (0..n).collect();
    if n == 1 {
        return Cores {
            broker: vec![0],
            loadgen: vec![0],
            all,
        };
    }
    Cores {
        broker: vec![n - 1],
        loadgen: (0..n - 1).collect(),
        all,
    }
}

/// Finds every requested broker; the ones that cannot run become notes.
fn find_brokers(common: &CommonArgs, wanted: &[String]) -> (Vec<BrokerSpec>, Vec<String>) {
    let paths = paths(common);
    let c = cores();
    let mut specs = Vec::new();
    let mut notes = Vec::new();
    let kinds: Vec<BrokerKind> = if wanted.is_empty() {
        BrokerKind::ALL.to_vec()
    } else {
        wanted
            .iter()
            .filter_map(|w| {
                let k = BrokerKind::parse(w);
                if k.is_none() {
                    notes.push(format!("{w}: unknown broker, ignored"));
                }
                k
            })
            .collect()
    };
    for kind in kinds {
        let placement = match kind {
            BrokerKind::CulexAll => Placement {
                cpus: cpu_list(&c.all),
                shards: c.all.len(),
            },
            _ => Placement {
                cpus: cpu_list(&c.broker),
                shards: 1,
            },
        };
        match BrokerSpec::find(kind, &paths, placement) {
            Ok(s) => specs.push(s),
            Err(note) => notes.push(note),
        }
    }
    (specs, notes)
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit(root: &Path) -> String {
    let short = git(root, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "nogit".into());
    let dirty = git(root, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{short}-dirty")
    } else {
        short
    }
}

/// `cargo build --release` of the loadgen, then of culex (a broker that does not build yet
/// is skipped later, not fatal here).
fn build(root: &Path) -> Result<(), String> {
    for (package, bin, fatal) in [
        ("culex-loadgen", "culex-loadgen", true),
        ("culex", "culex", false),
    ] {
        eprintln!("building {bin} (release)…");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args(["build", "--release", "-p", package, "--bin", bin])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            if fatal {
                return Err(format!("cargo build of {bin} failed"));
            }
            eprintln!("note: {bin} did not build; it will be skipped");
        }
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<(), String> {
    let root = root_of(&args.common);
    if !args.no_build {
        build(&root)?;
    }
    // Brokers and loadgens inherit this: every process may open up to the hard limit.
    let (_, nofile_hard) = culex_loadgen::machine::raise_nofile();
    let mut specs = scenario::load_dir(&root.join("bench-harness").join("scenarios"))?;
    if !args.scenarios.is_empty() {
        for w in &args.scenarios {
            if !specs.iter().any(|s| &s.name == w) {
                return Err(format!("no scenario named `{w}`"));
            }
        }
        specs.retain(|s| args.scenarios.contains(&s.name));
    }
    let (brokers, mut notes) = find_brokers(&args.common, &args.brokers);
    if brokers.is_empty() {
        return Err(format!("no broker is runnable: {}", notes.join("; ")));
    }
    if !brokers.iter().any(|b| b.kind == BrokerKind::Mosquitto) {
        notes.push("Mosquitto is not in this run: no ratios can be computed".into());
    }
    let loadgen = args
        .loadgen
        .clone()
        .unwrap_or_else(|| target_dir(&root).join("release").join("culex-loadgen"));
    if !loadgen.is_file() {
        return Err(format!(
            "no loadgen at {} (build it, or pass --loadgen)",
            loadgen.display()
        ));
    }
    let c = cores();
    let (date, now) = output::utc_now();
    let machine = output::describe_machine();
    let host = machine["hostname"]
        .as_str()
        .unwrap_or("machine")
        .to_string();
    let commit = commit(&root);
    let out_dir = args.out.clone().unwrap_or_else(|| {
        let quick = if args.quick { "-quick" } else { "" };
        unique_dir(
            &root
                .join("results")
                .join(format!("{date}-{commit}-{host}{quick}")),
        )
    });
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let per_process = usize::try_from(nofile_hard)
        .unwrap_or(20_000)
        .saturating_sub(1_000)
        .max(1_000);
    let options = SuiteOptions {
        out_dir: out_dir.clone(),
        loadgen,
        loadgen_cpus: c.loadgen.clone(),
        repeat: args.repeat,
        quick: args.quick,
        sample_period: Duration::from_millis(50),
        conns_per_process_max: per_process,
        start_timeout: Duration::from_secs(20),
        perf_stat: None,
    };
    let command = reproduce_command(&args);
    let mut meta = Meta {
        date_utc: now,
        commit,
        machine,
        brokers: brokers
            .iter()
            .map(|b| {
                json!({ "name": b.kind.name(), "binary": b.binary, "version": b.version,
                        "cpus": b.placement.cpus, "shards": b.placement.shards })
            })
            .collect(),
        broker_cpus: cpu_list(&c.broker),
        culex_all_cpus: cpu_list(&c.all),
        loadgen_cpus: cpu_list(&c.loadgen),
        quick: args.quick,
        repeat: if args.quick { 1 } else { args.repeat },
        command,
        notes: Vec::new(),
        scenarios: output::scenario_meta(&specs),
    };
    let latest = root.join("results").join("README.md");
    let latest = (!args.no_latest).then_some(latest.as_path());
    let est =
        culex_bench::estimate::suite(&specs, brokers.len(), args.repeat, args.quick, per_process);
    eprintln!(
        "estimate: {} runs ({} brokers), about {:.0} min",
        est.run_count,
        brokers.len(),
        est.seconds / 60.0
    );
    let started = std::time::Instant::now();
    eprintln!("results: {}", out_dir.display());
    let mut suite = Suite::new(options, brokers, notes);
    for s in &specs {
        suite.run_all(std::slice::from_ref(s));
        // Written after every scenario: a suite stopped halfway keeps what it measured.
        meta.notes = suite.notes.clone();
        output::write_all(&out_dir, latest, &meta, &suite.records)?;
    }
    eprintln!(
        "done in {:.1} min (estimated {:.1}): {}",
        started.elapsed().as_secs_f64() / 60.0,
        est.seconds / 60.0,
        out_dir.display()
    );
    Ok(())
}

/// `results/x`, or `results/x-2`, `-3`… when a run of the same day and commit exists.
fn unique_dir(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    (2..)
        .map(|i| PathBuf::from(format!("{}-{i}", base.display())))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

/// The command that reruns exactly this suite, from the repository root.
fn reproduce_command(args: &RunArgs) -> String {
    // The harness itself needs no optimisation (it builds culex and the loadgen in release);
    // a debug build of it skips a fat-LTO link.
    let mut cmd = String::from("scripts/install-peers.sh\ncargo run -p culex-bench -- run");
    if args.quick {
        cmd += " --quick";
    } else if args.repeat != 3 {
        cmd += &format!(" --repeat {}", args.repeat);
    }
    if !args.brokers.is_empty() {
        cmd += &format!(" --brokers {}", args.brokers.join(","));
    }
    if !args.scenarios.is_empty() {
        cmd += &format!(" --scenarios {}", args.scenarios.join(","));
    }
    cmd
}

fn profile(args: ProfileArgs) -> Result<(), String> {
    let root = root_of(&args.common);
    if !args.no_build {
        build(&root)?;
    }
    culex_loadgen::machine::raise_nofile();
    let specs = scenario::load_dir(&root.join("bench-harness").join("scenarios"))?;
    let scenario = specs
        .into_iter()
        .find(|s| s.name == args.scenario)
        .ok_or_else(|| format!("no scenario named `{}`", args.scenario))?;
    let (mut brokers, notes) = find_brokers(&args.common, std::slice::from_ref(&args.broker));
    let broker = brokers
        .pop()
        .ok_or_else(|| format!("{} cannot run: {}", args.broker, notes.join("; ")))?;
    let loadgen = args
        .loadgen
        .clone()
        .unwrap_or_else(|| target_dir(&root).join("release").join("culex-loadgen"));
    let (date, _) = output::utc_now();
    let out_dir = unique_dir(&root.join("results").join("profiles").join(format!(
        "{date}-{}-{}-{}",
        commit(&root),
        scenario.name,
        broker.kind.name()
    )));
    let opts = culex_bench::profile::ProfileOptions {
        scenario,
        broker,
        loadgen,
        loadgen_cpus: cores().loadgen,
        out_dir: out_dir.clone(),
        quick: !args.full,
        callgrind_rate: args.callgrind_rate,
        callgrind_duration_s: args.callgrind_duration,
    };
    let result = culex_bench::profile::run(&opts)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
    );
    eprintln!("written: {}", out_dir.join("profile.json").display());
    Ok(())
}

fn list(common: &CommonArgs) -> Result<(), String> {
    let root = root_of(common);
    let specs: Vec<ScenarioSpec> =
        scenario::load_dir(&root.join("bench-harness").join("scenarios"))?;
    let (brokers, notes) = find_brokers(common, &[]);
    println!("scenarios (estimated minutes for a full run, --repeat 3, these brokers):");
    for s in &specs {
        let est =
            culex_bench::estimate::suite(std::slice::from_ref(s), brokers.len(), 3, false, 19_000);
        println!(
            "  {:<22} {:<14} {:>5.1}  {}",
            s.name,
            format!("{:?}", s.mode),
            est.seconds / 60.0,
            s.title
        );
    }
    let total = culex_bench::estimate::suite(&specs, brokers.len(), 3, false, 19_000);
    let quick = culex_bench::estimate::suite(&specs, brokers.len(), 3, true, 19_000);
    println!(
        "  whole suite: {} runs, about {:.0} min (--quick: {} runs, about {:.0} min)",
        total.run_count,
        total.seconds / 60.0,
        quick.run_count,
        quick.seconds / 60.0
    );
    println!("brokers:");
    for b in &brokers {
        println!(
            "  {:<10} cpus {:<4} {} ({})",
            b.kind.name(),
            b.placement.cpus,
            b.binary.display(),
            b.version
        );
    }
    for n in notes {
        println!("  skipped: {n}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::List(common) => list(&common),
        Cmd::Profile(args) => profile(args),
        Cmd::Report { dir, latest } => output::read_back(&dir).and_then(|(meta, records)| {
            let readme = dir.parent().map(|p| p.join("README.md")).filter(|_| latest);
            output::write_all(&dir, readme.as_deref(), &meta, &records).map(|_| ())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
