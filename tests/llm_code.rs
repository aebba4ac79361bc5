//! The code pipeline's LLM path through the `inflight` binary, against the scripted
//! OpenAI-compatible test server: what the rules cannot fix goes to the model, whose code is parsed
//! before it counts; code that does not parse goes back once with the parser's findings, and if it
//! still does not parse it leaves as a low-confidence SUGGEST, never as FIX.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;
#[path = "support/llm_server.rs"]
mod llm_server;

use cli::{inflight, json_lines, ok};
use llm_server::{LlmServer, Reply, Request};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Code no rule repairs (two errors on one line), marked with the case's name.
fn broken(case: &str) -> String {
    format!("# case {case}\ndef f(:\n    return [1, 2\n")
}

const GOOD: &str = "# fixed\ndef f():\n    return [1, 2]\n";
const BAD: &str = "# still broken\ndef f(:\n    return [1, 2]\n";

fn reply(action: &str, code: Option<&str>) -> Reply {
    let mut v = json!({ "action": action, "reason": "model says so", "confidence": 0.9 });
    if let Some(code) = code {
        v["code"] = Value::from(code);
    }
    Reply::Content { content: v.to_string(), delay: Duration::ZERO }
}

/// Which case a request is about (from its first user message) and whether it is the repair.
fn case_of(req: &Request) -> (String, bool) {
    let messages = req.body["messages"].as_array().unwrap();
    let first = messages[1]["content"].as_str().unwrap();
    let case = ["good", "repaired", "hopeless", "codeless"].into_iter().find(|c| first.contains(&format!("case {c}")));
    (case.unwrap_or("?").to_owned(), messages.len() > 2)
}

#[test]
fn llm_fixes_are_parsed_retried_once_and_never_fix_when_they_do_not_parse() {
    let server = LlmServer::start(Arc::new(|req: &Request| match case_of(req) {
        (c, _) if c == "good" => reply("FIX", Some(GOOD)),
        (c, false) if c == "repaired" => reply("FIX", Some(BAD)),
        (c, true) if c == "repaired" => reply("FIX", Some(GOOD)),
        (c, _) if c == "hopeless" => reply("FIX", Some(BAD)),
        (c, false) if c == "codeless" => reply("FIX", None),
        _ => reply("SUGGEST", Some(GOOD)),
    }));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/examples/code-event.json")).unwrap();
    let mut lines = vec![serde_json::from_str::<Value>(&spec).unwrap().to_string()];
    for case in ["good", "repaired", "hopeless", "codeless"] {
        let event = json!({
            "code": broken(case),
            "error_context": { "error_type": "SyntaxError", "error_message": "invalid syntax", "error_line": 2 },
            "file": format!("{case}.py"),
        });
        lines.push(event.to_string());
    }
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out.jsonl");
    let run = ok(inflight(&[
        "run",
        "code",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--llm",
        "--llm-base-url",
        &server.base_url(),
    ]));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let decisions = json_lines(&out);
    let by_key = |k: &str| decisions.iter().find(|d| d["key"] == k).unwrap();

    // The rules' sure fix of the specification's example never reaches the model.
    let spec = by_key("-");
    assert_eq!((spec["action"].as_str(), spec["decided_by"].as_str()), (Some("FIX"), Some("rules")));

    let good = by_key("good.py");
    assert_eq!((good["action"].as_str(), good["decided_by"].as_str()), (Some("FIX"), Some("llm")));
    assert_eq!((good["evidence"]["validated"].as_bool(), good["evidence"]["fixed"].as_str()), (Some(true), Some(GOOD)));
    assert!(good["evidence"]["diff"].as_str().unwrap().contains("+def f():"), "{}", good["evidence"]["diff"]);

    let repaired = by_key("repaired.py");
    assert_eq!((repaired["action"].as_str(), repaired["evidence"]["validated"].as_bool()), (Some("FIX"), Some(true)));

    let hopeless = by_key("hopeless.py");
    assert_eq!((hopeless["action"].as_str(), hopeless["decided_by"].as_str()), (Some("SUGGEST"), Some("llm")));
    assert!(hopeless["confidence"].as_f64().unwrap() <= 0.3);
    assert_eq!(hopeless["evidence"]["validated"], false);
    assert!(hopeless["reason"].as_str().unwrap().contains("does not parse"), "{}", hopeless["reason"]);

    let codeless = by_key("codeless.py");
    assert_eq!((codeless["action"].as_str(), codeless["evidence"]["fixed"].as_str()), (Some("SUGGEST"), Some(GOOD)));

    // One request per sure case, two for each case sent back; the repair names the parser's finding.
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 1 + 2 + 2 + 2, "{stderr}");
    let repairs: Vec<String> = bodies
        .iter()
        .filter(|b| b["messages"].as_array().unwrap().len() > 2)
        .map(|b| b["messages"][3]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(repairs.iter().filter(|r| r.contains("does not parse (line")).count(), 2, "{repairs:?}");
    assert!(repairs.iter().any(|r| r.contains("has no `code`")), "{repairs:?}");
    assert!(repairs.iter().all(|r| r.contains("\"code\"")), "the repair asks for the code field: {repairs:?}");
    let schema = &bodies[0]["response_format"]["json_schema"]["schema"];
    assert!(schema["required"].as_array().unwrap().contains(&Value::from("code")), "{schema}");
    assert_eq!(schema["properties"]["action"]["enum"], json!(["FIX", "SUGGEST"]));
}
