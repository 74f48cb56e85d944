//! A `tracing_subscriber::Layer` that turns the host's WARN and ERROR events into signals.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level as TraceLevel, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::{ERROR_FIELDS, Healer, Level, Signal, SignalSource, error_chain};

/// Fields that name the affected system; the first present becomes the signal's target.
const TARGET_FIELDS: [&str; 3] = ["heal.target", "component", "peer"];

/// The module paths of selfheal's own crates: their events, and events inside their
/// spans, are the healer's own and never become signals.
const OWN_CRATES: [&str; 6] = [
    "selfheal",
    "selfheal_core",
    "selfheal_storage",
    "selfheal_strategies",
    "selfheal_llm",
    "selfheal_sources",
];

/// Feeds WARN and ERROR events to a [`Healer`]. Get one from [`Healer::layer`].
///
/// The signal's message is the event's `message` followed by the text of its
/// error-bearing fields ([`ERROR_FIELDS`]: `error`, `err`, `error.message`,
/// `exception.message`), each joined with `: `, however they were recorded:
/// `error = %e` (its `Display`), `error = ?e` (its `Debug`) or
/// `error = &e as &dyn Error` (its whole `source()` chain). So
/// `tracing::error!(error = %e, "query failed")` is matched and fingerprinted as
/// `query failed: <the error>`. All fields also become signal fields.
///
/// The target is the first of the fields `heal.target`, `component`, `peer`. Without
/// one, it is the healer's service name (`HealerConfig::service`), or [`DEFAULT_TARGET`]
/// when that is empty; the event's module path is kept in the `tracing.target` field
/// either way. With `intake.module_targets = true` the module path is the target
/// instead (every module of the host its own target).
///
/// Events of selfheal's own crates (`selfheal`, `selfheal_core`, `selfheal_storage`,
/// `selfheal_strategies`, `selfheal_llm`, `selfheal_sources` and their modules) are
/// ignored so the healer never feeds on itself, and so are events raised inside one of
/// their spans: a driver's warning about a statement the healer's store ran (every
/// `SqliteStore` and `PostgresStore` call runs in a span of its own, and sqlx hands the
/// caller's span to its SQLite worker thread), whether the call came from the pipeline
/// or from host code calling an operator verb. The layer's filter ([`OwnWork`]) turns those spans
/// on for this layer alone. A host crate whose name merely starts with `selfheal`
/// (`selfheal_demo`, `selfhealth_api`) is heard like any other.
#[derive(Debug, Clone)]
pub struct HealerLayer {
    healer: Healer,
}

impl HealerLayer {
    pub(crate) fn new(healer: Healer) -> Self {
        HealerLayer { healer }
    }
}

/// The target of a layer signal without a `heal.target`, `component` or `peer` field,
/// when the healer has no service name either.
pub const DEFAULT_TARGET: &str = "app";

/// The per-layer filter of [`HealerLayer`] (see [`Healer::layer`]): it enables WARN
/// and ERROR events, and the spans of selfheal's own crates down to DEBUG, so the layer
/// can tell the healer's own work (its store calls, its incidents) from the host's.
///
/// It enables nothing of the host below WARN: a host's TRACE, DEBUG or INFO callsite
/// stays off unless another layer wants it, and another layer never sees the spans it
/// turns on. Its level hint is DEBUG, for those spans; that makes a host's DEBUG
/// callsite ask once, and then stay off.
///
/// The healer's spans can only be seen when they exist: a filter on the whole
/// subscriber (an `EnvFilter` added with `.with(filter)` rather than per layer) that
/// turns off DEBUG for `selfheal_storage`, or tracing's `max_level_*` features, remove
/// them, and with them the recognition of a store statement run outside an incident.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnWork;

impl OwnWork {
    fn wants(meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            *meta.level() <= TraceLevel::DEBUG && is_own(meta)
        } else {
            *meta.level() <= TraceLevel::WARN
        }
    }
}

impl<S> Filter<S> for OwnWork {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::wants(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }
}

