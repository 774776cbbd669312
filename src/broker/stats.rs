//! The shard's counters: every limit overflow and every drop has one, beside the message and
//! connection totals. Plain numbers; the metrics layer reads them through `ShardCore::stats`.

/// Counters of one shard since it started. Names end in `_count`; gauges say so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted or adopted by hand-off.
    pub connections_opened_count: u64,
    /// Gauge: connections open on this shard now.
    pub connections_current: u64,
    /// CONNECTs refused with a CONNACK error code.
    pub connects_refused_count: u64,
    /// Connections handed to their client's home shard.
    pub hand_offs_count: u64,
    /// Connections closed because another took over their client id.
    pub takeovers_count: u64,
    /// Connections that sent no CONNECT in time.
    pub connect_timeouts_count: u64,
    /// Connections closed for silence beyond 1.5 × keep alive.
    pub keepalive_timeouts_count: u64,
    /// Connections closed for a malformed packet.
    pub malformed_packets_count: u64,
    /// Connections closed for a protocol error (other than malformed bytes).
    pub protocol_errors_count: u64,
    /// PUBLISH packets received from clients.
    pub messages_received_count: u64,
    /// PUBLISH packets written to clients.
    pub messages_sent_count: u64,
    /// QoS 0 dropped because the subscriber's outgoing buffer was above `max_outgoing_bytes`.
    pub qos0_dropped_slow_count: u64,
    /// QoS 0 dropped because the session was offline.
    pub qos0_dropped_offline_count: u64,
    /// QoS 0 shed from a full queue to make room for QoS 1/2.
    pub qos0_shed_count: u64,
    /// QoS 1/2 dropped because the session queue was full (count or bytes).
    pub queue_full_dropped_count: u64,
    /// Deliveries dropped because they exceed the client's Maximum Packet Size.
    pub packet_too_large_dropped_count: u64,
    /// Messages dropped because their expiry passed before delivery.
    pub messages_expired_count: u64,
    /// Retained messages refused because the partition was full.
    pub retained_full_count: u64,
    /// Subscriptions refused: quota (`max_subscriptions_per_client`).
    pub subscriptions_quota_refused_count: u64,
    /// Topics or filters refused for length or level count.
    pub topic_limit_refused_count: u64,
    /// Inbound QoS 2 beyond the announced Receive Maximum.
    pub receive_maximum_exceeded_count: u64,
    /// Topic aliases beyond the maximum, or unknown.
    pub topic_alias_errors_count: u64,
    /// Shared-group messages that found no member on the chosen shard.
    pub shared_undeliverable_count: u64,
    /// Wills published.
    pub wills_published_count: u64,
    /// Sessions ended by expiry.
    pub sessions_expired_count: u64,
    /// Requests refused by the authorization call.
    pub not_authorized_count: u64,
    /// Barriers sent to other shards to hold a reply until they caught up.
    pub barriers_started_count: u64,
    /// Held replies dropped because their connection closed first.
    pub held_replies_dropped_count: u64,
    /// Connections closed for holding more than `HELD_REPLIES_MAX` replies.
    pub held_replies_refused_count: u64,
    /// Written buffers given back by the shard and kept for the next batch of writes.
    pub write_buffers_reused_count: u64,
    /// Written buffers given back but dropped: the spare pool was full, or the buffer was
    /// too small, too large or still shared.
    pub write_buffers_dropped_count: u64,
    /// Times a full route cache (recent topics' subscribers) was started over: a working set
    /// of topics beyond the cache's size shows here as a steady climb.
    pub route_cache_resets_count: u64,
}
