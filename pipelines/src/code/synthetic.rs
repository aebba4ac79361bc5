//! Deterministic synthetic code events: valid Python and JavaScript from a small corpus, joined into
//! snippets of about the asked length, each with one error injected (a colon, closing bracket or
//! closing quote removed, or a line re-indented) and the error context naming the injected line.
//! Every event also carries the code before the injection (`injected.original`), which the pipeline
//! ignores and tests and `inflight bench code` compare fixes against. The same config gives the same
//! bytes.

use super::fix::{FixKind, Language, parses};
use inflight_engine::Millis;
use inflight_engine::time::format_rfc3339;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::io::{self, Write};

/// Valid Python snippets (each parses, each ends with a newline).
pub const PYTHON: &[&str] = &[
    r#"def calculate_total(prices):
    total = 0
    for price in prices:
        total += price
    return total
"#,
    r#"class Account:
    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.balance += amount
        return self.balance
"#,
    r#"import json

def load(path):
    with open(path) as f:
        data = json.load(f)
    items = [x for x in data if x.get('active')]
    while len(items) > 10:
        items.pop()
    return {'count': len(items), 'items': items}
"#,
    r#"def classify(n):
    if n < 0:
        return 'negative'
    elif n == 0:
        return 'zero'
    else:
        return 'positive'

print(classify(3))
"#,
    r#"def safe_div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        print("division by zero")
        return None
    finally:
        print('done')
"#,
    r#"from collections import Counter


def word_counts(text):
    words = text.lower().split()
    counts = Counter(words)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
"#,
    r#"class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __repr__(self):
        return f"Point({self.x}, {self.y})"

    def distance(self, other):
        dx = self.x - other.x
        dy = self.y - other.y
        return (dx ** 2 + dy ** 2) ** 0.5
"#,
    r#"import time


def fetch_with_retry(client, url, attempts=3):
    delay = 0.5
    while attempts > 0:
        try:
            return client.get(url, timeout=10)
        except ConnectionError as err:
            print(f'retrying {url}: {err}')
            attempts -= 1
            time.sleep(delay)
            delay *= 2
    raise RuntimeError("all retries failed")
"#,
    r#"DEFAULTS = {
    "host": "localhost",
    "port": 8080,
    "debug": False,
    "tags": ["web", 'api']
}


def merge(config, overrides):
    result = dict(config)
    for key, value in overrides.items():
        if value is not None:
            result[key] = value
    return result
"#,
    r#"import csv


def read_rows(path):
    rows = []
    with open(path, encoding="ascii") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            rows.append({k.strip(): v.strip() for k, v in row.items()})
    return rows
"#,
    r#"def top_scores(scores, limit=3):
    valid = list(filter(lambda s: s >= 0, scores))
    ranked = sorted(valid, reverse=True)
    return [round(s, 1) for s in ranked[:limit]]


print(top_scores([88.5, 92.25, -1, 75.0]))
"#,
    r#"class Inventory:
    def __init__(self):
        self.items = dict()

    def add(self, name, qty=1):
        self.items[name] = qty + self.items.get(name, 0)

    def remove(self, name):
        if name not in self.items:
            raise KeyError(f"unknown item: {name}")
        del self.items[name]
"#,
    r#"def chunks(values, size):
    for start in range(0, len(values), size):
        yield values[start:start + size]


for i, chunk in enumerate(chunks(list(range(10)), 4)):
    print(i, chunk)
"#,
    r#"def slugify(title, sep="-"):
    words = []
    for word in title.lower().split():
        word = word.strip("!?")
        if word:
            words.append(word)
    return sep.join(words)
"#,
    r#"import asyncio


async def gather_pages(session, urls):
    tasks = [session.get(url) for url in urls]
    pages = await asyncio.gather(*tasks)
    return {url: page.status for url, page in zip(urls, pages)}
"#,
    r#"from dataclasses import dataclass, field


@dataclass
class Order:
    order_id: int
    items: list = field(default_factory=list)
    status: str = "new"

    def total(self):
        return sum(item["price"] * item["qty"] for item in self.items)
