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
//!
//! What a push costs the host (`observe` runs on its threads): one uncontended lock, a
//! hash of the target, and a move into the lane's ring buffer. A lane keeps its buffer
//! and its target when it empties (up to [`KEPT_LANES`] idle lanes, each buffer cut back
//! to [`KEPT_CAPACITY`]), so in steady state a push allocates nothing. The intake is
//! woken only when it is parked, waiting on an empty queue: while it is busy, a push
//! touches nothing but the lock. Counts of accepted and refused signals are kept under
//! the same lock, so `observe` needs no atomic of its own. A host event of the tracing
//! layer waits as the layer captured it (its text in one buffer, [`Captured`]): the
//! intake, not the host's thread, makes it a signal.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::Signal;
use crate::layer::Captured;

/// What waits in the queue: a signal, or a host event the tracing layer captured, which
/// the intake makes a signal (so the host's thread does not build it).
#[derive(Debug)]
pub(super) enum Queued {
    Signal(Signal),
    Event(Captured),
}

impl Queued {
    /// Its lane: the signal's target, or the target the event's signal will have.
    fn target<'a>(&'a self, default_target: Option<&'a str>) -> &'a str {
        match self {
            Queued::Signal(signal) => &signal.target,
            Queued::Event(event) => event.target(default_target),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Queued::Signal(signal) => signal.heap_bytes(),
            Queued::Event(event) => event.heap_bytes(),
        }
    }

    /// The signal, bounded like every signal the healer takes in.
    pub(super) fn into_signal(self, default_target: Option<&str>) -> Signal {
        match self {
            Queued::Signal(signal) => signal,
            Queued::Event(event) => {
                let mut signal = event.into_signal(default_target);
                signal.bound();
                signal
            }
        }
    }
}

/// Idle lanes kept with their buffer, so returning targets cost no allocation.
const KEPT_LANES: usize = 64;
/// The most signals an idle lane's buffer keeps room for.
const KEPT_CAPACITY: usize = 64;

/// The queue. `push` never blocks; `pop` waits for a signal.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// Woken when a push finds the intake parked.
    ready: Notify,
    max_signals: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Every lane, empty or not; a free slot has no target.
    lanes: Vec<Lane>,
    /// The lane of each target that has one.
    by_target: foldhash::HashMap<String, usize>,
    /// Lane slots free for a new target.
    free: Vec<usize>,
    /// The non-empty lanes, in the order the intake serves them.
    turns: VecDeque<usize>,
    signals: usize,
    bytes: usize,
    /// Signals queued and refused so far.
    accepted: u64,
    refused: u64,
    /// The intake found the queue empty and waits: the next push wakes it.
    parked: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct Lane {
    target: String,
    /// Signals with the bytes each was charged.
    signals: VecDeque<(Queued, usize)>,
    bytes: usize,
}

impl State {
    /// A lane for `target`, which has none: a free slot, or a new one.
    fn new_lane(&mut self, target: &str) -> usize {
        let lane = self.free.pop().unwrap_or_else(|| {
            self.lanes.push(Lane::default());
            self.lanes.len() - 1
        });
        self.lanes[lane].target = target.to_owned();
        self.by_target.insert(target.to_owned(), lane);
        lane
    }

    /// The next signal in turn, if any.
    fn take(&mut self) -> Option<Queued> {
        let index = self.turns.pop_front()?;
        let lane = &mut self.lanes[index];
        let (signal, size) = lane.signals.pop_front()?;
        lane.bytes -= size;
        self.signals -= 1;
        self.bytes -= size;
        if lane.signals.is_empty() {
            self.idle(index);
        } else {
            self.turns.push_back(index);
        }
        Some(signal)
    }

