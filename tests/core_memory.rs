//! What the core holds per idle connection (issue #5's idle target: 19,500 MQTT 3.1.1
//! clients, keep alive 60 s, clean session, no subscriptions). The core is driven
//! directly, no sockets and no harness, under a counting allocator, so every live byte
//! after the storm is the core's: the boxed connection and session, the client id, and the
//! shard's tables. Blocks are also counted as mimalloc sizes them (its size classes), since
//! that is what the broker pays.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::BytesMut;
use culex::broker::{ConnId, CoreConfig, Output, ShardCore, ShardId};
use culex::protocol::{ClientId, Connect, ConnectProperties, Packet, ProtocolVersion};

/// The idle scenario size: its tables land where the broker's do (hashbrown grows
/// to 32,768 buckets for 19,500 entries).
const CONNECTIONS: u32 = 19_500;
/// What the core may hold per idle connection, in mimalloc blocks. Measured 306 B: a
/// 128-B `Conn`, a 128-B `Client` (session and client id inside) and 50 B of table slots.
/// It was 676 B before they were shrunk (224 + 256 + two 24-B blocks for the id + 148 B).
const CORE_BYTES_PER_IDLE_CONNECTION_MAX: usize = 315;

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCK_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Live blocks by mimalloc block size (index: block bytes / 8), up to 4 KiB.
static LIVE_BLOCKS: [AtomicUsize; 513] = [const { AtomicUsize::new(0) }; 513];

fn count_block(size: usize, delta: isize) {
    let block = mimalloc_block_bytes(size);
    if let Some(count) = LIVE_BLOCKS.get(block / 8) {
        if delta > 0 {
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is passed on unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LIVE_BLOCK_BYTES.fetch_add(mimalloc_block_bytes(layout.size()), Ordering::Relaxed);
        count_block(layout.size(), 1);
        // SAFETY: the caller's layout is passed through as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCK_BYTES.fetch_sub(mimalloc_block_bytes(layout.size()), Ordering::Relaxed);
        count_block(layout.size(), -1);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The block mimalloc hands out for `size` bytes: 8-B steps up to 64 B, then four size
/// classes per doubling (80, 96, 112, 128, 160, 192, 224, 256, 320, ...).
fn mimalloc_block_bytes(size: usize) -> usize {
    let words = size.div_ceil(8).max(1);
    if words <= 8 {
        return words * 8;
    }
    let top_bit = usize::BITS - 1 - (words - 1).leading_zeros();
    let step = 1usize << (top_bit - 2);
    words.div_ceil(step) * step * 8
}

fn connect_bytes(n: u32) -> BytesMut {
    let connect = Connect {
        protocol_version: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive_s: 60,
        // The loadgen's ids for `conn` clients.
        client_id: ClientId::new(format!("culex-lg-conn-{n}")).expect("valid id"),
        will: None,
        user_name: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(ProtocolVersion::V3_1_1, &mut bytes)
        .expect("a CONNECT encodes");
    bytes
}

#[test]
fn an_idle_connection_costs_the_core_little() {
    let now = Instant::now();
    let mut core = ShardCore::new(ShardId(0), 1, CoreConfig::default());
    let connects: Vec<BytesMut> = (0..CONNECTIONS).map(connect_bytes).collect();
    let before = (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCK_BYTES.load(Ordering::Relaxed),
    );
    let blocks_before: Vec<usize> = LIVE_BLOCKS
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    for (n, connect) in (0..CONNECTIONS).zip(&connects) {
        let conn = ConnId(n);
        core.connection_opened(conn, now);
        core.received(conn, connect, now);
        while let Some(output) = core.poll_output() {
            match output {
                Output::Writable { conn } => drop(core.take_outgoing(conn)),
                other => panic!("an accepted CONNECT asks only for a write, got {other:?}"),
            }
        }
    }
    let live = LIVE_BYTES.load(Ordering::Relaxed) - before.0;
    let blocks = LIVE_BLOCK_BYTES.load(Ordering::Relaxed) - before.1;
    let per_conn = |total: usize| total / CONNECTIONS as usize;
    eprintln!(
        "core per idle connection: {} B requested, {} B in mimalloc blocks",
        per_conn(live),
        per_conn(blocks)
    );
    // The real block sizes: one line per size class most connections hold a block of,
    // then the rest (the tables) together.
    let mut small_total = 0;
    for (index, count) in LIVE_BLOCKS.iter().enumerate() {
        let count = count
            .load(Ordering::Relaxed)
            .saturating_sub(blocks_before[index]);
        if count >= CONNECTIONS as usize / 2 {
            eprintln!("  {count} blocks of {} B", index * 8);
            small_total += count * index * 8;
        }
    }
    eprintln!(
        "  the rest (tables): {} B per connection",
        per_conn(blocks.saturating_sub(small_total))
    );
    assert_eq!(core.session_count(), CONNECTIONS as usize);
    assert_eq!(core.stats().connections_current, u64::from(CONNECTIONS));
    assert!(
        per_conn(blocks) <= CORE_BYTES_PER_IDLE_CONNECTION_MAX,
        "{} B per idle connection",
        per_conn(blocks)
    );
}

#[test]
fn block_sizes_follow_mimalloc_classes() {
    let classes = [
        (1, 8),
        (24, 24),
        (64, 64),
        (65, 80),
        (128, 128),
        (129, 160),
        (224, 224),
        (264, 320),
        (512, 512),
    ];
    for (size, block) in classes {
        assert_eq!(mimalloc_block_bytes(size), block, "{size} B");
    }
}
