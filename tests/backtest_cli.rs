//! `inflight backtest`: a hand-computed case through the command line, a backtest of a real run's
//! decisions whose figures add up, and its bad inputs.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{inflight, ok};
use serde_json::Value;
use std::path::Path;

fn tick(asset: &str, second: u32, price: f64) -> String {
    format!(
        r#"{{"asset":"{asset}","price":{price},"timestamp":"2024-01-07T10:00:{second:02}.000Z","volume":1.0,"market_context":{{"volatility":"low","trend":"neutral","news_sentiment":"neutral"}}}}"#
    )
}

fn decision(asset: &str, second: u32, action: &str) -> String {
    format!(
        r#"{{"id":"trading/{asset}/{second}","pipeline":"trading","key":"{asset}","action":"{action}","reason":"r","confidence":0.9,"decided_by":"rules","evidence":{{}},"event_time":"2024-01-07T10:00:{second:02}.000Z"}}"#
    )
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// By hand: a BUY at 10:00:01 fills at 100; a BUY at 10:00:01.5 (no tick there) at the next tick,
/// 130; a SELL at 10:00:03 at 120: average cost 115, realized 5; 1 unit left, marked at 90:
/// unrealized −25; fees at 10 bps: 0.1 + 0.13 + 0.12 = 0.35.
#[test]
fn a_hand_computed_case_gives_the_exact_pnl() {
    let dir = tempfile::tempdir().unwrap();
    let (ticks, decisions, out) = (dir.path().join("t"), dir.path().join("d"), dir.path().join("report.json"));
    write(
        &ticks,
        &[tick("X", 0, 99.0), tick("X", 1, 100.0), tick("X", 2, 130.0), tick("X", 3, 120.0), tick("X", 4, 90.0)],
    );
    let mut half = decision("X", 1, "BUY");
    half = half.replace("10:00:01.000Z", "10:00:01.500Z");
    write(&decisions, &[decision("X", 1, "BUY"), half, decision("X", 2, "HOLD"), decision("X", 3, "SELL")]);
    let args = ["backtest", "--input", ticks.to_str().unwrap(), "--decisions", decisions.to_str().unwrap()];
    let run = ok(inflight(&[&args[..], &["--report", out.to_str().unwrap()]].concat()));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("backtest of 3 orders from ") && stderr.contains(" on 5 ticks"), "{stderr}");
    let r = report(&out);
    let num = |v: &Value| v.as_f64().unwrap();
    let x = &r["assets"]["X"];
    assert_eq!((num(&x["trades"]), num(&x["position"])), (3.0, 1.0));
    for (got, want) in
        [(&x["realized"], 5.0), (&x["unrealized"], -25.0), (&x["fees"], 0.35), (&r["total"]["pnl"], -20.35)]
    {
        assert!((num(got) - want).abs() < 1e-9, "{got} vs {want}: {r}");
    }
    // Equity: 0, −0.1 after the first buy, 29.77 at 130 after the second (the peak), 9.65 after
    // the sale at 120, −20.35 at 90: the drawdown is 50.12.
    assert!((num(&r["total"]["max_drawdown"]) - 50.12).abs() < 1e-9, "{r}");
    assert_eq!(num(&r["total"]["hit_rate"]), 1.0);
    // Fees off: the P&L is the trades' alone.
    ok(inflight(&[&args[..], &["--fee-bps", "0", "--report", out.to_str().unwrap()]].concat()));
    assert!((num(&report(&out)["total"]["pnl"]) + 20.0).abs() < 1e-9);
}