/// Whether `target` is a module path of one of selfheal's own crates.
pub(crate) fn is_own_target(target: &str) -> bool {
    OWN_CRATES.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

fn is_own(meta: &Metadata<'_>) -> bool {
    is_own_target(meta.target())
}

impl<S> Layer<S> for HealerLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !is_hosts(event, &ctx) {
            return;
        }
        let default_target = default_target(self.healer.config());
        // The event is captured here, on the host's thread, into one buffer; the intake
        // builds the signal from it, so the host pays for two allocations, not one per
        // field.
        let captured = capture(event);
        self.healer.observe_event(captured, default_target);
    }
}

/// The target of a layer signal without a target field: the service name (or
/// [`DEFAULT_TARGET`]), or `None` (the module path) with `intake.module_targets`.
pub(crate) fn default_target(config: &crate::HealerConfig) -> Option<&str> {
    if config.intake.module_targets {
        None
    } else if config.service.is_empty() {
        Some(DEFAULT_TARGET)
    } else {
        Some(config.service.as_str())
    }
}

/// Whether `event` is one of the host's WARN or ERROR events: not below WARN, not the
/// healer's own, not inside one of the healer's spans.
fn is_hosts<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    if *meta.level() > TraceLevel::WARN || is_own(meta) {
        return false;
    }
    !ctx.event_scope(event)
        .is_some_and(|mut scope| scope.any(|span| is_own(span.metadata())))
}

/// `event` captured into this thread's buffer; into a buffer of its own when this thread
/// is already capturing one (an event raised by a `Display` of a field) or is being torn
/// down (an event from a thread-local's `Drop`).
fn capture(event: &Event<'_>) -> Captured {
    CAPTURE
        .try_with(|scratch| {
            scratch
                .try_borrow_mut()
                .ok()
                .map(|mut capture| capture.captured(event))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Capture::default().captured(event))
}

/// The signal a WARN or ERROR event of the host becomes; `None` for other levels and
/// for the healer's own events. Without a target field the target is
/// `default_target`, or the module path when that is `None`.
///
/// Public as `selfheal_core::event_signal`, for a layer that sends signals elsewhere
/// than to a healer of this process (a publisher to a message stream); put that layer
/// under the [`OwnWork`] filter, so it sees the spans that mark the healer's own work.
pub fn signal_for<S>(
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    default_target: Option<&str>,
) -> Option<Signal>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !is_hosts(event, ctx) {
        return None;
    }
    Some(capture(event).into_signal(default_target))
}

thread_local! {
    /// The buffer each thread captures its events into: kept, so capturing one costs
    /// no allocation of its own.
    static CAPTURE: std::cell::RefCell<Capture> = std::cell::RefCell::default();
}

