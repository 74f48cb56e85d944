//! The message ids a consumer has lately taken in, so a redelivery of a message whose
//! acknowledgement was lost is acknowledged again rather than counted twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// What a consumer knows of a message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not lately: take it in.
    New,
    /// Being taken in now (a redelivery overtook the first delivery): leave it to the
    /// first.
    InFlight,
    /// Taken in lately: acknowledge it again, ingest nothing.
    Done,
}

/// At most `capacity` ids taken in, the oldest forgotten first, and the ids in flight.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    done: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
    in_flight: HashSet<Arc<str>>,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentIds {
            capacity,
            done: HashSet::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
        }
    }

    /// What is known of `id`; a new one is in flight from now on.
    pub(crate) fn start(&mut self, id: &Arc<str>) -> Seen {
        if self.done.contains(id) {
            Seen::Done
        } else if !self.in_flight.insert(id.clone()) {
            Seen::InFlight
        } else {
            Seen::New
        }
    }

    /// `id` is no longer in flight; remembered as done when it was taken in.
    pub(crate) fn finish(&mut self, id: &Arc<str>, taken_in: bool) {
        self.in_flight.remove(id);
        if !taken_in || self.capacity == 0 || !self.done.insert(id.clone()) {
            return;
        }
        self.order.push_back(id.clone());
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.done.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        s.into()
    }

    #[test]
    fn a_redelivery_is_known_while_in_flight_and_after() {
        let mut recent = RecentIds::new(8);
        assert_eq!(recent.start(&id("a")), Seen::New);
        assert_eq!(recent.start(&id("a")), Seen::InFlight);
        recent.finish(&id("a"), true);
        assert_eq!(recent.start(&id("a")), Seen::Done);
    }

    #[test]
    fn an_id_not_taken_in_is_new_again() {
        let mut recent = RecentIds::new(8);
        assert_eq!(recent.start(&id("a")), Seen::New);
        recent.finish(&id("a"), false);
        assert_eq!(recent.start(&id("a")), Seen::New);
    }

    #[test]
    fn the_oldest_ids_are_forgotten_past_capacity() {
        let mut recent = RecentIds::new(2);
        for name in ["a", "b", "c"] {
            assert_eq!(recent.start(&id(name)), Seen::New);
            recent.finish(&id(name), true);
        }
        assert_eq!(recent.start(&id("a")), Seen::New, "forgotten");
        assert_eq!(recent.start(&id("c")), Seen::Done);
        assert_eq!(recent.done.len(), 2);
    }
}
