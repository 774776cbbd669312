//! `culex-bench`: runs the same MQTT scenarios against Culex and its peers (Mosquitto,
//! rumqttd, NATS) side by side and writes `results/`.
//!
//! ```text
//! scenario.rs  scenario files (bench-harness/scenarios/*.toml), checked against the loadgen
//! broker.rs    find, configure (bench-harness/brokers/), start pinned, probe, stop by PID
//! sample.rs    /proc/PID/stat CPU time and /proc/PID/status VmRSS, sampled on a thread
//! runner.rs    the suite: scenario × repeat × broker (alternating), one loadgen run per cell
//! record.rs    one run's figures, read from the loadgen's JSON and the samples
//! stats.rs     median, spread, ratio
//! summary.rs   cells over repeats, ratios to Mosquitto, the Markdown table
//! targets.rs   issue #5's targets: Culex (1 shard) against Mosquitto, met or not
//! estimate.rs  the suite's wall time, worked out before it runs
//! chart.rs     SVG charts (plotters)
//! output.rs    the results folder and results/README.md
//! profile.rs   perf stat and callgrind of one broker under one scenario
//! ```
//! Only `broker.rs`, `runner.rs`, `profile.rs` and `sample.rs` touch processes; the rest is plain data.

pub mod broker;
pub mod chart;
pub mod estimate;
pub mod output;
pub mod profile;
pub mod record;
pub mod runner;
pub mod sample;
pub mod scenario;
pub mod stats;
pub mod summary;
pub mod targets;
