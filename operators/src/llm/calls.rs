//! Everything between "ask" and "answer": the per-process service (tokio runtime, client,
//! breaker, rate limits, call log, replay, reply journal), retries with backoff and
//! `Retry-After`, and the repair attempt after an invalid reply.
//!
//! The reply journal makes the stage's replies part of the run's checkpoints. With
//! `--checkpoint-dir DIR`, each process appends every outcome to `DIR/llm-replies-<process>.jsonl`
//! as it arrives (one write per line, so a killed process loses at most the line it was writing),
//! and the `syncfs` before each checkpoint's manifest makes the lines written so far durable with
//! it: the replies of every case before checkpoint `T` are in the journal when `T` is committed. A
//! restore loads every process's journal and answers a case asked before from it: no call is paid
//! for twice, and no decision the stopped run made (or the replayed output depends on) changes.
//! A case after the checkpoint whose reply was in flight when the run stopped is asked again.

use super::ConcurrencyLimit;
use super::LlmConfig;
use super::breaker::Breaker;
use super::client::{ApiKey, CallError, Client, Completion, Message, Params};
use super::limit::AdaptiveLimit;
use super::prompt::{self, LlmVerdict, Prompts, ReplyCheck};
use super::stats::{LlmStats, bump};
use crate::decision::Action;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use inflight_engine::signals::Pressure;
use rand::Rng;
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::hash::Hasher;
use std::io::{BufWriter, Write};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How failed attempts are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First backoff, doubled per retry.
    pub backoff: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Backoff before retry `n` (0-based): full jitter over `backoff * 2^n`, capped.
    pub fn delay(&self, n: u32) -> Duration {
        let ceiling = self.backoff.saturating_mul(1u32 << n.min(20)).min(self.backoff_max);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Runs `attempt` until it succeeds, fails for good, runs out of retries, or the breaker refuses.
/// A `Retry-After` delays the next attempt by at least that long.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    breaker: &Breaker,
    stats: &LlmStats,
    mut attempt: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut n = 0;
    loop {
        if !breaker.allow() {
            stats.failed(CallError::BreakerOpen.kind());
            return Err(CallError::BreakerOpen);
        }
        bump(&stats.attempts);
        match attempt().await {
            Ok(value) => {
                breaker.success();
                return Ok(value);
            }
            Err(e) => {
                stats.failed(e.kind());
                if !e.retryable() {
                    // The endpoint answered: it is up, whatever it said.
                    breaker.success();
                    return Err(e);
                }
                if breaker.failure() {
                    bump(&stats.breaker_opened);
                    tracing::warn!(error = %e, "llm circuit breaker opened");
                }
                if n >= policy.retries {
                    return Err(e);
                }
                let mut wait = policy.delay(n);
                if let CallError::Status { retry_after: Some(after), .. } = &e {
                    wait = wait.max(*after);
                }
                tracing::debug!(error = %e, retry = n + 1, ?wait, "llm call failed, retrying");
                bump(&stats.retries);
                tokio::time::sleep(wait).await;
                n += 1;
            }
        }
    }
}

/// The outcome of one case as the call log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A valid verdict.
    Verdict(LlmVerdict),
    /// Why there is none (the fallback's reason).
    Error(String),
    /// Not asked: the token budget was spent (why).
    Budget(String),
}

/// One line of the call log.
#[derive(Serialize, Deserialize)]
struct LogLine {
    key: String,
    model: String,
    messages: Vec<Message>,
    outcome: Outcome,
    #[serde(default)]
    reply: Option<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    latency_ms: f64,
}

/// The LLM stage's process-wide part: one per run, shared by every worker's operator.
pub struct LlmService {
    /// The settings.
    pub config: LlmConfig,
    /// The compiled prompt templates.
    pub prompts: Prompts,
    /// What happened.
    pub stats: Arc<LlmStats>,
    pub(crate) caller: Arc<Caller>,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) pressure: Pressure,
    pub(crate) check: Option<Arc<dyn ReplyCheck>>,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService").field("config", &self.config).finish_non_exhaustive()
    }
}

impl LlmService {
    /// Starts the service: checks the config, builds the client (or loads the replay log), and
    /// starts a small tokio runtime for the requests. `pressure` is how the operators pause the
    /// sources when their buffers fill.
    pub fn start(config: &LlmConfig, pressure: Pressure) -> Result<Arc<Self>, String> {
        LlmService::start_checked(config, pressure, None)
    }