"#,
    r#"def find_pair(numbers, target):
    seen = set()
    index = 0
    while index < len(numbers):
        value = numbers[index]
        if target - value in seen:
            return (target - value, value)
        seen.add(value)
        index += 1
    return None
"#,
    r#"import json


def parse_event(line):
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"ok": False, "error": str(exc)}
    else:
        event.setdefault('source', "unknown")
        return {"ok": True, "event": event}
"#,
    r#"def transpose(matrix):
    return [[row[i] for row in matrix] for i in range(len(matrix[0]))]


grid = [[1, 2, 3], [4, 5, 6]]
print(transpose(grid))
"#,
    r#"class Shape:
    def area(self):
        raise NotImplementedError


class Rectangle(Shape):
    def __init__(self, width, height):
        super().__init__()
        self.width = width
        self.height = height

    @property
    def area(self):
        return self.width * self.height
"#,
];

/// Valid JavaScript snippets (each parses, each ends with a newline).
pub const JAVASCRIPT: &[&str] = &[
    r#"function total(prices) {
  let sum = 0;
  for (const p of prices) {
    sum += p;
  }
  return sum;
}
console.log(total([1, 2, 3]));
"#,
    r#"const user = { name: "Ada", langs: ['en', 'fr'] };
function greet(u) {
  return `hello ${u.name}`;
}
console.log(greet(user));
"#,
    r#"class Stack {
  constructor() {
    this.items = [];
  }

  push(item) {
    this.items.push(item);
    return this;
  }

  pop() {
    if (this.items.length === 0) {
      throw new Error("stack is empty");
    }
    return this.items.pop();
  }
}
"#,
    r#"const orders = [{ id: 1, total: 25.5, paid: true }, { id: 2, total: 12, paid: false }];
const unpaid = orders.filter((o) => !o.paid).map((o) => o.id);
const revenue = orders.reduce((sum, o) => sum + o.total, 0);
console.log(`unpaid: ${unpaid.length}, revenue: ${revenue}`);
"#,
    r#"async function loadUser(id) {
  try {
    const response = await fetch(`/api/users/${id}`);
    if (!response.ok) {
      throw new Error('request failed');
    }
    return await response.json();
  } catch (err) {
    console.error(err, "could not load user");
    return null;
  }
}
"#,
    r#"function describe(status) {
  switch (status) {
    case 200:
      return "ok";
    case 404:
      return 'not found';
    default:
      return `unexpected ${status}`;
  }
}
"#,
    r#"function countWords(text) {
  const counts = new Map();
  const words = text.toLowerCase().split(/\s+/);
  let i = 0;
  while (i < words.length) {
    const w = words[i];
    counts.set(w, (counts.get(w) || 0) + 1);
    i += 1;
  }
  return counts;
}
"#,
    r#"function debounce(fn, wait) {
  let timer = null;
  function debounced(...args) {
    clearTimeout(timer);
    timer = setTimeout(() => fn.apply(this, args), wait);
  }
  return debounced;
}
"#,
];

/// One injected error: what kind, on which 1-based line, the broken code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The kind of error, as the fixer that should repair it names it.
    pub kind: FixKind,
    /// The 1-based line changed.
    pub line: usize,
    /// The whole code with the error (it does not parse).
    pub code: String,
}

