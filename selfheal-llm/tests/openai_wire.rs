//! `OpenAiAdvisor` against a local server speaking the chat-completions wire format:
//! the request checked field by field against the API reference, and the responses
//! it documents (success, tool call, 429 with `Retry-After`, 401, 500, malformed
//! bodies, a server that never answers).
#![cfg(feature = "openai")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use selfheal_core::{ErrorKind, LlmAdvisor};
use selfheal_llm::{AnswerFormat, OpenAiAdvisor, TOOL_NAME, TokenBudget, prompt::SYSTEM_PROMPT};
use serde_json::{Value, json};
use support::{
    Reply, Server, answer, closed_port, completion, fast_http, rate_limited, request, tool_call,
};

const KEY: &str = "sk-test-0123456789abcdefghij";

fn advisor(server: &Server, format: AnswerFormat) -> OpenAiAdvisor {
    OpenAiAdvisor::builder()
        .base_url(format!("{}/v1/", server.base))
        .model("gpt-4o-mini")
        .api_key(KEY)
        .answer_format(format)
        .max_tokens(300)
        .http(fast_http())
        .build()
        .unwrap()
}

fn good_answer() -> String {
    answer(Some("restart"), r#"{"grace_secs": 30}"#, 0.8)
}

/// The parts of a request both answer formats share.
fn check_common_fields(r: &support::Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(r.headers["content-type"], "application/json");
    let b = &r.body;
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["temperature"], 0);
    assert_eq!(b["max_completion_tokens"], 300);
    assert!(b.get("stream").is_none(), "not streamed");
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["content"], SYSTEM_PROMPT);
    assert_eq!(messages[1]["role"], "user");
    let user = messages[1]["content"].as_str().unwrap();
    let data: Value = serde_json::from_str(user.split_once('\n').unwrap().1).unwrap();
    assert_eq!(data["target"], "orders-db");
    assert_eq!(data["template"], "query failed: <*>");
    assert_eq!(data["occurrences"], 12);
    assert_eq!(
        data["stack_signature"],
        "orders::db::query\norders::api::checkout"
    );
    assert_eq!(data["metrics"]["pool_in_use"], 50);
    assert_eq!(data["strategies"][0]["name"], "clear_cache");
    assert_eq!(data["strategies"][1]["name"], "restart");
    assert_eq!(
        data["strategies"][1]["params_schema"],
        support::restart_schema()
    );
}

fn check_schema(schema: &Value) {
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["required"],
        json!([
            "root_cause",
            "strategy",
            "params",
            "confidence",
            "explanation"
        ])
    );
    assert_eq!(
        schema["properties"]["strategy"]["enum"],
        json!(["clear_cache", "restart", null])
    );
}

#[tokio::test]
async fn json_schema_request_matches_the_reference_and_the_answer_is_used() {
    let mut server = Server::start(vec![Reply::json(200, &completion(&good_answer(), 129))]).await;
    let budget = Arc::new(TokenBudget::per_hour(1000));
    let advisor = OpenAiAdvisor::builder()
        .base_url(format!("{}/v1", server.base))
        .api_key(KEY)
        .max_tokens(300)
        .budget(budget.clone())
        .build()
        .unwrap();
    let d = advisor
        .advise(&request("query failed: too many connections"))
        .await
        .unwrap();
    assert_eq!(d.strategy.as_deref(), Some("restart"));
    assert_eq!(d.params, json!({"grace_secs": 30}));
    assert_eq!((d.confidence, d.advisor.as_str()), (0.8, "openai"));
    assert_eq!(d.root_cause, "the connection pool leaks under load");
    assert_eq!(
        budget.remaining(),
        1000 - 129,
        "usage.total_tokens is spent"
    );

    let r = &server.received()[0];
    check_common_fields(r);
    let format = &r.body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "diagnosis");
    assert_eq!(format["json_schema"]["strict"], true);
    check_schema(&format["json_schema"]["schema"]);
    assert!(r.body.get("tools").is_none());
}

