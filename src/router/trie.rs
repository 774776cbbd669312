//! One shard's replica of the subscription trie. Per filter it holds this shard's local
//! subscribers, the other shards that have subscribers to the same filter, and the shared
//! groups under it. A publish is one iterative walk ([`SubscriptionTrie::route`]): local
//! subscribers, one copy per interested shard, one target per shared group.
//!
//! Nodes live in an arena indexed by `u32` and are freed as soon as they hold nothing, so
//! the trie's size follows the live filters. Walks use an explicit stack, never recursion:
//! depth is bounded by the caller's `max_topic_levels`, but the trie must not trust that.

use std::fmt::Debug;
use std::hash::Hash;
use std::num::NonZeroU32;

use rustc_hash::FxHashMap;

use super::route_cache::RouteCache;
use super::shared::SharedGroup;
use super::{ShardId, ShardSet};
use crate::protocol::{SubscriptionOptions, TopicFilter, TopicName};

/// What one subscriber asked for with one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionEntry {
    pub options: SubscriptionOptions,
    pub subscription_id: Option<NonZeroU32>,
}

/// The result of [`SubscriptionTrie::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// The subscriber already had this filter; its entry was replaced.
    pub replaced: bool,
    /// This shard's subscriber count for the filter (for a shared filter: the group's local
    /// member count) went 0→1: broadcast a route add.
    pub first_local: bool,
    /// This shard's count after the change.
    pub local_members: u32,
}

/// The result of [`SubscriptionTrie::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeOutcome {
    /// The subscriber had this filter.
    pub removed: bool,
    /// The count went 1→0: broadcast a route removal.
    pub last_local: bool,
    /// This shard's count after the change.
    pub local_members: u32,
}

/// Where one message for a shared group goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedTarget<S> {
    /// A member on this shard.
    Local(S, SubscriptionEntry),
    /// Another shard: send it one copy; it picks a member with
    /// [`SubscriptionTrie::pick_shared_member`].
    Remote(ShardId),
}

/// One matching shared group and the target chosen for this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMatch<S> {
    /// The full `$share/{group}/{filter}`.
    pub filter: TopicFilter,
    pub target: SharedTarget<S>,
}

/// The result of one walk. Reuse one across calls: `route` clears it but keeps its capacity.
#[derive(Debug, Clone)]
pub struct Matches<S> {
    /// Every local (subscriber, entry) whose non-shared filter matched; a subscriber appears
    /// once per matching filter.
    pub local: Vec<(S, SubscriptionEntry)>,
    /// Other shards with a matching non-shared filter, each once.
    pub remote: ShardSet,
    /// One entry per matching shared group.
    pub shared: Vec<SharedMatch<S>>,
}

impl<S> Matches<S> {
    pub fn new() -> Self {
        Matches {
            local: Vec::new(),
            remote: ShardSet::new(),
            shared: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.local.clear();
        self.remote.clear();
        self.shared.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty() && self.shared.is_empty()
    }
}

impl<S> Default for Matches<S> {
    fn default() -> Self {
        Matches::new()
    }
}

type NodeId = u32;
const ROOT: NodeId = 0;

/// Above this many subscribers on one filter, lookups go through a hash index instead of a
/// scan (a fan-out filter may hold thousands; most hold one or two and stay allocation-light).
const INDEX_THRESHOLD: usize = 16;

/// The subscribers of one filter (or one shared group) on this shard, in a dense list that a
/// walk copies with one `extend_from_slice`.
#[derive(Debug)]
pub(crate) struct Subscribers<S> {
    list: Vec<(S, SubscriptionEntry)>,
    /// Position of each subscriber in `list`; empty while the list is short.
    index: FxHashMap<S, u32>,
}

impl<S> Default for Subscribers<S> {
    fn default() -> Self {
        Subscribers {
            list: Vec::new(),
            index: FxHashMap::default(),
        }
    }
}

impl<S: Copy + Eq + Hash> Subscribers<S> {
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[(S, SubscriptionEntry)] {
        &self.list
    }

    fn position(&self, subscriber: S) -> Option<usize> {
        if self.index.is_empty() {
            self.list.iter().position(|&(s, _)| s == subscriber)
        } else {
            self.index.get(&subscriber).map(|&i| i as usize)
        }
    }

    /// Adds or replaces; true if replaced.
    pub(crate) fn upsert(&mut self, subscriber: S, entry: SubscriptionEntry) -> bool {
        if let Some(i) = self.position(subscriber) {
            self.list[i].1 = entry;
            return true;
        }
        self.list.push((subscriber, entry));
        if !self.index.is_empty() {
            self.index
                .insert(subscriber, Self::slot(self.list.len() - 1));
        } else if self.list.len() > INDEX_THRESHOLD {
            self.index = (self.list.iter().enumerate())
                .map(|(i, &(s, _))| (s, Self::slot(i)))
                .collect();
        }
        false
    }

