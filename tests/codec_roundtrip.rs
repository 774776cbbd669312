//! Property tests of the codec: every valid packet of every type survives encode → decode
//! unchanged in each protocol version, `encoded_len` is exact, the decoder stops at the
//! frame's edge and asks for more until the frame is whole, and no input makes it panic.
//!
//! The strategies build only packets the spec allows in that version: before MQTT 5 no
//! properties, Success reason codes where the version has none, and no AUTH; in MQTT 5
//! random property sets valid for that packet. Case counts are fixed so CI time is bounded
//! and a failure is repeatable from its seed.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;

use culex::protocol::{
    check_frame, decode, decode_frame, Ack, Auth, AuthProperties, ClientId, ConnAck,
    ConnAckProperties, Connect, ConnectProperties, Disconnect, DisconnectProperties, FrameStatus,
    Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, ReasonContext,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty, Will, WillProperties,
};
use culex::protocol::{AckProperties, MAX_REMAINING_LENGTH};

/// No size limit: these tests are about the encoding, not the broker's policy.
const NO_LIMIT: u32 = u32::MAX;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

// ---------------------------------------------------------------------------------------
// Leaf strategies
// ---------------------------------------------------------------------------------------

/// Text the spec allows in any UTF-8 string field: multi-byte characters included, never
/// U+0000 or other control characters (a receiver may refuse those).
fn text() -> impl Strategy<Value = ByteString> {
    "[a-zA-Z0-9 _.$/é€😀-]{0,12}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|id| PacketId::new(id).expect("range excludes zero"))
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(VERSIONS.to_vec())
}

fn topic_level() -> impl Strategy<Value = String> {
    "[a-z0-9é$ _-]{0,5}"
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    vec(topic_level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a topic name has at least one character", |t| !t.is_empty())
        .prop_map(|t| TopicName::parse(t).expect("no wildcards, no NUL, not empty"))
}

/// A filter level: a plain level or `+`; `#` only as the last level.
fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![3 => topic_level(), 1 => Just("+".to_owned())];
    (
        vec(level, 1..5),
        any::<bool>(),
        option::weighted(0.2, "[a-z0-9]{1,4}"),
    )
        .prop_map(|(mut levels, multi, group)| {
            if multi {
                levels.push("#".to_owned());
            }
            let filter = levels.join("/");
            match group {
                // A shared subscription needs a filter after its group.
                Some(group) if !filter.is_empty() => format!("$share/{group}/{filter}"),
                _ => filter,
            }
        })
        .prop_filter("a topic filter has at least one character", |f| {
            !f.is_empty()
        })
        .prop_map(|f| TopicFilter::parse(f).expect("wildcards placed as the spec says"))
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (text(), text()).prop_map(|(name, value)| UserProperty { name, value }),
        0..3,
    )
}

fn nonzero_u16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|n| NonZeroU16::new(n).expect("range excludes zero"))
}

fn nonzero_u32() -> impl Strategy<Value = NonZeroU32> {
    (1..=u32::MAX).prop_map(|n| NonZeroU32::new(n).expect("range excludes zero"))
}

/// A subscription identifier: 1 ..= 268,435,455, the most a variable byte integer holds.
fn subscription_identifier() -> impl Strategy<Value = NonZeroU32> {
    let max = u32::try_from(MAX_REMAINING_LENGTH).expect("fits in u32");
    (1..=max).prop_map(|n| NonZeroU32::new(n).expect("range excludes zero"))
}

/// A reason code the spec allows in `context`.
fn reason_for(context: ReasonContext) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = (0..=u8::MAX)
        .filter_map(ReasonCode::from_code)
        .filter(|code| code.valid_for(context))
        .collect();
    select(allowed)
}

/// Authentication data is a protocol error without a method, so they come as a pair.
fn authentication() -> impl Strategy<Value = (Option<ByteString>, Option<Bytes>)> {
    option::of((text(), option::of(binary())))
        .prop_map(|auth| auth.map_or((None, None), |(method, data)| (Some(method), data)))
}

/// A payload and a Payload Format Indicator that agree: a payload marked UTF-8 is UTF-8.
fn payload_with_format() -> impl Strategy<Value = (Bytes, Option<bool>)> {
    prop_oneof![
        (payload(), option::of(Just(false))),
        "\\PC{0,40}".prop_map(|s| (Bytes::from(s), Some(true))),
    ]
}

