//! CONNECT and CONNACK: client-id rules, hand-off to the home shard, authentication, the
//! takeover of a client id, and creating or resuming the session.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Instant;

use bytes::BytesMut;
use bytestring::ByteString;

use crate::protocol::{
    ClientId, ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, ReasonCode,
};
use crate::router::home_shard;
use crate::session::{Keepalive, Queue, Session, SessionKey};

use super::auth::Access;
use super::conn::Phase;
use super::{Client, ConnId, DurableChange, Output, ShardCore};

/// MQTT 3.1 allows client ids of 1 to 23 bytes [MQTT 3.1 §3.1].
const V3_1_CLIENT_ID_MAX_BYTES: usize = 23;
/// The largest value of the MQTT 5 Maximum Packet Size property is the protocol's limit.
const PROTOCOL_MAX_PACKET_BYTES: u32 = 268_435_460;

impl ShardCore {
    pub(super) fn on_connect(
        &mut self,
        conn: ConnId,
        connect: Connect,
        received: BytesMut,
        now: Instant,
    ) {
        let version = connect.protocol_version;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.version = Some(version);
            // Known before any refusal, so even a refusing CONNACK respects it.
            if let Some(max) = connect.properties.maximum_packet_size_bytes {
                c.max_packet_bytes = max.get();
            }
        }
        if let Err(reason) = self.check_client_id(&connect) {
            return self.refuse(conn, reason);
        }
        if !connect.client_id.is_empty() {
            let home = home_shard(connect.client_id.as_str(), self.shard_count);
            if home != self.shard {
                // The home shard sees this client's bytes from the start, in order.
                self.conns.remove(&conn);
                self.stats.connections_current = self.stats.connections_current.saturating_sub(1);
                self.stats.hand_offs_count += 1;
                self.outputs.push_back(Output::HandOff {
                    conn,
                    to: home,
                    received,
                });
                return;
            }
        }
        if version.is_v5() && connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is supported.
            return self.refuse(conn, ReasonCode::BadAuthenticationMethod);
        }
        if let Err(reason) = self.authorizer.authorize(Access::Connect(&connect)) {
            self.stats.not_authorized_count += 1;
            return self.refuse(conn, reason);
        }
        if let Some(will) = &connect.will {
            if will.retain && !self.config.retain_available {
                return self.refuse(conn, ReasonCode::RetainNotSupported);
            }
            if !self.topic_within_limits(will.topic.as_str()) {
                self.stats.topic_limit_refused_count += 1;
                return self.refuse(conn, ReasonCode::TopicNameInvalid);
            }
        }
        self.accept(conn, connect, now);
    }

    fn check_client_id(&self, connect: &Connect) -> Result<(), ReasonCode> {
        let id = &connect.client_id;
        match connect.protocol_version {
            ProtocolVersion::V3_1 if id.is_empty() || id.len() > V3_1_CLIENT_ID_MAX_BYTES => {
                Err(ReasonCode::ClientIdentifierNotValid)
            }
            // 3.1.1: an empty id needs a clean session [MQTT-3.1.3-8].
            ProtocolVersion::V3_1_1 if id.is_empty() && !connect.clean_start => {
                Err(ReasonCode::ClientIdentifierNotValid)
            }
            _ => Ok(()),
        }
    }

    /// CONNACK with an error, then close: no will, no DISCONNECT.
    fn refuse(&mut self, conn: ConnId, reason: ReasonCode) {
        self.stats.connects_refused_count += 1;
        tracing::debug!(?conn, %reason, "CONNECT refused");
        // A Reason String is always allowed on CONNACK [MQTT-3.1.2-29], unless it would make
        // the packet larger than the client accepts [MQTT-3.2.2-19].
        let mut ack = ConnAck {
            session_present: false,
            reason_code: reason,
            properties: ConnAckProperties {
                reason_string: Some(ByteString::from_static(reason.description())),
                ..ConnAckProperties::default()
            },
        };
        let max_bytes = self
            .conns
            .get(&conn)
            .map_or(u32::MAX, |c| c.max_packet_bytes);
        if reason_string_too_large(&Packet::ConnAck(Box::new(ack.clone())), max_bytes) {
            ack.properties.reason_string = None;
        }
        self.send(conn, &Packet::ConnAck(Box::new(ack)));
        self.close_now(conn);
    }

    fn accept(&mut self, conn: ConnId, mut connect: Connect, now: Instant) {
        let version = connect.protocol_version;
        let assigned = connect.client_id.is_empty();
        if assigned {
            connect.client_id = self.assign_client_id();
        }
        let limits = &self.config.limits;
        let expiry_max = limits.session_expiry_max_s;
        let requested_expiry = if version.is_v5() {
            connect.properties.session_expiry_interval_s.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            // A 3.x persistent session has no expiry of its own: the broker's cap applies.
            expiry_max
        };
        let expiry_s = requested_expiry.min(expiry_max);
        let max_keepalive = limits.max_keepalive_s;
        // MQTT 5: a keep alive above the maximum (or none at all, when a maximum is
        // configured) is answered with the maximum as Server Keep Alive.
        let server_keep_alive = (version.is_v5()
            && (connect.keep_alive_s > max_keepalive
                || (connect.keep_alive_s == 0 && max_keepalive < u16::MAX)))
            .then_some(max_keepalive);
        let keep_alive_s = server_keep_alive.unwrap_or(connect.keep_alive_s);
        let window = connect
            .properties
            .receive_maximum
            .map_or(u16::MAX, NonZeroU16::get)
            .min(limits.max_inflight_messages);

        if let Some(old) = self
            .by_client_id
            .get(connect.client_id.as_str(), &self.clients)
        {
            let resume = version.is_v5() && !connect.clean_start;
            self.take_over(old, resume, now);
        }
        let (key, session_present) = self.attach_session(&connect, window, expiry_s, now);

        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Connected;
            c.client = Some(key);
            c.keepalive = Keepalive::new(keep_alive_s, now);
            c.max_packet_bytes = connect
                .properties
                .maximum_packet_size_bytes
                .map_or(u32::MAX, NonZeroU32::get);
            c.set_will(connect.will.take());
        }
        if let Some(client) = self.clients.get_mut(&key) {
            client.conn = Some(conn);
        }
        if let Some(deadline) = self.conns.get(&conn).and_then(|c| c.keepalive.deadline()) {
            self.note_deadline(deadline);
        }
        if self.conns.get(&conn).is_some_and(|c| c.has_will()) {
            self.record(DurableChange::WillSet { session: key });
        }
        let properties = if version.is_v5() {
            self.connack_properties(
                assigned.then(|| connect.client_id.clone()),
                (requested_expiry > expiry_max).then_some(expiry_s),
                server_keep_alive,
            )
        } else {
            ConnAckProperties::default()
        };
        self.send(
            conn,
            &Packet::ConnAck(Box::new(ConnAck {
                // MQTT 3.1 has no Session Present flag: the byte is reserved, sent as 0.
                session_present: session_present && version != ProtocolVersion::V3_1,
                reason_code: ReasonCode::Success,
                properties,
            })),
        );
        tracing::debug!(?conn, client_id = %connect.client_id, session_present, "connected");
        if session_present {
            self.resume(key, conn, now);
        }
    }

    /// Another connection holds this client id: close it. An MQTT 5 connection with Clean
    /// Start 0 resumes the existing session whatever its expiry [MQTT-3.1.4-4], and the old
    /// will then waits its full delay (cancelled by that resumption) [MQTT-3.1.3-9];
    /// otherwise the old connection ends as any other would, will included.
    fn take_over(&mut self, key: SessionKey, resume: bool, now: Instant) {
        let Some(old) = self.clients.get(&key).and_then(|c| c.conn) else {
            return;
        };
        self.stats.takeovers_count += 1;
        if !resume {
            self.end_connection(old, Some(ReasonCode::SessionTakenOver), true, now);
            return self.close_now(old);
        }
        let released = self.release_conn(old, Some(ReasonCode::SessionTakenOver), now);
        // The session passes straight to the new connection: it does not start expiring.
        if let Some(client) = self.clients.get_mut(&key) {
            client.session.expires_at = None;
        }
        if let Some((key, Some(will))) = released {
            let delay_s = will.properties.will_delay_interval_s.unwrap_or(0);
            let due = now + std::time::Duration::from_secs(u64::from(delay_s));
            self.schedule_will(key, will, due, now);
        }
        self.close_now(old);
    }

    /// Creates the session, or resumes the existing one unless Clean Start discards it.
    /// Returns its key and whether a session was present.
    fn attach_session(
        &mut self,
        connect: &Connect,
        window: u16,
        expiry_s: u32,
        now: Instant,
    ) -> (SessionKey, bool) {
        let existing = self
            .by_client_id
            .get(connect.client_id.as_str(), &self.clients);
        if let Some(key) = existing {
            // The sweep may not have run since this session's end or its will's delay.
            let expired = self
                .clients
                .get(&key)
                .is_some_and(|c| c.conn.is_none() && c.session.is_expired(now));
            if expired {
                self.stats.sessions_expired_count += 1;
            }
            self.publish_due_wills(Some(key), now);
            if connect.clean_start || expired {
                self.end_session(key, Some(now));
            } else if let Some(client) = self.clients.get_mut(&key) {
                client.session.inflight.set_window(window);
                client.session.expiry_interval_s = expiry_s;
                client.session.expires_at = None;
                // Resuming the session in time cancels a delayed will [MQTT-3.1.3-9].
                self.pending_wills.retain(|w| w.session != key);
                return (key, true);
            }
        }
        let key = SessionKey(self.next_session);
        self.next_session = self.next_session.saturating_add(1);
        let limits = &self.config.limits;
        // The session's id is the only copy kept (`by_client_id` reads it there), copied
        // out of the read buffer so it does not pin that buffer (the whole first read, up
        // to 64 KiB).
        let mut session = Session::new(
            connect.client_id.as_str(),
            window,
            Queue::new(limits.max_queued_messages, limits.max_queued_bytes),
        );
        session.expiry_interval_s = expiry_s;
        self.clients.insert(Box::new(Client {
            key,
            session,
            conn: None,
        }));
        self.by_client_id.insert(key, &self.clients);
        self.record(DurableChange::SessionCreated { session: key });
        (key, false)
    }

    fn connack_properties(
        &self,
        assigned: Option<ClientId>,
        session_expiry_s: Option<u32>,
        server_keep_alive_s: Option<u16>,
    ) -> ConnAckProperties {
        let limits = &self.config.limits;
        ConnAckProperties {
            session_expiry_interval_s: session_expiry_s,
            receive_maximum: NonZeroU16::new(limits.receive_maximum)
                .filter(|max| max.get() < u16::MAX),
            maximum_packet_size_bytes: NonZeroU32::new(limits.max_packet_size_bytes)
                .filter(|max| max.get() < PROTOCOL_MAX_PACKET_BYTES),
            assigned_client_identifier: assigned.map(|id| id.as_byte_string().clone()),
            topic_alias_maximum: Some(limits.max_topic_alias).filter(|max| *max > 0),
            retain_available: (!self.config.retain_available).then_some(false),
            server_keep_alive_s,
            ..ConnAckProperties::default()
        }
    }

    /// An id for a client that sent none, chosen so that its home is this shard.
    fn assign_client_id(&mut self) -> ClientId {
        loop {
            self.next_assigned_id += 1;
            let id = format!("culex-{}-{:x}", self.shard.0, self.next_assigned_id);
            if home_shard(&id, self.shard_count) == self.shard {
                return ClientId::new(id).expect("a generated id holds no U+0000");
            }
        }
    }

    pub(super) fn topic_within_limits(&self, topic: &str) -> bool {
        let limits = &self.config.limits;
        let max_levels = usize::from(limits.max_topic_levels);
        // n levels need n - 1 separators: a topic shorter than the maximum cannot exceed it,
        // which spares the common case a scan.
        topic.len() <= usize::from(limits.max_topic_length_bytes)
            && (topic.len() < max_levels
                || topic.bytes().filter(|b| *b == b'/').count() < max_levels)
    }

    /// Client DISCONNECT: the will is discarded unless reason 0x04 asks for it.
    pub(super) fn on_disconnect(
        &mut self,
        conn: ConnId,
        disconnect: crate::protocol::Disconnect,
        now: Instant,
    ) {
        let key = self.conns.get(&conn).and_then(|c| c.client);
        if let (Some(key), Some(expiry)) = (key, disconnect.properties.session_expiry_interval_s) {
            let current = self
                .clients
                .get(&key)
                .map_or(0, |c| c.session.expiry_interval_s);
            // A session that ends with its connection cannot be prolonged [MQTT-3.14.2-2].
            if current == 0 && expiry != 0 {
                return self.protocol_error(conn, ReasonCode::ProtocolError, now);
            }
            let expiry = expiry.min(self.config.limits.session_expiry_max_s);
            if let Some(client) = self.clients.get_mut(&key) {
                client.session.expiry_interval_s = expiry;
            }
        }
        let keep_will = disconnect.reason_code == ReasonCode::DisconnectWithWillMessage;
        self.end_connection(conn, None, keep_will, now);
        self.close_now(conn);
    }
}

/// Whether `packet`, with its Reason String, is larger than the client's Maximum Packet Size:
/// then the Reason String must be left out [MQTT-3.2.2-19, MQTT-3.14.2-3].
pub(super) fn reason_string_too_large(packet: &Packet, max_packet_bytes: u32) -> bool {
    packet.encoded_len(ProtocolVersion::V5) > max_packet_bytes as usize
}
