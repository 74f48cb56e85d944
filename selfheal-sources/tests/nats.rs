//! The NATS publisher and consumer against the shared JetStream server (`NATS_URL`,
//! default `nats://127.0.0.1:4222`), each test on a stream of its own that is deleted
//! when it ends. Without the server they say they skipped (and fail under `CI=true`).
#![cfg(feature = "nats")]

use std::time::Duration;

use selfheal_core::{Healer, Level, Signal, SignalSource};
use selfheal_sources::nats::async_nats::{self, HeaderMap, jetstream};
use selfheal_sources::nats::{
    NatsSink, NatsSource, SinkConfig, SourceConfig, StreamSettings, decode, encode,
};
use selfheal_testsupport::ScratchNats;
use tracing_subscriber::layer::SubscriberExt as _;

fn settings(scratch: &ScratchNats) -> StreamSettings {
    StreamSettings::new(scratch.stream(), scratch.subject_prefix())
}

fn source_config(scratch: &ScratchNats) -> SourceConfig {
    SourceConfig {
        stream: settings(scratch),
        ack_wait: Duration::from_secs(1),
        ..SourceConfig::new(scratch.url())
    }
}

async fn jetstream(scratch: &ScratchNats) -> jetstream::Context {
    let client = async_nats::connect(scratch.url()).await.expect("connect");
    jetstream::new(client)
}

/// Polls `done` (every 20 ms, for up to 20 s) until it holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The group consumer's state: (delivered, acknowledged up to, pending acks,
/// redelivered); zeros until the healer created it.
async fn consumer_state(
    js: &jetstream::Context,
    config: &SourceConfig,
) -> (u64, u64, usize, usize) {
    let stream = js.get_stream(&config.stream.name).await.expect("stream");
    let Ok(info) = stream.consumer_info(&config.durable).await else {
        return (0, 0, 0, 0);
    };
    (
        info.delivered.stream_sequence,
        info.ack_floor.stream_sequence,
        info.num_ack_pending,
        info.num_redelivered,
    )
}

