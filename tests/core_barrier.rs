//! Acknowledgements that wait for other shards: a SUBACK is written only once every other
//! shard has applied the route changes of its SUBSCRIBE, and the PUBACK/PUBREC of a retained
//! PUBLISH only once the shard owning the topic has stored it. The mesh is held and
//! delivered step by step to show both orders.

mod core_harness;

use core_harness::*;
use culex::protocol::{Packet, PacketId, QoS, ReasonCode, TopicName};
use culex::router::retained_owner;

/// A topic whose retained copy lives on `owner` among `shards`.
fn topic_owned_by(owner: usize, shards: u16, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}/{n}"))
        .find(|t| {
            let topic = TopicName::parse(t.as_str()).expect("valid topic");
            retained_owner(&topic, shards).0 as usize == owner
        })
        .expect("some topic hashes to every shard")
}

fn is_suback(packet: &Packet, id: u16) -> bool {
    matches!(packet, Packet::SubAck(a) if a.packet_id == pid(id))
}

/// The packet ids of the acks among `packets`, tagged by kind, in order.
fn acks(packets: &[Packet]) -> Vec<(&'static str, PacketId)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::SubAck(a) => Some(("SUBACK", a.packet_id)),
            Packet::UnsubAck(a) => Some(("UNSUBACK", a.packet_id)),
            Packet::PubAck(a) => Some(("PUBACK", a.packet_id)),
            Packet::PubRec(a) => Some(("PUBREC", a.packet_id)),
            Packet::PubComp(a) => Some(("PUBCOMP", a.packet_id)),
            _ => None,
        })
        .collect()
}

fn retained_publish(topic: &str, qos: QoS, id: u16, payload: &'static [u8]) -> Packet {
    let mut p = publish(topic, qos, Some(pid(id)), payload);
    p.retain = true;
    Packet::Publish(p)
}

#[test]
fn suback_waits_until_every_other_shard_applied_the_route() {
    let mut net = Net::new(3);
    let sub = net.client(V5, &net.id_on(0, "sub"));
    net.hold_mesh = true;
    net.send(
        sub,
        &subscribe(1, &[("a/b", options(QoS::AtLeastOnce))], None),
    );
    assert!(net.recv(sub).is_empty(), "no SUBACK before any shard knows");
    let queued = net.queued_mesh();
    assert_eq!(
        queued,
        vec![
            (0, 1, "Route".to_string()),
            (0, 2, "Route".to_string()),
            (0, 1, "Barrier".to_string()),
            (0, 2, "Barrier".to_string()),
        ],
        "each barrier follows the route on its pair"
    );
    // Shard 1 applies the route and answers; shard 2 has not yet.
    assert_eq!(net.deliver_mesh_all(|from, to, _| from == 1 || to == 1), 3);
    assert!(
        net.recv(sub).is_empty(),
        "shard 2 has not applied the route"
    );
    assert_eq!(net.cores[0].pending_barriers_count(), 1);
    // Shard 2 applies it: its ack releases the SUBACK (and the retained query, if the
    // topic's owner is another shard, follows it).
    net.deliver_mesh_all(|from, to, kind| (from, to) == (0, 2) && kind != "RetainedQuery");
    assert!(net.recv(sub).is_empty(), "shard 2's ack is not back yet");
    assert!(net.deliver_mesh(|from, _, kind| from == 2 && kind == "BarrierAck"));
    let got = net.recv(sub);
    assert_eq!(got.len(), 1);
    assert!(is_suback(&got[0], 1), "{got:?}");
    assert_eq!(net.cores[0].pending_barriers_count(), 0);
    assert_eq!(net.cores[0].held_replies_count(), 0);
    assert_eq!(net.cores[0].stats().barriers_started_count, 1);
}

