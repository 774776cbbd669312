//! This shard's partition of the retained messages: at most one per topic, indexed by topic
//! level so that a filter with literal first levels visits only its own branch. An empty
//! payload clears a topic; a full store refuses new topics (and counts them); expired
//! messages are never returned and are swept by `remove_expired`.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::protocol::{BoxedPublishProperties, QoS, TopicFilter, TopicName};

/// A retained message as it will be sent to new subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub properties: BoxedPublishProperties,
    /// When it stops being retained (message expiry); `None` never.
    pub expires_at: Option<Instant>,
}

impl RetainedMessage {
    /// Still retained at `now`: the expiry instant itself is already too late.
    pub fn is_live(&self, now: Instant) -> bool {
        self.expires_at.map_or(true, |at| now < at)
    }
}

/// The store is full and `topic` had no retained message yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedFull;

impl std::fmt::Display for RetainedFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the retained store holds its maximum number of messages")
    }
}

impl std::error::Error for RetainedFull {}

type NodeId = u32;
const ROOT: NodeId = 0;

#[derive(Debug, Default)]
struct Node {
    children: FxHashMap<Box<str>, NodeId>,
    message: Option<RetainedMessage>,
}

/// Retained messages by topic, with a limit and an expiry index.
#[derive(Debug)]
pub struct RetainedStore {
    nodes: Vec<Node>,
    free: Vec<NodeId>,
    message_count: usize,
    max_messages: u32,
    full_refused_count: u64,
    /// (expiry, topic) of every message that expires, soonest first.
    expiries: BTreeSet<(Instant, TopicName)>,
}

impl RetainedStore {
    pub fn new(max_messages: u32) -> Self {
        RetainedStore {
            nodes: vec![Node::default()],
            free: Vec::new(),
            message_count: 0,
            max_messages,
            full_refused_count: 0,
            expiries: BTreeSet::new(),
        }
    }

    /// Stores or replaces `msg` for its topic; an empty payload clears the topic instead.
    /// A new topic is refused (and counted) when the store holds `max_messages`.
    pub fn set(&mut self, msg: RetainedMessage) -> Result<(), RetainedFull> {
        if msg.payload.is_empty() {
            self.clear(&msg.topic);
            return Ok(());
        }
        let existing = self.find(msg.topic.as_str());
        let holds_message = existing.is_some_and(|id| self.nodes[id as usize].message.is_some());
        if !holds_message && self.message_count >= self.max_messages as usize {
            self.full_refused_count += 1;
            return Err(RetainedFull);
        }
        let node_id = match existing {
            Some(id) => id,
            None => self.ensure_path(msg.topic.as_str()),
        };
        if let Some(at) = msg.expires_at {
            self.expiries.insert((at, msg.topic.clone()));
        }
        let previous = self.nodes[node_id as usize].message.replace(msg);
        match previous {
            Some(old) => self.forget_expiry(&old),
            None => self.message_count += 1,
        }
        Ok(())
    }

    pub fn get(&self, topic: &TopicName) -> Option<&RetainedMessage> {
        let node_id = self.find(topic.as_str())?;
        self.nodes[node_id as usize].message.as_ref()
    }

    /// Appends to `out` every message matching `filter` (the part after `$share/{group}/`
    /// for a shared one) that is live at `now`. Literal levels follow one branch; `+` and `#`
    /// fan out; a first-level wildcard skips `$` topics [MQTT-4.7.2-1].
    pub fn matching(&self, filter: &TopicFilter, now: Instant, out: &mut Vec<RetainedMessage>) {
        let levels: Vec<&str> = filter.matching_part().split('/').collect();
        // (node, depth into the filter); SUBTREE marks a node under a `#`, taken whole.
        const SUBTREE: usize = usize::MAX;
        let mut stack: Vec<(NodeId, usize)> = vec![(ROOT, 0)];
        while let Some((node_id, depth)) = stack.pop() {
            let node = &self.nodes[node_id as usize];
            let emit = |out: &mut Vec<RetainedMessage>| {
                if let Some(msg) = node.message.as_ref().filter(|m| m.is_live(now)) {
                    out.push(msg.clone());
                }
            };
            let Some(&level) = levels.get(depth) else {
                // Past the filter's last level (or inside a `#` subtree): this node matches.
                emit(out);
                if depth == SUBTREE {
                    stack.extend(node.children.values().map(|&c| (c, SUBTREE)));
                }
                continue;
            };
            let skip_dollar = depth == 0;
            let wildcard_children = node
                .children
                .iter()
                .filter(|(key, _)| !(skip_dollar && key.starts_with('$')))
                .map(|(_, &c)| c);
            match level {
                "#" => {
                    // `a/#` matches `a` itself too.
                    emit(out);
                    stack.extend(wildcard_children.map(|c| (c, SUBTREE)));
                }
                "+" => stack.extend(wildcard_children.map(|c| (c, depth + 1))),
                literal => {
                    if let Some(&c) = node.children.get(literal) {
                        stack.push((c, depth + 1));
                    }
                }
            }
        }
    }

