//! The trading pipeline end to end through the `inflight` binary: indicators against TA-Lib,
//! event time and lateness, dead letters, parallelism, stdin, and bad arguments.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{BIN, Sizes, assert_same, check_sized, inflight, json_lines, ok, summary_value, two_processes};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Decisions without their wall-clock field, in file order.
fn decisions(path: &Path) -> Vec<Value> {
    json_lines(path)
        .into_iter()
        .map(|mut d| {
            d.as_object_mut().expect("object").remove("decided_at").expect("decided_at present");
            d
        })
        .collect()
}

/// Decisions without their source position, for inputs whose lines sit at other offsets.
fn without_source(decisions: Vec<Value>) -> Vec<Value> {
    decisions
        .into_iter()
        .map(|mut d| {
            d.as_object_mut().expect("object").remove("source");
            d
        })
        .collect()
}

fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut all = vec!["gen", "market", "-o", path.to_str().expect("utf8 path")];
    all.extend_from_slice(args);
    ok(inflight(&all));
    path
}

fn run_trading(input: &Path, out: &Path, dead: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "trading",
        "--input",
        input.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
        "--dead-letter",
        dead.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    ok(inflight(&args))
}

#[test]
fn bars_and_indicators_match_talib_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (dir.path().join("d.jsonl"), dir.path().join("dead.jsonl"));
    run_trading(&fixture("market-small.jsonl"), &out, &dead, &["--emit", "all"]);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("market-small.talib.json")).unwrap()).unwrap();
    let got = decisions(&out);
    for (asset, expected) in reference.as_object().unwrap() {
        let rows = expected["scored"].as_array().unwrap();
        let ours: Vec<&Value> = got.iter().filter(|d| d["key"] == *asset).collect();
        assert_eq!(ours.len(), rows.len(), "{asset}: one decision per bar from TA-Lib's first value on");
        for (d, row) in ours.iter().zip(rows) {
            let end = row["end"].as_u64().unwrap();
            assert_eq!(d["id"], format!("trading/{asset}/{end}"));
            let e = &d["evidence"];
            for (ours, theirs) in [
                (&e["bar"]["close"], &row["close"]),
                (&e["rsi"], &row["rsi"]),
                (&e["macd"]["value"], &row["macd"]),
                (&e["macd"]["signal"], &row["signal"]),
                (&e["macd"]["histogram"], &row["histogram"]),
                (&e["bollinger"]["upper"], &row["bb_upper"]),
                (&e["bollinger"]["middle"], &row["bb_middle"]),
                (&e["bollinger"]["lower"], &row["bb_lower"]),
                (&e["atr"], &row["atr"]),
                (&e["stoch"]["k"], &row["stoch_k"]),
                (&e["stoch"]["d"], &row["stoch_d"]),
            ] {
                let (o, t) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
                assert!((o - t).abs() <= 1e-9, "{asset} bar ending {end}: ours {o} vs TA-Lib {t}");
            }
        }
    }
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "", "no dead letters for a clean file");
}

#[test]
fn the_specification_example_event_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/examples/market-event.json"))
            .unwrap(),
    )
    .unwrap();
    let input = dir.path().join("one.jsonl");
    std::fs::write(&input, format!("{example}\n")).unwrap();
    let (out, dead) = (dir.path().join("d.jsonl"), dir.path().join("dead.jsonl"));
    let res = run_trading(&input, &out, &dead, &[]);
    let summary = String::from_utf8_lossy(&res.stderr);
    assert!(summary.contains("events in                 1"), "{summary}");
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "");
}

