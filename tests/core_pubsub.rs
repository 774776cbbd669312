//! SUBSCRIBE/PUBLISH across shards: QoS flows, routing and route broadcasts, overlapping
//! subscriptions, `$` topics, No Local, Retain As Published, persistent sessions, retained
//! messages, wills and shared subscriptions.

mod core_harness;

use std::collections::HashSet;
use std::num::NonZeroU16;
use std::time::Duration;

use core_harness::*;
use culex::protocol::{
    Ack, Packet, PublishProperties, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
    UserProperty,
};

/// A subscriber on shard 1 and a publisher on shard 0 of a two-shard broker.
fn pair(net: &mut Net, version: core_harness::Version) -> (Sock, Sock) {
    let sub_id = net.id_on(1, "sub");
    let pub_id = net.id_on(0, "pub");
    let sub = net.client(version, &sub_id);
    let publisher = net.client(version, &pub_id);
    assert_eq!((net.shard_of(sub), net.shard_of(publisher)), (1, 0));
    (sub, publisher)
}

#[test]
fn qos0_crosses_shards_with_one_copy_per_interested_shard() {
    let mut net = Net::new(3);
    let a = net.client(V4, &net.id_on(1, "a"));
    let b = net.client(V4, &net.id_on(1, "b"));
    let c = net.client(V4, &net.id_on(2, "c"));
    let p = net.client(V4, &net.id_on(0, "p"));
    for s in [a, b, c] {
        let suback = net.subscribe(s, "room/+/temp", QoS::AtMostOnce);
        assert!(
            matches!(&suback[..], [Packet::SubAck(ack)] if ack.reason_codes == [ReasonCode::Success])
        );
    }
    let before = net.mesh_count("Publish");
    net.publish(p, "room/1/temp", QoS::AtMostOnce, b"21.5");
    assert_eq!(
        net.mesh_count("Publish") - before,
        2,
        "one copy to shard 1, one to shard 2"
    );
    for s in [a, b, c] {
        let got = net.recv(s);
        assert_eq!(payloads(&got), vec!["21.5"]);
        assert_eq!(publishes(&got)[0].qos, QoS::AtMostOnce);
    }
    net.publish(p, "room/1/humidity", QoS::AtMostOnce, b"x");
    assert!(net.recv(a).is_empty());
}

#[test]
fn route_broadcasts_only_on_zero_to_one_and_back() {
    let mut net = Net::new(2);
    let a = net.client(V4, &net.id_on(1, "a"));
    let b = net.client(V4, &net.id_on(1, "b"));
    let p = net.client(V4, &net.id_on(0, "p"));
    net.subscribe(a, "x/#", QoS::AtMostOnce);
    net.subscribe(b, "x/#", QoS::AtMostOnce);
    assert_eq!(net.mesh_count("Route"), 1);
    net.send(a, &unsubscribe(2, &["x/#"]));
    assert_eq!(net.mesh_count("Route"), 1, "b still subscribes");
    net.send(b, &unsubscribe(2, &["x/#"]));
    assert_eq!(net.mesh_count("Route"), 2);
    let before = net.mesh_count("Publish");
    net.publish(p, "x/y", QoS::AtMostOnce, b"nobody");
    assert_eq!(net.mesh_count("Publish"), before, "no shard cares any more");
    assert!(net.recv(a).iter().all(|p| !matches!(p, Packet::Publish(_))));
}

#[test]
fn unsuback_reports_missing_subscriptions_in_v5() {
    let mut net = Net::new(1);
    let s = net.client(V5, "u");
    net.subscribe(s, "a", QoS::AtMostOnce);
    net.send(s, &unsubscribe(3, &["a", "b"]));
    match &net.recv(s)[..] {
        [Packet::UnsubAck(ack)] => assert_eq!(
            ack.reason_codes,
            vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn qos1_both_directions_and_downgrade_to_the_subscription() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V4);
    net.subscribe(sub, "q/1", QoS::AtLeastOnce);
    net.subscribe(sub, "q/0", QoS::AtMostOnce);
    net.send(
        p,
        &Packet::Publish(publish("q/1", QoS::ExactlyOnce, Some(pid(7)), b"two")),
    );
    assert!(matches!(&net.recv(p)[..], [Packet::PubRec(a)] if a.packet_id == pid(7)));
    net.send(p, &Packet::PubRel(ack(pid(7))));
    assert!(matches!(&net.recv(p)[..], [Packet::PubComp(a)] if a.packet_id == pid(7)));
    net.send(
        p,
        &Packet::Publish(publish("q/0", QoS::AtLeastOnce, Some(pid(8)), b"one")),
    );
    assert!(matches!(&net.recv(p)[..], [Packet::PubAck(a)] if a.packet_id == pid(8)));
    let got = net.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].qos, got[1].qos),
        (QoS::AtLeastOnce, QoS::AtMostOnce)
    );
    assert!(got[0].packet_id.is_some() && got[1].packet_id.is_none());
    let id = got[0].packet_id.expect("QoS 1 has an id");
    net.send(sub, &Packet::PubAck(ack(id)));
    assert_eq!(net.cores[1].stats().messages_sent_count, 2);
}

#[test]
fn qos2_inbound_is_routed_exactly_once() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V5);
    net.subscribe(sub, "once", QoS::ExactlyOnce);
    let mut first = publish("once", QoS::ExactlyOnce, Some(pid(5)), b"m");
    net.send(p, &Packet::Publish(first.clone()));
    first.dup = true;
    net.send(p, &Packet::Publish(first.clone()));
    let acks = net.recv(p);
    assert_eq!(acks.len(), 2);
    assert!(acks
        .iter()
        .all(|a| matches!(a, Packet::PubRec(a) if a.packet_id == pid(5))));
    assert_eq!(
        payloads(&net.recv(sub)).len(),
        1,
        "the re-send is not routed again"
    );
    net.send(p, &Packet::PubRel(ack(pid(5))));
    assert!(
        matches!(&net.recv(p)[..], [Packet::PubComp(a)] if a.reason_code == ReasonCode::Success)
    );
    // After PUBREL the id starts a new message.
    first.dup = false;
    net.send(p, &Packet::Publish(first));
    assert_eq!(payloads(&net.recv(sub)).len(), 1);
    // PUBREL for an unknown id: PUBCOMP 0x92.
    net.send(p, &Packet::PubRel(ack(pid(99))));
    let got = net.recv(p);
    assert!(got.iter().any(
        |a| matches!(a, Packet::PubComp(a) if a.reason_code == ReasonCode::PacketIdentifierNotFound)
    ));
}

