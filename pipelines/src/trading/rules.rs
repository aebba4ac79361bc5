//! The specification's trading rules, with its numbers as defaults: RSI above 70 → SELL (0.85);
//! MACD histogram above 10 with a bullish trend → BUY (0.92); otherwise HOLD (0.65). Optional rules
//! on the stochastic and the Bollinger bands, and filters on sentiment, news and volatility, are off
//! unless configured, so the defaults decide as the specification says.

use super::event::{Context, News, Trend, Volatility};
use super::timeframe::SlowBar;
use inflight_engine::time::{format_rfc3339, wall_millis};
use inflight_engine::{Key, Millis, SourceName, SourceRef};
use inflight_operators::indicators::{Bands, MacdValue, Stoch};
use inflight_operators::{
    Action, Bar, DecidedBy, Decision, Evidence, EvidenceWriter, Fixed, Keyed, Rules, Slot, Verdict,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A bar with its indicator values, what the rules look at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The closed bar; its context is its closing tick's.
    pub bar: Bar<Context>,
    /// RSI on bar closes.
    pub rsi: f64,
    /// MACD on bar closes.
    pub macd: MacdValue,
    /// Bollinger bands (20 closes, 2 deviations), once warmed up.
    pub bollinger: Option<Bands>,
    /// Wilder's ATR(14), once warmed up.
    pub atr: Option<f64>,
    /// The slow stochastic (14, 3, 3), once warmed up.
    pub stoch: Option<Stoch>,
    /// With a slow timeframe: its latest bar closed at or before this bar's end.
    #[serde(default)]
    pub slow: Option<SlowBar>,
}

impl Scored {
    fn facts(s: &Scored) -> Facts {
        Facts {
            rsi: s.rsi,
            histogram: s.macd.histogram,
            close: s.bar.close,
            context: s.bar.context,
            bollinger: s.bollinger,
            stoch: s.stoch,
            slow: s.slow,
        }
    }
}

impl Keyed for Scored {
    fn key(&self) -> &Key {
        &self.bar.key
    }

    fn slot(&self) -> Option<Slot> {
        self.bar.slot
    }
}

/// Thresholds and confidences of the trading rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingRules {
    /// SELL when RSI is above this.
    pub rsi_sell_above: f64,
    /// Confidence of SELL.
    pub sell_confidence: f64,
    /// BUY when the MACD histogram is above this and the trend is bullish.
    pub macd_buy_above: f64,
    /// Confidence of BUY.
    pub buy_confidence: f64,
    /// Confidence of HOLD.
    pub hold_confidence: f64,
    /// Optional: SELL when the stochastic %K is above this (overbought).
    pub stoch_sell_above: Option<f64>,
    /// Optional: BUY when the stochastic %K is below this (oversold).
    pub stoch_buy_below: Option<f64>,
    /// Optional: SELL when the close is above the upper Bollinger band, BUY when below the lower.
    pub bollinger: bool,
    /// Optional filter: a BUY needs `indicators.sentiment_score` at or above this.
    pub buy_min_sentiment: Option<f64>,
    /// Optional filter: a SELL needs `indicators.sentiment_score` at or below this.
    pub sell_max_sentiment: Option<f64>,
    /// Optional filter: `market_context.news_sentiment` words that hold a BUY back.
    pub buy_blocked_by_news: Vec<String>,
    /// Optional filter: `market_context.news_sentiment` words that hold a SELL back.
    pub sell_blocked_by_news: Vec<String>,
    /// Optional filter: `market_context.volatility` words that hold BUY and SELL back.
    pub hold_in_volatility: Vec<String>,
    /// Optional filter (with a slow timeframe): a BUY needs the slow RSI at or below this.
    pub buy_max_slow_rsi: Option<f64>,
    /// Optional filter (with a slow timeframe): a SELL needs the slow RSI at or above this.
    pub sell_min_slow_rsi: Option<f64>,
    /// Optional filter (with a slow timeframe): a BUY needs the slow MACD histogram at or above this.
    pub buy_min_slow_histogram: Option<f64>,
    /// Optional filter (with a slow timeframe): a SELL needs the slow MACD histogram at or below this.
    pub sell_max_slow_histogram: Option<f64>,
    /// The slow timeframe's names (set by the pipeline, not the config file).
    #[serde(skip)]
    slow: Option<SlowNames>,
    /// Source name written into decisions (set by the run, not the config file).
    #[serde(skip)]
    source: Option<SourceName>,
}