/// Reverses every block of `block` lines: disorder bounded by the time a block spans.
fn shuffle_locally(input: &Path, output: &Path, block: usize) {
    let text = std::fs::read_to_string(input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for chunk in lines.chunks(block) {
        for l in chunk.iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    std::fs::write(output, out).unwrap();
}

#[test]
fn out_of_order_within_lateness_gives_the_same_bars_as_sorted_input() {
    let dir = tempfile::tempdir().unwrap();
    // 20 events/s: a block of 10 lines spans 450 ms, within a lateness of 1 s.
    let sorted = generate(dir.path(), "sorted.jsonl", &["--events", "4000", "--assets", "3", "--rate", "20"]);
    let shuffled = dir.path().join("shuffled.jsonl");
    shuffle_locally(&sorted, &shuffled, 10);
    let mut results = Vec::new();
    for input in [&sorted, &shuffled] {
        let (out, dead) = (dir.path().join("d.jsonl"), dir.path().join("dead.jsonl"));
        run_trading(input, &out, &dead, &["--emit", "all", "--lateness", "1s"]);
        assert_eq!(std::fs::read_to_string(&dead).unwrap(), "", "nothing is late within the bound");
        results.push(without_source(decisions(&out)));
    }
    assert!(results[0].len() > 500);
    // Bars (OHLCV in the evidence) and everything derived from them are identical.
    assert_same("sorted vs shuffled", &results[0], &results[1]);
}

#[test]
fn late_event_goes_to_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let line = |asset: &str, ts: &str, price: f64| {
        format!(r#"{{"asset":"{asset}","price":{price},"timestamp":"2024-01-07T10:00:{ts}Z","volume":1}}"#)
    };
    let input = dir.path().join("late.jsonl");
    let body = [
        line("BTC/USD", "05.000", 100.0),
        line("BTC/USD", "06.000", 101.0),
        line("ETH/USD", "05.500", 50.0), // 0.5 s behind: within 1 s of lateness
        line("BTC/USD", "01.000", 99.0), // 5 s behind: late
        line("BTC/USD", "07.000", 102.0),
    ]
    .join("\n");
    std::fs::write(&input, body + "\n").unwrap();
    let (out, dead) = (dir.path().join("d.jsonl"), dir.path().join("dead.jsonl"));
    let res = run_trading(&input, &out, &dead, &["--lateness", "1s"]);
    let letters = json_lines(&dead);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "late");
    assert_eq!(letters[0]["source"]["line"], 4);
    assert!(letters[0]["raw"].as_str().unwrap().contains("10:00:01.000Z"));
    assert!(String::from_utf8_lossy(&res.stderr).contains("late                      1"));
}

#[test]
fn malformed_lines_are_dead_lettered_with_position_and_no_good_line_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let dirty = generate(
        dir.path(),
        "dirty.jsonl",
        &["--events", "6000", "--assets", "4", "--rate", "20", "--malformed", "0.05"],
    );
    let text = std::fs::read_to_string(&dirty).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (out, dead) = (dir.path().join("d.jsonl"), dir.path().join("dead.jsonl"));
    run_trading(&dirty, &out, &dead, &["--emit", "all", "-w", "2", "--chunk-size", "8192"]);
    let letters = json_lines(&dead);
    assert!(letters.len() > 150, "{} dead letters", letters.len());
    let mut bad_lines = Vec::new();
    for l in &letters {
        let n = l["source"]["line"].as_u64().unwrap() as usize;
        let offset = l["source"]["offset"].as_u64().unwrap() as usize;
        assert_eq!(l["raw"], lines[n - 1], "line number points at the raw record");
        assert!(text[offset..].starts_with(lines[n - 1]), "offset points at the raw record");
        assert!(["malformed", "invalid"].contains(&l["reason"].as_str().unwrap()), "{l}");
        assert!(!l["error"].as_str().unwrap().is_empty());
        bad_lines.push(n);
    }
    // The same file without its bad lines gives the same decisions: no good line was lost.
    bad_lines.sort_unstable();
    let clean: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| bad_lines.binary_search(&(i + 1)).is_err())
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let clean_path = dir.path().join("clean.jsonl");
    std::fs::write(&clean_path, clean).unwrap();
    let (out2, dead2) = (dir.path().join("d2.jsonl"), dir.path().join("dead2.jsonl"));
    run_trading(&clean_path, &out2, &dead2, &["--emit", "all"]);
    assert_eq!(std::fs::read_to_string(&dead2).unwrap(), "");
    assert_same("dirty vs clean", &without_source(decisions(&out)), &without_source(decisions(&out2)));
}