/// An event's fields, recorded back to back into one buffer (the `Visit` of the layer).
#[derive(Default)]
struct Capture {
    /// The text of every recorded value, the message's pieces included.
    text: String,
    /// Where the message is in `text`.
    message: std::ops::Range<usize>,
    /// Each field other than the message: its name, where its text is in `text`, and
    /// whether it bears an error ([`ERROR_FIELDS`], or recorded as `&dyn Error`).
    fields: Vec<(&'static str, std::ops::Range<usize>, bool)>,
}

/// A host event as the layer captured it: its recorded text in one buffer, with where
/// each field is. The intake makes it a [`Signal`] ([`Captured::into_signal`]).
#[derive(Debug)]
pub(crate) struct Captured {
    text: Box<str>,
    message: std::ops::Range<usize>,
    fields: Box<[(&'static str, std::ops::Range<usize>, bool)]>,
    /// The field that names the target, if any.
    target: Option<usize>,
    error: bool,
    /// The event's module path.
    module: &'static str,
    timestamp: chrono::DateTime<chrono::Utc>,
}

impl Captured {
    /// The target its signal will have: the first target field, else `default_target`,
    /// else the module path.
    pub(crate) fn target<'a>(&'a self, default_target: Option<&'a str>) -> &'a str {
        match self.target {
            Some(i) => &self.text[self.fields[i].1.clone()],
            None => default_target.unwrap_or(self.module),
        }
    }

    /// The memory it holds, charged against the intake queue's byte budget.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.text.len()
            + std::mem::size_of_val::<[(&'static str, std::ops::Range<usize>, bool)]>(&self.fields)
    }

    /// The signal: the message followed by the text of its error-bearing fields, every
    /// field a signal field, the module path in `tracing.target`.
    pub(crate) fn into_signal(self, default_target: Option<&str>) -> Signal {
        let text = &*self.text;
        let errors = || {
            self.fields
                .iter()
                .filter(|(_, range, error)| *error && !range.is_empty())
                .map(|(_, range, _)| &text[range.clone()])
        };
        let mut message = String::with_capacity(
            self.message.len() + errors().map(|e| e.len() + 2).sum::<usize>(),
        );
        message.push_str(&text[self.message.clone()]);
        for value in errors() {
            if message.contains(value) {
                continue;
            }
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(value);
        }
        let mut signal = Signal::new(self.target(default_target), message)
            .source(SignalSource::Tracing)
            .level(if self.error {
                Level::Error
            } else {
                Level::Warn
            })
            .field("tracing.target", self.module);
        signal.timestamp = self.timestamp;
        for (name, range, _) in self.fields.iter() {
            signal
                .fields
                .insert((*name).to_owned(), text[range.clone()].to_owned());
        }
        signal
    }
}

/// A thread keeps its capture buffer up to this size; a bigger event's is freed.
const KEPT_CAPTURE_BYTES: usize = 16 * 1024;

/// Text kept from one field: what a signal keeps of a message.
const MAX_CAPTURED_BYTES: usize = crate::signal::MAX_MESSAGE_BYTES;

impl Capture {
    /// Records `event` into the buffer and copies what it recorded out, leaving the
    /// buffer for the next event.
    fn captured(&mut self, event: &Event<'_>) -> Captured {
        self.text.clear();
        self.fields.clear();
        self.message = 0..0;
        event.record(self);
        let meta = event.metadata();
        let target = TARGET_FIELDS
            .iter()
            .find_map(|name| self.fields.iter().position(|(field, _, _)| field == name));
        let captured = Captured {
            text: self.text.as_str().into(),
            message: self.message.clone(),
            fields: self.fields.as_slice().into(),
            target,
            error: *meta.level() == TraceLevel::ERROR,
            module: meta.target(),
            timestamp: chrono::Utc::now(),
        };
        if self.text.capacity() > KEPT_CAPTURE_BYTES {
            self.text = String::new();
        }
        captured
    }

    /// Appends what `write` writes to the buffer, at most [`MAX_CAPTURED_BYTES`] of it.
    fn append(&mut self, write: impl FnOnce(&mut String)) -> std::ops::Range<usize> {
        let start = self.text.len();
        write(&mut self.text);
        let end = crate::signal::prefix(&self.text, start + MAX_CAPTURED_BYTES).len();
        self.text.truncate(end);
        start..self.text.len()
    }

    fn field(&mut self, field: &Field, range: std::ops::Range<usize>, error: bool) {
        let name = field.name();
        if name == "message" {
            // A message recorded in pieces (rare) is their concatenation.
            if self.message.is_empty() {
                self.message = range;
            } else if self.message.end == range.start {
                self.message.end = range.end;
            } else {
                let joined = [&self.text[self.message.clone()], &self.text[range]].concat();
                let start = self.text.len();
                self.text.push_str(&joined);
                self.message = start..self.text.len();
            }
            return;
        }
        let error = error || (ERROR_FIELDS.contains(&name) && !range.is_empty());
        self.fields.push((name, range, error));
    }
}

impl Visit for Capture {
    fn record_str(&mut self, field: &Field, value: &str) {
        let range = self.append(|text| text.push_str(value));
        self.field(field, range, false);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let range = self.append(|text| {
            for (i, link) in error_chain(value).iter().enumerate() {
                if i > 0 {
                    text.push_str(": ");
                }
                text.push_str(link);
            }
        });
        self.field(field, range, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let range = self.append(|text| {
            let _ = write!(text, "{value:?}");
        });
        self.field(field, range, false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Collects the signals [`HealerLayer`] would observe (module paths as targets).
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Signal>>>, Option<&'static str>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            if let Some(signal) = signal_for(event, &ctx, self.1) {
                self.0.lock().unwrap().push(signal);
            }
        }
    }

    fn collect(f: impl FnOnce()) -> Vec<Signal> {
        collect_as(None, f)
    }

    fn collect_as(default_target: Option<&'static str>, f: impl FnOnce()) -> Vec<Signal> {
        let out = Collect(Arc::default(), default_target);
        let subscriber = tracing_subscriber::registry().with(out.clone());
        tracing::subscriber::with_default(subscriber, f);
        let signals = out.0.lock().unwrap();
        signals.clone()
    }

    #[test]
    fn without_a_target_field_the_target_is_the_default_and_the_module_path_a_field() {
        let signals = collect_as(Some("checkout-api"), || {
            tracing::error!(target: "myapp::cache", "cache write failed");
            tracing::error!(target: "myapp::cache", component = "redis-cache", "cache write failed");
            tracing::warn!(target: "myapp::db", peer = "orders-db", "slow query");
        });
        let targets: Vec<&str> = signals.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["checkout-api", "redis-cache", "orders-db"]);
        assert_eq!(signals[0].fields["tracing.target"], "myapp::cache");
        assert_eq!(signals[2].fields["tracing.target"], "myapp::db");
    }

    #[test]
    fn the_healer_names_untargeted_signals_after_its_service_unless_told_otherwise() {
        let observe = |config: crate::HealerConfig| {
            let healer = Healer::builder().config(config).build().unwrap();
            let subscriber = tracing_subscriber::registry().with(healer.layer());
            tracing::subscriber::with_default(subscriber, || {
                tracing::error!(target: "myapp::cache", "cache write failed");
            });
            let queued = healer.queued_targets();
            assert_eq!(queued.len(), 1);
            queued[0].clone()
        };
        assert_eq!(observe(crate::HealerConfig::default()), DEFAULT_TARGET);
        let mut config = crate::HealerConfig {
            service: "checkout-api".into(),
            ..Default::default()
        };
        assert_eq!(observe(config.clone()), "checkout-api");
        config.intake.module_targets = true;
        assert_eq!(observe(config), "myapp::cache");
    }

    #[test]
    fn error_fields_join_the_message_however_they_were_recorded() {
        let e = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let signals = collect(|| {
            tracing::error!(target: "app", error = %e, "redis GET failed");
            tracing::error!(target: "app", error = ?e, "redis GET failed");
            tracing::error!(target: "app", error = &e as &dyn std::error::Error, "redis GET failed");
            tracing::warn!(target: "app", err = %e, "cache write failed");
            tracing::error!(target: "app", n = 1, error.message = "connection reset by peer", "upstream");
            tracing::error!(target: "app", n = 2, exception.message = "boom", detail = "not an error field", "job");
            tracing::error!(target: "app", error = %e);
            tracing::info!(target: "app", error = %e, "info is ignored");
        });
        let messages: Vec<&str> = signals.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "redis GET failed: broken pipe",
                r#"redis GET failed: Custom { kind: BrokenPipe, error: "broken pipe" }"#,
                "redis GET failed: broken pipe",
                "cache write failed: broken pipe",
                "upstream: connection reset by peer",
                "job: boom",
                "broken pipe",
            ]
        );
        assert_eq!(signals[0].fields["error"], "broken pipe");
        assert_eq!(signals[5].fields["detail"], "not an error field");
    }