impl Default for TradingRules {
    fn default() -> Self {
        TradingRules {
            rsi_sell_above: 70.0,
            sell_confidence: 0.85,
            macd_buy_above: 10.0,
            buy_confidence: 0.92,
            hold_confidence: 0.65,
            stoch_sell_above: None,
            stoch_buy_below: None,
            bollinger: false,
            buy_min_sentiment: None,
            sell_max_sentiment: None,
            buy_blocked_by_news: Vec::new(),
            sell_blocked_by_news: Vec::new(),
            hold_in_volatility: Vec::new(),
            buy_max_slow_rsi: None,
            sell_min_slow_rsi: None,
            buy_min_slow_histogram: None,
            sell_max_slow_histogram: None,
            slow: None,
            source: None,
        }
    }
}

impl TradingRules {
    /// The rules, naming `source` in the decisions they make.
    pub fn with_source(mut self, source: SourceName) -> Self {
        self.source = Some(source);
        self
    }

    /// The rules with a slow timeframe of `width` ms: its values in the evidence as `rsi_1m`,
    /// `macd_1m` and `bar_1m` (for a 1 minute width), and its filters on.
    pub fn with_slow(mut self, width: Millis) -> Self {
        self.slow = Some(SlowNames::of(width));
        self
    }

    /// Whether a slow-timeframe filter is set.
    pub fn reads_slow(&self) -> bool {
        [self.buy_max_slow_rsi, self.sell_min_slow_rsi, self.buy_min_slow_histogram, self.sell_max_slow_histogram]
            .iter()
            .any(Option::is_some)
    }

    /// Checks that confidences lie in [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        for (name, c) in [("sell", self.sell_confidence), ("buy", self.buy_confidence), ("hold", self.hold_confidence)]
        {
            if !(0.0..=1.0).contains(&c) {
                return Err(format!("{name}_confidence {c} is outside [0, 1]"));
            }
        }
        let news = [News::Positive, News::Neutral, News::Negative].map(News::as_str);
        let levels = [Volatility::Low, Volatility::Medium, Volatility::High].map(Volatility::as_str);
        for (name, words, known) in [
            ("buy_blocked_by_news", &self.buy_blocked_by_news, &news),
            ("sell_blocked_by_news", &self.sell_blocked_by_news, &news),
            ("hold_in_volatility", &self.hold_in_volatility, &levels),
        ] {
            if let Some(w) = words.iter().find(|w| !known.contains(&w.as_str())) {
                return Err(format!("{name}: {w:?} is not one of {}", known.join(", ")));
            }
        }
        Ok(())
    }
}

impl TradingRules {
    /// Whether the rules read the Bollinger bands.
    pub(crate) fn reads_bands(&self) -> bool {
        self.bollinger
    }

    /// Whether the rules read the stochastic.
    pub(crate) fn reads_stoch(&self) -> bool {
        self.stoch_buy_below.is_some() || self.stoch_sell_above.is_some()
    }
}

/// The names of a slow timeframe's values: `1m`, `rsi_1m`, `macd_1m`, `bar_1m`. Made once per
/// pipeline and leaked, as the evidence writer takes its keys as `&'static str` (a few bytes for
/// each width a process runs with).
#[derive(Clone, Copy, Debug, PartialEq)]
struct SlowNames {
    label: &'static str,
    rsi: &'static str,
    macd: &'static str,
    bar: &'static str,
}

impl SlowNames {
    fn of(width: Millis) -> Self {
        let label = inflight_engine::time::format_duration(width);
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        SlowNames {
            rsi: leak(format!("rsi_{label}")),
            macd: leak(format!("macd_{label}")),
            bar: leak(format!("bar_{label}")),
            label: leak(label),
        }
    }
}