    /// [`LlmService::start`] with a pipeline's own check of every reply (see [`ReplyCheck`]).
    pub fn start_checked(
        config: &LlmConfig,
        pressure: Pressure,
        check: Option<Arc<dyn ReplyCheck>>,
    ) -> Result<Arc<Self>, String> {
        config.validate()?;
        let fields = check.as_ref().map(|c| c.fields()).unwrap_or_default();
        let prompts = Prompts::new(config)?;
        let stats = Arc::new(LlmStats::default());
        let replay = match &config.replay {
            Some(path) => Some(load_replay(path)?),
            None => None,
        };
        let (journal, resumed) = match &config.journal {
            Some(path) => open_journal(path)?,
            None => (None, FxHashMap::default()),
        };
        let log = match &config.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the LLM call log {}: {e}", path.display()))?;
                Some(Mutex::new(BufWriter::new(file)))
            }
            None => None,
        };
        let limiter = |n: Option<u32>, quota: fn(NonZeroU32) -> Quota| {
            n.and_then(NonZeroU32::new).map(|n| RateLimiter::direct(quota(n)))
        };
        let format = prompt::response_format(&config.actions, &fields, true);
        let max_tokens =
            config.max_tokens.or_else(|| prompt::reply_tokens(&format)).unwrap_or(prompt::DEFAULT_MAX_TOKENS);
        let params = Params {
            model: config.model.clone(),
            temperature: config.temperature,
            max_tokens,
            seed: config.seed,
            response_format: config.json_schema.then_some(format),
        };
        let unbounded = Params {
            response_format: config.json_schema.then(|| prompt::response_format(&config.actions, &fields, false)),
            ..params.clone()
        };
        // The endpoints in the order they are tried: `base_url` first, then `[[llm.endpoints]]`
        // (none when replaying: no call is made).
        let mut upstreams = Vec::new();
        if replay.is_none() {
            let first = (config.base_url.clone(), config.model.clone(), config.api_key.clone());
            let others = config.endpoints.iter().map(|e| {
                let key = e.api_key_env.as_ref().and_then(|var| std::env::var(var).ok());
                let key = key.filter(|k| !k.trim().is_empty()).map(|k| ApiKey::new(k.trim()));
                (e.base_url.clone(), e.model.clone(), key)
            });
            for (base_url, model, api_key) in std::iter::once(first).chain(others) {
                let client = Client::new(&LlmConfig { base_url, api_key, ..config.clone() })?;
                upstreams.push(Upstream {
                    client,
                    params: Params { model: model.clone(), ..params.clone() },
                    unbounded: Params { model, ..unbounded.clone() },
                    lengths_refused: AtomicBool::new(false),
                    breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown),
                });
            }
        }
        let caller = Caller {
            upstreams,
            params_hash: params_hash(&params),
            params,
            limit: (config.concurrency_limit == ConcurrencyLimit::Adaptive)
                .then(|| AdaptiveLimit::new(config.concurrency, config.latency_target)),
            policy: RetryPolicy { retries: config.retries, backoff: config.backoff, backoff_max: config.backoff_max },
            rps: limiter(config.requests_per_second, Quota::per_second),
            tpm: limiter(config.tokens_per_minute, Quota::per_minute),
            tpm_max: config.tokens_per_minute.unwrap_or(u32::MAX),
            budget: config
                .budget
                .tokens_per_hour
                .and_then(NonZeroU32::new)
                .map(|n| (RateLimiter::direct(Quota::per_hour(n)), n.get())),
            key_budget: config
                .budget
                .per_key_tokens_per_hour
                .and_then(NonZeroU32::new)
                .map(|n| (RateLimiter::keyed(Quota::per_hour(n)), n.get())),
            admitted: std::sync::atomic::AtomicU64::new(0),
            log,
            replay,
            journal,
            resumed,
            stats: Arc::clone(&stats),
            actions: config.actions.clone(),
            fields: fields.iter().map(|(name, _)| *name).collect(),
            check: check.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("inflight-llm")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the LLM runtime: {e}"))?;
        if caller.replay.is_none() {
            tracing::info!(base_url = %config.base_url, model = %config.model, key = config.api_key.is_some(), "llm endpoint");
            for e in &config.endpoints {
                tracing::info!(base_url = %e.base_url, model = %e.model, key = e.api_key_env.is_some(), "llm endpoint (next)");
            }
        }
        Ok(Arc::new(LlmService {
            config: config.clone(),
            prompts,
            stats,
            caller: Arc::new(caller),
            runtime,
            pressure,
            check,
        }))
    }

    /// The key of a prompt: a hash of the model, the parameters and the messages.
    pub fn key(&self, messages: &[Message]) -> u64 {
        self.caller.key(messages)
    }

    /// Flushes the call log.
    pub fn flush(&self) {
        self.caller.flush();
    }

    /// The summary lines of the run.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = self.stats.summary(&self.caller.breakers());
        if let Some((now, low, high)) = self.caller.limit.as_ref().map(AdaptiveLimit::current) {
            lines.push(format!(
                "llm concurrency limit {now} at the end (adaptive: lowest {low}, highest {high}, at most {}; latency target {:?})",
                self.config.concurrency, self.config.latency_target
            ));
        }
        lines
    }
}

