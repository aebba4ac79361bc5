//! The code-fix pipeline: code plus error context in, a validated fix with its confidence out.
//! A real parser (tree-sitter: Python, JavaScript) finds the syntax errors, rule fixers repair the
//! common ones (missing colon, unbalanced bracket, unclosed string, indentation) and a fix leaves as
//! FIX only if the fixed code parses, with its unified diff. What the rules cannot fix leaves as a
//! low-confidence SUGGEST, which the LLM stage (when enabled) replaces with a proposal that is
//! parsed before it is believed (see [`CodeCheck`]).
//!
//! ```text
//! events ─exchange(repository/file)─▶ decide (parse, fix, validate, diff) ─▶ llm_decide (+ CodeCheck)
//! ```

pub mod calibration;
mod event;
pub mod fix;
mod rules;
pub mod strict;
pub mod synthetic;

pub use event::{CodeEvent, ErrorContext, MAX_CODE};
pub use fix::{Finding, Fix, FixKind, Language, Placement, analyse, diff, findings, parses, propose};
pub use rules::{CodeCheck, CodeEvidence, decide};

use inflight_engine::{SourceName, Sourced, Stream, key_hash};
use inflight_operators::{Action, Decision, LlmConfig, LlmExt, LlmService, ReplyCheck};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// The actions of code decisions.
pub const ACTIONS: &[Action] = &[Action::FIX, Action::SUGGEST];

/// The code pipeline's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeConfig {
    /// The LLM stage (off unless enabled).
    pub llm: LlmConfig,
}

impl Default for CodeConfig {
    fn default() -> Self {
        // Replies carry the whole fixed code: leave room for it.
        CodeConfig { llm: LlmConfig { max_tokens: Some(2000), override_margin: 0.0, ..LlmConfig::default() } }
    }
}

const SYSTEM_PROMPT: &str = "You fix code inside an automated pipeline. You get code that fails with an \
error, the error as reported, the syntax errors a parser found, and what the rule-based fixer said. \
Decide {{ actions }}: FIX when you are sure your code is the smallest correct repair, SUGGEST otherwise. \
Answer only with a JSON object {\"action\", \"reason\", \"confidence\", \"code\"}: code is the whole \
fixed code (it will be parsed, never run), confidence in [0, 1], reason one short sentence.";

const USER_PROMPT: &str = "File {{ key }}.
Rules: {{ rule.action }} (confidence {{ rule.confidence }}): {{ rule.reason }}
Case: {{ evidence }}";

impl CodeConfig {
    /// Checks values a run cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        self.llm_config().validate()
    }

    /// The LLM settings with the code prompts and actions where the config gives none.
    pub fn llm_config(&self) -> LlmConfig {
        self.llm.clone().with_pipeline_defaults(SYSTEM_PROMPT, USER_PROMPT, ACTIONS)
    }

    /// The check every LLM reply of this pipeline passes.
    pub fn check() -> Arc<dyn ReplyCheck> {
        Arc::new(CodeCheck)
    }
}

/// Builds the code dataflow: each event is decided on the worker that owns its key; `source`
/// names the input in decisions.
pub fn code<'s>(
    events: Stream<'s, Sourced<CodeEvent>>,
    source: SourceName,
    llm: Option<&Arc<LlmService>>,
) -> Stream<'s, Decision> {
    let decisions =
        events.unary(Exchange::new(|s: &Sourced<CodeEvent>| key_hash(&s.event.key())), "DecideFix", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for s in data.flat_map(|batch| batch.drain(..)) {
                        session.give(decide(s.event, s.pos, s.ingest_ns, &source));
                    }
                });
            }
        });
    match llm {
        Some(service) => decisions.llm_decide(service),
        None => decisions,
    }
}
