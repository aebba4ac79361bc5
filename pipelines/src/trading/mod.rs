//! The trading pipeline: market ticks → 1 s OHLCV bars per asset → RSI(14) and MACD(12,26,9) on bar
//! closes → rules → BUY / SELL / HOLD decisions with their evidence.
//!
//! ```text
//! events ─map(tick)─▶ bars(window) ─▶ indicators and rules (per asset, in time order, one keyed
//!        stage) ─▶ llm_decide (only with an LLM service; decisions below llm.min_confidence)
//! ```

pub mod backtest;
mod event;
mod rules;
mod sizing;
pub mod synthetic;
mod timeframe;

pub use event::{Context, EventIndicators, EventMacd, MarketContext, MarketEvent, MarketTick, News, Trend, Volatility};
use rules::{Indicated, WarmedUp};
pub use rules::{Scored, TradingRules};
use sizing::Sized;
pub use sizing::{Sizing, SizingOverride};
pub use timeframe::SlowBar;
use timeframe::SlowFrame;

use inflight_engine::serve::tap::LiveBar;
use inflight_engine::{Graph, Millis, SourceName, Sourced, Stream};
use inflight_operators::indicators::{Atr, Bollinger, Macd, MacdValue, Rsi, Stochastic};
use inflight_operators::{
    Action, Bar, BarContext, Decision, Emit, KeyByExt, KeyedStateExt, LlmConfig, LlmExt, LlmService, MapBatchesExt,
    Rules, Verdict, WindowExt,
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
    /// A slower timeframe (a multiple of `window_ms`): RSI and MACD on its bars reach the evidence
    /// and the `*_slow_*` filters of the rules.
    pub slow_window_ms: Option<Millis>,
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
    /// Position sizing of BUY and SELL (off unless the `[sizing]` table is there).
    pub sizing: Option<Sizing>,
    /// The LLM stage (off unless enabled).
    pub llm: LlmConfig,
}

/// The trading prompts: what the model sees of a bar the rules were unsure about.
const SYSTEM_PROMPT: &str = "You are a cautious trading assistant inside an automated pipeline. \
You get one asset's last 1-second OHLCV bar with RSI(14) and MACD(12,26,9) computed on bar closes \
(and, once they have values, Bollinger bands(20, 2), ATR(14) and the slow stochastic(14, 3, 3)), \
the market context of its closing tick (trend, volatility, news sentiment, sentiment score, where \
the producer sent them) and the decision a rule set made with low confidence. Decide {{ actions }}. \
Answer only with a JSON object {\"action\", \"reason\", \"confidence\"}: confidence in [0, 1], \
reason one short sentence naming the indicator values you used.";

const USER_PROMPT: &str = "Asset {{ key }}, bar ending {{ event_time }}.
Rules: {{ rule.action }} (confidence {{ rule.confidence }}): {{ rule.reason }}
Evidence: {{ evidence }}";

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            window_ms: 1_000,
            slow_window_ms: None,
            rsi_period: 14,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
            emit: Emit::Changes,
            rules: TradingRules::default(),
            sizing: None,
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
        match self.slow_window_ms {
            Some(slow) if slow <= self.window_ms || slow % self.window_ms != 0 => {
                let f = inflight_engine::time::format_duration;
                return Err(format!(
                    "the slow window {} must be a multiple of the window {} and longer",
                    f(slow),
                    f(self.window_ms)
                ));
            }
            None if self.rules.reads_slow() => {
                return Err("the rules' *_slow_* filters need a slow timeframe (a second --window, or \
                            slow_window_ms)"
                    .into());
            }
            _ => {}
        }
        if let Some(sizing) = &self.sizing {
            sizing.validate()?;
        }
        self.llm_config().validate()
    }

    /// Bars an asset needs before its first decision: RSI(n) needs n + 1 closes, MACD(f, s, g)
    /// s + g − 1 (TA-Lib's first values).
    pub fn warm_up_bars(&self) -> usize {
        (self.rsi_period + 1).max(self.macd_slow.max(self.macd_fast) + self.macd_signal - 1)
    }

    /// Why a run that read good ticks decided nothing (with `emit` changes or all, every asset's
    /// first indicator values give a decision, so no decision means no asset warmed up).
    pub fn no_decisions_hint(&self) -> String {
        let bars = self.warm_up_bars();
        let window = inflight_engine::time::format_duration(self.window_ms);
        format!(
            "no asset reached the {bars} bars of {window} that RSI({}) and MACD({},{},{}) need before a first \
             decision: the input covers less than {bars} x {window} of event time per asset (generate more events \
             per asset, or a lower --rate)",
            self.rsi_period, self.macd_fast, self.macd_slow, self.macd_signal
        )
    }

    /// The LLM settings with the trading prompts where the config gives none.
    pub fn llm_config(&self) -> LlmConfig {
        self.llm.clone().with_pipeline_defaults(SYSTEM_PROMPT, USER_PROMPT, ACTIONS)
    }
}