async fn publish_raw(js: &jetstream::Context, subject: String, id: &str, payload: Vec<u8>) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    let ack = js
        .publish_with_headers(subject, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    !ack.duplicate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_terminated_and_counted_and_the_good_one_is_ingested() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    let config = source_config(&scratch);
    let js = jetstream(&scratch).await;
    config.stream.ensure(&js).await.expect("stream");
    let subject = config.stream.subject("orders");
    let bad: [&[u8]; 4] = [
        b"{\"message\": \"password=hunter2\"",
        br#"{"service":"orders","target":"db","message":42}"#,
        &[0xff, 0xfe, 0x00],
        b"",
    ];
    for (i, payload) in bad.iter().enumerate() {
        assert!(publish_raw(&js, subject.clone(), &format!("bad-{i}"), payload.to_vec()).await);
    }
    let good = Signal::new(
        "orders-db",
        "pool timed out while waiting for an open connection",
    );
    assert!(publish_raw(&js, subject.clone(), "good", encode(&good)).await);

    let source = NatsSource::new(config.clone());
    let counters = source.counters();
    let healer = Healer::builder().source(source).build().unwrap();
    let running = healer.spawn();
    until("the five messages to settle", async || {
        let (delivered, floor, pending, _) = consumer_state(&js, &config).await;
        delivered == 5 && floor == 5 && pending == 0
    })
    .await;
    let stats = counters.stats();
    assert_eq!((stats.malformed, stats.ingested), (4, 1), "{stats:?}");
    assert_eq!(healer.sources()[0].malformed, 4);
    assert_eq!(healer.observed(), 1, "only the signal reached the intake");
    // Terminated, not handed back: none is delivered again, however long it waits.
    let (_, _, _, redelivered) = consumer_state(&js, &config).await;
    assert_eq!(redelivered, 0);
    assert_eq!(stats.received, 5);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_already_taken_in_is_acknowledged_not_counted_twice() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    let mut config = source_config(&scratch);
    // Short, so the test can put the same message id in the stream twice, as a
    // redelivery after a lost acknowledgement would bring it.
    config.stream.duplicate_window = Duration::from_millis(200);
    let js = jetstream(&scratch).await;
    config.stream.ensure(&js).await.expect("stream");
    let subject = config.stream.subject("orders");
    let signal = encode(&Signal::new("orders-db", "connection refused"));
    assert!(publish_raw(&js, subject.clone(), "once", signal.clone()).await);

    let source = NatsSource::new(config.clone());
    let counters = source.counters();
    let healer = Healer::builder().source(source).build().unwrap();
    let running = healer.spawn();
    until("the first delivery to be acknowledged", async || {
        consumer_state(&js, &config).await.1 == 1
    })
    .await;
    // Once the stream forgot the id, the same message goes in again.
    until("the stream to take the same id again", async || {
        publish_raw(&js, subject.clone(), "once", signal.clone()).await
    })
    .await;
    until("the second delivery to be acknowledged", async || {
        consumer_state(&js, &config).await.1 == 2
    })
    .await;
    let stats = counters.stats();
    assert_eq!(
        (stats.received, stats.ingested, stats.duplicates),
        (2, 1, 1),
        "{stats:?}"
    );
    assert_eq!(healer.observed(), 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_publishes_signals_and_tracing_events_with_unique_ids() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    let mut config = SinkConfig::new(scratch.url(), "orders");
    config.stream = settings(&scratch);
    let stream_settings = config.stream.clone();
    let sink = NatsSink::start(config).unwrap();
    assert!(sink.publish(Signal::new("orders-db", "connection refused")));
    assert!(sink.publish(Signal::new("cache", "OOM").service("cart")));
    let subscriber = tracing_subscriber::registry().with(sink.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(target: "orders::db", error = "pool timed out", "query failed");
        tracing::warn!(target: "orders::http", component = "payments", "slow upstream");
        tracing::info!(target: "orders::http", "not a signal");
        tracing::error!(target: "selfheal_sources::nats", "the sink's own trouble");
    });
    sink.flush().await;
    let stats = sink.stats();
    assert_eq!(
        (stats.published, stats.dropped, stats.failed),
        (4, 0, 0),
        "{stats:?}"
    );

    let js = jetstream(&scratch).await;
    let mut stream = js.get_stream(&stream_settings.name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    let mut seen = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for seq in 1..=4 {
        let raw = stream.get_raw_message(seq).await.unwrap();
        let id = raw
            .headers
            .get("Nats-Msg-Id")
            .expect("an id")
            .as_str()
            .to_owned();
        assert!(ids.insert(id), "ids are unique");
        let signal = decode(&raw.payload).expect("a signal");
        seen.push((raw.subject.to_string(), signal));
    }
    let orders = stream_settings.subject("orders");
    assert_eq!(seen[0].0, orders);
    assert_eq!(seen[0].1.service, "orders");
    assert_eq!(
        seen[1].0,
        stream_settings.subject("cart"),
        "the signal's own service"
    );
    let (subject, event) = &seen[2];
    assert_eq!(subject, &orders);
    assert_eq!(
        (
            event.target.as_str(),
            event.message.as_str(),
            event.source,
            event.level
        ),
        (
            "orders",
            "query failed: pool timed out",
            SignalSource::Tracing,
            Level::Error
        )
    );
    assert_eq!(seen[3].1.target, "payments");
    assert_eq!(seen[3].1.level, Level::Warn);
}

#[tokio::test(flavor = "current_thread")]
async fn a_sink_whose_server_is_down_never_blocks_and_counts_what_it_drops() {
    let port = selfheal_testsupport::free_port().unwrap();
    let mut config = SinkConfig::new(format!("nats://127.0.0.1:{port}"), "orders");
    config.queue_capacity = 4;
    let sink = NatsSink::start(config).unwrap();
    // One thread, no await: the drain task has not run, so the queue holds exactly 4.
    let queued: Vec<bool> = (0..10)
        .map(|i| sink.publish(Signal::new("db", format!("error {i}"))))
        .collect();
    assert_eq!(queued.iter().filter(|q| **q).count(), 4);
    assert_eq!(sink.stats().dropped, 6);
}

#[tokio::test]
async fn a_sink_outside_a_runtime_is_refused_not_a_panic() {
    let err = std::thread::spawn(|| NatsSink::start(SinkConfig::new("nats://127.0.0.1:1", "x")))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("inside a Tokio runtime"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_server_the_source_fails_and_is_restarted_the_healer_goes_on() {
    let port = selfheal_testsupport::free_port().unwrap();
    let source = NatsSource::new(SourceConfig::new(format!("nats://127.0.0.1:{port}")));
    let healer = Healer::builder().source(source).build().unwrap();
    let running = healer.spawn();
    until("the source to fail once", async || {
        healer.sources()[0].restarts >= 1
    })
    .await;
    healer.observe(Signal::new("db", "connection refused"));
    assert_eq!(healer.observed(), 1);
    running.shutdown().await;
}

/// WARN events, each as its fields' text, caught by a layer of the test's own.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0.lock().unwrap().push(text.0);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_source_warns_when_the_group_consumer_keeps_another_filter() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    let config = source_config(&scratch);
    let js = jetstream(&scratch).await;
    let stream = config.stream.ensure(&js).await.expect("stream");
    // A consumer of the same name made earlier for one service only.
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(config.durable.clone()),
            filter_subject: config.stream.subject("billing"),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let healer = Healer::builder()
        .source(NatsSource::new(config.clone()))
        .build()
        .unwrap();
    let running = healer.spawn();
    until("the source to warn", async || {
        warnings
            .all()
            .iter()
            .any(|w| w.contains("exists with another filter"))
    })
    .await;
    let warning = warnings.all().join("\n");
    assert!(
        warning.contains(&config.stream.subject("billing")),
        "{warning}"
    );
    running.shutdown().await;

    // Its own consumer, as it makes it: no warning.
    let fresh = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(fresh.clone()));
    let own = SourceConfig {
        durable: "selfheal-healers-own".into(),
        ..config.clone()
    };
    let source = NatsSource::new(own.clone());
    let healer = Healer::builder().source(source).build().unwrap();
    let running = healer.spawn();
    until("the consumer to be made", async || {
        consumer_state_exists(&js, &own).await
    })
    .await;
    // The check runs before the consumer is read: once reading, it has spoken.
    let published = encode(&Signal::new("orders-db", "connection refused"));
    assert!(publish_raw(&js, own.stream.subject("orders"), "filter-ok", published).await);
    until("the signal to be taken in", async || healer.observed() >= 1).await;
    assert!(
        !fresh.all().iter().any(|w| w.contains("another filter")),
        "{:?}",
        fresh.all()
    );
    running.shutdown().await;
}

async fn consumer_state_exists(js: &jetstream::Context, config: &SourceConfig) -> bool {
    let Ok(stream) = js.get_stream(&config.stream.name).await else {
        return false;
    };
    stream.consumer_info(&config.durable).await.is_ok()
}

#[tokio::test(flavor = "current_thread")]
async fn a_source_warns_when_default_sinks_publish_to_a_stream_it_does_not_read() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    // A stream holding what a default sink of one service publishes
    // (`selfheal.signals.<service>`), deleted when the test ends; if the server has
    // the default stream already, that one holds it.
    let Some(defaults) = ScratchNats::connect() else {
        return;
    };
    let service = defaults
        .subject_prefix()
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    let js = jetstream(&scratch).await;
    let _ = js
        .create_stream(jetstream::stream::Config {
            name: defaults.stream(),
            subjects: vec![StreamSettings::default().subject(&service)],
            ..Default::default()
        })
        .await;
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let config = source_config(&scratch);
    let healer = Healer::builder()
        .source(NatsSource::new(config.clone()))
        .build()
        .unwrap();
    let running = healer.spawn();
    until("the source to warn", async || {
        warnings
            .all()
            .iter()
            .any(|w| w.contains("a NatsSink with default"))
    })
    .await;
    let warning = warnings.all().join("\n");
    assert!(warning.contains(&config.stream.name), "{warning}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_republished_with_its_id_is_stored_once() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    let mut config = SinkConfig::new(scratch.url(), "orders");
    config.stream = settings(&scratch);
    let stream_settings = config.stream.clone();
    let sink = NatsSink::start(config).unwrap();
    assert!(sink.publish(Signal::new("orders-db", "connection refused")));
    sink.flush().await;
    assert_eq!(sink.stats().published, 1);

    let js = jetstream(&scratch).await;
    let mut stream = js.get_stream(&stream_settings.name).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.config.duplicate_window, stream_settings.duplicate_window,
        "the sink made the stream with a duplicate window"
    );
    let first = stream.get_raw_message(1).await.unwrap();
    let id = first
        .headers
        .get("Nats-Msg-Id")
        .expect("the sink sets an id")
        .as_str()
        .to_owned();
    // Another publisher (a retry, another healer's relay) sends the same signal again
    // with its id: JetStream acknowledges it as a duplicate and keeps one copy.
    let again = publish_raw(&js, first.subject.to_string(), &id, first.payload.to_vec()).await;
    assert!(!again, "acknowledged as a duplicate");
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    // A different id is a different signal.
    assert!(
        publish_raw(
            &js,
            first.subject.to_string(),
            "another",
            first.payload.to_vec()
        )
        .await
    );
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
}
