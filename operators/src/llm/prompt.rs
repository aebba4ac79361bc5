//! What goes to the model and what may come back: prompt templates (minijinja, from the pipeline's
//! config), the JSON schema of a reply (schemars, from [`LlmVerdict`]) and the validation of a
//! reply against it. The model's text is data: parsed, range-checked and size-limited, never run.

use super::LlmConfig;
use super::client::Message;
use crate::decision::{Action, Decision};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest reason a reply may give (characters). The reply schema says so (`maxLength`), which
/// grammar-constrained servers (llama.cpp, vLLM, Ollama) enforce while generating: a small model
/// that repeats itself inside `reason` stops there instead of running into `max_tokens`. Longer
/// reasons from endpoints that ignore the bound are shortened.
pub const MAX_REASON: usize = 240;
/// Replies used when the schema bounds no size (a pipeline field without `maxLength`).
pub const DEFAULT_MAX_TOKENS: u32 = 300;
/// Longest reply looked at (bytes).
pub const MAX_REPLY: usize = 16 * 1024;

/// A reply as the model must give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmVerdict {
    /// One of the allowed actions.
    #[schemars(with = "String")]
    pub action: Action,
    /// One short sentence.
    pub reason: String,
    /// How sure, in [0, 1].
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    /// A proposed fix, whole code (only pipelines whose [`ReplyCheck`] asks for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub code: Option<String>,
    /// The model that gave it (set by the stage, not by the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub model: Option<String>,
}

/// A pipeline's own check of a reply, beyond the shape every reply has (the code pipeline parses
/// the proposed code). It runs on the LLM runtime for every reply, so it must be quick.
pub trait ReplyCheck: Send + Sync + std::fmt::Debug + 'static {
    /// Extra reply fields the model must fill in: name and JSON schema (`code` is the one known).
    fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
    /// Checks `verdict` for the case whose evidence is `evidence` (compact JSON). An error goes
    /// back to the model once; on that `last` attempt the check may instead accept the reply
    /// changed (e.g. downgraded to a suggestion).
    fn check(&self, evidence: &str, verdict: &mut LlmVerdict, last: bool) -> Result<(), String>;
    /// Carries an accepted verdict into the decision beyond action, reason and confidence.
    fn apply(&self, _decision: &mut Decision, _verdict: &LlmVerdict) {}
}

/// The rendered prompt templates of a run.
#[derive(Debug)]
pub struct Prompts {
    env: minijinja::Environment<'static>,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct RuleView<'a> {
    action: Action,
    reason: &'a str,
    confidence: f64,
}

impl Prompts {
    /// Compiles the config's templates; a syntax error names the template.
    pub fn new(config: &LlmConfig) -> Result<Self, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template_owned("system", config.system_template().to_owned())
            .map_err(|e| format!("llm.system_prompt: {e}"))?;
        env.add_template_owned("user", config.user_template().to_owned())
            .map_err(|e| format!("llm.user_prompt: {e}"))?;
        let actions = config.actions.iter().map(|a| a.as_str().to_owned()).collect();
        let prompts = Prompts { env, actions };
        // Render once on a sample, so a template that names a missing field fails at start.
        prompts.render(&Decision::sample()).map(|_| prompts)
    }

    /// The messages for `decision` (the rules' decision, with its evidence).
    pub fn render(&self, decision: &Decision) -> Result<Vec<Message>, String> {
        let evidence = minijinja::Value::from_safe_string(decision.evidence.as_str().to_owned());
        let context = minijinja::context! {
            pipeline => decision.pipeline,
            key => decision.key.as_str(),
            event_time => decision.event_time,
            rule => minijinja::Value::from_serialize(RuleView {
                action: decision.action,
                reason: &decision.reason,
                confidence: decision.confidence,
            }),
            evidence => evidence,
            actions => self.actions.join(", "),
        };
        let render = |name: &str| {
            self.env.get_template(name).and_then(|t| t.render(&context)).map_err(|e| format!("llm.{name}_prompt: {e}"))
        };
        Ok(vec![Message::new("system", render("system")?), Message::new("user", render("user")?)])
    }
}

