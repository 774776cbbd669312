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
    // A persistent session needs an expiry under MQTT 5; use 3.1.1 semantics via v5 props.
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
    // The first connection asked for expiry 0: its session ended with it.
    assert!(!second.session_present);
    assert_eq!(net.cores[1].stats().takeovers_count, 1);

    // Now take over a session that does persist.
    let (_newer, third) = net.connect_on(0, connect(V4, &id, false));
    assert!(net.is_closed(new));
    let Packet::ConnAck(third) = third else {
        panic!()
    };
    assert!(third.session_present);
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
        &Packet::Auth(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties::default(),
        }),
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