#[test]
fn v5_ack_says_when_nobody_subscribes() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V5);
    net.send(
        p,
        &Packet::Publish(publish("void", QoS::AtLeastOnce, Some(pid(1)), b"x")),
    );
    assert!(
        matches!(&net.recv(p)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NoMatchingSubscribers)
    );
    net.subscribe(sub, "void", QoS::AtMostOnce);
    net.send(
        p,
        &Packet::Publish(publish("void", QoS::ExactlyOnce, Some(pid(2)), b"x")),
    );
    assert!(
        matches!(&net.recv(p)[..], [Packet::PubRec(a)] if a.reason_code == ReasonCode::Success)
    );
}

#[test]
fn qos2_outbound_flow() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V4);
    net.subscribe(sub, "two", QoS::ExactlyOnce);
    net.publish(p, "two", QoS::ExactlyOnce, b"x");
    let got = net.recv(sub);
    let id = publishes(&got)[0].packet_id.expect("id");
    assert_eq!(publishes(&got)[0].qos, QoS::ExactlyOnce);
    net.send(sub, &Packet::PubRec(ack(id)));
    assert!(matches!(&net.recv(sub)[..], [Packet::PubRel(a)] if a.packet_id == id));
    net.send(sub, &Packet::PubComp(ack(id)));
    assert!(net.recv(sub).is_empty());
}

#[test]
fn overlapping_subscriptions_give_one_copy_at_the_highest_qos_with_every_id() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V5);
    net.send(
        sub,
        &subscribe(1, &[("a/+", options(QoS::AtMostOnce))], Some(1)),
    );
    net.send(
        sub,
        &subscribe(2, &[("a/#", options(QoS::AtLeastOnce))], Some(2)),
    );
    net.send(
        sub,
        &subscribe(3, &[("a/b", options(QoS::AtMostOnce))], None),
    );
    net.recv(sub);
    net.publish(p, "a/b", QoS::ExactlyOnce, b"once");
    let got = net.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    let ids: HashSet<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, HashSet::from([1, 2]));
}

#[test]
fn dollar_topics_are_not_matched_by_first_level_wildcards() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V4);
    net.subscribe(sub, "#", QoS::AtMostOnce);
    net.subscribe(sub, "+/info", QoS::AtMostOnce);
    net.publish(p, "$SYS/info", QoS::AtMostOnce, b"hidden");
    assert!(net.recv(sub).is_empty());
    net.subscribe(sub, "$SYS/#", QoS::AtMostOnce);
    net.publish(p, "$SYS/info", QoS::AtMostOnce, b"seen");
    assert_eq!(payloads(&net.recv(sub)), vec!["seen"]);
}

#[test]
fn no_local_skips_the_publisher_only() {
    let mut net = Net::new(1);
    let me = net.client(V5, "me");
    let other = net.client(V5, "other");
    let no_local = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtMostOnce)
    };
    net.send(me, &subscribe(1, &[("chat", no_local)], None));
    net.subscribe(other, "chat", QoS::AtMostOnce);
    net.recv(me);
    net.publish(me, "chat", QoS::AtMostOnce, b"hi");
    assert!(net.recv(me).is_empty());
    assert_eq!(payloads(&net.recv(other)), vec!["hi"]);
    net.publish(other, "chat", QoS::AtMostOnce, b"yo");
    assert_eq!(payloads(&net.recv(me)), vec!["yo"]);
}

#[test]
fn no_local_does_not_confuse_clients_of_different_shards() {
    // The first session on each shard gets the same shard-local key.
    let mut net = Net::new(2);
    let sub = net.client(V5, &net.id_on(1, "first-on-1"));
    let p = net.client(V5, &net.id_on(0, "first-on-0"));
    let no_local = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtMostOnce)
    };
    net.send(sub, &subscribe(1, &[("nl", no_local)], None));
    net.recv(sub);
    net.publish(p, "nl", QoS::AtMostOnce, b"from another client");
    assert_eq!(payloads(&net.recv(sub)), vec!["from another client"]);
}

#[test]
fn retain_flag_on_live_messages_follows_retain_as_published() {
    let mut net = Net::new(2);
    let rap = net.client(V5, &net.id_on(1, "rap"));
    let plain = net.client(V5, &net.id_on(1, "plain"));
    let v4 = net.client(V4, &net.id_on(1, "v4"));
    let p = net.client(V5, &net.id_on(0, "p"));
    let keep = SubscriptionOptions {
        retain_as_published: true,
        ..options(QoS::AtMostOnce)
    };
    net.send(rap, &subscribe(1, &[("r", keep)], None));
    net.recv(rap);
    net.subscribe(plain, "r", QoS::AtMostOnce);
    net.subscribe(v4, "r", QoS::AtMostOnce);
    let mut msg = publish("r", QoS::AtMostOnce, None, b"v");
    msg.retain = true;
    net.send(p, &Packet::Publish(msg));
    assert!(publishes(&net.recv(rap))[0].retain);
    assert!(!publishes(&net.recv(plain))[0].retain);
    assert!(
        !publishes(&net.recv(v4))[0].retain,
        "3.1.1: 0 for an established subscription"
    );
}

