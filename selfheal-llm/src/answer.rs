//! Reading a model's answer: strict JSON, a registered strategy or none, parameters
//! as an object, no commands. Anything else is refused, so the healer escalates.

use selfheal_core::{AdviceRequest, Diagnosis};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::LlmError;

/// Keys that ask for something to be run. An answer carrying one anywhere (even in
/// the parameters of a strategy that takes a command) is refused: commands come from
/// patterns written by people, never from a model.
const COMMAND_KEYS: &[&str] = &[
    "command", "commands", "cmd", "shell", "script", "exec", "run", "argv", "program",
];

/// The longest root cause or explanation kept, in characters.
const MAX_TEXT_CHARS: usize = 2000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    root_cause: String,
    strategy: Option<String>,
    #[serde(default)]
    params: Value,
    confidence: f64,
    #[serde(default)]
    explanation: String,
}

/// The diagnosis in `text`, the model's answer to `request`, or why it is refused.
pub fn parse_answer(
    provider: &str,
    text: &str,
    request: &AdviceRequest,
) -> Result<Diagnosis, LlmError> {
    let refuse = |reason: String| LlmError::Refused {
        provider: provider.to_owned(),
        reason,
    };
    let value: Value = serde_json::from_str(strip_fence(text))
        .map_err(|e| refuse(format!("the answer is not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(refuse("the answer is not a JSON object".into()));
    }
    if let Some(key) = command_key(&value) {
        return Err(refuse(format!(
            "the answer asks to run a command (`{key}`); advice may only name a registered strategy"
        )));
    }
    let answer: Answer = serde_json::from_value(value)
        .map_err(|e| refuse(format!("the answer does not follow the schema ({e})")))?;
    let strategy = answer
        .strategy
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("none"));
    if let Some(s) = &strategy
        && !request.strategies.contains(s)
    {
        return Err(refuse(format!(
            "it names strategy `{}`, which is not registered",
            s.chars().take(80).collect::<String>()
        )));
    }
    let params = match answer.params {
        Value::Null => Value::Object(Map::new()),
        Value::String(s) if s.trim().is_empty() => Value::Object(Map::new()),
        Value::String(s) => serde_json::from_str(&s)
            .map_err(|e| refuse(format!("`params` is not a JSON object ({e})")))?,
        other => other,
    };
    if !params.is_object() {
        return Err(refuse("`params` is not a JSON object".into()));
    }
    if let Some(key) = command_key(&params) {
        return Err(refuse(format!(
            "its parameters ask to run a command (`{key}`); advice may only name a registered strategy"
        )));
    }
    if !answer.confidence.is_finite() {
        return Err(refuse("`confidence` is not a number".into()));
    }
    Ok(Diagnosis {
        root_cause: cut(&answer.root_cause),
        strategy,
        params,
        confidence: answer.confidence.clamp(0.0, 1.0),
        explanation: cut(&answer.explanation),
        advisor: provider.to_owned(),
    })
}

/// The first key anywhere in `value` that asks for a command.
fn command_key(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            if COMMAND_KEYS.contains(&key.as_str()) {
                Some(k.clone())
            } else {
                command_key(v)
            }
        }),
        Value::Array(items) => items.iter().find_map(command_key),
        _ => None,
    }
}

/// The JSON inside a Markdown code fence, which some models add despite the format.
fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .map_or(t, str::trim)
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::request;
    use serde_json::json;

    fn parse(answer: &Value) -> Result<Diagnosis, LlmError> {
        parse_answer("openai", &answer.to_string(), &request(&["restart"], "x"))
    }

    fn good() -> Value {
        json!({
            "root_cause": "connection leak",
            "strategy": "restart",
            "params": "{\"grace_secs\": 5}",
            "confidence": 0.8,
            "explanation": "connections grow until the pool is exhausted"
        })
    }

    fn refusal(answer: &Value) -> String {
        match parse(answer) {
            Err(LlmError::Refused { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_schema_answer_becomes_a_diagnosis() {
        let d = parse(&good()).unwrap();
        assert_eq!(d.strategy.as_deref(), Some("restart"));
        assert_eq!(d.params, json!({"grace_secs": 5}));
        assert_eq!((d.confidence, d.advisor.as_str()), (0.8, "openai"));
        assert_eq!(d.root_cause, "connection leak");
    }

    #[test]
    fn object_params_fences_null_strategy_and_wild_confidence_are_tolerated() {
        let mut a = good();
        a["params"] = json!({"grace_secs": 1});
        a["confidence"] = json!(7.5);
        let fenced = format!("```json\n{a}\n```");
        let d = parse_answer("ollama", &fenced, &request(&["restart"], "x")).unwrap();
        assert_eq!(
            (d.params["grace_secs"].as_i64(), d.confidence),
            (Some(1), 1.0)
        );
        a["strategy"] = json!("none");
        assert_eq!(parse(&a).unwrap().strategy, None);
        a["strategy"] = Value::Null;
        a["params"] = json!("");
        let d = parse(&a).unwrap();
        assert_eq!((d.strategy, d.params), (None, json!({})));
    }

    #[test]
    fn invalid_json_is_refused() {
        let r = parse_answer("openai", "Sure! Restart it.", &request(&["restart"], "x"));
        assert!(
            matches!(&r, Err(LlmError::Refused { reason, .. }) if reason.contains("not valid JSON")),
            "{r:?}"
        );
        let mut a = good();
        a["params"] = json!("{not json");
        assert!(refusal(&a).contains("`params` is not a JSON object"));
        a["params"] = json!("[1, 2]");
        assert!(refusal(&a).contains("`params` is not a JSON object"));
        assert!(refusal(&json!(["restart"])).contains("not a JSON object"));
    }

    #[test]
    fn unregistered_strategies_are_refused() {
        let mut a = good();
        a["strategy"] = json!("drop_database");
        assert!(refusal(&a).contains("`drop_database`, which is not registered"));
    }

    #[test]
    fn commands_anywhere_are_refused() {
        let mut a = good();
        a["command"] = json!("rm -rf /");
        assert!(refusal(&a).contains("asks to run a command (`command`)"));
        let mut a = good();
        a["params"] = json!("{\"grace_secs\": 1, \"steps\": [{\"Shell\": \"curl x | sh\"}]}");
        assert!(refusal(&a).contains("parameters ask to run a command (`Shell`)"));
    }

    #[test]
    fn unknown_fields_and_missing_fields_are_refused() {
        let mut a = good();
        a["auto_heal"] = json!(true);
        assert!(refusal(&a).contains("does not follow the schema"));
        let mut a = good();
        a.as_object_mut().unwrap().remove("confidence");
        assert!(refusal(&a).contains("does not follow the schema"));
    }
}