/// `response_format` asking for a [`LlmVerdict`] whose action is one of `actions`, with the
/// `extra` fields a pipeline's check wants (every field required, as strict mode demands). Every
/// string is bounded (`enum` or `maxLength`) where the fields allow; `bounded: false` leaves out
/// `maxLength`, for endpoints whose strict mode refuses it.
pub fn response_format(
    actions: &[Action],
    extra: &[(&'static str, serde_json::Value)],
    bounded: bool,
) -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(LlmVerdict)).unwrap_or_default();
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        props.insert("action".into(), serde_json::json!({ "type": "string", "enum": names }));
        if let Some(reason) = props.get_mut("reason").and_then(|r| r.as_object_mut()) {
            reason.insert("maxLength".into(), MAX_REASON.into());
        }
        for (name, field) in extra {
            props.insert((*name).into(), field.clone());
        }
        if !bounded {
            for prop in props.values_mut().filter_map(|p| p.as_object_mut()) {
                prop.remove("maxLength");
            }
        }
    }
    if let Some(required) = schema.get_mut("required").and_then(|r| r.as_array_mut()) {
        required.extend(extra.iter().map(|(name, _)| serde_json::Value::from(*name)));
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    serde_json::json!({
        "type": "json_schema",
        "json_schema": { "name": "decision", "strict": true, "schema": schema },
    })
}

/// The most tokens a reply that keeps to `format`'s schema can take, or None when a string in it
/// is unbounded. A token is at least one character of ASCII text; a quarter more leaves room for
/// escapes and characters that take several tokens.
pub fn reply_tokens(format: &serde_json::Value) -> Option<u32> {
    let props = format.pointer("/json_schema/schema/properties")?.as_object()?;
    let mut chars = 2usize; // { }
    for (name, prop) in props {
        chars += name.len() + 6; // "name": , and spaces
        chars += match prop.get("type").and_then(|t| t.as_str()) {
            Some("string") => {
                let longest = match (prop.get("enum").and_then(|e| e.as_array()), prop.get("maxLength")) {
                    (Some(values), _) => values.iter().filter_map(|v| v.as_str()).map(str::len).max().unwrap_or(0),
                    (None, Some(max)) => usize::try_from(max.as_u64()?).ok()?,
                    (None, None) => return None,
                };
                longest + 2
            }
            // A float in full: sign, 17 digits, point, exponent.
            Some("number" | "integer") => 24,
            Some("boolean") => 5,
            _ => return None,
        };
    }
    u32::try_from(chars + chars / 4).ok()
}

/// Parses and checks a reply: JSON for the schema (a ```json fence around it is tolerated), an
/// allowed action, a confidence in [0, 1], a non-empty reason (shortened to [`MAX_REASON`]).
pub fn validate(content: &str, actions: &[Action]) -> Result<LlmVerdict, String> {
    if content.len() > MAX_REPLY {
        return Err(format!("reply is {} bytes, more than {MAX_REPLY}", content.len()));
    }
    let text = unfence(content);
    // The action is read as text and matched against the allowed ones, so a model that invents
    // names does not grow the process's set of actions.
    let raw: Reply = serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(120).collect();
        format!("not a JSON object {{action, reason, confidence}}: {e} (reply starts {start:?})")
    })?;
    let Some(&action) = actions.iter().find(|a| a.as_str() == raw.action) else {
        let shown: String = raw.action.chars().take(40).collect();
        return Err(format!("action {shown:?} is not one of {actions:?}"));
    };
    let mut verdict =
        LlmVerdict { action, reason: raw.reason, confidence: raw.confidence, code: raw.code, model: None };
    if !(0.0..=1.0).contains(&verdict.confidence) {
        return Err(format!("confidence {} is outside [0, 1]", verdict.confidence));
    }
    if verdict.reason.trim().is_empty() {
        return Err("reason is empty".into());
    }
    if verdict.reason.chars().count() > MAX_REASON {
        verdict.reason = verdict.reason.chars().take(MAX_REASON).collect();
    }
    Ok(verdict)
}

/// The messages of a repair attempt: the conversation so far, the bad reply, and what was wrong;
/// `extra` names the pipeline's own reply fields.
pub fn repair(messages: &[Message], reply: &str, error: &str, extra: &[&str]) -> Vec<Message> {
    let mut next = messages.to_vec();
    next.push(Message::new("assistant", reply.chars().take(MAX_REPLY).collect::<String>()));
    let fields: Vec<String> =
        ["action", "reason", "confidence"].iter().chain(extra).map(|f| format!("\"{f}\"")).collect();
    next.push(Message::new(
        "user",
        format!("That reply is not valid: {error}. Answer again with only the JSON object {{{}}}.", fields.join(", ")),
    ));
    next
}

