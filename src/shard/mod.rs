//! The thread-per-core I/O runtime: one pinned thread and executor per shard, each accepting
//! on every listener (SO_REUSEPORT), serving its connections, ticking its core, and
//! talking to the other shards only through the [`crate::mesh`]. It performs the core's
//! outputs and never parses MQTT itself.
//!
//! | file            | owns                                                         |
//! |-----------------|--------------------------------------------------------------|
//! | `start.rs`      | threads, placement, start gate, tick, stop                   |
//! | `exec.rs`       | the executor: run queue, timers, epoll wait, parking         |
//! | `listener.rs`   | listening sockets, the accept loop, `max_connections`        |
//! | `connection.rs` | one connection's read/write/close/hand-off task              |
//! | `runtime.rs`    | a shard's live state; `pump`, the one place outputs happen   |
//! | `transport.rs`  | the byte-pipe seam (TCP now; TLS, WebSocket later)           |
//! | `readiness.rs`  | one epoll per shard: socket readiness, the executor's reactor|
//! | `core.rs`       | the `Core` trait the runtime drives (`ShardCore` implements) |

mod connection;
pub mod core;
pub(crate) mod exec;
mod listener;
pub(crate) mod readiness;
mod runtime;
pub mod start;
pub mod transport;

#[cfg(test)]
mod accept_bench;
#[cfg(test)]
mod tests;

pub use self::core::{Core, CoreOutput};
// The load generator waits for its client sockets the same way (culex-loadgen's conn.rs).
pub use self::readiness::Readiness;
pub use self::runtime::{Envelope, SCRATCH_BYTES};
pub use self::start::{start, Running, RuntimeConfig, StartError, TICK};
pub use self::transport::{TcpTransport, Transport};
