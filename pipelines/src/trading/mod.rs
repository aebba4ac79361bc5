//! The trading pipeline: market ticks → 1 s OHLCV bars per asset → RSI(14) and MACD(12,26,9) on bar
//! closes → rules → BUY / SELL / HOLD decisions with their evidence.
//!
//! ```text
//! events ─map(tick)─▶ bars(window) ─▶ indicators (per asset, in time order) ─▶ decide(rules, emit)
//!        ─▶ llm_decide (only with an LLM service; decisions below llm.min_confidence)
//! ```

mod event;
mod rules;
pub mod synthetic;

pub use event::{EventIndicators, EventMacd, MarketContext, MarketEvent, MarketTick, Trend};
use rules::{Indicated, WarmedUp};
pub use rules::{Scored, TradingRules};

use inflight_engine::serve::tap::LiveBar;
use inflight_engine::{Graph, Millis, SourceName, Sourced, Stream};
use inflight_operators::indicators::{Macd, MacdValue, Rsi};
use inflight_operators::{
    Action, Bar, DecideExt, Decision, Emit, KeyedStateExt, LlmConfig, LlmExt, LlmService, MapBatchesExt, WindowExt,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The actions of trading decisions.
pub const ACTIONS: &[Action] = &[Action::BUY, Action::SELL, Action::HOLD];

/// The trading pipeline's settings (TOML `[trading]`-free: the file holds these keys at top level).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingConfig {
    /// Bar width in milliseconds.
    pub window_ms: Millis,
    /// RSI period.
    pub rsi_period: usize,
    /// MACD fast period.
    pub macd_fast: usize,
    /// MACD slow period.
    pub macd_slow: usize,
    /// MACD signal period.
    pub macd_signal: usize,
    /// Which decisions to emit.
    pub emit: Emit,
    /// The decision rules.
    pub rules: TradingRules,
    /// The LLM stage (off unless enabled).
    pub llm: LlmConfig,
}

/// The trading prompts: what the model sees of a bar the rules were unsure about.
const SYSTEM_PROMPT: &str = "You are a cautious trading assistant inside an automated pipeline. \
You get one asset's last 1-second OHLCV bar with RSI(14) and MACD(12,26,9) computed on bar closes, \
and the decision a rule set made with low confidence. Decide {{ actions }}. \
Answer only with a JSON object {\"action\", \"reason\", \"confidence\"}: confidence in [0, 1], \
reason one short sentence naming the indicator values you used.";

const USER_PROMPT: &str = "Asset {{ key }}, bar ending {{ event_time }}.
Rules: {{ rule.action }} (confidence {{ rule.confidence }}): {{ rule.reason }}
Evidence: {{ evidence }}";

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            window_ms: 1_000,
            rsi_period: 14,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
            emit: Emit::Changes,
            rules: TradingRules::default(),
            // A HOLD from the rules is sent to the model at 0.65: a BUY or SELL must come at more than 0.85.
            llm: LlmConfig { override_margin: 0.2, ..LlmConfig::default() },
        }
    }
}

impl TradingConfig {
    /// Checks values a run cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.window_ms == 0 {
            return Err("window must be longer than 0 ms".into());
        }
        if self.rsi_period == 0 || self.macd_fast == 0 || self.macd_slow == 0 || self.macd_signal == 0 {
            return Err("indicator periods must be at least 1".into());
        }
        self.rules.validate()?;
        self.llm_config().validate()
    }

    /// The LLM settings with the trading prompts where the config gives none.
    pub fn llm_config(&self) -> LlmConfig {
        self.llm.clone().with_pipeline_defaults(SYSTEM_PROMPT, USER_PROMPT, ACTIONS)
    }
}

/// Per-asset indicator state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Indicators {
    rsi: Rsi,
    macd: Macd,
}

/// A bar with its indicators as the live view charts it (`/api/keys/{key}/bars`).
#[derive(Serialize)]
struct BarView {
    time: Millis,
    start: Millis,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    rsi: Option<f64>,
    macd: Option<MacdValue>,
}

fn live_bar(bar: &Bar<Option<Trend>>, rsi: Option<f64>, macd: Option<MacdValue>) -> LiveBar {
    let view = BarView {
        time: bar.end,
        start: bar.start,
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: bar.volume.value(),
        rsi,
        macd,
    };
    // Plain numbers and options: serializing cannot fail.
    let json = serde_json::to_string(&view).unwrap_or_default();
    LiveBar { key: bar.key.to_string(), time: bar.end, json }
}

/// Builds the trading dataflow from parsed market events; `source` names the input in decisions.
pub fn trading<'s>(
    graph: &Graph<'s>,
    events: Stream<'s, Sourced<MarketTick>>,
    config: &TradingConfig,
    source: SourceName,
    llm: Option<&Arc<LlmService>>,
) -> Stream<'s, Decision> {
    let c = config.clone();
    let indicated = events
        .map_batches(|s: Sourced<MarketTick>| {
            let trend = s.event.trend;
            MarketTick::into_tick(s, trend)
        })
        .bars(config.window_ms, graph.state("bars", 1))
        // A key's bars come out of `bars` in time order on the worker that owns it, and stay there:
        // the stateful steps after it apply them on arrival instead of waiting for the frontier.
        .keyed_state(graph.state("indicators", 1), move |state: &mut Option<Indicators>, bar, out| {
            let ind = state.get_or_insert_with(|| Indicators {
                rsi: Rsi::new(c.rsi_period),
                macd: Macd::new(c.macd_fast, c.macd_slow, c.macd_signal),
            });
            // Both are fed every bar, so each keeps TA-Lib's warm-up; decide once both have values.
            let rsi = ind.rsi.update(bar.close);
            let macd = ind.macd.update(bar.close);
            out.push(Indicated { bar, rsi, macd });
        });
    // Every bar, warmed up or not, is charted by the live view.
    graph.taps().bars(indicated.stream(), |i: &Indicated| live_bar(&i.bar, i.rsi, i.macd));
    let decisions =
        indicated.decide(graph.state("decide", 1), WarmedUp(config.rules.clone().with_source(source)), config.emit);
    match llm {
        Some(service) => decisions.llm_decide(service),
        None => decisions,
    }
}