    #[test]
    fn the_healers_own_events_and_spans_are_ignored_a_host_named_selfheal_is_not() {
        let signals = collect(|| {
            tracing::error!(target: "selfheal_core::healer", "own event");
            tracing::error!(target: "selfheal_storage::sqlite", "own store");
            tracing::error!(target: "selfheal_demo::db", "host crate a");
            tracing::error!(target: "selfhealth_api", "host crate b");
            let span = tracing::info_span!(target: "selfheal_core::healer::heal", "heal");
            span.in_scope(|| {
                tracing::warn!(target: "sqlx::query", "slow statement run for the healer");
            });
            let host = tracing::info_span!(target: "selfheal_demo", "request");
            host.in_scope(|| tracing::warn!(target: "sqlx::query", "slow statement of the host"));
        });
        let messages: Vec<&str> = signals.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(
            messages,
            ["host crate a", "host crate b", "slow statement of the host"]
        );
        assert_eq!(signals[0].target, "selfheal_demo::db");
    }

    #[test]
    fn a_huge_field_is_cut_at_capture_and_the_buffer_is_not_kept() {
        let huge = "x".repeat(4 * MAX_CAPTURED_BYTES);
        let signals = collect(|| {
            tracing::error!(target: "app", detail = %huge, "big");
            tracing::error!(target: "app", "small");
        });
        assert_eq!(signals[0].message, "big");
        assert_eq!(signals[0].fields["detail"].len(), MAX_CAPTURED_BYTES);
        assert_eq!(signals[1].message, "small");
        assert!(
            !signals[1].fields.contains_key("detail"),
            "nothing left over"
        );
        CAPTURE.with(|c| assert!(c.borrow().text.capacity() <= KEPT_CAPTURE_BYTES));
    }

