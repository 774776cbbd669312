//! SUBSCRIBE and UNSUBSCRIBE: limits and authorization per filter, the trie replica and the
//! route broadcasts other shards' replicas follow, and retained messages for a new
//! subscription (asked of the owning shard for an exact filter, of every shard for a
//! wildcard one).

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::{
    AckProperties, Packet, Publish, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe,
};
use crate::router::{retained_owner, RetainedMessage, ShardId, SubscriptionEntry};
use crate::session::{Delivery, Message, SessionKey};

use super::barrier::HeldReply;
use super::{Access, ConnId, DurableChange, MeshMessage, Output, PendingRetained, ShardCore};

impl ShardCore {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, subscribe: Subscribe, now: Instant) {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.client) else {
            return;
        };
        let subscription_id = subscribe.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained_wanted = Vec::new();
        let mut routes_changed = false;
        for (filter, options) in subscribe.filters {
            let entry = SubscriptionEntry {
                options,
                subscription_id,
            };
            let reason = match self.subscribe_one(key, &filter, entry) {
                Ok(subscribed) => {
                    routes_changed |= subscribed.route_broadcast;
                    if wants_retained(&filter, options, subscribed.replaced) {
                        retained_wanted.push((filter, entry));
                    }
                    ReasonCode::granted(options.qos)
                }
                Err(reason) => reason,
            };
            reason_codes.push(reason);
        }
        // A client may publish from another connection as soon as it reads the SUBACK:
        // every other shard must route to this subscription by then.
        let barrier = routes_changed.then(|| {
            let others: Vec<ShardId> = self.other_shards().collect();
            self.start_barrier(conn, others.into_iter())
        });
        let packet = Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes,
        });
        // Retained messages follow the SUBACK.
        let reply = HeldReply::new(barrier, packet, retained_wanted);
        self.reply(conn, reply, now);
    }

    /// Adds one subscription.
    fn subscribe_one(
        &mut self,
        key: SessionKey,
        filter: &TopicFilter,
        entry: SubscriptionEntry,
    ) -> Result<Subscribed, ReasonCode> {
        if !self.topic_within_limits(filter.as_str()) {
            self.stats.topic_limit_refused_count += 1;
            return Err(ReasonCode::TopicFilterInvalid);
        }
        let client = self.clients.get(&key).ok_or(ReasonCode::UnspecifiedError)?;
        let held = client.session.subscriptions.contains_key(filter);
        if !held
            && client.session.subscriptions.len()
                >= self.config.limits.max_subscriptions_per_client as usize
        {
            self.stats.subscriptions_quota_refused_count += 1;
            return Err(ReasonCode::QuotaExceeded);
        }
        if let Err(reason) = self.authorizer.authorize(Access::Subscribe {
            client_id: client.session.client_id.as_str(),
            filter,
        }) {
            self.stats.not_authorized_count += 1;
            return Err(reason);
        }
        let outcome = self.trie.subscribe(filter, key, entry);
        if let Some(client) = self.clients.get_mut(&key) {
            client.session.subscriptions.insert(filter.clone(), entry);
        }
        self.record(DurableChange::Subscribed {
            session: key,
            filter,
        });
        let route_broadcast = if filter.shared().is_some() {
            !outcome.replaced && self.broadcast_route(filter, outcome.local_members)
        } else {
            outcome.first_local && self.broadcast_route(filter, 1)
        };
        Ok(Subscribed {
            replaced: outcome.replaced,
            route_broadcast,
        })
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, unsubscribe: Unsubscribe, now: Instant) {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.client) else {
            return;
        };
        let reason_codes = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                if self.unsubscribe_one(key, filter) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes,
        });
        // No barrier: a publish routed to us after the UNSUBACK finds no local subscriber.
        // It still queues behind a held SUBACK to keep the replies in order.
        let reply = HeldReply::new(None, packet, Vec::new());
        self.reply(conn, reply, now);
    }

    /// Removes one subscription; true if the session held it.
    pub(super) fn unsubscribe_one(&mut self, key: SessionKey, filter: &TopicFilter) -> bool {
        let held = self
            .clients
            .get_mut(&key)
            .and_then(|c| c.session.subscriptions.remove(filter))
            .is_some();
        if !held {
            return false;
        }
        let outcome = self.trie.unsubscribe(filter, key);
        self.record(DurableChange::Unsubscribed {
            session: key,
            filter,
        });
        if filter.shared().is_some() {
            if outcome.removed {
                self.broadcast_route(filter, outcome.local_members);
            }
        } else if outcome.last_local {
            self.broadcast_route(filter, 0);
        }
        true
    }

    /// Tells every other shard; false if there is none.
    fn broadcast_route(&mut self, filter: &TopicFilter, count: u32) -> bool {
        let mut sent = false;
        for shard in self.other_shards() {
            sent = true;
            self.outputs.push_back(Output::Mesh {
                to: shard,
                msg: MeshMessage::Route {
                    filter: filter.clone(),
                    count,
                },
            });
        }
        sent
    }

    pub(super) fn other_shards(&self) -> impl Iterator<Item = ShardId> {
        let me = self.shard;
        (0..self.shard_count).map(ShardId).filter(move |s| *s != me)
    }

    /// Retained messages for a new subscription: from this partition now, and from the
    /// owner (exact filter) or every other shard (wildcard) when they answer.
    pub(super) fn request_retained(
        &mut self,
        key: SessionKey,
        filter: &TopicFilter,
        entry: SubscriptionEntry,
        now: Instant,
    ) {
        let owners: Vec<ShardId> = if filter.has_wildcards() {
            (0..self.shard_count).map(ShardId).collect()
        } else {
            match TopicName::parse(filter.as_str()) {
                Ok(topic) => vec![retained_owner(&topic, self.shard_count)],
                Err(_) => return,
            }
        };
        let local = owners.contains(&self.shard);
        let remote: Vec<ShardId> = owners.into_iter().filter(|s| *s != self.shard).collect();
        if local {
            let mut found = Vec::new();
            self.retained.matching(filter, now, &mut found);
            for retained in found {
                self.deliver_retained(key, entry, retained, now);
            }
        }
        if remote.is_empty() {
            return;
        }
        let query = self.next_query;
        self.next_query += 1;
        self.pending_retained.insert(
            query,
            PendingRetained {
                session: key,
                entry,
                replies_left: remote.len() as u16,
            },
        );
        for shard in remote {
            self.outputs.push_back(Output::Mesh {
                to: shard,
                msg: MeshMessage::RetainedQuery {
                    query,
                    filter: filter.clone(),
                },
            });
        }
    }

    pub(super) fn on_retained_reply(
        &mut self,
        query: u64,
        messages: Vec<RetainedMessage>,
        now: Instant,
    ) {
        let Some(pending) = self.pending_retained.get_mut(&query) else {
            return;
        };
        pending.replies_left = pending.replies_left.saturating_sub(1);
        let (key, entry) = (pending.session, pending.entry);
        if pending.replies_left == 0 {
            self.pending_retained.remove(&query);
        }
        for retained in messages {
            self.deliver_retained(key, entry, retained, now);
        }
    }

    /// A retained message sent because of a new subscription: RETAIN set [MQTT-3.3.1-8].
    fn deliver_retained(
        &mut self,
        key: SessionKey,
        entry: SubscriptionEntry,
        retained: RetainedMessage,
        now: Instant,
    ) {
        let qos = retained.qos.min(entry.options.qos);
        let message = Arc::new(Message {
            publish: Publish {
                dup: false,
                qos: retained.qos,
                retain: true,
                topic: retained.topic,
                packet_id: None,
                properties: retained.properties,
                payload: retained.payload,
            },
            expires_at: retained.expires_at,
            origin: None,
        });
        self.deliver(
            key,
            Delivery {
                message,
                qos,
                retain: true,
                subscription_ids: entry.subscription_id.into_iter().collect(),
            },
            now,
        );
    }
}

/// What adding one subscription changed.
struct Subscribed {
    /// The session held a subscription to the same filter, now replaced.
    replaced: bool,
    /// Other shards were told of a route change.
    route_broadcast: bool,
}

/// Retain handling: 0 always, 1 only for a new subscription, 2 never; never for a shared
/// subscription [MQTT 5 §4.8.2].
fn wants_retained(filter: &TopicFilter, options: SubscriptionOptions, replaced: bool) -> bool {
    if filter.shared().is_some() {
        return false;
    }
    match options.retain_handling {
        RetainHandling::SendAtSubscribe => true,
        RetainHandling::SendAtSubscribeIfNew => !replaced,
        RetainHandling::DoNotSend => false,
    }
}
