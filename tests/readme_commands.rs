//! The README's command lines work as written: every `inflight …` (or `cargo run --release -- …`,
//! or an example's `cargo run --release --example NAME -- …`) line of its `sh` blocks names only
//! flags its command's `--help` lists, and each one that needs no broker, no LLM endpoint, no
//! second process and no Ctrl-C runs and exits 0, in order, in one scratch directory that has the
//! repository's `data/` (so a file one line generates is there for the next).

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::Command;

/// One command line of the README, continuation lines joined, its comment removed.
#[derive(Debug)]
struct Line {
    /// As written (for messages).
    text: String,
    /// Environment assignments before the command (`KAFKA_BROKERS=… inflight …`).
    env: Vec<(String, String)>,
    /// The program: `inflight` or an example's name.
    program: String,
    /// Its arguments, optional `[…]` parts included (for the flag check).
    args: Vec<String>,
    /// Its arguments without the optional parts (to run).
    required: Vec<String>,
    /// The shell text to run (pipes kept), with the program's path put in.
    shell: String,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The lines of the README's `sh` blocks, continuations joined.
fn shell_lines(text: &str) -> Vec<String> {
    let (mut lines, mut in_block, mut pending) = (Vec::new(), false, String::new());
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block && (line == "```sh" || line == "```bash");
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// Parses one shell line into a command of ours, None for other programs (cargo test, docker…).
fn parse(text: &str) -> Option<Line> {
    let code = match text.find(" #") {
        Some(i) => &text[..i],
        None => text,
    };
    // The command after a pipe's producer (`cat x | inflight …`).
    let command = code.rsplit('|').next()?.trim();
    let mut words: Vec<&str> = command.split_whitespace().collect();
    let mut env = Vec::new();
    while let Some((k, v)) = words.first().and_then(|w| w.split_once('=')).filter(|(k, _)| !k.starts_with('-')) {
        env.push((k.to_owned(), v.to_owned()));
        words.remove(0);
    }
    let (program, rest) = match words.as_slice() {
        ["inflight", rest @ ..] | ["cargo", "run", "--release", "--", rest @ ..] => {
            ("inflight".to_owned(), rest.to_vec())
        }
        ["cargo", "run", "--release", "--example", name, "--", rest @ ..] => ((*name).to_owned(), rest.to_vec()),
        _ => return None,
    };
    let args: Vec<String> = rest.iter().map(|w| w.trim_matches(['[', ']']).to_owned()).collect();
    let mut required = Vec::new();
    let mut optional = false;
    for w in &rest {
        optional |= w.starts_with('[');
        if !optional {
            required.push((*w).to_owned());
        }
        optional &= !w.ends_with(']');
    }
    let binary = if program == "inflight" { PathBuf::from(cli::BIN) } else { cli::example(&program) };
    let producer = code.rsplit_once('|').map(|(p, _)| format!("{} | ", p.trim())).unwrap_or_default();
    let shell = format!("{producer}{} {}", binary.display(), required.join(" "));
    Some(Line { text: text.to_owned(), env, program, args, required, shell })
}

/// Why a line is not run (None: it is run).
fn not_run(line: &Line) -> Option<&'static str> {
    let has = |flag: &str| line.required.iter().any(|a| a == flag);
    let kafka = ["--input-topic", "--output-topic", "--dead-letter-topic", "--updates-topic", "--brokers"];
    if line.env.iter().any(|(k, _)| k == "KAFKA_BROKERS")
        || kafka.iter().any(|f| has(f))
        || matches!(line.required.first().map(String::as_str), Some("produce" | "consume"))
    {
        return Some("needs a Kafka broker");
    }
    // A replay needs the log of a run with an endpoint.
    if has("--llm") || has("--llm-replay") {
        return Some("needs an LLM endpoint");
    }
    if has("--serve") {
        return Some("serves until Ctrl-C");
    }
    if has("-n") || line.text.trim_end().ends_with('&') {
        return Some("needs a second process");
    }
    None
}

/// The words of `args` before the first flag: the subcommand path (`run trading`, `gen market`).
fn subcommand(args: &[String]) -> Vec<String> {
    args.iter().take_while(|a| !a.starts_with('-')).cloned().collect()
}

/// Whether `help` lists `flag` (`--name`, or `-x` as `-x,` / `-x <…>`).
fn lists(help: &str, flag: &str) -> bool {
    let flag = flag.split('=').next().unwrap_or(flag);
    help.match_indices(flag).any(|(i, _)| {
        let next = help[i + flag.len()..].chars().next();
        let before = help[..i].chars().last();
        before.is_none_or(|c| c == ' ' || c == '[') && next.is_none_or(|c| !(c.is_alphanumeric() || c == '-'))
    })
}

#[test]
fn every_readme_command_names_real_flags_and_the_runnable_ones_exit_0() {
    let lines: Vec<Line> = shell_lines(&readme()).iter().filter_map(|l| parse(l)).collect();
    assert!(lines.len() > 20, "the README's commands were found: {lines:?}");
    let scratch = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(root.join("data"), scratch.path().join("data")).unwrap();
    let mut ran = 0;
    for line in &lines {
        // Flags: each is in the help of its command.
        let binary = if line.program == "inflight" { PathBuf::from(cli::BIN) } else { cli::example(&line.program) };
        let path = subcommand(&line.args);
        let help = Command::new(&binary).args(&path).arg("--help").output().unwrap();
        assert!(help.status.success(), "{}: `{path:?} --help` fails", line.text);
        let help = String::from_utf8_lossy(&help.stdout);
        // Flags after a bare `--` are another command's (`backtest … -- --config …` passes them to
        // the pipeline run): the line's run checks them.
        let own = line.args.iter().take_while(|a| *a != "--");
        for flag in own.filter(|a| a.starts_with('-') && a.len() > 1) {
            assert!(lists(&help, flag), "README: `{}`: {flag} is not in `{path:?} --help`", line.text);
        }
        if let Some(why) = not_run(line) {
            eprintln!("not run ({why}): {}", line.text);
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", &format!("{} > /dev/null", line.shell)])
            .current_dir(scratch.path())
            .envs(line.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README: `{}` failed ({}): {}",
            line.text,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 10, "{ran} commands ran");
}

/// The test's own reading of lines and flags.
#[test]
fn lines_flags_and_optional_parts_are_read_as_a_shell_would() {
    let l = parse("cat t.jsonl | inflight run trading --input - [--from committed] -w 2  # a comment").unwrap();
    assert_eq!(l.args, ["run", "trading", "--input", "-", "--from", "committed", "-w", "2"]);
    assert_eq!(l.required, ["run", "trading", "--input", "-", "-w", "2"]);
    assert!(l.shell.starts_with("cat t.jsonl | /") && l.shell.ends_with(" run trading --input - -w 2"), "{}", l.shell);
    assert!(parse("cargo test --workspace --release").is_none());
    let k = parse("KAFKA_BROKERS=127.0.0.1:9092 inflight bench kafka --events 10").unwrap();
    assert_eq!(not_run(&k), Some("needs a Kafka broker"));
    assert!(lists("  -w, --workers <WORKERS>", "-w") && lists("  -w, --workers <WORKERS>", "--workers"));
    assert!(!lists("  --workers-count <N>", "--workers") && !lists("  --hostfile <H>", "-h"));
}
