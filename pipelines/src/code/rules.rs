//! The code-fix decision: the rule fixers first (a fix always parses, so it is a validated FIX),
//! else a low-confidence SUGGEST with the parser's findings that the LLM stage picks up. The LLM's
//! proposal passes through [`CodeCheck`]: code that does not parse goes back once with the parser's
//! findings, and if it still does not parse it leaves as SUGGEST with low confidence — never FIX.

use super::calibration::{self, Bucket, FIX_FLOOR, Row};
use super::event::{CodeEvent, MAX_CODE};
use super::fix::{Finding, FixKind, Language, Placement, analyse, diff, findings, parses};
use super::strict;
use inflight_engine::time::{format_rfc3339, wall_millis};
use inflight_engine::{Position, SourceName, SourceRef};
use inflight_operators::{Action, DecidedBy, Decision, Evidence, LlmVerdict, ReplyCheck};
use serde::{Deserialize, Serialize};

/// Confidence of the rules when nothing they know applies (below any sensible LLM gate).
const UNSURE: f64 = 0.2;
/// Highest confidence of an LLM proposal that does not parse.
const UNPARSED: f64 = 0.3;

/// The evidence of a code decision (also what the LLM sees and what its check reads back).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeEvidence {
    /// The language parsed.
    pub language: Language,
    /// The file, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The error as reported.
    pub error_type: String,
    /// Its message.
    pub error_message: String,
    /// Its line.
    pub error_line: Option<usize>,
    /// Syntax errors the parser found in the code as given.
    pub findings: Vec<Finding>,
    /// What the fix repaired (rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_kind: Option<FixKind>,
    /// Where the fix put the change (rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_placement: Option<Placement>,
    /// The line the fix changed (rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_line: Option<usize>,
    /// Fixes of this bucket (language, kind, placement, on the reported line or not) measured on
    /// generated cases, which the confidence comes from (rules only; see [`calibration`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Row>,
    /// Unified diff from the code to the fix (empty without a fix).
    pub diff: String,
    /// The fixed code parses without errors, for tree-sitter and for the language's own grammar.
    pub validated: bool,
    /// The parser that accepted the fixed code (see [`super::strict`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated_by: Option<String>,
    /// The whole fixed code (none without a fix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The code as given.
    pub code: String,
}

