//! The flight pipeline end to end through the `inflight` binary: rebooking against the schedule,
//! the minimum connection time, live schedule changes, dead letters, parallelism and bad arguments.
//! Expected decisions are worked out by hand from the sample schedule (data/flight-*.jsonl).

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{assert_refused, assert_same, decisions_by_id, inflight, json_lines, ok, sorted_strings, two_processes};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name).display().to_string()
}

/// Runs `run flight` over `input` with the sample reference data; returns decisions and dead letters.
fn run_flight(dir: &Path, tag: &str, input: &str, extra: &[&str]) -> (Vec<Value>, Vec<Value>, String) {
    let (out, dead) = (dir.join(format!("{tag}.jsonl")), dir.join(format!("{tag}.dead")));
    let mut args = vec!["run", "flight", "--input", input, "--output", out.to_str().unwrap()];
    args.extend_from_slice(&["--dead-letter", dead.to_str().unwrap()]);
    let (schedule, bookings) = (data("flight-schedule.jsonl"), data("flight-bookings.jsonl"));
    if !extra.contains(&"--schedule") {
        args.extend_from_slice(&["--schedule", &schedule, "--bookings", &bookings]);
    }
    args.extend_from_slice(extra);
    let run = ok(inflight(&args));
    (decisions_by_id(&out), json_lines(&dead), String::from_utf8_lossy(&run.stderr).into_owned())
}

/// (booking, event time, action, alternative) of each decision, sorted.
fn summary(decisions: &[Value]) -> Vec<(String, String, String, String)> {
    let mut s: Vec<_> = decisions
        .iter()
        .map(|d| {
            let alt = d["evidence"]["alternative"]["flight_id"].as_str().unwrap_or("-");
            let s = |v: &Value| v.as_str().unwrap().to_owned();
            (s(&d["key"]), s(&d["event_time"])[11..16].to_owned(), s(&d["action"]), alt.to_owned())
        })
        .collect();
    s.sort();
    s
}

fn row(booking: &str, at: &str, action: &str, alt: &str) -> (String, String, String, String) {
    (booking.into(), at.into(), action.into(), alt.into())
}

#[test]
fn the_sample_gives_the_decisions_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let (decisions, dead, stderr) = run_flight(dir.path(), "sample", &data("flight-sample.jsonl"), &[]);
    let want = vec![
        // 10:00, the specification's event: delayed, length unknown → hold seats on the next flight.
        row("B100", "10:00", "PROTECT", "AC403"),
        // 10:20, 20 min late: arrives 12:05 + 45 min MCT = 12:50, after AC401 leaves at 12:45.
        row("B100", "10:20", "REBOOK", "AC403"),
        // 10:40, new departure 11:00 (30 min late); AC407 was added to the schedule at 10:30.
        row("B100", "10:40", "REBOOK", "AC407"),
        // BA94 has seats but BA96, the only later flight to LHR, has none.
        row("B101", "10:00", "ESCALATE", "-"),
        // 20 min late, BA94 still connects: the earlier ESCALATE is cleared.
        row("B101", "10:20", "NONE", "-"),
        row("B101", "11:05", "ESCALATE", "-"),
        // Three legs: AC403 lands 17:55, too late for AC850 at 18:30 (+45 min), and so does AC405.
        row("B103", "10:00", "ESCALATE", "-"),
        row("B103", "10:20", "ESCALATE", "-"),
        // AC407 (added at 10:30, 6 seats) lands 15:55: B100 takes 2, B103 the next 2.
        row("B103", "10:40", "REBOOK", "AC407"),
        // AC1236 cancelled at 11:00: AC1234, delayed to 11:00, has not left and reaches AC403.
        row("B104", "11:00", "REBOOK", "AC1234"),
    ];
    assert_eq!(summary(&decisions), want, "{stderr}");
    let by = |key: &str, at: &str| {
        decisions.iter().find(|d| d["key"] == key && d["event_time"].as_str().unwrap()[11..16] == *at).unwrap()
    };
    // One broken leg with an alternative that holds: sure. Several broken legs: unsure.
    assert_eq!(by("B100", "10:20")["confidence"], 0.9);
    assert_eq!(by("B103", "10:40")["confidence"], 0.9);
    assert!(by("B103", "10:20")["confidence"].as_f64().unwrap() < 0.7);
    assert!(by("B103", "10:20")["reason"].as_str().unwrap().contains("reaches AC850 in time"));
    assert_eq!(by("B103", "10:40")["evidence"]["seats"]["free_before"], 4, "B100 took 2 of AC407's 6");
    assert_eq!(by("B104", "11:00")["evidence"]["alternative"]["departure"], "2024-01-07T11:00:00.000Z");
    assert_eq!(by("B100", "10:20")["evidence"]["ready_at"], "2024-01-07T12:50:00.000Z");
    assert_eq!(by("B100", "10:20")["id"], "flight/B100/AC1234/1704622800000");
    assert!(decisions.iter().all(|d| d["decided_by"] == "rules" && d["pipeline"] == "flight"));
    // The unknown status is dead-lettered with its position.
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0]["reason"].as_str(), dead[0]["source"]["line"].as_u64()), (Some("invalid"), Some(9)));
    assert!(dead[0]["error"].as_str().unwrap().contains("LATE"), "{}", dead[0]);
    let counted = |what: &[&str]| stderr.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == what);
    assert!(counted(&["events", "in", "10"]) && counted(&["decisions", "out", "10"]), "{stderr}");
}