    /// Keeps the just emptied lane `index` for its target's return, or frees it when
    /// enough idle lanes are kept already.
    fn idle(&mut self, index: usize) {
        let idle = self.lanes.len() - self.free.len() - self.turns.len();
        let lane = &mut self.lanes[index];
        if idle <= KEPT_LANES {
            lane.signals.shrink_to(KEPT_CAPACITY);
            return;
        }
        let lane = std::mem::take(lane);
        self.by_target.remove(&lane.target);
        self.free.push(index);
    }
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
        self.push_queued(Queued::Signal(signal), None)
    }

    /// Queues a host event the tracing layer captured; its lane is the target its signal
    /// will have with `default_target`.
    pub(super) fn push_event(&self, event: Captured, default_target: Option<&str>) -> bool {
        self.push_queued(Queued::Event(event), default_target)
    }

    fn push_queued(&self, item: Queued, default_target: Option<&str>) -> bool {
        let size = item.heap_bytes();
        let target = item.target(default_target);
        let mut guard = self.state();
        let state = &mut *guard;
        if state.closed || state.signals >= self.max_signals {
            // Full (or shut): refused without looking the target up.
            state.refused += 1;
            drop(guard);
            return false;
        }
        let free_signals = self.max_signals.saturating_sub(state.signals);
        let free_bytes = self.max_bytes.saturating_sub(state.bytes);
        let found = state.by_target.get(target).copied();
        let (held, held_bytes) = found.map_or((0, 0), |i| {
            let lane = &state.lanes[i];
            (lane.signals.len(), lane.bytes)
        });
        if held + 1 > free_signals || held_bytes.saturating_add(size) > free_bytes {
            state.refused += 1;
            drop(guard);
            return false;
        }
        let index = match found {
            Some(index) => index,
            None => state.new_lane(target),
        };
        let lane = &mut state.lanes[index];
        if lane.signals.is_empty() {
            state.turns.push_back(index);
        }
        lane.bytes += size;
        lane.signals.push_back((item, size));
        state.signals += 1;
        state.bytes += size;
        state.accepted += 1;
        let wake = std::mem::take(&mut state.parked);
        drop(guard);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// The next signal in turn, if any.
    #[cfg(test)]
    pub(super) fn try_pop(&self) -> Option<Signal> {
        self.state().take().map(|item| item.into_signal(None))
    }

    /// Waits for the next signal in turn. Cancel-safe: nothing is taken until it returns.
    pub(super) async fn pop(&self) -> Queued {
        loop {
            {
                let mut state = self.state();
                if let Some(signal) = state.take() {
                    return signal;
                }
                // Parked under the lock a push takes: the push that follows sees it.
                state.parked = true;
            }
            // A push between the unlock and this wait leaves a permit: no lost wake-up.
            self.ready.notified().await;
        }
    }

    /// Refuses every later signal and discards the queued ones; returns how many.
    pub(super) fn close(&self) -> usize {
        let mut state = self.state();
        state.closed = true;
        let left = state.signals;
        state.lanes.clear();
        state.by_target.clear();
        state.free.clear();
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
            .flat_map(|&i| {
                let lane = &state.lanes[i];
                std::iter::repeat_n(lane.target.clone(), lane.signals.len())
            })
            .collect()
    }

    /// Signals and bytes queued now.
    pub(super) fn len(&self) -> (usize, usize) {
        let state = self.state();
        (state.signals, state.bytes)
    }

    /// Signals queued and refused so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.accepted, state.refused)
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
            tokio::spawn(async move { queue.pop().await.into_signal(None).target })
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

    #[test]
    fn a_lane_that_empties_is_kept_for_its_target_and_served_after_the_lanes_ahead() {
        let queue = Queue::new(1_000, 64 << 20);
        for _ in 0..500 {
            assert!(queue.push(Signal::new("a", "x")));
        }
        queue.push(Signal::new("b", "y"));
        let order: String = std::iter::from_fn(|| queue.try_pop())
            .map(|s| s.target)
            .collect();
        assert_eq!(order.len(), 501);
        assert!(order.starts_with("aba"), "{order}");
        {
            let state = queue.state();
            assert_eq!(state.by_target.len(), 2, "both lanes are kept");
            let a = &state.lanes[state.by_target["a"]];
            assert!(
                a.signals.capacity() <= KEPT_CAPACITY,
                "{}",
                a.signals.capacity()
            );
        }
        // `b` comes back first, so it is served first: the order is that of becoming
        // non-empty, whatever lane slot each kept.
        queue.push(Signal::new("b", "y"));
        queue.push(Signal::new("a", "x"));
        queue.push(Signal::new("a", "x"));
        queue.push(Signal::new("c", "z"));
        assert_eq!(queue.targets(), ["b", "a", "a", "c"]);
        let order: String = std::iter::from_fn(|| queue.try_pop())
            .map(|s| s.target)
            .collect();
        assert_eq!(order, "baca");
        assert_eq!(queue.state().lanes.len(), 3);
    }

    #[test]
    fn idle_lanes_are_bounded_and_their_slots_reused() {
        let queue = Queue::new(10_000, 64 << 20);
        for round in 0..3 {
            for t in 0..1_000 {
                assert!(queue.push(Signal::new(format!("t{round}-{t}"), "x")));
            }
            while queue.try_pop().is_some() {}
            let state = queue.state();
            assert_eq!(state.by_target.len(), KEPT_LANES, "round {round}");
            // The kept lanes of the round before hold their slots; all others are reused.
            let slots = if round == 0 {
                1_000
            } else {
                1_000 + KEPT_LANES
            };
            assert_eq!(state.lanes.len(), slots, "round {round}");
            assert_eq!(state.free.len(), slots - KEPT_LANES);
        }
        assert_eq!(queue.counts(), (3_000, 0));
    }

    #[tokio::test]
    async fn a_push_wakes_the_intake_only_while_it_waits() {
        use futures_util::FutureExt as _;
        let queue = std::sync::Arc::new(Queue::new(10, 1 << 20));
        // Nobody waits: pushes leave no wake-up behind.
        queue.push(Signal::new("a", "x"));
        queue.push(Signal::new("b", "x"));
        assert!(queue.ready.notified().now_or_never().is_none());
        assert_eq!(queue.pop().await.into_signal(None).target, "a");
        assert_eq!(queue.pop().await.into_signal(None).target, "b");
        // Now the intake waits on the empty queue: the next push wakes it, once.
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await.into_signal(None).target })
        };
        while !queue.state().parked {
            tokio::task::yield_now().await;
        }
        queue.push(Signal::new("c", "x"));
        assert!(!queue.state().parked);
        assert_eq!(waiter.await.unwrap(), "c");
        queue.push(Signal::new("d", "x"));
        assert!(queue.ready.notified().now_or_never().is_none());
        assert_eq!(queue.counts(), (4, 0));
        assert_eq!(queue.close(), 1);
        assert!(!queue.push(Signal::new("e", "x")));
        assert_eq!(queue.counts(), (4, 1));
    }
}
