//! Culex: a thread-per-core MQTT broker.
//!
//! The layering rule: each layer may use only those above it in this list, and only `shard`
//! and `mesh` make syscalls or touch sockets. If it can be tested without a socket, it lives below
//! `shard`.
//!
//! | module     | owns                                                             | pure |
//! |------------|------------------------------------------------------------------|------|
//! | `protocol` | the MQTT 3.1/3.1.1/5.0 codec                                     | yes  |
//! | `limits`   | every default limit, named, with the reason for its value        | yes  |
//! | `config`   | mosquitto.conf parsing, CLI flags, the resolved settings         | yes  |
//! | `router`   | subscription trie, shared-subscription groups, retained store    | yes  |
//! | `session`  | the per-client state machine: events in, actions out             | yes  |
//! | `broker`   | one shard's logic: sessions + router + mesh protocol, pure           | yes  |
//! | `mesh`     | cross-shard queues, batches, bounded backlog                     | no   |
//! | `shard`    | per-shard executors over epoll, listeners, connections, timers   | no   |

pub mod broker;
pub mod config;
pub mod limits;
pub mod mesh;
pub mod protocol;
pub mod router;
pub mod session;
pub mod shard;