    /// Removes; true if it was there.
    pub(crate) fn remove(&mut self, subscriber: S) -> bool {
        let Some(i) = self.position(subscriber) else {
            return false;
        };
        self.list.swap_remove(i);
        if !self.index.is_empty() {
            self.index.remove(&subscriber);
            if let Some(&(moved, _)) = self.list.get(i) {
                self.index.insert(moved, Self::slot(i));
            }
        }
        debug_assert!(self.index.is_empty() || self.index.len() == self.list.len());
        true
    }

    fn slot(i: usize) -> u32 {
        u32::try_from(i).expect("fewer than 2^32 subscribers to one filter")
    }
}

#[derive(Debug)]
struct Node<S> {
    /// Children by literal level.
    children: FxHashMap<Box<str>, NodeId>,
    /// The `+` child.
    plus: Option<NodeId>,
    /// The `#` child (always a leaf).
    hash: Option<NodeId>,
    local: Subscribers<S>,
    remote: ShardSet,
    shared: Vec<SharedGroup<S>>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node {
            children: FxHashMap::default(),
            plus: None,
            hash: None,
            local: Subscribers::default(),
            remote: ShardSet::new(),
            shared: Vec::new(),
        }
    }
}

impl<S> Node<S> {
    fn is_unused(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.local.list.is_empty()
            && self.remote.is_empty()
            && self.shared.is_empty()
    }

    fn child(&self, level: &str) -> Option<NodeId> {
        match level {
            "+" => self.plus,
            "#" => self.hash,
            literal => self.children.get(literal).copied(),
        }
    }
}

/// One shard's subscription trie. `S` is the broker core's key for a local session.
#[derive(Debug)]
pub struct SubscriptionTrie<S> {
    nodes: Vec<Node<S>>,
    free: Vec<NodeId>,
    /// Local subscriptions held, shared memberships included.
    local_count: usize,
    /// Scratch for walks, kept to avoid allocating per call.
    stack: Vec<(NodeId, u32)>,
    levels: Vec<(u32, u32)>,
    path: Vec<NodeId>,
    /// Recent walk results; every method that changes the trie clears it.
    cache: RouteCache<S>,
}

impl<S: Copy + Eq + Hash + Debug> Default for SubscriptionTrie<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Copy + Eq + Hash + Debug> SubscriptionTrie<S> {
    pub fn new() -> Self {
        SubscriptionTrie {
            nodes: vec![Node::default()],
            free: Vec::new(),
            local_count: 0,
            stack: Vec::new(),
            levels: Vec::new(),
            path: Vec::new(),
            cache: RouteCache::default(),
        }
    }

    /// Adds or replaces `subscriber`'s subscription to `filter`; `$share/g/f` joins group `g`
    /// under `f`.
    pub fn subscribe(
        &mut self,
        filter: &TopicFilter,
        subscriber: S,
        entry: SubscriptionEntry,
    ) -> SubscribeOutcome {
        self.cache.invalidate();
        let node = self.ensure_path(filter.matching_part());
        let node = &mut self.nodes[node as usize];
        let members = match filter.shared() {
            None => &mut node.local,
            Some(shared) => &mut group_entry(&mut node.shared, shared.group, filter).local,
        };
        let replaced = members.upsert(subscriber, entry);
        let local_members = count_u32(members.len());
        if !replaced {
            self.local_count += 1;
        }
        SubscribeOutcome {
            replaced,
            first_local: !replaced && local_members == 1,
            local_members,
        }
    }

    /// Removes `subscriber`'s subscription to `filter`, if it had one.
    pub fn unsubscribe(&mut self, filter: &TopicFilter, subscriber: S) -> UnsubscribeOutcome {
        self.cache.invalidate();
        let not_found = UnsubscribeOutcome {
            removed: false,
            last_local: false,
            local_members: 0,
        };
        let Some(node_id) = self.find_path(filter.matching_part()) else {
            return not_found;
        };
        let node = &mut self.nodes[node_id as usize];
        let (removed, local_members) = match filter.shared() {
            None => {
                let removed = node.local.remove(subscriber);
                (removed, node.local.len())
            }
            Some(shared) => {
                let Some(i) = node.shared.iter().position(|g| *g.name == *shared.group) else {
                    return not_found;
                };
                let group = &mut node.shared[i];
                let removed = group.local.remove(subscriber);
                let left = group.local.len();
                if group.is_empty() {
                    node.shared.swap_remove(i);
                }
                (removed, left)
            }
        };
        if removed {
            self.local_count -= 1;
            self.prune(filter.matching_part());
        }
        UnsubscribeOutcome {
            removed,
            last_local: removed && local_members == 0,
            local_members: count_u32(local_members),
        }
    }

