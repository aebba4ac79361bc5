//! What a user sees when a command line is wrong: help behind `-h` everywhere, exit status 2 and
//! one line for bad flags and values (naming the environment variable when the value came from
//! one), exit status 1 and one line for bad paths.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{BIN, inflight};
use std::process::Command;

/// Runs the binary with `vars` set and returns (exit code, stderr).
fn run_with_env(args: &[&str], vars: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("inflight runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).trim().to_owned())
}

#[test]
fn dash_h_is_help_for_every_command() {
    for args in [
        &["-h"][..],
        &["run", "trading", "-h"],
        &["run", "flight", "-h"],
        &["run", "code", "-h"],
        &["bench", "trading", "-h"],
        &["gen", "market", "-h"],
        &["produce", "-h"],
        &["consume", "-h"],
    ] {
        let out = inflight(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage: inflight"), "{args:?}: {help}");
    }
    // The hostfile is the long flag only.
    let help = String::from_utf8_lossy(&inflight(&["run", "trading", "--help"]).stdout).into_owned();
    assert!(help.contains("--hostfile <HOSTFILE>") && !help.contains("-h, --hostfile"), "{help}");
}

#[test]
fn bad_values_exit_2_with_one_line_naming_the_flag_or_variable() {
    type Vars<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&[&str], Vars, &str); 5] = [
        (&["run", "trading", "--window", "abc"], &[], "'--window <WINDOW>'"),
        (&["run", "trading", "--from", "yesterday"], &[], "\"yesterday\" is not earliest, latest, committed"),
        (&["run", "flight", "--mct", "45"], &[], "\"45\" needs a unit: 45ms, 45s or 45m"),
        (&["run", "trading"], &[("INFLIGHT_WINDOW", "abc")], "from the environment variable INFLIGHT_WINDOW"),
        (&["run", "trading", "--no-such-flag"], &[], "unexpected argument '--no-such-flag'"),
    ];
    for (args, vars, want) in cases {
        let (code, err) = run_with_env(args, vars);
        assert_eq!(code, 2, "{args:?} {vars:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains(want), "{args:?} {vars:?}: {err}");
    }
    // Given on the command line, the flag is blamed even when the variable is set too.
    let (_, err) = run_with_env(&["run", "trading", "--window", "abc"], &[("INFLIGHT_WINDOW", "1s")]);
    assert!(!err.contains("INFLIGHT_WINDOW"), "{err}");
}

#[test]
fn bad_paths_exit_1_with_one_line_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let schedule = missing.join("schedule.jsonl");
    let (code, err) = run_with_env(&["run", "flight", "--schedule", schedule.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        format!("inflight: error: {}: cannot read: No such file or directory (os error 2)", schedule.display())
    );

    let out = missing.join("out.jsonl");
    for flag in ["-o", "--dead-letter"] {
        let (code, err) = run_with_env(&["run", "trading", flag, out.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{flag}: {err}");
        assert!(err.contains(&format!("directory {} does not exist", missing.display())), "{flag}: {err}");
        assert_eq!(err.lines().count(), 1, "{flag}: {err}");
        assert!(!missing.exists(), "{flag}: the directory was created");
    }
}

#[test]
fn duplicate_reference_rows_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bookings = dir.path().join("bookings.jsonl");
    let row = |id: &str| format!(r#"{{"booking_id":"{id}","passengers":2,"legs":["AC1234","AC5678"]}}"#);
    std::fs::write(&bookings, format!("{}\n{}\n\n{}\n", row("B1"), row("B2"), row("B1"))).unwrap();
    let (code, err) = run_with_env(&["run", "flight", "--bookings", bookings.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err, format!("inflight: error: {}:4: booking_id \"B1\" again (first on line 1)", bookings.display()));
}

#[test]
fn settings_that_would_silently_not_apply_are_refused() {
    // Another pipeline's variable (the README's .env.example sets INFLIGHT_WINDOW for trading).
    let (code, err) = run_with_env(&["run", "flight", "-o", "/dev/null"], &[("INFLIGHT_WINDOW", "1s")]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        "inflight: error: INFLIGHT_WINDOW is set, but `run flight` has no flag for it (`run trading` reads it as --window): unset it"
    );
    let (code, err) = run_with_env(&["run", "trading", "-o", "/dev/null"], &[("INFLIGHT_WINDOW", "1s")]);
    assert_eq!(code, 0, "{err}");
    // LLM settings with the stage off.
    for flag in [&["--llm-min-confidence", "0.9"][..], &["--llm-model", "m"], &["--llm-stream"]] {
        let args = [&["run", "trading", "-o", "/dev/null"][..], flag].concat();
        let (code, err) = run_with_env(&args, &[]);
        assert_eq!(code, 1, "{flag:?}: {err}");
        assert_eq!(
            err,
            format!(
                "inflight: error: {} sets up the LLM stage, which is off: add --llm (or enabled = true in [llm])",
                flag[0]
            )
        );
    }
}

/// The specification's example events ship in `data/examples/` (a clone has no `../shared`): equal
/// to the specification's files where those are at hand, and each pipeline runs its one-line form.
#[test]
fn the_specification_examples_ship_in_data_and_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (kind, pipeline) in [("market", "trading"), ("flight", "flight"), ("code", "code")] {
        let shipped = root.join(format!("data/examples/{kind}-event.json"));
        let text = std::fs::read_to_string(&shipped).unwrap();
        let spec = root.join(format!("../shared/examples/{kind}-event.json"));
        if let Ok(original) = std::fs::read_to_string(&spec) {
            assert_eq!(text, original, "{} differs from the specification's", shipped.display());
        }
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let line = root.join(format!("data/examples/{kind}-event.jsonl"));
        let one_line = std::fs::read_to_string(&line).unwrap();
        assert_eq!(one_line.lines().count(), 1, "{}", line.display());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&one_line).unwrap(), value, "{}", line.display());
        let out = cli::ok(inflight(&["run", pipeline, "-i", line.to_str().unwrap(), "-o", "/dev/null"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(cli::summary_value(&err, "events in"), 1.0, "{pipeline}: {err}");
        assert_eq!(cli::summary_value(&err, "dead-lettered"), 0.0, "{pipeline}: {err}");
    }
}

/// Every `--flag` a help page mentions in its text is an option of that command (help that names
/// `--schedule` for `--schedule-out` sends users to a flag that does not exist).
#[test]
fn help_pages_mention_only_their_own_flags() {
    let pages: [&[&str]; 9] = [
        &["run", "trading"],
        &["run", "flight"],
        &["run", "code"],
        &["bench"],
        &["bench", "trading"],
        &["gen"],
        &["produce"],
        &["consume"],
        &[],
    ];
    for page in pages {
        let out = inflight(&[page, &["--help"]].concat());
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        // Options: the lines that start (after spaces) with a flag.
        let options: Vec<&str> = help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
            .flat_map(|l| l.split([',', ' ']).filter(|w| w.starts_with("--")))
            .collect();
        let mut mentioned: Vec<&str> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase())
            .collect();
        mentioned.sort_unstable();
        mentioned.dedup();
        for flag in mentioned {
            assert!(options.contains(&flag), "`{page:?} --help` mentions {flag}, which it does not have:\n{help}");
        }
    }
}