#[tokio::test]
async fn tool_call_request_matches_the_reference_and_its_arguments_are_the_answer() {
    let mut server = Server::start(vec![
        Reply::json(200, &tool_call(TOOL_NAME, &good_answer())),
        Reply::json(200, &tool_call("run_shell", r#"{"cmd": "rm -rf /"}"#)),
    ])
    .await;
    let advisor = advisor(&server, AnswerFormat::ToolCall);
    let req = request("query failed: too many connections");
    let d = advisor.advise(&req).await.unwrap();
    assert_eq!(d.params, json!({"grace_secs": 30}));

    let err = advisor.advise(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains("called `run_shell` instead of only"),
        "{err}"
    );

    let r = &server.received()[0];
    check_common_fields(r);
    let tool = &r.body["tools"][0];
    assert_eq!(tool["type"], "function");
    assert_eq!(tool["function"]["name"], TOOL_NAME);
    assert_eq!(tool["function"]["strict"], true);
    check_schema(&tool["function"]["parameters"]);
    assert_eq!(
        r.body["tool_choice"],
        json!({"type": "function", "function": {"name": TOOL_NAME}})
    );
    assert!(r.body.get("response_format").is_none());
}

#[tokio::test]
async fn secrets_in_log_lines_never_leave_the_process() {
    let mut server = Server::start(vec![Reply::json(200, &completion(&good_answer(), 50))]).await;
    let advisor = OpenAiAdvisor::builder()
        .base_url(&server.base)
        .api_key(KEY)
        .redact(r"tenant-\d+")
        .build()
        .unwrap();
    let secrets = [
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "sk-live-abcdefghijklmnop0123",
        "AKIAIOSFODNN7EXAMPLE",
        "hunter2",
        "jane@example.com",
        "tenant-4711",
    ];
    let sample = format!(
        "auth {} key {} aws {} dsn postgres://app:{}@db/orders owner {} for {}",
        secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]
    );
    let mut req = request(&sample);
    req.metrics = json!({"last_error": "login by jane@example.com failed"});
    advisor.advise(&req).await.unwrap();
    let sent = server.received()[0].body.to_string();
    for secret in secrets {
        assert!(!sent.contains(secret), "{secret} was sent: {sent}");
    }
    assert!(sent.contains("[REDACTED]") && sent.contains("[EMAIL]"));
}

#[tokio::test]
async fn rate_limited_request_waits_for_retry_after_then_succeeds() {
    let mut server = Server::start(vec![
        Reply::json(429, &rate_limited()).header("Retry-After", "1"),
        Reply::json(200, &completion(&good_answer(), 40)),
    ])
    .await;
    let advisor = advisor(&server, AnswerFormat::JsonSchema);
    let started = Instant::now();
    let d = advisor.advise(&request("x")).await.unwrap();
    // The back-off is 10 ms: waiting a second is the server's Retry-After.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(d.strategy.as_deref(), Some("restart"));
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_fails_at_once_with_the_providers_code() {
    let mut server = Server::start(vec![
        Reply::json(429, &rate_limited()).header("Retry-After", "120"),
    ])
    .await;
    let advisor = advisor(&server, AnswerFormat::JsonSchema);
    let err = advisor.advise(&request("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(err.message().contains("rate_limit_exceeded"), "{err}");
    assert!(err.message().contains("retry after 120s"), "{err}");
    assert_eq!(server.received().len(), 1, "no retry beyond max_retry_wait");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let body = json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}});
    let mut server = Server::start(vec![
        Reply::json(500, &body),
        Reply::json(500, &body),
        Reply::json(500, &body),
        Reply::json(200, &completion(&good_answer(), 40)),
    ])
    .await;
    let advisor = advisor(&server, AnswerFormat::JsonSchema);
    let err = advisor.advise(&request("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("HTTP 500"), "{err}");
    assert!(err.message().contains("server had an error"), "{err}");
    assert_eq!(server.received().len(), 3, "one try and max_retries = 2");
}

#[tokio::test]
async fn a_bad_key_is_not_retried_and_not_echoed() {
    let body = json!({"error": {"message": "Incorrect API key provided: sk-test-***hij. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
    let mut server = Server::start(vec![Reply::json(401, &body)]).await;
    let err = advisor(&server, AnswerFormat::JsonSchema)
        .advise(&request("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("HTTP 401"), "{err}");
    assert!(!format!("{err:?}").contains(KEY));
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn malformed_bodies_and_prose_answers_are_errors() {
    let mut server = Server::start(vec![
        Reply::raw(200, r#"{"id": "chatcmpl-123", "choices": [{"message": {"#),
        Reply::json(
            200,
            &json!({"id": "chatcmpl-123", "object": "chat.completion", "choices": []}),
        ),
        Reply::json(
            200,
            &completion(
                "You should restart the database and run `rm -rf /tmp/*`.",
                30,
            ),
        ),
    ])
    .await;
    let advisor = advisor(&server, AnswerFormat::JsonSchema);
    let req = request("x");
    let err = advisor.advise(&req).await.unwrap_err();
    assert!(err.message().contains("body is not JSON"), "{err}");
    let err = advisor.advise(&req).await.unwrap_err();
    assert!(err.message().contains("choices[0].message"), "{err}");
    let err = advisor.advise(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("not valid JSON"), "{err}");
    assert_eq!(server.received().len(), 3, "nothing here is retried");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_without_retrying() {
    let mut server = Server::start(vec![Reply::Hang, Reply::Hang]).await;
    let advisor = OpenAiAdvisor::builder()
        .base_url(&server.base)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = advisor.advise(&request("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.message().contains("did not answer within 300ms"),
        "{err}"
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let advisor = OpenAiAdvisor::builder()
        .base_url(closed_port().await)
        .http(selfheal_llm::HttpSettings {
            max_retries: 0,
            ..fast_http()
        })
        .build()
        .unwrap();
    let err = advisor.advise(&request("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("could not be reached"), "{err}");
}

#[tokio::test]
async fn a_spent_token_budget_stops_requests_before_they_are_sent() {
    let mut server = Server::start(vec![
        Reply::json(200, &completion(&good_answer(), 120)),
        Reply::json(200, &completion(&good_answer(), 120)),
    ])
    .await;
    let advisor = OpenAiAdvisor::builder()
        .base_url(&server.base)
        .budget(Arc::new(TokenBudget::per_hour(100)))
        .build()
        .unwrap();
    advisor.advise(&request("x")).await.unwrap();
    let err = advisor.advise(&request("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.message()
            .contains("token budget of 100 tokens per hour"),
        "{err}"
    );
    assert_eq!(server.received().len(), 1);
}