/// What the rules read of a bar.
struct Facts {
    rsi: f64,
    histogram: f64,
    close: f64,
    context: Context,
    bollinger: Option<Bands>,
    stoch: Option<Stoch>,
    slow: Option<SlowBar>,
}

/// Which rule fired, or which filter held a BUY or SELL back (then the action is HOLD).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Why {
    Rsi,
    Macd,
    StochHigh(f64),
    StochLow(f64),
    AboveBand(f64),
    BelowBand(f64),
    Held(Action, Hold),
    Nothing,
}

/// A filter that held a BUY or SELL back.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hold {
    NoScore,
    Score(f32),
    News(News),
    Volatility(Volatility),
    /// The slow timeframe has no value yet for a filter that reads it.
    NoSlow,
    SlowRsi(f64),
    SlowHistogram(f64),
}

impl TradingRules {
    /// The rules on the values they read, then the filters.
    fn judge(&self, f: &Facts) -> (Action, f64, Why) {
        let (action, why) = self.signal(f);
        match self.held(action, &f.context).or_else(|| self.slow_held(action, f.slow)) {
            Some(hold) => (Action::HOLD, self.hold_confidence, Why::Held(action, hold)),
            None if action.is(Action::SELL) => (action, self.sell_confidence, why),
            None if action.is(Action::BUY) => (action, self.buy_confidence, why),
            None => (action, self.hold_confidence, why),
        }
    }

    /// The rule that fires: the specification's SELL and BUY first, then the optional SELL and
    /// BUY rules.
    fn signal(&self, f: &Facts) -> (Action, Why) {
        let k = f.stoch.map(|s| s.k);
        let band = f.bollinger.filter(|_| self.bollinger);
        if f.rsi > self.rsi_sell_above {
            (Action::SELL, Why::Rsi)
        } else if f.histogram > self.macd_buy_above && f.context.trend == Some(Trend::Bullish) {
            (Action::BUY, Why::Macd)
        } else if let Some(k) = k.filter(|k| self.stoch_sell_above.is_some_and(|x| *k > x)) {
            (Action::SELL, Why::StochHigh(k))
        } else if let Some(b) = band.filter(|b| f.close > b.upper) {
            (Action::SELL, Why::AboveBand(b.upper))
        } else if let Some(k) = k.filter(|k| self.stoch_buy_below.is_some_and(|x| *k < x)) {
            (Action::BUY, Why::StochLow(k))
        } else if let Some(b) = band.filter(|b| f.close < b.lower) {
            (Action::BUY, Why::BelowBand(b.lower))
        } else {
            (Action::HOLD, Why::Nothing)
        }
    }

    /// The filter that holds `action` back in `context`, if one does.
    fn held(&self, action: Action, context: &Context) -> Option<Hold> {
        let buy = action.is(Action::BUY);
        if !buy && !action.is(Action::SELL) {
            return None;
        }
        let listed = |words: &[String], word: &str| words.iter().any(|w| w == word);
        if let Some(v) = context.volatility.filter(|v| listed(&self.hold_in_volatility, v.as_str())) {
            return Some(Hold::Volatility(v));
        }
        let (bound, blocked) = if buy {
            (self.buy_min_sentiment, &self.buy_blocked_by_news)
        } else {
            (self.sell_max_sentiment, &self.sell_blocked_by_news)
        };
        if let Some(n) = context.news.filter(|n| listed(blocked, n.as_str())) {
            return Some(Hold::News(n));
        }
        // Compared at the score's f32 precision, so a bound of 0.82 admits a score of 0.82.
        let bound = bound? as f32;
        let Some(score) = context.sentiment_score() else { return Some(Hold::NoScore) };
        let fine = if buy { score >= bound } else { score <= bound };
        (!fine).then_some(Hold::Score(score))
    }

