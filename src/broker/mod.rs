//! The broker's logic for one shard, pure: connections' bytes, mesh messages and time go
//! in; bytes to write, connections to close, hand-offs and mesh messages come out. The
//! `shard` layer performs the outputs; nothing here touches a socket, glommio or a clock.
//!
//! ```text
//!  shard (I/O) ──received(conn, bytes)──▶ ShardCore ──poll_output()──▶ Write / Close /
//!              ──mesh_received(msg)────▶  (sessions,                   HandOff / Mesh
//!              ──tick(now)─────────────▶   trie replica,
//!                                          retained partition)
//! ```
//!
//! | file           | owns                                                               |
//! |----------------|--------------------------------------------------------------------|
//! | `mod.rs`       | the public types and entry points; decode loop and packet dispatch |
//! | `conn.rs`      | one connection: buffers, phase, per-connection MQTT state          |
//! | `connect.rs`   | CONNECT/CONNACK, client ids, hand-off, takeover, session lifecycle |
//! | `publish.rs`   | inbound PUBLISH and acks, routing, delivery, the outbound window   |
//! | `subscribe.rs` | SUBSCRIBE/UNSUBSCRIBE, route broadcasts, retained messages         |
//! | `lifecycle.rs` | closing, wills, keepalive and expiry sweeps, shutdown, the mesh    |
//! | `barrier.rs`   | replies held until other shards applied what they acknowledge      |
//! | `client_ids.rs`| the index from client id to session, holding no copy of the ids   |
//! | `auth.rs`      | the one authorization call                                         |
//! | `durable.rs`   | the one place durable state changes are recorded                   |
//! | `stats.rs`     | counters                                                           |

mod auth;
mod barrier;
mod client_ids;
mod conn;
mod connect;
mod durable;
mod lifecycle;
mod publish;
mod stats;
mod subscribe;

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rustc_hash::FxHashMap;

pub use crate::router::ShardId;
pub use auth::{Access, Authorizer};
pub use durable::DurableChange;
pub use stats::Stats;

use crate::limits::Limits;
use crate::protocol::{decode, Ack, Packet, PacketId, ReasonCode, TopicFilter};
use crate::router::{Matches, RetainedMessage, RetainedStore, SubscriptionEntry, SubscriptionTrie};
use crate::session::{Message, PendingWill, Session, SessionKey};

use conn::{Conn, Conns, Phase};

/// A connection on this shard, assigned by the shard layer; unique among open connections
/// of one shard. Opaque to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// A message from one shard to another. Plain data, `Send`; payloads are shared `Bytes`
/// inside an `Arc`, never copied per subscriber or per shard.
#[derive(Debug, Clone)]
pub enum MeshMessage {
    /// Nothing; kept for the runtime's own tests.
    Nop,
    /// The sender now has `count` local subscribers to `filter` (0: none). Sent when a
    /// plain filter's count goes 0↔1, and on every change of a shared group's membership
    /// (the count weighs the sender when a publisher picks a shard for the group).
    Route { filter: TopicFilter, count: u32 },
    /// A message published on the sender: route it to this shard's local subscribers.
    Publish { message: Arc<Message> },
    /// A message for shared group `filter` (`$share/g/f`): give it to one local member.
    SharedPublish {
        filter: TopicFilter,
        message: Arc<Message>,
    },
    /// Set (or clear, empty payload) a retained message this shard owns.
    RetainedSet { message: Box<RetainedMessage> },
    /// Send back the retained messages matching `filter`.
    RetainedQuery { query: u64, filter: TopicFilter },
    /// The answer to a `RetainedQuery`.
    RetainedReply {
        query: u64,
        messages: Vec<RetainedMessage>,
    },
    /// Answer `BarrierAck { id }` once everything the sender sent before this is applied
    /// (the mesh is FIFO per pair): route changes before a SUBACK, a `RetainedSet` before
    /// the PUBACK/PUBREC of its PUBLISH.
    Barrier { id: u64 },
    /// The receiver of `Barrier { id }` has applied everything sent before it.
    BarrierAck { id: u64 },
}

