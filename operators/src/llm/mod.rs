//! The LLM stage: decisions the rules are unsure about go to an OpenAI-compatible endpoint, and
//! come back as validated decisions — or, when the endpoint fails, as the rules' decision marked
//! `fallback`. Every input yields exactly one output.
//!
//! * [`client`]: one HTTP exchange (`POST {base_url}/chat/completions`, plain or SSE).
//! * [`calls`]: retries, backoff, `Retry-After`, the circuit breaker, rate limits, call log and
//!   replay — everything between "ask" and "answer".
//! * [`limit`]: the adaptive limit on requests in flight.
//! * [`prompt`]: templates, the JSON schema of a reply and its validation.
//! * [`operator`]: the timely operator (`stream.llm_decide(&service)`) with the confidence gate.
//! * [`stats`]: counters and latencies for the run summary.

pub mod breaker;
pub mod calls;
pub mod client;
pub mod limit;
pub mod operator;
pub mod prompt;
pub mod stats;

pub use calls::LlmService;
pub use client::ApiKey;
pub use operator::LlmExt;
pub use prompt::{LlmVerdict, ReplyCheck};
pub use stats::LlmStats;

use crate::decision::Action;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the LLM stage (`[llm]` in a pipeline's config file; flags and env override them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Call the LLM at all (off by default: the rules decide alone, no key needed).
    pub enabled: bool,
    /// Endpoint base, e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` (Ollama).
    pub base_url: String,
    /// Model name as the endpoint knows it.
    pub model: String,
    /// Sampling temperature (0 for repeatable answers).
    pub temperature: Option<f64>,
    /// Most tokens in a reply [default: what the longest reply the reply schema allows can take].
    pub max_tokens: Option<u32>,
    /// Sampling seed, where the endpoint supports it.
    pub seed: Option<u64>,
    /// Ask for a streamed (SSE) reply.
    pub stream: bool,
    /// Send `response_format` with the reply's JSON schema (turn off for servers that reject it).
    pub json_schema: bool,
    /// Decisions whose rule confidence is below this go to the LLM (0 = never, 1 = always).
    pub min_confidence: f64,
    /// A verdict that changes the rules' action must be more confident than the rules' decision
    /// by more than this, or the rules' decision stands (with the verdict named in its reason).
    /// In [-1, 1]: 0 asks only for more confidence, -1 takes every verdict.
    pub override_margin: f64,
    /// Most requests in flight per worker (and per process, for the adaptive limit).
    pub concurrency: usize,
    /// `adaptive`: the requests in flight per process start at 2 and follow what the endpoint
    /// answers (see [`limit`]); `fixed`: always up to `concurrency` per worker.
    pub concurrency_limit: ConcurrencyLimit,
    /// The adaptive limit shrinks when a reply takes longer than this.
    #[serde(with = "humantime_serde")]
    pub latency_target: Duration,
    /// Most cases waiting per worker before the sources pause.
    pub max_buffered: usize,
    /// Timeout of one HTTP exchange.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after the first attempt (timeouts, connection errors, 5xx, 429).
    pub retries: u32,
    /// First backoff; doubles per retry, with full jitter.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest backoff.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Consecutive failed calls that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Requests per second per process (none = unlimited).
    pub requests_per_second: Option<u32>,
    /// Tokens (prompt estimate + max_tokens) per minute per process (none = unlimited).
    pub tokens_per_minute: Option<u32>,
    /// Endpoints tried in this order after `base_url`/`model` (`[[llm.endpoints]]`) when it times
    /// out, fails with a 5xx or a connection error, or its circuit breaker is open.
    pub endpoints: Vec<Endpoint>,
    /// Token budgets (`[llm.budget]`): once spent, cases take the rules' decision at once.
    pub budget: Budget,
    /// A case still unanswered this long after its input was read falls back to the rules.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Replies kept for identical prompts, per worker.
    pub cache_size: usize,
    /// Actions a reply may choose [default: the pipeline's].
    pub actions: Vec<Action>,
    /// System message template (minijinja) [default: the pipeline's].
    pub system_prompt: Option<String>,
    /// User message template (minijinja); sees `pipeline`, `key`, `event_time`, `rule` (`action`,
    /// `reason`, `confidence`), `evidence` (compact JSON) and `actions` [default: the pipeline's].
    pub user_prompt: Option<String>,
    /// Append every call and reply to this JSONL file (set by `--llm-log`).
    #[serde(skip)]
    pub log: Option<PathBuf>,
    /// Answer from this call log instead of the network (set by `--llm-replay`).
    #[serde(skip)]
    pub replay: Option<PathBuf>,
    /// The reply journal (set with `--checkpoint-dir`: `DIR/llm-replies-<process>.jsonl`): every
    /// outcome is appended to it as it arrives, and a start answers from every
    /// `llm-replies-*.jsonl` in its directory before asking the endpoint (see [`calls`]).
    #[serde(skip)]
    pub journal: Option<PathBuf>,
    /// `OPENAI_API_KEY` (from the environment only; never written or logged).
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            enabled: false,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            temperature: Some(0.0),
            max_tokens: None,
            seed: None,
            stream: false,
            json_schema: true,
            min_confidence: 0.7,
            override_margin: 0.1,
            concurrency: 32,
            concurrency_limit: ConcurrencyLimit::Adaptive,
            latency_target: Duration::from_secs(5),
            max_buffered: 4096,
            timeout: Duration::from_secs(20),
            retries: 3,
            backoff: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            breaker_failures: 10,
            breaker_cooldown: Duration::from_secs(15),
            requests_per_second: None,
            tokens_per_minute: None,
            endpoints: Vec::new(),
            budget: Budget::default(),
            deadline: Duration::from_secs(60),
            cache_size: 10_000,
            actions: Vec::new(),
            system_prompt: None,
            user_prompt: None,
            log: None,
            replay: None,
            journal: None,
            api_key: None,
        }
    }
}

