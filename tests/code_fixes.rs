//! The code-fix rules on generated cases: valid Python and JavaScript with one error injected per
//! case (a colon removed, a closing bracket removed, a closing quote removed, a line re-indented).
//! A fix must parse and, here, give back exactly the original. The fix rate per kind is printed
//! (`cargo test --test code_fixes -- --nocapture`) and held to a floor.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::pipelines::code::{FixKind, Language, parses, propose};
use std::collections::BTreeMap;

const PYTHON: &[&str] = &[
    "def calculate_total(prices):\n    total = 0\n    for price in prices:\n        total += price\n    return total\n",
    "class Account:\n    def __init__(self, owner, balance=0):\n        self.owner = owner\n        self.balance = balance\n\n    def deposit(self, amount):\n        if amount <= 0:\n            raise ValueError(\"amount must be positive\")\n        self.balance += amount\n        return self.balance\n",
    "import json\n\ndef load(path):\n    with open(path) as f:\n        data = json.load(f)\n    items = [x for x in data if x.get('active')]\n    while len(items) > 10:\n        items.pop()\n    return {'count': len(items), 'items': items}\n",
    "def classify(n):\n    if n < 0:\n        return 'negative'\n    elif n == 0:\n        return 'zero'\n    else:\n        return 'positive'\n\nprint(classify(3))\n",
    "def safe_div(a, b):\n    try:\n        return a / b\n    except ZeroDivisionError:\n        print(\"division by zero\")\n        return None\n    finally:\n        print('done')\n",
];

const JAVASCRIPT: &[&str] = &[
    "function total(prices) {\n  let sum = 0;\n  for (const p of prices) {\n    sum += p;\n  }\n  return sum;\n}\nconsole.log(total([1, 2, 3]));\n",
    "const user = { name: \"Ada\", langs: ['en', 'fr'] };\nfunction greet(u) {\n  return `hello ${u.name}`;\n}\nconsole.log(greet(user));\n",
];

/// Every single-error variant of `code` with the kind it should be fixed as and its line.
fn inject(language: Language, code: &str) -> Vec<(FixKind, usize, String)> {
    let lines: Vec<&str> = code.split('\n').collect();
    let mut cases = Vec::new();
    let mut with = |kind, i: usize, line: String| {
        let mut broken = lines.clone();
        broken[i] = &line;
        let text = broken.join("\n");
        if !parses(language, &text) {
            cases.push((kind, i + 1, text));
        }
    };
    for (i, line) in lines.iter().enumerate() {
        if language == Language::Python && line.trim_end().ends_with(':') {
            with(FixKind::MissingColon, i, line.trim_end().trim_end_matches(':').to_owned());
        }
        if let Some(at) = line.rfind([')', ']', '}']) {
            with(FixKind::UnbalancedBracket, i, format!("{}{}", &line[..at], &line[at + 1..]));
        }
        if let Some(at) = line.rfind(['"', '\'']) {
            with(FixKind::UnclosedString, i, format!("{}{}", &line[..at], &line[at + 1..]));
        }
        if language == Language::Python && !line.trim().is_empty() {
            with(FixKind::Indentation, i, format!("  {line}"));
            if line.starts_with("    ") {
                with(FixKind::Indentation, i, format!("  {}", line.trim_start()));
            }
        }
    }
    cases
}

#[test]
fn rules_restore_injected_errors() {
    let mut tally: BTreeMap<(&str, FixKind), (usize, usize)> = BTreeMap::new();
    for (language, name, corpus) in
        [(Language::Python, "python", PYTHON), (Language::Javascript, "javascript", JAVASCRIPT)]
    {
        for original in corpus {
            assert!(parses(language, original), "corpus code parses: {original}");
            for (kind, line, broken) in inject(language, original) {
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
