//! Subscription trie (local subscribers plus which other shards care), shared-subscription
//! groups, and the retained store. Pure data structures: no I/O, no clock reads (time comes in
//! as `Instant` arguments), no glommio.
//!
//! - [`placement`]: which shard is a client's home, which shard owns a retained topic.
//! - [`trie`]: one shard's replica of the subscription trie; one walk per publish.
//! - `route_cache`: the trie's recent walk results by topic, cleared on every change.
//! - [`shared`]: the members of one `$share/{group}/{filter}` group and the weighted choice.
//! - [`retained`]: this shard's partition of the retained messages, indexed by topic level.

pub mod placement;
pub mod retained;
mod route_cache;
pub mod shared;
pub mod trie;

pub use placement::{home_shard, retained_owner};
pub use retained::{RetainedFull, RetainedMessage, RetainedStore};
pub use trie::{
    Matches, SharedMatch, SharedTarget, SubscribeOutcome, SubscriptionEntry, SubscriptionTrie,
    UnsubscribeOutcome,
};

/// A shard's index, `0..shard_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// The most shards a [`ShardSet`] (and so the broker) can name.
pub const MAX_SHARDS: u16 = 1024;

/// A small set of [`ShardId`]s, one bit each. Empty sets hold no allocation, and `clear` keeps
/// the words so that a reused set (as in [`Matches`]) never allocates in the steady state.
#[derive(Debug, Clone, Default)]
pub struct ShardSet {
    words: Vec<u64>,
}

impl ShardSet {
    pub const fn new() -> Self {
        ShardSet { words: Vec::new() }
    }

    /// Adds `shard`; true if it was not there yet.
    pub fn insert(&mut self, shard: ShardId) -> bool {
        debug_assert!(shard.0 < MAX_SHARDS, "shard {shard:?} beyond MAX_SHARDS");
        let (word, bit) = Self::position(shard);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let was_set = self.words[word] & bit != 0;
        self.words[word] |= bit;
        !was_set
    }

    /// Removes `shard`; true if it was there.
    pub fn remove(&mut self, shard: ShardId) -> bool {
        let (word, bit) = Self::position(shard);
        match self.words.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, shard: ShardId) -> bool {
        let (word, bit) = Self::position(shard);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Empties the set, keeping its capacity.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// Adds every shard of `other`.
    pub fn union_with(&mut self, other: &ShardSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            *mine |= theirs;
        }
    }

    /// The shards in ascending order.
    pub fn iter(&self) -> ShardSetIter<'_> {
        ShardSetIter {
            words: &self.words,
            index: 0,
            current: self.words.first().copied().unwrap_or(0),
        }
    }

    fn position(shard: ShardId) -> (usize, u64) {
        (usize::from(shard.0 / 64), 1u64 << (shard.0 % 64))
    }
}

/// Two sets are equal when they hold the same shards, whatever their capacity.
impl PartialEq for ShardSet {
    fn eq(&self, other: &Self) -> bool {
        let longest = self.words.len().max(other.words.len());
        (0..longest).all(|i| {
            self.words.get(i).copied().unwrap_or(0) == other.words.get(i).copied().unwrap_or(0)
        })
    }
}

impl Eq for ShardSet {}

impl FromIterator<ShardId> for ShardSet {
    fn from_iter<I: IntoIterator<Item = ShardId>>(iter: I) -> Self {
        let mut set = ShardSet::new();
        iter.into_iter().for_each(|shard| {
            set.insert(shard);
        });
        set
    }
}

impl<'a> IntoIterator for &'a ShardSet {
    type Item = ShardId;
    type IntoIter = ShardSetIter<'a>;
    fn into_iter(self) -> ShardSetIter<'a> {
        self.iter()
    }
}

/// Iterates a [`ShardSet`] in ascending order.
#[derive(Debug, Clone)]
pub struct ShardSetIter<'a> {
    words: &'a [u64],
    index: usize,
    current: u64,
}

impl Iterator for ShardSetIter<'_> {
    type Item = ShardId;
    fn next(&mut self) -> Option<ShardId> {
        loop {
            if self.current != 0 {
                let bit = self.current.trailing_zeros();
                self.current &= self.current - 1;
                // index < MAX_SHARDS / 64, so the id fits in u16.
                return Some(ShardId((self.index * 64) as u16 + bit as u16));
            }
            self.index += 1;
            self.current = *self.words.get(self.index)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_set_inserts_removes_and_iterates_in_order() {
        let mut set = ShardSet::new();
        assert!(set.is_empty());
        assert!(set.insert(ShardId(700)));
        assert!(set.insert(ShardId(3)));
        assert!(set.insert(ShardId(64)));
        assert!(!set.insert(ShardId(3)));
        assert_eq!(set.len(), 3);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![ShardId(3), ShardId(64), ShardId(700)]
        );
        assert!(set.remove(ShardId(64)));
        assert!(!set.remove(ShardId(64)));
        assert!(!set.contains(ShardId(64)));
        assert!(set.contains(ShardId(700)));
        set.clear();
        assert!(set.is_empty());
        assert_eq!(set, ShardSet::new());
        assert_eq!(set.iter().next(), None);
    }

    #[test]
    fn shard_set_union_and_equality_ignore_capacity() {
        let a: ShardSet = [ShardId(1), ShardId(1023)].into_iter().collect();
        let mut b: ShardSet = [ShardId(2)].into_iter().collect();
        b.union_with(&a);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![ShardId(1), ShardId(2), ShardId(1023)]
        );
        b.remove(ShardId(1023));
        let c: ShardSet = [ShardId(1), ShardId(2)].into_iter().collect();
        assert_eq!(b, c);
    }
}
