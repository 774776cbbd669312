//! PUBLISH in both directions: an inbound message is checked (topic alias, limits, retain,
//! authorization, Receive Maximum), acknowledged by its QoS flow, stored if retained and
//! routed (locally, one copy per interested shard, one member per shared group); an
//! outbound delivery goes through the session's inflight window and queue into the
//! connection's buffer, bounded by `max_outgoing_bytes` and the client's Maximum Packet Size.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::protocol::{
    Ack, Packet, PacketId, ProtocolVersion, Publish, PublishOverrides, QoS, ReasonCode,
    PUBACK_TYPE, PUBCOMP_TYPE, PUBREC_TYPE,
};
use crate::router::{retained_owner, RetainedMessage, SharedTarget, SubscriptionEntry};
use crate::session::{Delivery, Enqueued, InflightState, Message, SessionKey};

use super::barrier::HeldReply;
use super::conn::{Conn, Phase};
use super::{Access, ConnId, DurableChange, MeshMessage, Output, ShardCore, Stats};

/// Why a delivery was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteRefused {
    TooLarge,
    Expired,
}

impl ShardCore {
    /// A PUBLISH from `conn`, whose session is `key` and whose protocol is MQTT 5 if `v5`
    /// (passed in by the decode loop, which had the connection at hand).
    pub(super) fn on_publish(
        &mut self,
        conn: ConnId,
        key: SessionKey,
        v5: bool,
        mut publish: Publish,
        now: Instant,
    ) {
        self.stats.messages_received_count += 1;
        if v5 {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.resolve_topic(
                &publish.topic,
                publish.properties.topic_alias,
                self.config.limits.max_topic_alias,
            ) {
                Ok(topic) => publish.topic = topic,
                Err(error) => {
                    self.stats.topic_alias_errors_count += 1;
                    return self.protocol_error(conn, error.reason_code(), now);
                }
            }
            if let Some(properties) = publish.properties.get_mut() {
                properties.topic_alias = None;
            }
        } else if publish.topic.is_empty() {
            return self.protocol_error(conn, ReasonCode::TopicNameInvalid, now);
        }
        if !self.topic_within_limits(publish.topic.as_str()) {
            self.stats.topic_limit_refused_count += 1;
            return self.protocol_error(conn, ReasonCode::TopicNameInvalid, now);
        }
        if publish.retain && !self.config.retain_available {
            return self.protocol_error(conn, ReasonCode::RetainNotSupported, now);
        }
        // The session is looked up for its client id only when the authorizer reads it:
        // today it allows every PUBLISH, and the lookup cost a hash probe per message.
        let authorized = if self.authorizer.checks_publish() {
            match self.clients.get(&key) {
                Some(client) => self.authorizer.authorize(Access::Publish {
                    client_id: client.session.client_id.as_str(),
                    topic: &publish.topic,
                }),
                None => return,
            }
        } else {
            Ok(())
        };
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        // QoS 2 re-sent while awaiting PUBREL: acknowledge again, never route twice.
        if let (QoS::ExactlyOnce, Some(id)) = (qos, packet_id) {
            let Some(client) = self.clients.get_mut(&key) else {
                return;
            };
            if client.session.qos2.contains(id) {
                return self.send_ack(conn, PUBREC_TYPE, id, ReasonCode::Success, now);
            }
            if v5 && client.session.qos2.len() >= usize::from(self.config.limits.receive_maximum) {
                self.stats.receive_maximum_exceeded_count += 1;
                return self.protocol_error(conn, ReasonCode::ReceiveMaximumExceeded, now);
            }
        }
        // The owner of a retained topic's partition stores it: the ack waits until it has,
        // or a subscriber on a third shard could ask the owner first and miss it.
        let stored_on = (publish.retain && authorized.is_ok())
            .then(|| retained_owner(&publish.topic, self.shard_count))
            .filter(|owner| *owner != self.shard);
        let reason = match authorized {
            Ok(()) if self.route_inbound(key, publish, now) => ReasonCode::Success,
            // MQTT 5 tells the publisher nobody was listening (3.x acks send no reason).
            Ok(()) => ReasonCode::NoMatchingSubscribers,
            Err(reason) => {
                self.stats.not_authorized_count += 1;
                reason
            }
        };
        if qos == QoS::AtMostOnce {
            return;
        }
        let barrier = stored_on.map(|owner| self.start_barrier(conn, std::iter::once(owner)));
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.send_ack_after(conn, PUBACK_TYPE, id, reason, barrier, now)
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if !reason.is_error() {
                    if let Some(client) = self.clients.get_mut(&key) {
                        client.session.qos2.receive(id);
                    }
                    self.record(DurableChange::InboundQos2 {
                        session: key,
                        packet_id: id,
                    });
                }
                self.send_ack_after(conn, PUBREC_TYPE, id, reason, barrier, now)
            }
            // A QoS 1/2 PUBLISH without a packet id does not decode.
            _ => self.forget_barrier(barrier),
        }
    }

    /// Routes a client's PUBLISH; false if no subscriber anywhere matched.
    #[inline]
    fn route_inbound(&mut self, key: SessionKey, mut publish: Publish, now: Instant) -> bool {
        let expires_at = Message::expiry_from(publish.properties.message_expiry_interval_s, now);
        publish.dup = false;
        publish.packet_id = None;
        if let Some(properties) = publish.properties.get_mut() {
            properties.subscription_identifiers.clear();
        }
        let message = Arc::new(Message {
            publish,
            expires_at,
            origin: Some(key),
        });
        self.publish_message(message, now)
    }

    /// A message from a client on this shard (or a will): retain it, then route it. False
    /// if no subscription matched here and no other shard has one.
    pub(super) fn publish_message(&mut self, message: Arc<Message>, now: Instant) -> bool {
        if message.publish.retain {
            self.store_retained(&message);
        }
        let topic = &message.publish.topic;
        if let Some((key, entry)) = self.trie.route_unless_one(topic, &mut self.matches) {
            // The common case, one local subscriber and nothing else: `deliver_local` would
            // do the same after a round trip through `Matches`.
            self.deliver_to(key, &message, [entry].iter(), true, None, now);
            return true;
        }
        let mut matches = std::mem::take(&mut self.matches);
        let matched = !matches.is_empty();
        for shard in matches.remote.iter() {
            self.outputs.push_back(Output::Mesh {
                to: shard,
                msg: MeshMessage::Publish {
                    message: Arc::clone(&message),
                },
            });
        }
        for shared in matches.shared.drain(..) {
            match shared.target {
                SharedTarget::Local(key, entry) => {
                    self.deliver_to(key, &message, [entry].iter(), false, None, now)
                }
                SharedTarget::Remote(shard) => self.outputs.push_back(Output::Mesh {
                    to: shard,
                    msg: MeshMessage::SharedPublish {
                        filter: shared.filter,
                        message: Arc::clone(&message),
                    },
                }),
            }
        }
        self.deliver_local(&message, &mut matches.local, true, now);
        self.matches = matches;
        matched
    }

    /// The message's retained copy goes to the shard owning its topic.
    fn store_retained(&mut self, message: &Message) {
        let publish = &message.publish;
        let mut properties = publish.properties.clone();
        if let Some(properties) = properties.get_mut() {
            properties.topic_alias = None;
            properties.subscription_identifiers.clear();
        }
        let retained = RetainedMessage {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            qos: publish.qos,
            properties,
            expires_at: message.expires_at,
        };
        let owner = retained_owner(&publish.topic, self.shard_count);
        if owner == self.shard {
            self.set_retained(retained);
        } else {
            self.outputs.push_back(Output::Mesh {
                to: owner,
                msg: MeshMessage::RetainedSet {
                    message: Box::new(retained),
                },
            });
        }
    }

    pub(super) fn set_retained(&mut self, retained: RetainedMessage) {
        self.record(DurableChange::RetainedSet {
            topic: &retained.topic,
        });
        if self.retained.set(retained).is_err() {
            self.stats.retained_full_count += 1;
        }
    }

    /// Delivers to this shard's matching subscribers: one copy per session, at the highest
    /// QoS its matching subscriptions grant, with every subscription identifier. No Local
    /// applies only on the publisher's own shard: `origin` is a key of that shard.
    pub(super) fn deliver_local(
        &mut self,
        message: &Arc<Message>,
        entries: &mut Vec<(SessionKey, SubscriptionEntry)>,
        apply_no_local: bool,
        now: Instant,
    ) {
        if entries.is_empty() {
            return;
        }
        if let [(key, entry)] = entries[..] {
            // The common case of a topic with one subscriber: nothing to group, and a
            // template would only add a copy.
            entries.clear();
            return self.deliver_to(key, message, [entry].iter(), apply_no_local, None, now);
        }
        // Overlapping filters list a session once per filter: sort to group them.
        entries.sort_unstable_by_key(|(key, _)| *key);
        // Fan-out: encode each PUBLISH form once for this call and copy it per subscriber.
        let mut templates = std::mem::take(&mut self.templates);
        templates.reset();
        let mut start = 0;
        while start < entries.len() {
            let key = entries[start].0;
            // Groups are nearly always one entry long: a scan beats a binary search.
            let end = start
                + 1
                + entries[start + 1..]
                    .iter()
                    .take_while(|(k, _)| *k == key)
                    .count();
            let group = entries[start..end].iter().map(|(_, e)| e);
            self.deliver_to(
                key,
                message,
                group,
                apply_no_local,
                Some(&mut templates),
                now,
            );
            start = end;
        }
        entries.clear();
        templates.release();
        self.templates = templates;
    }

    /// One delivery of `message` to session `key` under its matching `entries`. QoS 0
    /// deliveries are written at once (copied from `templates` when given), never queued.
    pub(super) fn deliver_to<'e>(
        &mut self,
        key: SessionKey,
        message: &Arc<Message>,
        entries: impl Iterator<Item = &'e SubscriptionEntry>,
        apply_no_local: bool,
        templates: Option<&mut Templates>,
        now: Instant,
    ) {
        let own = message.origin == Some(key);
        let mut qos = None;
        let mut retain = false;
        let mut subscription_ids = Vec::new();
        for entry in entries {
            if apply_no_local && own && entry.options.no_local {
                continue;
            }
            let granted = message.publish.qos.min(entry.options.qos);
            qos = Some(qos.map_or(granted, |q: QoS| q.max(granted)));
            retain |= message.publish.retain && entry.options.retain_as_published;
            subscription_ids.extend(entry.subscription_id);
        }
        let Some(qos) = qos else {
            return;
        };
        if qos == QoS::AtMostOnce {
            let outgoing = Outgoing {
                message,
                qos,
                retain,
                subscription_ids: &subscription_ids,
            };
            // Subscription identifiers differ per subscriber: those are encoded each time.
            let templates = templates.filter(|_| subscription_ids.is_empty());
            return self.deliver_qos0(key, outgoing, templates, now);
        }
        self.deliver(
            key,
            Delivery {
                message: Arc::clone(message),
                qos,
                retain,
                subscription_ids,
            },
            now,
        );
    }

    /// Writes a QoS 0 delivery if the session is connected and its buffer has room, else
    /// drops it, counted. Nothing is queued, so nothing holds the message.
    fn deliver_qos0(
        &mut self,
        key: SessionKey,
        outgoing: Outgoing<'_>,
        templates: Option<&mut Templates>,
        now: Instant,
    ) {
        if outgoing.message.is_expired(now) {
            self.stats.messages_expired_count += 1;
            return;
        }
        let Some(conn_id) = self.clients.get(&key).map(|c| c.conn) else {
            return;
        };
        let conn = conn_id
            .and_then(|id| self.conns.get_mut(&id))
            .filter(|c| c.phase == Phase::Connected);
        let Some(conn) = conn else {
            self.stats.qos0_dropped_offline_count += 1;
            return;
        };
        if conn.out.len() >= self.config.limits.max_outgoing_bytes as usize {
            self.stats.qos0_dropped_slow_count += 1;
            return;
        }
        ready_out(&mut conn.out, &mut self.spare_out);
        match templates {
            Some(templates) => templates.write(conn, outgoing, now, &mut self.stats),
            None => write_delivery(conn, outgoing, None, false, now, &mut self.stats),
        }
        if conn.needs_signal() {
            self.outputs.push_back(Output::Writable { conn: conn.id });
        }
    }

    /// Sends `delivery` now if the session's connection and window allow, else queues it
    /// (QoS 1/2) or drops it (QoS 0), counting every drop.
    pub(super) fn deliver(&mut self, key: SessionKey, delivery: Delivery, now: Instant) {
        if delivery.message.is_expired(now) {
            self.stats.messages_expired_count += 1;
            return;
        }
        let max_out = self.config.limits.max_outgoing_bytes as usize;
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        let conn = client
            .conn
            .and_then(|id| self.conns.get_mut(&id))
            .filter(|c| c.phase == Phase::Connected);
        let Some(conn) = conn else {
            if delivery.qos == QoS::AtMostOnce {
                self.stats.qos0_dropped_offline_count += 1;
            } else {
                self.enqueue(key, delivery);
            }
            return;
        };
        if delivery.qos == QoS::AtMostOnce {
            return self.deliver_qos0(key, Outgoing::from(&delivery), None, now);
        }
        let room = conn.out.len() < max_out;
        let session = &mut client.session;
        if room && session.queue.is_empty() && session.inflight.has_room() {
            if fits(conn, (&delivery).into(), now).is_err() {
                self.stats.packet_too_large_dropped_count += 1;
                return;
            }
            // Moved into the window and written from there, not cloned (see `drain`).
            let (id, delivery) = session.inflight.insert_get(delivery);
            ready_out(&mut conn.out, &mut self.spare_out);
            write_delivery(conn, delivery.into(), Some(id), false, now, &mut self.stats);
            // Signalled from here: `signal_session` would look both maps up again.
            let writable = conn.needs_signal().then_some(conn.id);
            self.record(DurableChange::InflightSent {
                session: key,
                packet_id: id,
            });
            if let Some(conn) = writable {
                self.outputs.push_back(Output::Writable { conn });
            }
            return;
        }
        self.enqueue(key, delivery);
        self.signal_session(key);
    }

    fn enqueue(&mut self, key: SessionKey, delivery: Delivery) {
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        match client.session.queue.push(delivery) {
            Enqueued::Queued => {}
            Enqueued::QueuedShedQos0 => self.stats.qos0_shed_count += 1,
            Enqueued::Dropped => {
                self.stats.queue_full_dropped_count += 1;
                return;
            }
        }
        self.record(DurableChange::Queued { session: key });
    }

    /// Moves queued messages into the window while the connection has room.
    pub(super) fn drain(&mut self, key: SessionKey, now: Instant) {
        let max_out = self.config.limits.max_outgoing_bytes as usize;
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        // Nothing queued, nothing to write (every other write signals for itself): the
        // common case after each flush of a QoS 0 subscriber.
        if client.session.queue.is_empty() {
            return;
        }
        let Some(conn) = client
            .conn
            .and_then(|id| self.conns.get_mut(&id))
            .filter(|c| c.phase == Phase::Connected)
        else {
            return;
        };
        let session = &mut client.session;
        let mut sent = std::mem::take(&mut self.sent_ids);
        let mut dropped_count = 0;
        ready_out(&mut conn.out, &mut self.spare_out);
        while conn.out.len() < max_out && session.inflight.has_room() {
            let Some(delivery) = session.queue.pop() else {
                break;
            };
            match fits(conn, (&delivery).into(), now) {
                Err(WriteRefused::Expired) => {
                    self.stats.messages_expired_count += 1;
                    dropped_count += 1;
                    continue;
                }
                Err(WriteRefused::TooLarge) => {
                    self.stats.packet_too_large_dropped_count += 1;
                    dropped_count += 1;
                    continue;
                }
                Ok(()) => {}
            }
            if delivery.qos == QoS::AtMostOnce {
                write_delivery(conn, (&delivery).into(), None, false, now, &mut self.stats);
            } else {
                // Moved into the window and written from there: no clone of the
                // delivery (an atomic count on the shared message) per message.
                let (id, delivery) = session.inflight.insert_get(delivery);
                write_delivery(conn, delivery.into(), Some(id), false, now, &mut self.stats);
                sent.push(id);
            }
        }
        if dropped_count > 0 {
            self.record(DurableChange::QueueDropped {
                session: key,
                dropped_count,
            });
        }
        for &id in &sent {
            self.record(DurableChange::InflightSent {
                session: key,
                packet_id: id,
            });
        }
        sent.clear();
        self.sent_ids = sent;
        self.signal_session(key);
    }

    /// After a session is resumed: unacknowledged messages again, with DUP, in order; then
    /// PUBRELs for released ones; then the queue.
    pub(super) fn resume(&mut self, key: SessionKey, conn: ConnId, now: Instant) {
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // A message that expired meanwhile, or no longer fits the client's maximum, cannot
        // be resent: it leaves the window (counted) rather than holding its slot forever.
        let stats = &mut self.stats;
        client.session.inflight.retain(|id, state| match state {
            InflightState::Published(delivery) => match fits(c, delivery.into(), now) {
                Ok(()) => {
                    write_delivery(c, delivery.into(), Some(id), true, now, stats);
                    true
                }
                Err(WriteRefused::Expired) => {
                    stats.messages_expired_count += 1;
                    false
                }
                Err(WriteRefused::TooLarge) => {
                    stats.packet_too_large_dropped_count += 1;
                    false
                }
            },
            InflightState::Released => {
                c.write(&Packet::PubRel(Ack::success(id)));
                true
            }
        });
        self.drain(key, now);
        self.signal(conn);
    }

    pub(super) fn on_puback(&mut self, conn: ConnId, id: PacketId, now: Instant) {
        if let Some(key) = self.conns.get(&conn).and_then(|c| c.client) {
            self.on_session_puback(key, id, now);
        }
    }

    /// [`ShardCore::on_puback`] once the connection's session is known.
    pub(super) fn on_session_puback(&mut self, key: SessionKey, id: PacketId, now: Instant) {
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        if !client.session.inflight.puback(id) {
            return;
        }
        // `drain` would only look again to find the queue empty: the common case.
        let queued = !client.session.queue.is_empty();
        self.record(DurableChange::InflightAcked {
            session: key,
            packet_id: id,
        });
        if queued {
            self.drain(key, now);
        }
    }

    pub(super) fn on_pubrec(&mut self, conn: ConnId, ack: Ack, now: Instant) {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.client) else {
            return;
        };
        let failed = ack.reason_code.is_error();
        let known = self
            .clients
            .get_mut(&key)
            .is_some_and(|c| c.session.inflight.pubrec(ack.packet_id, failed));
        if known {
            self.record(DurableChange::InflightAcked {
                session: key,
                packet_id: ack.packet_id,
            });
        }
        if failed {
            self.drain(key, now);
        } else {
            let reason = if known {
                ReasonCode::Success
            } else {
                ReasonCode::PacketIdentifierNotFound
            };
            // PUBREL continues our own delivery: it needs no place among the replies.
            let pubrel = self.ack_packet(conn, Packet::PubRel, ack.packet_id, reason);
            self.send(conn, &pubrel);
        }
    }

    pub(super) fn on_pubrel(&mut self, conn: ConnId, id: PacketId, now: Instant) {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.client) else {
            return;
        };
        let known = self
            .clients
            .get_mut(&key)
            .is_some_and(|c| c.session.qos2.release(id));
        let reason = if known {
            self.record(DurableChange::InboundQos2 {
                session: key,
                packet_id: id,
            });
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        self.send_ack(conn, PUBCOMP_TYPE, id, reason, now);
    }

    pub(super) fn on_pubcomp(&mut self, conn: ConnId, id: PacketId, now: Instant) {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.client) else {
            return;
        };
        let done = self
            .clients
            .get_mut(&key)
            .is_some_and(|c| c.session.inflight.pubcomp(id));
        if done {
            self.record(DurableChange::InflightAcked {
                session: key,
                packet_id: id,
            });
            self.drain(key, now);
        }
    }

    /// PUBACK/PUBREC/PUBCOMP (`packet_type` 4, 5 or 7), in order among the replies; 3.x has
    /// no reason code, so an error is sent as success.
    fn send_ack(
        &mut self,
        conn: ConnId,
        packet_type: u8,
        id: PacketId,
        reason: ReasonCode,
        now: Instant,
    ) {
        self.send_ack_after(conn, packet_type, id, reason, None, now);
    }

    /// An ack that waits for `barrier` (and, in any case, behind `conn`'s held replies).
    fn send_ack_after(
        &mut self,
        conn: ConnId,
        packet_type: u8,
        id: PacketId,
        reason: ReasonCode,
        barrier: Option<u64>,
        now: Instant,
    ) {
        if barrier.is_none() {
            // The common case, one per QoS 1/2 message: nothing to wait for, so the ack's
            // few bytes go straight into the buffer, as `reply` would write the `Packet`.
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.held.is_empty() {
                let version = c.version.unwrap_or(ProtocolVersion::V3_1_1);
                ready_out(&mut c.out, &mut self.spare_out);
                Ack::write_short(packet_type, id, reason, version, &mut c.out);
                if c.needs_signal() {
                    self.outputs.push_back(Output::Writable { conn });
                }
                return;
            }
        }
        debug_assert!(
            matches!(packet_type, PUBACK_TYPE | PUBREC_TYPE | PUBCOMP_TYPE),
            "not an ack type: {packet_type}"
        );
        let kind = match packet_type {
            PUBACK_TYPE => Packet::PubAck,
            PUBREC_TYPE => Packet::PubRec,
            _ => Packet::PubComp,
        };
        let reply = HeldReply::new(barrier, self.ack_packet(conn, kind, id, reason), Vec::new());
        self.reply(conn, reply, now);
    }

    fn ack_packet(
        &self,
        conn: ConnId,
        kind: fn(Ack) -> Packet,
        id: PacketId,
        reason: ReasonCode,
    ) -> Packet {
        let mut ack = Ack::success(id);
        if self.conns.get(&conn).is_some_and(|c| c.is_v5()) {
            ack.reason_code = reason;
        }
        kind(ack)
    }

    /// Writes `packet` to `conn` and signals it.
    pub(super) fn send(&mut self, conn: ConnId, packet: &Packet) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.write(packet);
        }
        self.signal(conn);
    }

    /// Emits `Writable` if `conn` just got bytes.
    pub(super) fn signal(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.needs_signal() {
                self.outputs.push_back(Output::Writable { conn });
            }
        }
    }

    fn signal_session(&mut self, key: SessionKey) {
        if let Some(conn) = self.clients.get(&key).and_then(|c| c.conn) {
            self.signal(conn);
        }
    }
}