/// A real run's decisions: every figure of the report agrees with the others.
#[test]
fn a_runs_decisions_backtest_into_figures_that_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/market-small.jsonl");
    let (decisions, out) = (dir.path().join("d.jsonl"), dir.path().join("r.json"));
    ok(inflight(&[
        "run",
        "trading",
        "--input",
        input.to_str().unwrap(),
        "-o",
        decisions.to_str().unwrap(),
        "--dead-letter",
        "/dev/null",
        "--emit",
        "all",
    ]));
    let text = std::fs::read_to_string(&decisions).unwrap();
    let orders = text.lines().filter(|l| l.contains(r#""action":"BUY""#) || l.contains(r#""action":"SELL""#)).count();
    assert!(orders > 10, "{orders} BUYs and SELLs");
    ok(inflight(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--decisions",
        decisions.to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
    ]));
    let r = report(&out);
    let num = |v: &Value| v.as_f64().unwrap();
    let t = &r["total"];
    let assets = r["assets"].as_object().unwrap();
    let sum = |field: &str| assets.values().map(|a| num(&a[field])).sum::<f64>();
    assert_eq!(num(&t["trades"]) + num(&t["unfilled"]), orders as f64, "every order filled or counted unfilled");
    for field in ["trades", "realized", "unrealized", "fees"] {
        assert!((sum(field) - num(&t[field])).abs() < 1e-6, "{field}: assets {} vs total {}", sum(field), t[field]);
    }
    assert!((num(&t["pnl"]) - (num(&t["realized"]) + num(&t["unrealized"]) - num(&t["fees"]))).abs() < 1e-6);
    assert!(num(&t["max_drawdown"]) >= 0.0 && (0.0..=1.0).contains(&num(&t["hit_rate"])));
    assert!(assets.values().all(|a| num(&a["position"]) >= 0.0), "never short");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ticks, decisions) = (dir.path().join("t"), dir.path().join("d"));
    write(&ticks, &[tick("X", 0, 99.0)]);
    write(&decisions, &[decision("X", 0, "BUY"), "not json".into()]);
    let (t, d) = (ticks.to_str().unwrap(), decisions.to_str().unwrap());
    for (args, want) in [
        (vec!["backtest", "--input", t, "--decisions", d], "line 2: not a decision"),
        (vec!["backtest", "--input", t, "--decisions", "/nope"], "/nope: cannot read"),
        (vec!["backtest", "--input", t, "--decisions", t, "--fee-bps=-1"], "--fee-bps -1 must be"),
        (vec!["backtest", "--input", t, "--decisions", t, "--size", "0"], "--size 0 must be"),
        (
            vec!["backtest", "--input", t, "--decisions", t, "--report", "/nope/r.json"],
            "directory /nope does not exist",
        ),
    ] {
        let out = inflight(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}

/// Runs `run trading --emit all` on the bundled sample (its decisions trade); returns the sample
/// and the decisions.
fn decisions_of_a_run(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/market-sample.jsonl");
    let decisions = dir.join("rules.jsonl");
    let (i, d) = (input.to_str().unwrap(), decisions.to_str().unwrap());
    ok(inflight(&["run", "trading", "--input", i, "-o", d, "--dead-letter", "/dev/null", "--emit", "all"]));
    (input, decisions)
}

/// Without --decisions the pipeline is run first: the same figures as running it by hand.
#[test]
fn without_decisions_the_pipelines_own_decisions_are_backtested() {
    let dir = tempfile::tempdir().unwrap();
    let (input, decisions) = decisions_of_a_run(dir.path());
    let (by_hand, itself) = (dir.path().join("by-hand.json"), dir.path().join("itself.json"));
    let i = input.to_str().unwrap();
    ok(inflight(&[
        "backtest",
        "--input",
        i,
        "--decisions",
        decisions.to_str().unwrap(),
        "--report",
        by_hand.to_str().unwrap(),
    ]));
    let run = ok(inflight(&["backtest", "--input", i, "--report", itself.to_str().unwrap(), "--", "--emit", "all"]));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("trading finished") && stderr.contains("from pipeline (rules)"), "{stderr}");
    assert!(report(&by_hand)["total"]["trades"].as_u64().unwrap() > 0);
    assert_eq!(report(&by_hand), report(&itself));
}

