//! The one output type of every pipeline: what to do, why, how sure, who decided, on what evidence,
//! and where the input came from.

use inflight_engine::time::{format_rfc3339, wall_millis};
use inflight_engine::{Key, Millis, Position, SourceName, SourceRef};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What a decision recommends: a name in capitals (`BUY`, `REBOOK`, `ALERT_ABOVE`). Each pipeline
/// declares the actions it may emit (the LLM stage may answer only those); the bundled pipelines'
/// are constants here. Cheap to copy and compare: it is a `&'static str`, and names read from
/// outside (a decision parsed back, a model's reply) are interned once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(&'static str);

impl Action {
    /// Whether `other` is this action: by pointer first (names are interned, so the same action
    /// nearly always is the same pointer), by name otherwise. `==` always compares the names (a
    /// `memcmp` call), and rules compare actions on every bar.
    pub fn is(self, other: Action) -> bool {
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }

    /// Trading: buy.
    pub const BUY: Action = Action("BUY");
    /// Trading: sell.
    pub const SELL: Action = Action("SELL");
    /// Trading: keep the position.
    pub const HOLD: Action = Action("HOLD");
    /// Flight: move the passengers to the alternative flight.
    pub const REBOOK: Action = Action("REBOOK");
    /// Flight: hold seats on the alternative while the delay is unclear.
    pub const PROTECT: Action = Action("PROTECT");
    /// Flight: no alternative the rules trust; a person must decide.
    pub const ESCALATE: Action = Action("ESCALATE");
    /// Flight: the booking is not affected.
    pub const NONE: Action = Action("NONE");
    /// Code: apply the fix (it parses).
    pub const FIX: Action = Action("FIX");
    /// Code: a fix to look at before applying (not validated, or not sure).
    pub const SUGGEST: Action = Action("SUGGEST");

    /// A pipeline's own action, e.g. `const BLOCK: Action = Action::new("BLOCK");` (checked
    /// with [`Action::check`] when the pipeline starts).
    pub const fn new(name: &'static str) -> Action {
        Action(name)
    }

    /// The action named `name`, interned: each distinct name is stored once for the process, and
    /// at most [`Action::MAX_NAMES`] of them (None past that).
    pub fn named(name: &str) -> Option<Action> {
        static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut names = NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = names.iter().find(|n| **n == name) {
            return Some(Action(known));
        }
        if names.len() >= Self::MAX_NAMES {
            return None;
        }
        // Leaked on purpose: actions are a small, fixed vocabulary per run (and bounded above).
        let stored: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.push(stored);
        Some(Action(stored))
    }

    /// The most distinct action names [`Action::named`] stores.
    pub const MAX_NAMES: usize = 4096;

    /// The action as written in decisions (`BUY`, `REBOOK`, `NONE`, …).
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether the name is usable: 1 to 40 characters of `A-Z`, `0-9` and `_`, starting with a
    /// letter (so it reads the same in JSON, Kafka headers, metrics labels and prompts).
    pub fn check(self) -> Result<(), String> {
        check_name(self.0)
    }
}

fn check_name(n: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_uppercase())
        && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok { Ok(()) } else { Err(format!("action {n:?} must be 1-40 of A-Z, 0-9 and _, starting with a letter")) }
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        check_name(&name).map_err(serde::de::Error::custom)?;
        Action::named(&name).ok_or_else(|| serde::de::Error::custom("more distinct actions than Action::MAX_NAMES"))
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
    /// The rules, without asking: the LLM stage's token budget was spent.
    Budget,
}

impl DecidedBy {
    /// As written in decisions (`rules`, `llm`, `fallback`, `budget`).
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Rules => "rules",
            DecidedBy::Llm => "llm",
            DecidedBy::Fallback => "fallback",
            DecidedBy::Budget => "budget",
        }
    }
}