/// One delivery as the encoder needs it, borrowed: from a queued [`Delivery`], or built on
/// the spot for a QoS 0 one that is written at once and never holds the message.
#[derive(Clone, Copy)]
pub(super) struct Outgoing<'a> {
    message: &'a Message,
    qos: QoS,
    retain: bool,
    subscription_ids: &'a [NonZeroU32],
}

impl<'a> From<&'a Delivery> for Outgoing<'a> {
    fn from(delivery: &'a Delivery) -> Outgoing<'a> {
        Outgoing {
            message: &delivery.message,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: &delivery.subscription_ids,
        }
    }
}

/// One message's QoS 0 PUBLISH, encoded once per routing call for each form subscribers
/// may need (MQTT 5 or not, RETAIN set or not) and copied to every subscriber whose delivery
/// changes nothing else: fan-out pays one encode per message, then a copy per subscriber.
/// Valid for one message at one `now` only: [`Templates::reset`] before each use.
#[derive(Debug, Default)]
pub(super) struct Templates {
    /// Indexed by [`Templates::slot`]; meaningful where `forms` says `Made`.
    bytes: [BytesMut; 4],
    forms: [Form; 4],
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Form {
    #[default]
    Unmade,
    Made,
    Refused(WriteRefused),
    Unencodable,
}

/// A template buffer above this is dropped after use rather than kept for the next message:
/// one large message must not pin its size for good.
const TEMPLATE_KEPT_BYTES: usize = 16 * 1024;

impl Templates {
    pub(super) fn reset(&mut self) {
        self.forms = [Form::Unmade; 4];
        for bytes in &mut self.bytes {
            bytes.clear();
        }
    }

