//! The intake queue between [`Healer::observe`](super::Healer::observe) and the intake
//! task: bounded in signals and in bytes, and fair per target.
//!
//! Each target has its own lane. Two rules, both checked in O(1) under one short lock:
//!
//! - **Admission.** A signal of target `T` is queued only if, with it, `T` holds no more
//!   signals than the queue had free slots before it, and no more bytes than it had
//!   free bytes (each signal is charged [`Signal::heap_bytes`]). This also keeps the
//!   whole queue within both capacities. So one target holds at most half the queue,
//!   and while one target floods, any other target is admitted until it holds a
//!   quarter of the slots (and of the bytes, less one signal).
//! - **Service.** The intake takes the lanes in turn, one signal per turn, in the order
//!   they became non-empty. A signal with `j` signals of its own target ahead of it
//!   therefore waits behind at most `j + 1` signals of each other target with queued
//!   signals: with one flooding target, the `k`-th signal of a burst behind at most
//!   `k` of the flood's.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::Signal;

/// The queue. `push` never blocks; `pop` waits for a signal.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// Woken when the queue goes from empty to non-empty.
    ready: Notify,
    max_signals: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    /// The lanes with at least one signal, by target.
    lanes: HashMap<String, Lane>,
    /// The same targets, in the order the intake serves them.
    turns: VecDeque<String>,
    signals: usize,
    bytes: usize,
    closed: bool,
}

#[derive(Debug, Default)]
struct Lane {
    /// Signals with the bytes each was charged.
    signals: VecDeque<(Signal, usize)>,
    bytes: usize,
}

impl Queue {
    pub(super) fn new(max_signals: usize, max_bytes: usize) -> Self {
        Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max_signals,
            max_bytes,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `signal`, or refuses it (`false`): the queue is closed, or its target
    /// would hold more than the queue has free.
    pub(super) fn push(&self, signal: Signal) -> bool {
        let size = signal.heap_bytes();
        let mut guard = self.state();
        let state = &mut *guard;
        if state.closed {
            return false;
        }
        let free_signals = self.max_signals.saturating_sub(state.signals);
        let free_bytes = self.max_bytes.saturating_sub(state.bytes);
        let (held, held_bytes) = state
            .lanes
            .get(&signal.target)
            .map_or((0, 0), |l| (l.signals.len(), l.bytes));
        if held + 1 > free_signals || held_bytes.saturating_add(size) > free_bytes {
            return false;
        }
        let was_empty = state.signals == 0;
        state.signals += 1;
        state.bytes += size;
        if let Some(lane) = state.lanes.get_mut(&signal.target) {
            lane.bytes += size;
            lane.signals.push_back((signal, size));
        } else {
            let target = signal.target.clone();
            state.turns.push_back(target.clone());
            state.lanes.insert(
                target,
                Lane {
                    signals: VecDeque::from([(signal, size)]),
                    bytes: size,
                },
            );
        }
        drop(guard);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// The next signal in turn, if any.
    pub(super) fn try_pop(&self) -> Option<Signal> {
        let mut guard = self.state();
        let state = &mut *guard;
        let target = state.turns.pop_front()?;
        let lane = state.lanes.get_mut(&target)?;
        let (signal, size) = lane.signals.pop_front()?;
        lane.bytes -= size;
        if lane.signals.is_empty() {
            state.lanes.remove(&target);
        } else {
            state.turns.push_back(target);
        }
        state.signals -= 1;
        state.bytes -= size;
        Some(signal)
    }

    /// Waits for the next signal in turn. Cancel-safe: nothing is taken until it returns.
    pub(super) async fn pop(&self) -> Signal {
        loop {
            if let Some(signal) = self.try_pop() {
                return signal;
            }
            // A push between the check and this wait leaves a permit: no lost wake-up.
            self.ready.notified().await;
        }
    }

    /// Refuses every later signal and discards the queued ones; returns how many.
    pub(super) fn close(&self) -> usize {
        let mut state = self.state();
        state.closed = true;
        let left = state.signals;
        state.lanes.clear();
        state.turns.clear();
        state.signals = 0;
        state.bytes = 0;
        left
    }

    /// The targets of the queued signals, lane by lane.
    #[cfg(test)]
    pub(super) fn targets(&self) -> Vec<String> {
        let state = self.state();
        state
            .turns
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.clone(), state.lanes[t].signals.len()))
            .collect()
    }

    /// Signals and bytes queued now.
    pub(super) fn len(&self) -> (usize, usize) {
        let state = self.state();
        (state.signals, state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(target: &str, stack_bytes: usize) -> Signal {
        Signal::new(target, "boom").stack("x".repeat(stack_bytes))
    }

    #[test]
    fn many_big_signals_never_exceed_the_byte_budget() {
        let budget = 8 << 20;
        let queue = Queue::new(10_000, budget);
        let (mut queued, mut refused) = (0, 0);
        for i in 0..1_000 {
            // A dozen targets, 200 KiB each: 2.4 GB offered to an 8 MiB queue.
            if queue.push(big(&format!("t{}", i % 12), 200 << 10)) {
                queued += 1;
            } else {
                refused += 1;
            }
            let (_, bytes) = queue.len();
            assert!(bytes <= budget, "{bytes} > {budget} after {i}");
        }
        assert!(queued >= 30, "the budget is used: {queued} queued");
        assert_eq!(queued + refused, 1_000);
        let (signals, bytes) = queue.len();
        assert_eq!(signals, queued);
        assert!(bytes > budget / 2, "{bytes}");
        // Taking signals out gives their bytes back.
        while queue.try_pop().is_some() {}
        assert_eq!(queue.len(), (0, 0));
    }

    #[test]
    fn one_target_holds_at_most_half_and_another_always_finds_room() {
        let queue = Queue::new(100, 64 << 20);
        let flood = (0..1_000)
            .filter(|_| queue.push(Signal::new("a", "x")))
            .count();
        assert_eq!(flood, 50, "a lone target fills half the slots");
        for i in 0..25 {
            assert!(queue.push(Signal::new("b", "y")), "b's signal {i} refused");
            // The flood goes on between b's signals and keeps being shed.
            assert!(!queue.push(Signal::new("a", "x")));
        }
        // By bytes too: a lone target fills at most half the bytes.
        let queue = Queue::new(10_000, 4 << 20);
        while queue.push(big("a", 100 << 10)) {}
        let (_, bytes) = queue.len();
        assert!(bytes <= 2 << 20, "{bytes}");
        assert!(queue.push(big("b", 100 << 10)));
    }

    #[test]
    fn targets_are_served_in_turn_one_signal_each() {
        let queue = Queue::new(1_000, 64 << 20);
        for _ in 0..100 {
            queue.push(Signal::new("a", "flood"));
        }
        for _ in 0..3 {
            queue.push(Signal::new("b", "burst"));
        }
        queue.push(Signal::new("c", "one"));
        let order: String = std::iter::from_fn(|| queue.try_pop())
            .take(10)
            .map(|s| s.target)
            .collect();
        assert_eq!(order, "abcababaaa");
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_and_close_discards_and_refuses() {
        let queue = std::sync::Arc::new(Queue::new(10, 1 << 20));
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await.target })
        };
        tokio::task::yield_now().await;
        assert!(queue.push(Signal::new("a", "x")));
        assert_eq!(waiter.await.unwrap(), "a");
        queue.push(Signal::new("a", "x"));
        queue.push(Signal::new("b", "x"));
        assert_eq!(queue.close(), 2);
        assert!(!queue.push(Signal::new("c", "x")));
        assert!(queue.try_pop().is_none());
    }
}