impl MeshMessage {
    /// Whether the mesh may drop this message when its backlog is full: QoS 0 publishes
    /// only; route changes, QoS 1/2 and retained traffic are never shed.
    pub fn is_sheddable(&self) -> bool {
        match self {
            MeshMessage::Nop => true,
            MeshMessage::Publish { message } | MeshMessage::SharedPublish { message, .. } => {
                message.publish.qos == crate::protocol::QoS::AtMostOnce
            }
            _ => false,
        }
    }
}

/// What the core asks the shard layer to do.
#[derive(Debug)]
pub enum Output {
    /// `conn` has bytes waiting: the shard calls [`ShardCore::take_outgoing`] once its
    /// previous write to `conn` has finished. Emitted when the buffer goes from empty to
    /// non-empty, not per packet.
    Writable { conn: ConnId },
    /// Flush what is pending for `conn`, then close it.
    Close { conn: ConnId },
    /// `conn`'s client lives on shard `to`: move the socket there with the bytes the core
    /// has already received (CONNECT included), and forget it here.
    HandOff {
        conn: ConnId,
        to: ShardId,
        received: BytesMut,
    },
    /// Send `msg` to shard `to` (batched by the mesh).
    Mesh { to: ShardId, msg: MeshMessage },
}

/// What the core is configured with.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub limits: Limits,
    /// Accept CONNECTs without a user name.
    pub allow_anonymous: bool,
    /// Whether retained messages are supported (MQTT 5 Retain Available).
    pub retain_available: bool,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            limits: Limits::default(),
            allow_anonymous: true,
            retain_available: true,
        }
    }
}

/// A session living on this shard, and the connection attached to it if any.
#[derive(Debug)]
struct Client {
    key: SessionKey,
    session: Session,
    conn: Option<ConnId>,
}

/// The shard's sessions by key. A table of boxes that finds each by the key inside it:
/// 8 B a slot where a map spent 16, and a table has up to twice as many slots as entries.
#[derive(Debug, Default)]
struct Clients(hashbrown::HashTable<Box<Client>>);

impl Clients {
    fn get(&self, key: &SessionKey) -> Option<&Client> {
        self.0.find(fx_hash(*key), |c| c.key == *key).map(|c| &**c)
    }

    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut Client> {
        self.0
            .find_mut(fx_hash(*key), |c| c.key == *key)
            .map(|c| &mut **c)
    }

    /// Adds `client`, replacing (and returning) one with the same key.
    fn insert(&mut self, client: Box<Client>) -> Option<Box<Client>> {
        let key = client.key;
        match self
            .0
            .entry(fx_hash(key), |c| c.key == key, |c| fx_hash(c.key))
        {
            hashbrown::hash_table::Entry::Occupied(mut slot) => {
                Some(std::mem::replace(slot.get_mut(), client))
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(client);
                None
            }
        }
    }