    /// The slow-timeframe filter that holds `action` back, if one does.
    fn slow_held(&self, action: Action, slow: Option<SlowBar>) -> Option<Hold> {
        let buy = action.is(Action::BUY);
        if !buy && !action.is(Action::SELL) {
            return None;
        }
        let (rsi_bound, histogram_bound) = if buy {
            (self.buy_max_slow_rsi, self.buy_min_slow_histogram)
        } else {
            (self.sell_min_slow_rsi, self.sell_max_slow_histogram)
        };
        if let Some(bound) = rsi_bound {
            let Some(rsi) = slow.and_then(|s| s.rsi) else { return Some(Hold::NoSlow) };
            if (buy && rsi > bound) || (!buy && rsi < bound) {
                return Some(Hold::SlowRsi(rsi));
            }
        }
        if let Some(bound) = histogram_bound {
            let Some(h) = slow.and_then(|s| s.macd).map(|m| m.histogram) else { return Some(Hold::NoSlow) };
            if (buy && h < bound) || (!buy && h > bound) {
                return Some(Hold::SlowHistogram(h));
            }
        }
        None
    }

    /// Why, in a sentence.
    fn reason(&self, f: &Facts, why: Why) -> String {
        let trend = f.context.trend.map_or("unknown", Trend::as_str);
        match why {
            Why::Rsi => join(&[
                Text("RSI "),
                Fix(f.rsi, 2),
                Text(" is above "),
                Num(self.rsi_sell_above),
                Text(" (overbought)"),
            ]),
            Why::Macd => join(&[
                Text("MACD histogram "),
                Fix(f.histogram, 4),
                Text(" is above "),
                Num(self.macd_buy_above),
                Text(" and the trend is bullish"),
            ]),
            Why::StochHigh(k) => format!(
                "stochastic %K {} is above {} (overbought)",
                Fixed(k, 2),
                self.stoch_sell_above.unwrap_or(f64::NAN)
            ),
            Why::StochLow(k) => format!(
                "stochastic %K {} is below {} (oversold)",
                Fixed(k, 2),
                self.stoch_buy_below.unwrap_or(f64::NAN)
            ),
            Why::AboveBand(upper) => {
                format!("close {} is above the upper Bollinger band {}", f.close, Fixed(upper, 4))
            }
            Why::BelowBand(lower) => {
                format!("close {} is below the lower Bollinger band {}", f.close, Fixed(lower, 4))
            }
            Why::Held(action, hold) => {
                let because = match hold {
                    Hold::NoScore => "the tick has no sentiment score".to_owned(),
                    Hold::Score(score) if action.is(Action::BUY) => {
                        format!("sentiment score {score} is below {}", self.buy_min_sentiment.unwrap_or(f64::NAN))
                    }
                    Hold::Score(score) => {
                        format!("sentiment score {score} is above {}", self.sell_max_sentiment.unwrap_or(f64::NAN))
                    }
                    Hold::News(n) => format!("news sentiment is {}", n.as_str()),
                    Hold::Volatility(v) => format!("volatility is {}", v.as_str()),
                    Hold::NoSlow => format!("the {} timeframe has no RSI and MACD yet", self.slow_label()),
                    Hold::SlowRsi(rsi) if action.is(Action::BUY) => format!(
                        "RSI({}) {} is above {}",
                        self.slow_label(),
                        Fixed(rsi, 2),
                        self.buy_max_slow_rsi.unwrap_or(f64::NAN)
                    ),
                    Hold::SlowRsi(rsi) => format!(
                        "RSI({}) {} is below {}",
                        self.slow_label(),
                        Fixed(rsi, 2),
                        self.sell_min_slow_rsi.unwrap_or(f64::NAN)
                    ),
                    Hold::SlowHistogram(h) if action.is(Action::BUY) => format!(
                        "MACD({}) histogram {} is below {}",
                        self.slow_label(),
                        Fixed(h, 4),
                        self.buy_min_slow_histogram.unwrap_or(f64::NAN)
                    ),
                    Hold::SlowHistogram(h) => format!(
                        "MACD({}) histogram {} is above {}",
                        self.slow_label(),
                        Fixed(h, 4),
                        self.sell_max_slow_histogram.unwrap_or(f64::NAN)
                    ),
                };
                let rule = self.reason(f, self.signal(f).1);
                format!("{action} held: {because} ({rule})")
            }
            Why::Nothing => join(&[
                Text("no rule fired: RSI "),
                Fix(f.rsi, 2),
                Text(", MACD histogram "),
                Fix(f.histogram, 4),
                Text(", trend "),
                Text(trend),
            ]),
        }
    }
}

