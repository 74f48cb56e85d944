//! A failing upstream switched to its fallback by the healer, through a real `Healer`
//! in paused time: the host's calls consult a `CircuitBreaker`, the healer sees the
//! provider's 429s, `circuit_break` opens the breaker, the errors stop (verified by a
//! `QuietVerifier`), and after the cool-off one trial call finds the provider back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use selfheal::strategies::{BreakerState, CircuitBreaker, OpenCircuit, QuietVerifier, Route};
use selfheal::{ActionStatus, FixBinding, Healer, Pattern, PatternMode, Phase, Severity, Signal};
use support::phases_until;

const RATE_LIMITED: &str = "openai: 429 Too Many Requests: rate limit exceeded for gpt-4o-mini";

#[derive(Default)]
struct Upstream {
    primary_up: AtomicBool,
    primary_calls: AtomicUsize,
    fallback_calls: AtomicUsize,
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_provider_is_switched_to_its_fallback_and_tried_again_later() {
    let breaker = CircuitBreaker::new("openai", Duration::from_secs(300));
    let quiet = QuietVerifier::new("openai", Duration::from_secs(15));
    let healer = Healer::builder()
        .strategy(OpenCircuit::new().breaker(breaker.clone()))
        .verifier("openai", quiet.clone())
        .build()
        .unwrap();
    quiet.attach(&healer);
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new("llm_rate_limit_exceeded")
                .regex(r"429 Too Many Requests")
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.9)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new(OpenCircuit::NAME)),
            "test",
        )
        .await
        .unwrap();

    // The host: one call a second, routed by the breaker.
    let upstream = Arc::new(Upstream::default());
    let host = {
        let (breaker, healer, upstream) = (breaker.clone(), healer.clone(), upstream.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let route = breaker.route();
                if route.is_primary() {
                    upstream.primary_calls.fetch_add(1, Ordering::SeqCst);
                    let ok = upstream.primary_up.load(Ordering::SeqCst);
                    if !ok {
                        healer.observe(Signal::new("openai", RATE_LIMITED));
                    }
                    if route == Route::Trial {
                        breaker.record(ok);
                    }
                } else {
                    upstream.fallback_calls.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert_eq!(breaker.state(), BreakerState::Open);
    let primary_at_fix = upstream.primary_calls.load(Ordering::SeqCst);
    assert!(primary_at_fix >= 3, "{primary_at_fix}");
    assert!(
        upstream.fallback_calls.load(Ordering::SeqCst) >= 15,
        "served by the fallback while verified"
    );
    let actions = healer.admin().actions(None).await.unwrap();
    assert_eq!(actions[0].status, ActionStatus::Succeeded);
    assert_eq!(actions[0].health_after, Some(100), "quiet for the window");

    // The provider recovers; after the cool-off one trial call closes the breaker.
    upstream.primary_up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(300)).await;
    for _ in 0..5 {
        if breaker.state() == BreakerState::Closed {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    let primary_now = upstream.primary_calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        upstream.primary_calls.load(Ordering::SeqCst) >= primary_now + 9,
        "calls go to the provider again"
    );
    assert_eq!(breaker.trips(), 1);

    host.abort();
    running.shutdown().await;
}