/// One endpoint: its client, its request parameters and its circuit breaker.
struct Upstream {
    client: Client,
    params: Params,
    /// `params` without `maxLength` in the schema, for endpoints that refuse it.
    unbounded: Params,
    /// The endpoint refused `maxLength` once: send `unbounded` from then on.
    lengths_refused: AtomicBool,
    breaker: Breaker,
}

/// Asks the endpoints (or the replay log) and checks the answer.
pub(crate) struct Caller {
    /// The endpoints in the order they are tried (none when replaying).
    upstreams: Vec<Upstream>,
    /// The first endpoint's parameters: a case's key and the call log's model are from them.
    params: Params,
    /// The adaptive limit on requests in flight, if on.
    limit: Option<AdaptiveLimit>,
    params_hash: u64,
    policy: RetryPolicy,
    rps: Option<DefaultDirectRateLimiter>,
    tpm: Option<DefaultDirectRateLimiter>,
    tpm_max: u32,
    /// The token budgets of the pipeline (this process's share) and of each key.
    budget: Option<(DefaultDirectRateLimiter, u32)>,
    key_budget: Option<(DefaultKeyedRateLimiter<String>, u32)>,
    admitted: std::sync::atomic::AtomicU64,
    log: Option<Mutex<BufWriter<File>>>,
    replay: Option<FxHashMap<u64, Outcome>>,
    /// The reply journal being written, and the outcomes of the journals found at start.
    journal: Option<Mutex<File>>,
    resumed: FxHashMap<u64, Outcome>,
    stats: Arc<LlmStats>,
    actions: Vec<Action>,
    fields: Vec<&'static str>,
    check: Option<Arc<dyn ReplyCheck>>,
}

use std::fs::File;

impl Caller {
    fn key(&self, messages: &[Message]) -> u64 {
        key_of(self.params_hash, messages)
    }

    /// The outcome of a case whose deadline passed before it could be sent (logged like any other,
    /// so a replay gives the same decision).
    pub(crate) fn expired(&self, key: u64, messages: &[Message], deadline: Duration) -> Outcome {
        if let Some(outcome) = self.replayed(key).or_else(|| self.resumed(key)) {
            return outcome;
        }
        let outcome = Outcome::Error(CallError::Deadline(deadline).to_string());
        self.write_log(key, messages, &outcome, None, 0, Duration::ZERO);
        outcome
    }

    /// The outcome a run this one restores had for `key`, from its reply journal.
    fn resumed(&self, key: u64) -> Option<Outcome> {
        let outcome = self.resumed.get(&key)?;
        bump(&self.stats.resumed);
        Some(outcome.clone())
    }

    fn replayed(&self, key: u64) -> Option<Outcome> {
        let replay = self.replay.as_ref()?;
        bump(&self.stats.replayed);
        Some(replay.get(&key).cloned().unwrap_or_else(|| Outcome::Error(CallError::NotInReplay.to_string())))
    }

    /// A reply's verdict, if it is whole, has the shape and passes the pipeline's check.
    fn verdict(&self, reply: &Completion, evidence: &str, last: bool) -> Result<LlmVerdict, String> {
        if reply.cut_off() {
            return Err(format!(
                "the reply was cut off at the token limit (finish_reason: length, max_tokens {}); \
                 keep reason under {} characters",
                self.params.max_tokens,
                prompt::MAX_REASON
            ));
        }
        let mut verdict = prompt::validate(&reply.content, &self.actions)?;
        if let Some(check) = &self.check {
            check.check(evidence, &mut verdict, last)?;
        }
        Ok(verdict)
    }