impl TradingRules {
    fn slow_label(&self) -> &'static str {
        self.slow.map_or("slow", |n| n.label)
    }
}

/// A piece of the reason of the common decisions.
enum Piece<'a> {
    Text(&'a str),
    /// `Fixed(x, decimals)`.
    Fix(f64, usize),
    /// A threshold, as `{}` writes it.
    Num(f64),
}
use Piece::{Fix, Num, Text};

/// The pieces one after another, as `format!` would write them: written by hand because the
/// formatting machinery cost a third of a decision's explanation (most bars that leave are HOLD
/// "no rule fired", one in forty ticks at 1,000 assets).
fn join(pieces: &[Piece]) -> String {
    let mut out = String::with_capacity(96);
    for piece in pieces {
        match *piece {
            Text(t) => out.push_str(t),
            Fix(x, decimals) => Fixed(x, decimals).push_to(&mut out),
            // Whole thresholds (70, 10) as Display writes them; the rest through Display.
            Num(x) if x.fract() == 0.0 && x.abs() < 1e15 && !(x == 0.0 && x.is_sign_negative()) => {
                out.push_str(itoa::Buffer::new().format(x as i64));
            }
            Num(x) => {
                use std::fmt::Write;
                let _ = write!(out, "{x}");
            }
        }
    }
    out
}

/// `trading/KEY/END`, as `format!` would write it (see [`join`]).
fn decision_id(key: &str, end: Millis) -> String {
    let mut id = String::with_capacity(key.len() + 30);
    id.push_str("trading/");
    id.push_str(key);
    id.push('/');
    id.push_str(itoa::Buffer::new().format(end));
    id
}

/// A bar with its indicators, warmed up or not: what the indicators stage sends on (to the rules
/// and the live view's charts).
#[derive(Clone, Debug)]
pub(crate) struct Indicated {
    pub(crate) bar: Bar<Context>,
    pub(crate) rsi: Option<f64>,
    pub(crate) macd: Option<MacdValue>,
    pub(crate) bollinger: Option<Bands>,
    pub(crate) atr: Option<f64>,
    pub(crate) stoch: Option<Stoch>,
    pub(crate) slow: Option<SlowBar>,
}

impl Keyed for Indicated {
    fn key(&self) -> &Key {
        &self.bar.key
    }

    fn slot(&self) -> Option<Slot> {
        self.bar.slot
    }
}

/// [`TradingRules`] on [`Indicated`] bars, undecided while either indicator warms up: deciding on
/// the indicators' output directly saves a stage that moved every bar (192 bytes) once more.
pub(crate) struct WarmedUp(pub(crate) TradingRules);

impl Rules for WarmedUp {
    type Input = Indicated;

    fn verdict(&self, i: &Indicated) -> Option<Verdict> {
        let facts = Facts {
            rsi: i.rsi?,
            histogram: i.macd?.histogram,
            close: i.bar.close,
            context: i.bar.context,
            bollinger: i.bollinger,
            stoch: i.stoch,
            slow: i.slow,
        };
        let (action, confidence, _) = self.0.judge(&facts);
        Some(Verdict { action, confidence })
    }

    fn explain(&self, i: Indicated, v: Verdict) -> Decision {
        // Only decided bars are explained, so both values are there.
        let nan = MacdValue { value: f64::NAN, signal: f64::NAN, histogram: f64::NAN };
        let (rsi, macd) = (i.rsi.unwrap_or(f64::NAN), i.macd.unwrap_or(nan));
        let (bollinger, atr, stoch, slow) = (i.bollinger, i.atr, i.stoch, i.slow);
        self.0.explain(Scored { bar: i.bar, rsi, macd, bollinger, atr, stoch, slow }, v)
    }
}

