//! The market event of the specification (`asset`, `price`, `timestamp`, `volume`, optional
//! `indicators` and `market_context`), parsed from one JSON line. Unknown fields are ignored.

use inflight_engine::time::{parse_utc_fast, rfc3339};
use inflight_engine::{Event, Key, Millis, ParseError, Sourced, json};
use inflight_operators::Tick;
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
    /// The trend a producer's word names (as serde reads it: lowercase, anything else `Other`).
    fn from_word(word: &[u8]) -> Trend {
        const KNOWN: [(&[u8], Trend); 3] =
            [(b"bullish", Trend::Bullish), (b"bearish", Trend::Bearish), (b"neutral", Trend::Neutral)];
        classify(word, &KNOWN, Trend::Other)
    }

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

/// The known word `word` is, or `other`: the length and first byte rule out all but one known
/// word before any full compare (a tick has three words; this is most of what reading them costs).
fn classify<T: Copy>(word: &[u8], known: &[(&[u8], T)], other: T) -> T {
    let first = word.first().copied();
    known
        .iter()
        .find(|(k, _)| k.len() == word.len() && k.first().copied() == first && *k == word)
        .map_or(other, |(_, t)| *t)
}

/// How volatile the producer says the market is (`market_context.volatility`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Volatility {
    /// Calm.
    Low,
    /// Normal.
    Medium,
    /// Wild.
    High,
    /// Any other word the producer used.
    #[serde(other)]
    Other,
}

impl Volatility {
    fn from_word(word: &[u8]) -> Volatility {
        const KNOWN: [(&[u8], Volatility); 3] =
            [(b"low", Volatility::Low), (b"medium", Volatility::Medium), (b"high", Volatility::High)];
        classify(word, &KNOWN, Volatility::Other)
    }

    /// The word as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Volatility::Low => "low",
            Volatility::Medium => "medium",
            Volatility::High => "high",
            Volatility::Other => "other",
        }
    }
}

/// The news sentiment the producer reports (`market_context.news_sentiment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum News {
    /// Good news.
    Positive,
    /// Nothing either way.
    Neutral,
    /// Bad news.
    Negative,
    /// Any other word the producer used.
    #[serde(other)]
    Other,
}

impl News {
    fn from_word(word: &[u8]) -> News {
        const KNOWN: [(&[u8], News); 3] =
            [(b"positive", News::Positive), (b"neutral", News::Neutral), (b"negative", News::Negative)];
        classify(word, &KNOWN, News::Other)
    }

    /// The word as written.
    pub fn as_str(self) -> &'static str {
        match self {
            News::Positive => "positive",
            News::Neutral => "neutral",
            News::Negative => "negative",
            News::Other => "other",
        }
    }
}

/// What the rules read of a tick besides price and volume: the producer's market context and its
/// `indicators.sentiment_score`. Eight bytes (the score as an f32, NaN for none), so a tick is
/// no larger than with the trend alone: ticks cross workers, and their bytes are the cost.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Context {
    /// `market_context.trend`.
    pub trend: Option<Trend>,
    /// `market_context.volatility`.
    pub volatility: Option<Volatility>,
    /// `market_context.news_sentiment`.
    pub news: Option<News>,
    score: f32,
}

impl Context {
    /// A context; the score is kept to f32 precision (about 7 digits).
    pub fn new(trend: Option<Trend>, volatility: Option<Volatility>, news: Option<News>, score: Option<f64>) -> Self {
        Context { trend, volatility, news, score: score.map_or(f32::NAN, |s| s as f32) }
    }

    /// `indicators.sentiment_score`, if the tick had one.
    pub fn sentiment_score(&self) -> Option<f32> {
        (!self.score.is_nan()).then_some(self.score)
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new(None, None, None, None)
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        (self.trend, self.volatility, self.news, self.sentiment_score())
            == (other.trend, other.volatility, other.news, other.sentiment_score())
    }
}

impl MarketEvent {
    /// The event's trend, if it has one.
    pub fn trend(&self) -> Option<Trend> {
        self.market_context.as_ref().and_then(|c| c.trend)
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
        let mut event: MarketEvent = from_json(record)?;
        check(&event.asset, event.price, event.volume, &mut event.timestamp, record_time)?;
        Ok(event)
    }

    fn event_time(&self) -> Millis {
        self.timestamp
    }
}

