//! Codec benchmark: decode, encode and decode+encode of the broker's hot packet, a QoS 1
//! PUBLISH with a 3-level topic and a 64-byte payload (MQTT 3.1.1 and 5), and of an MQTT 5
//! CONNECT with properties. Target: decode+encode of that PUBLISH under 150 ns.
//!
//! Decoding reads from a buffer holding thousands of back-to-back frames, as a connection's
//! read buffer does under load, so the one-off cost of a fresh buffer is not charged to
//! every packet; the decoded packet is dropped inside the timed loop, as the broker drops it.
//! Encoding appends to one reused output buffer, cleared per packet.
//!
//! Run: `cargo bench --bench codec` (release profile with symbols: `perf record` works on
//! the bench binary). On a busy machine, count instead: `CULEX_CODEC_COUNT=SCENARIO/OP/N
//! BENCH_BINARY` runs one operation N times and prints its thread CPU time per operation,
//! and under `valgrind --tool=callgrind --toggle-collect='*count_loop*'` the Ir total / N
//! is instructions per operation (see `count_mode`).

use std::hint::black_box;
use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{criterion_group, Criterion};

use culex::protocol::{
    decode, ClientId, Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, Publish, QoS,
    TopicName, UserProperty, Will, WillProperties,
};

/// Frames per refill of the read buffer: large enough that refilling (untimed) is rare,
/// small enough to stay in cache like a real read buffer (64 KiB for the PUBLISH).
const FRAMES_PER_BUFFER: u64 = 750;

const MAX_PACKET_SIZE_BYTES: u32 = 1 << 20;

fn publish_qos1() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::parse("sensors/room1/temperature").expect("valid topic"),
        packet_id: PacketId::new(4242),
        properties: Default::default(),
        payload: Bytes::from(vec![0xA5; 64]),
    })
}

fn connect_v5() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol_version: ProtocolVersion::V5,
        clean_start: true,
        keep_alive_s: 60,
        client_id: ClientId::new("bench-client-0001").expect("no NUL"),
        will: Some(Will {
            topic: TopicName::parse("clients/bench-client-0001/status").expect("valid topic"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval_s: Some(5),
                ..WillProperties::default()
            },
        }),
        user_name: Some(ByteString::from_static("bench")),
        password: Some(Bytes::from_static(b"secret")),
        properties: ConnectProperties {
            session_expiry_interval_s: Some(3600),
            receive_maximum: NonZeroU16::new(100),
            maximum_packet_size_bytes: NonZeroU32::new(1 << 20),
            topic_alias_maximum: Some(16),
            request_problem_information: Some(true),
            user_properties: vec![UserProperty {
                name: ByteString::from_static("region"),
                value: ByteString::from_static("eu-west"),
            }],
            ..ConnectProperties::default()
        },
    }))
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .expect("bench packets encode");
    buf.to_vec()
}

/// The decoder state a packet arrives in: CONNECT before any version is known.
fn decoder_version(packet: &Packet, version: ProtocolVersion) -> Option<ProtocolVersion> {
    match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    }
}