/// A further endpoint of the LLM stage (`[[llm.endpoints]]`), tried after the ones before it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its base, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The model name it knows.
    pub model: String,
    /// The environment variable holding its API key (none: no key is sent). Keys are never read
    /// from config files.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// What the LLM stage may spend (`[llm.budget]`), in tokens per wall-clock hour, refilled evenly
/// over the hour (a token bucket). A case is charged before its call with the most that call can
/// take (its prompt at 4 characters a token plus `max_tokens`); a repair or retry is not charged
/// again, and cached, shared, replayed and resumed answers cost nothing. A case that cannot be
/// paid for takes the rules' decision at once, marked `decided_by: budget`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// For the whole pipeline; split evenly over the processes of a cluster.
    pub tokens_per_hour: Option<u32>,
    /// For each key (asset, booking, file), on the process that owns the key.
    pub per_key_tokens_per_hour: Option<u32>,
}

/// How many requests may be in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyLimit {
    /// Follows the endpoint's measured capacity, between 1 and `concurrency` per process.
    #[default]
    Adaptive,
    /// `concurrency` per worker, whatever the endpoint does.
    Fixed,
}

/// Prompts for pipelines that bring none.
const SYSTEM_PROMPT: &str = "You decide for an automated stream-processing pipeline. Answer only with a JSON \
object {\"action\", \"reason\", \"confidence\"}; action is one of {{ actions }}; confidence is a number in \
[0, 1]; reason is one short sentence.";
const USER_PROMPT: &str = "Pipeline {{ pipeline }}, key {{ key }}, event time {{ event_time }}.
The rules said {{ rule.action }} with confidence {{ rule.confidence }}: {{ rule.reason }}
Evidence: {{ evidence }}";