/// What a trading decision was based on, as written into its `evidence`: the closed bar, RSI,
/// MACD, the bands, ATR and stochastic once they have values, and the bar's market context.
fn evidence(s: &Scored, slow: Option<SlowNames>) -> Evidence {
    let (bar, context) = (&s.bar, s.bar.context);
    let mut w = EvidenceWriter::new();
    w.object("bar", |w| {
        w.stamp("start", bar.start).stamp("end", bar.end);
        w.f64("open", bar.open).f64("high", bar.high).f64("low", bar.low).f64("close", bar.close);
        w.f64("volume", bar.volume.value()).u64("ticks", bar.count);
    });
    w.f64("rsi", s.rsi);
    w.object("macd", |w| {
        w.f64("value", s.macd.value).f64("signal", s.macd.signal).f64("histogram", s.macd.histogram);
    });
    if let Some(b) = &s.bollinger {
        w.object("bollinger", |w| {
            w.f64("upper", b.upper).f64("middle", b.middle).f64("lower", b.lower);
        });
    }
    if let Some(atr) = s.atr {
        w.f64("atr", atr);
    }
    if let Some(k) = &s.stoch {
        w.object("stoch", |w| {
            w.f64("k", k.k).f64("d", k.d);
        });
    }
    if let (Some(bar), Some(names)) = (&s.slow, slow) {
        w.object(names.bar, |w| {
            w.stamp("end", bar.end).f64("close", bar.close);
        });
        if let Some(rsi) = bar.rsi {
            w.f64(names.rsi, rsi);
        }
        if let Some(m) = &bar.macd {
            w.object(names.macd, |w| {
                w.f64("value", m.value).f64("signal", m.signal).f64("histogram", m.histogram);
            });
        }
    }
    w.str("trend", context.trend.map_or("unknown", Trend::as_str));
    if let Some(v) = context.volatility {
        w.str("volatility", v.as_str());
    }
    if let Some(n) = context.news {
        w.str("news_sentiment", n.as_str());
    }
    if let Some(score) = context.sentiment_score() {
        w.f32("sentiment_score", score);
    }
    w.finish()
}

impl Rules for TradingRules {
    type Input = Scored;

    fn verdict(&self, s: &Scored) -> Option<Verdict> {
        let (action, confidence, _) = self.judge(&Scored::facts(s));
        Some(Verdict { action, confidence })
    }

