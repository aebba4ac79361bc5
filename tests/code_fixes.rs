//! The code-fix rules on generated cases: valid Python and JavaScript with one error injected per
//! case (a colon removed, a closing bracket removed, a closing quote removed, a line re-indented).
//! A fix must parse and, here, give back exactly the original. The fix rate per kind is printed
//! (`cargo test --test code_fixes -- --nocapture`) and held to a floor.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::pipelines::code::synthetic::{Injected, JAVASCRIPT, PYTHON, inject};
use inflight::pipelines::code::{FixKind, Language, parses, propose};
use std::collections::BTreeMap;

#[test]
fn rules_restore_injected_errors() {
    let mut tally: BTreeMap<(&str, FixKind), (usize, usize)> = BTreeMap::new();
    for (language, name, corpus) in
        [(Language::Python, "python", PYTHON), (Language::Javascript, "javascript", JAVASCRIPT)]
    {
        for original in corpus {
            assert!(parses(language, original), "corpus code parses: {original}");
            for Injected { kind, line, code: broken } in inject(language, original) {
                let entry = tally.entry((name, kind)).or_default();
                entry.1 += 1;
                if let Some(fix) = propose(language, &broken, Some(line)) {
                    assert!(parses(language, &fix.code), "a proposed fix always parses");
                    if fix.code == *original {
                        entry.0 += 1;
                    } else if std::env::var_os("SHOW_MISSES").is_some() {
                        println!("MISS {kind:?} line {line}:\n{broken}\n--- got:\n{}", fix.code);
                    }
                } else if std::env::var_os("SHOW_MISSES").is_some() {
                    println!("NONE {kind:?} line {line}:\n{broken}");
                }
            }
        }
    }
    let mut below = Vec::new();
    for ((language, kind), (fixed, cases)) in &tally {
        let rate = *fixed as f64 / *cases as f64;
        println!("{language:>10} {kind:?}: {fixed}/{cases} restored ({:.0}%)", rate * 100.0);
        let floor = match kind {
            FixKind::MissingColon => 1.0,
            FixKind::Indentation => 0.6,
            _ => 0.8,
        };
        if rate < floor {
            below.push(format!("{language} {kind:?}: {fixed}/{cases} is below {floor}"));
        }
    }
    assert!(below.is_empty(), "{below:?}");
    assert!(tally.len() >= 6, "every kind was exercised: {:?}", tally.keys());
}

/// The real parsers agree with the languages' reference implementations (CPython's `compile()`,
/// `node --check`) on a committed corpus of tricky valid and invalid snippets
/// (`scripts/gen_syntax_corpus.py` wrote it, as the TA-Lib fixture is written).
#[test]
fn the_real_parsers_agree_with_cpython_and_node_on_the_corpus() {
    use inflight::pipelines::code::fix::Language;
    use inflight::pipelines::code::strict;
    let text = include_str!("fixtures/syntax-corpus.jsonl");
    let (mut checked, mut wrong) = (0, Vec::new());
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let language = Language::from_name(case["language"].as_str().unwrap()).unwrap();
        let code = case["code"].as_str().unwrap();
        let want = case["valid"].as_bool().unwrap();
        let got = strict::check(language, code);
        if got.is_ok() != want {
            wrong.push(format!(
                "{:?} {code:?}: {} says {want} ({}), we say {got:?}",
                language, case["reference"], case["error"]
            ));
        }
        checked += 1;
    }
    assert!(checked > 100, "{checked} snippets");
    assert!(wrong.is_empty(), "{} of {checked} disagree:\n{}", wrong.len(), wrong.join("\n"));
}
