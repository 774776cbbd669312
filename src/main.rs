//! `culex`: parse the command line, load the configuration, start the shards, wait for a
//! signal. Nothing else lives here.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use culex::broker::{CoreConfig, ShardCore};
use culex::config::{init_logging, Cli, Settings};
use culex::shard::{self, RuntimeConfig};

// mimalloc maps its own pages, which heap profilers do not see; `system-alloc` swaps it
// out for profiling.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("culex: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&settings);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    // SIGINT or SIGTERM stop the broker in order; a second one ends it at once. Handled
    // from before the first listener opens, so an early signal is never fatal.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(e) = registered {
            eprintln!("culex: cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = RuntimeConfig {
        listeners: settings.listeners.clone(),
        shards: settings.shards,
        cpus: settings.cpus.clone(),
        max_connections: settings.limits.max_connections,
        mesh_backlog_messages: settings.limits.mesh_backlog_messages,
        spin: std::time::Duration::from_micros(u64::from(settings.spin_us)),
        stop,
    };
    let core_config = CoreConfig {
        limits: settings.limits.clone(),
        allow_anonymous: settings.allow_anonymous,
        retain_available: settings.retain_available,
    };
    let running = match shard::start(runtime, move |id, count| {
        ShardCore::new(id, count, core_config.clone())
    }) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("culex: {e}");
            return ExitCode::FAILURE;
        }
    };
    for addr in running.local_addrs() {
        tracing::info!("listening on {addr} with {} shards", running.shard_count());
    }
    match running.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("culex: {e}");
            ExitCode::FAILURE
        }
    }
}
