//! One exchange with an OpenAI-compatible endpoint: `POST {base_url}/chat/completions`, as a plain
//! JSON reply or as a server-sent-event stream. Works unchanged against OpenAI, vLLM, Ollama and
//! llama.cpp's server (the last three need only a base URL). Retrying is the caller's business.

use super::LlmConfig;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An API key: sent as a bearer token, never printed (Debug shows it redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

/// A chat message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message { role: role.to_owned(), content: content.into() }
    }
}

/// Token counts the endpoint reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens in the reply.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// A reply: the assistant's text and, if reported, why it ended and the token usage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The assistant message content.
    pub content: String,
    /// `finish_reason`: `stop`, or `length` when the reply was cut off at `max_tokens`.
    pub finish_reason: Option<String>,
    /// Token usage, when the endpoint sent it.
    pub usage: Option<Usage>,
}

impl Completion {
    /// The endpoint stopped the reply at the token limit (OpenAI, vLLM, Ollama and llama.cpp all
    /// say `length`), so the text is incomplete whatever it looks like.
    pub fn cut_off(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
    }
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallError {
    /// No answer within the per-request timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Could not connect, or the connection broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The endpoint answered with an error status.
    #[error("HTTP {code}: {message}")]
    Status {
        /// HTTP status.
        code: u16,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// The error text of the body, shortened.
        message: String,
    },
    /// The body was not a chat completion.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The reply parsed but is not a valid decision.
    #[error("invalid decision: {0}")]
    Invalid(String),
    /// The circuit breaker is open: not even tried.
    #[error("circuit breaker open after repeated failures")]
    BreakerOpen,
    /// The case's deadline passed.
    #[error("deadline passed ({0:?} after the input was read)")]
    Deadline(Duration),
    /// Replaying a call log that has no entry for this prompt.
    #[error("not in the replay log")]
    NotInReplay,
}

impl CallError {
    /// Worth another attempt: timeouts, connection errors, 5xx and 429.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Connection(_) => true,
            CallError::Status { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    /// The endpoint is overloaded or too slow: a timeout, 429 or 5xx (the adaptive limit shrinks).
    pub fn overloaded(&self) -> bool {
        match self {
            CallError::Timeout(_) => true,
            CallError::Status { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    /// A short name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Connection(_) => "connection",
            CallError::Status { code: 429, .. } => "http_429",
            CallError::Status { code, .. } if *code >= 500 => "http_5xx",
            CallError::Status { .. } => "http_4xx",
            CallError::Malformed(_) => "malformed",
            CallError::Invalid(_) => "invalid",
            CallError::BreakerOpen => "breaker_open",
            CallError::Deadline(_) => "deadline",
            CallError::NotInReplay => "not_in_replay",
        }
    }
}

/// The request body's fixed part.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Model.
    pub model: String,
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Reply size limit.
    pub max_tokens: u32,
    /// Seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `response_format` (a JSON schema), if used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    params: &'a Params,
    messages: &'a [Message],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChatCompletion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ChoiceMessage>,
    delta: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

/// The HTTP side.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    key: Option<ApiKey>,
    stream: bool,
    timeout: Duration,
}

/// Longest error text kept from a reply body.
const ERROR_TEXT: usize = 300;

impl Client {
    /// A client for `config`'s endpoint.
    pub fn new(config: &LlmConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.concurrency.max(1) * 2)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            key: config.api_key.clone(),
            stream: config.stream,
            timeout: config.timeout,
        })
    }

    /// One exchange, bounded by the per-request timeout (tokio's clock, so tests can pause it).
    pub async fn complete(&self, params: &Params, messages: &[Message]) -> Result<Completion, CallError> {
        match tokio::time::timeout(self.timeout, self.exchange(params, messages)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, params: &Params, messages: &[Message]) -> Result<Completion, CallError> {
        let body = Body {
            params,
            messages,
            stream: self.stream,
            stream_options: self.stream.then(|| serde_json::json!({ "include_usage": true })),
        };
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(ApiKey(key)) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(connection)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let text = response.text().await.unwrap_or_default();
            return Err(CallError::Status { code: status.as_u16(), retry_after, message: error_text(&text) });
        }
        if self.stream { read_stream(response).await } else { read_whole(response).await }
    }
}

fn connection(e: reqwest::Error) -> CallError {
    // The source chain says what actually broke (refused, reset, DNS); the top level often only
    // says "error sending request".
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    CallError::Connection(text)
}

/// The `error.message` of an OpenAI-style error body, or the body's start.
fn error_text(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    message.chars().take(ERROR_TEXT).collect()
}

async fn read_whole(response: reqwest::Response) -> Result<Completion, CallError> {
    let bytes = response.bytes().await.map_err(connection)?;
    let reply: ChatCompletion = serde_json::from_slice(&bytes).map_err(|e| {
        CallError::Malformed(format!("{e} in {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_TEXT)])))
    })?;
    let choice = reply.choices.into_iter().next();
    let finish_reason = choice.as_ref().and_then(|c| c.finish_reason.clone());
    let content = choice
        .and_then(|c| c.message)
        .and_then(|m| m.content)
        .ok_or_else(|| CallError::Malformed("no choices[0].message.content".into()))?;
    Ok(Completion { content, finish_reason, usage: reply.usage })
}

async fn read_stream(response: reqwest::Response) -> Result<Completion, CallError> {
    let mut events = response.bytes_stream().eventsource();
    let mut content = String::new();
    let mut usage = None;
    let mut finish_reason = None;
    let mut done = false;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| CallError::Connection(format!("stream broke: {e}")))?;
        let data = event.data.trim();
        if data == "[DONE]" {
            done = true;
            break;
        }
        if data.is_empty() {
            continue;
        }
        let chunk: ChatCompletion = serde_json::from_str(data).map_err(|e| {
            CallError::Malformed(format!("{e} in stream chunk {:?}", &data[..data.len().min(ERROR_TEXT)]))
        })?;
        if let Some(choice) = chunk.choices.into_iter().next() {
            finish_reason = choice.finish_reason.or(finish_reason);
            if let Some(text) = choice.delta.and_then(|d| d.content) {
                content.push_str(&text);
            }
        }
        usage = chunk.usage.or(usage);
    }
    if !done {
        return Err(CallError::Connection("stream ended before [DONE]".into()));
    }
    Ok(Completion { content, finish_reason, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted() {
        let key = ApiKey::new("sk-very-secret");
        assert_eq!(format!("{key:?}"), "ApiKey(redacted)");
        let config = LlmConfig { api_key: Some(key), ..LlmConfig::default() };
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let status = |code| CallError::Status { code, retry_after: None, message: String::new() };
        assert!(status(429).retryable() && status(500).retryable() && status(503).retryable());
        assert!(!status(400).retryable() && !status(401).retryable());
        assert!(CallError::Timeout(Duration::from_secs(1)).retryable());
        assert!(CallError::Connection("reset".into()).retryable());
        assert!(!CallError::Malformed("x".into()).retryable() && !CallError::Invalid("x".into()).retryable());
    }

    #[test]
    fn error_text_prefers_the_openai_message() {
        assert_eq!(error_text(r#"{"error":{"message":"slow down","type":"rate_limit"}}"#), "slow down");
        assert_eq!(error_text("  plain  "), "plain");
        assert_eq!(error_text(&"x".repeat(1000)).len(), ERROR_TEXT);
    }
}