#[test]
fn v5_properties_are_forwarded_unchanged() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V5);
    net.subscribe(sub, "rpc", QoS::AtMostOnce);
    let mut msg = publish("rpc", QoS::AtMostOnce, None, b"{}");
    msg.properties = PublishProperties {
        payload_format_indicator: Some(true),
        content_type: Some("application/json".into()),
        response_topic: Some(culex::protocol::TopicName::parse("rpc/reply").expect("valid")),
        correlation_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
        user_properties: vec![UserProperty {
            name: "k".into(),
            value: "v".into(),
        }],
        ..PublishProperties::default()
    }
    .into();
    let sent = msg.properties.clone();
    net.send(p, &Packet::Publish(msg));
    let got = net.recv(sub);
    assert_eq!(publishes(&got)[0].properties, sent);
}

#[test]
fn persistent_session_queues_qos1_while_offline_and_resends_unacked_with_dup() {
    let mut net = Net::new(2);
    let id = net.id_on(1, "durable");
    let p = net.client(V4, &net.id_on(0, "p"));
    let (sub, _) = net.connect_on(0, connect(V4, &id, false));
    net.subscribe(sub, "d", QoS::AtLeastOnce);
    net.publish(p, "d", QoS::AtLeastOnce, b"unacked");
    let first = net.recv(sub);
    let first_id = publishes(&first)[0].packet_id;
    net.lose(sub);
    net.publish(p, "d", QoS::AtLeastOnce, b"queued");
    net.publish(p, "d", QoS::AtMostOnce, b"qos0 dropped");
    assert_eq!(net.cores[1].stats().qos0_dropped_offline_count, 1);
    let (sub, connack) = net.connect_on(0, connect(V4, &id, false));
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert!(connack.session_present);
    let got = net.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0].payload[..], b"unacked");
    assert!(got[0].dup, "a re-sent PUBLISH has DUP");
    assert_eq!(got[0].packet_id, first_id);
    assert_eq!(&got[1].payload[..], b"queued");
    assert!(!got[1].dup);
}

#[test]
fn released_qos2_is_resent_as_pubrel_after_reconnect() {
    let mut net = Net::new(1);
    let p = net.client(V4, "p");
    let (sub, _) = net.connect_on(0, connect(V4, "rel", false));
    net.subscribe(sub, "t", QoS::ExactlyOnce);
    net.publish(p, "t", QoS::ExactlyOnce, b"x");
    let id = publishes(&net.recv(sub))[0].packet_id.expect("id");
    net.send(sub, &Packet::PubRec(ack(id)));
    net.recv(sub);
    net.lose(sub);
    let (sub, _) = net.connect_on(0, connect(V4, "rel", false));
    assert_eq!(net.recv(sub), vec![Packet::PubRel(Ack::success(id))]);
}

#[test]
fn v5_session_expiry_ends_the_session_and_is_capped() {
    let limits = culex::limits::Limits {
        session_expiry_max_s: 100,
        ..Default::default()
    };
    let mut net = Net::with_limits(1, limits);
    let mut c = connect(V5, "exp", true);
    c.properties.session_expiry_interval_s = Some(1000);
    let (sock, connack) = net.connect_on(0, c);
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert_eq!(connack.properties.session_expiry_interval_s, Some(100));
    net.lose(sock);
    net.advance(Duration::from_secs(99));
    assert_eq!(net.cores[0].session_count(), 1);
    net.advance(Duration::from_secs(1));
    assert_eq!(net.cores[0].session_count(), 0);
    assert_eq!(net.cores[0].stats().sessions_expired_count, 1);
    let mut again = connect(V5, "exp", false);
    again.properties.session_expiry_interval_s = Some(10);
    let (_, connack) = net.connect_on(0, again);
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert!(!connack.session_present);
}

#[test]
fn retained_set_on_one_shard_is_delivered_on_subscribe_from_another() {
    let mut net = Net::new(3);
    let p = net.client(V4, &net.id_on(0, "p"));
    for (topic, payload) in [
        ("home/a", &b"A"[..]),
        ("home/b", b"B"),
        ("home/c", b"C"),
        ("other", b"O"),
    ] {
        let mut m = publish(topic, QoS::AtLeastOnce, Some(pid(1)), b"");
        m.payload = bytes::Bytes::copy_from_slice(payload);
        m.retain = true;
        net.send(p, &Packet::Publish(m));
    }
    let total: usize = net.cores.iter().map(|c| c.retained_count()).sum();
    assert_eq!(total, 4, "each topic stored once, on its owner");
    let s = net.client(V4, &net.id_on(2, "s"));
    // Exact filter: asked of the owner only.
    let got = net.subscribe(s, "home/b", QoS::AtLeastOnce);
    assert!(matches!(got[0], Packet::SubAck(_)), "SUBACK comes first");
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert!(got[0].retain, "retained-on-subscribe carries RETAIN");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    // Wildcard: gathered from every shard.
    let mut got = payloads(&net.subscribe(s, "home/#", QoS::AtMostOnce));
    got.sort();
    assert_eq!(got, vec!["A", "B", "C"]);
    // Clear by an empty payload.
    let mut clear = publish("home/a", QoS::AtMostOnce, None, b"");
    clear.retain = true;
    net.send(p, &Packet::Publish(clear));
    let total: usize = net.cores.iter().map(|c| c.retained_count()).sum();
    assert_eq!(total, 3);
}

#[test]
fn retain_handling_1_and_2() {
    let mut net = Net::new(2);
    let p = net.client(V5, &net.id_on(0, "p"));
    let mut m = publish("rh", QoS::AtMostOnce, None, b"kept");
    m.retain = true;
    net.send(p, &Packet::Publish(m));
    let s = net.client(V5, &net.id_on(1, "s"));
    let if_new = SubscriptionOptions {
        retain_handling: RetainHandling::SendAtSubscribeIfNew,
        ..options(QoS::AtMostOnce)
    };
    net.send(s, &subscribe(1, &[("rh", if_new)], None));
    assert_eq!(payloads(&net.recv(s)), vec!["kept"]);
    net.send(s, &subscribe(2, &[("rh", if_new)], None));
    assert!(
        payloads(&net.recv(s)).is_empty(),
        "not for a replaced subscription"
    );
    let never = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..options(QoS::AtMostOnce)
    };
    net.send(s, &subscribe(3, &[("+", never)], None));
    assert!(payloads(&net.recv(s)).is_empty());
}