    fn remove(&mut self, key: &SessionKey) -> Option<Box<Client>> {
        let slot = self.0.find_entry(fx_hash(*key), |c| c.key == *key).ok()?;
        Some(slot.remove().0)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = &Client> {
        self.0.iter().map(|c| &**c)
    }

    fn iter(&self) -> impl Iterator<Item = (&SessionKey, &Client)> {
        self.0.iter().map(|c| (&c.key, &**c))
    }
}

/// A retained-message query sent to other shards for one new subscription.
#[derive(Debug)]
struct PendingRetained {
    session: SessionKey,
    entry: SubscriptionEntry,
    replies_left: u16,
}

/// Spare write buffers a shard keeps: enough for every connection one executor tick writes
/// to at once in practice (each is given back as soon as its write completes).
const SPARE_WRITE_BUFFERS: usize = 64;
/// A fresh hot-path write buffer's capacity, and the least a kept one must have: a batch of
/// about ten small messages without growing. Small, because a fan-out hands one to every
/// subscriber it writes to until their writes complete.
const WRITE_BUFFER_MIN_BYTES: usize = 1024;
/// A buffer above this is not kept: one burst must not pin its size for good. With
/// `SPARE_WRITE_BUFFERS`, the pool holds at most 1 MiB per shard.
const WRITE_BUFFER_MAX_BYTES: usize = 16 * 1024;

/// One shard's broker state.
#[derive(Debug)]
pub struct ShardCore {
    shard: ShardId,
    shard_count: u16,
    config: CoreConfig,
    authorizer: Authorizer,
    /// Boxed values, here and in `clients`: a map's table holds a slot for every bucket,
    /// used or not (up to half of them empty after a resize), and an inline `Conn` or
    /// `Client` made each empty slot cost hundreds of bytes per idle connection. Both keep
    /// only the boxes (each knows its id or key): 8 B a slot.
    conns: Conns,
    clients: Clients,
    by_client_id: client_ids::ClientIds,
    /// The next session key to hand out. Non-zero, so an `Option<SessionKey>` (one in every
    /// connection) takes 8 bytes, not 16.
    next_session: NonZeroU64,
    next_assigned_id: u64,
    trie: SubscriptionTrie<SessionKey>,
    /// Scratch for one routing walk, reused.
    matches: Matches<SessionKey>,
    /// Scratch for one fan-out's encoded PUBLISH forms, reused.
    templates: publish::Templates,
    retained: RetainedStore,
    pending_retained: FxHashMap<u64, PendingRetained>,
    next_query: u64,
    /// Barriers whose acks a held reply waits for; at most `HELD_REPLIES_MAX` per
    /// connection, and dropped with the connection.
    barriers: FxHashMap<u64, barrier::PendingBarrier>,
    next_barrier: u64,
    pending_wills: Vec<PendingWill>,
    outputs: VecDeque<Output>,
    /// Scratch for the packet ids one `drain` put in flight, reused: a fresh `Vec` there
    /// cost an allocation per acknowledged QoS 1 message. Holds at most one inflight
    /// window's worth of ids.
    sent_ids: Vec<PacketId>,
    /// Written outgoing buffers given back by the shard (`recycle`), for the next
    /// connection that writes on the hot path: a steady stream of batches then allocates
    /// nothing. At most `SPARE_WRITE_BUFFERS`, each within `WRITE_BUFFER_*_BYTES`.
    spare_out: Vec<BytesMut>,
    /// The latest time any entry point was given, for work done in `take_outgoing`.
    last_now: Option<Instant>,
    /// No deadline (connect, keepalive, session expiry, will delay) falls before this, so
    /// a tick before it skips the sweep. Deadlines only move later once set, and every new
    /// one lowers it, so it stays a lower bound. `None`: not yet computed, sweep next tick.
    next_sweep_at: Option<Instant>,
    stats: Stats,
}

/// The hash the core's tables (connections, sessions, client ids) use: FxHash, as its
/// `FxHashMap`s do.
pub(crate) fn fx_hash(value: impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(value)
}

impl ShardCore {
    pub fn new(shard: ShardId, shard_count: u16, mut config: CoreConfig) -> ShardCore {
        assert!(shard.0 < shard_count, "shard {shard:?} of {shard_count}");
        // Receive Maximum 0 does not exist on the wire: the least the broker can announce is 1.
        config.limits.receive_maximum = config.limits.receive_maximum.max(1);
        // The broker-wide retained limit, split evenly over the partitions.
        let per_shard = config
            .limits
            .max_retained_messages
            .div_ceil(u32::from(shard_count));
        ShardCore {
            shard,
            shard_count,
            authorizer: Authorizer::new(config.allow_anonymous),
            config,
            conns: Conns::default(),
            clients: Clients::default(),
            by_client_id: client_ids::ClientIds::default(),
            next_session: NonZeroU64::MIN,
            next_assigned_id: 0,
            trie: SubscriptionTrie::new(),
            matches: Matches::new(),
            templates: publish::Templates::default(),
            retained: RetainedStore::new(per_shard),
            pending_retained: FxHashMap::default(),
            next_query: 0,
            barriers: FxHashMap::default(),
            next_barrier: 0,
            pending_wills: Vec::new(),
            outputs: VecDeque::new(),
            sent_ids: Vec::new(),
            spare_out: Vec::new(),
            last_now: None,
            next_sweep_at: None,
            stats: Stats::default(),
        }
    }

