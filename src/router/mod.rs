//! Subscription trie (local subscribers plus which other shards care), shared-subscription
//! groups, and the retained store. Pure data structures.

/// A shard's index, `0..shard_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);
