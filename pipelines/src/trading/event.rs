//! The market event of the specification (`asset`, `price`, `timestamp`, `volume`, optional
//! `indicators` and `market_context`), parsed from one JSON line. Unknown fields are ignored.

use inflight_engine::time::rfc3339;
use inflight_engine::{Event, Key, Millis, ParseError};
use serde::{Deserialize, Serialize};

/// A market tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketEvent {
    /// Instrument, e.g. `BTC/USD`.
    pub asset: Key,
    /// Last traded price (> 0).
    pub price: f64,
    /// Event time, RFC 3339 in the input, milliseconds since the epoch here. Required, except in
    /// Kafka records, whose record timestamp stands in when the payload has none.
    #[serde(with = "rfc3339", default = "no_time")]
    pub timestamp: Millis,
    /// Traded volume (>= 0).
    pub volume: f64,
    /// Indicators the producer computed (kept as evidence; inflight computes its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicators: Option<EventIndicators>,
    /// Market context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market_context: Option<MarketContext>,
}

/// Indicators as a producer may send them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventIndicators {
    /// RSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsi: Option<f64>,
    /// MACD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macd: Option<EventMacd>,
    /// Sentiment score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment_score: Option<f64>,
}

/// MACD as a producer may send it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMacd {
    /// MACD line.
    pub value: f64,
    /// Signal line.
    pub signal: f64,
    /// Histogram.
    pub histogram: f64,
}

/// Market context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketContext {
    /// e.g. `low`, `medium`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volatility: Option<Key>,
    /// Trend; the BUY rule needs `bullish`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// e.g. `positive`, `neutral`, `negative`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub news_sentiment: Option<Key>,
}

/// Market trend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    /// Rising.
    Bullish,
    /// Falling.
    Bearish,
    /// Sideways.
    Neutral,
    /// Any other word the producer used.
    #[serde(other)]
    Other,
}

impl Trend {
    /// The trend as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Bullish => "bullish",
            Trend::Bearish => "bearish",
            Trend::Neutral => "neutral",
            Trend::Other => "other",
        }
    }
}

impl MarketEvent {
    /// The event's trend, if it has one.
    pub fn trend(&self) -> Option<Trend> {
        self.market_context.as_ref().and_then(|c| c.trend)
    }

    fn validate(&self) -> Result<(), ParseError> {
        if self.asset.trim().is_empty() {
            return Err(ParseError::invalid("asset is empty"));
        }
        if !(self.price.is_finite() && self.price > 0.0) {
            return Err(ParseError::invalid(format!("price {} is not a positive number", self.price)));
        }
        if !(self.volume.is_finite() && self.volume >= 0.0) {
            return Err(ParseError::invalid(format!("volume {} is negative", self.volume)));
        }
        Ok(())
    }
}

/// Marks a payload without `timestamp` (no real event is at the end of time).
fn no_time() -> Millis {
    Millis::MAX
}

impl Event for MarketEvent {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with_time(line, None)
    }

    fn parse_with_time(record: &[u8], record_time: Option<Millis>) -> Result<Self, ParseError> {
        let mut event: MarketEvent = sonic_rs::from_slice(record).map_err(|e| {
            // sonic-rs appends a multi-line excerpt; the dead letter carries the raw line anyway.
            let text = e.to_string();
            ParseError::malformed(text.lines().next().unwrap_or("invalid JSON").to_owned())
        })?;
        if event.timestamp == no_time() {
            event.timestamp = record_time.ok_or_else(|| ParseError::malformed("missing field `timestamp`"))?;
        }
        event.validate()?;
        Ok(event)
    }

    fn event_time(&self) -> Millis {
        self.timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"asset":"BTC/USD","price":42150.75,"timestamp":"2024-01-07T10:00:00Z","volume":2.5,
        "indicators":{"rsi":67.8,"macd":{"value":145.2,"signal":132.8,"histogram":12.4},"sentiment_score":0.82},
        "market_context":{"volatility":"medium","trend":"bullish","news_sentiment":"positive"}}"#;

    #[test]
    fn parses_the_specification_example() {
        let e = MarketEvent::parse(SPEC.as_bytes()).unwrap();
        assert_eq!(e.asset, "BTC/USD");
        assert_eq!(e.timestamp, 1_704_621_600_000);
        assert_eq!(e.trend(), Some(Trend::Bullish));
        assert_eq!(e.indicators.unwrap().macd.unwrap().histogram, 12.4);
    }

    #[test]
    fn ignores_unknown_fields_and_unknown_trend_words() {
        let line = br#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"venue":"nyse","market_context":{"trend":"sideways"}}"#;
        let e = MarketEvent::parse(line).unwrap();
        assert_eq!(e.trend(), Some(Trend::Other));
    }

    #[test]
    fn record_time_stands_in_for_a_missing_timestamp() {
        let line = br#"{"asset":"X","price":1,"volume":0}"#;
        assert!(MarketEvent::parse(line).unwrap_err().message.contains("missing field `timestamp`"));
        assert_eq!(MarketEvent::parse_with_time(line, Some(42)).unwrap().timestamp, 42);
        // The payload's own time wins over the record's.
        let with = br#"{"asset":"X","price":1,"volume":0,"timestamp":"1970-01-01T00:00:01Z"}"#;
        assert_eq!(MarketEvent::parse_with_time(with, Some(42)).unwrap().timestamp, 1000);
    }

    #[test]
    fn rejects_bad_records_with_reasons() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"asset":"X","price":1,"timestamp":"2024"#, "EOF"),
            (br#"{"asset":"X","timestamp":"2024-01-07T10:00:00Z","volume":1}"#, "missing field `price`"),
            (br#"{"asset":"X","price":"high","timestamp":"2024-01-07T10:00:00Z","volume":1}"#, "invalid type"),
            (br#"{"asset":"X","price":1,"timestamp":"noon","volume":1}"#, "RFC 3339"),
            (br#"{"asset":"X","price":-5,"timestamp":"2024-01-07T10:00:00Z","volume":1}"#, "positive"),
            (br#"not json"#, "Invalid literal"),
        ];
        for (line, want) in cases {
            let err = MarketEvent::parse(line).unwrap_err();
            assert!(err.message.contains(want), "{:?}: {}", String::from_utf8_lossy(line), err.message);
            assert!(!err.message.contains('\n'));
        }
    }
}
