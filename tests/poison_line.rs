//! (Moved beside tests/containment.rs, which covers plug-in panics.)
//! One bad signal never deafens the healer: the poison lines that used to panic the
//! normalizer, through every way in, and a fingerprinter that panics on one signal.
//! Values from outside (capacities, durations) are refused or clamped, never a panic.

mod support;

use std::time::Duration;

use selfheal::fingerprint::{MinerConfig, TemplateMiner};
use selfheal::{
    Fingerprint, Fingerprinter, Healer, HealerConfig, HealingEvent, Normalizer, Phase, Signal,
    Silence, SilenceScope,
};
use support::next;
use tokio::sync::broadcast;

/// Valid UTF-8 lines that panicked the normalizer (a mask inside a quoted phrase joined
/// the value before it, and multibyte text then straddled the phrase's start).
const POISON: [&str; 2] = ["config.yaml:'8 日本語の設定'", ".中:'0 中'"];

const NORMAL: &str = "pool timed out while waiting for an open connection";

/// Two occurrences open an incident for an unknown error.
fn config() -> HealerConfig {
    let mut config = HealerConfig::default();
    config.detection.default_min_occurrences = 2;
    config
}

/// The normal error, twice, opens its incident on `db` after the poison lines.
async fn a_normal_error_still_opens_its_incident(
    healer: &Healer,
    rx: &mut broadcast::Receiver<HealingEvent>,
) {
    for _ in 0..2 {
        healer.observe(Signal::new("db", NORMAL));
    }
    let detected = tokio::time::timeout(Duration::from_secs(60), next(rx, Phase::Detected))
        .await
        .expect("the healer still hears signals");
    assert_eq!(detected.target, "db");
    let incident = healer
        .admin()
        .incident(detected.incident.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.samples[0], NORMAL);
}

#[tokio::test(start_paused = true)]
async fn the_poison_lines_through_observe() {
    survives_the_poison_lines(Healer::builder().config(config()).build().unwrap()).await;
}

/// The poison lines through `observe`, then the normal error: nothing dropped or failed.
async fn survives_the_poison_lines(healer: Healer) {
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    for (i, line) in POISON.iter().enumerate() {
        healer.observe(Signal::new(format!("cfg-{i}"), *line));
    }
    a_normal_error_still_opens_its_incident(&healer, &mut rx).await;
    assert_eq!((healer.dropped(), healer.failed()), (0, 0));
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_poison_lines_through_the_tracing_layer() {
    use tracing_subscriber::layer::SubscriberExt;

    let healer = Healer::builder().config(config()).build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    let subscriber = tracing_subscriber::registry().with(healer.layer());
    tracing::subscriber::with_default(subscriber, || {
        for line in POISON {
            tracing::error!(component = "cfg", "{line}");
        }
    });
    a_normal_error_still_opens_its_incident(&healer, &mut rx).await;
    assert_eq!(healer.observed(), 4);
    assert_eq!((healer.dropped(), healer.failed()), (0, 0));
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_poison_lines_through_the_template_miner() {
    let healer = Healer::builder()
        .config(config())
        .fingerprinter(TemplateMiner::new(MinerConfig::default()))
        .build()
        .unwrap();
    survives_the_poison_lines(healer).await;
}

/// The normalizer, except that it panics on a line holding `poison`.
#[derive(Debug, Default)]
struct Fragile(Normalizer);

impl Fingerprinter for Fragile {
    fn name(&self) -> &str {
        "fragile"
    }
    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        assert!(
            !signal.message.contains("poison"),
            "fragile fingerprinter: cannot read {}",
            signal.message
        );
        self.0.fingerprint(signal)
    }
}

#[tokio::test(start_paused = true)]
async fn a_fingerprinter_that_panics_costs_one_signal() {
    let healer = Healer::builder()
        .config(config())
        .fingerprinter(Fragile::default())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    for _ in 0..3 {
        healer.observe(Signal::new("cfg", "poison pill 42"));
    }
    a_normal_error_still_opens_its_incident(&healer, &mut rx).await;
    assert_eq!(healer.failed(), 3);
    assert_eq!(healer.dropped(), 0);
    let stats = healer.admin().stats().await.unwrap();
    assert_eq!((stats.failed, stats.dropped, stats.observed), (3, 0, 5));
    assert!(format!("{healer:?}").contains("failed: 3"));
    running.shutdown().await;
}

#[test]
fn capacities_beyond_the_range_are_refused_by_name() {
    for (key, value) in [
        ("queue_capacity", i64::MAX as u64),
        ("queue_capacity", 0),
        ("event_capacity", 1 << 62),
        ("event_capacity", 65_537),
    ] {
        let err = HealerConfig::from_toml(&format!("[intake]\n{key} = {value}"))
            .and_then(|config| Healer::builder().config(config).build().map(|_| ()));
        let err = match err {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{key} = {value} was accepted"),
        };
        assert!(err.contains(&format!("intake.{key}")), "{err}");
        assert!(err.contains("from 1 to"), "{err}");
    }
    // The same through the builder, without TOML.
    let mut config = HealerConfig::default();
    config.intake.queue_capacity = usize::MAX;
    let err = Healer::builder().config(config).build().unwrap_err();
    assert!(err.to_string().contains("intake.queue_capacity"), "{err}");
    // The largest allowed values build.
    let mut config = HealerConfig::default();
    config.intake.queue_capacity = selfheal::IntakeConfig::MAX_QUEUE_CAPACITY;
    config.intake.event_capacity = selfheal::IntakeConfig::MAX_EVENT_CAPACITY;
    Healer::builder().config(config).build().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silence_of_duration_max_is_a_century_not_a_panic() {
    let silence = Silence::from_now(SilenceScope::Target("db".into()), Duration::MAX);
    let length = silence.ends_at - silence.starts_at;
    assert_eq!(length.to_std().unwrap(), Silence::MAX_DURATION);
    let healer = Healer::builder().config(config()).build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer.admin().add_silence(silence, "ops").await.unwrap();
    for _ in 0..2 {
        healer.observe(Signal::new("db", NORMAL));
    }
    healer.observe(Signal::new("cache", NORMAL));
    healer.observe(Signal::new("cache", NORMAL));
    let detected = next(&mut rx, Phase::Detected).await;
    assert_eq!(detected.target, "cache", "db is silenced");
    running.shutdown().await;
}