#[test]
fn one_four_workers_and_two_processes_give_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    // Out-of-order and malformed lines, and small chunks so every worker reads part of the file.
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "30000", "--assets", "25", "--rate", "200", "--out-of-order", "0.05", "--malformed", "0.01"],
    );
    let common = ["--lateness", "200ms", "--chunk-size", "16384"];
    // Dead letters as written: the same file at any parallelism, not only the same set.
    let run = |tag: &str, extra: &[&str]| -> (Vec<Value>, String) {
        let (out, dead) = (dir.path().join(format!("{tag}.jsonl")), dir.path().join(format!("{tag}.dead")));
        let mut args = common.to_vec();
        args.extend_from_slice(extra);
        run_trading(&input, &out, &dead, &args);
        (decisions(&out), std::fs::read_to_string(&dead).unwrap())
    };
    let one = run("w1", &["-w", "1"]);
    let four = run("w4", &["-w", "4"]);
    assert!(one.0.len() > 100, "{} decisions", one.0.len());
    assert!(one.1.contains(r#""reason":"late""#), "the input has late records");
    assert!(one.1.contains(r#""reason":"malformed""#), "the input has malformed records");
    // The output file itself is the same, line for line (only decided_at was removed).
    assert_same("-w 1 vs -w 4", &one.0, &four.0);
    assert!(one.1 == four.1, "dead letters differ between -w 1 and -w 4");

    let (out, dead) = (dir.path().join("n2.jsonl"), dir.path().join("n2.dead"));
    let mut args = vec!["run", "trading", "--input", input.to_str().unwrap()];
    args.extend_from_slice(&["--output", out.to_str().unwrap(), "--dead-letter", dead.to_str().unwrap()]);
    args.extend_from_slice(&common);
    two_processes(dir.path(), &args);
    assert_same("-w 1 vs -n 2", &one.0, &decisions(&out));
    assert!(one.1 == std::fs::read_to_string(&dead).unwrap(), "dead letters differ between -w 1 and -n 2");
}

#[test]
fn stdin_gives_the_same_decisions_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("market-small.jsonl");
    let (out, dead) = (dir.path().join("file.jsonl"), dir.path().join("dead"));
    run_trading(&input, &out, &dead, &["--emit", "all"]);
    let mut child = Command::new(BIN)
        .args(["run", "trading", "--input", "-", "--output", "-", "--emit", "all", "-w", "2"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut piped = Vec::new();
    std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut piped).unwrap();
    ok(child.wait_with_output().unwrap());
    let from_stdin = dir.path().join("stdin.jsonl");
    std::fs::write(&from_stdin, piped).unwrap();
    let rename = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .map(|mut d| {
                d["source"]["file"] = Value::from("-");
                d
            })
            .collect()
    };
    let (a, b) = (rename(decisions(&out)), rename(decisions(&from_stdin)));
    assert!(a.len() > 500);
    assert_same("file vs stdin", &a, &b);
}

#[test]
fn bad_arguments_exit_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "rsi_perod = 3\n").unwrap();
    let sample = fixture("market-small.jsonl");
    let sample = sample.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["run", "trading", "--input", "/no/such/file.jsonl"], "cannot read input"),
        (&["run", "trading", "--input", sample, "--window", "0"], "window"),
        (&["run", "trading", "--input", sample, "--window", "soon"], "duration"),
        (&["run", "trading", "--input", sample, "-w", "0"], "workers"),
        (&["run", "trading", "--input", sample, "-n", "2", "-p", "5"], "out of range"),
        (&["run", "trading", "--input", sample, "--config", bad_config.to_str().unwrap()], "rsi_perod"),
        (&["run", "trading", "--input", sample, "--output", "/proc/forbidden/x.jsonl"], "cannot write output"),
    ];
    for (args, want) in cases {
        let out = inflight(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.trim().lines().count() <= 3, "{args:?}: short error, got {err}");
    }
}