    /// The whole case: ask, validate, one repair attempt, all before `deadline`; `evidence` is the
    /// case's, for the pipeline's check.
    pub(crate) async fn decide(&self, key: u64, messages: Vec<Message>, evidence: &str, deadline: Duration) -> Outcome {
        if let Some(outcome) = self.replayed(key).or_else(|| self.resumed(key)) {
            return outcome;
        }
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let mut last_reply = None;
        let work = async {
            let (first, model) = self.ask(&messages, &attempts).await?;
            last_reply = Some(first.content.clone());
            let verdict = match self.verdict(&first, evidence, false) {
                Ok(v) => Ok((v, model)),
                Err(problem) => {
                    bump(&self.stats.repairs);
                    let again = prompt::repair(&messages, &first.content, &problem, &self.fields);
                    let (second, model) = self.ask(&again, &attempts).await?;
                    last_reply = Some(second.content.clone());
                    self.verdict(&second, evidence, true)
                        .map(|v| (v, model))
                        .map_err(|e| CallError::Invalid(format!("{e} (after one repair attempt)")))
                }
            };
            // The decision names the model that gave the verdict.
            verdict.map(|(v, model)| LlmVerdict { model: Some(model.to_owned()), ..v })
        };
        let result = match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Deadline(deadline)),
        };
        let outcome = match result {
            Ok(v) => Outcome::Verdict(v),
            Err(e) => Outcome::Error(e.to_string()),
        };
        self.write_log(key, &messages, &outcome, last_reply, attempts.into_inner(), started.elapsed());
        outcome
    }

    /// Asks the endpoints in turn until one answers, with the model that did. The next one is
    /// tried when an endpoint's retries are spent on timeouts, connection errors, 5xx or 429, or
    /// its breaker is open; any other answer (a 4xx) is final: the request itself is at fault.
    async fn ask(&self, messages: &[Message], attempts: &AtomicU32) -> Result<(Completion, &str), CallError> {
        let mut failed = None;
        for up in &self.upstreams {
            if let Some(e) = &failed {
                bump(&self.stats.failovers);
                tracing::debug!(error = %e, next = %up.params.model, "llm endpoint failed, trying the next");
            }
            match self.ask_at(up, messages, attempts).await {
                Ok(reply) => return Ok((reply, up.params.model.as_str())),
                Err(e) if e.retryable() || e == CallError::BreakerOpen => failed = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(failed.unwrap_or(CallError::NotInReplay))
    }

    async fn ask_at(&self, up: &Upstream, messages: &[Message], attempts: &AtomicU32) -> Result<Completion, CallError> {
        match self.ask_once(up, messages, attempts).await {
            // OpenAI's strict mode accepts only part of JSON Schema; an endpoint that refuses the
            // length bounds gets the schema without them (max_tokens still bounds the reply).
            // Requests sent bounded before the first refusal came back are asked again too.
            Err(CallError::Status { code: 400, message, .. }) if message.contains("maxLength") => {
                if !up.lengths_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%message, "the endpoint refuses maxLength in response_format: sending it without");
                }
                self.ask_once(up, messages, attempts).await
            }
            other => other,
        }
    }

    /// The state of each endpoint's breaker, in order.
    fn breakers(&self) -> String {
        let states: Vec<&str> = self.upstreams.iter().map(|u| u.breaker.state()).collect();
        if states.is_empty() { "unused".into() } else { states.join(", ") }
    }

    async fn ask_once(
        &self,
        up: &Upstream,
        messages: &[Message],
        attempts: &AtomicU32,
    ) -> Result<Completion, CallError> {
        with_retries(&self.policy, &up.breaker, &self.stats, || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.limit(messages).await;
            // Waiting here is waiting in our process: the request's timeout starts after it.
            let permit = match &self.limit {
                Some(limit) => limit.acquire().await,
                None => None,
            };
            self.stats.started();
            let sent = Instant::now();
            let params = if up.lengths_refused.load(Ordering::Relaxed) { &up.unbounded } else { &up.params };
            let result = up.client.complete(params, messages).await;
            self.stats.ended();
            if let (Some(limit), Some(permit)) = (&self.limit, permit) {
                limit.done(permit, sent.elapsed(), result.as_ref().is_err_and(CallError::overloaded));
            }
            if let Ok(c) = &result {
                self.stats.latency(sent.elapsed());
                if let Some(u) = c.usage {
                    self.stats.prompt_tokens.fetch_add(u.prompt_tokens, Ordering::Relaxed);
                    self.stats.completion_tokens.fetch_add(u.completion_tokens, Ordering::Relaxed);
                }
            }
            result
        })
        .await
    }

    /// Waits for the request and token rate limits.
    async fn limit(&self, messages: &[Message]) {
        if let Some(rps) = &self.rps {
            rps.until_ready().await;
        }
        if let Some(tpm) = &self.tpm {
            if let Some(n) = NonZeroU32::new(self.tokens(messages).min(self.tpm_max)) {
                let _ = tpm.until_n_ready(n).await;
            }
        }
    }

    /// The most tokens a call with `messages` can take: 4 characters a token, plus the most the
    /// reply may take (at least 1).
    fn tokens(&self, messages: &[Message]) -> u32 {
        let chars: usize = messages.iter().map(|m| m.content.len()).sum();
        let tokens = (chars / 4) as u64 + u64::from(self.params.max_tokens);
        u32::try_from(tokens).unwrap_or(u32::MAX).max(1)
    }

    /// Charges the case of key `case` for a call with `messages` (prompt key `key`) to the token
    /// budgets; the outcome to give instead of calling when they cannot pay (logged and journaled
    /// like any other, so a replay gives the same decision). Answers already known (replay,
    /// journal) cost nothing. Called by the operator in the order cases arrive, so which cases of
    /// a key are paid for does not depend on the timing of replies.
    pub(crate) fn admit(&self, case: &str, key: u64, messages: &[Message]) -> Option<Outcome> {
        if (self.budget.is_none() && self.key_budget.is_none())
            || self.replay.is_some()
            || self.resumed.contains_key(&key)
        {
            return None;
        }
        let tokens = self.tokens(messages);
        let n = NonZeroU32::new(tokens)?;
        let why = |whose: String, budget: u32| -> String {
            if tokens > budget {
                format!("a call takes up to {tokens} tokens, more than {whose} budget of {budget} an hour")
            } else {
                format!("{whose} budget of {budget} tokens an hour is spent")
            }
        };
        let mut refused = None;
        if let Some((limiter, budget)) = &self.key_budget {
            // Forget keys whose budget is whole again, now and then (the map grows with the keys).
            if self.admitted.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
                limiter.retain_recent();
            }
            if !matches!(limiter.check_key_n(&case.to_owned(), n), Ok(Ok(()))) {
                refused = Some(why(format!("key {case}'s"), *budget));
            }
        }
        if let (None, Some((limiter, budget))) = (&refused, &self.budget) {
            if !matches!(limiter.check_n(n), Ok(Ok(()))) {
                refused = Some(why("the pipeline's".into(), *budget));
            }
        }
        let outcome = Outcome::Budget(refused?);
        self.write_log(key, messages, &outcome, None, 0, Duration::ZERO);
        Some(outcome)
    }

    fn write_log(
        &self,
        key: u64,
        messages: &[Message],
        outcome: &Outcome,
        reply: Option<String>,
        attempts: u32,
        took: Duration,
    ) {
        if self.log.is_none() && self.journal.is_none() {
            return;
        }
        let line = LogLine {
            key: format!("{key:016x}"),
            model: self.params.model.clone(),
            messages: messages.to_vec(),
            outcome: outcome.clone(),
            reply,
            attempts,
            latency_ms: took.as_secs_f64() * 1000.0,
        };
        let Ok(mut text) = serde_json::to_string(&line) else { return };
        text.push('\n');
        if let Some(Ok(mut w)) = self.log.as_ref().map(|l| l.lock()) {
            if let Err(e) = w.write_all(text.as_bytes()) {
                tracing::error!("cannot write the LLM call log: {e}");
            }
        }
        // One write per line, unbuffered: a line written is the kernel's, whatever happens to
        // this process next.
        if let Some(Ok(mut f)) = self.journal.as_ref().map(|l| l.lock()) {
            if let Err(e) = f.write_all(text.as_bytes()) {
                tracing::error!("cannot write the LLM reply journal (a restore will ask again): {e}");
            }
        }
    }

    fn flush(&self) {
        if let Some(Ok(mut w)) = self.log.as_ref().map(|l| l.lock()) {
            if let Err(e) = w.flush() {
                tracing::error!("cannot write the LLM call log: {e}");
            }
        }
    }
}