/// What the trading pipeline reads of a market event: the required fields, the market context's
/// words and the sentiment score, nothing else. The producer's own `rsi` and `macd` are skipped
/// unread (and so not checked), and nothing is built that the rules do not read: building every
/// optional field was most of a tick's cost. A line the pipeline accepts as a `MarketTick` is a
/// valid [`MarketEvent`] in every field it uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "TickFields")]
pub struct MarketTick {
    /// Instrument.
    pub asset: Key,
    /// Last traded price (> 0).
    pub price: f64,
    /// Event time (as [`MarketEvent::timestamp`]).
    pub timestamp: Millis,
    /// Traded volume (>= 0).
    pub volume: f64,
    /// `market_context` and `indicators.sentiment_score`.
    pub context: Context,
}

/// A market tick as serde reads it (the slow path, and the one that words the errors).
#[derive(Deserialize)]
struct TickFields {
    asset: Key,
    price: f64,
    #[serde(with = "rfc3339", default = "no_time")]
    timestamp: Millis,
    volume: f64,
    #[serde(default)]
    market_context: Option<ContextFields>,
    #[serde(default)]
    indicators: Option<IndicatorFields>,
}

#[derive(Deserialize)]
struct ContextFields {
    #[serde(default)]
    trend: Option<Trend>,
    #[serde(default)]
    volatility: Option<Volatility>,
    #[serde(default)]
    news_sentiment: Option<News>,
}

#[derive(Deserialize)]
struct IndicatorFields {
    #[serde(default)]
    sentiment_score: Option<f64>,
}

impl From<TickFields> for MarketTick {
    fn from(t: TickFields) -> Self {
        let (trend, volatility, news) =
            t.market_context.map_or((None, None, None), |c| (c.trend, c.volatility, c.news_sentiment));
        let score = t.indicators.and_then(|i| i.sentiment_score);
        MarketTick {
            asset: t.asset,
            price: t.price,
            timestamp: t.timestamp,
            volume: t.volume,
            context: Context::new(trend, volatility, news, score),
        }
    }
}

impl MarketTick {
    /// The tick the windows take (key, time, price, volume, where and when it was read), carrying
    /// `context` into its bar.
    pub fn into_tick<C>(s: Sourced<MarketTick>, context: C) -> Tick<C> {
        let e = s.event;
        Tick {
            key: e.asset,
            time: e.timestamp,
            price: e.price,
            volume: e.volume,
            pos: s.pos,
            ingest_ns: s.ingest_ns,
            context,
        }
    }

    /// The fast path ([`json::scan_object`]): None for anything it does not read exactly as the
    /// serde path would (an escape, a duplicate field, a wrong type, a timestamp chrono must
    /// parse, a malformed line), which then goes through serde and gets its error message there.
    fn read_fast(record: &[u8]) -> Option<MarketTick> {
        Self::read_layout(record).or_else(|| Self::read_scan(record))
    }

    /// The layout `inflight gen market` and serializers of the specification's event write: its
    /// keys in the specification's order, no spaces. Only literal bytes are compared between the
    /// values: about 1,100 instructions a tick against about 2,700 for scanning the members.
    fn read_layout(record: &[u8]) -> Option<MarketTick> {
        let mut c = json::Cursor::new(record);
        let tick = Self::read_layout_at(&mut c)?;
        c.end()?;
        Some(tick)
    }