    /// Gives back the memory of a large message's templates.
    pub(super) fn release(&mut self) {
        for bytes in &mut self.bytes {
            if bytes.capacity() > TEMPLATE_KEPT_BYTES {
                *bytes = BytesMut::new();
            }
        }
    }

    /// Appends `outgoing` (QoS 0, no subscription identifier) to `conn`'s buffer, encoding
    /// its form on first use; too large or expired ones are dropped and counted, as by
    /// [`write_delivery`].
    fn write(&mut self, conn: &mut Conn, outgoing: Outgoing<'_>, now: Instant, stats: &mut Stats) {
        debug_assert!(outgoing.qos == QoS::AtMostOnce && outgoing.subscription_ids.is_empty());
        let v5 = conn.is_v5();
        let slot = usize::from(v5) * 2 + usize::from(outgoing.retain);
        if self.forms[slot] == Form::Unmade {
            // PUBLISH is encoded alike in 3.1 and 3.1.1; only MQTT 5 differs.
            let version = if v5 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            self.forms[slot] = match publish_at(outgoing, now) {
                Err(refused) => Form::Refused(refused),
                Ok(publish) => {
                    let overrides = overrides(outgoing, None, false);
                    match publish.encode_with(version, &overrides, &mut self.bytes[slot]) {
                        Ok(()) => Form::Made,
                        Err(_) => Form::Unencodable,
                    }
                }
            };
        }
        match self.forms[slot] {
            Form::Made if self.bytes[slot].len() > conn.max_packet_bytes as usize => {
                stats.packet_too_large_dropped_count += 1
            }
            Form::Made => {
                conn.out.extend_from_slice(&self.bytes[slot]);
                stats.messages_sent_count += 1;
            }
            Form::Refused(WriteRefused::Expired) => stats.messages_expired_count += 1,
            Form::Refused(WriteRefused::TooLarge) => stats.packet_too_large_dropped_count += 1,
            Form::Unmade | Form::Unencodable => {
                tracing::warn!(conn = ?conn.id, "delivery not encodable")
            }
        }
    }
}

/// The PUBLISH to encode for `delivery` at `now`: the shared one, or, when the message
/// expires, a copy carrying the interval left [MQTT-3.3.2-6].
fn publish_at(
    delivery: Outgoing<'_>,
    now: Instant,
) -> Result<std::borrow::Cow<'_, Publish>, WriteRefused> {
    let message = delivery.message;
    if message.is_expired(now) {
        return Err(WriteRefused::Expired);
    }
    Ok(match message.remaining_expiry_s(now) {
        None => std::borrow::Cow::Borrowed(&message.publish),
        Some(left) => {
            let mut publish = message.publish.clone();
            publish.properties.make_mut().message_expiry_interval_s = Some(left);
            std::borrow::Cow::Owned(publish)
        }
    })
}

