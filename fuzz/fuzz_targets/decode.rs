//! Fuzz target `decode`: arbitrary bytes through `check_frame`, `decode` and `decode_frame`
//! in every decoder state (before CONNECT, and after a 3.1, 3.1.1 or 5.0 CONNECT). Nothing
//! may panic, and whatever decodes must re-encode to bytes that decode to the same packet.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

use culex::protocol::{check_frame, decode, decode_frame, Packet, ProtocolVersion};

/// No size limit, plus a small one so that the refusal path runs too.
const LIMITS_BYTES: [u32; 2] = [u32::MAX, 64];

fuzz_target!(|input: &[u8]| {
    // The first byte picks the decoder state, so one corpus covers all four.
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    let version = match selector % 4 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    };
    for limit in LIMITS_BYTES {
        let _ = check_frame(bytes, limit);
    }
    let _ = decode_frame(Bytes::copy_from_slice(bytes), version);

    let mut buf = BytesMut::from(bytes);
    let mut version = version;
    while let Ok(Some(packet)) = decode(&mut buf, version, u32::MAX) {
        let packet_version = match (&packet, version) {
            (Packet::Connect(connect), _) => connect.protocol_version,
            (_, Some(version)) => version,
            (_, None) => panic!("decode accepted {packet:?} before CONNECT"),
        };
        reencode(&packet, packet_version);
        version = Some(packet_version);
    }
});

/// Whatever decoded must encode, with `encoded_len` exact, and decode back unchanged.
fn reencode(packet: &Packet, version: ProtocolVersion) {
    let mut again = BytesMut::new();
    packet
        .encode(version, &mut again)
        .expect("a decoded packet always encodes");
    assert_eq!(
        packet.encoded_len(version),
        again.len(),
        "encoded_len is not exact"
    );
    let decoder = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    let redecoded = decode(&mut again, decoder, u32::MAX);
    assert_eq!(
        redecoded,
        Ok(Some(packet.clone())),
        "re-encoding changed the packet"
    );
    assert!(again.is_empty(), "re-encoding left {} bytes", again.len());
}
