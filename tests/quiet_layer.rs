//! The tracing layer is quiet: it turns on no TRACE, DEBUG or INFO callsite of the host,
//! and another layer that wants DEBUG still gets it. One test in its own binary, since
//! callsite interest is process-wide.

use std::sync::{Arc, Mutex};

use selfheal::Healer;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer as _, filter::LevelFilter};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_layer_enables_no_debug_callsite_and_leaves_other_layers_theirs() {
    // Alone under a registry: DEBUG and INFO callsites stay off.
    let healer = Healer::builder().build().unwrap();
    let subscriber = tracing_subscriber::registry().with(healer.layer());
    tracing::subscriber::with_default(subscriber, || {
        assert!(!tracing::enabled!(Level::DEBUG), "DEBUG stays off");
        assert!(!tracing::enabled!(Level::INFO), "INFO stays off");
        assert!(tracing::enabled!(Level::WARN));
        tracing::debug!(target: "orders", "not for the healer");
        tracing::warn!(target: "orders", "for the healer");
    });
    assert_eq!(healer.observed(), 1, "only the WARN event reached it");

    // Beside a fmt layer at DEBUG: the host still logs DEBUG; the healer never sees it.
    let sink = Sink::default();
    let out = sink.clone();
    let healer = Healer::builder().build().unwrap();
    let subscriber = tracing_subscriber::registry().with(healer.layer()).with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || out.clone())
            .with_filter(LevelFilter::DEBUG),
    );
    tracing::subscriber::with_default(subscriber, || {
        assert!(tracing::enabled!(Level::DEBUG));
        tracing::debug!(target: "orders", "host debug line");
        tracing::error!(target: "orders", "host error line");
    });
    let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(written.contains("host debug line"), "{written}");
    assert_eq!(
        healer.observed(),
        1,
        "the healer saw the ERROR, not the DEBUG"
    );
}