fn overrides(
    delivery: Outgoing<'_>,
    packet_id: Option<PacketId>,
    dup: bool,
) -> PublishOverrides<'_> {
    PublishOverrides {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        packet_id,
        subscription_identifiers: delivery.subscription_ids,
        topic_alias: None,
        omit_topic: false,
    }
}

/// Whether `delivery` may be written to `conn` at all (live, within the client's maximum).
/// Inlined for the common case (no client maximum, nothing to expire): called twice per
/// QoS 1 delivery, the call itself cost more than the check.
#[inline(always)]
fn fits(conn: &Conn, delivery: Outgoing<'_>, now: Instant) -> Result<(), WriteRefused> {
    if conn.max_packet_bytes == u32::MAX && delivery.message.expires_at.is_none() {
        return Ok(());
    }
    fits_measured(conn, delivery, now)
}

/// [`fits`] when there is a maximum or an expiry: the encoded size and the time left.
#[inline(never)]
fn fits_measured(conn: &Conn, delivery: Outgoing<'_>, now: Instant) -> Result<(), WriteRefused> {
    let publish = publish_at(delivery, now)?;
    let version = conn.version.unwrap_or(ProtocolVersion::V3_1_1);
    // A placeholder id of the same size as the real one.
    let id = (delivery.qos != QoS::AtMostOnce)
        .then_some(PacketId::new(1))
        .flatten();
    let len = publish.encoded_len_with(version, &overrides(delivery, id, false));
    if len > conn.max_packet_bytes as usize {
        return Err(WriteRefused::TooLarge);
    }
    Ok(())
}

