//! Every limit the broker enforces, with its default and the reason for its value. Each has
//! a config key (named beside it) and a counter; "0 means unlimited" is never a default.

/// The limits one broker runs with. `Limits::default()` holds the defaults below; the
/// config layer overrides them from `mosquitto.conf` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `max_connections`: connections held at once across all shards.
    pub max_connections: u32,
    /// `max_packet_size` / `message_size_limit`: the largest packet accepted, in bytes.
    pub max_packet_size_bytes: u32,
    /// `max_inflight_messages`: unacknowledged QoS 1/2 messages towards one client (the
    /// receive maximum the broker assumes when the client names none, and caps it at).
    pub max_inflight_messages: u16,
    /// `max_inflight_messages` inbound: the receive maximum the broker announces (MQTT 5).
    pub receive_maximum: u16,
    /// `max_queued_messages`: messages queued for one session beyond the inflight window.
    pub max_queued_messages: u32,
    /// `max_queued_bytes`: bytes of payload queued for one session.
    pub max_queued_bytes: u64,
    /// `max_subscriptions_per_client` (Culex): filters one session may hold.
    pub max_subscriptions_per_client: u32,
    /// `max_topic_length` (Culex): bytes in a topic name or filter.
    pub max_topic_length_bytes: u16,
    /// `max_topic_levels` (Culex): `/`-separated levels in a topic name or filter.
    pub max_topic_levels: u16,
    /// `max_keepalive`: the longest keepalive a client may ask for, in seconds; a longer
    /// request (or 0 under MQTT 5) is answered with this as the server keep alive.
    pub max_keepalive_s: u16,
    /// `connect_timeout_ms` (Culex): time a new connection has to send CONNECT.
    pub connect_timeout_ms: u32,
    /// `max_topic_alias`: topic aliases a client may use towards the broker (MQTT 5).
    pub max_topic_alias: u16,
    /// `persistent_client_expiration`: the longest a disconnected persistent session is
    /// kept, in seconds.
    pub session_expiry_max_s: u32,
    /// `mesh_backlog_messages` (Culex): messages one shard holds for another when the
    /// queue between them is full, before QoS 0 is shed.
    pub mesh_backlog_messages: u32,
    /// `max_outgoing_bytes` (Culex): bytes waiting to be written to one connection before
    /// QoS 0 to it is dropped and QoS 1/2 go to the session queue.
    pub max_outgoing_bytes: u32,
    /// `retained_messages_max` (Culex): retained messages held by the whole broker.
    pub max_retained_messages: u32,
}