impl LlmConfig {
    /// Fills what the config left out (prompts, allowed actions) with a pipeline's own.
    pub fn with_pipeline_defaults(mut self, system: &str, user: &str, actions: &[Action]) -> Self {
        self.system_prompt.get_or_insert_with(|| system.to_owned());
        self.user_prompt.get_or_insert_with(|| user.to_owned());
        if self.actions.is_empty() {
            self.actions = actions.to_vec();
        }
        self
    }

    /// The system template in use.
    pub fn system_template(&self) -> &str {
        self.system_prompt.as_deref().unwrap_or(SYSTEM_PROMPT)
    }

    /// The user template in use.
    pub fn user_template(&self) -> &str {
        self.user_prompt.as_deref().unwrap_or(USER_PROMPT)
    }

    /// Takes `OPENAI_API_KEY` and `OPENAI_BASE_URL` from the environment (the base URL only if the
    /// config left the default).
    pub fn with_env(mut self) -> Self {
        if let Ok(key) = std::env::var("OPENAI_API_KEY") {
            if !key.trim().is_empty() {
                self.api_key = Some(ApiKey::new(key.trim()));
            }
        }
        if let Ok(url) = std::env::var("OPENAI_BASE_URL") {
            if !url.trim().is_empty() && self.base_url == LlmConfig::default().base_url {
                self.base_url = url.trim().to_owned();
            }
        }
        self
    }

    /// The settings of process `process` of `processes`: its share of the pipeline's token
    /// budget, and with checkpoints in `checkpoint_dir` its reply journal there (see [`calls`]).
    pub fn for_process(mut self, process: usize, processes: usize, checkpoint_dir: Option<&std::path::Path>) -> Self {
        let processes = u32::try_from(processes.max(1)).unwrap_or(u32::MAX);
        self.budget.tokens_per_hour = self.budget.tokens_per_hour.map(|t| (t / processes).max(1));
        self.journal = checkpoint_dir.map(|dir| calls::journal_path(dir, process));
        self
    }

    /// Checks ranges; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!("llm.min_confidence must be in [0, 1], got {}", self.min_confidence));
        }
        if !(-1.0..=1.0).contains(&self.override_margin) {
            return Err(format!("llm.override_margin must be in [-1, 1], got {}", self.override_margin));
        }
        if self.max_tokens == Some(0) {
            return Err("llm.max_tokens must be at least 1 (leave it out to derive it from the reply schema)".into());
        }
        if self.concurrency == 0 {
            return Err("llm.concurrency must be at least 1".into());
        }
        if self.max_buffered == 0 {
            return Err("llm.max_buffered must be at least 1".into());
        }
        if self.actions.is_empty() {
            return Err("llm.actions must name at least one action".into());
        }
        if self.timeout.is_zero() || self.deadline.is_zero() || self.latency_target.is_zero() {
            return Err("llm.timeout, llm.deadline and llm.latency_target must be above zero".into());
        }
        if self.budget.tokens_per_hour == Some(0) || self.budget.per_key_tokens_per_hour == Some(0) {
            return Err("llm.budget token budgets must be above zero (leave them out for no budget)".into());
        }
        if self.requests_per_second == Some(0) || self.tokens_per_minute == Some(0) {
            return Err("llm rate limits must be above zero (leave them out for no limit)".into());
        }
        check_url("llm.base_url", &self.base_url)?;
        for (i, e) in self.endpoints.iter().enumerate() {
            check_url(&format!("llm.endpoints[{i}].base_url"), &e.base_url)?;
            if e.model.trim().is_empty() {
                return Err(format!("llm.endpoints[{i}].model must name a model"));
            }
            if let Some(var) = &e.api_key_env {
                if std::env::var(var).is_err() {
                    return Err(format!("llm.endpoints[{i}].api_key_env: {var} is not set"));
                }
            }
        }
        prompt::Prompts::new(self).map(|_| ())
    }
}

/// A base URL the client can use (the message names the setting).
fn check_url(setting: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{setting} {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{setting} {url:?} must be http:// or https://"));
    }
    Ok(())
}
