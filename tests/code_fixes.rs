//! The code-fix rules on generated cases: valid Python and JavaScript with one error injected per
//! case (a colon removed, a closing bracket removed, a closing quote removed, a line re-indented).
//! A fix must parse and, here, give back exactly the original. The fix rate per kind is printed
//! (`cargo test --test code_fixes -- --nocapture`) and held to a floor.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::pipelines::code::calibration;
use inflight::pipelines::code::synthetic::{CodeGenConfig, Injected, JAVASCRIPT, PYTHON, generate, inject};
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

/// Rule fixes measured per bucket on `events` generated cases of `seed`.
fn measured(seed: u64, events: u64) -> calibration::Tally {
    let config = CodeGenConfig { events, seed, ..CodeGenConfig::default() };
    let mut text = Vec::new();
    generate(&config, &mut text).unwrap();
    let mut tally = calibration::Tally::default();
    for line in String::from_utf8(text).unwrap().lines() {
        assert!(tally.measure(line), "a generated line carries its truth: {line}");
    }
    tally
}

/// Prints the calibration table and its Rust for `calibration::TABLE` (run after changing a fixer).
#[test]
#[ignore = "regenerates the calibration table: run it by name"]
fn calibrate() {
    let rows = measured(1, 6_000).rows();
    println!("{}", calibration::table(&rows));
    println!("{}", calibration::rust(&rows));
}

/// Confidence means something: on cases the table was not measured on (another seed), each kind's
/// FIXes are exact at least as often as the confidence they were given says, and so is every
/// bucket with enough fixes to tell.
#[test]
fn fixes_are_exact_at_least_as_often_as_their_confidence_says() {
    let tally = measured(7, 4_000);
    let rows = tally.rows();
    println!("{}", calibration::table(&rows));
    let mut wrong = Vec::new();
    for k in tally.by_kind() {
        println!(
            "{:>10} {:<18} {:>5} FIX {:>5.1}% exact at mean confidence {:.2}; {} left as SUGGEST",
            calibration::name(k.language),
            format!("{:?}", k.kind),
            k.fixes,
            k.precision() * 100.0,
            k.confidence(),
            k.suggested
        );
        if k.precision() < k.confidence() {
            wrong.push(format!("{:?} {:?}: {:.3} < {:.3}", k.language, k.kind, k.precision(), k.confidence()));
        }
    }
    for r in rows.iter().filter(|r| r.fixes >= 30) {
        if r.precision() < r.confidence() {
            wrong.push(format!("{:?}: {:.3} < {:.2}", r.bucket, r.precision(), r.confidence()));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(tally.by_kind().len() >= 6, "both languages, every kind");
}

/// The generator's originals are valid code for the languages' reference implementations too:
/// CPython's `compile()` and `node --check`, each where installed (the check is skipped, and says
/// so, on a machine without them; the product never needs them).
#[test]
fn generated_originals_pass_cpython_and_node_where_installed() {
    let config = CodeGenConfig { events: 3_000, javascript: 0.4, ..CodeGenConfig::default() };
    let mut text = Vec::new();
    generate(&config, &mut text).unwrap();
    let mut originals: BTreeMap<String, &str> = BTreeMap::new();
    for line in String::from_utf8(text).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let language = if v["language"] == "javascript" { "js" } else { "py" };
        originals.insert(v["injected"]["original"].as_str().unwrap().to_owned(), language);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files: BTreeMap<&str, Vec<std::path::PathBuf>> = BTreeMap::new();
    for (n, (code, language)) in originals.iter().enumerate() {
        let path = dir.path().join(format!("original_{n}.{language}"));
        std::fs::write(&path, code).unwrap();
        files.entry(language).or_default().push(path);
    }
    assert!(files.get("py").is_some_and(|f| f.len() > 50) && files.get("js").is_some_and(|f| f.len() > 50));
    let installed =
        |tool: &str| std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    let mut failed = Vec::new();
    if installed("python3") {
        let script = "import sys\nfor f in sys.argv[1:]:\n    try:\n        compile(open(f).read(), f, 'exec')\n    except SyntaxError as e:\n        print(f, e)\n";
        let out = std::process::Command::new("python3").arg("-c").arg(script).args(&files["py"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        failed.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned));
        println!("CPython compiled {} generated Python originals", files["py"].len());
    } else {
        println!("python3 is not installed: CPython's check skipped");
    }
    if installed("node") {
        for f in &files["js"] {
            let out = std::process::Command::new("node").arg("--check").arg(f).output().unwrap();
            if !out.status.success() {
                failed.push(format!("{}: {}", f.display(), String::from_utf8_lossy(&out.stderr)));
            }
        }
        println!("node --check passed {} generated JavaScript originals", files["js"].len() - failed.len());
    } else {
        println!("node is not installed: node's check skipped");
    }
    assert!(failed.is_empty(), "{} originals rejected:\n{}", failed.len(), failed.join("\n"));
}