// ---------------------------------------------------------------------------------------
// Property sets (MQTT 5 only; empty before)
// ---------------------------------------------------------------------------------------

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(nonzero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        authentication(),
    )
        .prop_map(
            |(session, receive, packet_size, alias, response, problem, user, auth)| {
                ConnectProperties {
                    session_expiry_interval_s: session,
                    receive_maximum: receive,
                    maximum_packet_size_bytes: packet_size,
                    topic_alias_maximum: alias,
                    request_response_information: response,
                    request_problem_information: problem,
                    user_properties: user,
                    authentication_method: auth.0,
                    authentication_data: auth.1,
                }
            },
        )
}

fn will_properties(format: Option<bool>) -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(
            move |(delay, expiry, content, response, correlation, user)| WillProperties {
                will_delay_interval_s: delay,
                payload_format_indicator: format,
                message_expiry_interval_s: expiry,
                content_type: content,
                response_topic: response,
                correlation_data: correlation,
                user_properties: user,
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let limits = (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
        option::of(any::<bool>()),
        option::of(nonzero_u32()),
        option::of(any::<u16>()),
        option::of(any::<u16>()),
    );
    let texts = (
        option::of(text()),
        option::of(text()),
        user_properties(),
        option::of(text()),
        option::of(text()),
        authentication(),
    );
    let flags = (
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (limits, texts, flags).prop_map(
        |(
            (session, receive, max_qos, retain, packet_size, alias, keep_alive),
            (assigned, reason, user, response, reference, auth),
            (wildcard, sub_ids, shared),
        )| ConnAckProperties {
            session_expiry_interval_s: session,
            receive_maximum: receive,
            maximum_qos: max_qos,
            retain_available: retain,
            maximum_packet_size_bytes: packet_size,
            assigned_client_identifier: assigned,
            topic_alias_maximum: alias,
            reason_string: reason,
            user_properties: user,
            wildcard_subscription_available: wildcard,
            subscription_identifiers_available: sub_ids,
            shared_subscription_available: shared,
            server_keep_alive_s: keep_alive,
            response_information: response,
            server_reference: reference,
            authentication_method: auth.0,
            authentication_data: auth.1,
        },
    )
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(text()), user_properties()).prop_map(|(reason, user)| AckProperties {
        reason_string: reason,
        user_properties: user,
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(text()),
        user_properties(),
        option::of(text()),
    )
        .prop_map(|(session, reason, user, reference)| DisconnectProperties {
            session_expiry_interval_s: session,
            reason_string: reason,
            user_properties: user,
            server_reference: reference,
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (authentication(), option::of(text()), user_properties()).prop_map(|(auth, reason, user)| {
        AuthProperties {
            authentication_method: auth.0,
            authentication_data: auth.1,
            reason_string: reason,
            user_properties: user,
        }
    })
}

/// `properties` in MQTT 5, the empty default before it.
fn props_if_v5<T: Default + std::fmt::Debug + Clone + 'static>(
    version: ProtocolVersion,
    properties: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if version.is_v5() {
        properties.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

/// A reason code allowed in `context` in MQTT 5; Success before it.
fn reason_if_v5(version: ProtocolVersion, context: ReasonContext) -> BoxedStrategy<ReasonCode> {
    if version.is_v5() {
        reason_for(context).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    }
}

// ---------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (topic_name(), payload_with_format(), qos(), any::<bool>()).prop_flat_map(
        move |(topic, (payload, format), qos, retain)| {
            let format = if version.is_v5() { format } else { None };
            props_if_v5(version, will_properties(format)).prop_map(move |properties| Will {
                topic: topic.clone(),
                payload: payload.clone(),
                qos,
                retain,
                properties,
            })
        },
    )
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(version)),
        option::of(text()),
        option::of(binary()),
        props_if_v5(version, connect_properties()),
    )
        .prop_map(
            move |(clean_start, keep_alive_s, id, will, user_name, password, properties)| {
                // Before MQTT 5 a password needs a user name [MQTT-3.1.2-22].
                let password = if version.is_v5() || user_name.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol_version: version,
                    clean_start,
                    keep_alive_s,
                    client_id: ClientId::new(id).expect("text() holds no NUL"),
                    will,
                    user_name,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason_for(ReasonContext::ConnAck).boxed()
    } else {
        // The 3.x return codes 0..=5, each as the reason code it decodes to.
        (0..=5u8)
            .prop_map(|code| {
                ReasonCode::from_v3_connack_code(code).expect("0..=5 are the 3.x return codes")
            })
            .boxed()
    };
    (
        any::<bool>(),
        reason,
        props_if_v5(version, connack_properties()),
    )
        .prop_map(move |(present, reason_code, properties)| {
            // MQTT 3.1 has no session-present flag, and a refusal never has a session
            // [MQTT-3.2.2-4, MQTT-3.2.2-6].
            let session_present =
                present && version != ProtocolVersion::V3_1 && reason_code == ReasonCode::Success;
            Packet::ConnAck(Box::new(ConnAck {
                session_present,
                reason_code,
                properties,
            }))
        })
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
        vec(subscription_identifier(), 0..3),
        option::of(text()),
    )
        .prop_map(
            |(expiry, alias, response, correlation, user, sub_ids, content)| PublishProperties {
                payload_format_indicator: None,
                message_expiry_interval_s: expiry,
                topic_alias: alias,
                response_topic: response,
                correlation_data: correlation,
                user_properties: user,
                subscription_identifiers: sub_ids,
                content_type: content,
            },
        )
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        props_if_v5(version, publish_properties()),
        payload_with_format(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, alias_only, id, mut properties, (payload, format))| {
                let packet_id = (qos != QoS::AtMostOnce).then_some(id);
                // DUP is a protocol violation on QoS 0 [MQTT-3.3.1-2].
                let dup = dup && qos != QoS::AtMostOnce;
                // In MQTT 5 a PUBLISH with a topic alias may leave the name empty.
                let topic = if alias_only && properties.topic_alias.is_some() {
                    TopicName::empty_for_alias()
                } else {
                    topic
                };
                if version.is_v5() {
                    properties.payload_format_indicator = format;
                }
                Packet::Publish(Publish {
                    dup,
                    qos,
                    retain,
                    topic,
                    packet_id,
                    properties: properties.into(),
                    payload,
                })
            },
        )
}