#[test]
fn publish_from_other_shards_right_after_the_suback_is_delivered() {
    let mut net = Net::new(3);
    let sub = net.client(V4, &net.id_on(0, "sub"));
    let p1 = net.client(V4, &net.id_on(1, "p1"));
    let p2 = net.client(V4, &net.id_on(2, "p2"));
    net.hold_mesh = true;
    net.send(
        sub,
        &subscribe(1, &[("news/#", options(QoS::AtMostOnce))], None),
    );
    // One message at a time; the moment the SUBACK is out, both publishers go, before any
    // other mesh message moves.
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            net.deliver_mesh(|_, _, _| true),
            "the SUBACK comes eventually"
        );
        got = net.recv(sub);
    }
    assert!(is_suback(&got[0], 1));
    net.publish(p1, "news/one", QoS::AtMostOnce, b"from 1");
    net.publish(p2, "news/two", QoS::AtMostOnce, b"from 2");
    net.release_mesh();
    let mut got = payloads(&net.recv(sub));
    got.sort();
    assert_eq!(got, vec!["from 1", "from 2"]);
}

#[test]
fn pipelined_replies_keep_their_order_behind_a_held_suback() {
    let mut net = Net::new(3);
    let sub = net.client(V5, &net.id_on(0, "sub"));
    let owner1 = topic_owned_by(1, 3, "kept");
    net.hold_mesh = true;
    // 1: a new route (barrier to shards 1 and 2). 2: the same filter again, no route
    // change. 3: an UNSUBSCRIBE. 4: a retained QoS 1 PUBLISH owned by shard 1 (barrier to
    // shard 1 only). 5: a plain QoS 1 PUBLISH. 6: a second new route.
    net.send(
        sub,
        &subscribe(1, &[("x/1", options(QoS::AtMostOnce))], None),
    );
    net.send(
        sub,
        &subscribe(2, &[("x/1", options(QoS::AtLeastOnce))], None),
    );
    net.send(sub, &unsubscribe(3, &["nothing/here"]));
    net.send(sub, &retained_publish(&owner1, QoS::AtLeastOnce, 4, b"r"));
    net.send(
        sub,
        &Packet::Publish(publish("plain", QoS::AtLeastOnce, Some(pid(5)), b"p")),
    );
    net.send(
        sub,
        &subscribe(6, &[("x/2", options(QoS::AtMostOnce))], None),
    );
    net.send(sub, &Packet::PingReq);
    // Even the PINGRESP waits: the connection's bytes leave in order.
    assert!(net.recv(sub).is_empty());
    assert_eq!(net.cores[0].held_replies_count(), 5 + 1);
    // Shard 1 answers every barrier (4's completes), shard 2 nothing: all still wait for 1.
    net.deliver_mesh_all(|from, to, _| from == 1 || to == 1);
    assert!(
        net.recv(sub).is_empty(),
        "the PUBACK of 4 must not overtake 1"
    );
    net.release_mesh();
    let got = net.recv(sub);
    assert_eq!(got.last(), Some(&Packet::PingResp));
    let order: Vec<_> = acks(&got)
        .into_iter()
        .map(|(kind, id)| (kind, id.get()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("SUBACK", 1),
            ("SUBACK", 2),
            ("UNSUBACK", 3),
            ("PUBACK", 4),
            ("PUBACK", 5),
            ("SUBACK", 6),
        ]
    );
    assert_eq!(net.cores[0].held_replies_count(), 0);
    assert_eq!(net.cores[0].pending_barriers_count(), 0);
}

#[test]
fn retained_messages_follow_the_released_suback() {
    let mut net = Net::new(3);
    let p = net.client(V4, &net.id_on(1, "p"));
    let topic = topic_owned_by(2, 3, "ret");
    net.send(p, &retained_publish(&topic, QoS::AtLeastOnce, 1, b"kept"));
    let sub = net.client(V4, &net.id_on(0, "sub"));
    net.hold_mesh = true;
    net.send(
        sub,
        &subscribe(1, &[(&topic, options(QoS::AtLeastOnce))], None),
    );
    assert_eq!(
        net.queued_mesh()
            .iter()
            .filter(|m| m.2 == "RetainedQuery")
            .count(),
        0
    );
    net.release_mesh();
    let got = net.recv(sub);
    assert!(is_suback(&got[0], 1), "{got:?}");
    assert_eq!(payloads(&got), vec!["kept"]);
}