/// Every single-error variant of `code` that no longer parses: per line, the block colon removed
/// (Python), the last closing bracket removed (or the line of a lone closer deleted), the last
/// quote removed, and the line re-indented (Python: two more spaces, or two instead of four or
/// more).
pub fn inject(language: Language, code: &str) -> Vec<Injected> {
    let lines: Vec<&str> = code.split('\n').collect();
    let (mut cases, mut deleted) = (Vec::new(), Vec::new());
    let mut with = |kind, i: usize, line: String| {
        let mut broken = lines.clone();
        broken[i] = &line;
        let text = broken.join("\n");
        if !parses(language, &text) {
            cases.push(Injected { kind, line: i + 1, code: text });
        }
    };
    for (i, line) in lines.iter().enumerate() {
        if language == Language::Python && line.trim_end().ends_with(':') {
            with(FixKind::MissingColon, i, line.trim_end().trim_end_matches(':').to_owned());
        }
        if let Some(at) = line.rfind([')', ']', '}']) {
            with(FixKind::UnbalancedBracket, i, format!("{}{}", &line[..at], &line[at + 1..]));
        }
        // A closer's whole line deleted (the line then holds what followed it).
        if matches!(line.trim(), "}" | ")" | "]") {
            let text: String =
                lines.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
            if !parses(language, &text) {
                deleted.push(Injected { kind: FixKind::UnbalancedBracket, line: i + 1, code: text });
            }
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
    cases.append(&mut deleted);
    cases
}

/// Settings of the synthetic code events.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeGenConfig {
    /// Number of lines (good events and malformed lines together).
    pub events: u64,
    /// Random seed.
    pub seed: u64,
    /// Fraction of events in JavaScript (the others are Python).
    pub javascript: f64,
    /// Fraction of lines that are malformed or invalid (truncated JSON, no `code`, an unsupported
    /// language, `error_line` 0).
    pub malformed: f64,
    /// Target snippet length in lines: corpus entries are joined until the snippet has at least
    /// this many.
    pub lines: usize,
    /// Number of repositories the files are spread over.
    pub repositories: usize,
    /// Event time of the first event (ms since the epoch); events follow 100 ms apart.
    pub start: Millis,
}

impl Default for CodeGenConfig {
    fn default() -> Self {
        CodeGenConfig {
            events: 10_000,
            seed: 42,
            javascript: 0.3,
            malformed: 0.0,
            lines: 30,
            repositories: 20,
            start: 1_704_585_600_000, // 2024-01-07T00:00:00Z
        }
    }
}

/// Event time between consecutive events.
const STEP_MS: Millis = 100;
/// Distinct composite snippets per language; later events sample among them.
const POOL: usize = 128;
/// Modules per repository the file names are drawn from.
const MODULES: usize = 100;

/// A composite snippet and its injected variants, grouped by kind.
struct Composite {
    original: String,
    by_kind: Vec<Vec<Injected>>,
}

/// Joins random corpus entries until the code has at least `lines` lines, and injects its errors.
/// None if the joined code does not parse or no variant fails to parse.
fn composite(language: Language, lines: usize, rng: &mut ChaCha8Rng) -> Option<Composite> {
    let corpus = corpus(language);
    let mut parts: Vec<&str> = Vec::new();
    let mut count = 0;
    while parts.is_empty() || count < lines {
        let part = corpus[rng.random_range(0..corpus.len())];
        count += part.lines().count() + usize::from(!parts.is_empty());
        parts.push(part);
    }
    // Entries end with a newline: joined by another, they are separated by a blank line.
    let original = parts.join("\n");
    if !parses(language, &original) {
        return None;
    }
    let mut by_kind: Vec<Vec<Injected>> = Vec::new();
    for variant in inject(language, &original) {
        match by_kind.iter_mut().find(|group| group[0].kind == variant.kind) {
            Some(group) => group.push(variant),
            None => by_kind.push(vec![variant]),
        }
    }
    (!by_kind.is_empty()).then_some(Composite { original, by_kind })
}

fn corpus(language: Language) -> &'static [&'static str] {
    match language {
        Language::Python => PYTHON,
        Language::Javascript => JAVASCRIPT,
    }
}

/// The code event's fields as written (borrowing the pooled code).
#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    error_context: Context<'a>,
    language: &'a str,
    file: &'a str,
    repository: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    injected: Option<Truth<'a>>,
}

#[derive(Serialize)]
struct Context<'a> {
    error_type: &'a str,
    error_message: &'a str,
    error_line: usize,
}

/// What was injected and the code before: ignored by the pipeline, read by tests and benches.
#[derive(Serialize)]
struct Truth<'a> {
    kind: FixKind,
    original: &'a str,
}

/// The character the injection removed from the line (None for a re-indented line).
fn removed(original: &str, broken: &str, line: usize) -> Option<char> {
    let before = original.split('\n').nth(line - 1)?;
    let after = broken.split('\n').nth(line - 1)?;
    let at = before.bytes().zip(after.bytes()).position(|(a, b)| a != b).unwrap_or(after.len());
    before[at..].chars().next()
}

/// V8's message for a closer missing at the end of the input.
const END_OF_INPUT: &str = "Unexpected end of input";