    fn explain(&self, s: Scored, v: Verdict) -> Decision {
        let facts = Scored::facts(&s);
        let (_, _, why) = self.judge(&facts);
        let reason = self.reason(&facts, why);
        let bar = &s.bar;
        let evidence = evidence(&s, self.slow);
        let source = self.source.clone().unwrap_or_else(|| SourceName::File(Arc::from("unknown")));
        Decision {
            id: decision_id(&bar.key, bar.end),
            pipeline: "trading".into(),
            key: bar.key.clone(),
            action: v.action,
            reason,
            confidence: v.confidence,
            suggested_size: None,
            position_after: None,
            decided_by: DecidedBy::Rules,
            model: None,
            evidence,
            event_time: format_rfc3339(bar.end),
            decided_at: format_rfc3339(wall_millis()),
            source: SourceRef::new(&source, bar.last.1),
            ingest_ns: bar.ingest_ns,
            event_time_ms: bar.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inflight_engine::Position;

    fn scored(rsi: f64, histogram: f64, trend: Option<Trend>) -> Scored {
        let at = (0, Position::default());
        Scored {
            bar: Bar {
                key: "BTC/USD".into(),
                start: 0,
                end: 1000,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: Default::default(),
                count: 1,
                first: at,
                last: at,
                ingest_ns: 0,
                context: Context::new(trend, None, None, None),
                slot: None,
            },
            rsi,
            macd: MacdValue { value: histogram, signal: 0.0, histogram },
            bollinger: None,
            atr: None,
            stoch: None,
            slow: None,
        }
    }

    #[test]
    fn reasons_are_written_as_format_writes_them() {
        for x in [70.0, 10.0, 0.0, -0.0, 70.5, -3.0, 1e15, 1e20, f64::NAN, 0.1 + 0.2] {
            for y in [71.254_9, -0.000_04, 1.005, f64::INFINITY] {
                let joined = join(&[Text("a "), Fix(y, 2), Text(" b "), Num(x), Fix(y, 4)]);
                assert_eq!(joined, format!("a {} b {x}{}", Fixed(y, 2), Fixed(y, 4)));
            }
        }
        assert_eq!(
            decision_id("BTC/USD", 1_704_621_600_000),
            format!("trading/{}/{}", "BTC/USD", 1_704_621_600_000u64)
        );
    }

    #[test]
    fn specification_rules() {
        let r = TradingRules::default();
        let v = |rsi, h, t| r.verdict(&scored(rsi, h, t)).unwrap();
        assert_eq!(v(70.5, 50.0, Some(Trend::Bullish)), Verdict { action: Action::SELL, confidence: 0.85 });
        assert_eq!(v(70.0, 10.5, Some(Trend::Bullish)), Verdict { action: Action::BUY, confidence: 0.92 });
        assert_eq!(v(50.0, 10.5, Some(Trend::Bearish)).action, Action::HOLD);
        assert_eq!(v(50.0, 10.0, Some(Trend::Bullish)).action, Action::HOLD);
        assert_eq!(v(50.0, 50.0, None), Verdict { action: Action::HOLD, confidence: 0.65 });
    }

    #[test]
    fn explanation_carries_evidence() {
        let r = TradingRules::default().with_source(SourceName::File(Arc::from("ticks.jsonl")));
        let s = scored(75.0, 1.0, Some(Trend::Neutral));
        let v = r.verdict(&s).unwrap();
        let d = r.explain(s, v);
        assert_eq!(d.id, "trading/BTC/USD/1000");
        assert!(d.reason.contains("RSI 75.00"));
        let evidence = d.evidence.to_value();
        assert_eq!(evidence["rsi"], 75.0);
        assert_eq!(evidence["trend"], "neutral");
        assert_eq!(d.source.file.as_deref(), Some("ticks.jsonl"));
    }

    /// A bar at `close` after a MACD BUY signal (histogram 12, bullish) unless `rsi` sells first.
    fn with(rsi: f64, close: f64, context: Context, bands: Option<Bands>, k: Option<f64>) -> Scored {
        let mut s = scored(rsi, 12.0, context.trend);
        s.bar.context = context;
        s.bar.close = close;
        s.bollinger = bands;
        s.stoch = k.map(|k| Stoch { k, d: k });
        s
    }

    fn decide(r: &TradingRules, s: Scored) -> (Action, f64, String) {
        let v = r.verdict(&s).unwrap();
        let d = r.explain(s, v);
        assert_eq!((d.action, d.confidence), (v.action, v.confidence), "verdict and decision agree");
        (d.action, d.confidence, d.reason)
    }

    #[test]
    fn optional_rules_are_off_by_default_and_fire_when_set() {
        let neutral = Context::new(Some(Trend::Neutral), None, None, None);
        let bands = Some(Bands { upper: 110.0, middle: 100.0, lower: 90.0 });
        let oversold = with(50.0, 80.0, neutral, bands, Some(12.0));
        assert_eq!(decide(&TradingRules::default(), oversold.clone()).0, Action::HOLD);

        let stoch = TradingRules { stoch_buy_below: Some(20.0), stoch_sell_above: Some(80.0), ..Default::default() };
        let (action, confidence, reason) = decide(&stoch, oversold.clone());
        assert_eq!((action, confidence), (Action::BUY, 0.92));
        assert_eq!(reason, "stochastic %K 12.00 is below 20 (oversold)");
        let (action, _, reason) = decide(&stoch, with(50.0, 100.0, neutral, bands, Some(85.5)));
        assert_eq!((action, reason.as_str()), (Action::SELL, "stochastic %K 85.50 is above 80 (overbought)"));
        // The specification's rules come first.
        assert!(decide(&stoch, with(71.0, 100.0, neutral, bands, Some(12.0))).2.starts_with("RSI 71.00"));

        let band = TradingRules { bollinger: true, ..Default::default() };
        let (action, confidence, reason) = decide(&band, oversold);
        assert_eq!((action, confidence), (Action::BUY, 0.92));
        assert_eq!(reason, "close 80 is below the lower Bollinger band 90.0000");
        let (action, _, reason) = decide(&band, with(50.0, 111.5, neutral, bands, None));
        assert_eq!((action, reason.as_str()), (Action::SELL, "close 111.5 is above the upper Bollinger band 110.0000"));
        // Before the bands have values, the rule cannot fire.
        assert_eq!(decide(&band, with(50.0, 1.0, neutral, None, None)).0, Action::HOLD);
    }

    #[test]
    fn filters_hold_buys_and_sells_back_and_say_why() {
        let bullish =
            |score: Option<f64>, news, volatility| Context::new(Some(Trend::Bullish), volatility, news, score);
        let buy = |c| with(50.0, 100.0, c, None, None);
        let sentiment =
            TradingRules { buy_min_sentiment: Some(0.5), sell_max_sentiment: Some(-0.2), ..Default::default() };
        let (action, confidence, reason) = decide(&sentiment, buy(bullish(Some(0.3), None, None)));
        assert_eq!((action, confidence), (Action::HOLD, 0.65));
        assert_eq!(
            reason,
            "BUY held: sentiment score 0.3 is below 0.5 (MACD histogram 12.0000 is above 10 and the trend is bullish)"
        );
        assert!(
            decide(&sentiment, buy(bullish(None, None, None)))
                .2
                .starts_with("BUY held: the tick has no sentiment score")
        );
        // At the bound (compared at the score's precision) the BUY stands.
        assert_eq!(decide(&sentiment, buy(bullish(Some(0.5), None, None))).0, Action::BUY);
        let sell = |score| with(75.0, 100.0, bullish(score, None, None), None, None);
        assert_eq!(decide(&sentiment, sell(Some(-0.2))).0, Action::SELL);
        assert!(
            decide(&sentiment, sell(Some(0.1)))
                .2
                .starts_with("SELL held: sentiment score 0.1 is above -0.2 (RSI 75.00")
        );

        let words = TradingRules {
            buy_blocked_by_news: vec!["negative".into()],
            hold_in_volatility: vec!["high".into()],
            ..Default::default()
        };
        let bad_news = decide(&words, buy(bullish(None, Some(News::Negative), Some(Volatility::Low))));
        assert!(bad_news.2.starts_with("BUY held: news sentiment is negative"), "{}", bad_news.2);
        assert_eq!(decide(&words, buy(bullish(None, Some(News::Positive), Some(Volatility::Medium)))).0, Action::BUY);
        let wild = decide(&words, with(75.0, 100.0, bullish(None, None, Some(Volatility::High)), None, None));
        assert!(wild.2.starts_with("SELL held: volatility is high"), "{}", wild.2);
        // A HOLD is never held.
        let calm = with(50.0, 100.0, Context::new(None, Some(Volatility::High), None, None), None, None);
        assert!(decide(&words, calm).2.starts_with("no rule fired"));
    }

    #[test]
    fn filter_words_must_be_known() {
        let r = TradingRules { hold_in_volatility: vec!["hihg".into()], ..Default::default() };
        assert_eq!(r.validate().unwrap_err(), "hold_in_volatility: \"hihg\" is not one of low, medium, high");
        let r = TradingRules { sell_blocked_by_news: vec!["Positive".into()], ..Default::default() };
        assert!(r.validate().unwrap_err().starts_with("sell_blocked_by_news"));
    }

    #[test]
    fn confidences_must_be_probabilities() {
        let r = TradingRules { buy_confidence: 1.5, ..TradingRules::default() };
        assert!(r.validate().unwrap_err().contains("buy_confidence"));
    }
}