/// 1,000,000 connections: far above what one machine's file limit allows by default, so it
/// never bites first by accident, yet finite.
pub const MAX_CONNECTIONS_DEFAULT: u32 = 1_000_000;
/// 1 MiB: large enough for any telemetry or command payload, small enough that a few
/// thousand hostile clients cannot make the broker buffer gigabytes. Mosquitto's default
/// is the protocol maximum (256 MiB); lower it here because every byte is buffered.
pub const MAX_PACKET_SIZE_BYTES_DEFAULT: u32 = 1024 * 1024;
/// 20: Mosquitto's `max_inflight_messages` default.
pub const MAX_INFLIGHT_MESSAGES_DEFAULT: u16 = 20;
/// 1000: Mosquitto's `max_queued_messages` default.
pub const MAX_QUEUED_MESSAGES_DEFAULT: u32 = 1000;
/// 64 MiB of payload per offline session: a bound, where Mosquitto's 0 means none.
pub const MAX_QUEUED_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// 10,000 filters per client: more than any real device uses, bounds the trie's growth.
pub const MAX_SUBSCRIPTIONS_PER_CLIENT_DEFAULT: u32 = 10_000;
/// 65,535 bytes: the protocol's own limit for a string.
pub const MAX_TOPIC_LENGTH_BYTES_DEFAULT: u16 = u16::MAX;
/// 128 levels: bounds trie depth (and recursion) per walk; real topics use under 16.
pub const MAX_TOPIC_LEVELS_DEFAULT: u16 = 128;
/// 65,535 s: the protocol maximum, as Mosquitto.
pub const MAX_KEEPALIVE_S_DEFAULT: u16 = u16::MAX;
/// 10 s to send CONNECT, so idle half-open sockets cannot pile up.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u32 = 10_000;
/// 10 aliases: Mosquitto's `max_topic_alias` default.
pub const MAX_TOPIC_ALIAS_DEFAULT: u16 = 10;
/// 7 days for a disconnected persistent session; Mosquitto keeps them forever by default,
/// which lets abandoned client ids hold memory without bound.
pub const SESSION_EXPIRY_MAX_S_DEFAULT: u32 = 7 * 24 * 3600;
/// 65,536 messages between two shards before shedding QoS 0.
pub const MESH_BACKLOG_MESSAGES_DEFAULT: u32 = 65_536;
/// 4 MiB waiting for one slow socket before QoS 0 to it is dropped.
pub const MAX_OUTGOING_BYTES_DEFAULT: u32 = 4 * 1024 * 1024;
/// 1,000,000 retained messages.
pub const MAX_RETAINED_MESSAGES_DEFAULT: u32 = 1_000_000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_packet_size_bytes: MAX_PACKET_SIZE_BYTES_DEFAULT,
            max_inflight_messages: MAX_INFLIGHT_MESSAGES_DEFAULT,
            receive_maximum: MAX_INFLIGHT_MESSAGES_DEFAULT,
            max_queued_messages: MAX_QUEUED_MESSAGES_DEFAULT,
            max_queued_bytes: MAX_QUEUED_BYTES_DEFAULT,
            max_subscriptions_per_client: MAX_SUBSCRIPTIONS_PER_CLIENT_DEFAULT,
            max_topic_length_bytes: MAX_TOPIC_LENGTH_BYTES_DEFAULT,
            max_topic_levels: MAX_TOPIC_LEVELS_DEFAULT,
            max_keepalive_s: MAX_KEEPALIVE_S_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            max_topic_alias: MAX_TOPIC_ALIAS_DEFAULT,
            session_expiry_max_s: SESSION_EXPIRY_MAX_S_DEFAULT,
            mesh_backlog_messages: MESH_BACKLOG_MESSAGES_DEFAULT,
            max_outgoing_bytes: MAX_OUTGOING_BYTES_DEFAULT,
            max_retained_messages: MAX_RETAINED_MESSAGES_DEFAULT,
        }
    }
}

/// The cap Culex uses where Mosquitto's `max_inflight_messages 0` means "no maximum": the
/// largest receive maximum MQTT 5 can express.
pub const MAX_INFLIGHT_MESSAGES_UNLIMITED: u16 = u16::MAX;
/// The cap Culex uses where Mosquitto's `max_queued_messages 0` means "no maximum": a
/// million messages per session, which the byte cap below still bounds in memory.
pub const MAX_QUEUED_MESSAGES_UNLIMITED: u32 = 1_000_000;
/// The cap Culex uses where Mosquitto's `max_queued_bytes 0` means "no maximum": 1 GiB of
/// payload per session, finite so one stuck client cannot take the whole machine.
pub const MAX_QUEUED_BYTES_UNLIMITED: u64 = 1024 * 1024 * 1024;
/// The largest packet MQTT can frame: a 268,435,455-byte remaining length plus the 5-byte
/// fixed header. `max_packet_size 0` / `message_size_limit 0` ("no limit") become this.
pub const MAX_PACKET_SIZE_BYTES_PROTOCOL: u32 = 268_435_455 + 5;
/// Mosquitto refuses `max_packet_size` below 20 bytes: smaller breaks ordinary clients.
pub const MAX_PACKET_SIZE_BYTES_MIN: u32 = 20;
/// `message_size_limit` bounds a PUBLISH *payload*; Culex enforces one packet size, so it
/// allows this much beside the payload: fixed header (5), topic (2 + 65,535), packet id (2)
/// and up to 64 KiB of properties. A payload at the limit is never refused for its header.
pub const PUBLISH_HEADROOM_BYTES: u32 = 5 + 2 + 65_535 + 2 + 65_536;
/// The cap Culex uses where Mosquitto's `max_connections -1` means "unlimited".
pub const MAX_CONNECTIONS_UNLIMITED: u32 = MAX_CONNECTIONS_DEFAULT;
/// Mosquitto refuses `max_keepalive` below 10 s: shorter makes clients flap on any delay.
pub const MAX_KEEPALIVE_S_MIN: u16 = 10;
/// One hour: a `connect_timeout_ms` above this only lets half-open sockets linger.
pub const CONNECT_TIMEOUT_MS_MAX: u32 = 3_600_000;