/// The error type and message an interpreter would report for the injected error.
fn report(language: Language, original: &str, injected: &Injected) -> (&'static str, String) {
    let removed = removed(original, &injected.code, injected.line);
    match (language, injected.kind) {
        (Language::Python, FixKind::MissingColon) => ("SyntaxError", "expected ':'".to_owned()),
        (Language::Python, FixKind::UnbalancedBracket) => {
            let open = match removed {
                Some(']') => '[',
                Some('}') => '{',
                _ => '(',
            };
            ("SyntaxError", format!("'{open}' was never closed"))
        }
        (Language::Python, FixKind::UnclosedString) => {
            ("SyntaxError", format!("unterminated string literal (detected at line {})", injected.line))
        }
        (Language::Python, FixKind::Indentation) => {
            let message = if removed == Some(' ') {
                "unindent does not match any outer indentation level"
            } else {
                "unexpected indent"
            };
            ("IndentationError", message.to_owned())
        }
        (Language::Javascript, FixKind::UnbalancedBracket) if removed == Some(')') => {
            ("SyntaxError", "missing ) after argument list".to_owned())
        }
        (Language::Javascript, FixKind::UnbalancedBracket) => ("SyntaxError", END_OF_INPUT.to_owned()),
        (Language::Javascript, _) => ("SyntaxError", "Invalid or unexpected token".to_owned()),
    }
}

