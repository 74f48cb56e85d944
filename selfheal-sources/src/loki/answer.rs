//! Loki's answers, read leniently: `query_range` (`{"status":"success","data":
//! {"resultType":"streams","result":[{"stream":{..},"values":[["<ns>","<line>"],..]}],
//! "stats":{..}}}`) and the frames of `tail` (`{"streams":[..],"dropped_entries":[..]}`).
//!
//! Keys Loki adds (`stats`, `encodingFlags`, …) are ignored. An entry that cannot be
//! read (a timestamp that is not a nanosecond count, a line that is not a string) costs
//! that entry only: it is counted in [`Answer::malformed`] with the reason, and the other
//! entries stand. A third element of an entry (structured metadata, plain or
//! categorized as `{"structuredMetadata":{..},"parsed":{..}}`) adds to its labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

/// Labels of a stream (or metadata of an entry): name to value.
pub type Labels = BTreeMap<String, String>;

/// One log entry of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The stream's labels (shared by the stream's entries).
    pub labels: Arc<Labels>,
    /// The entry's structured metadata (and parsed labels), when Loki sent any.
    pub metadata: Labels,
    /// The log line.
    pub line: String,
}

/// What one answer held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The entries read, in the order of the answer.
    pub entries: Vec<Entry>,
    /// Entries in the answer, readable or not (what Loki's `limit` counted).
    pub total: usize,
    /// Why each entry that could not be read was skipped.
    pub malformed: Vec<String>,
    /// Entries Loki says it dropped (`tail` only): their timestamps and labels.
    pub dropped: Vec<(Option<i64>, Labels)>,
}

/// Why an answer as a whole could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// Not the JSON of a Loki answer.
    Unreadable(String),
    /// Loki answered `"status": "error"`.
    Refused(String),
    /// The query gives metrics (`matrix`, `vector`), not log lines.
    NotStreams(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Unreadable(why) => write!(f, "not a Loki answer: {why}"),
            AnswerError::Refused(why) => write!(f, "Loki refused the query: {why}"),
            AnswerError::NotStreams(kind) => write!(
                f,
                "the query returns `{kind}` (metrics), not log lines: use a log query such as \
                 `{{app=\"api\"}} |= \"error\"`"
            ),
        }
    }
}

impl std::error::Error for AnswerError {}

#[derive(Deserialize)]
struct RangeAnswer {
    status: String,
    #[serde(default)]
    data: Option<RangeData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct RangeData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Value>,
}

#[derive(Deserialize)]
struct TailFrame {
    #[serde(default)]
    streams: Vec<Value>,
    #[serde(default)]
    dropped_entries: Vec<Value>,
}

/// Reads a `query_range` answer (the body of a 200).
pub fn parse_query_range(body: &[u8]) -> Result<Answer, AnswerError> {
    let answer: RangeAnswer =
        serde_json::from_slice(body).map_err(|e| AnswerError::Unreadable(e.to_string()))?;
    if answer.status != "success" {
        return Err(AnswerError::Refused(
            answer
                .error
                .unwrap_or_else(|| format!("status `{}`", answer.status)),
        ));
    }
    let data = answer
        .data
        .ok_or_else(|| AnswerError::Unreadable("no `data`".into()))?;
    if data.result_type != "streams" {
        return Err(AnswerError::NotStreams(data.result_type));
    }
    let mut out = Answer::default();
    for stream in &data.result {
        read_stream(stream, &mut out);
    }
    Ok(out)
}

/// Reads one frame of `tail` (a WebSocket text message).
pub fn parse_tail_frame(body: &[u8]) -> Result<Answer, AnswerError> {
    let frame: TailFrame =
        serde_json::from_slice(body).map_err(|e| AnswerError::Unreadable(e.to_string()))?;
    let mut out = Answer::default();
    for stream in &frame.streams {
        read_stream(stream, &mut out);
    }
    for dropped in &frame.dropped_entries {
        let ts = dropped.get("timestamp").and_then(|t| read_ts(t).ok());
        let labels = dropped.get("labels").map(string_map).unwrap_or_default();
        out.dropped.push((ts, labels));
    }
    Ok(out)
}

/// Reads one `{"stream": {..}, "values": [..]}` into `out`.
fn read_stream(stream: &Value, out: &mut Answer) {
    let values = match stream.get("values") {
        Some(Value::Array(values)) => values.as_slice(),
        _ => {
            out.malformed
                .push("a stream without a `values` array".to_owned());
            return;
        }
    };
    let labels = Arc::new(stream.get("stream").map(string_map).unwrap_or_default());
    for value in values {
        out.total += 1;
        match read_entry(value, &labels) {
            Ok(entry) => out.entries.push(entry),
            Err(why) => out.malformed.push(why),
        }
    }
}