    /// The shard's counters now (the route cache keeps its own, copied in here).
    pub fn stats(&self) -> Stats {
        Stats {
            route_cache_resets_count: self.trie.route_cache_resets_count(),
            ..self.stats.clone()
        }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Sessions whose home is this shard (connected or not).
    pub fn session_count(&self) -> usize {
        self.clients.len()
    }

    /// Retained messages held by this shard's partition.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// A new connection was accepted on this shard (or adopted by hand-off, followed by
    /// `received` with the bytes that came with it).
    pub fn connection_opened(&mut self, conn: ConnId, now: Instant) {
        self.last_now = Some(now);
        let timeout =
            std::time::Duration::from_millis(u64::from(self.config.limits.connect_timeout_ms));
        self.conns.insert(Box::new(Conn::new(conn, now + timeout)));
        self.note_deadline(now + timeout);
        self.stats.connections_opened_count += 1;
        self.stats.connections_current += 1;
    }

    /// Bytes read from `conn`. The core decodes every whole packet and keeps the rest.
    pub fn received(&mut self, conn: ConnId, bytes: &[u8], now: Instant) {
        self.last_now = Some(now);
        match self.conns.get_mut(&conn) {
            Some(c) if c.phase != Phase::Closing => c.read_buf.extend_from_slice(bytes),
            _ => return,
        }
        let max_packet = self.config.limits.max_packet_size_bytes;
        // Every packet of one read arrives at `now`: the first moves the keepalive deadline
        // as far as any would (CONNECT sets its own from the same `now`).
        let mut touched = false;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.phase == Phase::Closing {
                return;
            }
            // A subscriber's PUBACK, one per QoS 1 delivery, in its 4-byte form: taken
            // without building a `Packet` (anything else, errors too, goes to `decode`).
            if c.phase == Phase::Connected && max_packet >= 4 {
                if let Some(id) = Ack::take_short_puback(&mut c.read_buf) {
                    if !std::mem::replace(&mut touched, true) {
                        c.keepalive.touch(now);
                    }
                    // The session is known here: `on_puback` would look the connection
                    // up again only to learn it.
                    if let Some(key) = c.client {
                        self.on_session_puback(key, id, now);
                    }
                    continue;
                }
            }
            // Passed on: `handle` would look the connection up again to learn them.
            let connected = c.phase == Phase::Connected;
            let client = c.client.map(|key| (key, c.is_v5()));
            // Until CONNECT is handled, keep every byte: a hand-off carries them all.
            let snapshot = match c.phase {
                Phase::AwaitingConnect => Some(c.read_buf.clone()),
                _ => None,
            };
            match decode(&mut c.read_buf, c.version, max_packet) {
                Ok(None) => break,
                Ok(Some(packet)) => {
                    if !std::mem::replace(&mut touched, true) {
                        c.keepalive.touch(now);
                    }
                    self.handle(conn, packet, snapshot, connected, client, now);
                }
                Err(error) => {
                    self.decode_failed(conn, error, now);
                    return;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.release_idle_read_buffer();
        }
    }

    /// The socket closed or failed (not by the core's own `Close`).
    pub fn connection_lost(&mut self, conn: ConnId, now: Instant) {
        self.last_now = Some(now);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.phase != Phase::Closing {
            self.end_connection(conn, None, true, now);
        }
        self.forget_conn(conn);
    }

    pub fn mesh_received(&mut self, from: ShardId, msg: MeshMessage, now: Instant) {
        self.last_now = Some(now);
        self.on_mesh(from, msg, now);
    }

    /// Periodic: connect timeouts, keepalive sweep, session expiries, will delays,
    /// retained expiries.
    pub fn tick(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.sweep(now);
    }

    /// The server is stopping: every connection's will is published (delayed ones too),
    /// MQTT 5 clients get DISCONNECT 0x8B, then every connection is closed.
    pub fn shutdown(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.shut_down(now);
    }

    /// First phase of stopping: every connected client's will (and every delayed will) is
    /// published now, connections staying open, so wills reach subscribers on every shard
    /// before any connection closes. `shutdown` then closes without publishing them twice.
    pub fn publish_wills_for_shutdown(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.publish_all_wills(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Everything pending for `conn`, leaving its buffer empty.
    pub fn take_outgoing(&mut self, conn: ConnId) -> BytesMut {
        let Some(c) = self.conns.get_mut(&conn) else {
            return BytesMut::new();
        };
        // Bytes written after a held reply wait with it. Otherwise the whole buffer goes:
        // no split (which would share it, an allocation, and pin its tail to an idle
        // connection); the shard gives it back through `recycle` once written.
        let out = if c.held.is_empty() {
            std::mem::take(&mut c.out)
        } else {
            c.take_sendable()
        };
        c.writable_signalled = false;
        if c.phase == Phase::Closing {
            self.forget_conn(conn);
            return out;
        }
        // Room in the buffer again: move queued messages on.
        if let (Some(key), Some(now)) = (c.client, self.last_now) {
            self.drain(key, now);
        }
        out
    }

    /// A buffer `take_outgoing` handed out, now fully written: kept (emptied) for the next
    /// writes if the spare pool has room and it is worth keeping, else dropped (counted).
    pub fn recycle(&mut self, mut buf: BytesMut) {
        buf.clear();
        // Reclaims the written front of a buffer nobody else holds, without allocating.
        let keep = self.spare_out.len() < SPARE_WRITE_BUFFERS
            && buf.try_reclaim(WRITE_BUFFER_MIN_BYTES)
            && buf.capacity() <= WRITE_BUFFER_MAX_BYTES;
        if keep {
            self.spare_out.push(buf);
            self.stats.write_buffers_reused_count += 1;
        } else if buf.capacity() > 0 {
            self.stats.write_buffers_dropped_count += 1;
        }
    }

    /// A new deadline at `at`: the sweep must not sleep past it.
    fn note_deadline(&mut self, at: Instant) {
        if self.next_sweep_at.is_some_and(|next| at < next) {
            self.next_sweep_at = Some(at);
        }
    }

    /// The one place durable state changes pass; a per-shard log will hook it.
    fn record(&mut self, change: DurableChange<'_>) {
        let _ = change;
    }

    fn handle(
        &mut self,
        conn: ConnId,
        packet: Packet,
        snapshot: Option<BytesMut>,
        connected: bool,
        client: Option<(SessionKey, bool)>,
        now: Instant,
    ) {
        match packet {
            Packet::Connect(connect) if !connected => {
                self.on_connect(conn, *connect, snapshot.unwrap_or_default(), now)
            }
            _ if !connected => self.protocol_error(conn, ReasonCode::ProtocolError, now),
            Packet::Publish(publish) => {
                // A connected connection always has its session.
                if let Some((key, v5)) = client {
                    self.on_publish(conn, key, v5, publish, now)
                }
            }
            Packet::PubAck(ack) => self.on_puback(conn, ack.packet_id, now),
            Packet::PubRec(ack) => self.on_pubrec(conn, ack, now),
            Packet::PubRel(ack) => self.on_pubrel(conn, ack.packet_id, now),
            Packet::PubComp(ack) => self.on_pubcomp(conn, ack.packet_id, now),
            Packet::Subscribe(subscribe) => self.on_subscribe(conn, subscribe, now),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(conn, unsubscribe, now),
            Packet::PingReq => self.send(conn, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.on_disconnect(conn, disconnect, now),
            // A second CONNECT, AUTH without an authentication method in CONNECT, and the
            // packets only a server sends are protocol errors.
            Packet::Connect(_)
            | Packet::Auth(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => self.protocol_error(conn, ReasonCode::ProtocolError, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Publish, QoS, TopicName};

    fn message(qos: QoS) -> Arc<Message> {
        Arc::new(Message {
            publish: Publish {
                dup: false,
                qos,
                retain: false,
                topic: TopicName::parse("t").expect("valid"),
                packet_id: None,
                properties: Default::default(),
                payload: bytes::Bytes::new(),
            },
            expires_at: None,
            origin: None,
        })
    }

    #[test]
    fn only_qos0_publishes_are_sheddable() {
        assert!(MeshMessage::Publish {
            message: message(QoS::AtMostOnce)
        }
        .is_sheddable());
        assert!(!MeshMessage::Publish {
            message: message(QoS::AtLeastOnce)
        }
        .is_sheddable());
        let filter = TopicFilter::parse("a/#").expect("valid");
        assert!(!MeshMessage::Route { filter, count: 1 }.is_sheddable());
        // A lost barrier or ack would hold a reply forever.
        assert!(!MeshMessage::Barrier { id: 1 }.is_sheddable());
        assert!(!MeshMessage::BarrierAck { id: 1 }.is_sheddable());
    }

    /// The spare write buffers are bounded in count and size, and only buffers nobody else
    /// holds are kept; every one given back is counted either way.
    #[test]
    fn recycled_write_buffers_are_bounded_and_counted() {
        let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
        for _ in 0..SPARE_WRITE_BUFFERS + 10 {
            let mut buf = BytesMut::with_capacity(WRITE_BUFFER_MIN_BYTES);
            buf.extend_from_slice(b"written");
            bytes::Buf::advance(&mut buf, 7);
            core.recycle(buf);
        }
        assert_eq!(core.spare_out.len(), SPARE_WRITE_BUFFERS);
        assert_eq!(
            core.stats.write_buffers_reused_count,
            SPARE_WRITE_BUFFERS as u64
        );
        assert_eq!(core.stats.write_buffers_dropped_count, 10);
        assert!(core.spare_out.iter().all(|b| b.is_empty()));

        let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
        core.recycle(BytesMut::with_capacity(64));
        core.recycle(BytesMut::with_capacity(WRITE_BUFFER_MAX_BYTES + 1));
        // Its front still held elsewhere, so the buffer cannot be reclaimed to full size.
        let mut shared = BytesMut::with_capacity(WRITE_BUFFER_MIN_BYTES);
        shared.extend_from_slice(&[1; 16]);
        let still_held = shared.split_to(8);
        core.recycle(shared);
        assert!(
            core.spare_out.is_empty(),
            "too small, too large, shared and short"
        );
        assert_eq!(core.stats.write_buffers_dropped_count, 3);
        assert_eq!(
            &still_held[..],
            &[1; 8],
            "a shared buffer's other half is untouched"
        );
    }

    /// Every session holds one, boxed: an idle session allocates nothing else (its window,
    /// queue, QoS 2 ids and subscriptions come on first use), and 128 B is a mimalloc size
    /// class (129 B would cost 160).
    #[test]
    fn a_session_stays_small() {
        let size = std::mem::size_of::<Client>();
        assert!(size <= 128, "Client: {size} bytes");
        assert_eq!(std::mem::size_of::<Option<SessionKey>>(), 8);
    }

    #[test]
    fn mesh_messages_cross_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<MeshMessage>();
        assert_send::<Output>();
    }
}