/// Writes `config.events` JSON lines to `out`: code of about `config.lines` lines (corpus entries
/// joined, separated by a blank line) with one injected error, the error context naming the
/// injected line, and `"injected": {"kind", "original"}` with the correct code (ignored by the
/// pipeline). A `config.malformed` fraction of the lines is bad instead.
pub fn generate(config: &CodeGenConfig, out: &mut impl Write) -> io::Result<()> {
    let fraction = |f: f64| f.is_finite() && (0.0..=1.0).contains(&f);
    if !fraction(config.javascript) || !fraction(config.malformed) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "javascript and malformed are fractions in [0, 1]"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // Composites are built as events first need them, up to POOL per language, then sampled:
    // injecting re-parses the code once per candidate error.
    let mut pools: [Vec<Composite>; 2] = [Vec::new(), Vec::new()];
    let repositories = config.repositories.max(1);
    for i in 0..config.events {
        let language = if rng.random::<f64>() < config.javascript { Language::Javascript } else { Language::Python };
        let pool = &mut pools[usize::from(language == Language::Javascript)];
        if pool.len() < POOL {
            let built = (0..100).find_map(|_| composite(language, config.lines, &mut rng));
            pool.push(built.ok_or_else(|| io::Error::other("the corpus gives no code with an injectable error"))?);
        }
        let c = &pool[rng.random_range(0..pool.len())];
        let group = &c.by_kind[rng.random_range(0..c.by_kind.len())];
        let injected = &group[rng.random_range(0..group.len())];
        let (error_type, error_message) = report(language, &c.original, injected);
        // V8 reports a missing closer where the input ends, not where the closer was.
        let error_line =
            if error_message == END_OF_INPUT { injected.code.trim_end().split('\n').count() } else { injected.line };
        let (name, extension) = match language {
            Language::Python => ("python", "py"),
            Language::Javascript => ("javascript", "js"),
        };
        let file = format!("src/module_{:02}.{extension}", rng.random_range(0..MODULES));
        let repository = format!("repo-{:02}", rng.random_range(0..repositories));
        let timestamp = format_rfc3339(config.start + i * STEP_MS);
        let mut line = Line {
            code: Some(&injected.code),
            error_context: Context { error_type, error_message: &error_message, error_line },
            language: name,
            file: &file,
            repository: &repository,
            timestamp: &timestamp,
            injected: Some(Truth { kind: injected.kind, original: &c.original }),
        };
        if config.malformed > 0.0 && rng.random::<f64>() < config.malformed {
            line.injected = None;
            match rng.random_range(0..4) {
                0 => {
                    let text = serde_json::to_string(&line).map_err(io::Error::other)?;
                    let mut cut = rng.random_range(1..text.len());
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    writeln!(out, "{}", &text[..cut])?;
                    continue;
                }
                1 => line.code = None,
                2 => line.language = "cobol",
                _ => line.error_context.error_line = 0,
            }
        }
        serde_json::to_writer(&mut *out, &line).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::code::CodeEvent;
    use inflight_engine::Event;

    fn lines(config: &CodeGenConfig) -> Vec<String> {
        let mut buf = Vec::new();
        generate(config, &mut buf).unwrap();
        String::from_utf8(buf).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_corpus_parses_and_every_entry_gives_errors() {
        assert!(PYTHON.len() >= 12 && JAVASCRIPT.len() >= 6);
        for (language, corpus) in [(Language::Python, PYTHON), (Language::Javascript, JAVASCRIPT)] {
            for code in corpus {
                assert!(parses(language, code), "corpus code parses: {code}");
                assert!(code.ends_with('\n'), "ends with a newline: {code}");
                assert!(!inject(language, code).is_empty(), "errors can be injected: {code}");
            }
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let c = CodeGenConfig { events: 200, malformed: 0.1, lines: 12, ..CodeGenConfig::default() };
        let a = lines(&c);
        assert_eq!(a.len(), 200);
        assert_eq!(a, lines(&c));
        assert_ne!(a, lines(&CodeGenConfig { seed: 7, ..c.clone() }));
    }

    #[test]
    fn good_lines_carry_one_error_and_the_original() {
        let c = CodeGenConfig { events: 300, javascript: 0.4, ..CodeGenConfig::default() };
        let mut kinds = std::collections::BTreeSet::new();
        let mut languages = std::collections::BTreeSet::new();
        for line in lines(&c) {
            let event = CodeEvent::parse(line.as_bytes()).unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            let original = value["injected"]["original"].as_str().unwrap();
            let kind: FixKind = serde_json::from_value(value["injected"]["kind"].clone()).unwrap();
            assert!(!parses(event.lang, &event.code), "injected code does not parse:\n{}", event.code);
            assert!(parses(event.lang, original), "the original parses:\n{original}");
            assert!(original.lines().count() >= c.lines);
            // The code differs from the original on the error line only, but where V8 reports
            // the input's end (the last line with text).
            let reported = event.error_context.error_line.unwrap();
            let line = if event.error_context.error_message == END_OF_INPUT {
                assert_eq!(reported, event.code.trim_end().lines().count());
                let (a, b) = (event.code.split('\n'), original.split('\n'));
                a.zip(b).position(|(a, b)| a != b).unwrap() + 1
            } else {
                reported
            };
            if original.lines().count() == event.code.lines().count() + 1 {
                // A closer's line deleted: the original is the code with one line more there.
                let mut lines: Vec<&str> = event.code.split('\n').collect();
                let removed = original.split('\n').nth(line - 1).unwrap();
                lines.insert(line - 1, removed);
                assert_eq!(lines.join("\n"), original);
                kinds.insert(kind);
                languages.insert(event.language.unwrap());
                continue;
            }
            let differ: Vec<usize> = event
                .code
                .split('\n')
                .zip(original.split('\n'))
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i + 1)
                .collect();
            assert_eq!(differ, [line]);
            let indentation = kind == FixKind::Indentation;
            assert_eq!(event.error_context.error_type == "IndentationError", indentation);
            assert!(event.timestamp.is_some() && event.file.is_some() && event.repository.is_some());
            kinds.insert(kind);
            languages.insert(event.language.unwrap());
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(languages.len(), 2, "{languages:?}");
    }

    #[test]
    fn malformed_lines_fail_to_parse() {
        let c = CodeGenConfig { events: 600, malformed: 0.25, lines: 10, ..CodeGenConfig::default() };
        let mut bad = 0;
        for line in lines(&c) {
            let good = serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v.get("injected").is_some());
            assert_eq!(CodeEvent::parse(line.as_bytes()).is_ok(), good, "{line}");
            bad += usize::from(!good);
        }
        assert!((100..=200).contains(&bad), "{bad} bad lines");
    }

    #[test]
    fn bad_fractions_are_refused() {
        let c = CodeGenConfig { javascript: 1.5, ..CodeGenConfig::default() };
        assert!(generate(&c, &mut Vec::new()).is_err());
    }
}