/// The hash of the request parameters every key starts from (computed once per run).
fn params_hash(params: &Params) -> u64 {
    let mut h = FxHasher::default();
    h.write(serde_json::to_string(params).unwrap_or_default().as_bytes());
    h.finish()
}

/// A stable hash of what a request asks (rustc-hash is deterministic across runs and machines).
fn key_of(params_hash: u64, messages: &[Message]) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(params_hash);
    for m in messages {
        h.write(m.role.as_bytes());
        h.write_u8(0);
        h.write(m.content.as_bytes());
        h.write_u8(0);
    }
    h.finish()
}

/// Outcomes by case key.
type Outcomes = FxHashMap<u64, Outcome>;

/// Loads a call log for replay. Keys are taken from the log's lines as written (the request
/// parameters are part of them), the last outcome of a key wins.
fn load_replay(path: &Path) -> Result<FxHashMap<u64, Outcome>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot open the LLM replay log {}: {e}", path.display()))?;
    let mut map = FxHashMap::default();
    read_log(&text, path, &mut map)?;
    Ok(map)
}

/// Adds the outcomes of the call log `text` (read from `path`) to `map`.
fn read_log(text: &str, path: &Path, map: &mut FxHashMap<u64, Outcome>) -> Result<(), String> {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: LogLine = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not an LLM call log line: {e}", path.display(), i + 1))?;
        let key = u64::from_str_radix(&entry.key, 16)
            .map_err(|e| format!("{}:{}: bad key {:?}: {e}", path.display(), i + 1, entry.key))?;
        map.insert(key, entry.outcome);
    }
    Ok(())
}