/// The rules' decision for one event read at `pos` of `source`.
pub fn decide(event: CodeEvent, pos: Position, ingest_ns: u64, source: &SourceName) -> Decision {
    let key = event.key();
    let name = event.file.clone().unwrap_or_else(|| "code".to_owned());
    let error_line = event.error_context.error_line;
    let hint = FixKind::hinted_by(&event.error_context.error_type, &event.error_context.error_message);
    let (found, fix) = analyse(event.lang, &event.code, error_line, hint);
    let bucket = fix.as_ref().map(|f| Bucket::of(event.lang, f, error_line));
    let calibrated = bucket.map(|b| calibration::confidence(&b));
    let (action, confidence, reason) = match (&fix, calibrated) {
        (Some(f), Some((confidence, measured))) => {
            let record = match measured {
                Some(r) => format!("{} of {} such fixes were exact on generated cases", r.exact, r.fixes),
                None => "no such fix was measured on generated cases".to_owned(),
            };
            let what = format!(
                "{} on line {} ({}): {} accepts the fixed code",
                describe(f.kind),
                f.line,
                f.placement.describe(),
                strict::validator(event.lang)
            );
            if confidence >= FIX_FLOOR {
                (Action::FIX, confidence, format!("{what}; {record}"))
            } else {
                (Action::SUGGEST, confidence, format!("{what}, but only {record}: review it"))
            }
        }
        (_, _) if found.is_empty() => {
            let reason = match strict::check(event.lang, &event.code) {
                Ok(()) => format!("the code parses; {} needs more than a syntax fix", event.error_context.error_type),
                // tree-sitter recovered where the language does not: no finding to fix from.
                Err(e) => format!("{} rejects the code ({e}); no rule fixes it", strict::validator(event.lang)),
            };
            (Action::SUGGEST, UNSURE, reason)
        }
        (_, _) => {
            let first = &found[0];
            let reason = format!("no rule fixes the syntax error at line {} ({})", first.line, first.problem);
            (Action::SUGGEST, UNSURE, reason)
        }
    };
    let evidence = CodeEvidence {
        language: event.lang,
        file: event.file.clone(),
        error_type: event.error_context.error_type.clone(),
        error_message: event.error_context.error_message.clone(),
        error_line,
        findings: found,
        fix_kind: fix.as_ref().map(|f| f.kind),
        fix_placement: fix.as_ref().map(|f| f.placement),
        fix_line: fix.as_ref().map(|f| f.line),
        measured: calibrated.and_then(|(_, row)| row.copied()),
        diff: fix.as_ref().map(|f| diff(&name, &event.code, &f.code)).unwrap_or_default(),
        validated: fix.is_some(),
        validated_by: fix.as_ref().map(|_| strict::validator(event.lang).to_owned()),
        fixed: fix.map(|f| f.code),
        code: event.code,
    };
    let time = event.timestamp.unwrap_or(0);
    Decision {
        id: format!("code/{key}/{time}/{}:{}", pos.partition, pos.offset),
        pipeline: "code".into(),
        key,
        action,
        reason,
        confidence,
        suggested_size: None,
        position_after: None,
        decided_by: DecidedBy::Rules,
        model: None,
        evidence: Evidence::of(&evidence),
        event_time: format_rfc3339(time),
        decided_at: format_rfc3339(wall_millis()),
        source: SourceRef::new(source, pos),
        ingest_ns,
        event_time_ms: time,
    }
}

fn describe(kind: FixKind) -> &'static str {
    match kind {
        FixKind::MissingColon => "added the missing `:`",
        FixKind::UnbalancedBracket => "balanced the brackets",
        FixKind::UnclosedString => "closed the string",
        FixKind::Indentation => "fixed the indentation",
    }
}

/// The code pipeline's check of LLM replies: the reply must carry `code`, at most [`MAX_CODE`]
/// bytes, that parses in the event's language. The code is only parsed, never run.
#[derive(Debug, Default)]
pub struct CodeCheck;