/// Decisions belong to their key: a stage after an unordered one (the LLM's) can key them again.
impl crate::Keyed for Decision {
    fn key(&self) -> &inflight_engine::Key {
        &self.key
    }
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
    /// How much to trade, for pipelines that size their decisions (trading's `[sizing]`): units
    /// of the key's asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_size: Option<f64>,
    /// The key's position once this decision is acted on (with `suggested_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_after: Option<f64>,
    /// Rules, LLM, fallback or budget.
    pub decided_by: DecidedBy,
    /// The model that decided, for decisions by the LLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
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
        let by = self.decided_by.as_str();
        vec![("pipeline", self.pipeline.clone()), ("decided_by", by.to_owned())]
    }

    /// The bytes serde_json writes for a decision, written field by field: serde's generic path (a
    /// call per key and value, every byte of every string looked up for escapes) cost about 6,000
    /// instructions a decision. Tested against serde_json on decisions of every shape.
    fn write_json(&self, out: &mut String) -> Result<(), String> {
        use inflight_engine::json::{write_f64, write_str};
        out.push_str(r#"{"id":"#);
        write_str(out, &self.id);
        out.push_str(r#","pipeline":"#);
        write_str(out, &self.pipeline);
        out.push_str(r#","key":"#);
        write_str(out, &self.key);
        out.push_str(r#","action":"#);
        write_str(out, self.action.0);
        out.push_str(r#","reason":"#);
        write_str(out, &self.reason);
        out.push_str(r#","confidence":"#);
        write_f64(out, self.confidence);
        if let Some(size) = self.suggested_size {
            out.push_str(r#","suggested_size":"#);
            write_f64(out, size);
        }
        if let Some(position) = self.position_after {
            out.push_str(r#","position_after":"#);
            write_f64(out, position);
        }
        out.push_str(r#","decided_by":"#);
        write_str(out, self.decided_by.as_str());
        if let Some(model) = &self.model {
            out.push_str(r#","model":"#);
            write_str(out, model);
        }
        out.push_str(r#","evidence":"#);
        out.push_str(self.evidence.as_str());
        out.push_str(r#","event_time":"#);
        write_str(out, &self.event_time);
        out.push_str(r#","decided_at":"#);
        write_str(out, &self.decided_at);
        out.push_str(r#","source":"#);
        self.source.write_json(out);
        out.push('}');
        Ok(())
    }
}

impl Decision {
    /// A decision of the rules of `pipeline` about `key` at event time `event_time` (ms), made
    /// now: id `pipeline/key/event_time`, empty evidence, source unknown until
    /// [`Decision::source`] names it. The other setters fill in the rest.
    pub fn new(pipeline: &str, key: &str, event_time: Millis, action: Action, confidence: f64) -> Decision {
        Decision {
            id: format!("{pipeline}/{key}/{event_time}"),
            pipeline: pipeline.to_owned(),
            key: Key::from(key),
            action,
            reason: String::new(),
            confidence,
            suggested_size: None,
            position_after: None,
            decided_by: DecidedBy::Rules,
            model: None,
            evidence: Evidence::default(),
            event_time: format_rfc3339(event_time),
            decided_at: format_rfc3339(wall_millis()),
            source: SourceRef::new(&SourceName::File("unknown".into()), Position::default()),
            ingest_ns: 0,
            event_time_ms: event_time,
        }
    }

    /// Why, in one sentence.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// The values it was based on, serialized now (see [`Evidence::of`]).
    pub fn evidence<T: Serialize>(mut self, evidence: &T) -> Self {
        self.evidence = Evidence::of(evidence);
        self
    }

    /// Where the newest input behind it was read (`pos` in source `name`), and when (wall-clock
    /// nanoseconds, for the read → decision latency).
    pub fn source(mut self, name: &SourceName, pos: Position, ingest_ns: u64) -> Self {
        self.source = SourceRef::new(name, pos);
        self.ingest_ns = ingest_ns;
        self
    }

    /// Another id than `pipeline/key/event_time` (when one key can have several decisions at one
    /// time); it must be deterministic, so that a replay is recognised.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// A made-up decision (checks prompt templates at start; examples).
    pub fn sample() -> Decision {
        Decision {
            id: "trading/BTC/USD/1704621600000".into(),
            pipeline: "trading".into(),
            key: "BTC/USD".into(),
            action: Action::HOLD,
            reason: "no rule fired".into(),
            confidence: 0.65,
            suggested_size: None,
            position_after: None,
            decided_by: DecidedBy::Rules,
            model: None,
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
/// (which cost more than the rest of a decision together). Always valid JSON: it is made by
/// serde_json ([`Evidence::of`]), by an [`EvidenceWriter`], or read back as a JSON value.
#[derive(Clone, Debug)]
pub struct Evidence(String);

impl Evidence {
    /// Serializes `value`; a value that cannot be JSON (a map with non-string keys) becomes an
    /// `{"error": …}` object rather than losing the decision.
    pub fn of<T: Serialize>(value: &T) -> Evidence {
        match serde_json::to_string(value) {
            Ok(text) => Evidence(text),
            Err(e) => Evidence::of(&serde_json::json!({ "error": format!("evidence is not JSON: {e}") })),
        }
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parsed, for callers that look inside.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

/// As the JSON value it holds (not as a string), so serde_json writes it in place.
impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Checked again here, off the hot path (checkpoints, tools): RawValue has no unchecked
        // constructor, and the text is valid by construction anyway.
        RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Evidence(Box::<str>::from(Box::<RawValue>::deserialize(d)?).into_string()))
    }
}

/// Writes an evidence object field by field, as serde_json would write the same struct: the
/// generic serializer (a call per key and value, every key byte looked up for escapes) cost about
/// 10,000 instructions for a trading decision's evidence. Keys are plain identifiers, written
/// without escaping; string values are escaped as serde_json does. Tested against serde_json.
pub struct EvidenceWriter(String);

impl Default for EvidenceWriter {
    fn default() -> Self {
        EvidenceWriter::new()
    }
}

impl EvidenceWriter {
    /// An empty object.
    pub fn new() -> EvidenceWriter {
        let mut out = String::with_capacity(512);
        out.push('{');
        EvidenceWriter(out)
    }

    // Inlined: a call per key cost a third of writing it.
    #[inline(always)]
    fn key(&mut self, key: &'static str) -> &mut String {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "key {key:?} needs escaping");
        if !self.0.ends_with('{') {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
        &mut self.0
    }

    /// `"key": x` (NaN and the infinities as null, as serde_json writes them).
    pub fn f64(&mut self, key: &'static str, x: f64) -> &mut Self {
        inflight_engine::json::write_f64(self.key(key), x);
        self
    }

    /// `"key": x` for an f32, written as serde_json writes an f32.
    pub fn f32(&mut self, key: &'static str, x: f32) -> &mut Self {
        inflight_engine::json::write_f32(self.key(key), x);
        self
    }

    /// `"key": n`.
    pub fn u64(&mut self, key: &'static str, n: u64) -> &mut Self {
        self.key(key).push_str(itoa::Buffer::new().format(n));
        self
    }

    /// `"key": n` for a signed number.
    pub fn i64(&mut self, key: &'static str, n: i64) -> &mut Self {
        self.key(key).push_str(itoa::Buffer::new().format(n));
        self
    }

    /// `"key": null`.
    pub fn null(&mut self, key: &'static str) -> &mut Self {
        self.key(key).push_str("null");
        self
    }

    /// `"key": [n, …]`.
    pub fn u64s(&mut self, key: &'static str, items: &[u64]) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (k, n) in items.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push_str(itoa::Buffer::new().format(*n));
        }
        out.push(']');
        self
    }

    /// `"key": ["text", …]`, each escaped as serde_json escapes it.
    pub fn strs<'a>(&mut self, key: &'static str, items: impl IntoIterator<Item = &'a str>) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (k, text) in items.into_iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            inflight_engine::json::write_str(out, text);
        }
        out.push(']');
        self
    }

    /// `"key": [{…}, …]`, one object per item, its members written by `members`.
    pub fn objects<T>(
        &mut self,
        key: &'static str,
        items: &[T],
        mut members: impl FnMut(&mut EvidenceWriter, &T),
    ) -> &mut Self {
        self.key(key).push('[');
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                self.0.push(',');
            }
            self.0.push('{');
            members(self, item);
            self.0.push('}');
        }
        self.0.push(']');
        self
    }

    /// `"key": "text"`, escaped as serde_json escapes it.
    pub fn str(&mut self, key: &'static str, text: &str) -> &mut Self {
        inflight_engine::json::write_str(self.key(key), text);
        self
    }

    /// `"key": "…"`: a time as RFC 3339 text in UTC with milliseconds (as [`Stamp`] serializes).
    ///
    /// [`Stamp`]: inflight_engine::time::Stamp
    pub fn stamp(&mut self, key: &'static str, ms: Millis) -> &mut Self {
        let out = self.key(key);
        // Neither form of a stamp has a byte to escape.
        out.push('"');
        inflight_engine::time::Stamp(ms).push_to(out);
        out.push('"');
        self
    }

    /// `"key": {…}`, the members written by `members`.
    pub fn object(&mut self, key: &'static str, members: impl FnOnce(&mut EvidenceWriter)) -> &mut Self {
        self.key(key).push('{');
        members(self);
        self.0.push('}');
        self
    }

    /// The object, closed.
    pub fn finish(&mut self) -> Evidence {
        let mut out = std::mem::take(&mut self.0);
        out.push('}');
        // Not shrunk: a shrink is a copy, and the text is dropped once written.
        Evidence(out)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Action;

    #[test]
    fn decisions_are_written_as_serde_json_writes_them() {
        use super::{DecidedBy, Decision, Evidence};
        use inflight_engine::job::Emitted;
        use inflight_engine::{Position, SourceName, SourceRef};
        let texts = ["", "plain", "a \"quoted\" \\ reason\nover lines\t", "\u{1}\u{1f}\u{7f}", "€ 😀 é", "/slash"];
        let sources = [
            SourceRef::new(&SourceName::File("ticks.jsonl".into()), Position { partition: 0, offset: 12, line: 3 }),
            SourceRef::new(&SourceName::File("a \"b\".jsonl".into()), Position::default()),
            SourceRef::new(&SourceName::Topic("ticks".into()), Position { partition: 7, offset: 99, line: 0 }),
            SourceRef { file: None, topic: None, partition: None, offset: 0, line: Some(5) },
        ];
        let mut written = 0;
        for (i, text) in texts.iter().enumerate() {
            for (j, source) in sources.iter().enumerate() {
                for (k, confidence) in
                    [0.65, 0.0, -0.0, 1.0, 0.123_456_789_012_345_67, f64::NAN, 1e300].into_iter().enumerate()
                {
                    let by =
                        [DecidedBy::Rules, DecidedBy::Llm, DecidedBy::Fallback, DecidedBy::Budget][(i + j + k) % 4];
                    let d = Decision {
                        id: format!("trading/{text}/1"),
                        pipeline: text.to_string(),
                        key: (*text).into(),
                        action: Action::new("ALERT_ABOVE"),
                        reason: text.repeat(j + 1),
                        confidence,
                        suggested_size: (k % 2 == 0).then_some(0.1 * k as f64),
                        position_after: (k % 3 != 1).then_some(confidence * 3.0),
                        decided_by: by,
                        model: (by == DecidedBy::Llm).then(|| format!("m-{text}")),
                        evidence: Evidence::of(&serde_json::json!({ "text": text, "n": [1.5, null] })),
                        event_time: "2024-01-07T10:00:00.000Z".into(),
                        decided_at: text.to_string(),
                        source: source.clone(),
                        ingest_ns: 1,
                        event_time_ms: 2,
                    };
                    let mut out = String::new();
                    d.write_json(&mut out).unwrap();
                    assert_eq!(out, serde_json::to_string(&d).unwrap());
                    written += 1;
                }
            }
        }
        assert_eq!(written, texts.len() * sources.len() * 7);
    }

    #[test]
    fn evidence_writer_writes_what_serde_json_writes() {
        use super::{Evidence, EvidenceWriter};
        use inflight_engine::time::Stamp;
        #[derive(serde::Serialize)]
        struct Inner {
            x: f64,
            at: Stamp,
        }
        #[derive(serde::Serialize)]
        struct Outer<'a> {
            a: f64,
            inner: Inner,
            n: u64,
            text: &'a str,
            score: f32,
            empty: Inner,
        }
        let floats = [0.0, -0.0, 1.0, 0.1, -2.5e-8, 1e300, 123_456.789, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE];
        let texts = ["", "plain", "a \"quoted\" \\ reason\nover lines\t", "\u{1}\u{7f}", "€ 😀 é"];
        let stamps = [0, 1_704_621_600_123, 253_402_300_799_999, 253_402_300_800_000, 9_000_000_000_000_000];
        let scores = [0.3f32, -0.75, f32::NAN, 1e-7, 0.1];
        for (i, &a) in floats.iter().enumerate() {
            let (text, at, score) = (texts[i % texts.len()], stamps[i % stamps.len()], scores[i % scores.len()]);
            let value = Outer {
                a,
                inner: Inner { x: -a, at: Stamp(at) },
                n: u64::MAX >> i,
                text,
                score,
                empty: Inner { x: a * 3.0, at: Stamp(at / 7) },
            };
            let mut w = EvidenceWriter::new();
            w.f64("a", a).object("inner", |w| {
                w.f64("x", -a).stamp("at", at);
            });
            w.u64("n", u64::MAX >> i).str("text", text).f32("score", score);
            w.object("empty", |w| {
                w.f64("x", a * 3.0).stamp("at", at / 7);
            });
            let written = w.finish();
            assert_eq!(written.as_str(), Evidence::of(&value).as_str(), "case {i}");
            // And it reads back as the same JSON value, through serde as a checkpoint would.
            let back: Evidence = serde_json::from_str(&serde_json::to_string(&written).unwrap()).unwrap();
            assert_eq!(back, written);
        }
        assert_eq!(EvidenceWriter::new().finish().as_str(), "{}");
    }

    #[test]
    fn evidence_writer_writes_lists_nulls_and_signed_numbers_as_serde_json_does() {
        use super::{Evidence, EvidenceWriter};
        #[derive(serde::Serialize)]
        struct Item<'a> {
            id: &'a str,
            n: i64,
        }
        #[derive(serde::Serialize)]
        struct Lists<'a> {
            none: Option<u64>,
            pair: [u64; 2],
            names: Vec<&'a str>,
            items: Vec<Item<'a>>,
            after: i64,
        }
        let names: [&[&str]; 3] = [&[], &["a"], &["IF1\"x", "€", "b"]];
        for (i, names) in names.iter().enumerate() {
            let items: Vec<Item> = names.iter().enumerate().map(|(k, id)| Item { id, n: -(k as i64) }).collect();
            let value = Lists { none: None, pair: [i as u64, 7], names: names.to_vec(), items, after: i64::MIN };
            let mut w = EvidenceWriter::new();
            w.null("none").u64s("pair", &[i as u64, 7]).strs("names", names.iter().copied());
            w.objects("items", &value.items, |w, item| {
                w.str("id", item.id).i64("n", item.n);
            });
            w.i64("after", i64::MIN);
            assert_eq!(w.finish().as_str(), Evidence::of(&value).as_str(), "case {i}");
        }
    }

    #[test]
    fn an_action_is_itself_whatever_its_pointer() {
        let read: Action = serde_json::from_str("\"BUY\"").unwrap();
        let owned: &'static str = Box::leak(String::from("BUY").into_boxed_str());
        for buy in [Action::BUY, read, Action::new("BUY"), Action(owned)] {
            assert!(buy.is(Action::BUY) && Action::BUY.is(buy) && buy == Action::BUY);
            assert!(!buy.is(Action::SELL) && !Action::HOLD.is(buy));
        }
    }

    #[test]
    fn actions_read_back_as_the_same_value_and_bad_names_are_refused() {
        let buy: Action = serde_json::from_str("\"BUY\"").unwrap();
        assert_eq!(buy, Action::BUY);
        assert_eq!(serde_json::to_string(&Action::new("ALERT_ABOVE")).unwrap(), "\"ALERT_ABOVE\"");
        let own: Action = serde_json::from_str("\"BLOCK\"").unwrap();
        assert_eq!(own, Action::new("BLOCK"));
        for bad in ["\"\"", "\"buy\"", "\"9LIVES\"", "\"A-B\""] {
            let err = serde_json::from_str::<Action>(bad).unwrap_err().to_string();
            assert!(err.contains("must be 1-40 of A-Z"), "{bad}: {err}");
        }
        assert!(Action::new("OK_2").check().is_ok());
        assert!(Action::new("way too long a name for an action, surely").check().is_err());
    }
}