/// Times `per_packet` over `iters` packets decoded from back-to-back frames; refilling the
/// read buffer is not timed.
fn time_from_read_buffer(
    frame: &[u8],
    iters: u64,
    mut per_packet: impl FnMut(&mut BytesMut),
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let count = remaining.min(FRAMES_PER_BUFFER);
        let frame_count = usize::try_from(count).expect("at most FRAMES_PER_BUFFER");
        let mut buf = BytesMut::with_capacity(frame.len() * frame_count);
        for _ in 0..count {
            buf.extend_from_slice(frame);
        }
        let start = Instant::now();
        for _ in 0..count {
            per_packet(&mut buf);
        }
        elapsed += start.elapsed();
        remaining -= count;
    }
    elapsed
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, version: ProtocolVersion) {
    let frame = encoded(packet, version);
    let decoder = decoder_version(packet, version);
    let mut group = c.benchmark_group(name);

    group.bench_function("decode", |b| {
        b.iter_custom(|iters| {
            time_from_read_buffer(&frame, iters, |buf| {
                let packet = decode(buf, decoder, MAX_PACKET_SIZE_BYTES)
                    .expect("bench frame is valid")
                    .expect("bench frame is whole");
                black_box(packet);
            })
        })
    });

    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(packet)
                .encode(version, &mut out)
                .expect("bench packet encodes");
            black_box(&out);
        })
    });

    group.bench_function("decode+encode", |b| {
        b.iter_custom(|iters| {
            time_from_read_buffer(&frame, iters, |buf| {
                let packet = decode(buf, decoder, MAX_PACKET_SIZE_BYTES)
                    .expect("bench frame is valid")
                    .expect("bench frame is whole");
                out.clear();
                packet
                    .encode(version, &mut out)
                    .expect("bench packet encodes");
                black_box(&out);
            })
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    for (name, packet, version) in scenarios() {
        bench_packet(c, name, &packet, version);
    }
}

fn scenarios() -> [(&'static str, Packet, ProtocolVersion); 3] {
    [
        (
            "publish_qos1_64B_v311",
            publish_qos1(),
            ProtocolVersion::V3_1_1,
        ),
        ("publish_qos1_64B_v5", publish_qos1(), ProtocolVersion::V5),
        ("connect_v5_properties", connect_v5(), ProtocolVersion::V5),
    ]
}

/// What `CULEX_CODEC_COUNT` runs: for counting instructions, which stay stable on this
/// shared, noisy machine where nanoseconds do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Decode,
    Encode,
    DecodeEncode,
}

/// `CULEX_CODEC_COUNT=SCENARIO/OP/N` (OP: decode, encode, decode+encode) runs that
/// operation N times inside `count_loop` and nothing else, for
/// `valgrind --tool=callgrind --toggle-collect='*count_loop*' BENCH_BINARY`:
/// the Ir total divided by N is instructions per operation.
fn count_mode(spec: &str) {
    let mut parts = spec.split('/');
    let (Some(name), Some(op), Some(count)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("CULEX_CODEC_COUNT wants SCENARIO/OP/N, got {spec:?}");
    };
    let op = match op {
        "decode" => Op::Decode,
        "encode" => Op::Encode,
        "decode+encode" => Op::DecodeEncode,
        other => panic!("unknown op {other:?}"),
    };
    let count: usize = count.parse().expect("N is a number");
    let (_, packet, version) = scenarios()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("unknown scenario {name:?}"));
    let frame = encoded(&packet, version);
    let mut out = BytesMut::with_capacity(4096);
    let decoder = decoder_version(&packet, version);
    // Refill a cache-sized read buffer between timed runs, as in the criterion benches.
    let chunk = usize::try_from(FRAMES_PER_BUFFER).expect("small constant");
    let mut cpu_ns = 0;
    let mut remaining = count;
    while remaining > 0 {
        let frames = remaining.min(chunk);
        let mut buf = BytesMut::with_capacity(frame.len() * frames);
        for _ in 0..frames {
            buf.extend_from_slice(&frame);
        }
        let start_ns = thread_cpu_time_ns();
        count_loop(&mut buf, frames, op, &packet, version, decoder, &mut out);
        cpu_ns += thread_cpu_time_ns() - start_ns;
        remaining -= frames;
    }
    // CPU time, not wall time: on a shared machine the thread's time off the CPU is not
    // charged to the codec (cache pollution from neighbours still is).
    println!(
        "{name}/{op:?}: {count} operations, {:.1} ns of thread CPU time each",
        cpu_ns as f64 / count as f64
    );
}

/// This thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_time_ns() -> i128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is supported by every Linux kernel this broker runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec)
}

#[inline(never)]
fn count_loop(
    buf: &mut BytesMut,
    count: usize,
    op: Op,
    packet: &Packet,
    version: ProtocolVersion,
    decoder: Option<ProtocolVersion>,
    out: &mut BytesMut,
) {
    for _ in 0..count {
        if op == Op::Encode {
            out.clear();
            packet.encode(version, out).expect("bench packet encodes");
            black_box(&out);
            continue;
        }
        let decoded = decode(buf, decoder, MAX_PACKET_SIZE_BYTES)
            .expect("bench frame is valid")
            .expect("bench frame is whole");
        if op == Op::DecodeEncode {
            out.clear();
            decoded.encode(version, out).expect("bench packet encodes");
            black_box(&out);
        }
        black_box(decoded);
    }
}

criterion_group! {
    name = benches;
    // Short runs: the machine is shared; the figures are stable to a few percent at this size.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = codec
}

fn main() {
    if let Ok(spec) = std::env::var("CULEX_CODEC_COUNT") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