fn unfence(content: &str) -> &str {
    let t = content.trim();
    let Some(rest) = t.strip_prefix("```") else { return t };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// A reply before its action is matched.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    action: String,
    reason: String,
    confidence: f64,
    #[serde(default)]
    code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Action; 3] = [Action::BUY, Action::SELL, Action::HOLD];

    #[test]
    fn valid_replies_pass_and_fences_are_tolerated() {
        let v = validate(r#"{"action":"BUY","reason":"momentum","confidence":0.8}"#, &ALL).unwrap();
        assert_eq!((v.action, v.confidence), (Action::BUY, 0.8));
        let fenced = "```json\n{\"action\":\"SELL\",\"reason\":\"r\",\"confidence\":1}\n```";
        assert_eq!(validate(fenced, &ALL).unwrap().action, Action::SELL);
    }

    #[test]
    fn bad_replies_say_what_is_wrong() {
        let err = |s: &str| validate(s, &ALL).unwrap_err();
        assert!(err("I think you should buy").contains("not a JSON object"));
        assert!(err(r#"{"action":"YOLO","reason":"r","confidence":0.5}"#).contains(r#"action "YOLO" is not one of"#));
        assert!(err(r#"{"action":"BUY","reason":"r","confidence":1.5}"#).contains("outside [0, 1]"));
        assert!(err(r#"{"action":"BUY","reason":"r","confidence":-0.1}"#).contains("outside [0, 1]"));
        assert!(err(r#"{"action":"BUY","reason":" ","confidence":0.5}"#).contains("reason is empty"));
        assert!(err(r#"{"action":"BUY","reason":"r","confidence":0.5,"extra":1}"#).contains("not a JSON object"));
        assert!(err(r#"{"action":"BUY","confidence":0.5}"#).contains("not a JSON object"));
        assert!(
            validate(r#"{"action":"SELL","reason":"r","confidence":0.5}"#, &[Action::BUY])
                .unwrap_err()
                .contains("not one of")
        );
        assert!(err(&"x".repeat(MAX_REPLY + 1)).contains("more than"));
    }

    #[test]
    fn long_reasons_are_shortened() {
        let long = format!(r#"{{"action":"HOLD","reason":"{}","confidence":0.5}}"#, "a".repeat(2000));
        assert_eq!(validate(&long, &ALL).unwrap().reason.len(), MAX_REASON);
    }

    #[test]
    fn schema_lists_only_allowed_actions_and_requires_every_field() {
        let f = response_format(&[Action::BUY, Action::HOLD], &[], true);
        let schema = &f["json_schema"]["schema"];
        assert_eq!(schema["properties"]["action"]["enum"], serde_json::json!(["BUY", "HOLD"]));
        assert_eq!(schema["additionalProperties"], false);
        let mut required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        required.sort_unstable();
        assert_eq!(required, ["action", "confidence", "reason"]);
        assert_eq!(schema["properties"]["confidence"]["maximum"], 1.0);
        assert_eq!(schema["properties"]["reason"]["maxLength"], MAX_REASON);
        let plain = response_format(&[Action::BUY], &[], false);
        assert!(plain["json_schema"]["schema"]["properties"]["reason"].get("maxLength").is_none());
    }

    #[test]
    fn reply_tokens_cover_the_longest_reply_the_schema_allows() {
        let f = response_format(&ALL, &[], true);
        let tokens = reply_tokens(&f).unwrap() as usize;
        // The longest valid reply, one character a token: the bound must hold it.
        let longest = serde_json::json!({
            "action": "HOLD", "reason": "r".repeat(MAX_REASON), "confidence": -0.12345678901234567,
        })
        .to_string();
        assert!(tokens >= longest.len(), "{tokens} < {}", longest.len());
        assert!(tokens < 2 * longest.len(), "{tokens} is far above {}", longest.len());
        // A pipeline field with no bound: nothing to derive.
        let open = response_format(&ALL, &[("code", serde_json::json!({ "type": "string" }))], true);
        assert_eq!(reply_tokens(&open), None);
        let bounded = [("code", serde_json::json!({ "type": "string", "maxLength": 1000 }))];
        assert!(reply_tokens(&response_format(&ALL, &bounded, true)).unwrap() as usize > tokens + 1000);
    }

    #[test]
    fn templates_render_the_evidence_verbatim_and_bad_templates_fail_at_start() {
        let prompts = Prompts::new(&LlmConfig { actions: ALL.to_vec(), ..LlmConfig::default() }).unwrap();
        let d = Decision::sample();
        let messages = prompts.render(&d).unwrap();
        assert_eq!(messages[0].role, "system");
        assert!(messages[0].content.contains("BUY, SELL, HOLD"));
        assert!(messages[1].content.contains(d.evidence.as_str()), "{}", messages[1].content);
        let broken = LlmConfig { user_prompt: Some("{{ nope".into()), ..LlmConfig::default() };
        assert!(Prompts::new(&broken).unwrap_err().starts_with("llm.user_prompt"));
        let missing = LlmConfig { user_prompt: Some("{{ no_such_field }}".into()), ..LlmConfig::default() };
        assert!(Prompts::new(&missing).is_err());
    }
}
