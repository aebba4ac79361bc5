//! Confidence of a rule fix, from measured precision instead of constants.
//!
//! A fix falls in a bucket: its language, its kind, where it put the change ([`Placement`]) and
//! whether it changed the line the error was reported on. [`TABLE`] holds, per bucket, how many
//! fixes the rules made on generated cases (`inflight gen code --seed 1 --events 6000`, one error
//! injected into valid code) and how many of them gave back the original code exactly. A fix's
//! confidence is the lower end of the 95 % Wilson interval of that share, at most [`CEILING`]:
//! at or below what the bucket measured, and lower the fewer fixes it rests on. A bucket the table
//! does not hold gets [`UNMEASURED`]; a fix below [`FIX_FLOOR`] leaves as SUGGEST with its diff.
//!
//! Regenerate the table after changing a fixer (the test prints it as Rust):
//! `cargo test --release --test code_fixes calibrate -- --ignored --nocapture`.

use super::event::CodeEvent;
use super::fix::{Fix, FixKind, Language, Placement, analyse};
use inflight_engine::Event;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The highest confidence a rule fix gets, however many fixes of its kind were exact.
pub const CEILING: f64 = 0.95;
/// Confidence of a fix in a bucket no measurement covers.
pub const UNMEASURED: f64 = 0.4;
/// Below this a validated fix is a SUGGEST, not a FIX.
pub const FIX_FLOOR: f64 = 0.6;

/// What a fix's confidence is measured by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bucket {
    /// The code's language.
    pub language: Language,
    /// What the fix repaired.
    pub kind: FixKind,
    /// Where it put the change.
    pub placement: Placement,
    /// It changed the line the error was reported on.
    pub on_line: bool,
}

impl Bucket {
    /// The bucket of `fix` for an error reported at `error_line`.
    pub fn of(language: Language, fix: &Fix, error_line: Option<usize>) -> Bucket {
        // A missing block closer is reported where the parser gave up (often the input's end),
        // not where it belongs: for a closer placed by the block, the reported line says nothing.
        let on_line = fix.placement != Placement::BlockEnd && error_line == Some(fix.edited);
        Bucket { language, kind: fix.kind, placement: fix.placement, on_line }
    }
}

/// One measured bucket: fixes made and fixes that gave back the original exactly.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The bucket.
    pub bucket: Bucket,
    /// Fixes the rules made in it.
    pub fixes: u32,
    /// Of those, fixes equal to the original code.
    pub exact: u32,
}

impl Row {
    /// The share of exact fixes.
    pub fn precision(&self) -> f64 {
        if self.fixes == 0 { 0.0 } else { f64::from(self.exact) / f64::from(self.fixes) }
    }

    /// The confidence a fix in this bucket gets: the Wilson lower bound, at most [`CEILING`],
    /// rounded down to hundredths.
    pub fn confidence(&self) -> f64 {
        (wilson_lower(self.exact, self.fixes).min(CEILING) * 100.0).floor() / 100.0
    }
}

/// Lower end of the 95 % Wilson score interval of `k` successes in `n` trials.
pub fn wilson_lower(k: u32, n: u32) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (n, p, z) = (f64::from(n), f64::from(k) / f64::from(n), 1.96_f64);
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)
}

/// The confidence of a fix in `bucket`, and the measurement it comes from (None: unmeasured).
pub fn confidence(bucket: &Bucket) -> (f64, Option<&'static Row>) {
    match TABLE.iter().find(|r| r.bucket == *bucket) {
        Some(row) => (row.confidence(), Some(row)),
        None => (UNMEASURED, None),
    }
}

/// Fixes counted per bucket.
#[derive(Clone, Debug, Default)]
pub struct Tally(BTreeMap<Bucket, (u32, u32)>);

impl Tally {
    /// Counts one fix.
    pub fn add(&mut self, bucket: Bucket, exact: bool) {
        let entry = self.0.entry(bucket).or_default();
        entry.0 += 1;
        entry.1 += u32::from(exact);
    }

    /// Runs the rules on one generated line (`inflight gen code`: code, error context and
    /// `injected.original`) and counts its fix, if any. False if the line carries no truth.
    pub fn measure(&mut self, line: &str) -> bool {
        #[derive(Deserialize)]
        struct Truth {
            injected: Option<Original>,
        }
        #[derive(Deserialize)]
        struct Original {
            original: String,
        }
        let Ok(Truth { injected: Some(truth) }) = serde_json::from_str::<Truth>(line) else { return false };
        // The event as the pipeline reads it.
        let Ok(event) = CodeEvent::parse(line.as_bytes()) else { return false };
        let (language, c) = (event.lang, &event.error_context);
        let hint = FixKind::hinted_by(&c.error_type, &c.error_message);
        if let (_, Some(fix)) = analyse(language, &event.code, c.error_line, hint) {
            self.add(Bucket::of(language, &fix, c.error_line), fix.code == truth.original);
        }
        true
    }

