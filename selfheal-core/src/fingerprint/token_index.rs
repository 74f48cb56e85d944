//! The template miner's candidate index: which clusters may a new line join, without
//! comparing it with every cluster of its length.
//!
//! A line joins a cluster only when at least `min_same` of its `n` tokens equal the
//! cluster's tokens at the same positions. Such a cluster then differs from the line in
//! at most `n - min_same` positions, so it shares the line's token in at least one of
//! *any* `n - min_same + 1` positions (pigeonhole). The index keeps, for each (token
//! count, position, token), the clusters holding that token there (a posting list), and
//! answers with the union of the `n - min_same + 1` shortest posting lists of the line's
//! tokens. Nothing that could join is left out (up to [`MAX_CANDIDATES`]), and lines of
//! random words, which share nothing, find no candidate at all instead of scanning
//! thousands of clusters.
//!
//! Tokens are keyed by a 64-bit hash (seeded per index), so the index stores no strings;
//! a collision only adds a candidate, which the caller compares anyway. Each cluster
//! remembers where it sits in each of its posting lists, so removing it costs one
//! `swap_remove` per token. Most lists hold one cluster (a word seen at that position
//! once) and keep it inline, without a heap allocation.

use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

/// At most this many clusters are returned for one line. Real logs stay far below it
/// (the shortest posting lists are short); a crafted stream whose every position repeats
/// a few words could reach it, and then the line is compared with this many clusters
/// only (it may start a cluster of its own where a scan of all would have merged it).
pub(super) const MAX_CANDIDATES: usize = 2048;

/// (token count, position, token hash).
type Key = (u32, u32, u64);

/// The slots holding one key: inline while there is one.
#[derive(Debug)]
enum Posting {
    One(u32),
    Many(Vec<u32>),
}

impl Posting {
    fn as_slice(&self) -> &[u32] {
        match self {
            Posting::One(slot) => std::slice::from_ref(slot),
            Posting::Many(slots) => slots,
        }
    }

    /// Appends `slot`; returns its place.
    fn push(&mut self, slot: u32) -> u32 {
        match self {
            Posting::One(first) => {
                *self = Posting::Many(vec![*first, slot]);
                1
            }
            Posting::Many(slots) => {
                slots.push(slot);
                (slots.len() - 1) as u32
            }
        }
    }

    /// Removes the slot at `at` (the last one takes its place). Returns the slot now at
    /// `at`, if any, and whether the list is empty.
    fn swap_remove(&mut self, at: u32) -> (Option<u32>, bool) {
        match self {
            Posting::One(_) => (None, true),
            Posting::Many(slots) => {
                slots.swap_remove(at as usize);
                (slots.get(at as usize).copied(), slots.is_empty())
            }
        }
    }
}

/// Posting lists of the root clusters' tokens, by slot.
#[derive(Debug, Default)]
pub(super) struct TokenIndex {
    hasher: RandomState,
    postings: foldhash::HashMap<Key, Posting>,
    /// Per slot: for each of its tokens, the posting key and its place in that list.
    /// Empty for a slot that is not indexed.
    entries: Vec<Vec<(Key, u32)>>,
    /// Per slot: the query that last returned it (dedup without sorting).
    seen: Vec<u64>,
    query: u64,
    /// What the last query returned (kept to reuse its allocation).
    found: Vec<u32>,
}

impl TokenIndex {
    fn key(&self, len: usize, pos: usize, token: &str) -> Key {
        (len as u32, pos as u32, self.hasher.hash_one(token))
    }

    /// Indexes `slot` under `tokens` (replacing what it was indexed under).
    pub(super) fn insert<S: AsRef<str>>(&mut self, slot: u32, tokens: &[S]) {
        self.remove(slot);
        let s = slot as usize;
        if self.entries.len() <= s {
            self.entries.resize_with(s + 1, Vec::new);
            self.seen.resize(s + 1, 0);
        }
        let len = tokens.len();
        let mut entries = std::mem::take(&mut self.entries[s]);
        // An empty line is indexed under one empty token, so it is found like the rest.
        for pos in 0..len.max(1) {
            let token = tokens.get(pos).map_or("", AsRef::as_ref);
            let key = self.key(len, pos, token);
            let at = match self.postings.entry(key) {
                Entry::Occupied(mut list) => list.get_mut().push(slot),
                Entry::Vacant(place) => {
                    place.insert(Posting::One(slot));
                    0
                }
            };
            entries.push((key, at));
        }
        self.entries[s] = entries;
    }

    /// Forgets `slot` (no-op when it is not indexed).
    pub(super) fn remove(&mut self, slot: u32) {
        let Some(entries) = self.entries.get_mut(slot as usize) else {
            return;
        };
        let mut entries = std::mem::take(entries);
        for (pos, &(key, at)) in entries.iter().enumerate() {
            let Entry::Occupied(mut list) = self.postings.entry(key) else {
                continue;
            };
            let (moved, empty) = list.get_mut().swap_remove(at);
            if empty {
                list.remove();
            }
            if let Some(moved) = moved {
                // Every slot in one list holds the key at the same position (the key
                // includes it), so `moved`'s entry for this list is its `pos`-th.
                if let Some(e) = self.entries[moved as usize].get_mut(pos) {
                    e.1 = at;
                }
            }
        }
        // Kept empty, for the slot's next cluster.
        entries.clear();
        self.entries[slot as usize] = entries;
    }