#[test]
fn will_is_published_on_abnormal_end_only() {
    let mut net = Net::new(2);
    let watcher = net.client(V4, &net.id_on(0, "w"));
    net.subscribe(watcher, "wills/#", QoS::AtLeastOnce);
    let id = net.id_on(1, "dies");
    let mut c = connect(V4, &id, true);
    c.will = Some(will("wills/dies", b"gone", QoS::AtLeastOnce, false));
    let (sock, _) = net.connect_on(0, c.clone());
    net.lose(sock);
    assert_eq!(payloads(&net.recv(watcher)), vec!["gone"]);
    let (sock, _) = net.connect_on(0, c.clone());
    net.send(sock, &disconnect(ReasonCode::Success));
    assert!(
        payloads(&net.recv(watcher)).is_empty(),
        "normal DISCONNECT drops the will"
    );
    // Keepalive timeout sends it.
    c.keep_alive_s = 10;
    let (_sock, _) = net.connect_on(0, c);
    net.advance(Duration::from_secs(15));
    assert_eq!(payloads(&net.recv(watcher)), vec!["gone"]);
    assert_eq!(net.cores[1].stats().wills_published_count, 2);
}

#[test]
fn v5_disconnect_with_will_and_protocol_error_send_the_will() {
    let mut net = Net::new(1);
    let watcher = net.client(V5, "w");
    net.subscribe(watcher, "lw", QoS::AtMostOnce);
    let mut c = connect(V5, "x", true);
    c.will = Some(will("lw", b"w", QoS::AtMostOnce, false));
    let (sock, _) = net.connect_on(0, c.clone());
    net.send(sock, &disconnect(ReasonCode::DisconnectWithWillMessage));
    assert_eq!(payloads(&net.recv(watcher)), vec!["w"]);
    let (sock, _) = net.connect_on(0, c);
    net.send(sock, &Packet::PingResp); // only servers send PINGRESP
    assert!(net.is_closed(sock));
    assert_eq!(payloads(&net.recv(watcher)), vec!["w"]);
}

#[test]
fn will_delay_waits_and_is_cancelled_by_resuming_the_session() {
    let mut net = Net::new(2);
    let watcher = net.client(V5, &net.id_on(0, "w"));
    net.subscribe(watcher, "lw", QoS::AtMostOnce);
    let id = net.id_on(1, "delayed");
    let mut c = connect(V5, &id, true);
    c.properties.session_expiry_interval_s = Some(60);
    let mut w = will("lw", b"late", QoS::AtMostOnce, false);
    w.properties.will_delay_interval_s = Some(5);
    c.will = Some(w);
    let (sock, _) = net.connect_on(1, c.clone());
    net.lose(sock);
    net.advance(Duration::from_secs(4));
    assert!(net.recv(watcher).is_empty());
    net.advance(Duration::from_secs(1));
    assert_eq!(payloads(&net.recv(watcher)), vec!["late"]);

    let (sock, _) = net.connect_on(1, c.clone());
    net.lose(sock);
    net.advance(Duration::from_secs(2));
    let mut resume = c;
    resume.clean_start = false;
    resume.will = None;
    let (_sock, connack) = net.connect_on(1, resume);
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert!(connack.session_present);
    net.advance(Duration::from_secs(10));
    assert!(net.recv(watcher).is_empty(), "resumed in time: no will");
}

#[test]
fn takeover_publishes_the_old_connections_will() {
    let mut net = Net::new(2);
    let watcher = net.client(V4, &net.id_on(0, "w"));
    net.subscribe(watcher, "lw", QoS::AtMostOnce);
    let id = net.id_on(1, "twin");
    let mut c = connect(V4, &id, true);
    c.will = Some(will("lw", b"old", QoS::AtMostOnce, false));
    net.connect_on(0, c);
    net.connect_on(1, connect(V4, &id, true));
    assert_eq!(payloads(&net.recv(watcher)), vec!["old"]);
}

#[test]
fn v5_takeover_resuming_the_session_holds_a_delayed_will_back() {
    let mut net = Net::new(2);
    let watcher = net.client(V4, &net.id_on(0, "w"));
    net.subscribe(watcher, "lw", QoS::AtMostOnce);
    let id = net.id_on(1, "twin5");
    let mut c = connect(V5, &id, false);
    let mut w = will("lw", b"old", QoS::AtMostOnce, false);
    w.properties.will_delay_interval_s = Some(5);
    c.will = Some(w);
    net.connect_on(0, c);
    let (_new, connack) = net.connect_on(0, connect(V5, &id, false));
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert!(connack.session_present);
    net.advance(Duration::from_secs(6));
    assert!(
        net.recv(watcher).is_empty(),
        "resumed: the delayed will is cancelled"
    );
}

#[test]
fn will_retain_is_stored() {
    let mut net = Net::new(2);
    let mut c = connect(V4, &net.id_on(1, "r"), true);
    c.will = Some(will("status/r", b"offline", QoS::AtMostOnce, true));
    let (sock, _) = net.connect_on(0, c);
    net.lose(sock);
    let late = net.client(V4, &net.id_on(0, "late"));
    let got = net.subscribe(late, "status/+", QoS::AtMostOnce);
    assert_eq!(payloads(&got), vec!["offline"]);
    assert!(publishes(&got)[0].retain);
}