#[test]
fn example_config_file_gives_the_default_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("market-small.jsonl");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/trading.toml");
    let (a, b, dead) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("dead"));
    run_trading(&input, &a, &dead, &[]);
    run_trading(&input, &b, &dead, &["--config", config.to_str().unwrap()]);
    assert_same("defaults vs data/trading.toml", &decisions(&a), &decisions(&b));
    // A flag overrides the file: RSI above 0 sells everything.
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, "[rules]\nrsi_sell_above = 0.0\n").unwrap();
    let c = dir.path().join("c");
    run_trading(&input, &c, &dead, &["--config", strict.to_str().unwrap(), "--emit", "all"]);
    let all = decisions(&c);
    assert!(!all.is_empty() && all.iter().all(|d| d["action"] == "SELL"));
}

/// The optional rules and filters, end to end: every decision's action follows from its own
/// evidence by the documented order (the specification's SELL and BUY, then stochastic and band
/// SELLs, then BUYs; then a BUY or SELL in high volatility is held).
#[test]
fn optional_rules_and_filters_follow_from_the_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("market-small.jsonl");
    let config = dir.path().join("rules.toml");
    let rules =
        "[rules]\nstoch_sell_above = 80.0\nstoch_buy_below = 20.0\nbollinger = true\nhold_in_volatility = [\"high\"]\n";
    std::fs::write(&config, rules).unwrap();
    let (out, dead) = (dir.path().join("out"), dir.path().join("dead"));
    run_trading(&input, &out, &dead, &["--config", config.to_str().unwrap(), "--emit", "all"]);
    let all = decisions(&out);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for d in &all {
        let e = &d["evidence"];
        let num = |v: &Value| v.as_f64();
        let (rsi, histogram, close) =
            (num(&e["rsi"]).unwrap(), num(&e["macd"]["histogram"]).unwrap(), num(&e["bar"]["close"]).unwrap());
        let k = num(&e["stoch"]["k"]);
        let (upper, lower) = (num(&e["bollinger"]["upper"]), num(&e["bollinger"]["lower"]));
        let signal = if rsi > 70.0 {
            "SELL"
        } else if histogram > 10.0 && e["trend"] == "bullish" {
            "BUY"
        } else if k.is_some_and(|k| k > 80.0) || upper.is_some_and(|u| close > u) {
            "SELL"
        } else if k.is_some_and(|k| k < 20.0) || lower.is_some_and(|l| close < l) {
            "BUY"
        } else {
            "HOLD"
        };
        let held = signal != "HOLD" && e["volatility"] == "high";
        let want = if held { "HOLD" } else { signal };
        assert_eq!(d["action"], want, "{d}");
        let reason = d["reason"].as_str().unwrap();
        if held {
            assert!(reason.starts_with(&format!("{signal} held: volatility is high (")), "{reason}");
        }
        *seen.entry(format!("{want} {}", reason.split(' ').next().unwrap_or_default())).or_default() += 1;
    }
    // Each rule and the filter fired somewhere, or the test proves little.
    for kind in ["BUY stochastic", "SELL stochastic", "BUY close", "SELL close", "HOLD BUY", "HOLD SELL"] {
        assert!(seen.get(kind).is_some_and(|n| *n > 0), "{kind} never decided: {seen:?}");
    }
    // A filter word that means nothing is a config error.
    std::fs::write(&config, "[rules]\nhold_in_volatility = [\"hihg\"]\n").unwrap();
    let bad = inflight(&[
        "run",
        "trading",
        "--input",
        input.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "-o",
        "/dev/null",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("hold_in_volatility: \"hihg\" is not one of low, medium, high") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn emit_changes_only_reports_action_changes() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("market-small.jsonl");
    let (changes, all, dead) = (dir.path().join("changes"), dir.path().join("all"), dir.path().join("dead"));
    run_trading(&input, &changes, &dead, &[]);
    run_trading(&input, &all, &dead, &["--emit", "all"]);
    let (changes, all) = (decisions(&changes), decisions(&all));
    // Derive the expected changes from the full stream, independently of the operator.
    let mut last = std::collections::HashMap::new();
    let expected: Vec<Value> = all
        .into_iter()
        .filter(|d| last.insert(d["key"].to_string(), d["action"].clone()) != Some(d["action"].clone()))
        .collect();
    assert!(expected.len() > 5);
    assert_same("--emit changes", &changes, &expected);
}

/// Logs written to a pipe or a file carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint directory without its manifest: the run logs that it skips it.
    std::fs::create_dir_all(dir.path().join("ckpt-00000001704621670000")).unwrap();
    let out = Command::new(BIN)
        .args(["run", "trading", "-o", "/dev/null", "--dead-letter", "/dev/null", "--checkpoint-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("skipping an unfinished checkpoint"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes in piped logs: {err:?}");
}

/// `gen market` with its defaults gives ticks that decide something; an input shorter than the
/// indicators' warm-up says so after the summary, and so does a bench of one.
#[test]
fn default_generated_ticks_give_decisions_and_short_inputs_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let note = "no asset reached the 34 bars of 1s that RSI(14) and MACD(12,26,9) need";
    let ticks = generate(dir.path(), "default.jsonl", &[]);
    let out = ok(inflight(&["run", "trading", "--input", ticks.to_str().unwrap(), "-o", "/dev/null"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(summary_value(&err, "decisions out") > 0.0, "{err}");
    assert!(!err.contains(note), "{err}");

    // 30 s of event time per asset: four bars short of MACD's first value.
    let short = generate(dir.path(), "short.jsonl", &["--events", "3000"]);
    let out = ok(inflight(&["run", "trading", "--input", short.to_str().unwrap(), "-o", "/dev/null"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(summary_value(&err, "decisions out"), 0.0, "{err}");
    assert!(err.contains(note), "{err}");

    let bench = |events: &str| {
        let out = ok(inflight(&["bench", "trading", "--events", events, "--assets", "10", "--runs", "1"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short = bench("3000");
    assert!(short.contains("latency none (no decisions)") && short.contains(note), "{short}");
    let enough = bench("10000");
    assert!(!enough.contains(note) && enough.contains("samples)"), "{enough}");
}

/// The sizing of every decision recomputed from its own evidence (ATR) and the asset's running
/// position: risk / (atr_multiple × ATR) in whole lots, capped to [0, max_position]; what cannot be
/// sized is HOLD saying why. Short indicator periods make decisions before ATR(14) has a value.
#[test]
fn sized_decisions_follow_risk_lots_and_the_position_cap() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "ticks.jsonl", &["--events", "60000", "--assets", "8", "--seed", "7"]);
    let config = dir.path().join("sizing.toml");
    let (risk, multiple, lot, cap) = (1.0, 2.0, 0.001, 0.5);
    let text = format!(
        "rsi_period = 3\nmacd_fast = 3\nmacd_slow = 6\nmacd_signal = 3\n[rules]\nrsi_sell_above = 60.0\n\
         macd_buy_above = 0.0\n[sizing]\nrisk_per_trade = {risk}\natr_multiple = {multiple}\nlot = {lot}\n\
         max_position = {cap}\n"
    );
    std::fs::write(&config, text).unwrap();
    let (out, dead) = (dir.path().join("out"), dir.path().join("dead"));
    run_trading(&input, &out, &dead, &["--config", config.to_str().unwrap()]);
    let seen = check_sized(&decisions(&out), Sizes { risk, multiple, lot, cap });
    for case in ["traded", "capped", "ATR(14) has no value yet", "is at max_position", "there is no position to sell"] {
        assert!(seen.get(case).is_some_and(|n| *n > 0), "{case} never happened: {seen:?}");
    }

    // Bad sizing values are one-line config errors.
    for (text, want) in [
        (
            "[sizing]\nrisk_per_trade = 100.0\nmax_position = 1.0\nlot = 0.0\n",
            "sizing: lot must be a positive number, got 0",
        ),
        ("[sizing]\nrisk_per_trade = 100.0\n", "missing field `max_position`"),
        ("[sizing]\nrisk_per_trade = 1.0\nmax_position = 1.0\nrisk = 2\n", "unknown field `risk`"),
        (
            "[sizing]\nrisk_per_trade = 1.0\nmax_position = 1.0\n[sizing.assets.\"BTC/USD\"]\nmax_position = -1.0\n",
            "sizing: max_position for \"BTC/USD\" must be a positive number, got -1",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let args = ["run", "trading", "--input", input.to_str().unwrap(), "--config", config.to_str().unwrap()];
        let bad = inflight(&[&args[..], &["-o", "/dev/null"]].concat());
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && err.contains(want) && err.trim().lines().count() == 1, "{want}: {err}");
    }
}

/// `--window 1s --window 1m`: every decision's slow values are those of the latest 1 m bar closed
/// at or before its bar's end, as a run at 1 m alone computes them (its TA-Lib-checked RSI and
/// MACD); the same at -w 1, -w 4 and two processes.
#[test]
fn a_slow_timeframe_gives_the_values_of_a_run_at_the_slow_width() {
    let dir = tempfile::tempdir().unwrap();
    // 3 assets, 50 minutes of event time in order, ticks in every minute of every asset.
    let input = generate(dir.path(), "in.jsonl", &["--events", "30000", "--assets", "3", "--rate", "10"]);
    let run = |tag: &str, extra: &[&str]| -> Vec<Value> {
        let out = dir.path().join(format!("{tag}.jsonl"));
        run_trading(&input, &out, &dir.path().join(format!("{tag}.dead")), extra);
        decisions(&out)
    };
    let both = run("both", &["--window", "1s", "--window", "1m", "--emit", "all", "-w", "1"]);
    let slow = run("slow", &["--window", "1m", "--emit", "all"]);
    let at = |d: &Value| (d["key"].as_str().unwrap().to_owned(), d["event_time"].as_str().unwrap().to_owned());
    let slow_by_end: std::collections::BTreeMap<_, _> = slow.iter().map(|d| (at(d), d)).collect();
    let (mut checked, mut before_warm_up) = (0, 0);
    for d in &both {
        let e = &d["evidence"];
        let (key, end) = at(d);
        let Some(bar) = e.get("bar_1m") else {
            // Only before the first minute of the asset has closed.
            assert!(end.as_str() <= "2024-01-07T10:01:00.000Z", "no slow bar at {end}: {d}");
            continue;
        };
        let slow_end = bar["end"].as_str().unwrap().to_owned();
        assert!(slow_end <= end, "the slow bar {slow_end} closed after the decision's bar {end}");
        // The latest 1 m bar: less than a minute before the fast bar's end.
        let gap = |t: &str| inflight_time(t);
        assert!(gap(&end) - gap(&slow_end) < 60_000, "{slow_end} is not the latest slow bar at {end}");
        match slow_by_end.get(&(key.clone(), slow_end.clone())) {
            Some(s) => {
                let se = &s["evidence"];
                assert_eq!(bar["close"], se["bar"]["close"], "{key} {slow_end}");
                assert_eq!((&e["rsi_1m"], &e["macd_1m"]), (&se["rsi"], &se["macd"]), "{key} {slow_end}");
                checked += 1;
            }
            None => {
                // The 1 m run decides from its 35th bar on (MACD's warm-up): no MACD yet here.
                assert!(e.get("macd_1m").is_none(), "{key} {slow_end}: the 1 m run has no decision there");
                before_warm_up += 1;
            }
        }
    }
    assert!(checked > 2_000 && before_warm_up > 1_000, "{checked} checked, {before_warm_up} before the warm-up");
    let four = run("w4", &["--window", "1s", "--window", "1m", "--emit", "all", "-w", "4", "--chunk-size", "65536"]);
    assert_same("-w 1 vs -w 4", &both, &four);
    let out = dir.path().join("n2.jsonl");
    let mut args = vec!["run", "trading", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(&["--window", "1s", "--window", "1m", "--emit", "all", "--dead-letter", "/dev/null"]);
    two_processes(dir.path(), &args);
    assert_same("-w 1 vs -n 2", &both, &decisions(&out));
}

/// Milliseconds of an RFC 3339 time the tests write (`2024-01-07T10:MM:SS.mmmZ`).
fn inflight_time(t: &str) -> i64 {
    let (h, m, s) = (&t[11..13], &t[14..16], &t[17..23]);
    let n = |x: &str| x.parse::<f64>().unwrap();
    ((n(h) * 3600.0 + n(m) * 60.0 + n(s)) * 1000.0).round() as i64
}

/// The slow filters hold back exactly the BUYs and SELLs they must, saying why; and their bad
/// settings are one-line errors.
#[test]
fn slow_timeframe_filters_hold_back_trades_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "in.jsonl", &["--events", "30000", "--assets", "3", "--rate", "10"]);
    let config = dir.path().join("slow.toml");
    std::fs::write(&config, "[rules]\nbuy_min_slow_histogram = 0.0\nsell_min_slow_rsi = 50.0\n").unwrap();
    let run = |tag: &str, extra: &[&str]| -> Vec<Value> {
        let out = dir.path().join(format!("{tag}.jsonl"));
        let mut args = vec!["--window", "1s", "--window", "1m", "--emit", "all"];
        args.extend_from_slice(extra);
        run_trading(&input, &out, &dir.path().join("dead"), &args);
        decisions(&out)
    };
    let (free, held) = (run("free", &[]), run("held", &["--config", config.to_str().unwrap()]));
    assert_eq!(free.len(), held.len());
    let (mut kept, mut stopped) = (0, 0);
    for (f, h) in free.iter().zip(&held) {
        assert_eq!(f["id"], h["id"]);
        let e = &f["evidence"];
        let action = f["action"].as_str().unwrap();
        let (rsi, histogram) = (e["rsi_1m"].as_f64(), e["macd_1m"]["histogram"].as_f64());
        let pass = match action {
            "BUY" => histogram.map(|x| x >= 0.0),
            "SELL" => rsi.map(|x| x >= 50.0),
            _ => {
                assert_eq!(f, h, "a HOLD is not touched");
                continue;
            }
        };
        let reason = h["reason"].as_str().unwrap();
        match pass {
            Some(true) => {
                assert_eq!(f, h, "a trade the slow timeframe agrees with is kept");
                kept += 1;
            }
            Some(false) => {
                let why = if action == "BUY" { "MACD(1m) histogram" } else { "RSI(1m)" };
                assert_eq!(h["action"], "HOLD");
                assert!(reason.starts_with(&format!("{action} held: {why} ")), "{reason}");
                stopped += 1;
            }
            None => {
                assert_eq!(h["action"], "HOLD");
                assert!(reason.contains("the 1m timeframe has no RSI and MACD yet"), "{reason}");
            }
        }
    }
    assert!(kept > 0 && stopped > 0, "{kept} kept, {stopped} held back");
    // Bad settings.
    let (i, c) = (input.to_str().unwrap(), config.to_str().unwrap());
    for (args, want) in [
        (vec!["--config", c], "need a slow timeframe"),
        (vec!["--window", "1s,1m,5m"], "--window is given at most twice"),
        (vec!["--window", "2s", "--window", "3s"], "must be a multiple of the window 2s"),
    ] {
        let out = inflight(&[&["run", "trading", "--input", i, "-o", "/dev/null"][..], &args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