/// Encodes one delivery into `conn`'s buffer; too large or expired ones are dropped and
/// counted.
fn write_delivery(
    conn: &mut Conn,
    delivery: Outgoing<'_>,
    packet_id: Option<PacketId>,
    dup: bool,
    now: Instant,
    stats: &mut super::Stats,
) {
    if let Err(refused) = fits(conn, delivery, now) {
        match refused {
            WriteRefused::TooLarge => stats.packet_too_large_dropped_count += 1,
            WriteRefused::Expired => stats.messages_expired_count += 1,
        }
        return;
    }
    // Most messages never expire: encode the shared PUBLISH without building (and
    // copying, it is large) the `Cow` that an expiring one needs.
    let expiring;
    let publish = if delivery.message.expires_at.is_none() {
        &delivery.message.publish
    } else {
        let Ok(publish) = publish_at(delivery, now) else {
            return;
        };
        expiring = publish;
        &*expiring
    };
    let version = conn.version.unwrap_or(ProtocolVersion::V3_1_1);
    match publish.encode_with(version, &overrides(delivery, packet_id, dup), &mut conn.out) {
        Ok(()) => stats.messages_sent_count += 1,
        Err(error) => tracing::warn!(conn = ?conn.id, %error, "delivery not encodable"),
    }
}

/// Gives a connection whose buffer went out whole (`take_outgoing`) a spare one to write
/// into, or a fresh one sized for a batch: growing from nothing reallocated several times
/// per batch. Only the hot write paths call this; an idle connection keeps no buffer.
#[inline(always)]
fn ready_out(out: &mut BytesMut, spare: &mut Vec<BytesMut>) {
    if out.capacity() == 0 {
        refill_out(out, spare);
    }
}

#[inline(never)]
fn refill_out(out: &mut BytesMut, spare: &mut Vec<BytesMut>) {
    *out = spare
        .pop()
        .unwrap_or_else(|| BytesMut::with_capacity(super::WRITE_BUFFER_MIN_BYTES));
}