#[test]
fn shared_subscription_gives_each_message_to_exactly_one_member_across_shards() {
    let mut net = Net::new(3);
    let members: Vec<Sock> = (0..3)
        .map(|shard| {
            let id = net.id_on(shard, "m");
            net.client(V5, &id)
        })
        .collect();
    for m in &members {
        net.subscribe(*m, "$share/g/jobs/+", QoS::AtLeastOnce);
    }
    let plain = net.client(V5, &net.id_on(1, "plain"));
    net.subscribe(plain, "jobs/+", QoS::AtMostOnce);
    let p = net.client(V5, &net.id_on(0, "p"));
    for _ in 0..30 {
        net.publish(p, "jobs/x", QoS::AtLeastOnce, b"job");
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|m| payloads(&net.recv(*m)).len())
        .collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        30,
        "each message to exactly one member: {counts:?}"
    );
    assert!(
        counts.iter().filter(|c| **c > 0).count() >= 2,
        "spread over members: {counts:?}"
    );
    assert_eq!(
        payloads(&net.recv(plain)).len(),
        30,
        "plain subscribers get every message"
    );
}

#[test]
fn shared_subscription_does_not_get_retained_messages() {
    let mut net = Net::new(1);
    let p = net.client(V5, "p");
    let mut m = publish("s", QoS::AtMostOnce, None, b"r");
    m.retain = true;
    net.send(p, &Packet::Publish(m));
    let s = net.client(V5, "s");
    assert!(payloads(&net.subscribe(s, "$share/g/s", QoS::AtMostOnce)).is_empty());
}

#[test]
fn topic_alias_from_the_client() {
    let mut net = Net::new(2);
    let (sub, p) = pair(&mut net, V5);
    net.subscribe(sub, "long/topic/name", QoS::AtMostOnce);
    let mut set = publish("long/topic/name", QoS::AtMostOnce, None, b"1");
    set.properties.make_mut().topic_alias = NonZeroU16::new(3);
    net.send(p, &Packet::Publish(set));
    let mut by_alias = publish("long/topic/name", QoS::AtMostOnce, None, b"2");
    by_alias.topic = culex::protocol::TopicName::empty_for_alias();
    by_alias.properties.make_mut().topic_alias = NonZeroU16::new(3);
    net.send(p, &Packet::Publish(by_alias));
    let got = net.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.topic.as_str() == "long/topic/name"));
    assert!(got.iter().all(|m| m.properties.topic_alias.is_none()));
    // Alias 11 is above the maximum of 10.
    let mut bad = publish("x", QoS::AtMostOnce, None, b"");
    bad.properties.make_mut().topic_alias = NonZeroU16::new(11);
    net.send(p, &Packet::Publish(bad));
    assert_eq!(
        disconnect_code(&net.recv(p)),
        Some(ReasonCode::TopicAliasInvalid)
    );
    assert!(net.is_closed(p));
}

#[test]
fn unknown_topic_alias_is_a_protocol_error() {
    let mut net = Net::new(1);
    let p = net.client(V5, "p");
    let mut m = publish("x", QoS::AtMostOnce, None, b"");
    m.topic = culex::protocol::TopicName::empty_for_alias();
    m.properties.make_mut().topic_alias = NonZeroU16::new(1);
    net.send(p, &Packet::Publish(m));
    assert_eq!(
        disconnect_code(&net.recv(p)),
        Some(ReasonCode::ProtocolError)
    );
}

#[test]
fn message_expiry_counts_down_and_expired_messages_are_not_delivered() {
    let mut net = Net::new(1);
    let p = net.client(V5, "p");
    let mut c = connect(V5, "offline", true);
    c.properties.session_expiry_interval_s = Some(300);
    let (sub, _) = net.connect_on(0, c.clone());
    net.subscribe(sub, "e", QoS::AtLeastOnce);
    net.lose(sub);
    for (payload, expiry) in [(&b"short"[..], 2u32), (b"long", 10)] {
        let mut m = publish("e", QoS::AtLeastOnce, Some(pid(1)), b"");
        m.payload = bytes::Bytes::copy_from_slice(payload);
        m.properties.make_mut().message_expiry_interval_s = Some(expiry);
        net.send(p, &Packet::Publish(m));
    }
    net.advance(Duration::from_secs(4));
    c.clean_start = false;
    let (sub, _) = net.connect_on(0, c);
    let got = net.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"long");
    assert_eq!(got[0].properties.message_expiry_interval_s, Some(6));
    assert_eq!(net.cores[0].stats().messages_expired_count, 1);
}

#[test]
fn an_unacknowledged_message_that_expired_offline_frees_its_slot() {
    let mut net = Net::new(1);
    let mut c = connect(V5, "slow", true);
    c.properties.session_expiry_interval_s = Some(600);
    c.properties.receive_maximum = NonZeroU16::new(1);
    let (sub, _) = net.connect_on(0, c.clone());
    net.subscribe(sub, "e", QoS::AtLeastOnce);
    let p = net.client(V5, "p");
    let mut m = publish("e", QoS::AtLeastOnce, Some(pid(1)), b"short-lived");
    m.properties.make_mut().message_expiry_interval_s = Some(2);
    net.send(p, &Packet::Publish(m));
    assert_eq!(payloads(&net.recv(sub)), vec!["short-lived"]);
    net.lose(sub); // never acknowledged
    net.publish(p, "e", QoS::AtLeastOnce, b"next");
    net.advance(Duration::from_secs(3));
    c.clean_start = false;
    let (sub, _) = net.connect_on(0, c);
    assert_eq!(
        payloads(&net.recv(sub)),
        vec!["next"],
        "the window of 1 is free for it"
    );
}

#[test]
fn client_receive_maximum_bounds_the_inflight_window() {
    let mut net = Net::new(2);
    let sub_id = net.id_on(1, "slowack");
    let mut c = connect(V5, &sub_id, true);
    c.properties.receive_maximum = NonZeroU16::new(2);
    let (sub, _) = net.connect_on(0, c);
    let p = net.client(V5, &net.id_on(0, "p"));
    net.subscribe(sub, "w", QoS::AtLeastOnce);
    for _ in 0..5 {
        net.publish(p, "w", QoS::AtLeastOnce, b"m");
    }
    let got = net.recv(sub);
    let ids: Vec<_> = publishes(&got).iter().filter_map(|m| m.packet_id).collect();
    assert_eq!(ids.len(), 2, "only the window is sent");
    net.send(sub, &Packet::PubAck(ack(ids[0])));
    assert_eq!(publishes(&net.recv(sub)).len(), 1, "one ack frees one slot");
}

