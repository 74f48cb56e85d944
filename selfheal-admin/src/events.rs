//! Live events: every `HealingEvent` as server-sent events, with ids, a bounded replay
//! buffer for `Last-Event-ID`, keep-alives, and slow clients dropped.
//!
//! One task (the hub's) reads the healer's broadcast, numbers each event, keeps the
//! last [`AdminConfig::replay`] (default [`DEFAULT_REPLAY`]) in a ring and hands each to every client's own bounded queue
//! with `try_send`. Nothing here ever waits for a client: a client whose queue is full
//! (it stopped reading, or reads slower than events come) is dropped and counted, and
//! may reconnect with `Last-Event-ID` to get what is still in the ring. The healer's
//! broadcast never waits either; if the hub itself falls behind it, the lost events'
//! ids are skipped and the clients get an `event: gap`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::{Query, State},
    http::HeaderMap,
    response::{
        IntoResponse,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::stream::{self, Stream, StreamExt};
use selfheal_core::{Healer, HealingEvent};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::{config::AdminConfig, state::AppState};

/// Events kept for clients that reconnect with `Last-Event-ID`.
pub(crate) const DEFAULT_REPLAY: usize = 1024;

/// Events one client may have waiting before it counts as stuck and is dropped.
pub(crate) const CLIENT_QUEUE: usize = 256;

/// One numbered event, serialized once for every client.
#[derive(Debug)]
pub(crate) struct Numbered {
    /// Its id on the stream (from 1, never reused while the hub lives).
    pub(crate) id: u64,
    /// The phase as it is spelled on the wire (`awaiting_approval`).
    pub(crate) phase: String,
    /// The event as JSON.
    pub(crate) json: String,
}

/// What a client receives.
#[derive(Debug, Clone)]
enum Item {
    Event(Arc<Numbered>),
    /// Events `from..=to` are lost to this client.
    Gap {
        from: u64,
        to: u64,
    },
}

struct Ring {
    buffer: VecDeque<Arc<Numbered>>,
    /// The id the next event gets.
    next_id: u64,
    clients: Vec<mpsc::Sender<Item>>,
}

/// Numbers every event and keeps the last ones for clients that reconnect.
pub(crate) struct Hub {
    ring: Mutex<Ring>,
    capacity: usize,
    client_queue: usize,
    dropped_clients: AtomicU64,
    lagged: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("capacity", &self.capacity)
            .field("dropped_clients", &self.dropped_clients())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Subscribes to `healer` and starts the task that feeds the clients; it ends (and
    /// with it every client's stream) when the healer shuts down.
    pub(crate) fn start(healer: &Healer, config: &AdminConfig) -> Arc<Self> {
        let hub = Arc::new(Self::new(config.replay, CLIENT_QUEUE));
        let mut events = healer.subscribe();
        let stopped = healer.stopped();
        let feeding = hub.clone();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let received = tokio::select! {
                    received = events.recv() => received,
                    // The healer shuts down: pass on what it published so far, then
                    // end every client's stream.
                    () = &mut stopped => {
                        while let Ok(event) = events.try_recv() {
                            feeding.publish(&event);
                        }
                        break;
                    }
                };
                match received {
                    Ok(event) => feeding.publish(&event),
                    Err(broadcast::error::RecvError::Lagged(n)) => feeding.lost(n),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            feeding.close();
        });
        hub
    }

    pub(crate) fn new(capacity: usize, client_queue: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                buffer: VecDeque::with_capacity(capacity.min(4096)),
                next_id: 1,
                clients: Vec::new(),
            }),
            capacity: capacity.max(1),
            client_queue: client_queue.max(1),
            dropped_clients: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers `event`, keeps it, and offers it to every client.
    fn publish(&self, event: &HealingEvent) {
        let json = match serde_json::to_string(event) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, "a healing event did not serialize; skipped");
                return;
            }
        };
        let phase = match serde_json::to_value(event.phase) {
            Ok(serde_json::Value::String(s)) => s,
            _ => "unknown".to_owned(),
        };
        let mut ring = self.ring();
        let numbered = Arc::new(Numbered {
            id: ring.next_id,
            phase,
            json,
        });
        ring.next_id += 1;
        if ring.buffer.len() == self.capacity {
            ring.buffer.pop_front();
        }
        ring.buffer.push_back(numbered.clone());
        self.fan_out(&mut ring, Item::Event(numbered));
    }

    /// The hub fell `n` events behind the healer's broadcast: their ids are skipped.
    fn lost(&self, n: u64) {
        self.lagged.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(
            lost = n,
            "the live event hub fell behind the healer's event stream"
        );
        let mut ring = self.ring();
        let from = ring.next_id;
        ring.next_id += n;
        let to = ring.next_id - 1;
        self.fan_out(&mut ring, Item::Gap { from, to });
    }

    /// Gives `item` to every client without waiting: a full queue drops its client.
    fn fan_out(&self, ring: &mut Ring, item: Item) {
        ring.clients.retain(|client| match client.try_send(item.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped_clients.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    queue = self.client_queue,
                    "an event-stream client stopped reading; dropped (it may reconnect with Last-Event-ID)"
                );
                false
            }
        });
    }

    /// The event stream closed (the healer shut down): every client's stream ends.
    fn close(&self) {
        self.ring().clients.clear();
    }

    /// A new client that has seen everything up to `last_seen`: what it missed that is
    /// still kept, and its queue for what comes next. Taken under one lock, so nothing
    /// falls between the replay and the live stream, and nothing comes twice.
    fn join(&self, last_seen: Option<u64>) -> (Vec<Item>, mpsc::Receiver<Item>) {
        let (tx, rx) = mpsc::channel(self.client_queue);
        let mut ring = self.ring();
        let mut replay = Vec::new();
        if let Some(last) = last_seen {
            let newest = ring.next_id - 1;
            let oldest = ring.buffer.front().map_or(ring.next_id, |e| e.id);
            if last > newest {
                // An id this hub never gave (the host restarted): all that is kept.
                replay.push(Item::Gap { from: 1, to: last });
                replay.extend(ring.buffer.iter().cloned().map(Item::Event));
            } else {
                if last + 1 < oldest {
                    replay.push(Item::Gap {
                        from: last + 1,
                        to: oldest - 1,
                    });
                }
                replay.extend(
                    ring.buffer
                        .iter()
                        .filter(|e| e.id > last)
                        .cloned()
                        .map(Item::Event),
                );
            }
        }
        ring.clients.push(tx);
        (replay, rx)
    }

    /// Clients connected now.
    pub(crate) fn clients(&self) -> usize {
        let mut ring = self.ring();
        ring.clients.retain(|c| !c.is_closed());
        ring.clients.len()
    }

    /// Clients dropped because they did not keep up.
    pub(crate) fn dropped_clients(&self) -> u64 {
        self.dropped_clients.load(Ordering::Relaxed)
    }

    /// Events lost because the hub fell behind the healer's broadcast.
    pub(crate) fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