impl ReplyCheck for CodeCheck {
    fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "code",
            serde_json::json!({ "type": "string", "description": "the whole fixed code", "maxLength": MAX_CODE }),
        )]
    }

    fn check(&self, evidence: &str, verdict: &mut LlmVerdict, last: bool) -> Result<(), String> {
        let case: CodeEvidence =
            serde_json::from_str(evidence).map_err(|e| format!("the case's evidence is unreadable: {e}"))?;
        let Some(code) = verdict.code.as_deref() else {
            return Err("the reply has no `code` (the whole fixed code)".into());
        };
        if code.len() > MAX_CODE {
            return Err(format!("`code` is {} bytes, more than {MAX_CODE}", code.len()));
        }
        if parses(case.language, code) {
            return Ok(());
        }
        let mut problems: Vec<String> =
            findings(case.language, code).iter().take(3).map(|f| format!("line {}: {}", f.line, f.problem)).collect();
        if let (true, Err(e)) = (problems.is_empty(), strict::check(case.language, code)) {
            problems.push(format!("{}: {e}", strict::validator(case.language)));
        }
        let problem = format!("the proposed code does not parse ({})", problems.join("; "));
        if !last {
            return Err(problem);
        }
        verdict.action = Action::SUGGEST;
        verdict.confidence = verdict.confidence.min(UNPARSED);
        verdict.reason = format!("{} — but {problem}", verdict.reason);
        Ok(())
    }

    fn apply(&self, decision: &mut Decision, verdict: &LlmVerdict) {
        let Ok(mut case) = serde_json::from_str::<CodeEvidence>(decision.evidence.as_str()) else { return };
        let Some(code) = verdict.code.as_deref() else { return };
        let name = case.file.clone().unwrap_or_else(|| "code".to_owned());
        case.diff = diff(&name, &case.code, code);
        case.validated = parses(case.language, code);
        case.validated_by = case.validated.then(|| strict::validator(case.language).to_owned());
        case.fixed = Some(code.to_owned());
        case.fix_kind = None;
        case.fix_placement = None;
        case.fix_line = None;
        case.measured = None;
        // The check lets only parsing code through as FIX; this holds even for a replayed log.
        if !case.validated && decision.action == Action::FIX {
            decision.action = Action::SUGGEST;
            decision.confidence = decision.confidence.min(UNPARSED);
        }
        decision.evidence = Evidence::of(&case);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use inflight_engine::Event;

    fn event(code: &str, line: Option<usize>) -> CodeEvent {
        let json = serde_json::json!({
            "code": code,
            "error_context": { "error_type": "SyntaxError", "error_message": "invalid syntax", "error_line": line },
            "file": "calc.py",
        });
        CodeEvent::parse(json.to_string().as_bytes()).unwrap()
    }

    fn source() -> SourceName {
        SourceName::File("t.jsonl".into())
    }

    #[test]
    fn the_specification_example_gets_a_validated_one_line_fix() {
        let e = CodeEvent::parse(crate::spec_example("code-event.json").as_bytes()).unwrap();
        let d = decide(e, Position::default(), 0, &source());
        assert_eq!(d.action, Action::FIX);
        assert!(d.confidence >= 0.9, "{}", d.confidence);
        let ev: CodeEvidence = serde_json::from_str(d.evidence.as_str()).unwrap();
        assert!(ev.validated);
        assert!(ev.diff.contains("-    for price in prices\n+    for price in prices:\n"), "{}", ev.diff);
        assert_eq!(ev.diff.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).count(), 1);
    }

    #[test]
    fn unfixable_code_is_an_unsure_suggestion() {
        let d = decide(event("def f(:\n    return [1, 2\n", Some(1)), Position::default(), 0, &source());
        assert_eq!((d.action, d.confidence), (Action::SUGGEST, UNSURE));
        let ev: CodeEvidence = serde_json::from_str(d.evidence.as_str()).unwrap();
        assert!(!ev.validated && ev.diff.is_empty() && !ev.findings.is_empty());
    }

    #[test]
    fn the_check_sends_unparsable_code_back_once_then_downgrades_it() {
        let d = decide(event("if x\n    y = 1\n", Some(1)), Position::default(), 0, &source());
        let evidence = d.evidence.as_str();
        let verdict = |code: Option<&str>| LlmVerdict {
            action: Action::FIX,
            reason: "r".into(),
            confidence: 0.9,
            code: code.map(str::to_owned),
            model: None,
        };
        let mut good = verdict(Some("if x:\n    y = 1\n"));
        assert!(CodeCheck.check(evidence, &mut good, false).is_ok());
        let mut missing = verdict(None);
        assert!(CodeCheck.check(evidence, &mut missing, false).unwrap_err().contains("no `code`"));
        let mut bad = verdict(Some("if x\n    y = 1\n"));
        assert!(CodeCheck.check(evidence, &mut bad, false).unwrap_err().contains("does not parse"));
        assert!(CodeCheck.check(evidence, &mut bad, true).is_ok());
        assert_eq!((bad.action, bad.confidence), (Action::SUGGEST, UNPARSED));

        let mut decision = d.clone();
        decision.action = Action::FIX;
        CodeCheck.apply(&mut decision, &verdict(Some("if x\n    y = 2\n")));
        assert_eq!(decision.action, Action::SUGGEST, "never FIX with code that does not parse");
        let mut decision = d;
        CodeCheck.apply(&mut decision, &good);
        let ev: CodeEvidence = serde_json::from_str(decision.evidence.as_str()).unwrap();
        assert!(ev.validated && ev.diff.contains("+if x:"));
    }
}
