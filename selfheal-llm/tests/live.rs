//! Against a real model, ignored by default: runs when `OPENAI_API_KEY` (optionally
//! `OPENAI_BASE_URL`, `OPENAI_MODEL`) or `OLLAMA_HOST` (optionally `OLLAMA_MODEL`) is
//! set. `cargo test -p selfheal-llm --all-features --test live -- --ignored`
//!
//! It sends one realistic unknown incident (Redis refusing connections, a secret in
//! the log line) with two registered strategies and checks that the model's answer
//! passes the same strict parsing the healer relies on: valid JSON, a registered
//! strategy or none, object parameters, a confidence in [0, 1], a root cause.
#![cfg(all(feature = "openai", feature = "ollama"))]
#![allow(clippy::print_stderr)] // says which endpoint it used, or why it skipped

mod support;

use selfheal_core::{Diagnosis, LlmAdvisor};
use selfheal_llm::{OllamaAdvisor, OpenAiAdvisor};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn check(d: &Diagnosis, registered: &[String]) {
    eprintln!("{}: {d:#?}", d.advisor);
    assert!(!d.root_cause.trim().is_empty(), "a root cause");
    assert!((0.0..=1.0).contains(&d.confidence));
    assert!(d.params.is_object());
    if let Some(s) = &d.strategy {
        assert!(registered.contains(s), "{s} is registered");
    }
}

#[tokio::test]
#[ignore = "talks to a real model: set OPENAI_API_KEY or OLLAMA_HOST and pass --ignored"]
async fn a_real_model_gives_a_usable_diagnosis() {
    let request = support::request(
        "redis: connection to redis://:s3cret@cache-1:6379 refused (os error 111) while reading session",
    );
    let mut asked = 0;
    if let Some(key) = env("OPENAI_API_KEY") {
        let mut b = OpenAiAdvisor::builder().api_key(key);
        if let Some(url) = env("OPENAI_BASE_URL") {
            b = b.base_url(url);
        }
        if let Some(model) = env("OPENAI_MODEL") {
            b = b.model(model);
        }
        let d = b.build().unwrap().advise(&request).await.unwrap();
        check(&d, &request.strategies);
        asked += 1;
    }
    if let Some(host) = env("OLLAMA_HOST") {
        let mut b = OllamaAdvisor::builder().host(host);
        if let Some(model) = env("OLLAMA_MODEL") {
            b = b.model(model);
        }
        let d = b.build().unwrap().advise(&request).await.unwrap();
        check(&d, &request.strategies);
        asked += 1;
    }
    if asked == 0 {
        eprintln!("skipped: set OPENAI_API_KEY or OLLAMA_HOST to run against a real model");
    }
}