#[test]
fn a_delay_inside_the_mct_yields_nothing_and_none_with_emit_all() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // AC1236 lands 14:15 + 10 min + 45 min = 15:10, before AC403 leaves at 15:30.
    std::fs::write(
        &input,
        r#"{"flight_id":"AC1236","status":"DELAYED","timestamp":"2024-01-07T10:25:00Z","delay_minutes":10}
{"flight_id":"AC1236","status":"DELAYED","timestamp":"2024-01-07T10:26:00Z","delay_minutes":30}
{"flight_id":"AC1236","status":"DELAYED","timestamp":"2024-01-07T10:27:00Z","delay_minutes":31}
"#,
    )
    .unwrap();
    let (decisions, ..) = run_flight(dir.path(), "changes", input.to_str().unwrap(), &[]);
    // 30 min: 15:30 exactly, still inside; 31 min breaks it (4 passengers: AC405 has 20 seats).
    assert_eq!(summary(&decisions), vec![row("B104", "10:27", "REBOOK", "AC405")]);
    let (all, ..) = run_flight(dir.path(), "all", input.to_str().unwrap(), &["--emit", "all"]);
    let actions: Vec<_> = summary(&all).into_iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(
        actions,
        vec![("10:25".into(), "NONE".into()), ("10:26".into(), "NONE".into()), ("10:27".into(), "REBOOK".into())]
    );
    // A longer MCT breaks the connection the 45-minute default kept.
    let (long_mct, ..) = run_flight(dir.path(), "mct", input.to_str().unwrap(), &["--mct", "70m"]);
    assert_eq!(summary(&long_mct).len(), 3);
}

