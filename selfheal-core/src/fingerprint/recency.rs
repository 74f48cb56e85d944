//! Which cluster was seen least recently, in O(log n), while the hot path marks clusters
//! seen under a read lock (an atomic store, no reordering of any list).
//!
//! A min-heap of `(stamp, slot, generation)`. A stamp is the cluster's `last_seen` when it
//! was pushed; the hot path may have moved `last_seen` on since, never back. So the
//! oldest is found by popping: an entry whose cluster is gone (another generation in the
//! slot) is dropped, an entry whose cluster was seen since is pushed again with its
//! current `last_seen`, and the first entry that is still current is the least recently
//! seen cluster (ties: the lowest slot). Each push is paid for by one `last_seen` change,
//! so a pop is amortized O(log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What the miner says about an entry's slot.
pub(super) enum Seen {
    /// The slot no longer holds that cluster (or no longer as a candidate for eviction).
    Gone,
    /// The cluster's current `last_seen`.
    At(u64),
}

/// The clusters that may be evicted, least recently seen first.
#[derive(Debug, Default)]
pub(super) struct Recency {
    heap: BinaryHeap<Reverse<(u64, u32, u64)>>,
}

impl Recency {
    /// Tracks the cluster of `generation` in `slot`, last seen at `stamp`.
    pub(super) fn push(&mut self, slot: u32, generation: u64, stamp: u64) {
        self.heap.push(Reverse((stamp, slot, generation)));
    }

    /// Removes and returns the least recently seen cluster other than `keep`, asking
    /// `seen(slot, generation)` for each entry's current state. `keep` stays tracked.
    pub(super) fn pop_oldest(
        &mut self,
        keep: Option<u32>,
        mut seen: impl FnMut(u32, u64) -> Seen,
    ) -> Option<u32> {
        let mut kept = None;
        let found = loop {
            let Some(Reverse((stamp, slot, generation))) = self.heap.pop() else {
                break None;
            };
            match seen(slot, generation) {
                Seen::Gone => continue,
                Seen::At(now) if now > stamp => self.push(slot, generation, now),
                Seen::At(_) if Some(slot) == keep => kept = Some((slot, generation, stamp)),
                Seen::At(_) => break Some(slot),
            }
        };
        if let Some((slot, generation, stamp)) = kept {
            self.push(slot, generation, stamp);
        }
        found
    }

    /// How many entries are held, current or not (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (generation, last_seen) per slot; `None` when empty.
    fn ask(slots: &[Option<(u64, u64)>]) -> impl FnMut(u32, u64) -> Seen + '_ {
        |slot, generation| match slots[slot as usize] {
            Some((g, seen)) if g == generation => Seen::At(seen),
            _ => Seen::Gone,
        }
    }

    #[test]
    fn pops_the_least_recently_seen_first() {
        let mut slots = vec![Some((1, 0)), Some((2, 0)), Some((3, 0))];
        let mut r = Recency::default();
        for (slot, s) in slots.iter().enumerate() {
            let (generation, seen) = s.unwrap();
            r.push(slot as u32, generation, seen);
        }
        // Seen since being pushed: 0 at 5, 1 at 3, 2 at 9.
        slots[0] = Some((1, 5));
        slots[1] = Some((2, 3));
        slots[2] = Some((3, 9));
        assert_eq!(r.pop_oldest(None, ask(&slots)), Some(1));
        assert_eq!(r.pop_oldest(None, ask(&slots)), Some(0));
        assert_eq!(r.pop_oldest(None, ask(&slots)), Some(2));
        assert_eq!(r.pop_oldest(None, ask(&slots)), None);
    }

    #[test]
    fn ties_go_to_the_lowest_slot_and_gone_entries_are_skipped() {
        let mut slots = vec![Some((1, 4)), Some((2, 4)), Some((3, 4))];
        let mut r = Recency::default();
        for slot in [2u32, 0, 1] {
            let (generation, _) = slots[slot as usize].unwrap();
            r.push(slot, generation, 0);
        }
        // Slot 0 now holds another cluster: its entry is stale and dropped.
        slots[0] = Some((7, 1));
        assert_eq!(r.pop_oldest(None, ask(&slots)), Some(1));
        assert_eq!(r.pop_oldest(None, ask(&slots)), Some(2));
        assert_eq!(r.pop_oldest(None, ask(&slots)), None);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn keep_is_skipped_and_stays_tracked() {
        let slots = vec![Some((1, 1)), Some((2, 2))];
        let mut r = Recency::default();
        r.push(0, 1, 1);
        r.push(1, 2, 2);
        assert_eq!(r.pop_oldest(Some(0), ask(&slots)), Some(1));
        assert_eq!(r.pop_oldest(Some(0), ask(&slots)), None);
        assert_eq!(r.pop_oldest(None, ask(&slots)), Some(0));
    }
}
