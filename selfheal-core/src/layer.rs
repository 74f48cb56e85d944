//! A `tracing_subscriber::Layer` that turns the host's WARN and ERROR events into signals.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level as TraceLevel, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::{Healer, Level, Signal, SignalSource, error_chain};

/// Fields that name the affected system; the first present becomes the signal's target.
const TARGET_FIELDS: [&str; 3] = ["heal.target", "component", "peer"];

/// Feeds WARN and ERROR events to a [`Healer`]. Get one from [`Healer::layer`].
///
/// The event's `message` becomes the signal's message; an error recorded as a field
/// (`error = &err as &dyn Error`) contributes its whole `source()` chain; other fields
/// become signal fields. The target is the first of the fields `heal.target`,
/// `component`, `peer`, else the event's module target. Events from selfheal's own
/// crates are ignored so the healer never feeds on itself.
#[derive(Debug, Clone)]
pub struct HealerLayer {
    healer: Healer,
}

impl HealerLayer {
    pub(crate) fn new(healer: Healer) -> Self {
        HealerLayer { healer }
    }
}

impl<S: Subscriber> Layer<S> for HealerLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = *meta.level();
        if level > TraceLevel::WARN || meta.target().starts_with("selfheal") {
            return;
        }
        let mut visitor = SignalVisitor::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        if !visitor.errors.is_empty() {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&visitor.errors.join(": "));
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
            .unwrap_or_else(|| meta.target().to_owned());
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
        self.healer.observe(signal);
    }
}

#[derive(Default)]
struct SignalVisitor {
    message: String,
    errors: Vec<String>,
    fields: Vec<(String, String)>,
}

impl Visit for SignalVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let chain = error_chain(value);
        self.fields
            .push((field.name().to_owned(), chain.join(": ")));
        self.errors.extend(chain);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}