    #[test]
    fn an_event_queued_by_the_layer_is_charged_and_becomes_the_same_signal() {
        let healer = Healer::builder().build().unwrap();
        let subscriber = tracing_subscriber::registry().with(healer.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "myapp::db", peer = "orders-db", error = "refused", "query failed");
        });
        assert_eq!(healer.queued_targets(), ["orders-db"]);
        let (signals, bytes) = healer.queued();
        assert_eq!(signals, 1);
        assert!(bytes > "query failedorders-dbrefused".len(), "{bytes}");
        let signal = healer.try_pop_queued().unwrap();
        assert_eq!(signal.message, "query failed: refused");
        assert_eq!(signal.target, "orders-db");
        assert_eq!(signal.level, Level::Warn);
        assert_eq!(signal.source, SignalSource::Tracing);
        assert_eq!(signal.fields["tracing.target"], "myapp::db");
    }

    #[test]
    fn a_field_that_logs_while_captured_does_not_break_the_capture() {
        // `tracing` does not dispatch an event raised inside a dispatch (the inner one is
        // dropped); the outer is captured whole.
        struct Noisy;
        impl std::fmt::Display for Noisy {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                tracing::warn!(target: "app", "inner");
                f.write_str("outer detail")
            }
        }
        let signals = collect(|| tracing::error!(target: "app", detail = %Noisy, "outer"));
        let messages: Vec<&str> = signals.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(messages, ["outer"]);
        assert_eq!(signals[0].fields["detail"], "outer detail");
    }

    #[test]
    fn an_event_from_a_thread_local_drop_is_heard_not_a_panic() {
        // Once a thread's thread-locals are being destroyed, `tracing` hands events to
        // the global dispatcher; the only test of this binary that sets it.
        struct LogsOnDrop;
        impl Drop for LogsOnDrop {
            fn drop(&mut self) {
                tracing::error!(target: "app", "worker cache dropped");
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<LogsOnDrop>> =
                const { std::cell::RefCell::new(None) };
        }
        let out = Collect(Arc::default(), None);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(out.clone()))
            .expect("no other test sets the global subscriber");
        std::thread::spawn(|| {
            // Set before the layer first uses its buffer: thread-locals are destroyed
            // last-set first, so this one's drop logs after the buffer is gone (with
            // `CAPTURE.with` that is a panic in a destructor: the process aborts).
            LATE.with(|late| *late.borrow_mut() = Some(LogsOnDrop));
            tracing::error!(target: "app", "first");
        })
        .join()
        .expect("no panic at thread exit");
        let signals = out.0.lock().unwrap();
        let messages: Vec<&str> = signals.iter().map(|s| s.message.as_str()).collect();
        assert!(messages.contains(&"first"), "{messages:?}");
        assert!(messages.contains(&"worker cache dropped"), "{messages:?}");
    }

    #[test]
    fn own_targets_are_selfheal_crates_exactly() {
        for own in [
            "selfheal",
            "selfheal_core",
            "selfheal_core::healer::heal",
            "selfheal_storage::sqlite",
            "selfheal_strategies",
            "selfheal_llm::openai",
            "selfheal_sources::nats",
            "selfheal::facade",
        ] {
            assert!(is_own_target(own), "{own}");
        }
        for host in [
            "selfheal_demo",
            "selfhealth_api",
            "selfheal_core_ext::x",
            "selfhealing::db",
            "my_app::selfheal",
            "sqlx::query",
        ] {
            assert!(!is_own_target(host), "{host}");
        }
    }
}