#[test]
fn a_connection_lost_while_its_suback_is_held_is_cleaned_up() {
    let mut net = Net::new(2);
    let sub = net.client(V5, &net.id_on(0, "sub"));
    net.hold_mesh = true;
    net.send(
        sub,
        &subscribe(1, &[("gone/#", options(QoS::AtMostOnce))], None),
    );
    net.send(sub, &unsubscribe(2, &["gone/#"]));
    assert_eq!(net.cores[0].held_replies_count(), 2);
    net.lose(sub);
    assert_eq!(net.cores[0].held_replies_count(), 0);
    assert_eq!(net.cores[0].pending_barriers_count(), 0);
    assert_eq!(net.cores[0].stats().held_replies_dropped_count, 2);
    // The late ack finds nothing and is ignored.
    net.release_mesh();
    assert!(net.recv(sub).is_empty());
    assert_eq!(net.cores[0].pending_barriers_count(), 0);
}

#[test]
fn a_client_taken_over_while_its_suback_is_held_gets_none() {
    let mut net = Net::new(2);
    let id = net.id_on(0, "twice");
    let first = net.client(V5, &id);
    net.hold_mesh = true;
    net.send(
        first,
        &subscribe(1, &[("t/#", options(QoS::AtMostOnce))], None),
    );
    // The same client id connects again (on shard 0 directly: no mesh needed).
    let (second, connack) = net.connect_on(0, connect(V5, &id, false));
    assert_eq!(connack_code(&connack), ReasonCode::Success);
    assert!(net.is_closed(first));
    let old = net.recv(first);
    assert_eq!(disconnect_code(&old), Some(ReasonCode::SessionTakenOver));
    assert!(
        acks(&old).is_empty(),
        "no SUBACK on the old connection: {old:?}"
    );
    assert_eq!(net.cores[0].pending_barriers_count(), 0);
    net.release_mesh();
    assert!(acks(&net.recv(second)).is_empty());
    // The subscription itself was made and survives in the resumed session.
    let p = net.client(V5, &net.id_on(1, "p"));
    net.publish(p, "t/x", QoS::AtMostOnce, b"still");
    assert_eq!(payloads(&net.recv(second)), vec!["still"]);
}

#[test]
fn retained_puback_waits_for_the_owner_to_store_it() {
    let mut net = Net::new(3);
    let p = net.client(V5, &net.id_on(0, "p"));
    let late = net.client(V5, &net.id_on(1, "late"));
    let topic = topic_owned_by(2, 3, "state");
    net.hold_mesh = true;
    net.send(p, &retained_publish(&topic, QoS::AtLeastOnce, 7, b"v1"));
    assert!(
        acks(&net.recv(p)).is_empty(),
        "no PUBACK before the owner stored it"
    );
    assert_eq!(
        net.queued_mesh(),
        vec![
            (0, 2, "RetainedSet".to_string()),
            (0, 2, "Barrier".to_string())
        ]
    );
    assert_eq!(net.cores[2].retained_count(), 0);
    net.deliver_mesh_all(|_, _, _| true);
    assert_eq!(net.cores[2].retained_count(), 1, "stored before the PUBACK");
    let got = net.recv(p);
    assert_eq!(acks(&got), vec![("PUBACK", pid(7))]);
    // A subscriber on a third shard whose query reaches the owner first still finds it.
    net.send(
        late,
        &subscribe(1, &[(&topic, options(QoS::AtLeastOnce))], None),
    );
    net.deliver_mesh_all(|from, _, _| from == 1);
    net.release_mesh();
    let got = net.recv(late);
    assert!(is_suback(&got[0], 1));
    assert_eq!(payloads(&got), vec!["v1"]);
}

#[test]
fn retained_pubrec_waits_for_the_owner_too() {
    let mut net = Net::new(2);
    let p = net.client(V4, &net.id_on(0, "p"));
    let topic = topic_owned_by(1, 2, "q2");
    net.hold_mesh = true;
    net.send(p, &retained_publish(&topic, QoS::ExactlyOnce, 9, b"v"));
    assert!(net.recv(p).is_empty());
    net.release_mesh();
    assert_eq!(acks(&net.recv(p)), vec![("PUBREC", pid(9))]);
    assert_eq!(net.cores[1].retained_count(), 1);
    net.send(p, &Packet::PubRel(ack(pid(9))));
    assert_eq!(acks(&net.recv(p)), vec![("PUBCOMP", pid(9))]);
}