    /// The indexed slots that may share at least `min_same` tokens with `tokens` at the
    /// same positions, in no particular order. With `min_same == 0` every slot of that
    /// token count qualifies (a scan: only a `similarity` of 0 asks for it).
    pub(super) fn candidates<S: AsRef<str>>(&mut self, tokens: &[S], min_same: usize) -> &[u32] {
        let len = tokens.len();
        self.found.clear();
        if min_same > len {
            return &self.found;
        }
        if min_same == 0 {
            let want = (len as u32, 0u32);
            let all = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.first().is_some_and(|((l, p, _), _)| (*l, *p) == want))
                .map(|(slot, _)| slot as u32)
                .take(MAX_CANDIDATES);
            self.found.extend(all);
            return &self.found;
        }
        // Nothing holds this token here: the cheapest position of all.
        const NONE: &[u32] = &[];
        let mut lists: Vec<&[u32]> = Vec::with_capacity(len);
        for (pos, t) in tokens.iter().enumerate() {
            let key = self.key(len, pos, t.as_ref());
            lists.push(self.postings.get(&key).map_or(NONE, Posting::as_slice));
        }
        let need = len - min_same + 1;
        if need < lists.len() {
            lists.select_nth_unstable_by_key(need - 1, |l| l.len());
            lists.truncate(need);
        }
        self.query += 1;
        let query = self.query;
        'lists: for list in lists {
            for &slot in list {
                let seen = &mut self.seen[slot as usize];
                if *seen != query {
                    *seen = query;
                    self.found.push(slot);
                    if self.found.len() == MAX_CANDIDATES {
                        break 'lists;
                    }
                }
            }
        }
        &self.found
    }

    /// How many posting lists are held (for tests).
    #[cfg(test)]
    pub(super) fn lists(&self) -> usize {
        self.postings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<&str> {
        line.split(' ').collect()
    }

    fn sorted_of(found: &[u32]) -> Vec<u32> {
        let mut v = found.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn finds_every_slot_that_shares_enough_tokens() {
        let mut index = TokenIndex::default();
        index.insert(0, &words("alpha beta gamma delta"));
        index.insert(1, &words("alpha beta other thing"));
        index.insert(2, &words("nothing in common here"));
        index.insert(3, &words("alpha beta gamma"));
        // Two of four must agree: 0 and 1 may; 2 shares nothing; 3 is another length.
        let found = sorted_of(index.candidates(&words("alpha beta gamma zeta"), 2));
        assert_eq!(found, vec![0, 1]);
        // All four must agree: only positions' shortest list is asked, 0 is among it.
        let found = index.candidates(&words("alpha beta gamma delta"), 4);
        assert_eq!(found, vec![0]);
        // Random words find nothing.
        assert!(index.candidates(&words("qx zv wy pk"), 2).is_empty());
        // No agreement needed: every slot of that length.
        assert_eq!(
            sorted_of(index.candidates(&words("qx zv wy pk"), 0)),
            vec![0, 1, 2]
        );
        // More than the line has: nothing.
        assert!(index.candidates(&words("alpha beta"), 3).is_empty());
    }

    #[test]
    fn the_pigeonhole_never_misses_a_match() {
        // Every slot agrees with the line in exactly 3 of 6 positions, each in others.
        let line = words("a b c d e f");
        let mut index = TokenIndex::default();
        let shapes = [
            "a b c x x x",
            "x x x d e f",
            "a x c x e x",
            "x b x d x f",
            "a b x x x f",
        ];
        for (slot, s) in shapes.iter().enumerate() {
            index.insert(slot as u32, &words(s));
        }
        // A crowd sharing only `a` at position 0, which must not hide the others.
        for slot in 5..50 {
            index.insert(slot, &words(&format!("a y{slot} z{slot} w v u")));
        }
        let found = index.candidates(&line, 3).to_vec();
        for slot in 0..5 {
            assert!(found.contains(&slot), "slot {slot} missing from {found:?}");
        }
        // Four of six must agree: the four shortest lists are asked, and position 0's
        // crowd is not among them.
        assert!(index.candidates(&line, 4).len() < 10);
    }

    #[test]
    fn remove_and_reinsert_keep_the_lists_consistent() {
        let mut index = TokenIndex::default();
        for slot in 0..6 {
            index.insert(slot, &words("same words here"));
        }
        index.remove(2);
        index.remove(0);
        index.remove(0); // twice: no-op
        assert_eq!(
            sorted_of(index.candidates(&words("same words here"), 3)),
            vec![1, 3, 4, 5]
        );
        // Re-indexing under new tokens (a position became a value) moves the slot.
        index.insert(4, &words("same <*> here"));
        assert_eq!(
            sorted_of(index.candidates(&words("same words here"), 3)),
            vec![1, 3, 5]
        );
        assert_eq!(index.candidates(&words("same <*> here"), 3), vec![4]);
        for slot in [1, 3, 4, 5] {
            index.remove(slot);
        }
        assert_eq!(index.lists(), 0, "empty lists are dropped");
        assert!(index.candidates(&words("same words here"), 1).is_empty());
    }

    #[test]
    fn an_empty_line_is_found_too() {
        let mut index = TokenIndex::default();
        index.insert(7, &[] as &[&str]);
        assert_eq!(index.candidates(&[] as &[&str], 0), vec![7]);
        index.remove(7);
        assert!(index.candidates(&[] as &[&str], 0).is_empty());
    }

    #[test]
    fn the_candidate_list_is_bounded() {
        let mut index = TokenIndex::default();
        for slot in 0..(MAX_CANDIDATES as u32 + 10) {
            index.insert(slot, &words("crowded line"));
        }
        assert_eq!(
            index.candidates(&words("crowded line"), 1).len(),
            MAX_CANDIDATES
        );
    }
}
