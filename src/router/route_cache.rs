//! Recent walk results by topic name. Most publishes go to a topic published before and
//! matched by few subscriptions: one hash lookup then replaces a trie walk (a lookup per
//! level plus the level split). Only results that do not depend on the walk itself are kept:
//! none that met a shared group (each walk picks a member in turn). The trie clears the
//! cache on every change, so a hit is always what a walk would find now.

use std::hash::Hash;

use rustc_hash::FxHashMap;

use super::trie::{Matches, SubscriptionEntry};
use super::ShardSet;

/// Topics cached per kind of walk; when full the cache starts over (counted). Enough for
/// every topic of a busy shard's working set, small enough to clear at a subscribe.
pub(crate) const ROUTE_CACHE_TOPICS: usize = 4096;
/// Results with more local subscribers than this are not cached: their deliveries cost far
/// more than the walk, and a copy would hold memory per topic for little gain.
pub(crate) const ROUTE_CACHE_SUBSCRIBERS: usize = 8;
/// Longer topic names are not cached, bounding the cache's memory to ~1.5 MiB of keys.
pub(crate) const ROUTE_CACHE_TOPIC_BYTES: usize = 256;

#[derive(Debug)]
struct CachedRoute<S> {
    local: Box<[(S, SubscriptionEntry)]>,
    remote: ShardSet,
}

/// One map per kind of walk: `route` (local, remote shards) and `route_local` (local only).
#[derive(Debug)]
pub(crate) struct RouteCache<S> {
    routed: FxHashMap<Box<str>, CachedRoute<S>>,
    local_only: FxHashMap<Box<str>, CachedRoute<S>>,
    /// Times a full map was started over.
    pub(crate) resets_count: u64,
}

impl<S> Default for RouteCache<S> {
    fn default() -> Self {
        RouteCache {
            routed: FxHashMap::default(),
            local_only: FxHashMap::default(),
            resets_count: 0,
        }
    }
}

impl<S: Copy + Eq + Hash> RouteCache<S> {
    /// Fills `out` (already cleared) from the cache; false on a miss.
    pub(crate) fn fill(&self, topic: &str, with_others: bool, out: &mut Matches<S>) -> bool {
        let map = if with_others {
            &self.routed
        } else {
            &self.local_only
        };
        let Some(hit) = map.get(topic) else {
            return false;
        };
        out.local.extend_from_slice(&hit.local);
        if with_others {
            out.remote.union_with(&hit.remote);
        }
        true
    }

    /// For a `route` walk: a cached result of exactly one local subscriber and no other
    /// shard (nothing shared is ever cached) comes back as that subscriber, `out` untouched;
    /// any other cached result fills `out` (cleared first). `Err` on a miss.
    pub(crate) fn fill_unless_one(
        &self,
        topic: &str,
        out: &mut Matches<S>,
    ) -> Result<Option<(S, SubscriptionEntry)>, ()> {
        let Some(hit) = self.routed.get(topic) else {
            return Err(());
        };
        if let [one] = hit.local[..] {
            if hit.remote.is_empty() {
                return Ok(Some(one));
            }
        }
        out.clear();
        out.local.extend_from_slice(&hit.local);
        out.remote.union_with(&hit.remote);
        Ok(None)
    }

    /// Keeps the result of a walk that met no shared group, if it is small enough.
    pub(crate) fn keep(&mut self, topic: &str, with_others: bool, out: &Matches<S>) {
        debug_assert!(out.shared.is_empty());
        if out.local.len() > ROUTE_CACHE_SUBSCRIBERS || topic.len() > ROUTE_CACHE_TOPIC_BYTES {
            return;
        }
        let map = if with_others {
            &mut self.routed
        } else {
            &mut self.local_only
        };
        if map.len() >= ROUTE_CACHE_TOPICS {
            map.clear();
            self.resets_count += 1;
        }
        let remote = if with_others {
            out.remote.clone()
        } else {
            ShardSet::new()
        };
        map.insert(
            topic.into(),
            CachedRoute {
                local: out.local.as_slice().into(),
                remote,
            },
        );
    }

    /// The trie changed: no cached result can be trusted.
    pub(crate) fn invalidate(&mut self) {
        if !self.routed.is_empty() {
            self.routed.clear();
        }
        if !self.local_only.is_empty() {
            self.local_only.clear();
        }
    }
}
