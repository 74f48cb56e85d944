//! The admin API over HTTP: one request per call, errors with the API's own message.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::{CliError, CliResult};

/// A client of one mounted admin API.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client for the API mounted at `url` (`http://host:port/selfheal`).
    pub fn new(url: Option<&str>, token: Option<String>, timeout: Duration) -> CliResult<Self> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Err(CliError::usage(
                "no admin API URL: pass --url (or set SELFHEAL_URL), e.g. http://127.0.0.1:8080/selfheal",
            ));
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            CliError::usage(format!(
                "`{url}` is not a URL ({e}); pass the mount point, e.g. http://127.0.0.1:8080/selfheal"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::usage(format!(
                "`{url}` is not an http(s) URL; pass the mount point, e.g. http://127.0.0.1:8080/selfheal"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| CliError::failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: url.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> CliResult<Value> {
        self.send(Method::GET, path, query, None).await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post(&self, path: &str, body: Option<Value>) -> CliResult<Value> {
        self.send(Method::POST, path, &[], body).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> CliResult<Value> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    /// `DELETE path` (the answer is usually empty: `Value::Null`).
    pub async fn delete(&self, path: &str) -> CliResult<Value> {
        self.send(Method::DELETE, path, &[], None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> CliResult<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            CliError::failed(format!(
                "cannot reach the admin API at {url}: {}; check --url and that the service runs",
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            CliError::failed(format!(
                "{method} {url}: the answer broke off: {}",
                error_chain(&e)
            ))
        })?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| {
                CliError::failed(format!(
                    "{method} {url} answered {status} with something that is not JSON ({e}); \
                     is --url the mount point of the admin API?"
                ))
            });
        }
        Err(api_error(&method, &url, status, &text))
    }
}

/// The API's `{"status", "error"}` body as an error, or what came instead.
fn api_error(method: &Method, url: &str, status: StatusCode, text: &str) -> CliError {
    let body: Option<Value> = serde_json::from_str(text).ok();
    let said = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = match said {
        Some(said) => {
            let mut m = format!("{said} (HTTP {})", status.as_u16());
            if let Some(field) = body
                .as_ref()
                .and_then(|b| b.get("field"))
                .and_then(Value::as_str)
            {
                m.push_str(&format!("; field `{field}`"));
            }
            if let Some(detail) = body
                .as_ref()
                .and_then(|b| b.get("detail"))
                .and_then(Value::as_str)
            {
                m.push_str(&format!("; {detail}"));
            }
            m
        }
        None => {
            let snippet: String = text.chars().take(200).collect();
            format!(
                "{method} {url} answered {status} without the API's JSON error{}; is --url the mount point of the admin API?",
                if snippet.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", snippet.trim())
                }
            )
        }
    };
    CliError {
        code: 1,
        message,
        body,
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = s.source();
    }
    text
}