    /// The measured buckets.
    pub fn rows(&self) -> Vec<Row> {
        self.0.iter().map(|(bucket, &(fixes, exact))| Row { bucket: *bucket, fixes, exact }).collect()
    }

    /// Per language and kind: fixes that leave as FIX (at their calibrated confidence), how many
    /// were exact, and the mean confidence they were given.
    pub fn by_kind(&self) -> Vec<KindPrecision> {
        let mut out: BTreeMap<(Language, FixKind), KindPrecision> = BTreeMap::new();
        for (bucket, &(fixes, exact)) in &self.0 {
            let (given, _) = confidence(bucket);
            let k = out.entry((bucket.language, bucket.kind)).or_insert(KindPrecision {
                language: bucket.language,
                kind: bucket.kind,
                fixes: 0,
                exact: 0,
                confidence_sum: 0.0,
                suggested: 0,
            });
            if given >= FIX_FLOOR {
                k.fixes += fixes;
                k.exact += exact;
                k.confidence_sum += given * f64::from(fixes);
            } else {
                k.suggested += fixes;
            }
        }
        out.into_values().collect()
    }
}

/// The precision of one kind's FIXes (see [`Tally::by_kind`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KindPrecision {
    /// Language.
    pub language: Language,
    /// Kind.
    pub kind: FixKind,
    /// Fixes that left as FIX.
    pub fixes: u32,
    /// Of those, exact.
    pub exact: u32,
    /// Sum of the confidence given to them.
    pub confidence_sum: f64,
    /// Validated fixes left as SUGGEST (their bucket's confidence is below [`FIX_FLOOR`]).
    pub suggested: u32,
}

impl KindPrecision {
    /// Share of exact FIXes.
    pub fn precision(&self) -> f64 {
        if self.fixes == 0 { 1.0 } else { f64::from(self.exact) / f64::from(self.fixes) }
    }

    /// Mean confidence of its FIXes.
    pub fn confidence(&self) -> f64 {
        if self.fixes == 0 { 0.0 } else { self.confidence_sum / f64::from(self.fixes) }
    }
}

/// `rows` as a text table (language, kind, placement, on the reported line, fixes, exact,
/// precision, confidence given).
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<11}{:<19}{:<12}{:<9}{:>7}{:>7}{:>11}{:>12}\n",
        "language", "kind", "placement", "on line", "fixes", "exact", "precision", "confidence"
    );
    for r in rows {
        let b = &r.bucket;
        out.push_str(&format!(
            "{:<11}{:<19}{:<12}{:<9}{:>7}{:>7}{:>10.1}%{:>12.2}\n",
            name(b.language),
            snake(b.kind),
            snake(b.placement),
            if b.on_line { "yes" } else { "no" },
            r.fixes,
            r.exact,
            r.precision() * 100.0,
            r.confidence()
        ));
    }
    out
}

/// A value's serde name (`missing_colon`, `line_end`, …).
fn snake<T: Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The language's name.
pub fn name(language: Language) -> &'static str {
    match language {
        Language::Python => "python",
        Language::Javascript => "javascript",
    }
}

/// `rows` as the Rust of [`TABLE`].
pub fn rust(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let b = &r.bucket;
        out.push_str(&format!(
            "    row(Language::{:?}, FixKind::{:?}, Placement::{:?}, {}, {}, {}),\n",
            b.language, b.kind, b.placement, b.on_line, r.fixes, r.exact
        ));
    }
    out
}

const fn row(language: Language, kind: FixKind, placement: Placement, on_line: bool, fixes: u32, exact: u32) -> Row {
    Row { bucket: Bucket { language, kind, placement, on_line }, fixes, exact }
}

/// Fixes and exact fixes per bucket, measured on `inflight gen code --seed 1 --events 6000`.
#[rustfmt::skip]
pub const TABLE: &[Row] = &[
    row(Language::Python, FixKind::MissingColon, Placement::LineEnd, true, 1050, 1050),
    row(Language::Python, FixKind::UnbalancedBracket, Placement::LineEnd, true, 961, 936),
    row(Language::Python, FixKind::UnbalancedBracket, Placement::AfterWord, true, 21, 21),
    row(Language::Python, FixKind::UnbalancedBracket, Placement::BlockEnd, false, 31, 31),
    row(Language::Python, FixKind::UnclosedString, Placement::LineEnd, true, 709, 709),
    row(Language::Python, FixKind::UnclosedString, Placement::AfterWord, true, 299, 299),
    row(Language::Python, FixKind::Indentation, Placement::Reindented, true, 1065, 936),
    row(Language::Javascript, FixKind::UnbalancedBracket, Placement::LineEnd, false, 50, 40),
    row(Language::Javascript, FixKind::UnbalancedBracket, Placement::LineEnd, true, 453, 453),
    row(Language::Javascript, FixKind::UnbalancedBracket, Placement::BlockEnd, false, 492, 462),
    row(Language::Javascript, FixKind::UnclosedString, Placement::LineEnd, true, 645, 645),
    row(Language::Javascript, FixKind::UnclosedString, Placement::AfterWord, true, 143, 143),
];