#[test]
fn inbound_receive_maximum_exceeded_disconnects_with_0x93() {
    let limits = culex::limits::Limits {
        receive_maximum: 2,
        ..Default::default()
    };
    let mut net = Net::with_limits(1, limits);
    let (p, connack) = net.connect_on(0, connect(V5, "flood", true));
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert_eq!(connack.properties.receive_maximum, NonZeroU16::new(2));
    for id in 1..=3 {
        net.send(
            p,
            &Packet::Publish(publish("f", QoS::ExactlyOnce, Some(pid(id)), b"x")),
        );
    }
    assert_eq!(
        disconnect_code(&net.recv(p)),
        Some(ReasonCode::ReceiveMaximumExceeded)
    );
    assert_eq!(net.cores[0].stats().receive_maximum_exceeded_count, 1);
}

#[test]
fn deliveries_above_the_clients_maximum_packet_size_are_dropped_and_counted() {
    let mut net = Net::new(1);
    let mut c = connect(V5, "small", true);
    c.properties.maximum_packet_size_bytes = std::num::NonZeroU32::new(32);
    let (sub, _) = net.connect_on(0, c);
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    let p = net.client(V5, "p");
    net.publish(p, "t", QoS::AtLeastOnce, &[b'x'; 64]);
    net.publish(p, "t", QoS::AtLeastOnce, b"fits");
    assert_eq!(payloads(&net.recv(sub)), vec!["fits"]);
    assert_eq!(net.cores[0].stats().packet_too_large_dropped_count, 1);
}

#[test]
fn fan_out_gives_each_subscriber_the_publish_of_its_own_version_and_options() {
    // The fan-out path encodes each form of a message once and copies it per subscriber:
    // every subscriber must still see its own version's bytes, its RETAIN flag, its
    // subscription identifier, the message's properties, and its own Maximum Packet Size.
    let mut net = Net::new(1);
    let v3 = net.client(V3, "v3");
    let v4 = net.client(V4, "v4");
    let v5 = net.client(V5, "v5");
    let rap = net.client(V5, "rap");
    let with_id = net.client(V5, "with-id");
    let mut c = connect(V5, "small", true);
    c.properties.maximum_packet_size_bytes = std::num::NonZeroU32::new(32);
    let (small, _) = net.connect_on(0, c);
    for sub in [v3, v4, v5, small] {
        net.subscribe(sub, "f/t", QoS::AtMostOnce);
    }
    let keep = SubscriptionOptions {
        retain_as_published: true,
        ..options(QoS::AtMostOnce)
    };
    net.send(rap, &subscribe(1, &[("f/+", keep)], None));
    net.send(
        with_id,
        &subscribe(1, &[("f/#", options(QoS::AtMostOnce))], Some(7)),
    );
    net.recv(rap);
    net.recv(with_id);
    let p = net.client(V5, "p");
    let mut msg = publish("f/t", QoS::AtMostOnce, None, &[b'x'; 40]);
    msg.retain = true;
    msg.properties.make_mut().message_expiry_interval_s = Some(60);
    msg.properties.make_mut().content_type = Some("text/plain".into());
    net.send(p, &Packet::Publish(msg.clone()));
    net.send(p, &Packet::Publish(msg));

    for (sub, v5_sub) in [
        (v3, false),
        (v4, false),
        (v5, true),
        (rap, true),
        (with_id, true),
    ] {
        let got = net.recv(sub);
        let got = publishes(&got);
        assert_eq!(got.len(), 2, "{sub:?}");
        for publish in got {
            assert_eq!(publish.topic.as_str(), "f/t");
            assert_eq!(&publish.payload[..], &[b'x'; 40][..]);
            assert_eq!(publish.qos, QoS::AtMostOnce);
            assert_eq!(
                publish.retain,
                sub == rap,
                "RETAIN as this subscriber sees it"
            );
            let props = &publish.properties;
            if v5_sub {
                // Delivered at once: the whole interval is left.
                assert_eq!(props.message_expiry_interval_s, Some(60));
                assert_eq!(props.content_type.as_deref(), Some("text/plain"));
            } else {
                assert_eq!(*props, PublishProperties::default());
            }
            let ids: Vec<u32> = props
                .subscription_identifiers
                .iter()
                .map(|i| i.get())
                .collect();
            let want: &[u32] = if sub == with_id { &[7] } else { &[] };
            assert_eq!(ids, want);
        }
    }
    assert!(publishes(&net.recv(small)).is_empty());
    assert_eq!(net.cores[0].stats().packet_too_large_dropped_count, 2);
}

