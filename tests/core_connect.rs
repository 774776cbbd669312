//! CONNECT/CONNACK, hand-off, client ids, takeover, keepalive, PING, DISCONNECT and
//! malformed input, on an in-memory network of shard cores.

mod core_harness;

use std::time::Duration;

use core_harness::*;
use culex::broker::CoreConfig;
use culex::limits::Limits;
use culex::protocol::{Auth, AuthProperties, Packet, QoS, ReasonCode};
use culex::router::home_shard;

#[test]
fn v311_connect_is_handed_to_the_home_shard_and_acknowledged() {
    let mut net = Net::new(2);
    let id = net.id_on(1, "dev");
    let (sock, _) = net.connect_on(0, connect(V4, &id, true));
    assert_eq!(net.shard_of(sock), 1, "the connection moved to its home");
    assert_eq!(net.cores[0].stats().hand_offs_count, 1);
    assert_eq!(net.cores[0].stats().connections_current, 0);
    assert_eq!(net.cores[1].stats().connections_current, 1);
    assert_eq!(net.cores[1].session_count(), 1);
    assert!(!net.is_closed(sock));
}

#[test]
fn connack_bytes_for_v311_success() {
    let mut net = Net::new(1);
    let sock = net.open(0, V4);
    net.send(sock, &Packet::Connect(Box::new(connect(V4, "a", true))));
    // CONNACK: type 2, remaining length 2, session present 0, return code 0.
    assert_eq!(net.recv_raw(sock), vec![0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn v31_client_id_must_be_1_to_23_bytes() {
    let mut net = Net::new(1);
    for (id, ok) in [
        ("", false),
        (&"x".repeat(24)[..], false),
        (&"y".repeat(23)[..], true),
    ] {
        let (sock, connack) = net.connect_on(0, connect(V3, id, true));
        let expected = if ok {
            ReasonCode::Success
        } else {
            ReasonCode::ClientIdentifierNotValid
        };
        assert_eq!(connack_code(&connack), expected, "id {id:?}");
        assert_eq!(net.is_closed(sock), !ok);
    }
}

#[test]
fn v311_empty_id_needs_clean_session_and_is_assigned_on_this_shard() {
    let mut net = Net::new(4);
    let sock = net.open(2, V4);
    net.send(sock, &Packet::Connect(Box::new(connect(V4, "", false))));
    // Return code 2: identifier rejected, then closed.
    assert_eq!(net.recv_raw(sock), vec![0x20, 0x02, 0x00, 0x02]);
    assert!(net.is_closed(sock));

    let (sock, connack) = net.connect_on(2, connect(V4, "", true));
    assert_eq!(connack_code(&connack), ReasonCode::Success);
    assert_eq!(net.shard_of(sock), 2, "an assigned id needs no hand-off");
    assert_eq!(net.cores[2].stats().hand_offs_count, 0);
}

#[test]
fn v5_empty_id_gets_an_assigned_identifier_homed_here() {
    let mut net = Net::new(3);
    for shard in 0..3 {
        let (sock, connack) = net.connect_on(shard, connect(V5, "", true));
        let Packet::ConnAck(ack) = connack else {
            panic!("CONNACK expected")
        };
        let assigned = ack
            .properties
            .assigned_client_identifier
            .expect("assigned id");
        assert_eq!(home_shard(&assigned, 3).0 as usize, shard);
        assert_eq!(net.shard_of(sock), shard);
    }
}

#[test]
fn unsupported_protocol_level_gets_return_code_1_and_close() {
    let mut net = Net::new(1);
    let sock = net.open(0, V4);
    // CONNECT, "MQTT", level 6, clean session, keep alive 60, client id "a".
    net.send_raw(
        sock,
        &[
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 6, 0x02, 0x00, 0x3C, 0x00, 0x01, b'a',
        ],
    );
    assert_eq!(net.recv_raw(sock), vec![0x20, 0x02, 0x00, 0x01]);
    assert!(net.is_closed(sock));
}

#[test]
fn first_packet_not_connect_closes_silently() {
    let mut net = Net::new(1);
    let sock = net.open(0, V4);
    net.send_raw(sock, &[0xC0, 0x00]); // PINGREQ
    assert!(net.is_closed(sock));
    assert!(net.recv_raw(sock).is_empty());
}

#[test]
fn second_connect_is_a_protocol_error() {
    let mut net = Net::new(2);
    let id = net.id_on(0, "twice");
    let sock = net.client(V5, &id);
    net.send(sock, &Packet::Connect(Box::new(connect(V5, &id, true))));
    assert_eq!(
        disconnect_code(&net.recv(sock)),
        Some(ReasonCode::ProtocolError)
    );
    assert!(net.is_closed(sock));
}

#[test]
fn connect_timeout_closes_a_silent_connection() {
    let mut net = Net::new(1);
    let sock = net.open(0, V4);
    net.advance(Duration::from_millis(9_999));
    assert!(!net.is_closed(sock));
    net.advance(Duration::from_millis(1));
    assert!(net.is_closed(sock));
    assert_eq!(net.cores[0].stats().connect_timeouts_count, 1);
}

#[test]
fn takeover_closes_the_old_connection_and_keeps_a_persistent_session() {
    let mut net = Net::new(2);
    let id = net.id_on(1, "taken");
    let (old, first) = net.connect_on(0, connect(V5, &id, false));
    let Packet::ConnAck(first) = first else {
        panic!()
    };
    assert!(!first.session_present);
    let mut again = connect(V5, &id, false);
    again.properties.session_expiry_interval_s = Some(100);
    let (new, second) = net.connect_on(1, again);
    assert_eq!(
        disconnect_code(&net.recv(old)),
        Some(ReasonCode::SessionTakenOver)
    );
    assert!(net.is_closed(old));
    assert!(!net.is_closed(new));
    let Packet::ConnAck(second) = second else {
        panic!()
    };
    // MQTT 5, Clean Start 0: the existing session is resumed even though it would have
    // ended with its connection.
    assert!(second.session_present);
    assert_eq!(net.cores[1].stats().takeovers_count, 1);

    // 3.1.1 clean session: the old session ends with the old connection.
    let (_v4, third) = net.connect_on(0, connect(V4, &id, true));
    assert!(net.is_closed(new));
    let Packet::ConnAck(third) = third else {
        panic!()
    };
    assert!(!third.session_present);
    let (_v4b, fourth) = net.connect_on(0, connect(V4, &id, false));
    let Packet::ConnAck(fourth) = fourth else {
        panic!()
    };
    assert!(
        !fourth.session_present,
        "the clean session did not outlive its connection"
    );
}

#[test]
fn v311_persistent_session_is_present_on_reconnect_and_clean_discards_it() {
    let mut net = Net::new(2);
    let id = net.id_on(0, "persist");
    let (sock, _) = net.connect_on(1, connect(V4, &id, false));
    net.send(sock, &disconnect(ReasonCode::Success));
    assert!(net.is_closed(sock));
    let (sock, connack) = net.connect_on(1, connect(V4, &id, false));
    let Packet::ConnAck(ack) = connack else {
        panic!()
    };
    assert!(ack.session_present);
    net.send(sock, &disconnect(ReasonCode::Success));
    let (_, connack) = net.connect_on(1, connect(V4, &id, true));
    let Packet::ConnAck(ack) = connack else {
        panic!()
    };
    assert!(!ack.session_present);
}

#[test]
fn pingreq_gets_pingresp() {
    let mut net = Net::new(1);
    let sock = net.client(V4, "pinger");
    net.send(sock, &Packet::PingReq);
    assert_eq!(net.recv(sock), vec![Packet::PingResp]);
}

#[test]
fn keepalive_timeout_is_one_and_a_half_times_keep_alive() {
    let mut net = Net::new(1);
    let mut c = connect(V5, "sleepy", true);
    c.keep_alive_s = 10;
    let (sock, _) = net.connect_on(0, c);
    net.advance(Duration::from_secs(10));
    net.send(sock, &Packet::PingReq); // resets the deadline to t=25s
    net.recv(sock);
    net.advance(Duration::from_millis(14_999));
    assert!(!net.is_closed(sock));
    net.advance(Duration::from_millis(1));
    assert_eq!(
        disconnect_code(&net.recv(sock)),
        Some(ReasonCode::KeepAliveTimeout)
    );
    assert!(net.is_closed(sock));
    assert_eq!(net.cores[0].stats().keepalive_timeouts_count, 1);
}

#[test]
fn v5_keep_alive_above_the_maximum_gets_server_keep_alive() {
    let limits = Limits {
        max_keepalive_s: 30,
        ..Limits::default()
    };
    let mut net = Net::with_limits(1, limits);
    let (sock, connack) = net.connect_on(0, connect(V5, "ka", true));
    let Packet::ConnAck(ack) = connack else {
        panic!()
    };
    assert_eq!(ack.properties.server_keep_alive_s, Some(30));
    // The server's value governs: 45 s of silence closes.
    net.advance(Duration::from_secs(45));
    assert!(net.is_closed(sock));
}

#[test]
fn anonymous_refused_when_not_allowed() {
    let config = CoreConfig {
        allow_anonymous: false,
        ..CoreConfig::default()
    };
    let mut net = Net::with_config(1, config);
    let sock = net.open(0, V4);
    net.send(sock, &Packet::Connect(Box::new(connect(V4, "anon", true))));
    assert_eq!(net.recv_raw(sock), vec![0x20, 0x02, 0x00, 0x05]);
    assert!(net.is_closed(sock));
    let (_, connack) = net.connect_on(0, connect(V5, "anon5", true));
    assert_eq!(connack_code(&connack), ReasonCode::NotAuthorized);
    let mut named = connect(V5, "named", true);
    named.user_name = Some("alice".into());
    let (sock, connack) = net.connect_on(0, named);
    assert_eq!(connack_code(&connack), ReasonCode::Success);
    assert!(!net.is_closed(sock));
}

#[test]
fn authentication_method_is_refused_with_0x8c() {
    let mut net = Net::new(1);
    let mut c = connect(V5, "auth", true);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (sock, connack) = net.connect_on(0, c);
    assert_eq!(connack_code(&connack), ReasonCode::BadAuthenticationMethod);
    assert!(net.is_closed(sock));
}

#[test]
fn auth_packet_without_method_is_a_protocol_error() {
    let mut net = Net::new(1);
    let sock = net.client(V5, "authpkt");
    net.send(
        sock,
        &Packet::Auth(Box::new(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties::default(),
        })),
    );
    assert_eq!(
        disconnect_code(&net.recv(sock)),
        Some(ReasonCode::ProtocolError)
    );
    assert!(net.is_closed(sock));
}

#[test]
fn malformed_packet_closes_only_its_connection() {
    let mut net = Net::new(2);
    let bad_id = net.id_on(0, "bad");
    let good_id = net.id_on(0, "good");
    let bad = net.client(V5, &bad_id);
    let good = net.client(V4, &good_id);
    net.subscribe(good, "t", QoS::AtMostOnce);
    // PUBLISH QoS 3: malformed.
    net.send_raw(bad, &[0x36, 0x03, 0x00, 0x01, b't']);
    assert_eq!(
        disconnect_code(&net.recv(bad)),
        Some(ReasonCode::MalformedPacket)
    );
    assert!(net.is_closed(bad));
    assert_eq!(net.cores[0].stats().malformed_packets_count, 1);
    let other = net.client(V4, "other");
    net.publish(other, "t", QoS::AtMostOnce, b"still here");
    assert_eq!(payloads(&net.recv(good)), vec!["still here"]);
}

#[test]
fn v3_malformed_packet_just_closes() {
    let mut net = Net::new(1);
    let sock = net.client(V4, "v3bad");
    // SUBSCRIBE with reserved flags 0 instead of 2.
    net.send_raw(sock, &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00]);
    assert!(net.is_closed(sock));
    assert!(net.recv(sock).is_empty());
}

#[test]
fn packets_split_across_reads_are_reassembled() {
    let mut net = Net::new(1);
    let sock = net.client(V4, "split");
    net.send_raw(sock, &[0xC0]);
    assert!(net.recv(sock).is_empty());
    net.send_raw(sock, &[0x00, 0xC0, 0x00]);
    assert_eq!(net.recv(sock), vec![Packet::PingResp, Packet::PingResp]);
}

#[test]
fn shutdown_sends_0x8b_to_v5_and_closes_everyone() {
    let mut net = Net::new(1);
    let v5 = net.client(V5, "five");
    let v4 = net.client(V4, "four");
    net.shutdown(0);
    assert_eq!(
        disconnect_code(&net.recv(v5)),
        Some(ReasonCode::ServerShuttingDown)
    );
    assert!(net.recv(v4).is_empty());
    assert!(net.is_closed(v5) && net.is_closed(v4));
}

#[test]
fn v5_disconnect_may_shorten_but_not_revive_session_expiry() {
    let mut net = Net::new(1);
    // Connected with expiry 0: a DISCONNECT asking for 30 s is a protocol error.
    let sock = net.client(V5, "zero");
    let mut d = culex::protocol::Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval_s = Some(30);
    net.send(sock, &Packet::Disconnect(d.clone()));
    assert_eq!(
        disconnect_code(&net.recv(sock)),
        Some(ReasonCode::ProtocolError)
    );
    assert_eq!(net.cores[0].session_count(), 0);

    // Connected with 100 s: DISCONNECT sets 30 s, after which the session is gone.
    let mut c = connect(V5, "long", true);
    c.properties.session_expiry_interval_s = Some(100);
    let (sock, _) = net.connect_on(0, c);
    net.send(sock, &Packet::Disconnect(d));
    assert!(
        net.recv(sock).is_empty(),
        "a client DISCONNECT gets no answer"
    );
    assert!(net.is_closed(sock));
    net.advance(Duration::from_secs(29));
    assert_eq!(net.cores[0].session_count(), 1);
    net.advance(Duration::from_secs(1));
    assert_eq!(net.cores[0].session_count(), 0);
}

#[test]
fn a_takeover_on_another_shard_reaches_the_home_shard() {
    let mut net = Net::new(4);
    let id = net.id_on(3, "roamer");
    let (first, _) = net.connect_on(0, connect(V4, &id, false));
    let (second, connack) = net.connect_on(1, connect(V4, &id, false));
    let Packet::ConnAck(connack) = connack else {
        panic!()
    };
    assert!(connack.session_present);
    assert!(net.is_closed(first));
    assert_eq!((net.shard_of(first), net.shard_of(second)), (3, 3));
    assert_eq!(net.cores[3].session_count(), 1);
}

#[test]
fn connection_lost_before_connect_and_unknown_conns_are_harmless() {
    let mut net = Net::new(1);
    let sock = net.open(0, V4);
    net.lose(sock);
    assert_eq!(net.cores[0].stats().connections_current, 0);
    // Output for a forgotten connection: empty.
    assert!(net.cores[0]
        .take_outgoing(culex::broker::ConnId(999))
        .is_empty());
}

#[test]
fn shutdown_in_two_phases_publishes_each_will_once_before_closing() {
    let mut net = Net::new(2);
    let watcher = net.client(V4, &net.id_on(0, "w"));
    net.subscribe(watcher, "lw/#", QoS::AtMostOnce);
    let id = net.id_on(1, "dying");
    let mut c = connect(V5, &id, true);
    c.will = Some(will("lw/dying", b"bye", QoS::AtMostOnce, false));
    let (sock, _) = net.connect_on(1, c);
    net.cores[1].publish_wills_for_shutdown(net.now);
    net.pump();
    assert!(!net.is_closed(sock), "phase one keeps connections open");
    assert_eq!(payloads(&net.recv(watcher)), vec!["bye"]);
    net.shutdown(1);
    assert!(net.is_closed(sock));
    assert_eq!(
        disconnect_code(&net.recv(sock)),
        Some(ReasonCode::ServerShuttingDown)
    );
    assert!(net.recv(watcher).is_empty(), "the will went out once");
    assert_eq!(net.cores[1].stats().wills_published_count, 1);
}

#[test]
fn deadlines_set_after_an_idle_sweep_are_still_honoured() {
    let mut net = Net::new(1);
    // A sweep with nothing pending, then a long quiet hour.
    net.advance(Duration::from_secs(1));
    let mut c = connect(V4, "late", true);
    c.keep_alive_s = 2;
    let (sock, _) = net.connect_on(0, c);
    net.advance(Duration::from_secs(2));
    assert!(!net.is_closed(sock));
    net.advance(Duration::from_secs(1));
    assert!(net.is_closed(sock), "3 s = 1.5 × 2 s keep alive");
    let late = net.open(0, V4);
    net.advance(Duration::from_secs(10));
    assert!(net.is_closed(late), "connect timeout noted after the sweep");
}

#[test]
fn mqtt31_connack_never_sets_the_reserved_session_present_bit() {
    let mut net = Net::new(1);
    let (sock, _) = net.connect_on(0, connect(V3, "old31", false));
    net.lose(sock);
    let sock = net.open(0, V3);
    net.send(
        sock,
        &Packet::Connect(Box::new(connect(V3, "old31", false))),
    );
    assert_eq!(net.recv_raw(sock), vec![0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn bytes_after_connect_travel_with_the_hand_off() {
    let mut net = Net::new(2);
    let id = net.id_on(1, "eager");
    let sock = net.open(0, V4);
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect(V4, &id, true)))
        .encode(V4, &mut bytes)
        .expect("encodes");
    subscribe(7, &[("e", options(QoS::AtMostOnce))], None)
        .encode(V4, &mut bytes)
        .expect("encodes");
    Packet::PingReq.encode(V4, &mut bytes).expect("encodes");
    // Everything in one read, the last packet cut short.
    net.send_raw(sock, &bytes[..bytes.len() - 1]);
    net.send_raw(sock, &bytes[bytes.len() - 1..]);
    let got = net.recv(sock);
    assert_eq!(net.shard_of(sock), 1);
    assert!(matches!(got[0], Packet::ConnAck(_)));
    assert!(matches!(&got[1], Packet::SubAck(ack) if ack.packet_id == pid(7)));
    assert_eq!(got[2], Packet::PingResp);
}

#[test]
fn writable_is_emitted_once_per_empty_to_non_empty_buffer() {
    use culex::broker::{ConnId, CoreConfig, Output, ShardCore, ShardId};
    let now = std::time::Instant::now();
    let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
    let encode = |p: &Packet| {
        let mut b = bytes::BytesMut::new();
        p.encode(V4, &mut b).expect("encodes");
        b
    };
    for conn in [1, 2] {
        core.connection_opened(ConnId(conn), now);
        let c = connect(V4, &format!("w{conn}"), true);
        core.received(ConnId(conn), &encode(&Packet::Connect(Box::new(c))), now);
    }
    core.received(
        ConnId(1),
        &encode(&subscribe(1, &[("t", options(QoS::AtMostOnce))], None)),
        now,
    );
    let writable = |core: &mut ShardCore| {
        std::iter::from_fn(|| core.poll_output())
            .filter(|o| matches!(o, Output::Writable { conn: ConnId(1) }))
            .count()
    };
    // CONNACK and SUBACK sit in one buffer: one signal.
    assert_eq!(writable(&mut core), 1);
    let msg = encode(&Packet::Publish(publish("t", QoS::AtMostOnce, None, b"x")));
    core.received(ConnId(2), &msg, now);
    core.received(ConnId(2), &msg, now);
    assert_eq!(writable(&mut core), 0, "still not taken: no new signal");
    let taken = core.take_outgoing(ConnId(1));
    assert!(taken.len() > 10, "CONNACK, SUBACK and two PUBLISHes");
    core.received(ConnId(2), &msg, now);
    assert_eq!(
        writable(&mut core),
        1,
        "empty again, then bytes: signal again"
    );
}

/// MQTT 5: the CONNACKs and DISCONNECTs the broker sends carry a Reason String, which the
/// spec allows on these two packets whatever Request Problem Information says.
#[test]
fn v5_refusals_and_disconnects_carry_a_reason_string() {
    let mut net = Net::new(1);
    let mut c = connect(V5, "auth-rs", true);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (_, connack) = net.connect_on(0, c);
    let Packet::ConnAck(ack) = connack else {
        panic!("expected CONNACK, got {connack:?}")
    };
    assert_eq!(
        ack.properties.reason_string.as_deref(),
        Some("authentication method not supported")
    );

    let mut c = connect(V5, "sleepy-rs", true);
    c.keep_alive_s = 10;
    c.properties.request_problem_information = Some(false);
    let (sock, connack) = net.connect_on(0, c);
    let Packet::ConnAck(ack) = connack else {
        panic!("expected CONNACK, got {connack:?}")
    };
    assert_eq!(
        ack.properties.reason_string, None,
        "a success needs no reason"
    );
    net.advance(Duration::from_secs(15));
    let disconnect = net.recv(sock).into_iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d),
        _ => None,
    });
    let disconnect = disconnect.expect("a DISCONNECT before the close");
    assert_eq!(disconnect.reason_code, ReasonCode::KeepAliveTimeout);
    assert_eq!(
        disconnect.properties.reason_string.as_deref(),
        Some("keep alive timeout")
    );
}

/// ...but never when it would make the packet larger than the client's Maximum Packet Size
/// [MQTT-3.2.2-19].
#[test]
fn reason_string_is_left_out_when_the_client_cannot_take_it() {
    let mut net = Net::new(1);
    let mut c = connect(V5, "tiny-rs", true);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    c.properties.maximum_packet_size_bytes = std::num::NonZeroU32::new(10);
    let (_, connack) = net.connect_on(0, c);
    let Packet::ConnAck(ack) = connack else {
        panic!("expected CONNACK, got {connack:?}")
    };
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
    assert_eq!(ack.properties.reason_string, None);
}
