//! How connections and sessions end: closing (with DISCONNECT for MQTT 5 where the spec
//! asks), wills (now or after their delay), session expiry, the periodic sweep, shutdown,
//! and the mesh messages other shards send.

use bytestring::ByteString;
use std::time::Instant;

use crate::protocol::{DecodeError, Disconnect, Packet, ReasonCode, Will};
use crate::session::{will::will_message, will_due_at, PendingWill, SessionKey};

use super::conn::Phase;
use super::{ConnId, DurableChange, MeshMessage, Output, ShardCore};

/// With no deadline pending, the sweep still runs this often (seconds).
const IDLE_SWEEP_S: u64 = 3600;

/// The CONNACK a 3.x server sends for a protocol level it does not speak: return code 1.
const CONNACK_UNACCEPTABLE_PROTOCOL: [u8; 4] = [0x20, 0x02, 0x00, 0x01];

impl ShardCore {
    pub(super) fn decode_failed(&mut self, conn: ConnId, error: DecodeError, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let reason = error.reason_code();
        tracing::debug!(?conn, %error, "bad packet; closing the connection");
        if c.phase == Phase::AwaitingConnect {
            if let DecodeError::UnsupportedProtocolVersion(_) = error {
                c.out.extend_from_slice(&CONNACK_UNACCEPTABLE_PROTOCOL);
                self.stats.connects_refused_count += 1;
            } else {
                self.stats.malformed_packets_count += 1;
            }
            return self.close_now(conn);
        }
        if reason == ReasonCode::MalformedPacket {
            self.stats.malformed_packets_count += 1;
        } else {
            self.stats.protocol_errors_count += 1;
        }
        self.end_connection(conn, Some(reason), true, now);
        self.close_now(conn);
    }

