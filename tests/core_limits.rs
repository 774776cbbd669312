//! Every `Limits` field the core enforces: the reason code the client sees, the counter that
//! moves, and other clients carrying on unaffected.

mod core_harness;

use core_harness::*;
use culex::limits::Limits;
use culex::protocol::{Packet, QoS, ReasonCode};

fn limits(edit: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    edit(&mut limits);
    limits
}

fn suback_codes(packets: &[Packet]) -> Vec<ReasonCode> {
    match packets {
        [Packet::SubAck(ack), ..] => ack.reason_codes.clone(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn subscriptions_per_client_quota_0x97_in_v5_and_0x80_in_v3() {
    let mut net = Net::with_limits(2, limits(|l| l.max_subscriptions_per_client = 2));
    let s = net.client(V5, &net.id_on(1, "s"));
    net.send(
        s,
        &subscribe(
            1,
            &[
                ("a", options(QoS::AtMostOnce)),
                ("b", options(QoS::AtMostOnce)),
                ("c", options(QoS::AtMostOnce)),
            ],
            None,
        ),
    );
    assert_eq!(
        suback_codes(&net.recv(s)),
        vec![
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded
        ]
    );
    // Re-subscribing to a held filter is a replacement, not a new one.
    assert_eq!(
        suback_codes(&net.subscribe(s, "a", QoS::AtLeastOnce)),
        vec![ReasonCode::GrantedQoS1]
    );
    assert_eq!(net.cores[1].stats().subscriptions_quota_refused_count, 1);

    let v3 = net.client(V4, &net.id_on(1, "v3"));
    net.subscribe(v3, "x", QoS::AtMostOnce);
    net.subscribe(v3, "y", QoS::AtMostOnce);
    net.send(v3, &subscribe(9, &[("z", options(QoS::AtMostOnce))], None));
    // SUBACK, packet id 9, return code 0x80.
    assert_eq!(net.recv_raw(v3), vec![0x90, 0x03, 0x00, 0x09, 0x80]);

    let p = net.client(V4, &net.id_on(0, "p"));
    net.publish(p, "b", QoS::AtMostOnce, b"still subscribed");
    assert_eq!(payloads(&net.recv(s)), vec!["still subscribed"]);
}

#[test]
fn topic_length_and_levels_refuse_filters_with_0x8f_and_names_with_0x90() {
    let mut net = Net::with_limits(
        1,
        limits(|l| {
            l.max_topic_length_bytes = 12;
            l.max_topic_levels = 3;
        }),
    );
    let s = net.client(V5, "s");
    net.send(
        s,
        &subscribe(
            1,
            &[
                ("a/b/c", options(QoS::AtMostOnce)),
                ("a/b/c/d", options(QoS::AtMostOnce)),
                ("abcdefghijklm", options(QoS::AtMostOnce)),
            ],
            None,
        ),
    );
    assert_eq!(
        suback_codes(&net.recv(s)),
        vec![
            ReasonCode::Success,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::TopicFilterInvalid
        ]
    );
    assert_eq!(net.cores[0].stats().topic_limit_refused_count, 2);
    let p = net.client(V5, "p");
    net.publish(p, "a/b/c/d", QoS::AtMostOnce, b"deep");
    assert_eq!(
        disconnect_code(&net.recv(p)),
        Some(ReasonCode::TopicNameInvalid)
    );
    assert!(net.is_closed(p));
    let q = net.client(V5, "q");
    net.publish(q, "a/b/c", QoS::AtMostOnce, b"ok");
    assert_eq!(payloads(&net.recv(s)), vec!["ok"]);
}

#[test]
fn offline_queue_is_bounded_in_messages_and_counted() {
    let mut net = Net::with_limits(2, limits(|l| l.max_queued_messages = 2));
    let id = net.id_on(1, "q");
    let (sub, _) = net.connect_on(1, connect(V4, &id, false));
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    net.lose(sub);
    let p = net.client(V4, &net.id_on(0, "p"));
    for _ in 0..5 {
        net.publish(p, "t", QoS::AtLeastOnce, b"m");
    }
    assert_eq!(net.cores[1].stats().queue_full_dropped_count, 3);
    let (sub, _) = net.connect_on(1, connect(V4, &id, false));
    assert_eq!(payloads(&net.recv(sub)).len(), 2);
}

#[test]
fn offline_queue_is_bounded_in_bytes() {
    let mut net = Net::with_limits(1, limits(|l| l.max_queued_bytes = 10));
    let (sub, _) = net.connect_on(0, connect(V4, "b", false));
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    net.lose(sub);
    let p = net.client(V4, "p");
    for _ in 0..3 {
        net.publish(p, "t", QoS::AtLeastOnce, b"1234");
    }
    assert_eq!(net.cores[0].stats().queue_full_dropped_count, 1);
    let (sub, _) = net.connect_on(0, connect(V4, "b", false));
    assert_eq!(payloads(&net.recv(sub)).len(), 2);
}

#[test]
fn max_inflight_messages_caps_the_window_of_a_v3_client() {
    let mut net = Net::with_limits(1, limits(|l| l.max_inflight_messages = 2));
    let sub = net.client(V4, "s");
    net.subscribe(sub, "t", QoS::AtLeastOnce);
    let p = net.client(V4, "p");
    for _ in 0..4 {
        net.publish(p, "t", QoS::AtLeastOnce, b"m");
    }
    let got = net.recv(sub);
    let ids: Vec<_> = publishes(&got).iter().filter_map(|m| m.packet_id).collect();
    assert_eq!(ids.len(), 2);
    for id in ids {
        net.send(sub, &Packet::PubAck(ack(id)));
    }
    assert_eq!(
        payloads(&net.recv(sub)).len(),
        2,
        "the rest follow the acks"
    );
}

#[test]
fn a_slow_subscriber_sheds_qos0_queues_qos1_and_never_stalls_others() {
    let mut net = Net::with_limits(2, limits(|l| l.max_outgoing_bytes = 64));
    let slow = net.client(V4, &net.id_on(1, "slow"));
    let fast = net.client(V4, &net.id_on(1, "fast"));
    net.subscribe(slow, "t", QoS::AtLeastOnce);
    net.subscribe(fast, "t", QoS::AtLeastOnce);
    net.stall(slow);
    let p = net.client(V4, &net.id_on(0, "p"));
    for _ in 0..20 {
        net.publish(p, "t", QoS::AtMostOnce, b"0123456789");
    }
    net.publish(p, "t", QoS::AtLeastOnce, b"important");
    assert_eq!(
        payloads(&net.recv(fast)).len(),
        21,
        "the fast reader gets everything"
    );
    let dropped = net.cores[1].stats().qos0_dropped_slow_count;
    assert!(dropped > 0 && dropped < 20, "dropped {dropped}");
    net.unstall(slow);
    let got = payloads(&net.recv(slow));
    assert_eq!(got.len() as u64, 21 - dropped);
    assert_eq!(
        got.last().map(String::as_str),
        Some("important"),
        "QoS 1 was queued, not lost"
    );
}

#[test]
fn retained_partition_full_is_counted_and_replacement_still_works() {
    let mut net = Net::with_limits(1, limits(|l| l.max_retained_messages = 2));
    let p = net.client(V4, "p");
    for topic in ["r/1", "r/2", "r/3"] {
        let mut m = publish(topic, QoS::AtMostOnce, None, b"v");
        m.retain = true;
        net.send(p, &Packet::Publish(m));
    }
    assert_eq!(net.cores[0].retained_count(), 2);
    assert_eq!(net.cores[0].stats().retained_full_count, 1);
    let mut m = publish("r/1", QoS::AtMostOnce, None, b"new");
    m.retain = true;
    net.send(p, &Packet::Publish(m));
    let s = net.client(V4, "s");
    let mut got = payloads(&net.subscribe(s, "r/+", QoS::AtMostOnce));
    got.sort();
    assert_eq!(got, vec!["new", "v"]);
}

#[test]
fn inbound_packet_above_max_packet_size_disconnects_with_0x95() {
    let mut net = Net::with_limits(1, limits(|l| l.max_packet_size_bytes = 64));
    let (p, connack) = net.connect_on(0, connect(V5, "big", true));
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert_eq!(
        connack
            .properties
            .maximum_packet_size_bytes
            .map(|m| m.get()),
        Some(64)
    );
    let other = net.client(V5, "other");
    net.publish(p, "t", QoS::AtMostOnce, &[b'x'; 100]);
    assert_eq!(
        disconnect_code(&net.recv(p)),
        Some(ReasonCode::PacketTooLarge)
    );
    assert!(net.is_closed(p));
    net.send(other, &Packet::PingReq);
    assert_eq!(net.recv(other), vec![Packet::PingResp]);
}

#[test]
fn retain_not_available_refuses_retained_publish_and_will() {
    let config = culex::broker::CoreConfig {
        retain_available: false,
        ..Default::default()
    };
    let mut net = Net::with_config(1, config);
    let (p, connack) = net.connect_on(0, connect(V5, "p", true));
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert_eq!(connack.properties.retain_available, Some(false));
    let mut m = publish("t", QoS::AtMostOnce, None, b"v");
    m.retain = true;
    net.send(p, &Packet::Publish(m));
    assert_eq!(
        disconnect_code(&net.recv(p)),
        Some(ReasonCode::RetainNotSupported)
    );
    let mut c = connect(V5, "w", true);
    c.will = Some(will("w", b"x", QoS::AtMostOnce, true));
    let (_, connack) = net.connect_on(0, c);
    assert_eq!(connack_code(&connack), ReasonCode::RetainNotSupported);
}