#[test]
fn nothing_is_held_without_another_shard_involved() {
    // One shard: no other shard to wait for.
    let mut net = Net::new(1);
    let c = net.client(V5, "solo");
    net.hold_mesh = true;
    let got = net.subscribe(c, "a/#", QoS::AtLeastOnce);
    assert!(is_suback(&got[0], 1));
    net.send(c, &retained_publish("a/b", QoS::AtLeastOnce, 2, b"r"));
    assert_eq!(acks(&net.recv(c)), vec![("PUBACK", pid(2))]);
    assert!(net.queued_mesh().is_empty());
    assert_eq!(net.cores[0].stats().barriers_started_count, 0);

    // Several shards, but no route change (a second subscriber of a routed filter) and a
    // retained topic owned by the publisher's own shard.
    let mut net = Net::new(2);
    let a = net.client(V5, &net.id_on(0, "a"));
    let b = net.client(V5, &net.id_on(0, "b"));
    assert!(is_suback(&net.subscribe(a, "s/#", QoS::AtMostOnce)[0], 1));
    net.hold_mesh = true;
    assert!(is_suback(&net.subscribe(b, "s/#", QoS::AtMostOnce)[0], 1));
    let own = topic_owned_by(0, 2, "own");
    net.send(b, &retained_publish(&own, QoS::AtLeastOnce, 3, b"r"));
    assert_eq!(acks(&net.recv(b)), vec![("PUBACK", pid(3))]);
    assert!(net.queued_mesh().iter().all(|m| m.2 != "Barrier"));
}

#[test]
fn a_client_holding_too_many_replies_is_disconnected() {
    let mut net = Net::new(2);
    let c = net.client(V5, &net.id_on(0, "greedy"));
    net.hold_mesh = true;
    net.send(
        c,
        &subscribe(1, &[("held/#", options(QoS::AtMostOnce))], None),
    );
    // A client that ignores the packet id space queues UNSUBSCRIBEs behind the held SUBACK.
    let mut bytes = bytes::BytesMut::new();
    for n in 0..u16::MAX {
        unsubscribe(n.max(1), &["none"])
            .encode(V5, &mut bytes)
            .expect("encodes");
    }
    net.send_raw(c, &bytes);
    assert!(net.is_closed(c));
    let got = net.recv(c);
    assert_eq!(disconnect_code(&got), Some(ReasonCode::QuotaExceeded));
    assert!(acks(&got).is_empty());
    assert_eq!(net.cores[0].stats().held_replies_refused_count, 1);
    assert_eq!(net.cores[0].held_replies_count(), 0);
    assert_eq!(net.cores[0].pending_barriers_count(), 0);
}

#[test]
fn deliveries_written_while_a_suback_is_held_leave_after_it() {
    let mut net = Net::new(2);
    let sub = net.client(V4, &net.id_on(0, "sub"));
    let local = net.client(V4, &net.id_on(0, "local"));
    net.hold_mesh = true;
    net.send(
        sub,
        &subscribe(1, &[("d/#", options(QoS::AtLeastOnce))], None),
    );
    // The local trie routes to the new subscription at once; the PUBLISH waits its turn.
    net.publish(local, "d/1", QoS::AtLeastOnce, b"early");
    assert!(
        net.recv(sub).is_empty(),
        "nothing overtakes the held SUBACK"
    );
    net.release_mesh();
    let got = net.recv(sub);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(is_suback(&got[0], 1), "{got:?}");
    assert_eq!(payloads(&got), vec!["early"]);
    // And the flow goes on normally afterwards.
    net.publish(local, "d/2", QoS::AtMostOnce, b"later");
    assert_eq!(payloads(&net.recv(sub)), vec!["later"]);
}
