//! Deterministic synthetic market data: random-walk prices per asset at a steady event rate, with
//! optional out-of-order and malformed lines for testing. The same seed gives the same bytes.

use super::event::{MarketContext, MarketEvent, Trend};
use inflight_engine::Millis;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{self, Write};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Number of lines.
    pub events: u64,
    /// Number of assets.
    pub assets: usize,
    /// Random seed.
    pub seed: u64,
    /// Event time of the first event (ms since the epoch).
    pub start_ms: Millis,
    /// Events per second of event time, over all assets.
    pub rate: f64,
    /// Fraction of events whose timestamp is moved back by up to `max_delay_ms`.
    pub out_of_order: f64,
    /// Largest backwards shift of an out-of-order event.
    pub max_delay_ms: Millis,
    /// Fraction of lines that are malformed or invalid.
    pub malformed: f64,
}

impl GenConfig {
    /// The event rate that gives each of `assets` assets 10 ticks per second of event time: ten
    /// ticks to a default 1 s bar, so `events / assets / 10` bars per asset.
    pub fn rate_for(assets: usize) -> f64 {
        10.0 * assets.max(1) as f64
    }
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            events: 10_000,
            assets: 10,
            seed: 42,
            start_ms: 1_704_621_600_000, // 2024-01-07T10:00:00Z, the specification's example time
            rate: 10_000.0,
            out_of_order: 0.0,
            max_delay_ms: 500,
            malformed: 0.0,
        }
    }
}

const NAMED: [&str; 12] = [
    "BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ADA/USD", "DOGE/USD", "AAPL", "MSFT", "NVDA", "TSLA", "EUR/USD",
    "GBP/USD",
];

/// The name of asset `i`: well-known symbols first, then `SYM00042`.
pub fn asset_name(i: usize) -> String {
    NAMED.get(i).map_or_else(|| format!("SYM{i:05}"), |s| (*s).to_owned())
}

struct Walk {
    name: String,
    price: f64,
    trend: Trend,
}

/// A deterministic market: random-walk prices for a set of assets, one tick at a time.
pub struct Market {
    rng: ChaCha8Rng,
    walks: Vec<Walk>,
}

impl Market {
    /// A market of `assets` assets (at least 1) seeded with `seed`.
    pub fn new(assets: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let walks = (0..assets.max(1))
            .map(|i| Walk {
                name: asset_name(i),
                // Log-uniform starting prices between 1 and 50,000.
                price: (rng.random::<f64>() * 50_000f64.ln()).exp().max(1.0),
                trend: Trend::Neutral,
            })
            .collect();
        Market { rng, walks }
    }

    /// The next tick, of a random asset, at event time `time`.
    pub fn tick(&mut self, time: Millis) -> MarketEvent {
        let rng = &mut self.rng;
        let n = self.walks.len();
        let w = &mut self.walks[rng.random_range(0..n)];
        if rng.random::<f64>() < 0.01 {
            w.trend = [Trend::Bullish, Trend::Bearish, Trend::Neutral][rng.random_range(0..3)];
        }
        let drift = match w.trend {
            Trend::Bullish => 0.000_2,
            Trend::Bearish => -0.000_2,
            _ => 0.0,
        };
        w.price = (w.price * (1.0 + drift + (rng.random::<f64>() - 0.5) * 0.004)).max(0.01);
        MarketEvent {
            asset: w.name.as_str().into(),
            price: (w.price * 100.0).round() / 100.0,
            timestamp: time,
            volume: (rng.random::<f64>() * 1000.0).round() / 100.0,
            indicators: None,
            market_context: Some(MarketContext {
                volatility: Some(["low", "medium", "high"][rng.random_range(0..3)].into()),
                trend: Some(w.trend),
                news_sentiment: Some(["positive", "neutral", "negative"][rng.random_range(0..3)].into()),
            }),
        }
    }
}

/// Writes `config.events` JSON lines to `out`.
pub fn generate(config: &GenConfig, out: &mut impl Write) -> io::Result<()> {
    if config.assets == 0 || config.rate.is_nan() || config.rate <= 0.0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "need at least one asset and a positive rate"));
    }
    let mut market = Market::new(config.assets, config.seed);
    let step_ms = 1_000.0 / config.rate;
    for i in 0..config.events {
        let mut time = config.start_ms + (i as f64 * step_ms) as Millis;
        if config.out_of_order > 0.0 && market.rng.random::<f64>() < config.out_of_order {
            time = time.saturating_sub(market.rng.random_range(1..=config.max_delay_ms.max(1)));
        }
        let event = market.tick(time);
        let line = serde_json::to_string(&event).map_err(io::Error::other)?;
        if config.malformed > 0.0 && market.rng.random::<f64>() < config.malformed {
            writeln!(out, "{}", corrupt(&line, &mut market.rng))?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()
}

/// One of the ways a producer gets a record wrong.
fn corrupt(line: &str, rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..6) {
        0 => line[..rng.random_range(1..line.len())].to_owned(),
        1 => line.replacen("\"price\":", "\"prize\":", 1),
        2 => line.replacen("\"price\":", "\"price\":\"high\",\"was\":", 1),
        3 => line.replacen("\"timestamp\":\"", "\"timestamp\":\"at ", 1),
        4 => line.replacen("\"price\":", "\"price\":-", 1),
        _ => "this is not json".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inflight_engine::Event;

    fn lines(config: &GenConfig) -> Vec<String> {
        let mut buf = Vec::new();
        generate(config, &mut buf).unwrap();
        String::from_utf8(buf).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn same_seed_same_bytes_and_all_parse() {
        let c = GenConfig { events: 500, assets: 7, ..GenConfig::default() };
        let a = lines(&c);
        assert_eq!(a, lines(&c));
        assert_ne!(a, lines(&GenConfig { seed: 7, ..c.clone() }));
        assert_eq!(a.len(), 500);
        let times: Vec<u64> = a.iter().map(|l| MarketEvent::parse(l.as_bytes()).unwrap().timestamp).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order without --out-of-order");
    }

    #[test]
    fn malformed_fraction_produces_bad_lines() {
        let c = GenConfig { events: 2_000, malformed: 0.1, ..GenConfig::default() };
        let bad = lines(&c).iter().filter(|l| MarketEvent::parse(l.as_bytes()).is_err()).count();
        assert!((100..=300).contains(&bad), "{bad} bad lines");
    }

    #[test]
    fn out_of_order_fraction_moves_times_back() {
        let c = GenConfig { events: 2_000, out_of_order: 0.2, max_delay_ms: 300, ..GenConfig::default() };
        let times: Vec<u64> = lines(&c).iter().map(|l| MarketEvent::parse(l.as_bytes()).unwrap().timestamp).collect();
        let back = times.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(back > 100, "{back} backward steps");
    }
}