    /// A protocol violation by the peer: DISCONNECT `reason` (MQTT 5), will, close.
    pub(super) fn protocol_error(&mut self, conn: ConnId, reason: ReasonCode, now: Instant) {
        tracing::debug!(?conn, %reason, "protocol violation; closing the connection");
        self.stats.protocol_errors_count += 1;
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.phase == Phase::AwaitingConnect)
        {
            return self.close_now(conn);
        }
        self.end_connection(conn, Some(reason), true, now);
        self.close_now(conn);
    }

    /// The connection ends: DISCONNECT `reason` to an MQTT 5 client if given, the will if
    /// `publish_will`, and the session detached (ended if its expiry is 0).
    pub(super) fn end_connection(
        &mut self,
        conn: ConnId,
        reason: Option<ReasonCode>,
        publish_will: bool,
        now: Instant,
    ) {
        let Some((key, will)) = self.release_conn(conn, reason, now) else {
            return;
        };
        let expiry_s = self
            .clients
            .get(&key)
            .map_or(0, |c| c.session.expiry_interval_s);
        if let (Some(will), true) = (will, publish_will) {
            let delay_s = will.properties.will_delay_interval_s.unwrap_or(0);
            self.schedule_will(key, will, will_due_at(delay_s, expiry_s, now), now);
        }
        if expiry_s == 0 {
            self.end_session(key, Some(now));
        }
    }

    /// Marks `conn` closing (after DISCONNECT `reason` for MQTT 5) and detaches its session;
    /// returns the session and the connection's will. `None` if it was not connected.
    pub(super) fn release_conn(
        &mut self,
        conn: ConnId,
        reason: Option<ReasonCode>,
        now: Instant,
    ) -> Option<(SessionKey, Option<Will>)> {
        let c = self.conns.get_mut(&conn)?;
        if c.phase != Phase::Connected {
            return None;
        }
        // A reply held for a barrier is not sent on a connection that is ending.
        self.drop_held(conn);
        let c = self.conns.get_mut(&conn)?;
        if let (Some(reason), true) = (reason, c.is_v5()) {
            // A Reason String is always allowed on DISCONNECT [MQTT-3.1.2-29], unless it
            // would make the packet larger than the client accepts [MQTT-3.14.2-3].
            let mut disconnect = Disconnect::new(reason);
            disconnect.properties.reason_string =
                Some(ByteString::from_static(reason.description()));
            let mut packet = Packet::Disconnect(disconnect);
            if super::connect::reason_string_too_large(&packet, c.max_packet_bytes) {
                packet = Packet::Disconnect(Disconnect::new(reason));
            }
            c.write(&packet);
        }
        c.phase = Phase::Closing;
        let will = c.take_will();
        let key = c.client?;
        let client = self.clients.get_mut(&key)?;
        if client.conn == Some(conn) {
            client.conn = None;
        }
        client.session.detach(now);
        if let Some(at) = client.session.expires_at {
            self.note_deadline(at);
        }
        Some((key, will))
    }

    /// Publishes `will` now if due, else holds it until `due` (cancelled if the session is
    /// resumed first, published early if it ends first).
    pub(super) fn schedule_will(
        &mut self,
        session: SessionKey,
        will: Will,
        due: Instant,
        now: Instant,
    ) {
        if due <= now {
            self.publish_will(&will, now);
        } else {
            self.note_deadline(due);
            self.pending_wills.push(PendingWill { session, will, due });
        }
    }

    fn publish_will(&mut self, will: &Will, now: Instant) {
        self.stats.wills_published_count += 1;
        // Nobody listening is no error for a will.
        let _matched = self.publish_message(will_message(will, now), now);
    }

    /// Emits `Close`; the connection is forgotten when `take_outgoing` collects its last
    /// bytes.
    pub(super) fn close_now(&mut self, conn: ConnId) {
        self.drop_held(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.phase = Phase::Closing;
        self.outputs.push_back(Output::Close { conn });
    }

    pub(super) fn forget_conn(&mut self, conn: ConnId) {
        self.drop_held(conn);
        if self.conns.remove(&conn).is_some() {
            self.stats.connections_current = self.stats.connections_current.saturating_sub(1);
        }
    }

    /// The session ends: its subscriptions leave the trie, a pending will is published.
    pub(super) fn end_session(&mut self, key: SessionKey, now: Option<Instant>) {
        let Some(client) = self.clients.remove(&key) else {
            return;
        };
        self.by_client_id
            .remove(key, client.session.client_id.as_str());
        // Re-insert briefly so unsubscribe_one can find the filters it removes.
        let filters: Vec<_> = client.session.subscriptions.keys().cloned().collect();
        self.clients.insert(client);
        for filter in &filters {
            self.unsubscribe_one(key, filter);
        }
        self.clients.remove(&key);
        self.pending_retained.retain(|_, p| p.session != key);
        self.record(DurableChange::SessionEnded { session: key });
        if let Some(now) = now {
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_wills)
                .into_iter()
                .partition(|w| w.session == key);
            self.pending_wills = rest;
            for pending in due {
                self.publish_will(&pending.will, now);
            }
        }
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        // Retained expiries are kept sorted by the store: checking costs one look.
        self.retained.remove_expired(now);
        if self.next_sweep_at.is_some_and(|next| now < next) {
            return;
        }
        let mut timed_out = Vec::new();
        let mut silent = Vec::new();
        for c in self.conns.values() {
            match c.phase {
                Phase::AwaitingConnect if c.keepalive.expired(now) => timed_out.push(c.id),
                Phase::Connected if c.keepalive.expired(now) => silent.push(c.id),
                _ => {}
            }
        }
        for conn in timed_out {
            self.stats.connect_timeouts_count += 1;
            self.close_now(conn);
        }
        for conn in silent {
            self.stats.keepalive_timeouts_count += 1;
            tracing::debug!(?conn, "keep alive timed out");
            self.end_connection(conn, Some(ReasonCode::KeepAliveTimeout), true, now);
            self.close_now(conn);
        }
        let expired: Vec<SessionKey> = self
            .clients
            .iter()
            .filter(|(_, c)| c.conn.is_none() && c.session.is_expired(now))
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            self.stats.sessions_expired_count += 1;
            self.end_session(key, Some(now));
        }
        self.publish_due_wills(None, now);
        // With no deadline ahead, a safety sweep still runs once in a while.
        self.next_sweep_at = Some(
            self.earliest_deadline()
                .unwrap_or(now + std::time::Duration::from_secs(IDLE_SWEEP_S)),
        );
    }

    /// Publishes the wills due at `now` (of one session, or of all).
    pub(super) fn publish_due_wills(&mut self, session: Option<SessionKey>, now: Instant) {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_wills)
            .into_iter()
            .partition(|w| w.due <= now && (session.is_none() || session == Some(w.session)));
        self.pending_wills = rest;
        for pending in due {
            self.publish_will(&pending.will, now);
        }
    }

    /// The earliest deadline still ahead, if any.
    fn earliest_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| match c.phase {
            Phase::AwaitingConnect | Phase::Connected => c.keepalive.deadline(),
            Phase::Closing => None,
        });
        let sessions = self
            .clients
            .values()
            .filter(|c| c.conn.is_none())
            .filter_map(|c| c.session.expires_at);
        let wills = self.pending_wills.iter().map(|w| w.due);
        conns.chain(sessions).chain(wills).min()
    }

    pub(super) fn shut_down(&mut self, now: Instant) {
        let mut conns: Vec<ConnId> = self.conns.keys().collect();
        conns.sort_unstable();
        for conn in conns {
            let closing = self.conns.get(&conn).map(|c| c.phase);
            match closing {
                Some(Phase::Closing) | None => {}
                Some(_) => {
                    self.end_connection(conn, Some(ReasonCode::ServerShuttingDown), true, now);
                    self.close_now(conn);
                }
            }
        }
        for pending in std::mem::take(&mut self.pending_wills) {
            self.publish_will(&pending.will, now);
        }
    }

    pub(super) fn publish_all_wills(&mut self, now: Instant) {
        let mut conns: Vec<ConnId> = self.conns.keys().collect();
        conns.sort_unstable();
        for conn in conns {
            let will = self
                .conns
                .get_mut(&conn)
                .filter(|c| c.phase == Phase::Connected)
                .and_then(|c| c.take_will());
            if let Some(will) = will {
                self.publish_will(&will, now);
            }
        }
        for pending in std::mem::take(&mut self.pending_wills) {
            self.publish_will(&pending.will, now);
        }
    }

    pub(super) fn on_mesh(&mut self, from: crate::router::ShardId, msg: MeshMessage, now: Instant) {
        match msg {
            MeshMessage::Nop => {}
            MeshMessage::Route { filter, count } => self.trie.set_remote(&filter, from, count),
            MeshMessage::Publish { message } => {
                let mut matches = std::mem::take(&mut self.matches);
                self.trie.route_local(&message.publish.topic, &mut matches);
                // The publisher lives on `from`: its key means nothing here.
                self.deliver_local(&message, &mut matches.local, false, now);
                self.matches = matches;
            }
            MeshMessage::SharedPublish { filter, message } => {
                match self.trie.pick_shared_member(&filter) {
                    Some((key, entry)) => {
                        self.deliver_to(key, &message, [entry].iter(), false, None, now)
                    }
                    None => self.stats.shared_undeliverable_count += 1,
                }
            }
            MeshMessage::RetainedSet { message } => self.set_retained(*message),
            MeshMessage::RetainedQuery { query, filter } => {
                let mut messages = Vec::new();
                self.retained.matching(&filter, now, &mut messages);
                self.outputs.push_back(Output::Mesh {
                    to: from,
                    msg: MeshMessage::RetainedReply { query, messages },
                });
            }
            MeshMessage::RetainedReply { query, messages } => {
                self.on_retained_reply(query, messages, now)
            }
            MeshMessage::Barrier { id } => self.outputs.push_back(Output::Mesh {
                to: from,
                msg: MeshMessage::BarrierAck { id },
            }),
            MeshMessage::BarrierAck { id } => self.on_barrier_ack(id, now),
        }
    }
}