    /// Another shard now has (`count > 0`) or no longer has (`count == 0`) subscribers to
    /// `filter`. For a shared filter `count` is that shard's member count in the group.
    pub fn set_remote(&mut self, filter: &TopicFilter, shard: ShardId, count: u32) {
        self.cache.invalidate();
        let node_id = if count > 0 {
            self.ensure_path(filter.matching_part())
        } else {
            match self.find_path(filter.matching_part()) {
                Some(node_id) => node_id,
                None => return,
            }
        };
        let node = &mut self.nodes[node_id as usize];
        match filter.shared() {
            None if count > 0 => {
                node.remote.insert(shard);
            }
            None => {
                node.remote.remove(shard);
            }
            Some(shared) if count > 0 => {
                group_entry(&mut node.shared, shared.group, filter).set_remote(shard, count);
            }
            Some(shared) => {
                if let Some(i) = node.shared.iter().position(|g| *g.name == *shared.group) {
                    node.shared[i].set_remote(shard, 0);
                    if node.shared[i].is_empty() {
                        node.shared.swap_remove(i);
                    }
                }
            }
        }
        if count == 0 {
            self.prune(filter.matching_part());
        }
    }

    /// One walk for a message published on this shard: clears `out`, then fills the local
    /// subscribers, the other interested shards, and one target per matching shared group.
    pub fn route(&mut self, topic: &TopicName, out: &mut Matches<S>) {
        self.walk(topic, out, true);
    }

    /// [`route`](Self::route), except that the commonest result, one local subscriber and
    /// nothing else, found in the route cache, is returned instead of filled into `out`
    /// (left as it was): a publish to a topic with one subscriber then needs no `Matches`.
    pub fn route_unless_one(
        &mut self,
        topic: &TopicName,
        out: &mut Matches<S>,
    ) -> Option<(S, SubscriptionEntry)> {
        match self.cache.fill_unless_one(topic.as_str(), out) {
            Ok(one) => one,
            // Missed: the walk need not ask the cache again.
            Err(()) => {
                out.clear();
                self.walk_uncached(topic, out, true);
                None
            }
        }
    }

    /// One walk for a message another shard forwarded here: fills only `out.local`. The
    /// sender already chose the shared targets and sent to every interested shard.
    pub fn route_local(&mut self, topic: &TopicName, out: &mut Matches<S>) {
        self.walk(topic, out, false);
    }

    /// On the shard that received a shared message from another: one local member of the
    /// group of `filter` (a full `$share/{group}/{filter}`), in turn; `None` if it has none
    /// left (or `filter` is not shared).
    pub fn pick_shared_member(&mut self, filter: &TopicFilter) -> Option<(S, SubscriptionEntry)> {
        let shared = filter.shared()?;
        let node_id = self.find_path(shared.filter)?;
        let node = &mut self.nodes[node_id as usize];
        let group = node.shared.iter_mut().find(|g| *g.name == *shared.group)?;
        group.pick_local()
    }

    /// Local subscriptions held, shared memberships included.
    pub fn len(&self) -> usize {
        self.local_count
    }

    pub fn is_empty(&self) -> bool {
        self.local_count == 0
    }

    /// Times the route cache was full and started over.
    pub fn route_cache_resets_count(&self) -> u64 {
        self.cache.resets_count
    }

    /// Trie nodes in use (root included); for tests and memory accounting.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn walk(&mut self, topic: &TopicName, out: &mut Matches<S>, with_others: bool) {
        out.clear();
        if self.cache.fill(topic.as_str(), with_others, out) {
            return;
        }
        self.walk_uncached(topic, out, with_others);
    }

    /// The trie walk itself, into `out` (already cleared), and the cache keeps the result.
    fn walk_uncached(&mut self, topic: &TopicName, out: &mut Matches<S>, with_others: bool) {
        let text = topic.as_str();
        let Self {
            nodes,
            stack,
            levels,
            ..
        } = self;
        let mut met_shared = false;
        split_levels(text, levels);
        // [MQTT-4.7.2-1]: a wildcard at the first level does not match a `$` topic.
        let dollar = topic.is_dollar();
        let level_count = levels.len() as u32;
        stack.clear();
        stack.push((ROOT, 0));
        while let Some((node_id, depth)) = stack.pop() {
            let node = &nodes[node_id as usize];
            let wildcards_allowed = !(dollar && depth == 0);
            let next_literal = levels.get(depth as usize).and_then(|&(start, end)| {
                let level = &text[start as usize..end as usize];
                node.children.get(level).copied()
            });
            let plus = node
                .plus
                .filter(|_| wildcards_allowed && depth < level_count);
            // `#` matches the rest, including none: `a/#` matches `a`.
            if let Some(hash) = node.hash.filter(|_| wildcards_allowed) {
                met_shared |= collect(&mut nodes[hash as usize], out, with_others);
            }
            if depth == level_count {
                met_shared |= collect(&mut nodes[node_id as usize], out, with_others);
                continue;
            }
            if let Some(child) = next_literal {
                stack.push((child, depth + 1));
            }
            if let Some(child) = plus {
                stack.push((child, depth + 1));
            }
        }
        if !met_shared {
            self.cache.keep(text, with_others, out);
        }
    }

    fn alloc(&mut self) -> NodeId {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.nodes.push(Node::default());
                NodeId::try_from(self.nodes.len() - 1).expect("fewer than 2^32 trie nodes")
            }
        }
    }

    /// The node for `filter` (the matching part), created with its ancestors if missing.
    fn ensure_path(&mut self, filter: &str) -> NodeId {
        let mut current = ROOT;
        for level in filter.split('/') {
            current = match self.nodes[current as usize].child(level) {
                Some(child) => child,
                None => {
                    let child = self.alloc();
                    let node = &mut self.nodes[current as usize];
                    match level {
                        "+" => node.plus = Some(child),
                        "#" => node.hash = Some(child),
                        literal => {
                            node.children.insert(literal.into(), child);
                        }
                    }
                    child
                }
            };
        }
        current
    }

    fn find_path(&self, filter: &str) -> Option<NodeId> {
        filter.split('/').try_fold(ROOT, |current, level| {
            self.nodes[current as usize].child(level)
        })
    }

    /// Frees the nodes of `filter`'s path that hold nothing any more, deepest first.
    fn prune(&mut self, filter: &str) {
        self.path.clear();
        self.path.push(ROOT);
        for level in filter.split('/') {
            let current = *self.path.last().expect("path starts at the root");
            match self.nodes[current as usize].child(level) {
                Some(child) => self.path.push(child),
                None => return,
            }
        }
        for level in filter.rsplit('/') {
            let node_id = self.path.pop().expect("one node per level");
            if !self.nodes[node_id as usize].is_unused() {
                return;
            }
            let parent =
                &mut self.nodes[*self.path.last().expect("the root is never pruned") as usize];
            match level {
                "+" => parent.plus = None,
                "#" => parent.hash = None,
                literal => {
                    parent.children.remove(literal);
                }
            }
            // Give the memory back: a freed node may have held a large map.
            self.nodes[node_id as usize] = Node::default();
            self.free.push(node_id);
        }
    }
}