fn ack(version: ProtocolVersion, context: ReasonContext) -> impl Strategy<Value = Ack> {
    (
        packet_id(),
        reason_if_v5(version, context),
        props_if_v5(version, ack_properties()),
    )
        .prop_map(|(packet_id, reason_code, properties)| Ack {
            packet_id,
            reason_code,
            properties,
        })
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if !version.is_v5() {
        return qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            })
            .boxed();
    }
    let handling = select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendAtSubscribeIfNew,
        RetainHandling::DoNotSend,
    ]);
    (qos(), any::<bool>(), any::<bool>(), handling)
        .prop_map(
            |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
        .boxed()
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties = (option::of(subscription_identifier()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    );
    (
        packet_id(),
        props_if_v5(version, properties),
        vec((topic_filter(), subscription_options(version)), 1..5),
    )
        .prop_map(|(packet_id, properties, mut filters)| {
            // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
            for (filter, options) in &mut filters {
                if filter.shared().is_some() {
                    options.no_local = false;
                }
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if version.is_v5() {
        reason_for(ReasonContext::SubAck).boxed()
    } else {
        // 3.x return codes: granted QoS 0, 1, 2 or failure 0x80.
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (
        packet_id(),
        props_if_v5(version, ack_properties()),
        vec(code, 1..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties =
        user_properties().prop_map(|user_properties| UnsubscribeProperties { user_properties });
    (
        packet_id(),
        props_if_v5(version, properties),
        vec(topic_filter(), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    // Before MQTT 5 UNSUBACK carries no reason codes at all.
    let codes = if version.is_v5() {
        vec(reason_for(ReasonContext::UnsubAck), 1..5).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), props_if_v5(version, ack_properties()), codes).prop_map(
        |(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        },
    )
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        reason_if_v5(version, ReasonContext::Disconnect),
        props_if_v5(version, disconnect_properties()),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason_for(ReasonContext::Auth), auth_properties()).prop_map(|(reason_code, properties)| {
        Packet::Auth(Box::new(Auth {
            reason_code,
            properties,
        }))
    })
}

/// Any valid packet of `version`: all fifteen types in MQTT 5, fourteen (no AUTH) before.
fn packet_of(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version, ReasonContext::PubAck).prop_map(Packet::PubAck),
        ack(version, ReasonContext::PubRec).prop_map(Packet::PubRec),
        ack(version, ReasonContext::PubRel).prop_map(Packet::PubRel),
        ack(version, ReasonContext::PubComp).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|version| packet_of(version).prop_map(move |p| (version, p)))
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The version a decoder is in when this packet arrives: none yet for CONNECT.
fn decoder_version(packet: &Packet, version: ProtocolVersion) -> Option<ProtocolVersion> {
    match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    }
}

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .expect("a valid packet of this size always encodes");
    buf
}

/// Decodes everything it can from `buf` without panicking; on success re-encodes each
/// packet and checks it decodes to the same value. Returns how many packets decoded.
fn decode_all_and_reencode(mut buf: BytesMut, version: Option<ProtocolVersion>) -> usize {
    let mut decoded = 0;
    let mut version = version;
    while let Ok(Some(packet)) = decode(&mut buf, version, NO_LIMIT) {
        decoded += 1;
        let packet_version = match (&packet, version) {
            (Packet::Connect(connect), _) => connect.protocol_version,
            (_, Some(version)) => version,
            (_, None) => panic!("decode accepted {packet:?} before CONNECT"),
        };
        let mut again = BytesMut::new();
        if packet.encode(packet_version, &mut again).is_ok() {
            let redecoded = decode(
                &mut again,
                decoder_version(&packet, packet_version),
                NO_LIMIT,
            );
            assert_eq!(
                redecoded,
                Ok(Some(packet.clone())),
                "re-encoding a decoded packet changed it"
            );
            assert!(again.is_empty(), "re-encoding left {} bytes", again.len());
        }
        version = Some(packet_version);
    }
    decoded
}

/// Random edits of a valid encoding: flip, overwrite, insert and delete bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match *mutation {
        Mutation::Flip { at, mask } => bytes[at % len] ^= mask,
        Mutation::Set { at, byte } => bytes[at % len] = byte,
        Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
        Mutation::Delete { at } => {
            bytes.remove(at % len);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// 256 cases from a fixed seed: bounded CI time and the same cases on every run.
/// `CULEX_PROPTEST_SEED=N` explores other cases (and reproduces a reported failure).
fn config() -> ProptestConfig {
    let seed = std::env::var("CULEX_PROPTEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0xC0DEC);
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_is_identity((version, packet) in versioned_packet()) {
        let mut buf = encode(&packet, version);
        let frame = buf.clone().freeze();
        let decoded = decode(&mut buf, decoder_version(&packet, version), NO_LIMIT);
        prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        prop_assert!(buf.is_empty(), "decode left {} bytes of its own frame", buf.len());
        prop_assert_eq!(decode_frame(frame, decoder_version(&packet, version)), Ok(packet));
    }

    #[test]
    fn encoded_len_is_the_bytes_written((version, packet) in versioned_packet()) {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        packet.encode(version, &mut buf).expect("valid packets encode");
        prop_assert_eq!(packet.encoded_len(version), buf.len() - b"prefix".len());
        prop_assert_eq!(&buf[..b"prefix".len()], b"prefix", "encode must append, not overwrite");
    }

    #[test]
    fn decode_stops_at_the_frame_edge(
        (version, packet) in versioned_packet(),
        junk in vec(any::<u8>(), 1..64),
    ) {
        let mut buf = encode(&packet, version);
        let frame_len = buf.len();
        buf.extend_from_slice(&junk);
        match check_frame(&buf, NO_LIMIT) {
            Ok(FrameStatus::Complete { total_len_bytes, first_byte, .. }) => {
                prop_assert_eq!(total_len_bytes, frame_len);
                prop_assert_eq!(first_byte >> 4, packet.packet_type() as u8);
            }
            other => prop_assert!(false, "check_frame said {:?} for a whole frame", other),
        }
        let decoded = decode(&mut buf, decoder_version(&packet, version), NO_LIMIT);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert_eq!(&buf[..], &junk[..], "decode must leave exactly the bytes after the frame");
    }

    #[test]
    fn byte_by_byte_feeding_needs_more_until_complete((version, packet) in versioned_packet()) {
        let whole = encode(&packet, version);
        let decoder = decoder_version(&packet, version);
        // One read buffer, fed one byte at a time, as a slow peer would.
        let mut fed = BytesMut::new();
        for (have, &next) in whole.iter().enumerate() {
            match check_frame(&fed, NO_LIMIT) {
                Ok(FrameStatus::NeedMore { at_least_bytes }) => {
                    // Never zero (the caller would spin) and never past the frame's end
                    // (the caller would wait for bytes that are not coming).
                    prop_assert!(at_least_bytes >= 1);
                    prop_assert!(have + at_least_bytes <= whole.len(),
                        "at {} of {} bytes it asked for {} more", have, whole.len(), at_least_bytes);
                }
                other => prop_assert!(false, "check_frame said {:?} at {} of {} bytes",
                    other, have, whole.len()),
            }
            prop_assert_eq!(decode(&mut fed, decoder, NO_LIMIT), Ok(None));
            prop_assert_eq!(fed.len(), have, "a partial frame must not be consumed");
            fed.extend_from_slice(&[next]);
        }
        prop_assert_eq!(decode(&mut fed, decoder, NO_LIMIT), Ok(Some(packet)));
        prop_assert!(fed.is_empty());
    }

    #[test]
    fn packet_too_large_is_refused_from_the_fixed_header((version, packet) in versioned_packet()) {
        let whole = encode(&packet, version);
        let max = u32::try_from(whole.len() - 1).expect("test packets are small");
        // Only the fixed header is given: the refusal must not wait for the body.
        let header_len = match check_frame(&whole, NO_LIMIT) {
            Ok(FrameStatus::Complete { header_len_bytes, .. }) => header_len_bytes,
            other => return Err(TestCaseError::fail(format!("check_frame said {other:?}"))),
        };
        let refused = check_frame(&whole[..header_len], max);
        prop_assert!(
            matches!(refused, Err(culex::protocol::DecodeError::PacketTooLarge { .. })),
            "a {}-byte packet against a {}-byte limit gave {:?}", whole.len(), max, refused
        );
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..300),
        version in option::of(version()),
    ) {
        let _ = check_frame(&bytes, NO_LIMIT);
        let _ = check_frame(&bytes, 64);
        let _ = decode_frame(Bytes::from(bytes.clone()), version);
        decode_all_and_reencode(BytesMut::from(&bytes[..]), version);
    }

    #[test]
    fn decode_never_panics_on_mutated_packets(
        (version, packet) in versioned_packet(),
        mutations in vec(mutation(), 1..4),
        as_connected in any::<bool>(),
    ) {
        let mut bytes = encode(&packet, version).to_vec();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        let decoder = if as_connected { Some(version) } else { None };
        let _ = check_frame(&bytes, NO_LIMIT);
        let _ = decode_frame(Bytes::from(bytes.clone()), decoder);
        decode_all_and_reencode(BytesMut::from(&bytes[..]), decoder);
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic companions of the properties
// ---------------------------------------------------------------------------------------

/// Before CONNECT only CONNECT is accepted, whatever the version of the next packet.
#[test]
fn only_connect_is_accepted_before_connect() {
    for version in VERSIONS {
        let mut buf = encode(&Packet::PingReq, version);
        assert_eq!(
            decode(&mut buf, None, NO_LIMIT),
            Err(culex::protocol::DecodeError::FirstPacketNotConnect)
        );
    }
}

/// AUTH does not exist before MQTT 5: its packet type is refused.
#[test]
fn auth_is_refused_before_v5() {
    // AUTH, remaining length 0: Success with no properties in MQTT 5.
    let frame: &[u8] = &[0xF0, 0x00];
    for version in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1] {
        let mut buf = BytesMut::from(frame);
        assert_eq!(
            decode(&mut buf, Some(version), NO_LIMIT),
            Err(culex::protocol::DecodeError::InvalidPacketType(15))
        );
    }
    let mut buf = BytesMut::from(frame);
    assert_eq!(
        decode(&mut buf, Some(ProtocolVersion::V5), NO_LIMIT),
        Ok(Some(Packet::Auth(Box::new(Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        }))))
    );
}

/// A remaining length at its 4-byte maximum frames, one past it is refused.
#[test]
fn remaining_length_limits() {
    // 0xFF 0xFF 0xFF 0x7F = 268,435,455, the largest remaining length.
    let header: &[u8] = &[0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    assert_eq!(
        check_frame(header, NO_LIMIT),
        Ok(FrameStatus::NeedMore {
            at_least_bytes: MAX_REMAINING_LENGTH
        })
    );
    // A fifth length byte is never valid.
    let too_long: &[u8] = &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(
        check_frame(too_long, NO_LIMIT),
        Err(culex::protocol::DecodeError::VarIntTooLong)
    );
    // 0x80 0x00 is zero in two bytes: not the shortest form.
    let not_minimal: &[u8] = &[0xC0, 0x80, 0x00];
    assert_eq!(
        check_frame(not_minimal, NO_LIMIT),
        Err(culex::protocol::DecodeError::VarIntNotMinimal)
    );
}
