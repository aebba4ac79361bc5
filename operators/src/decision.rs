//! The one output type of every pipeline: what to do, why, how sure, who decided, on what evidence,
//! and where the input came from.

use inflight_engine::{Key, SourceRef};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What a decision recommends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Trading: buy.
    Buy,
    /// Trading: sell.
    Sell,
    /// Trading: keep the position.
    Hold,
    /// Flight: move the passengers to the alternative flight.
    Rebook,
    /// Flight: hold seats on the alternative while the delay is unclear.
    Protect,
    /// Flight: no alternative the rules trust; a person must decide.
    Escalate,
    /// Flight: the booking is not affected.
    #[serde(rename = "NONE")]
    NoAction,
    /// Code: apply the fix (it parses).
    Fix,
    /// Code: a fix to look at before applying (not validated, or not sure).
    Suggest,
}

impl Action {
    /// The action as written in decisions (`BUY`, `REBOOK`, `NONE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Buy => "BUY",
            Action::Sell => "SELL",
            Action::Hold => "HOLD",
            Action::Rebook => "REBOOK",
            Action::Protect => "PROTECT",
            Action::Escalate => "ESCALATE",
            Action::NoAction => "NONE",
            Action::Fix => "FIX",
            Action::Suggest => "SUGGEST",
        }
    }
}

/// Who made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The pipeline's rules.
    Rules,
    /// The LLM.
    Llm,
    /// The rules, after the LLM failed.
    Fallback,
}

/// A decision with its evidence and provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Deterministic id `pipeline/key/window_end_ms`, so a replay is recognisable.
    pub id: String,
    /// The pipeline that decided (`trading`, …).
    pub pipeline: String,
    /// The key decided on (asset, flight, repository).
    pub key: Key,
    /// The recommendation.
    pub action: Action,
    /// Why, in one sentence.
    pub reason: String,
    /// How sure, in [0, 1].
    pub confidence: f64,
    /// Rules, LLM or fallback.
    pub decided_by: DecidedBy,
    /// The values the decision was based on.
    pub evidence: Evidence,
    /// The event time the decision is about (RFC 3339).
    pub event_time: String,
    /// Wall-clock time it was made (RFC 3339).
    pub decided_at: String,
    /// Where the newest input behind it was read.
    pub source: SourceRef,
    /// Wall-clock nanoseconds when that input was read (for latency; not written out).
    #[serde(skip)]
    pub ingest_ns: u64,
    /// `event_time` in ms (for latency; not written out).
    #[serde(skip)]
    pub event_time_ms: inflight_engine::Millis,
}

impl inflight_engine::job::Emitted for Decision {
    fn id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn ingest_ns(&self) -> u64 {
        self.ingest_ns
    }

    fn key(&self) -> Option<&str> {
        Some(&self.key)
    }

    fn event_time_ms(&self) -> Option<inflight_engine::Millis> {
        Some(self.event_time_ms)
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let by = match self.decided_by {
            DecidedBy::Rules => "rules",
            DecidedBy::Llm => "llm",
            DecidedBy::Fallback => "fallback",
        };
        vec![("pipeline", self.pipeline.clone()), ("decided_by", by.to_owned())]
    }
}

impl Decision {
    /// A made-up decision (checks prompt templates at start; examples).
    pub fn sample() -> Decision {
        Decision {
            id: "trading/BTC/USD/1704621600000".into(),
            pipeline: "trading".into(),
            key: "BTC/USD".into(),
            action: Action::Hold,
            reason: "no rule fired".into(),
            confidence: 0.65,
            decided_by: DecidedBy::Rules,
            evidence: Evidence::of(&serde_json::json!({ "rsi": 55.0 })),
            event_time: "2024-01-07T10:00:00.000Z".into(),
            decided_at: "2024-01-07T10:00:00.010Z".into(),
            source: SourceRef::new(&inflight_engine::SourceName::File("sample.jsonl".into()), Default::default()),
            ingest_ns: 0,
            event_time_ms: 1_704_621_600_000,
        }
    }
}

/// The evidence of a decision as compact JSON, serialized once when the decision is made: it is
/// written out as is and goes into LLM prompts as is, without building a `serde_json::Value` tree
/// (which cost more than the rest of a decision together).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Evidence(Box<RawValue>);

impl Evidence {
    /// Serializes `value`; a value that cannot be JSON (a map with non-string keys) becomes an
    /// `{"error": …}` object rather than losing the decision.
    pub fn of<T: Serialize>(value: &T) -> Evidence {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Evidence(raw),
            Err(e) => Evidence::of(&serde_json::json!({ "error": format!("evidence is not JSON: {e}") })),
        }
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Parsed, for callers that look inside.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence::of(&())
    }
}
