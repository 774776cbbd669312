//! One shared-subscription group (`$share/{group}/{filter}`) as one shard sees it: this shard's
//! members and, per other shard, how many members it has there. The publishing shard picks one
//! target per message in proportion to member counts; a shard that receives a shared message
//! from another picks one of its own members.

use super::trie::{SharedTarget, Subscribers, SubscriptionEntry};
use super::ShardId;
use crate::protocol::TopicFilter;

/// A group under one filter node of the trie.
#[derive(Debug)]
pub(crate) struct SharedGroup<S> {
    /// The group name, the `{group}` of `$share/{group}/{filter}`.
    pub(crate) name: Box<str>,
    /// The whole `$share/{group}/{filter}`, handed out with every match.
    pub(crate) filter: TopicFilter,
    pub(crate) local: Subscribers<S>,
    /// Other shards with members, and how many: the weights of the choice.
    remote: Vec<(ShardId, u32)>,
    remote_total: u64,
    /// Counts the messages routed through this group. Message `t` goes to slot
    /// `t % total_members`, slots `0..local` being local members in order and the rest the
    /// remote shards' blocks, so over any `total_members` consecutive messages each member's
    /// share is exact, and the choice is deterministic given the state.
    ticket: u64,
    /// Round-robin position for messages another shard sent here to be given to one member.
    local_cursor: usize,
}

impl<S: Copy + Eq + std::hash::Hash> SharedGroup<S> {
    pub(crate) fn new(name: &str, filter: TopicFilter) -> Self {
        SharedGroup {
            name: name.into(),
            filter,
            local: Subscribers::default(),
            remote: Vec::new(),
            remote_total: 0,
            ticket: 0,
            local_cursor: 0,
        }
    }

    /// No member anywhere: the group can be dropped.
    pub(crate) fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    /// Records that `shard` now has `count` members (zero: none).
    pub(crate) fn set_remote(&mut self, shard: ShardId, count: u32) {
        match self.remote.iter().position(|&(s, _)| s == shard) {
            Some(i) => {
                self.remote_total -= u64::from(self.remote[i].1);
                if count == 0 {
                    self.remote.swap_remove(i);
                } else {
                    self.remote[i].1 = count;
                }
            }
            None if count > 0 => self.remote.push((shard, count)),
            None => {}
        }
        self.remote_total += u64::from(count);
        debug_assert_eq!(
            self.remote_total,
            self.remote.iter().map(|&(_, c)| u64::from(c)).sum::<u64>()
        );
    }

    /// One target for the next message: a local member or another shard, weighted by members.
    pub(crate) fn choose(&mut self) -> Option<SharedTarget<S>> {
        let local_count = self.local.len() as u64;
        let total = local_count + self.remote_total;
        if total == 0 {
            return None;
        }
        let mut slot = self.ticket % total;
        self.ticket = self.ticket.wrapping_add(1);
        if slot < local_count {
            // slot < local.len(), which is a usize.
            let (subscriber, entry) = self.local.as_slice()[slot as usize];
            return Some(SharedTarget::Local(subscriber, entry));
        }
        slot -= local_count;
        for &(shard, count) in &self.remote {
            if slot < u64::from(count) {
                return Some(SharedTarget::Remote(shard));
            }
            slot -= u64::from(count);
        }
        unreachable!("slot < total, and total is the sum of the local and remote counts")
    }

    /// One local member, in turn.
    pub(crate) fn pick_local(&mut self) -> Option<(S, SubscriptionEntry)> {
        let members = self.local.as_slice();
        if members.is_empty() {
            return None;
        }
        let picked = members[self.local_cursor % members.len()];
        self.local_cursor = self.local_cursor.wrapping_add(1);
        Some(picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> SubscriptionEntry {
        SubscriptionEntry {
            options: Default::default(),
            subscription_id: None,
        }
    }

    /// Targets of `messages` consecutive choices, counted: (local members, per remote shard).
    fn tally(group: &mut SharedGroup<u32>, messages: usize) -> (usize, Vec<(u16, usize)>) {
        let mut local = 0;
        let mut remote: Vec<(u16, usize)> = Vec::new();
        for _ in 0..messages {
            match group.choose().expect("the group has members") {
                SharedTarget::Local(..) => local += 1,
                SharedTarget::Remote(shard) => match remote.iter_mut().find(|(s, _)| *s == shard.0)
                {
                    Some((_, n)) => *n += 1,
                    None => remote.push((shard.0, 1)),
                },
            }
        }
        remote.sort_unstable();
        (local, remote)
    }

    #[test]
    fn remote_counts_are_replaced_not_added() {
        let filter = TopicFilter::parse("$share/g/t").expect("valid");
        let mut group: SharedGroup<u32> = SharedGroup::new("g", filter);
        assert_eq!(group.choose(), None);
        group.local.upsert(1, entry());
        group.set_remote(ShardId(2), 2);
        group.set_remote(ShardId(2), 4);
        group.set_remote(ShardId(9), 5);
        // 1 + 4 + 5 members: 100 messages are ten full rounds.
        assert_eq!(tally(&mut group, 100), (10, vec![(2, 40), (9, 50)]));
        group.set_remote(ShardId(9), 0);
        group.local.remove(1);
        assert_eq!(tally(&mut group, 8), (0, vec![(2, 8)]));
        assert_eq!(group.pick_local(), None);
        group.set_remote(ShardId(2), 0);
        assert!(group.is_empty());
        assert_eq!(group.choose(), None);
    }
}