/// Reads `["<ns>", "<line>"]` or `["<ns>", "<line>", {metadata}]`.
fn read_entry(value: &Value, labels: &Arc<Labels>) -> Result<Entry, String> {
    let Value::Array(parts) = value else {
        return Err("an entry that is not an array".to_owned());
    };
    let ts = parts
        .first()
        .ok_or_else(|| "an empty entry".to_owned())
        .and_then(read_ts)?;
    let line = match parts.get(1) {
        Some(Value::String(line)) => line.clone(),
        _ => return Err("an entry whose line is not a string".to_owned()),
    };
    let metadata = match parts.get(2) {
        Some(Value::Object(m))
            if m.contains_key("structuredMetadata") || m.contains_key("parsed") =>
        {
            let mut all = Labels::new();
            for key in ["structuredMetadata", "parsed"] {
                if let Some(part) = m.get(key) {
                    all.extend(string_map(part));
                }
            }
            all
        }
        Some(other) => string_map(other),
        None => Labels::new(),
    };
    Ok(Entry {
        ts,
        labels: labels.clone(),
        metadata,
        line,
    })
}

/// A nanosecond timestamp, as Loki writes it: a string of digits (a number is taken too).
fn read_ts(value: &Value) -> Result<i64, String> {
    let parsed = match value {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    parsed
        .filter(|ts| *ts >= 0)
        .ok_or_else(|| "an entry whose timestamp is not a count of nanoseconds".to_owned())
}

/// The string values of a JSON object (others are skipped).
fn string_map(value: &Value) -> Labels {
    let Value::Object(map) = value else {
        return Labels::new();
    };
    map.iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_answer_is_read_and_unknown_keys_are_ignored() {
        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"filename":"/var/log/myproject.log","job":"varlogs","level":"info"},
             "values":[["1569266497240578000","foo"],["1569266492548155000","bar"]]}],
            "stats":{"summary":{"bytesProcessedPerSecond":1,"execTime":0.01}},
            "encodingFlags":[]},"warnings":["x"]}"#;
        let answer = parse_query_range(body).unwrap();
        assert_eq!(answer.total, 2);
        assert!(answer.malformed.is_empty());
        let lines: Vec<(i64, &str)> = answer
            .entries
            .iter()
            .map(|e| (e.ts, e.line.as_str()))
            .collect();
        assert_eq!(
            lines,
            [(1569266497240578000, "foo"), (1569266492548155000, "bar")]
        );
        assert_eq!(answer.entries[0].labels["job"], "varlogs");
    }

    #[test]
    fn a_bad_entry_costs_that_entry_only() {
        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"api"},"values":[["12","ok"],["noon","x"],["13",7],["-1","y"],
             ["14","with metadata",{"trace_id":"abc","n":1}],
             ["15","categorized",{"structuredMetadata":{"pod":"p1"},"parsed":{"level":"error"}}]]},
            {"stream":{"app":"web"}}]}}"#;
        let answer = parse_query_range(body).unwrap();
        assert_eq!(answer.total, 6);
        assert_eq!(answer.entries.len(), 3, "{answer:?}");
        assert_eq!(answer.malformed.len(), 4, "{:?}", answer.malformed);
        assert_eq!(answer.entries[1].metadata["trace_id"], "abc");
        assert!(!answer.entries[1].metadata.contains_key("n"));
        assert_eq!(answer.entries[2].metadata["pod"], "p1");
        assert_eq!(answer.entries[2].metadata["level"], "error");
    }

    #[test]
    fn refusals_and_metric_answers_are_errors_that_say_what_to_do() {
        let err = parse_query_range(
            br#"{"status":"error","errorType":"bad_data","error":"parse error at line 1"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("parse error at line 1"), "{err}");
        let err = parse_query_range(
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .unwrap_err();
        assert_eq!(err, AnswerError::NotStreams("matrix".into()));
        assert!(err.to_string().contains("log query"), "{err}");
        assert!(matches!(
            parse_query_range(b"<html>bad gateway</html>"),
            Err(AnswerError::Unreadable(_))
        ));
    }

    #[test]
    fn a_tail_frame_reports_what_loki_dropped() {
        let body = br#"{"streams":[{"stream":{"app":"api"},"values":[["5","boom"]]}],
            "dropped_entries":[{"labels":{"app":"api"},"timestamp":"4"},{"timestamp":"x"}]}"#;
        let frame = parse_tail_frame(body).unwrap();
        assert_eq!(frame.entries.len(), 1);
        assert_eq!(frame.dropped.len(), 2);
        assert_eq!(frame.dropped[0].0, Some(4));
        assert_eq!(frame.dropped[1].0, None);
    }
}