#[test]
fn a_schedule_update_changes_the_next_decision_for_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let event = |t: &str| {
        format!(r#"{{"flight_id":"AC1234","status":"DELAYED","timestamp":"2024-01-07T{t}:00Z","delay_minutes":30}}"#)
    };
    let add = r#"{"op":"upsert","timestamp":"2024-01-07T10:30:00Z","flight":{"flight_id":"AC407","origin":"YYZ","destination":"YVR","departure":"2024-01-07T13:30:00Z","arrival":"2024-01-07T15:55:00Z","seats_free":6}}"#;
    let cancel = r#"{"op":"delete","timestamp":"2024-01-07T10:50:00Z","flight_id":"AC407"}"#;
    let lines = [event("10:20"), add.to_owned(), event("10:40"), cancel.to_owned(), event("11:00")].join("\n");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines).unwrap();
    let (decisions, ..) = run_flight(dir.path(), "live", input.to_str().unwrap(), &[]);
    let b100: Vec<_> = summary(&decisions).into_iter().filter(|r| r.0 == "B100").map(|r| (r.1, r.3)).collect();
    assert_eq!(
        b100,
        vec![("10:20".into(), "AC403".into()), ("10:40".into(), "AC407".into()), ("11:00".into(), "AC403".into())]
    );

    // The same changes from a second input (--updates), without a restart, give the same decisions.
    let (events, updates) = (dir.path().join("events.jsonl"), dir.path().join("updates.jsonl"));
    std::fs::write(&events, [event("10:20"), event("10:40"), event("11:00")].join("\n")).unwrap();
    std::fs::write(&updates, [add, cancel].join("\n")).unwrap();
    let (split, ..) =
        run_flight(dir.path(), "split", events.to_str().unwrap(), &["--updates", updates.to_str().unwrap()]);
    let strip = |v: &[Value]| {
        v.iter().map(|d| (d["id"].clone(), d["action"].clone(), d["evidence"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(strip(&split), strip(&decisions));
}

fn generate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (events, schedule, bookings) =
        (dir.join("events.jsonl"), dir.join("schedule.jsonl"), dir.join("bookings.jsonl"));
    ok(inflight(&[
        "gen",
        "flight",
        "--events",
        "20000",
        "--bookings",
        "3000",
        "--changes",
        "0.01",
        "--malformed",
        "0.01",
        "-o",
        events.to_str().unwrap(),
        "--schedule-out",
        schedule.to_str().unwrap(),
        "--bookings-out",
        bookings.to_str().unwrap(),
    ]));
    (events, schedule, bookings)
}

#[test]
fn one_four_workers_and_two_processes_give_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (events, schedule, bookings) = generate(dir.path());
    let reference = ["--schedule", schedule.to_str().unwrap(), "--bookings", bookings.to_str().unwrap()];
    let common = [&reference[..], &["--chunk-size", "65536", "--emit", "all"]].concat();
    let input = events.to_str().unwrap();
    let (one, dead_one, _) = run_flight(dir.path(), "w1", input, &[&common[..], &["-w", "1"]].concat());
    let (four, dead_four, _) = run_flight(dir.path(), "w4", input, &[&common[..], &["-w", "4"]].concat());
    let actions = |d: &[Value]| d.iter().filter(|d| d["action"] != "NONE").count();
    assert!(actions(&one) > 500 && one.len() > actions(&one), "{} decisions, {} actions", one.len(), actions(&one));
    for action in ["REBOOK", "PROTECT", "ESCALATE", "NONE"] {
        assert!(one.iter().any(|d| d["action"] == action), "the generated data exercises {action}");
    }
    assert_same("-w 1 vs -w 4", &one, &four);
    assert_eq!(sorted_strings(&dead_one), sorted_strings(&dead_four));
    assert!(dead_one.len() > 100);
    seats_add_up(&one);

    let (out, dead) = (dir.path().join("n2.jsonl"), dir.path().join("n2.dead"));
    let mut args = vec!["run", "flight", "--input", input, "--output", out.to_str().unwrap()];
    args.extend_from_slice(&["--dead-letter", dead.to_str().unwrap()]);
    args.extend_from_slice(&common);
    two_processes(dir.path(), &args);
    assert_same("-w 1 vs -n 2", &one, &decisions_by_id(&out));
    assert_eq!(sorted_strings(&dead_one), sorted_strings(&json_lines(&dead)));
}

#[test]
fn bad_reference_data_and_flags_exit_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-schedule.jsonl");
    std::fs::write(&bad, "{\"flight_id\":\"X\",\"origin\":\"A\",\"destination\":\"B\",\"departure\":\"2024-01-07T10:00:00Z\",\"arrival\":\"2024-01-07T09:00:00Z\",\"seats_free\":1}\n").unwrap();
    let bad_json = dir.path().join("bad-bookings.jsonl");
    std::fs::write(&bad_json, "\n{\"booking_id\":\"B1\",\"passengers\":2}\n").unwrap();
    let sample = data("flight-sample.jsonl");
    let cases: [(&[&str], &str); 6] = [
        (&["run", "flight", "--input", &sample, "--schedule", "/no/such.jsonl"], "cannot read"),
        (
            &["run", "flight", "--input", &sample, "--schedule", bad.to_str().unwrap()],
            "bad-schedule.jsonl:1: flight X arrives before it departs",
        ),
        (
            &["run", "flight", "--input", &sample, "--bookings", bad_json.to_str().unwrap()],
            "bad-bookings.jsonl:2: missing field `legs`",
        ),
        (&["run", "flight", "--input", &sample, "--window", "1s"], "unexpected argument '--window'"),
        (&["run", "flight", "--input", &sample, "--mct", "90s"], "whole minutes"),
        (&["run", "trading", "--schedule", &sample], "unexpected argument '--schedule'"),
    ];
    for (args, want) in cases {
        assert_refused(args, want);
    }
}

#[test]
fn the_example_config_file_is_accepted_and_its_airport_mct_applies() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // AC1236 lands 14:15 + 20 min at YYZ; AC403 leaves at 15:30. 45 min holds, data/flight.toml's 60 min at YYZ does not.
    std::fs::write(
        &input,
        r#"{"flight_id":"AC1236","status":"DELAYED","timestamp":"2024-01-07T10:25:00Z","delay_minutes":20}"#,
    )
    .unwrap();
    let (default, ..) = run_flight(dir.path(), "default", input.to_str().unwrap(), &[]);
    assert!(default.is_empty());
    let (configured, ..) =
        run_flight(dir.path(), "config", input.to_str().unwrap(), &["--config", &data("flight.toml")]);
    assert_eq!(summary(&configured), vec![row("B104", "10:25", "REBOOK", "AC405")]);
}

