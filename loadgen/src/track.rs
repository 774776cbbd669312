//! Loss, duplicate and reorder detection for one subscriber: per publisher, the next sequence
//! number expected and the set of gaps still open. Memory grows only with gaps, not messages.

use rustc_hash::{FxHashMap, FxHashSet};

/// A cap on open gaps per subscriber: past it, further gaps are counted as lost at once and can
/// no longer be told apart from late (reordered) arrivals.
pub const GAPS_MAX: usize = 1 << 20;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// A message seen for the first time.
    pub fresh: bool,
    pub duplicate: bool,
    /// Arrived after a later message from the same publisher.
    pub out_of_order: bool,
}

#[derive(Debug, Default)]
struct PublisherState {
    next_seq: u64,
    gaps: FxHashSet<u64>,
}

#[derive(Debug, Default)]
pub struct SeqTracker {
    publishers: FxHashMap<u32, PublisherState>,
    gaps_total: usize,
    /// Gaps that overflowed `GAPS_MAX` and were written off.
    pub gaps_dropped_count: u64,
}

impl SeqTracker {
    pub fn observe(&mut self, publisher_id: u32, seq: u64) -> Verdict {
        let state = self.publishers.entry(publisher_id).or_default();
        if seq == state.next_seq {
            state.next_seq += 1;
            return Verdict {
                fresh: true,
                ..Verdict::default()
            };
        }
        if seq > state.next_seq {
            for missing in state.next_seq..seq {
                if self.gaps_total < GAPS_MAX {
                    state.gaps.insert(missing);
                    self.gaps_total += 1;
                } else {
                    self.gaps_dropped_count += 1;
                }
            }
            state.next_seq = seq + 1;
            return Verdict {
                fresh: true,
                ..Verdict::default()
            };
        }
        if state.gaps.remove(&seq) {
            self.gaps_total -= 1;
            Verdict {
                fresh: true,
                out_of_order: true,
                duplicate: false,
            }
        } else {
            Verdict {
                duplicate: true,
                ..Verdict::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_all_fresh() {
        let mut t = SeqTracker::default();
        for seq in 0..100 {
            assert_eq!(
                t.observe(7, seq),
                Verdict {
                    fresh: true,
                    ..Verdict::default()
                }
            );
        }
    }

    #[test]
    fn duplicates_and_late_arrivals_are_told_apart() {
        let mut t = SeqTracker::default();
        assert!(t.observe(1, 0).fresh);
        assert!(t.observe(1, 3).fresh); // 1 and 2 are missing for now
        let late = t.observe(1, 1);
        assert!(late.fresh && late.out_of_order && !late.duplicate);
        assert!(t.observe(1, 1).duplicate, "second copy of a late message");
        assert!(t.observe(1, 3).duplicate);
        assert!(t.observe(2, 0).fresh, "publishers are tracked apart");
    }
}
