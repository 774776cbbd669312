//! Where things live: a client's home shard and the shard owning a retained topic. Both use a
//! fixed-seed hash (FNV-1a, then a murmur3 finaliser to spread the bits), so every shard and
//! every process agrees on the answer — never `RandomState`.

use super::ShardId;
use crate::protocol::TopicName;

/// The shard a client's session lives on.
pub fn home_shard(client_id: &str, shard_count: u16) -> ShardId {
    pick(stable_hash(client_id.as_bytes()), shard_count)
}

/// The shard holding the retained message of `topic`.
pub fn retained_owner(topic: &TopicName, shard_count: u16) -> ShardId {
    pick(stable_hash(topic.as_str().as_bytes()), shard_count)
}

/// FNV-1a (64-bit) of `bytes`, finalised with murmur3's `fmix64` so that the high bits, which
/// `pick` uses, depend on every input byte.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a(bytes))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Maps a hash onto `0..shard_count` by multiply-high (uniform, no division). A count of zero
/// is a caller bug; it is treated as one shard rather than dividing by zero.
fn pick(hash: u64, shard_count: u16) -> ShardId {
    debug_assert!(shard_count > 0, "shard_count must be at least 1");
    let count = u128::from(shard_count.max(1));
    // (hash * count) >> 64 < count <= u16::MAX, so it fits.
    ShardId(((u128::from(hash) * count) >> 64) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn placement_is_stable_across_processes() {
        // Computed independently (a few lines of Python doing FNV-1a, fmix64, multiply-high).
        assert_eq!(stable_hash(b"client-1"), 0xf93b_d2c1_6ac6_882d);
        // Pinned values: if these change, clients move shards between releases and a
        // persisted session would be looked for on the wrong shard.
        assert_eq!(home_shard("client-1", 8), ShardId(PINNED_CLIENT_1_OF_8));
        let topic = TopicName::parse("sensors/42/temp").expect("valid topic");
        assert_eq!(retained_owner(&topic, 8), ShardId(PINNED_SENSOR_TOPIC_OF_8));
        assert_eq!(home_shard("anything", 1), ShardId(0));
    }

    const PINNED_CLIENT_1_OF_8: u16 = 7;
    const PINNED_SENSOR_TOPIC_OF_8: u16 = 6;

    #[test]
    fn placement_spreads_ids_uniformly() {
        for shard_count in [2u16, 3, 8, 12] {
            let ids = 60_000u32;
            let mut per_shard = vec![0u32; usize::from(shard_count)];
            for i in 0..ids {
                let shard = home_shard(&format!("client-{i}"), shard_count);
                per_shard[usize::from(shard.0)] += 1;
            }
            let expected = f64::from(ids) / f64::from(shard_count);
            // Chi-square against uniform; the 0.999 quantile for 11 degrees of freedom is 31.3.
            let chi_square: f64 = per_shard
                .iter()
                .map(|&n| (f64::from(n) - expected).powi(2) / expected)
                .sum();
            assert!(
                chi_square < 32.0,
                "{shard_count} shards: {per_shard:?}, chi² {chi_square}"
            );
        }
    }
}
