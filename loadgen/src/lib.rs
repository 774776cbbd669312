//! `culex-loadgen`: a thread-per-core MQTT load generator for capacity planning.
//!
//! ```text
//! main.rs      CLI → Scenario (or a TOML scenario file)
//! scenario.rs  Scenario → Plan (every client: role, core, id, topic)
//! run.rs       coordinator thread: limits, phases, progress, drain, the Summary
//! worker.rs    one pinned glommio executor per core + its control task
//! client.rs    one connection: connect, publish (open loop), subscribe, hold
//! conn.rs      a client socket on the core's one epoll (culex's Readiness)
//! schedule.rs  open-loop pacing        stamp.rs  what rides in each payload
//! track.rs     loss/dup/reorder         wire.rs   packets via culex::protocol, templates
//! report.rs    stats, merge, output     machine.rs /proc, rusage, system limits
//! template.rs  %i %c %r                 signal.rs executor-local wake-ups
//! ```
//! Glommio stays in `worker.rs`, `client.rs` and `conn.rs`; everything else is plain and unit-tested.

pub mod client;
pub mod conn;
pub mod machine;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod signal;
pub mod stamp;
pub mod template;
pub mod track;
pub mod wire;
pub mod worker;
