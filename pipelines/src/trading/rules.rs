//! The specification's trading rules, with its numbers as defaults: RSI above 70 → SELL (0.85);
//! MACD histogram above 10 with a bullish trend → BUY (0.92); otherwise HOLD (0.65).

use super::event::Trend;
use inflight_engine::time::{Stamp, format_rfc3339, wall_millis};
use inflight_engine::{Key, SourceName, SourceRef};
use inflight_operators::indicators::MacdValue;
use inflight_operators::{Action, Bar, DecidedBy, Decision, Evidence, Fixed, Keyed, Rules, Slot, Verdict};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A bar with its indicator values, what the rules look at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The closed bar; its context is the trend of its closing tick.
    pub bar: Bar<Option<Trend>>,
    /// RSI on bar closes.
    pub rsi: f64,
    /// MACD on bar closes.
    pub macd: MacdValue,
}

impl Keyed for Scored {
    fn key(&self) -> &Key {
        &self.bar.key
    }

    fn slot(&self) -> Option<Slot> {
        self.bar.slot
    }
}

/// What a trading decision was based on, as written into its `evidence`.
#[derive(Serialize)]
struct TradingEvidence<'a> {
    bar: BarEvidence,
    rsi: f64,
    macd: &'a MacdValue,
    trend: &'a str,
}

/// The closed bar in the evidence.
#[derive(Serialize)]
struct BarEvidence {
    start: Stamp,
    end: Stamp,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    ticks: u64,
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

    /// Checks that confidences lie in [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        for (name, c) in [("sell", self.sell_confidence), ("buy", self.buy_confidence), ("hold", self.hold_confidence)]
        {
            if !(0.0..=1.0).contains(&c) {
                return Err(format!("{name}_confidence {c} is outside [0, 1]"));
            }
        }
        Ok(())
    }
}

impl TradingRules {
    /// The specification's rules on the values they read.
    fn verdict_of(&self, rsi: f64, histogram: f64, trend: Option<Trend>) -> Verdict {
        let (action, confidence) = if rsi > self.rsi_sell_above {
            (Action::SELL, self.sell_confidence)
        } else if histogram > self.macd_buy_above && trend == Some(Trend::Bullish) {
            (Action::BUY, self.buy_confidence)
        } else {
            (Action::HOLD, self.hold_confidence)
        };
        Verdict { action, confidence }
    }
}

/// A bar with its indicators, warmed up or not: what the indicators stage sends on (to the rules
/// and the live view's charts).
#[derive(Clone, Debug)]
pub(crate) struct Indicated {
    pub(crate) bar: Bar<Option<Trend>>,
    pub(crate) rsi: Option<f64>,
    pub(crate) macd: Option<MacdValue>,
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
        Some(self.0.verdict_of(i.rsi?, i.macd?.histogram, i.bar.context))
    }

    fn explain(&self, i: Indicated, v: Verdict) -> Decision {
        // Only decided bars are explained, so both values are there.
        let nan = MacdValue { value: f64::NAN, signal: f64::NAN, histogram: f64::NAN };
        let (rsi, macd) = (i.rsi.unwrap_or(f64::NAN), i.macd.unwrap_or(nan));
        self.0.explain(Scored { bar: i.bar, rsi, macd }, v)
    }
}

impl Rules for TradingRules {
    type Input = Scored;

    fn verdict(&self, s: &Scored) -> Option<Verdict> {
        Some(self.verdict_of(s.rsi, s.macd.histogram, s.bar.context))
    }

    fn explain(&self, s: Scored, v: Verdict) -> Decision {
        let trend = s.bar.context.map_or("unknown", Trend::as_str);
        let reason = match v.action {
            Action::SELL => format!("RSI {} is above {} (overbought)", Fixed(s.rsi, 2), self.rsi_sell_above),
            Action::BUY => format!(
                "MACD histogram {} is above {} and the trend is bullish",
                Fixed(s.macd.histogram, 4),
                self.macd_buy_above
            ),
            _ => format!(
                "no rule fired: RSI {}, MACD histogram {}, trend {trend}",
                Fixed(s.rsi, 2),
                Fixed(s.macd.histogram, 4)
            ),
        };
        let bar = &s.bar;
        let evidence = Evidence::of(&TradingEvidence {
            bar: BarEvidence {
                start: Stamp(bar.start),
                end: Stamp(bar.end),
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
                volume: bar.volume.value(),
                ticks: bar.count,
            },
            rsi: s.rsi,
            macd: &s.macd,
            trend,
        });
        let source = self.source.clone().unwrap_or_else(|| SourceName::File(Arc::from("unknown")));
        Decision {
            id: format!("trading/{}/{}", bar.key, bar.end),
            pipeline: "trading".into(),
            key: bar.key.clone(),
            action: v.action,
            reason,
            confidence: v.confidence,
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
                context: trend,
                slot: None,
            },
            rsi,
            macd: MacdValue { value: histogram, signal: 0.0, histogram },
        }
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

    #[test]
    fn confidences_must_be_probabilities() {
        let r = TradingRules { buy_confidence: 1.5, ..TradingRules::default() };
        assert!(r.validate().unwrap_err().contains("buy_confidence"));
    }
}
