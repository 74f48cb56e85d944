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
        let config = self.healer.config();
        let default_target = if config.intake.module_targets {
            None
        } else if config.service.is_empty() {
            Some(DEFAULT_TARGET)
        } else {
            Some(config.service.as_str())
        };
        if let Some(signal) = signal_for(event, &ctx, default_target) {
            self.healer.observe(signal);
        }
    }
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
    let meta = event.metadata();
    let level = *meta.level();
    if level > TraceLevel::WARN || is_own(meta) {
        return None;
    }
    if ctx
        .event_scope(event)
        .is_some_and(|mut scope| scope.any(|span| is_own(span.metadata())))
    {
        return None;
    }
    let mut visitor = SignalVisitor::default();
    event.record(&mut visitor);
    let mut message = visitor.message;
    for text in &visitor.errors {
        if message.contains(text.as_str()) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(text);
    }
    let target = TARGET_FIELDS
        .iter()
        .find_map(|f| {
            visitor
                .fields
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| default_target.unwrap_or(meta.target()).to_owned());
    let mut signal = Signal::new(target, message)
        .source(SignalSource::Tracing)
        .level(if level == TraceLevel::ERROR {
            Level::Error
        } else {
            Level::Warn
        })
        .field("tracing.target", meta.target());
    for (k, v) in visitor.fields {
        signal.fields.insert(k, v);
    }
    Some(signal)
}

#[derive(Default)]
struct SignalVisitor {
    message: String,
    /// The text of error-bearing fields and of `&dyn Error` fields, in field order.
    errors: Vec<String>,
    fields: Vec<(String, String)>,
}

impl SignalVisitor {
    fn field(&mut self, field: &Field, value: String) {
        if ERROR_FIELDS.contains(&field.name()) && !value.is_empty() {
            self.errors.push(value.clone());
        }
        self.fields.push((field.name().to_owned(), value));
    }
}

impl Visit for SignalVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field, value.to_owned());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let chain = error_chain(value).join(": ");
        self.errors.push(chain.clone());
        self.fields.push((field.name().to_owned(), chain));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field, format!("{value:?}"));
        }
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