/// Adds a node's subscribers to `out`; with `with_others`, also its interested shards and a
/// choice per shared group. True if the node has shared groups that count for this walk:
/// then the result changes from walk to walk and is not cached.
fn collect<S: Copy + Eq + Hash>(
    node: &mut Node<S>,
    out: &mut Matches<S>,
    with_others: bool,
) -> bool {
    out.local.extend_from_slice(node.local.as_slice());
    if !with_others {
        return false;
    }
    out.remote.union_with(&node.remote);
    for group in &mut node.shared {
        if let Some(target) = group.choose() {
            out.shared.push(SharedMatch {
                filter: group.filter.clone(),
                target,
            });
        }
    }
    !node.shared.is_empty()
}

/// The group `name` under a node, created if missing.
fn group_entry<'a, S: Copy + Eq + Hash>(
    groups: &'a mut Vec<SharedGroup<S>>,
    name: &str,
    filter: &TopicFilter,
) -> &'a mut SharedGroup<S> {
    let i = match groups.iter().position(|g| *g.name == *name) {
        Some(i) => i,
        None => {
            groups.push(SharedGroup::new(name, filter.clone()));
            groups.len() - 1
        }
    };
    &mut groups[i]
}

/// Byte ranges of the `/`-separated levels of `text`, found in one pass.
fn split_levels(text: &str, levels: &mut Vec<(u32, u32)>) {
    levels.clear();
    let mut start = 0u32;
    for (i, byte) in text.bytes().enumerate() {
        if byte == b'/' {
            // Topic names are at most 65,535 bytes, so offsets fit in u32.
            levels.push((start, i as u32));
            start = i as u32 + 1;
        }
    }
    levels.push((start, text.len() as u32));
}