    /// [`MarketTick::read_layout`] up to the record's last `}`, where `c` is left.
    fn read_layout_at(c: &mut json::Cursor<'_>) -> Option<MarketTick> {
        c.expect(br#"{"asset":"#)?;
        let asset = c.string()?;
        c.expect(br#","price":"#)?;
        let price = c.number()?;
        c.expect(br#","timestamp":"#)?;
        let timestamp = parse_utc_fast(c.bytes()?)?;
        c.expect(br#","volume":"#)?;
        let volume = c.number()?;
        let score = if c.expect(br#","indicators":"#).is_some() { score_of_indicators_fast(c)? } else { None };
        // The usual words are tried as literals first (a fixed-size compare each, where reading
        // the string and then classifying it cost about 100 instructions a word).
        c.expect(br#","market_context":{"volatility":"#)?;
        let volatility = if c.expect(br#""low""#).is_some() {
            Some(Volatility::Low)
        } else if c.expect(br#""medium""#).is_some() {
            Some(Volatility::Medium)
        } else if c.expect(br#""high""#).is_some() {
            Some(Volatility::High)
        } else {
            word_fast(c, Volatility::from_word)?
        };
        c.expect(br#","trend":"#)?;
        let trend = if c.expect(br#""bullish""#).is_some() {
            Some(Trend::Bullish)
        } else if c.expect(br#""bearish""#).is_some() {
            Some(Trend::Bearish)
        } else if c.expect(br#""neutral""#).is_some() {
            Some(Trend::Neutral)
        } else {
            word_fast(c, Trend::from_word)?
        };
        c.expect(br#","news_sentiment":"#)?;
        let news = if c.expect(br#""positive""#).is_some() {
            Some(News::Positive)
        } else if c.expect(br#""neutral""#).is_some() {
            Some(News::Neutral)
        } else if c.expect(br#""negative""#).is_some() {
            Some(News::Negative)
        } else {
            word_fast(c, News::from_word)?
        };
        c.expect(b"}}")?;
        let context = Context::new(trend, volatility, news, score);
        Some(MarketTick { asset: Key::from(asset), price, timestamp, volume, context })
    }

    /// Any layout, member by member.
    fn read_scan(record: &[u8]) -> Option<MarketTick> {
        let (mut asset, mut price, mut timestamp, mut volume) = (None, None, None, None);
        let (mut words, mut score) = (None, None);
        json::scan_object(record, |key, value| match key {
            b"asset" => once(&mut asset, value.string()?),
            b"price" => once(&mut price, value.number()?),
            b"volume" => once(&mut volume, value.number()?),
            b"timestamp" => once(&mut timestamp, parse_utc_fast(value.bytes()?)?),
            b"market_context" => once(&mut words, context_fast(value)?),
            b"indicators" => once(&mut score, score_of_indicators_fast(value)?),
            _ => Some(()),
        })?;
        let (trend, volatility, news) = words.unwrap_or_default();
        Some(MarketTick {
            asset: Key::from(asset?),
            price: price?,
            timestamp: timestamp.unwrap_or_else(no_time),
            volume: volume?,
            context: Context::new(trend, volatility, news, score.flatten()),
        })
    }
}

/// Once per member; a second is serde's "duplicate field" error, left to serde.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// A word of the market context on the fast path: null, or a string without escapes.
fn word_fast<T>(c: &mut json::Cursor<'_>, of: fn(&[u8]) -> T) -> Option<Option<T>> {
    if c.null() { Some(None) } else { Some(Some(of(c.bytes()?))) }
}

/// `indicators.sentiment_score` on the fast path: the indicators may be null, and the score
/// missing or null; the other indicators are skipped unread.
fn score_of_indicators_fast(value: &mut json::Cursor<'_>) -> Option<Option<f64>> {
    if value.null() {
        return Some(None);
    }
    let mut score: Option<Option<f64>> = None;
    value.object(|key, value| match key {
        b"sentiment_score" if value.null() => once(&mut score, None),
        b"sentiment_score" => once(&mut score, Some(value.number()?)),
        _ => value.skip(),
    })?;
    Some(score.flatten())
}

/// The words of `market_context` on the fast path: the context may be null, and each word missing
/// or null.
type Words = (Option<Trend>, Option<Volatility>, Option<News>);

fn context_fast(value: &mut json::Cursor<'_>) -> Option<Words> {
    if value.null() {
        return Some(Words::default());
    }
    let (mut trend, mut volatility, mut news) = (None, None, None);
    value.object(|key, value| match key {
        b"trend" => once(&mut trend, word_fast(value, Trend::from_word)?),
        b"volatility" => once(&mut volatility, word_fast(value, Volatility::from_word)?),
        b"news_sentiment" => once(&mut news, word_fast(value, News::from_word)?),
        _ => value.skip(),
    })?;
    Some((trend.flatten(), volatility.flatten(), news.flatten()))
}

impl Event for MarketTick {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with_time(line, None)
    }

    fn parse_with_time(record: &[u8], record_time: Option<Millis>) -> Result<Self, ParseError> {
        let mut tick = match MarketTick::read_fast(record) {
            Some(tick) => tick,
            None => from_json(record)?,
        };
        check(&tick.asset, tick.price, tick.volume, &mut tick.timestamp, record_time)?;
        Ok(tick)
    }

    fn event_time(&self) -> Millis {
        self.timestamp
    }

    /// A tick in the layout [`MarketTick::read_layout`] reads ends at its last `}}`: a line of a
    /// file needs no search for its end. Anything else (another layout, a range error, a missing
    /// time, whitespace or `\r` after the record) goes the usual way.
    fn parse_prefix(block: &[u8]) -> Option<(Self, usize)> {
        let mut c = json::Cursor::new(block);
        if c.offset() != 0 {
            return None;
        }
        let t = Self::read_layout_at(&mut c)?;
        // What `check` accepts, decided on the spot (it builds an error to say why not, and any
        // tick that fails goes the usual way, which says it).
        let fine = t.asset.as_bytes().first().is_some_and(u8::is_ascii_graphic)
            && (t.price.is_finite() && t.price > 0.0)
            && (t.volume.is_finite() && t.volume >= 0.0)
            && t.timestamp != no_time();
        fine.then(|| (t, c.offset()))
    }
}

/// One JSON record into `T`, its error on one line.
fn from_json<'de, T: Deserialize<'de>>(record: &'de [u8]) -> Result<T, ParseError> {
    sonic_rs::from_slice(record).map_err(|e| {
        // sonic-rs appends a multi-line excerpt; the dead letter carries the raw line anyway.
        let text = e.to_string();
        ParseError::malformed(text.lines().next().unwrap_or("invalid JSON").to_owned())
    })
}

/// The range checks of a market event's required fields; a missing timestamp takes the record's.
fn check(
    asset: &str,
    price: f64,
    volume: f64,
    timestamp: &mut Millis,
    record_time: Option<Millis>,
) -> Result<(), ParseError> {
    if *timestamp == no_time() {
        *timestamp = record_time.ok_or_else(|| ParseError::malformed("missing field `timestamp`"))?;
    }
    // A printable ASCII byte is never whitespace: most assets are decided at their first byte.
    if !asset.bytes().any(|b| b.is_ascii_graphic()) && asset.trim().is_empty() {
        return Err(ParseError::invalid("asset is empty"));
    }
    if !(price.is_finite() && price > 0.0) {
        return Err(ParseError::invalid(format!("price {price} is not a positive number")));
    }
    if !(volume.is_finite() && volume >= 0.0) {
        return Err(ParseError::invalid(format!("volume {volume} is negative")));
    }
    Ok(())
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
    fn a_tick_reads_what_the_event_reads() {
        let spec = MarketTick::parse(SPEC.as_bytes()).unwrap();
        assert_eq!((spec.asset.as_str(), spec.price, spec.volume), ("BTC/USD", 42150.75, 2.5));
        assert_eq!((spec.timestamp, spec.context.trend), (1_704_621_600_000, Some(Trend::Bullish)));
        let c = spec.context;
        assert_eq!(
            (c.volatility, c.news, c.sentiment_score()),
            (Some(Volatility::Medium), Some(News::Positive), Some(0.82))
        );
        let lines: [&[u8]; 4] = [
            br#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":null}"#,
            br#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{}}"#,
            br#"{"market_context":{"trend":"sideways","volatility":"high"},"volume":3,"price":2,"asset":"Y","timestamp":"2024-01-07T10:00:00.5+01:00"}"#,
            br#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
        ];
        for line in lines {
            let (tick, event) = (MarketTick::parse(line).unwrap(), MarketEvent::parse(line).unwrap());
            assert_eq!(
                (&tick.asset, tick.price, tick.timestamp, tick.volume),
                (&event.asset, event.price, event.timestamp, event.volume)
            );
            assert_eq!(tick.context.trend, event.trend());
            let words = event.market_context.as_ref();
            let word = |w: Option<&Key>| w.map(|w| w.to_string());
            let (volatility, news) = (tick.context.volatility, tick.context.news);
            assert_eq!(volatility.map(|v| v.as_str().to_owned()), word(words.and_then(|c| c.volatility.as_ref())));
            assert_eq!(news.map(|n| n.as_str().to_owned()), word(words.and_then(|c| c.news_sentiment.as_ref())));
        }
    }

    #[test]
    fn a_tick_rejects_what_the_event_rejects_in_the_fields_it_reads() {
        let cases: [&[u8]; 7] = [
            br#"{"asset":"X","price":1,"timestamp":"2024"#,
            br#"{"asset":"X","timestamp":"2024-01-07T10:00:00Z","volume":1}"#,
            br#"{"asset":"X","price":"high","timestamp":"2024-01-07T10:00:00Z","volume":1}"#,
            br#"{"asset":"X","price":1,"timestamp":"noon","volume":1}"#,
            br#"{"asset":"X","price":-5,"timestamp":"2024-01-07T10:00:00Z","volume":1}"#,
            br#"{"asset":" ","price":5,"timestamp":"2024-01-07T10:00:00Z","volume":1}"#,
            br#"not json"#,
        ];
        for line in cases {
            let (tick, event) = (MarketTick::parse(line).unwrap_err(), MarketEvent::parse(line).unwrap_err());
            assert_eq!(tick, event, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            MarketTick::parse_with_time(br#"{"asset":"X","price":1,"volume":0}"#, Some(7)).unwrap().timestamp,
            7
        );
    }

    /// Whatever the fast path reads, serde reads the same; what serde rejects, the fast path leaves
    /// to serde (so the error message is serde's).
    fn same_as_serde(line: &[u8]) {
        let serde: Result<MarketTick, _> = from_json(line);
        for fast in [MarketTick::read_layout(line), MarketTick::read_scan(line)].into_iter().flatten() {
            assert_eq!(Ok(&fast), serde.as_ref(), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn fast_path_reads_as_serde_does() {
        use rand::{Rng, SeedableRng};
        let config =
            super::super::synthetic::GenConfig { events: 3_000, assets: 20, malformed: 0.2, ..Default::default() };
        let mut buf = Vec::new();
        super::super::synthetic::generate(&config, &mut buf).unwrap();
        let mut lines: Vec<Vec<u8>> = buf.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        let crafted: [&str; 30] = [
            SPEC,
            r#"{"asset":"X","price":1e2,"timestamp":"2024-01-07T10:00:00Z","volume":0E0}"#,
            r#"{"asset":"X","price":12345678901234567890123,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":"X","price":1e400,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":"X","price":0.1000000000000000055511151231257827,"timestamp":"2024-01-07T10:00:00Z","volume":-0}"#,
            r#"{"asset":"X","price":1,"price":2,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":"X\u0041","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":"€/USD","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00+02:00","volume":0}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-02-30T10:00:00Z","volume":0}"#,
            r#"{"asset":"X","price":1,"timestamp":null,"volume":0}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{"trend":"bullish","trend":"bearish"}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{"trend":null}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{"trend":"Bullish"}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{"trend":3}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":[1]}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":"hot"}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"extra":{"a":[1,2,{"b":null}]},"extra":true}"#,
            r#"  {"asset" : "X" , "price" : 1 , "timestamp" : "2024-01-07T10:00:00.5Z" , "volume" : 2 }  "#,
            r#"{"asset":"X","price":true,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":null,"price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0} trailing"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"indicators":{"sentiment_score":0.82},"market_context":{"volatility":"low","trend":"bullish","news_sentiment":"positive"}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"indicators":{"sentiment_score":null}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"indicators":{"sentiment_score":0.5,"sentiment_score":0.6}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"indicators":{"rsi":"x","sentiment_score":-0.25}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"indicators":null}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"indicators":{"sentiment_score":"high"}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{"volatility":3}}"#,
            r#"{"asset":"X","price":1,"timestamp":"2024-01-07T10:00:00Z","volume":0,"market_context":{"news_sentiment":null,"volatility":"extreme"}}"#,
        ];
        lines.extend(crafted.iter().map(|l| l.as_bytes().to_vec()));
        // Random edits of valid lines: a byte replaced, removed or inserted.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let alphabet = b"{}[]:,\"\\ 0123456789.eE+-abcdefnlrstuZT\x7f\xc3\xa9\x01";
        for i in 0..20_000 {
            let mut line = lines[i % 500].clone();
            for _ in 0..rng.random_range(1..=3) {
                if line.is_empty() {
                    break;
                }
                let at = rng.random_range(0..line.len());
                let c = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => line[at] = c,
                    1 => drop(line.remove(at)),
                    _ => line.insert(at, c),
                }
            }
            lines.push(line);
        }
        let count = |read: fn(&[u8]) -> Option<MarketTick>| lines.iter().filter(|l| read(l).is_some()).count();
        let (layout, scan) = (count(MarketTick::read_layout), count(MarketTick::read_scan));
        for line in &lines {
            same_as_serde(line);
        }
        // A record read from a block of lines is the line's record, and ends where the line does.
        let mut prefixed = 0;
        for (i, line) in lines.iter().enumerate() {
            let next = &lines[(i + 1) % lines.len()];
            for block in [[line.as_slice(), b"\n", next].concat(), [line.as_slice(), b"\r\n"].concat(), line.clone()] {
                if let Some((tick, n)) = MarketTick::parse_prefix(&block) {
                    assert_eq!(n, line.len(), "{}", String::from_utf8_lossy(line));
                    assert_eq!(MarketTick::parse(line), Ok(tick), "{}", String::from_utf8_lossy(line));
                    prefixed += 1;
                }
            }
        }
        // Most valid lines take each fast path, or the test would prove little.
        assert!(layout > 3_000 && scan > 3_000, "{layout} and {scan} of {} lines on the fast paths", lines.len());
        assert!(prefixed > 2 * 3_000, "{prefixed} blocks read by parse_prefix");
        let compact = SPEC.split_whitespace().collect::<String>();
        assert!(MarketTick::read_layout(compact.as_bytes()).is_some(), "the specification's example, compact");
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