/// A network for seat tests: inbound F1 and F2 (YUL→YYZ, landing 11:00) connect to C1 (YYZ→YVR at
/// 12:00); later flights on YYZ→YVR have the given seats.
fn seat_network(dir: &Path, alternatives: &[(&str, u32)], bookings: &[(&str, u32, &str)]) -> [String; 2] {
    let flight = |id: &str, from: &str, to: &str, dep: &str, arr: &str, seats: u32| {
        format!(
            r#"{{"flight_id":"{id}","origin":"{from}","destination":"{to}","departure":"2024-01-07T{dep}:00Z","arrival":"2024-01-07T{arr}:00Z","seats_free":{seats}}}"#
        )
    };
    let mut rows = vec![
        flight("F1", "YUL", "YYZ", "10:00", "11:00", 50),
        flight("F2", "YUL", "YYZ", "10:00", "11:00", 50),
        flight("C1", "YYZ", "YVR", "12:00", "17:00", 50),
    ];
    for (k, (id, seats)) in alternatives.iter().enumerate() {
        rows.push(flight(id, "YYZ", "YVR", &format!("{}:00", 14 + k), &format!("{}:00", 19 + k), *seats));
    }
    let bookings: Vec<String> = bookings
        .iter()
        .map(|(id, pax, inbound)| format!(r#"{{"booking_id":"{id}","passengers":{pax},"legs":["{inbound}","C1"]}}"#))
        .collect();
    let (schedule, booked) = (dir.join("seat-schedule.jsonl"), dir.join("seat-bookings.jsonl"));
    std::fs::write(&schedule, rows.join("\n")).unwrap();
    std::fs::write(&booked, bookings.join("\n")).unwrap();
    [schedule.display().to_string(), booked.display().to_string()]
}

fn status(flight: &str, at: &str, extra: &str) -> String {
    format!(r#"{{"flight_id":"{flight}","status":"DELAYED","timestamp":"2024-01-07T{at}:00Z"{extra}}}"#)
}

/// (booking, event time, action, alternative, passengers moved).
fn seated(decisions: &[Value]) -> Vec<(String, String, String, String, u64)> {
    let mut rows: Vec<_> = summary(decisions)
        .into_iter()
        .zip(decisions.iter().map(|d| d["evidence"]["seats"]["passengers"].as_u64().unwrap_or(0)))
        .map(|((b, t, a, f), n)| (b, t, a, f, n))
        .collect();
    rows.sort();
    rows
}

/// Runs `run flight` over `lines` with the reference data `reference`; the decisions' seat rows.
fn run_lines(
    dir: &Path,
    reference: &[&str],
    tag: &str,
    lines: &[String],
) -> Vec<(String, String, String, String, u64)> {
    let input = dir.join(format!("{tag}.in"));
    std::fs::write(&input, lines.join("\n")).unwrap();
    seated(&run_flight(dir, tag, input.to_str().unwrap(), reference).0)
}

fn seat_row(booking: &str, at: &str, action: &str, alt: &str, n: u64) -> (String, String, String, String, u64) {
    (booking.to_owned(), at.to_owned(), action.to_owned(), alt.to_owned(), n)
}

#[test]
fn thirteen_passengers_fill_four_and_nine_seats_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let bookings = [("B1", 3, "F1"), ("B2", 3, "F1"), ("B3", 2, "F1"), ("B4", 4, "F1"), ("B5", 1, "F1")];
    let [schedule, booked] = seat_network(dir.path(), &[("A4", 4), ("A9", 9)], &bookings);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, status("F1", "10:00", r#","delay_minutes":120"#)).unwrap();
    let reference = ["--schedule", schedule.as_str(), "--bookings", booked.as_str()];
    let (one, ..) = run_flight(dir.path(), "w1", input.to_str().unwrap(), &[&reference[..], &["-w", "1"]].concat());
    let mut on: std::collections::BTreeMap<String, u64> = Default::default();
    for (_, _, action, flight, n) in seated(&one) {
        assert_eq!(action, "REBOOK");
        *on.entry(flight).or_default() += n;
    }
    assert_eq!(on, [("A4".to_owned(), 4), ("A9".to_owned(), 9)].into(), "{one:?}");
    let (four, ..) = run_flight(dir.path(), "w4", input.to_str().unwrap(), &[&reference[..], &["-w", "4"]].concat());
    assert_same("-w 1 vs -w 4", &one, &four);
    let out = dir.path().join("n2.jsonl");
    let mut args = vec!["run", "flight", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(&reference);
    two_processes(dir.path(), &args);
    assert_same("-w 1 vs -n 2", &one, &decisions_by_id(&out));
}

#[test]
fn deletes_and_released_holds_give_seats_back() {
    let dir = tempfile::tempdir().unwrap();
    let [schedule, booked] = seat_network(dir.path(), &[("A2", 2)], &[("X", 2, "F1"), ("Y", 2, "F2")]);
    let reference = ["--schedule", schedule.as_str(), "--bookings", booked.as_str()];
    let run = |tag: &str, lines: &[String]| run_lines(dir.path(), &reference, tag, lines);
    let row = seat_row;
    let late = r#","delay_minutes":120"#;
    // X is rebooked onto A2's two seats; Y finds none; X is deleted; Y then gets them.
    let delete = r#"{"op":"delete","timestamp":"2024-01-07T10:10:00Z","booking_id":"X"}"#.to_owned();
    let got =
        run("delete", &[status("F1", "10:00", late), status("F2", "10:05", late), delete, status("F2", "10:15", late)]);
    let want = vec![
        row("X", "10:00", "REBOOK", "A2", 2),
        row("Y", "10:05", "ESCALATE", "-", 2),
        row("Y", "10:15", "REBOOK", "A2", 2),
    ];
    assert_eq!(got, want);
    // X's seats are held (delay of unknown length) and block Y, until F1 is back on time: X is told
    // NONE (the hold is given back) and Y gets the seats.
    let on_time = r#"{"flight_id":"F1","status":"ON_TIME","timestamp":"2024-01-07T10:10:00Z"}"#.to_owned();
    let got =
        run("hold", &[status("F1", "10:00", ""), status("F2", "10:05", late), on_time, status("F2", "10:15", late)]);
    let want = vec![
        row("X", "10:00", "PROTECT", "A2", 2),
        row("X", "10:10", "NONE", "-", 0),
        row("Y", "10:05", "ESCALATE", "-", 2),
        row("Y", "10:15", "REBOOK", "A2", 2),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_repeated_on_time_counts_again_after_a_schedule_change_and_leaves_other_flights_seats_alone() {
    let dir = tempfile::tempdir().unwrap();
    let [schedule, booked] = seat_network(dir.path(), &[("A2", 2)], &[("X", 2, "F1"), ("Y", 2, "F2")]);
    let reference = ["--schedule", schedule.as_str(), "--bookings", booked.as_str()];
    let run = |tag: &str, lines: &[String]| run_lines(dir.path(), &reference, tag, lines);
    let row = seat_row;
    let on_time = |at: &str| format!(r#"{{"flight_id":"F1","status":"ON_TIME","timestamp":"2024-01-07T{at}:00Z"}}"#);
    // F1 on time twice, then X's connection C1 is deleted: the next ON_TIME of F1 finds it gone.
    let delete = r#"{"op":"delete","timestamp":"2024-01-07T10:03:00Z","flight_id":"C1"}"#.to_owned();
    let got = run("repeat", &[on_time("10:00"), on_time("10:01"), on_time("10:02"), delete, on_time("10:04")]);
    assert_eq!(got, vec![row("X", "10:04", "ESCALATE", "-", 0)]);
    // C1 is cancelled: X is rebooked onto A2's two seats (Y, booked on C1 too, finds none). F1 on
    // time (X's inbound) leaves them taken: Y still finds none when F2's delay breaks its connection.
    let late = r#","delay_minutes":120"#;
    let cancelled = r#"{"flight_id":"C1","status":"CANCELLED","timestamp":"2024-01-07T10:00:00Z"}"#.to_owned();
    let got = run("cause", &[cancelled, on_time("10:05"), status("F2", "10:10", late)]);
    let want = vec![
        row("X", "10:00", "REBOOK", "A2", 2),
        row("Y", "10:00", "ESCALATE", "-", 2),
        row("Y", "10:10", "ESCALATE", "-", 2),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_booking_seated_on_a_flight_that_is_cancelled_is_seated_again_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let [schedule, booked] = seat_network(dir.path(), &[("A2", 2), ("A3", 2)], &[("X", 2, "F1"), ("Y", 2, "F2")]);
    let reference = ["--schedule", schedule.as_str(), "--bookings", booked.as_str()];
    let late = r#","delay_minutes":120"#;
    let at = |flight: &str, status: &str, at: &str| {
        format!(r#"{{"flight_id":"{flight}","status":"{status}","timestamp":"2024-01-07T{at}:00Z"}}"#)
    };
    // X is rebooked onto A2; A2 is cancelled: X is seated again on A3, which leaves Y nothing; F1
    // back on time gives A3's seats back (their cause is still F1's delay), and Y gets them.
    let lines = [
        status("F1", "10:00", late),
        at("A2", "CANCELLED", "10:10"),
        status("F2", "10:15", late),
        at("F1", "ON_TIME", "10:20"),
        status("F2", "10:25", late),
    ];
    let input = dir.path().join("reseat.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let run = |tag: &str, workers: &str| {
        run_flight(dir.path(), tag, input.to_str().unwrap(), &[&reference[..], &["-w", workers]].concat()).0
    };
    let one = run("w1", "1");
    let row = seat_row;
    let want = vec![
        row("X", "10:00", "REBOOK", "A2", 2),
        row("X", "10:10", "REBOOK", "A3", 2),
        row("X", "10:20", "NONE", "-", 0),
        row("Y", "10:15", "ESCALATE", "-", 2),
        row("Y", "10:25", "REBOOK", "A3", 2),
    ];
    assert_eq!(seated(&one), want);
    let moved = one.iter().find(|d| d["event_time"] == "2024-01-07T10:10:00.000Z").unwrap();
    let reason = moved["reason"].as_str().unwrap();
    assert!(
        reason.contains("A2 is cancelled") && reason.contains("in place of C1") && reason.contains("A3"),
        "{reason}"
    );
    assert_eq!(moved["evidence"]["broken_leg"], "C1");
    assert_eq!(moved["evidence"]["seats"]["skipped"][0], serde_json::json!({"flight_id": "A2", "why": "cancelled"}));
    assert_same("-w 1 vs -w 4", &one, &run("w4", "4"));
    let out = dir.path().join("n2.jsonl");
    let mut args = vec!["run", "flight", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(&reference);
    two_processes(dir.path(), &args);
    assert_same("-w 1 vs -n 2", &one, &decisions_by_id(&out));
}

/// Every seat handed out was free: a decision takes no more than the seats its flight had free,
/// which never exceed the schedule's, and on one flight within one event time each decision starts
/// from the seats the one before it left (nothing is handed out twice).
fn seats_add_up(decisions: &[Value]) {
    let mut last: std::collections::HashMap<(String, String), u64> = Default::default();
    let mut taken = 0;
    for d in decisions.iter().filter(|d| d["action"] == "REBOOK" || d["action"] == "PROTECT") {
        let (seats, alt) = (&d["evidence"]["seats"], &d["evidence"]["alternative"]);
        let (before, after, n) = (
            seats["free_before"].as_u64().unwrap(),
            seats["free_after"].as_u64().unwrap(),
            seats["passengers"].as_u64().unwrap(),
        );
        assert!(n > 0 && n <= before && after == before - n, "{d}");
        assert!(before <= alt["seats_free"].as_u64().unwrap(), "{d}");
        let at = (alt["flight_id"].as_str().unwrap().to_owned(), d["event_time"].as_str().unwrap().to_owned());
        let order = seats["order"].as_u64().unwrap();
        if let Some(prev) = last.insert((at.0.clone(), format!("{}#{order}", at.1)), after) {
            panic!("two decisions share order {order} on {at:?} ({prev})");
        }
        taken += n;
    }
    assert!(taken > 0);
}

/// Seats one booking's leg holds in the replay: (flight, seats, the status's flight, hold expiry).
type Held = Vec<(String, u64, String, Option<String>)>;

/// Recomputes every flight's free seats from the decisions alone, in the allocator's documented
/// order (event time; within it the NONEs that let a connection hold, then requests by their order
/// position and part), and checks each REBOOK and PROTECT against it: the seats it says were free
/// are the capacity (schedule and upserts) minus what the decisions before it still hold, and a
/// flight never holds more than its capacity. What a decision holds is given back when the same
/// booking's leg is decided again, when a NONE of the flight whose status led to it arrives, or
/// when a hold reaches its expiry, and when the booking is deleted (`deletes`: time and booking,
/// applied before the decisions of their time). Returns the number of seats handed out.
fn replay_seats(
    decisions: &[Value],
    capacity: &std::collections::HashMap<String, u64>,
    deletes: &[(String, String)],
) -> u64 {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let rank = |d: &Value| {
        let seats = &d["evidence"]["seats"];
        let part = seats["part"][0].as_u64().unwrap_or(1);
        (s(&d["event_time"]), u64::from(d["action"] != "NONE"), seats["order"].as_u64().unwrap_or(0), part)
    };
    let mut ordered: Vec<&Value> = decisions.iter().collect();
    ordered.sort_by_key(|d| rank(d));
    let leg_of = |d: &Value, flight: &str| {
        let legs = d["evidence"]["booking"]["legs"].as_array().unwrap();
        legs.iter().position(|l| l == flight).unwrap()
    };
    let mut held: std::collections::HashMap<(String, usize), Held> = Default::default();
    let (mut handed, mut checked) = (0, 0);
    let mut deletes = deletes.iter().peekable();
    for d in ordered {
        let (now, booking, cause) = (s(&d["event_time"]), s(&d["key"]), s(&d["evidence"]["status"]["flight_id"]));
        while let Some((_, gone)) = deletes.next_if(|(at, _)| *at <= now) {
            held.retain(|(b, _), _| b != gone);
        }
        held.values_mut().for_each(|h| h.retain(|(.., until)| until.as_ref().is_none_or(|u| *u > now)));
        if d["action"] == "NONE" {
            if d["evidence"]["booking"].is_object() {
                let next = leg_of(d, &cause) + 1;
                if let Some(h) = held.get_mut(&(booking, next)) {
                    h.retain(|(_, _, c, _)| *c != cause);
                }
            }
            continue;
        }
        let seats = &d["evidence"]["seats"];
        let Some(broken) = d["evidence"]["broken_leg"].as_str().filter(|_| seats.is_object()) else { continue };
        let key = (booking, leg_of(d, broken));
        // A re-seating (its status cancels the flight it was seated on, not one of its legs) keeps
        // the cause of the seats it replaces.
        let reseat = d["evidence"]["status"]["status"] == "CANCELLED" && cause != broken;
        let kept = held.get(&key).and_then(|h| h.first()).map(|(_, _, c, _)| c.clone()).filter(|_| reseat);
        let cause = kept.unwrap_or(cause);
        if seats["part"][0].as_u64().unwrap_or(1) == 1 {
            held.remove(&key);
        }
        if d["action"] != "REBOOK" && d["action"] != "PROTECT" {
            continue;
        }
        let alt = s(&d["evidence"]["alternative"]["flight_id"]);
        let taken: u64 = held.values().flatten().filter(|(f, ..)| *f == alt).map(|(_, n, ..)| n).sum();
        let cap = capacity[&alt];
        let n = seats["passengers"].as_u64().unwrap();
        assert!(taken + n <= cap, "{alt} overbooked: {taken} held + {n} > {cap} seats: {d}");
        assert_eq!(seats["free_before"].as_u64(), Some(cap - taken), "free seats of {alt} as replayed: {d}");
        assert_eq!(seats["free_after"].as_u64(), Some(cap - taken - n), "{d}");
        let until = seats["held_until"].as_str().map(str::to_owned);
        held.entry(key).or_default().push((alt, n, cause, until));
        (handed, checked) = (handed + n, checked + 1);
    }
    assert!(checked > 0);
    handed
}

/// The booking deletes among the events: (time, booking), in time order.
fn booking_deletes(events: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(events).unwrap();
    let changes = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
    let deletes = changes.filter(|c| c["op"] == "delete" && c["booking_id"].is_string());
    let mut all: Vec<_> = deletes
        .map(|c| (c["timestamp"].as_str().unwrap().to_owned(), c["booking_id"].as_str().unwrap().to_owned()))
        .collect();
    all.sort();
    all
}

/// Capacity of every flight: the schedule file's rows and the upserts among the events.
fn capacities(schedule: &Path, events: &Path) -> std::collections::HashMap<String, u64> {
    let mut rows: Vec<Value> = json_lines(schedule);
    let text = std::fs::read_to_string(events).unwrap();
    let changes = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
    rows.extend(changes.filter(|c| c["op"] == "upsert").map(|c| c["flight"].clone()));
    rows.iter().map(|f| (f["flight_id"].as_str().unwrap().to_owned(), f["seats_free"].as_u64().unwrap())).collect()
}

#[test]
fn a_generated_day_never_hands_out_a_seat_twice_as_recomputed_from_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (events, schedule, bookings) = (path("events.jsonl"), path("schedule.jsonl"), path("bookings.jsonl"));
    let p = |p: &PathBuf| p.to_str().unwrap().to_owned();
    // Many bookings per flight and a disrupted day: seats run out on most routes.
    ok(inflight(&[
        "gen",
        "flight",
        "--events",
        "40000",
        "--bookings",
        "20000",
        "--mix",
        "stress",
        "--changes",
        "0.01",
        "-o",
        &p(&events),
        "--schedule-out",
        &p(&schedule),
        "--bookings-out",
        &p(&bookings),
    ]));
    let reference = ["--schedule", &p(&schedule), "--bookings", &p(&bookings)];
    let (decisions, _, _) = run_flight(dir.path(), "day", &p(&events), &[&reference[..], &["-w", "2"]].concat());
    let deletes = booking_deletes(&events);
    assert!(deletes.len() > 20, "{} booking deletes", deletes.len());
    let handed = replay_seats(&decisions, &capacities(&schedule, &events), &deletes);
    let full = decisions
        .iter()
        .filter(|d| d["evidence"]["seats"]["skipped"][0]["why"].as_str().is_some_and(|w| w.starts_with("full")))
        .count();
    assert!(handed > 1000 && full > 100, "{handed} seats handed out, {full} decisions passed a full flight");
    // Flights that seated bookings are cancelled too: those bookings are seated again.
    let reseated = decisions
        .iter()
        .filter(|d| {
            let e = &d["evidence"];
            e["status"]["status"] == "CANCELLED"
                && e["seats"].is_object()
                && e["broken_leg"] != e["status"]["flight_id"]
        })
        .count();
    assert!(reseated > 100, "{reseated} re-seatings");
}

/// An early departure is news (not a malformed line); a status of a flight the schedule does not
/// know is escalated for each booking that has it as a leg, or for the flight alone, never dropped;
/// one passenger's hold reads "1 seat".
#[test]
fn early_departures_unknown_flights_and_single_seats_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let bookings = dir.path().join("bookings.jsonl");
    std::fs::write(
        &bookings,
        r#"{"booking_id":"S1","passengers":1,"legs":["AC1234","AC401"]}
{"booking_id":"U1","passengers":2,"legs":["ZZ7","AC401"]}
{"booking_id":"E1","passengers":2,"legs":["AC1236","AC403"]}
"#,
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        r#"{"flight_id":"AC1236","status":"DELAYED","timestamp":"2024-01-07T10:25:00Z","delay_minutes":-30}
{"flight_id":"XX999","status":"DELAYED","timestamp":"2024-01-07T10:26:00Z","delay_minutes":30}
{"flight_id":"ZZ7","status":"CANCELLED","timestamp":"2024-01-07T10:27:00Z"}
{"flight_id":"AC1234","status":"DELAYED","timestamp":"2024-01-07T10:28:00Z"}
"#,
    )
    .unwrap();
    let (schedule, bookings) = (data("flight-schedule.jsonl"), bookings.display().to_string());
    let args = ["--schedule", &schedule, "--bookings", &bookings, "--emit", "all"];
    let (decisions, dead, _) = run_flight(dir.path(), "edges", input.to_str().unwrap(), &args);
    assert!(dead.is_empty(), "{dead:?}");
    let got: Vec<(String, String, String)> = decisions
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap().to_owned();
            (s("key"), s("action"), s("reason"))
        })
        .collect();
    let find = |key: &str| got.iter().find(|g| g.0 == key).unwrap_or_else(|| panic!("no decision for {key}: {got:?}"));
    let early = find("E1");
    assert_eq!(early.1, "NONE", "{early:?}");
    assert!(early.2.starts_with("AC1236 leaves 30 min early; the connection to AC403 still holds"), "{early:?}");
    assert_eq!(find("XX999").1, "ESCALATE");
    assert_eq!(find("XX999").2, "XX999 is delayed 30 min, but flight XX999 is not in the schedule");
    assert_eq!(find("U1").1, "ESCALATE");
    assert_eq!(find("U1").2, "ZZ7 is cancelled, but flight ZZ7 is not in the schedule");
    let single = find("S1");
    assert_eq!(single.1, "PROTECT", "{single:?}");
    assert!(single.2.contains(": hold 1 seat on AC403 "), "{single:?}");
    assert_eq!(got.len(), 4, "{got:?}");
}