/// Plays one random sequence of subscribes, unsubscribes, publishes, disconnections and
/// reconnections (persistent sessions, accepted on a random shard) on a broker of
/// `shards` shards; returns what each client received, in order, as (topic, payload, qos).
fn play(shards: u16, seed: u64, steps: usize) -> Vec<Vec<(String, String, QoS)>> {
    const FILTERS: [&str; 7] = ["a/b", "a/+", "a/#", "+/b", "#", "+/+/c", "b/#"];
    const TOPICS: [&str; 5] = ["a/b", "a/c", "b/b", "a/b/c", "$SYS/b"];
    let mut state = seed;
    let mut next = move |n: usize| {
        // xorshift64*: deterministic, good enough to pick among a handful.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    let mut net = Net::new(shards);
    // Persistent sessions, so that going offline queues QoS 1 and coming back resends.
    let session = |i: usize| {
        let version = if i % 2 == 0 { V5 } else { V4 };
        let mut c = connect(version, &format!("c{i}"), false);
        c.properties.session_expiry_interval_s = version.is_v5().then_some(3600);
        c
    };
    let mut clients: Vec<Sock> = (0..6).map(|i| net.connect_on(0, session(i)).0).collect();
    let mut online = vec![true; clients.len()];
    let mut received = vec![Vec::new(); clients.len()];
    let mut packet_id = 1u16;
    for _ in 0..steps {
        let c = next(clients.len());
        let qos = if next(2) == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        packet_id = packet_id % 60_000 + 1;
        let op = next(5);
        if !online[c] || op == 4 {
            if online[c] {
                net.lose(clients[c]);
            } else {
                clients[c] = net.connect_on(next(shards as usize), session(c)).0;
            }
            online[c] = !online[c];
        } else {
            match op {
                0 => net.send(
                    clients[c],
                    &subscribe(packet_id, &[(FILTERS[next(7)], options(qos))], None),
                ),
                1 => net.send(clients[c], &unsubscribe(packet_id, &[FILTERS[next(7)]])),
                _ => {
                    let id = (qos != QoS::AtMostOnce).then(|| pid(packet_id));
                    let payload = format!("m{packet_id}");
                    let mut m = publish(TOPICS[next(5)], qos, id, b"");
                    m.payload = bytes::Bytes::from(payload);
                    net.send(clients[c], &Packet::Publish(m));
                }
            }
        }
        for (i, sock) in clients.iter().enumerate() {
            if !online[i] {
                continue;
            }
            for packet in net.recv(*sock) {
                if let Packet::Publish(m) = packet {
                    if let Some(id) = m.packet_id {
                        net.send(*sock, &Packet::PubAck(ack(id)));
                    }
                    received[i].push((
                        m.topic.to_string(),
                        String::from_utf8_lossy(&m.payload).into_owned(),
                        m.qos,
                    ));
                }
            }
        }
    }
    received
}

#[test]
fn any_number_of_shards_delivers_exactly_what_one_shard_does() {
    for seed in 1..=20u64 {
        let one = play(1, seed * 7919, 150);
        let total: usize = one.iter().map(Vec::len).sum();
        assert!(
            total > 0,
            "seed {seed} delivered nothing: a useless sequence"
        );
        for shards in [2, 3, 5] {
            assert_eq!(
                play(shards, seed * 7919, 150),
                one,
                "seed {seed}, {shards} shards"
            );
        }
    }
}

#[test]
fn a_shared_group_follows_its_members_as_they_leave() {
    let mut net = Net::new(3);
    let a = net.client(V5, &net.id_on(1, "a"));
    let b = net.client(V5, &net.id_on(2, "b"));
    net.subscribe(a, "$share/g/t", QoS::AtMostOnce);
    net.subscribe(b, "$share/g/t", QoS::AtMostOnce);
    let p = net.client(V5, &net.id_on(0, "p"));
    net.send(a, &unsubscribe(5, &["$share/g/t"]));
    net.recv(a);
    for _ in 0..10 {
        net.publish(p, "t", QoS::AtMostOnce, b"m");
    }
    assert!(payloads(&net.recv(a)).is_empty());
    assert_eq!(payloads(&net.recv(b)).len(), 10);
    // The last member's session ends: nobody is left, nothing is undeliverable.
    net.lose(b);
    net.publish(p, "t", QoS::AtMostOnce, b"m");
    let undeliverable: u64 = net
        .cores
        .iter()
        .map(|c| c.stats().shared_undeliverable_count)
        .sum();
    assert_eq!(undeliverable, 0);
}

#[test]
fn inbound_qos2_state_survives_reconnection() {
    let mut net = Net::new(2);
    let sub = net.client(V4, &net.id_on(0, "s"));
    net.subscribe(sub, "x", QoS::ExactlyOnce);
    let id = net.id_on(1, "pub2");
    let (p, _) = net.connect_on(0, connect(V4, &id, false));
    let mut m = publish("x", QoS::ExactlyOnce, Some(pid(5)), b"once");
    net.send(p, &Packet::Publish(m.clone()));
    assert!(matches!(&net.recv(p)[..], [Packet::PubRec(_)]));
    net.lose(p);
    let (p, _) = net.connect_on(1, connect(V4, &id, false));
    m.dup = true;
    net.send(p, &Packet::Publish(m));
    assert!(matches!(&net.recv(p)[..], [Packet::PubRec(_)]));
    net.send(p, &Packet::PubRel(ack(pid(5))));
    assert!(matches!(&net.recv(p)[..], [Packet::PubComp(_)]));
    assert_eq!(
        payloads(&net.recv(sub)),
        vec!["once"],
        "routed once across the reconnect"
    );
}

#[test]
fn an_expired_session_is_not_resumed_even_before_the_sweep() {
    let mut net = Net::new(1);
    let watcher = net.client(V5, "w");
    net.subscribe(watcher, "lw", QoS::AtMostOnce);
    let mut c = connect(V5, "brief", true);
    c.properties.session_expiry_interval_s = Some(5);
    let mut w = will("lw", b"gone", QoS::AtMostOnce, false);
    w.properties.will_delay_interval_s = Some(3);
    c.will = Some(w);
    let (sock, _) = net.connect_on(0, c.clone());
    net.lose(sock);
    // Time passes without a tick.
    net.now += Duration::from_secs(6);
    c.clean_start = false;
    c.will = None;
    let (_sock, connack) = net.connect_on(0, c);
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert!(!connack.session_present, "the session had expired");
    assert_eq!(
        payloads(&net.recv(watcher)),
        vec!["gone"],
        "its will was due"
    );
}

/// The QoS 1 hot path as a busy pair drives it: many PUBLISHes in one read are acknowledged
/// in order (4-byte PUBACKs, and MQTT 5's long form when nobody listens), the subscriber's
/// PUBACKs arrive as one batch of short forms, the window refills from the queue in order,
/// and written buffers are given back and reused.
#[test]
fn a_qos1_stream_in_batches_is_acked_in_order_and_reuses_buffers() {
    for version in [V4, V5] {
        let mut net = Net::new(1);
        let sub = net.client(version, "stream-sub");
        let publisher = net.client(version, "stream-pub");
        net.subscribe(sub, "s/1", QoS::AtLeastOnce);
        // 50 PUBLISHes in one read: more than the window (20), so 30 wait in the queue.
        let mut batch = bytes::BytesMut::new();
        for n in 1..=50u16 {
            Packet::Publish(publish("s/1", QoS::AtLeastOnce, Some(pid(n)), b"payload"))
                .encode(version, &mut batch)
                .expect("encodes");
        }
        // And one nobody subscribed to.
        Packet::Publish(publish("s/none", QoS::AtLeastOnce, Some(pid(51)), b"x"))
            .encode(version, &mut batch)
            .expect("encodes");
        net.send_raw(publisher, &batch);
        let acks = net.recv(publisher);
        let ids: Vec<u16> = acks
            .iter()
            .map(|p| match p {
                Packet::PubAck(a) => a.packet_id.get(),
                other => panic!("expected PUBACK, got {other:?}"),
            })
            .collect();
        assert_eq!(ids, (1..=51).collect::<Vec<_>>(), "{version:?}");
        let last_reason = match &acks[50] {
            Packet::PubAck(a) => a.reason_code,
            _ => unreachable!(),
        };
        let expected = if version == V5 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        assert_eq!(last_reason, expected);

        let mut payloads_seen = 0;
        let mut next_ids = Vec::new();
        for round in 0..3 {
            let got = net.recv(sub);
            let got = publishes(&got);
            assert!(!got.is_empty(), "round {round}: the window refilled");
            let mut acks = bytes::BytesMut::new();
            for p in &got {
                assert_eq!(&p.payload[..], b"payload");
                let id = p.packet_id.expect("QoS 1");
                next_ids.push(id);
                // The short form every client sends: 0x40 0x02 id.
                acks.extend_from_slice(&[0x40, 2]);
                acks.extend_from_slice(&id.get().to_be_bytes());
            }
            payloads_seen += got.len();
            // A PUBACK for an id not in flight changes nothing.
            acks.extend_from_slice(&[0x40, 2, 0xFF, 0xF0]);
            net.send_raw(sub, &acks);
            if payloads_seen == 50 {
                break;
            }
        }
        assert_eq!(payloads_seen, 50, "{version:?}: every message, once");
        let distinct: HashSet<_> = next_ids.iter().collect();
        assert_eq!(distinct.len(), 50, "ids are not reused while in flight");
        assert!(net.recv(sub).is_empty());
        assert!(!net.is_closed(sub) && !net.is_closed(publisher));
        let stats = net.cores[0].stats();
        assert_eq!(stats.messages_sent_count, 50);
        assert!(stats.write_buffers_reused_count > 0, "{stats:?}");
    }
}

/// CONNECT, SUBSCRIBE and QoS 1 PUBLISHes in one read, the last with an MQTT 5 topic alias
/// set and then used: the decode loop learns the session and protocol the CONNECT settled
/// before it handles the next packet of the same read, and hands them to the PUBLISH.
#[test]
fn connect_and_qos1_publishes_in_one_read_are_handled_with_the_new_session() {
    for version in [V4, V5] {
        let mut net = Net::new(1);
        let sock = net.open(0, version);
        let mut batch = bytes::BytesMut::new();
        let mut packets = vec![
            Packet::Connect(Box::new(connect(version, "one-read", true))),
            subscribe(1, &[("r/#", options(QoS::AtLeastOnce))], None),
            Packet::Publish(publish("r/a", QoS::AtLeastOnce, Some(pid(2)), b"first")),
        ];
        if version == V5 {
            let mut aliased = publish("r/b", QoS::AtLeastOnce, Some(pid(3)), b"second");
            aliased.properties.make_mut().topic_alias = NonZeroU16::new(1);
            let mut by_alias = publish("unused", QoS::AtLeastOnce, Some(pid(4)), b"third");
            by_alias.topic = culex::protocol::TopicName::empty_for_alias();
            by_alias.properties.make_mut().topic_alias = NonZeroU16::new(1);
            packets.push(Packet::Publish(aliased));
            packets.push(Packet::Publish(by_alias));
        }
        for packet in &packets {
            packet.encode(version, &mut batch).expect("encodes");
        }
        net.send_raw(sock, &batch);
        let got = net.recv(sock);
        let acks: Vec<u16> = got
            .iter()
            .filter_map(|p| match p {
                Packet::PubAck(a) => {
                    assert_eq!(a.reason_code, ReasonCode::Success, "{version:?}");
                    Some(a.packet_id.get())
                }
                _ => None,
            })
            .collect();
        let delivered: Vec<(String, String)> = publishes(&got)
            .iter()
            .map(|p| {
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                (p.topic.as_str().to_owned(), payload)
            })
            .collect();
        let (want_acks, want): (Vec<u16>, Vec<(&str, &str)>) = if version == V5 {
            (
                vec![2, 3, 4],
                vec![("r/a", "first"), ("r/b", "second"), ("r/b", "third")],
            )
        } else {
            (vec![2], vec![("r/a", "first")])
        };
        assert_eq!(acks, want_acks, "{version:?}");
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(delivered, want, "{version:?}");
        assert_eq!(
            net.cores[0].stats().messages_received_count,
            want_acks.len() as u64
        );
        assert!(matches!(got[0], Packet::ConnAck(_)), "{version:?}");
    }
}

#[test]
fn route_cache_resets_are_counted_in_the_shard_stats() {
    let mut net = Net::new(1);
    let sub = net.client(V4, "sub");
    let publisher = net.client(V4, "pub");
    let suback = net.subscribe(sub, "sensor/#", QoS::AtMostOnce);
    assert!(matches!(&suback[..], [Packet::SubAck(_)]));
    assert_eq!(net.cores[0].stats().route_cache_resets_count, 0);
    // One more distinct topic than the cache holds: the last one starts it over.
    for i in 0..=4096 {
        net.publish(publisher, &format!("sensor/{i}"), QoS::AtMostOnce, b"x");
    }
    assert_eq!(net.recv(sub).len(), 4097, "every publish delivered");
    assert_eq!(net.cores[0].stats().route_cache_resets_count, 1);
}