/// Opens the reply journal `path` for appending and loads every journal next to it (each
/// process of a cluster writes its own; a restore may run with another number of processes).
/// A process killed while writing leaves a last line without its newline: it is not loaded, and
/// cut off the journal this process continues.
fn open_journal(path: &Path) -> Result<(Option<Mutex<File>>, Outcomes), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut resumed = FxHashMap::default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut journals: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(JOURNAL_PREFIX)))
        .collect();
    journals.sort();
    for journal in &journals {
        let text = std::fs::read_to_string(journal)
            .map_err(|e| format!("cannot read the LLM reply journal {}: {e}", journal.display()))?;
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        read_log(&text[..whole], journal, &mut resumed)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the LLM reply journal {}: {e}", path.display()))?;
    let size = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    let whole = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let keep = whole.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
    if keep < size {
        file.set_len(keep).map_err(|e| format!("cannot cut the torn line off {}: {e}", path.display()))?;
    }
    Ok((Some(Mutex::new(file)), resumed))
}

/// The reply journal of process `process` in the checkpoint directory `dir`.
pub fn journal_path(dir: &Path, process: usize) -> std::path::PathBuf {
    dir.join(format!("{JOURNAL_PREFIX}{process}.jsonl"))
}

const JOURNAL_PREFIX: &str = "llm-replies-";

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy { retries, backoff: Duration::from_millis(100), backoff_max: Duration::from_secs(2) }
    }

    fn status(code: u16, retry_after: Option<u64>) -> CallError {
        CallError::Status { code, retry_after: retry_after.map(Duration::from_secs), message: String::new() }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_delays_the_retry_by_at_least_that_long() {
        let (breaker, stats) = (Breaker::new(0, Duration::from_secs(1)), LlmStats::default());
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let result = with_retries(&policy(3), &breaker, &stats, || async {
            if tries.fetch_add(1, Ordering::SeqCst) == 0 { Err(status(429, Some(1))) } else { Ok(7) }
        })
        .await;
        assert_eq!(result, Ok(7));
        assert!(start.elapsed() >= Duration::from_secs(1), "waited {:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_millis(1200), "and not much longer: {:?}", start.elapsed());
        assert_eq!(stats.retries.load(Ordering::SeqCst), 1);
        assert_eq!(stats.failures().get("http_429"), Some(&1));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_and_is_capped_and_gives_up_after_the_retries() {
        let (breaker, stats) = (Breaker::new(0, Duration::from_secs(1)), LlmStats::default());
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let result: Result<(), _> = with_retries(&policy(4), &breaker, &stats, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(status(503, None))
        })
        .await;
        assert_eq!(result, Err(status(503, None)));
        assert_eq!(tries.load(Ordering::SeqCst), 5, "first try + 4 retries");
        // Full jitter: at most 100 + 200 + 400 + 800 ms in total.
        assert!(start.elapsed() <= Duration::from_millis(1500), "{:?}", start.elapsed());
        for n in 0..30 {
            assert!(policy(0).delay(n) <= Duration::from_secs(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (breaker, stats) = (Breaker::new(0, Duration::from_secs(1)), LlmStats::default());
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(&policy(5), &breaker, &stats, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(status(400, None))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_refuses_without_calling() {
        let (breaker, stats) = (Breaker::new(2, Duration::from_secs(30)), LlmStats::default());
        let tries = AtomicU32::new(0);
        let fail = || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(CallError::Timeout(Duration::from_secs(1)))
        };
        assert!(with_retries(&policy(5), &breaker, &stats, fail).await.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 2, "the second failure opened it");
        let result = with_retries(&policy(5), &breaker, &stats, fail).await;
        assert_eq!(result, Err(CallError::BreakerOpen));
        assert_eq!(tries.load(Ordering::SeqCst), 2, "refused without a call");
        assert_eq!(stats.breaker_opened.load(Ordering::SeqCst), 1);
    }

    fn line(key: u64, outcome: &Outcome) -> String {
        let entry = LogLine {
            key: format!("{key:016x}"),
            model: "m".into(),
            messages: vec![Message::new("user", "x")],
            outcome: outcome.clone(),
            reply: None,
            attempts: 1,
            latency_ms: 1.0,
        };
        serde_json::to_string(&entry).unwrap() + "\n"
    }

    /// Every process's journal is loaded; a torn last line (a process killed while writing it) is
    /// neither loaded nor left in the journal this process continues.
    #[test]
    fn journals_load_whole_lines_and_lose_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let verdict = Outcome::Verdict(LlmVerdict {
            action: Action::new("BUY"),
            reason: "r".into(),
            confidence: 0.9,
            code: None,
            model: Some("m".into()),
        });
        let failed = Outcome::Error("timed out".into());
        let own = journal_path(dir.path(), 0);
        let torn = line(3, &verdict);
        std::fs::write(&own, line(1, &verdict) + &torn[..torn.len() / 2]).unwrap();
        std::fs::write(journal_path(dir.path(), 1), line(2, &failed)).unwrap();
        std::fs::write(dir.path().join("output.jsonl"), "not a journal\n").unwrap();
        let (journal, resumed) = open_journal(&own).unwrap();
        assert_eq!(resumed.len(), 2, "{resumed:?}");
        assert_eq!(resumed.get(&1), Some(&verdict));
        assert_eq!(resumed.get(&2), Some(&failed));
        // Appending continues after the last whole line.
        journal.unwrap().lock().unwrap().write_all(line(4, &verdict).as_bytes()).unwrap();
        let text = std::fs::read_to_string(&own).unwrap();
        assert_eq!(text, line(1, &verdict) + &line(4, &verdict));
        let (_, again) = open_journal(&own).unwrap();
        assert_eq!(again.len(), 3);
        // A damaged whole line is an error naming the file and line, not a silent loss.
        std::fs::write(journal_path(dir.path(), 2), "{\"key\": 5}\n").unwrap();
        let err = open_journal(&own).err().unwrap();
        assert!(err.contains("llm-replies-2.jsonl:1: not an LLM call log line"), "{err}");
    }

    #[test]
    fn keys_depend_on_params_and_messages_only() {
        let params =
            Params { model: "m".into(), temperature: Some(0.0), max_tokens: 10, seed: None, response_format: None };
        let a = [Message::new("user", "x")];
        let p = params_hash(&params);
        assert_eq!(key_of(p, &a), key_of(params_hash(&params.clone()), &a.clone()));
        assert_ne!(key_of(p, &a), key_of(p, &[Message::new("user", "y")]));
        let other = Params { model: "n".into(), ..params.clone() };
        assert_ne!(key_of(p, &a), key_of(params_hash(&other), &a));
    }
}
