//! `OllamaAdvisor` against a local server speaking Ollama's `/api/chat` wire format,
//! and a fallback chain from an OpenAI-compatible endpoint to Ollama.
#![cfg(all(feature = "ollama", feature = "openai"))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use selfheal_core::{ErrorKind, LlmAdvisor};
use selfheal_llm::{Fallback, OllamaAdvisor, OpenAiAdvisor, TokenBudget, prompt::SYSTEM_PROMPT};
use serde_json::{Value, json};
use support::{Reply, Server, answer, fast_http, ollama_chat, rate_limited, request};

fn ollama(server: &Server) -> OllamaAdvisor {
    OllamaAdvisor::builder()
        .host(&server.base)
        .model("llama3.2")
        .max_tokens(256)
        .http(fast_http())
        .build()
        .unwrap()
}

#[tokio::test]
async fn chat_request_matches_the_reference_and_the_answer_is_used() {
    let content = answer(Some("clear_cache"), "{}", 0.55);
    let mut server = Server::start(vec![Reply::json(200, &ollama_chat(&content))]).await;
    let budget = Arc::new(TokenBudget::per_hour(10_000));
    let advisor = OllamaAdvisor::builder()
        .host(server.base.trim_start_matches("http://"))
        .max_tokens(256)
        .budget(budget.clone())
        .build()
        .unwrap();
    let d = advisor.advise(&request("cache stampede")).await.unwrap();
    assert_eq!(d.strategy.as_deref(), Some("clear_cache"));
    assert_eq!((d.params, d.confidence), (json!({}), 0.55));
    assert_eq!(d.advisor, "ollama");
    assert_eq!(
        budget.remaining(),
        10_000 - 26 - 298,
        "prompt_eval_count + eval_count"
    );

    let r = &server.received()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/chat"));
    assert!(!r.headers.contains_key("authorization"));
    let b = &r.body;
    assert_eq!(b["model"], "llama3.2");
    assert_eq!(b["stream"], false);
    assert_eq!(b["options"], json!({"temperature": 0, "num_predict": 256}));
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": SYSTEM_PROMPT})
    );
    assert_eq!(b["messages"][1]["role"], "user");
    let format = &b["format"];
    assert_eq!(format["type"], "object");
    assert_eq!(
        format["properties"]["strategy"]["enum"],
        json!(["clear_cache", "restart", null])
    );
    assert_eq!(format["additionalProperties"], false);
}

#[tokio::test]
async fn a_missing_model_and_broken_replies_are_errors() {
    let mut server = Server::start(vec![
        Reply::json(
            404,
            &json!({"error": "model \"llama9\" not found, try pulling it first"}),
        ),
        Reply::json(200, &json!({"model": "llama3.2", "done": true})),
        Reply::json(200, &ollama_chat("{\"root_cause\": \"oom\"")),
    ])
    .await;
    let advisor = ollama(&server);
    let req = request("x");
    let err = advisor.advise(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("try pulling it first"), "{err}");
    let err = advisor.advise(&req).await.unwrap_err();
    assert!(err.message().contains("no `message.content`"), "{err}");
    let err = advisor.advise(&req).await.unwrap_err();
    assert!(err.message().contains("not valid JSON"), "{err}");
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn the_chain_falls_back_to_ollama_and_skips_the_rate_limited_provider() {
    let mut openai_server = Server::start(vec![
        Reply::json(429, &rate_limited()).header("Retry-After", "60"),
    ])
    .await;
    let content = answer(Some("restart"), r#"{"grace_secs": 10}"#, 0.5);
    let mut ollama_server = Server::start(vec![
        Reply::json(200, &ollama_chat(&content)),
        Reply::json(200, &ollama_chat(&content)),
    ])
    .await;
    let openai = OpenAiAdvisor::builder()
        .base_url(&openai_server.base)
        .http(fast_http())
        .build()
        .unwrap();
    let chain = Fallback::new()
        .advisor(openai)
        .advisor(ollama(&ollama_server))
        .cool_off(Duration::from_secs(300));
    let req = request("x");
    assert_eq!(chain.advise(&req).await.unwrap().advisor, "ollama");
    assert_eq!(chain.advise(&req).await.unwrap().advisor, "ollama");
    assert_eq!(
        openai_server.received().len(),
        1,
        "skipped while cooling off"
    );
    let asked: Vec<Value> = ollama_server
        .received()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(asked.len(), 2);
}