fn count_u32(count: usize) -> u32 {
    u32::try_from(count).expect("fewer than 2^32 subscribers to one filter")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::protocol::QoS;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text.to_owned()).expect("test filter is valid")
    }

    fn topic(text: &str) -> TopicName {
        TopicName::parse(text.to_owned()).expect("test topic is valid")
    }

    fn entry(qos: QoS) -> SubscriptionEntry {
        SubscriptionEntry {
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            subscription_id: None,
        }
    }

    fn local_subscribers(trie: &mut SubscriptionTrie<u32>, name: &str) -> Vec<u32> {
        let mut out = Matches::new();
        trie.route(&topic(name), &mut out);
        let mut subscribers: Vec<u32> = out.local.iter().map(|&(s, _)| s).collect();
        subscribers.sort_unstable();
        subscribers
    }

    #[test]
    fn wildcards_follow_the_spec_rules() {
        let mut trie = SubscriptionTrie::new();
        for (i, f) in [
            "a/#", "a/+", "+/+", "#", "$SYS/#", "+/uptime", "a/+/c", "/+",
        ]
        .into_iter()
        .enumerate()
        {
            trie.subscribe(&filter(f), i as u32, entry(QoS::AtMostOnce));
        }
        // `a/#` matches its parent `a`; `#` matches everything not starting with `$`.
        assert_eq!(local_subscribers(&mut trie, "a"), vec![0, 3]);
        // `+` matches an empty level.
        assert_eq!(local_subscribers(&mut trie, "a/"), vec![0, 1, 2, 3]);
        assert_eq!(local_subscribers(&mut trie, "a/b/c"), vec![0, 3, 6]);
        assert_eq!(local_subscribers(&mut trie, "/x"), vec![2, 3, 7]);
        // [MQTT-4.7.2-1]: no first-level wildcard matches a `$` topic.
        assert_eq!(local_subscribers(&mut trie, "$SYS/uptime"), vec![4]);
        assert_eq!(local_subscribers(&mut trie, "x/uptime"), vec![2, 3, 5]);
    }

    #[test]
    fn counts_report_the_zero_one_transitions() {
        let mut trie = SubscriptionTrie::new();
        let f = filter("a/b");
        let first = trie.subscribe(&f, 1u32, entry(QoS::AtMostOnce));
        assert_eq!(
            first,
            SubscribeOutcome {
                replaced: false,
                first_local: true,
                local_members: 1
            }
        );
        let again = trie.subscribe(&f, 1, entry(QoS::AtLeastOnce));
        assert_eq!(
            again,
            SubscribeOutcome {
                replaced: true,
                first_local: false,
                local_members: 1
            }
        );
        let second = trie.subscribe(&f, 2, entry(QoS::AtMostOnce));
        assert!(!second.first_local && second.local_members == 2);
        assert_eq!(trie.len(), 2);
        let mut out = Matches::new();
        trie.route(&topic("a/b"), &mut out);
        assert!(
            out.local.contains(&(1, entry(QoS::AtLeastOnce))),
            "replaced entry wins"
        );

        let gone = trie.unsubscribe(&f, 1);
        assert_eq!(
            gone,
            UnsubscribeOutcome {
                removed: true,
                last_local: false,
                local_members: 1
            }
        );
        assert!(!trie.unsubscribe(&f, 1).removed);
        let last = trie.unsubscribe(&f, 2);
        assert!(last.removed && last.last_local && last.local_members == 0);
        assert!(trie.is_empty());
        assert_eq!(
            trie.node_count(),
            1,
            "empty paths are pruned back to the root"
        );

        // A shared group counts its own members, apart from the plain filter.
        let shared = filter("$share/g/a/b");
        assert!(trie.subscribe(&f, 7, entry(QoS::AtMostOnce)).first_local);
        assert!(
            trie.subscribe(&shared, 7, entry(QoS::AtMostOnce))
                .first_local
        );
        assert!(
            trie.subscribe(&shared, 8, entry(QoS::AtMostOnce))
                .local_members
                == 2
        );
        assert!(!trie.unsubscribe(&shared, 7).last_local);
        assert!(trie.unsubscribe(&shared, 8).last_local);
        assert!(trie.unsubscribe(&f, 7).last_local);
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn remote_shards_are_reported_once_and_pruned() {
        let mut trie: SubscriptionTrie<u32> = SubscriptionTrie::new();
        trie.set_remote(&filter("a/+"), ShardId(2), 1);
        trie.set_remote(&filter("a/#"), ShardId(2), 3);
        trie.set_remote(&filter("#"), ShardId(5), 1);
        let mut out = Matches::new();
        trie.route(&topic("a/b"), &mut out);
        assert_eq!(
            out.remote.iter().collect::<Vec<_>>(),
            vec![ShardId(2), ShardId(5)]
        );
        assert!(out.local.is_empty());
        trie.route_local(&topic("a/b"), &mut out);
        assert!(out.is_empty(), "a forwarded message is not forwarded again");
        trie.set_remote(&filter("a/+"), ShardId(2), 0);
        trie.set_remote(&filter("a/#"), ShardId(2), 0);
        trie.set_remote(&filter("#"), ShardId(5), 0);
        trie.route(&topic("a/b"), &mut out);
        assert!(out.is_empty());
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn cached_routes_follow_every_change() {
        let mut trie = SubscriptionTrie::new();
        let mut out = Matches::new();
        trie.subscribe(&filter("c/+"), 1, entry(QoS::AtMostOnce));
        // Twice each: the second walk of a topic is served from the cache.
        for _ in 0..2 {
            assert_eq!(local_subscribers(&mut trie, "c/d"), vec![1]);
            trie.route_local(&topic("c/d"), &mut out);
            assert_eq!(out.local.len(), 1);
            assert!(out.remote.is_empty());
        }
        trie.subscribe(&filter("c/d"), 2, entry(QoS::AtMostOnce));
        assert_eq!(local_subscribers(&mut trie, "c/d"), vec![1, 2]);
        trie.set_remote(&filter("#"), ShardId(3), 1);
        trie.route(&topic("c/d"), &mut out);
        assert_eq!(out.remote.iter().collect::<Vec<_>>(), vec![ShardId(3)]);
        trie.route_local(&topic("c/d"), &mut out);
        assert!(
            out.remote.is_empty(),
            "route_local never names other shards"
        );
        assert_eq!(out.local.len(), 2);
        trie.unsubscribe(&filter("c/+"), 1);
        assert_eq!(local_subscribers(&mut trie, "c/d"), vec![2]);
        // A shared group's member changes per walk: such results are never cached.
        trie.subscribe(&filter("$share/g/c/d"), 7, entry(QoS::AtMostOnce));
        trie.subscribe(&filter("$share/g/c/d"), 8, entry(QoS::AtMostOnce));
        let mut picked = BTreeSet::new();
        for _ in 0..4 {
            trie.route(&topic("c/d"), &mut out);
            assert_eq!(out.shared.len(), 1);
            if let SharedTarget::Local(s, _) = out.shared[0].target {
                picked.insert(s);
            }
        }
        assert_eq!(picked, BTreeSet::from([7, 8]));
    }

    /// The single-subscriber shortcut agrees with `route` in every case it takes, and
    /// declines (filling `out` as `route` does) in every other.
    #[test]
    fn route_unless_one_returns_only_a_lone_cached_local_subscriber() {
        let mut trie = SubscriptionTrie::new();
        trie.subscribe(&filter("one/+"), 1, entry(QoS::AtLeastOnce));
        trie.subscribe(&filter("two/x"), 1, entry(QoS::AtMostOnce));
        trie.subscribe(&filter("two/#"), 2, entry(QoS::AtLeastOnce));
        trie.subscribe(&filter("$share/g/shared/x"), 3, entry(QoS::AtLeastOnce));
        trie.subscribe(&filter("far/x"), 4, entry(QoS::AtLeastOnce));
        trie.set_remote(&filter("far/x"), ShardId(1), 1);
        let topic = |t: &str| TopicName::parse(t).expect("valid");
        let mut out = Matches::new();
        // Not cached yet: walked, filled, cached.
        assert_eq!(trie.route_unless_one(&topic("one/a"), &mut out), None);
        assert_eq!(out.local.len(), 1);
        let mut stale = Matches::new();
        stale.local.push((9, entry(QoS::AtMostOnce)));
        assert_eq!(
            trie.route_unless_one(&topic("one/a"), &mut stale),
            Some((1, entry(QoS::AtLeastOnce)))
        );
        assert_eq!(stale.local.len(), 1, "`out` is left as it was");
        for (t, locals, remote) in [("two/x", 2, false), ("far/x", 1, true)] {
            for pass in 0..2 {
                let mut out = Matches::new();
                assert_eq!(
                    trie.route_unless_one(&topic(t), &mut out),
                    None,
                    "{t} {pass}"
                );
                assert_eq!(out.local.len(), locals, "{t} {pass}");
                assert_eq!(!out.remote.is_empty(), remote, "{t} {pass}");
            }
        }
        for pass in 0..2 {
            let mut out = Matches::new();
            assert_eq!(trie.route_unless_one(&topic("shared/x"), &mut out), None);
            assert_eq!(
                out.shared.len(),
                1,
                "{pass}: a shared group is never cached"
            );
        }
        for pass in 0..2 {
            let mut out = Matches::new();
            assert_eq!(trie.route_unless_one(&topic("none"), &mut out), None);
            assert!(out.is_empty(), "{pass}");
        }
    }

    #[test]
    fn a_full_route_cache_starts_over() {
        let mut trie = SubscriptionTrie::new();
        trie.subscribe(&filter("#"), 1, entry(QoS::AtMostOnce));
        for i in 0..=super::super::route_cache::ROUTE_CACHE_TOPICS {
            assert_eq!(local_subscribers(&mut trie, &format!("t/{i}")), vec![1]);
        }
        assert_eq!(trie.route_cache_resets_count(), 1);
    }

    #[test]
    fn shared_messages_follow_member_counts() {
        let mut trie = SubscriptionTrie::new();
        let shared = filter("$share/g/s/+");
        // Three local members, and shards 1 and 4 with two and five members.
        for s in [10u32, 11, 12] {
            trie.subscribe(&shared, s, entry(QoS::AtLeastOnce));
        }
        trie.set_remote(&shared, ShardId(1), 2);
        trie.set_remote(&shared, ShardId(4), 5);
        // Another group on the same filter is served independently.
        trie.subscribe(&filter("$share/h/s/#"), 20, entry(QoS::AtMostOnce));

        let mut per_target: BTreeMap<String, u32> = BTreeMap::new();
        let mut out = Matches::new();
        let messages = 1000;
        for _ in 0..messages {
            trie.route(&topic("s/x"), &mut out);
            assert!(out.local.is_empty() && out.remote.is_empty());
            assert_eq!(out.shared.len(), 2, "one target per group");
            for m in &out.shared {
                let key = match m.target {
                    SharedTarget::Local(s, _) => format!("{}:local{s}", m.filter),
                    SharedTarget::Remote(shard) => format!("{}:shard{}", m.filter, shard.0),
                };
                *per_target.entry(key).or_default() += 1;
            }
        }
        // 10 members in group g: 1000 messages are 100 full rounds, so the split is exact.
        let expected: BTreeMap<String, u32> = [
            ("$share/g/s/+:local10", 100),
            ("$share/g/s/+:local11", 100),
            ("$share/g/s/+:local12", 100),
            ("$share/g/s/+:shard1", 200),
            ("$share/g/s/+:shard4", 500),
            ("$share/h/s/#:local20", 1000),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(per_target, expected);

        // The receiving side hands messages to its members in turn.
        let picks: Vec<u32> = (0..6)
            .filter_map(|_| trie.pick_shared_member(&shared).map(|(s, _)| s))
            .collect();
        assert_eq!(picks.len(), 6);
        for s in [10, 11, 12] {
            assert_eq!(picks.iter().filter(|&&p| p == s).count(), 2);
        }
        assert_eq!(trie.pick_shared_member(&filter("$share/zz/s/+")), None);
        assert_eq!(trie.pick_shared_member(&filter("s/+")), None);
    }

    #[test]
    fn many_subscribers_to_one_filter_use_the_index_consistently() {
        let mut trie = SubscriptionTrie::new();
        let f = filter("fan/out");
        for s in 0..100u32 {
            assert!(!trie.subscribe(&f, s, entry(QoS::AtMostOnce)).replaced);
        }
        assert!(trie.subscribe(&f, 50, entry(QoS::ExactlyOnce)).replaced);
        for s in (0..100u32).step_by(3) {
            assert!(trie.unsubscribe(&f, s).removed);
        }
        assert!(!trie.unsubscribe(&f, 0).removed);
        let expected: Vec<u32> = (0..100).filter(|s| s % 3 != 0).collect();
        assert_eq!(local_subscribers(&mut trie, "fan/out"), expected);
        assert_eq!(trie.len(), expected.len());
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        let mut trie = SubscriptionTrie::new();
        let deep = vec!["+"; 20_000].join("/");
        trie.subscribe(&filter(&deep), 1u32, entry(QoS::AtMostOnce));
        let name = vec!["x"; 20_000].join("/");
        assert_eq!(local_subscribers(&mut trie, &name), vec![1]);
        assert!(trie.unsubscribe(&filter(&deep), 1).last_local);
        assert_eq!(trie.node_count(), 1);
    }

    /// A realistic trie: 10,000 filters over `site/device/metric` topics (80% exact, 15% with
    /// `+` for the device, 5% `site/device/#`), each with one local subscriber, a fifth also
    /// wanted by another shard, plus a shared group per site. Run in release:
    /// `cargo test --release --lib router::trie::tests::route_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, run in release"]
    fn route_throughput() {
        let mut trie = SubscriptionTrie::new();
        let (sites, devices, metrics) = (20u32, 100u32, 10u32);
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..10_000u32 {
            let (site, device, metric) = (rng.u32(..sites), rng.u32(..devices), rng.u32(..metrics));
            let text = match i % 20 {
                0 => format!("site{site}/dev{device}/#"),
                1..=3 => format!("site{site}/+/metric{metric}"),
                _ => format!("site{site}/dev{device}/metric{metric}"),
            };
            trie.subscribe(&filter(&text), i, entry(QoS::AtMostOnce));
            if i % 5 == 0 {
                trie.set_remote(&filter(&text), ShardId((i % 7 + 1) as u16), 1);
            }
        }
        for site in 0..sites {
            let shared = filter(&format!("$share/workers/site{site}/+/metric0"));
            trie.subscribe(&shared, 100_000 + site, entry(QoS::AtLeastOnce));
            trie.set_remote(&shared, ShardId(3), 2);
        }
        let topics: Vec<TopicName> = (0..4096)
            .map(|_| {
                let (site, device, metric) =
                    (rng.u32(..sites), rng.u32(..devices), rng.u32(..metrics));
                topic(&format!("site{site}/dev{device}/metric{metric}"))
            })
            .collect();
        let mut out = Matches::new();
        let mut delivered = 0usize;
        for t in &topics {
            trie.route(t, &mut out);
        }
        let capacity = (out.local.capacity(), out.shared.capacity());
        // ROUTE_BENCH_ROUNDS=5 keeps a run under callgrind short.
        let rounds: usize = std::env::var("ROUTE_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(500);
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            for t in &topics {
                trie.route(t, &mut out);
                delivered += out.local.len() + out.remote.len() + out.shared.len();
            }
        }
        let elapsed = started.elapsed();
        let routes = rounds * topics.len();
        println!(
            "route: {:.0} ns/route over {routes} routes, {:.2} targets/route, {} nodes",
            elapsed.as_nanos() as f64 / routes as f64,
            delivered as f64 / routes as f64,
            trie.node_count()
        );
        assert!(delivered > routes, "the topics hit the filters");
        assert!(capacity.0 >= out.local.capacity() && capacity.1 >= out.shared.capacity());
    }

    // ---- the trie against a naive model built on `TopicFilter::matches` ----

    #[derive(Debug, Clone)]
    enum Op {
        Subscribe(String, u32, u8),
        Unsubscribe(String, u32),
        SetRemote(String, u16, u32),
        Route(String),
    }

    const LEVELS: &[&str] = &["a", "b", "", "$x", "+", "#"];
    const NAME_LEVELS: &[&str] = &["a", "b", "", "$x"];

    fn filter_text() -> impl Strategy<Value = String> {
        let plain = prop::collection::vec(prop::sample::select(LEVELS), 1..4)
            .prop_map(|levels| levels.join("/"));
        (
            plain,
            prop::option::weighted(0.3, prop::sample::select(&["g", "h"][..])),
        )
            .prop_map(|(f, group)| match group {
                Some(g) => format!("$share/{g}/{f}"),
                None => f,
            })
            .prop_filter("a valid filter", |f| TopicFilter::parse(f.clone()).is_ok())
    }

    fn topic_text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(NAME_LEVELS), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("a topic name is not empty", |t| !t.is_empty())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (filter_text(), 0..4u32, 0..3u8).prop_map(|(f, s, q)| Op::Subscribe(f, s, q)),
            1 => (filter_text(), 0..4u32).prop_map(|(f, s)| Op::Unsubscribe(f, s)),
            2 => (filter_text(), 1..4u16, 0..3u32).prop_map(|(f, sh, c)| Op::SetRemote(f, sh, c)),
            3 => topic_text().prop_map(Op::Route),
        ]
    }

    #[derive(Default)]
    struct Model {
        local: BTreeMap<(String, u32), u8>,
        remote: BTreeMap<(String, u16), u32>,
    }

    impl Model {
        fn local_members(&self, f: &str) -> u32 {
            self.local.keys().filter(|(g, _)| g == f).count() as u32
        }

        fn check_route(&self, name: &str, out: &Matches<u32>) -> Result<(), TestCaseError> {
            let t = topic(name);
            let mut expected_local: Vec<(u32, u8)> = self
                .local
                .iter()
                .filter(|((f, _), _)| filter(f).shared().is_none() && filter(f).matches(&t))
                .map(|((_, s), &q)| (*s, q))
                .collect();
            expected_local.sort_unstable();
            let mut got_local: Vec<(u32, u8)> = out
                .local
                .iter()
                .map(|(s, e)| (*s, e.options.qos.bits()))
                .collect();
            got_local.sort_unstable();
            prop_assert_eq!(got_local, expected_local);

            let expected_remote: ShardSet = self
                .remote
                .iter()
                .filter(|((f, _), _)| filter(f).shared().is_none() && filter(f).matches(&t))
                .map(|((_, shard), _)| ShardId(*shard))
                .collect();
            prop_assert_eq!(&out.remote, &expected_remote);

            let groups: BTreeSet<&String> = (self.local.keys().map(|(f, _)| f))
                .chain(self.remote.keys().map(|(f, _)| f))
                .filter(|f| filter(f).shared().is_some() && filter(f).matches(&t))
                .collect();
            let got_groups: BTreeSet<&str> = out.shared.iter().map(|m| m.filter.as_str()).collect();
            prop_assert_eq!(got_groups.len(), out.shared.len(), "one target per group");
            prop_assert_eq!(got_groups, groups.iter().map(|f| f.as_str()).collect());
            for m in &out.shared {
                let f = m.filter.as_str().to_owned();
                match m.target {
                    SharedTarget::Local(s, e) => prop_assert_eq!(
                        self.local.get(&(f, s)).copied(),
                        Some(e.options.qos.bits())
                    ),
                    SharedTarget::Remote(shard) => {
                        prop_assert!(self.remote.contains_key(&(f, shard.0)))
                    }
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn trie_agrees_with_naive_model(ops in prop::collection::vec(op(), 1..60)) {
            let mut trie = SubscriptionTrie::new();
            let mut model = Model::default();
            let mut out = Matches::new();
            for op in ops {
                match op {
                    Op::Subscribe(f, s, q) => {
                        let qos = QoS::from_bits(q).expect("q < 3");
                        let outcome = trie.subscribe(&filter(&f), s, entry(qos));
                        let replaced = model.local.insert((f.clone(), s), q).is_some();
                        prop_assert_eq!(outcome.replaced, replaced);
                        prop_assert_eq!(outcome.local_members, model.local_members(&f));
                        prop_assert_eq!(outcome.first_local, !replaced && outcome.local_members == 1);
                    }
                    Op::Unsubscribe(f, s) => {
                        let outcome = trie.unsubscribe(&filter(&f), s);
                        let removed = model.local.remove(&(f.clone(), s)).is_some();
                        prop_assert_eq!(outcome.removed, removed);
                        if removed {
                            prop_assert_eq!(outcome.local_members, model.local_members(&f));
                        }
                        prop_assert_eq!(outcome.last_local, removed && model.local_members(&f) == 0);
                    }
                    Op::SetRemote(f, shard, count) => {
                        trie.set_remote(&filter(&f), ShardId(shard), count);
                        if count == 0 {
                            model.remote.remove(&(f, shard));
                        } else {
                            model.remote.insert((f, shard), count);
                        }
                    }
                    Op::Route(name) => {
                        trie.route(&topic(&name), &mut out);
                        model.check_route(&name, &out)?;
                    }
                }
                prop_assert_eq!(trie.len(), model.local.len());
            }
            // Taking everything away leaves only the root.
            for (f, s) in model.local.keys() {
                prop_assert!(trie.unsubscribe(&filter(f), *s).removed);
            }
            for (f, shard) in model.remote.keys() {
                trie.set_remote(&filter(f), ShardId(*shard), 0);
            }
            prop_assert_eq!(trie.node_count(), 1);
        }
    }
}