/// --compare: one column per file, each the file's own backtest; the report lists both.
#[test]
fn compare_backtests_two_decision_files_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let (input, rules) = decisions_of_a_run(dir.path());
    // The second set: the same decisions without their SELLs.
    let buys = dir.path().join("buys.jsonl");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&buys, text.lines().filter(|l| !l.contains(r#""action":"SELL""#)).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let i = input.to_str().unwrap();
    let single = |d: &Path, name: &str| {
        let out = dir.path().join(name);
        ok(inflight(&[
            "backtest",
            "--input",
            i,
            "--decisions",
            d.to_str().unwrap(),
            "--report",
            out.to_str().unwrap(),
        ]));
        report(&out)
    };
    let (a, b) = (single(&rules, "a.json"), single(&buys, "b.json"));
    assert_ne!(a["total"], b["total"], "the two sets differ");
    let both = dir.path().join("both.json");
    let (r, s) = (rules.to_str().unwrap(), buys.to_str().unwrap());
    let run = ok(inflight(&["backtest", "--input", i, "--compare", r, s, "--report", both.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let header = stderr.lines().find(|l| !l.starts_with("inflight:") && l.contains("rules.jsonl")).unwrap_or_default();
    assert!(header.contains("buys.jsonl"), "one table, both columns: {stderr}");
    let pnl_row = stderr.lines().find(|l| l.trim_start().starts_with("P&L")).unwrap();
    let cells: Vec<&str> = pnl_row.split_whitespace().skip(1).collect();
    let cell = |r: &Value| format!("{:.2}", r["total"]["pnl"].as_f64().unwrap());
    assert_eq!(cells, [cell(&a), cell(&b)], "{pnl_row}");
    let both = report(&both);
    for (k, single) in [(0, &a), (1, &b)] {
        let each = &both["compare"][k];
        assert_eq!((&each["total"], &each["assets"]), (&single["total"], &single["assets"]));
    }
    assert_eq!(both["compare"][0]["decisions"], r);
}

/// The chart (.html and .svg): the equity curve drawn by plotters, thinned but with its extremes.
#[test]
fn the_chart_draws_the_equity_curve() {
    let dir = tempfile::tempdir().unwrap();
    let (input, decisions) = decisions_of_a_run(dir.path());
    let (i, d) = (input.to_str().unwrap(), decisions.to_str().unwrap());
    for name in ["equity.html", "equity.svg"] {
        let chart = dir.path().join(name);
        ok(inflight(&["backtest", "--input", i, "--decisions", d, "--chart", chart.to_str().unwrap()]));
        let text = std::fs::read_to_string(&chart).unwrap();
        if name.ends_with(".html") {
            assert!(text.starts_with("<!doctype html>") && text.contains("max drawdown"), "a page with the table");
        } else {
            assert!(text.starts_with("<svg"), "{}", &text[..40]);
        }
        // The curve: plotters' polyline in the first series colour, with more than a few points.
        let curve = text.split("<polyline").find(|p| p.contains(r##"stroke="#1F77B4""##)).expect("the curve is drawn");
        let points = curve.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split_whitespace().count();
        assert!((10..=2_000).contains(&points), "{points} points");
    }
}

/// --serve: the chart page on `/` and the report on `/report.json`.
#[test]
fn serve_shows_the_chart_and_the_report() {
    use std::io::{BufRead, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (input, decisions) = decisions_of_a_run(dir.path());
    let written = dir.path().join("r.json");
    let mut child = std::process::Command::new(cli::BIN)
        .args(["backtest", "--input", input.to_str().unwrap(), "--decisions", decisions.to_str().unwrap()])
        .args(["--report", written.to_str().unwrap(), "--serve", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the server said where it listens");
        if let Some(rest) = line.split("chart on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let page = get("/");
    let json = get("/report.json");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<svg"), "{}", &page[..page.len().min(200)]);
    let body = json.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), report(&written));
}

#[test]
fn bad_chart_compare_and_replay_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ticks, decisions) = (dir.path().join("t"), dir.path().join("d"));
    write(&ticks, &[tick("X", 0, 99.0)]);
    write(&decisions, &[decision("X", 0, "BUY")]);
    let (t, d) = (ticks.to_str().unwrap(), decisions.to_str().unwrap());
    for (args, want) in [
        (vec!["backtest", "--input", t, "--decisions", d, "--chart", "e.png"], "written as .html or .svg"),
        (vec!["backtest", "--input", t, "--decisions", d, "--chart", "/nope/e.html"], "directory /nope does not exist"),
        (vec!["backtest", "--input", t, "--decisions", d, "--", "--emit", "all"], "nothing is run"),
        (vec!["backtest", "--input", t, "--llm-replay", "/nope/calls.jsonl"], "/nope/calls.jsonl is not a file"),
        (vec!["backtest", "--input", t, "--compare", d], "2 values required"),
        (vec!["backtest", "--input", t, "--decisions", d, "--compare", d, d], "cannot be used with"),
        (
            vec!["backtest", "--input", t, "--decisions", d, "--serve", "256.0.0.1:1"],
            "--serve 256.0.0.1:1: cannot listen",
        ),
        (vec!["backtest", "--input", t, "--", "--no-such-flag"], "the pipeline run failed"),
    ] {
        let out = inflight(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(
            err.trim().lines().last().unwrap().contains(want) || err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