    /// Drops every message expired at `now`; returns how many.
    pub fn remove_expired(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some((at, topic)) = self.expiries.first().cloned() {
            if now < at {
                break;
            }
            self.expiries.remove(&(at, topic.clone()));
            let node_id = self.find(topic.as_str());
            let expired = node_id.is_some_and(|id| {
                let message = &self.nodes[id as usize].message;
                message.as_ref().is_some_and(|m| m.expires_at == Some(at))
            });
            debug_assert!(expired, "the expiry index names only stored messages");
            if expired {
                self.clear(&topic);
                removed += 1;
            }
        }
        removed
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.message_count
    }

    pub fn is_empty(&self) -> bool {
        self.message_count == 0
    }

    /// New topics refused because the store was full, since it was made.
    pub fn full_refused_count(&self) -> u64 {
        self.full_refused_count
    }

    pub fn max_messages(&self) -> u32 {
        self.max_messages
    }

    /// Index nodes in use (root included); for tests and memory accounting.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn forget_expiry(&mut self, old: &RetainedMessage) {
        if let Some(at) = old.expires_at {
            // The new message may carry the same (expiry, topic): then the entry stays.
            let still_used = self
                .find(old.topic.as_str())
                .and_then(|id| self.nodes[id as usize].message.as_ref())
                .is_some_and(|m| m.expires_at == Some(at));
            if !still_used {
                self.expiries.remove(&(at, old.topic.clone()));
            }
        }
    }

    /// Removes `topic`'s message and frees the index nodes left empty.
    fn clear(&mut self, topic: &TopicName) {
        let mut path = vec![ROOT];
        for level in topic.levels() {
            let current = path[path.len() - 1];
            match self.nodes[current as usize].children.get(level) {
                Some(&child) => path.push(child),
                None => return,
            }
        }
        let leaf = path[path.len() - 1];
        let Some(old) = self.nodes[leaf as usize].message.take() else {
            return;
        };
        self.message_count -= 1;
        if let Some(at) = old.expires_at {
            self.expiries.remove(&(at, old.topic));
        }
        for level in topic.as_str().rsplit('/') {
            let node_id = path.pop().expect("one node per level");
            let node = &self.nodes[node_id as usize];
            if node.message.is_some() || !node.children.is_empty() {
                return;
            }
            let parent = *path.last().expect("the root is never freed");
            self.nodes[parent as usize].children.remove(level);
            self.nodes[node_id as usize] = Node::default();
            self.free.push(node_id);
        }
    }

    fn find(&self, topic: &str) -> Option<NodeId> {
        topic.split('/').try_fold(ROOT, |current, level| {
            self.nodes[current as usize].children.get(level).copied()
        })
    }

    fn ensure_path(&mut self, topic: &str) -> NodeId {
        let mut current = ROOT;
        for level in topic.split('/') {
            current = match self.nodes[current as usize].children.get(level) {
                Some(&child) => child,
                None => {
                    let child = match self.free.pop() {
                        Some(id) => id,
                        None => {
                            self.nodes.push(Node::default());
                            NodeId::try_from(self.nodes.len() - 1)
                                .expect("fewer than 2^32 index nodes")
                        }
                    };
                    self.nodes[current as usize]
                        .children
                        .insert(level.into(), child);
                    child
                }
            };
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn topic(text: &str) -> TopicName {
        TopicName::parse(text.to_owned()).expect("test topic is valid")
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text.to_owned()).expect("test filter is valid")
    }

    fn message(name: &str, payload: &'static [u8], expires_at: Option<Instant>) -> RetainedMessage {
        RetainedMessage {
            topic: topic(name),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            properties: BoxedPublishProperties::default(),
            expires_at,
        }
    }

    fn matching_topics(store: &RetainedStore, f: &str, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        store.matching(&filter(f), now, &mut out);
        let mut topics: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
        topics.sort();
        topics
    }

    #[test]
    fn set_replaces_and_empty_payload_clears() {
        let mut store = RetainedStore::new(10);
        store.set(message("a/b", b"one", None)).expect("room");
        store
            .set(message("a/b", b"two", None))
            .expect("replacing needs no room");
        assert_eq!(store.len(), 1);
        let stored = store.get(&topic("a/b")).expect("stored");
        assert_eq!(stored.payload, Bytes::from_static(b"two"));
        store
            .set(message("a/b", b"", None))
            .expect("clearing always succeeds");
        assert_eq!(store.get(&topic("a/b")), None);
        assert!(store.is_empty());
        assert_eq!(
            store.node_count(),
            1,
            "the index is freed with the last message"
        );
        store
            .set(message("nothing/here", b"", None))
            .expect("clearing a missing topic is fine");
        assert!(store.is_empty());
    }

    #[test]
    fn a_full_store_refuses_new_topics_and_counts_them() {
        let mut store = RetainedStore::new(2);
        store.set(message("a", b"1", None)).expect("room");
        store.set(message("b", b"1", None)).expect("room");
        assert_eq!(store.set(message("c", b"1", None)), Err(RetainedFull));
        assert_eq!(store.set(message("a/c", b"1", None)), Err(RetainedFull));
        assert_eq!(store.full_refused_count(), 2);
        assert_eq!(store.get(&topic("c")), None);
        store
            .set(message("a", b"2", None))
            .expect("replacing needs no room");
        store.set(message("b", b"", None)).expect("clear");
        store.set(message("c", b"1", None)).expect("room again");
        assert_eq!(store.len(), 2);
        assert_eq!(store.full_refused_count(), 2);
    }

    #[test]
    fn wildcards_and_the_dollar_rule() {
        let now = Instant::now();
        let mut store = RetainedStore::new(100);
        for name in ["a", "a/b", "a/b/c", "a/", "/x", "$SYS/up", "b"] {
            store.set(message(name, b"p", None)).expect("room");
        }
        assert_eq!(
            matching_topics(&store, "a/#", now),
            ["a", "a/", "a/b", "a/b/c"]
        );
        assert_eq!(matching_topics(&store, "a/+", now), ["a/", "a/b"]);
        assert_eq!(matching_topics(&store, "+/+", now), ["/x", "a/", "a/b"]);
        assert_eq!(
            matching_topics(&store, "#", now),
            ["/x", "a", "a/", "a/b", "a/b/c", "b"]
        );
        assert_eq!(matching_topics(&store, "+/up", now), Vec::<String>::new());
        assert_eq!(matching_topics(&store, "$SYS/#", now), ["$SYS/up"]);
        assert_eq!(matching_topics(&store, "$share/g/a/b", now), ["a/b"]);
    }

    #[test]
    fn expired_messages_are_hidden_then_swept() {
        let start = Instant::now();
        let later = |s| start + Duration::from_secs(s);
        let mut store = RetainedStore::new(10);
        store
            .set(message("a", b"1", Some(later(10))))
            .expect("room");
        store
            .set(message("b", b"1", Some(later(20))))
            .expect("room");
        store.set(message("c", b"1", None)).expect("room");
        // Replacing moves the expiry: the old instant must not remove the new message.
        store
            .set(message("b", b"2", Some(later(5))))
            .expect("replace");
        store
            .set(message("b", b"3", Some(later(30))))
            .expect("replace");
        assert_eq!(matching_topics(&store, "#", later(9)), ["a", "b", "c"]);
        assert_eq!(matching_topics(&store, "#", later(10)), ["b", "c"]);
        assert_eq!(store.remove_expired(later(5)), 0);
        assert_eq!(store.remove_expired(later(25)), 1);
        assert_eq!(store.len(), 2);
        assert_eq!(store.remove_expired(later(30)), 1);
        assert_eq!(store.len(), 1);
        assert!(store.get(&topic("c")).is_some());
        // Clearing a topic forgets its expiry too.
        store
            .set(message("d", b"1", Some(later(40))))
            .expect("room");
        store.set(message("d", b"", None)).expect("clear");
        assert_eq!(store.remove_expired(later(50)), 0);
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let mut store = RetainedStore::new(10);
        let name = vec!["x"; 20_000].join("/");
        store.set(message(&name, b"p", None)).expect("room");
        assert_eq!(matching_topics(&store, "#", Instant::now()).len(), 1);
        store.set(message(&name, b"", None)).expect("clear");
        assert_eq!(store.node_count(), 1);
    }

    const LEVELS: &[&str] = &["a", "b", "", "$x"];

    fn topic_text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LEVELS), 1..4)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("a topic name is not empty", |t| !t.is_empty())
    }

    fn filter_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(&["a", "b", "", "$x", "+", "#"][..]),
            1..4,
        )
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a valid filter", |f| TopicFilter::parse(f.clone()).is_ok())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn matching_agrees_with_a_naive_scan(
            sets in prop::collection::vec((topic_text(), any::<bool>(), prop::option::of(0..4u64)), 0..40),
            queries in prop::collection::vec((filter_text(), 0..5u64), 1..10),
        ) {
            let start = Instant::now();
            let mut store = RetainedStore::new(12);
            let mut model: BTreeMap<String, Option<u64>> = BTreeMap::new();
            for (name, clear, expiry) in sets {
                let payload: &'static [u8] = if clear { b"" } else { b"x" };
                let msg = message(&name, payload, expiry.map(|s| start + Duration::from_secs(s)));
                let result = store.set(msg);
                if clear {
                    model.remove(&name);
                } else if model.contains_key(&name) || model.len() < 12 {
                    prop_assert_eq!(result, Ok(()));
                    model.insert(name, expiry);
                } else {
                    prop_assert_eq!(result, Err(RetainedFull));
                }
                prop_assert_eq!(store.len(), model.len());
            }
            for (f, at) in queries {
                let now = start + Duration::from_secs(at);
                let expected: Vec<String> = model
                    .iter()
                    .filter(|(name, expiry)| {
                        filter(f.as_str()).matches(&topic(name)) && expiry.map_or(true, |e| at < e)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                prop_assert_eq!(matching_topics(&store, &f, now), expected);
            }
            let removed = store.remove_expired(start + Duration::from_secs(2));
            let expired = model.values().filter(|e| e.is_some_and(|e| e <= 2)).count();
            prop_assert_eq!(removed, expired);
            prop_assert_eq!(store.len(), model.len() - expired);
        }
    }
}