fn to_sse(item: Item) -> Event {
    match item {
        Item::Event(e) => Event::default()
            .id(e.id.to_string())
            .event(&e.phase)
            .data(&e.json),
        Item::Gap { from, to } => Event::default().event("gap").data(
            serde_json::json!({
                "from": from,
                "to": to,
                "missed": to.saturating_sub(from) + 1,
                "detail": "these events are no longer kept; reload the state from the API",
            })
            .to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Resume {
    last_event_id: Option<String>,
}

/// `GET /events`.
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<Resume>,
) -> impl IntoResponse {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id)
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (replay, rx) = state.events.join(last_seen);
    Sse::new(client_stream(replay, rx)).keep_alive(KeepAlive::default())
}

fn client_stream(
    replay: Vec<Item>,
    rx: mpsc::Receiver<Item>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let live = stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    });
    stream::iter(replay)
        .chain(live)
        .map(|item| Ok(to_sse(item)))
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::Phase;

    fn event(n: usize) -> HealingEvent {
        serde_json::from_value(serde_json::json!({
            "incident": null,
            "target": format!("t{n}"),
            "phase": Phase::AwaitingApproval,
            "detail": "line one\nline two",
            "at": chrono::Utc::now(),
        }))
        .unwrap()
    }

    fn ids(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Event(e) => e.id.to_string(),
                Item::Gap { from, to } => format!("gap {from}-{to}"),
            })
            .collect()
    }

    #[test]
    fn replays_what_is_kept_after_the_last_seen_id_and_says_what_is_lost() {
        let hub = Hub::new(3, 8);
        for n in 0..5 {
            hub.publish(&event(n));
        }
        assert_eq!(ids(&hub.join(Some(3)).0), ["4", "5"]);
        assert_eq!(ids(&hub.join(Some(1)).0), ["gap 2-2", "3", "4", "5"]);
        assert_eq!(ids(&hub.join(Some(5)).0), Vec::<String>::new());
        assert_eq!(ids(&hub.join(None).0), Vec::<String>::new());
        assert_eq!(ids(&hub.join(Some(90)).0), ["gap 1-90", "3", "4", "5"]);
    }

    #[test]
    fn a_full_client_is_dropped_and_counted_and_the_others_go_on() {
        let hub = Hub::new(16, 2);
        let (_, _stuck) = hub.join(None);
        let (_, mut reading) = hub.join(None);
        for n in 0..3 {
            hub.publish(&event(n));
            assert!(reading.try_recv().is_ok());
        }
        assert_eq!(hub.dropped_clients(), 1);
        assert_eq!(hub.clients(), 1);
    }

    #[test]
    fn lost_events_skip_ids_and_reach_clients_as_a_gap() {
        let hub = Hub::new(16, 8);
        let (_, mut rx) = hub.join(None);
        hub.publish(&event(0));
        hub.lost(3);
        hub.publish(&event(1));
        let got: Vec<Item> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(ids(&got), ["1", "gap 2-4", "5"]);
        assert_eq!(hub.lagged(), 3);
        let json = match &got[0] {
            Item::Event(e) => e.json.clone(),
            Item::Gap { .. } => unreachable!(),
        };
        let back: HealingEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.detail, "line one\nline two");
        assert!(!json.contains('\n'), "one data line: {json}");
    }
}