/// Per-asset state: the indicators, and the last action decided (for [`Emit::Changes`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Asset {
    rsi: Rsi,
    macd: Macd,
    /// TA-Lib's defaults: BBANDS(20, 2, 2, SMA), ATR(14), STOCH(14, 3, SMA, 3, SMA).
    bollinger: Bollinger,
    atr: Atr,
    stoch: Stochastic,
    last: Option<Action>,
    /// Units held, following the emitted sized decisions (0 without `[sizing]`).
    position: f64,
    /// The slow timeframe's bars and indicators (with `slow_window_ms`).
    slow: Option<SlowFrame>,
}

/// A bar's context is its latest tick's.
impl BarContext for Context {
    fn fold(&mut self, tick: Self, latest: bool) {
        if latest {
            *self = tick;
        }
    }
}

/// What the keyed stage sends on for a bar: its decision, if one leaves, and (with the live view
/// on) the bar to chart.
#[derive(Clone)]
// Unboxed: without the live view every step is a decision, and a box would be an allocation each.
#[allow(clippy::large_enum_variant)]
enum Step {
    Decided(Decision),
    Chart(LiveBar),
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

fn live_bar(bar: &Bar<Context>, rsi: Option<f64>, macd: Option<MacdValue>) -> LiveBar {
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
    let mut rules = config.rules.clone().with_source(source);
    if let Some(width) = config.slow_window_ms {
        rules = rules.with_slow(width);
    }
    let (rules, emit) = (WarmedUp(rules), config.emit);
    let (bands_read, stoch_read) = (config.rules.reads_bands(), config.rules.reads_stoch());
    // With the LLM stage the model may change the rules' action, so sizing waits for its decisions.
    let sizing = config.sizing.clone().filter(|_| llm.is_none());
    let hold_confidence = config.rules.hold_confidence;
    let serving = graph.taps().serving();
    let steps = events
        .map_batches(|s: Sourced<MarketTick>| {
            let context = s.event.context;
            MarketTick::into_tick(s, context)
        })
        // Version 2: a bar's context is its closing tick's trend, volatility, news and score.
        .bars(config.window_ms, graph.state("bars", 2))
        // A key's bars come out of `bars` in time order on the worker that owns it, and stay
        // there: the indicators and the rules are applied on arrival, in one keyed stage (as
        // `decide` would, which as a second stage cost about 5 % of a tick: every bar moved and
        // looked up once more).
        // Version 5: the assets carry Bollinger, ATR and stochastic state, their windows as rings,
        // the position, and the slow timeframe.
        .keyed_state(graph.state("assets", 5), move |state: &mut Option<Asset>, bar, out: &mut Vec<Step>| {
            let asset = state.get_or_insert_with(|| Asset {
                rsi: Rsi::new(c.rsi_period),
                macd: Macd::new(c.macd_fast, c.macd_slow, c.macd_signal),
                bollinger: Bollinger::new(20, 2.0),
                atr: Atr::new(14),
                stoch: Stochastic::new(14, 3, 3),
                last: None,
                position: 0.0,
                slow: None,
            });
            // All are fed every bar, so each keeps TA-Lib's warm-up; decide once RSI and MACD
            // have values (the others join the evidence when they have theirs).
            let rsi = asset.rsi.update(bar.close);
            let macd = asset.macd.update(bar.close);
            let atr = asset.atr.update(bar.high, bar.low, bar.close);
            asset.bollinger.push(bar.close);
            asset.stoch.push(bar.high, bar.low, bar.close);
            // Made on first use, also for an asset restored from a run without a slow timeframe.
            let slow = c.slow_window_ms.and_then(|width| {
                let new = || SlowFrame::new(Rsi::new(c.rsi_period), Macd::new(c.macd_fast, c.macd_slow, c.macd_signal));
                asset.slow.get_or_insert_with(new).push(bar.start, bar.end, bar.close, width)
            });
            // Every bar, warmed up or not, is charted by the live view.
            if serving {
                out.push(Step::Chart(live_bar(&bar, rsi, macd)));
            }
            // The bands and the stochastic are worked out for the rules that read them, and for
            // the bars that are explained (most bars are not: decisions leave on changes).
            let bollinger = bands_read.then(|| asset.bollinger.value()).flatten();
            let stoch = stoch_read.then(|| asset.stoch.value()).flatten();
            let mut indicated = Indicated { bar, rsi, macd, bollinger, atr, stoch, slow };
            let Some(mut verdict) = rules.verdict(&indicated) else { return };
            // A BUY or SELL is sized before it is compared with the last action: one that cannot
            // be sized is a HOLD.
            let traded = verdict.action;
            let sized = match &sizing {
                Some(s) if !traded.is(Action::HOLD) => Some(s.size(&indicated.bar.key, traded, atr, asset.position)),
                _ => None,
            };
            if let Some(Sized::Held(_)) = sized {
                verdict = Verdict { action: Action::HOLD, confidence: hold_confidence };
            }
            if !asset.last.replace(verdict.action).is_some_and(|a| a.is(verdict.action)) || emit == Emit::All {
                indicated.bollinger = indicated.bollinger.or_else(|| asset.bollinger.value());
                indicated.stoch = indicated.stoch.or_else(|| asset.stoch.value());
                let mut decision = rules.explain(indicated, verdict);
                if sizing.is_some() {
                    // Only emitted decisions move the position: they are the ones acted on.
                    record_sizing(&mut decision, sized, traded, &mut asset.position);
                }
                out.push(Step::Decided(decision));
            }
        });
    if serving {
        let charts = steps.clone().flat_map_keyed(|s| match s {
            Step::Chart(bar) => Some(bar),
            Step::Decided(_) => None,
        });
        graph.taps().live_bars(charts.into_stream());
    }
    let decisions = steps
        .flat_map_keyed(|s| match s {
            Step::Decided(d) => Some(d),
            Step::Chart(_) => None,
        })
        .into_stream();
    match (llm, config.sizing.clone()) {
        (Some(service), Some(sizing)) => size_decided(graph, decisions.llm_decide(service), sizing, hold_confidence),
        (Some(service), None) => decisions.llm_decide(service),
        (None, _) => decisions,
    }
}

/// Writes what sizing made of an emitted decision into it, and moves the position.
fn record_sizing(decision: &mut Decision, sized: Option<Sized>, traded: Action, position: &mut f64) {
    match sized {
        Some(Sized::Trade { size, after, how }) => {
            decision.reason = format!("{}; {how}", decision.reason);
            decision.suggested_size = Some(size);
            *position = after;
        }
        Some(Sized::Held(why)) => decision.reason = format!("{traded} held: {why} ({})", decision.reason),
        None => {}
    }
    decision.position_after = Some(*position);
}

/// Sizes the decisions that leave the LLM stage (the model's action, or the rules' where they
/// stood): back on the asset's worker and in event-time order, as they leave the stage in reply
/// order, with the position per asset as checkpointed keyed state. The same at any parallelism
/// as the replies are (a replayed log gives the same positions).
fn size_decided<'s>(
    graph: &Graph<'s>,
    decisions: Stream<'s, Decision>,
    sizing: Sizing,
    hold_confidence: f64,
) -> Stream<'s, Decision> {
    decisions
        .key_by()
        .keyed_state(
            graph.state("positions", 1),
            move |position: &mut f64, mut d: Decision, out: &mut Vec<Decision>| {
                let traded = d.action;
                let sized = (!traded.is(Action::HOLD)).then(|| {
                    let atr = d.evidence.to_value().get("atr").and_then(serde_json::Value::as_f64);
                    sizing.size(&d.key, traded, atr, *position)
                });
                if let Some(Sized::Held(_)) = sized {
                    (d.action, d.confidence) = (Action::HOLD, hold_confidence);
                }
                record_sizing(&mut d, sized, traded, position);
                out.push(d);
            },
        )
        .into_stream()
}
