//! The three bundled pipelines as [`Pipeline`]s: ordinary users of the runner, registered by
//! `src/main.rs` as a user's binary registers its own.

use crate::app::{BuildCx, Bundled, EmitFlag, NoFlags, Pipeline, SideInput};
use crate::engine::Stream;
use crate::engine::event::Sourced;
use crate::engine::time::{Millis, parse_duration};
use crate::operators::{Action, Decision, LlmConfig, ReplyCheck};
use crate::pipelines::code::{CodeConfig, CodeEvent, code};
use crate::pipelines::flight::{self, FlightConfig, FlightInput, RefTable, Reference};
use crate::pipelines::trading::{MarketTick, TradingConfig, trading};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::sync::Arc;

/// Market ticks → 1 s bars → RSI/MACD → BUY/SELL/HOLD.
pub struct Trading;

/// The trading pipeline's flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TradingFlags {
    /// Bar width, e.g. 1s or 500ms [default: 1s]. Given twice (`--window 1s --window 1m`), the
    /// longer is a slow timeframe whose RSI and MACD reach the evidence (`rsi_1m`) and the rules.
    #[arg(long, env = "INFLIGHT_WINDOW", value_parser = parse_duration, value_delimiter = ',')]
    pub window: Vec<u64>,
    /// A decision only when the action changes, or for every bar [default: changes].
    #[arg(long, env = "INFLIGHT_EMIT")]
    pub emit: Option<EmitFlag>,
}

impl Pipeline for Trading {
    const NAME: &'static str = "trading";
    const ABOUT: &'static str = "Market ticks → bars → RSI/MACD → BUY/SELL/HOLD";
    const ACTIONS: &'static [Action] = crate::pipelines::trading::ACTIONS;
    type Event = MarketTick;
    type Config = TradingConfig;
    type Flags = TradingFlags;
    type Shared = ();

    fn sample() -> Option<Bundled> {
        Some(crate::bundled!("data/market-sample.jsonl"))
    }

    fn settle(config: &TradingConfig) -> Millis {
        config.window_ms
    }

    fn no_decisions_hint(config: &TradingConfig) -> Option<String> {
        Some(config.no_decisions_hint())
    }

    fn configure(config: &mut TradingConfig, flags: &TradingFlags) -> Result<()> {
        match flags.window[..] {
            [] => {}
            [w] => config.window_ms = w,
            [a, b] => (config.window_ms, config.slow_window_ms) = (a.min(b), Some(a.max(b))),
            _ => bail!("--window is given at most twice: a bar width and a slow timeframe"),
        }
        if let Some(e) = flags.emit {
            config.emit = e.into();
        }
        Ok(())
    }

    fn llm_settings(config: &mut TradingConfig) -> Option<&mut LlmConfig> {
        Some(&mut config.llm)
    }

    fn llm_config(config: &TradingConfig) -> Option<LlmConfig> {
        Some(config.llm_config())
    }

    fn validate(config: &TradingConfig) -> Result<(), String> {
        config.validate()
    }

    fn prepare(_: &TradingConfig, _: &TradingFlags, _: usize) -> Result<()> {
        Ok(())
    }

    fn build<'s>(cx: BuildCx<'_, 's, Self>, events: Stream<'s, Sourced<MarketTick>>) -> Stream<'s, Decision> {
        trading(cx.graph, events, cx.config, cx.source, cx.llm)
    }
}

/// Flight status + schedule + bookings → REBOOK/PROTECT/ESCALATE/NONE per affected booking.
pub struct Flight;

/// The flight pipeline's flags: its reference data and live changes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FlightFlags {
    /// The schedule at start, JSONL [default: data/flight-schedule.jsonl].
    #[arg(long, env = "INFLIGHT_SCHEDULE")]
    pub schedule: Option<PathBuf>,
    /// The bookings at start, JSONL [default: data/flight-bookings.jsonl].
    #[arg(long, env = "INFLIGHT_BOOKINGS")]
    pub bookings: Option<PathBuf>,
    /// A second input of live schedule/booking changes (upserts and deletes), a file or `-`.
    #[arg(long, conflicts_with = "updates_topic")]
    pub updates: Option<String>,
    /// Read live changes from this Kafka topic.
    #[arg(long)]
    pub updates_topic: Option<String>,
    /// Minimum connection time where the config names none for the airport [default: 45m].
    #[arg(long, value_parser = parse_duration)]
    pub mct: Option<u64>,
    /// Only bookings that need an action, or also NONE [default: changes].
    #[arg(long, env = "INFLIGHT_EMIT")]
    pub emit: Option<EmitFlag>,
}

impl Pipeline for Flight {
    const NAME: &'static str = "flight";
    const ABOUT: &'static str = "Flight status + schedule + bookings → REBOOK/PROTECT/ESCALATE/NONE per booking";
    const ACTIONS: &'static [Action] = flight::ACTIONS;
    type Event = FlightInput;
    type Config = FlightConfig;
    type Flags = FlightFlags;
    type Shared = Reference;

    fn sample() -> Option<Bundled> {
        Some(crate::bundled!("data/flight-sample.jsonl"))
    }

    fn file_max_lag() -> Millis {
        flight::FILE_MAX_LAG
    }

    fn configure(config: &mut FlightConfig, flags: &FlightFlags) -> Result<()> {
        if let Some(e) = flags.emit {
            config.emit = e.into();
        }
        if let Some(mct) = flags.mct {
            if mct % 60_000 != 0 {
                bail!("--mct must be whole minutes, e.g. 45m");
            }
            config.mct.default_minutes = u32::try_from(mct / 60_000).unwrap_or(u32::MAX);
        }
        Ok(())
    }

    fn llm_settings(config: &mut FlightConfig) -> Option<&mut LlmConfig> {
        Some(&mut config.llm)
    }

    fn llm_config(config: &FlightConfig) -> Option<LlmConfig> {
        Some(config.llm_config())
    }

    fn validate(config: &FlightConfig) -> Result<(), String> {
        config.validate()
    }

    fn side_inputs(flags: &FlightFlags) -> Vec<SideInput> {
        match (&flags.updates, &flags.updates_topic) {
            (Some(path), _) => vec![SideInput::File(path.clone())],
            (None, Some(topic)) => vec![SideInput::Topic(topic.clone())],
            (None, None) => Vec::new(),
        }
    }

    fn prepare(_: &FlightConfig, flags: &FlightFlags, process: usize) -> Result<Reference> {
        // The sample's tables travel with the binary, like the sample.
        let table = |flag: &Option<PathBuf>, bundled: Bundled| match flag {
            Some(path) => RefTable::File(path.clone()),
            None => RefTable::Text { name: bundled.name, text: std::str::from_utf8(bundled.bytes).unwrap_or_default() },
        };
        let schedule = table(&flags.schedule, crate::bundled!("data/flight-schedule.jsonl"));
        let bookings = table(&flags.bookings, crate::bundled!("data/flight-bookings.jsonl"));
        let reference = Reference::load(&schedule, &bookings)?;
        if process == 0 {
            eprintln!(
                "inflight: flight reference: {} flights, {} bookings",
                reference.flights.len(),
                reference.bookings.len()
            );
        }
        Ok(reference)
    }

    fn build<'s>(cx: BuildCx<'_, 's, Self>, events: Stream<'s, Sourced<FlightInput>>) -> Stream<'s, Decision> {
        flight::flight(cx.graph, events, cx.config, cx.shared, cx.source, cx.llm)
    }
}

/// Code + error context → a validated fix (FIX) or a suggestion (SUGGEST) with its diff.
pub struct Code;

impl Pipeline for Code {
    const NAME: &'static str = "code";
    const ABOUT: &'static str = "Code + error context → a validated fix (FIX) or a suggestion (SUGGEST)";
    const ACTIONS: &'static [Action] = crate::pipelines::code::ACTIONS;
    type Event = CodeEvent;
    type Config = CodeConfig;
    type Flags = NoFlags;
    type Shared = ();

    fn sample() -> Option<Bundled> {
        Some(crate::bundled!("data/code-sample.jsonl"))
    }

    fn llm_settings(config: &mut CodeConfig) -> Option<&mut LlmConfig> {
        Some(&mut config.llm)
    }

    fn llm_config(config: &CodeConfig) -> Option<LlmConfig> {
        Some(config.llm_config())
    }

    fn reply_check() -> Option<Arc<dyn ReplyCheck>> {
        Some(CodeConfig::check())
    }

    fn validate(config: &CodeConfig) -> Result<(), String> {
        config.validate()
    }

    fn prepare(_: &CodeConfig, _: &NoFlags, _: usize) -> Result<()> {
        Ok(())
    }

    fn build<'s>(cx: BuildCx<'_, 's, Self>, events: Stream<'s, Sourced<CodeEvent>>) -> Stream<'s, Decision> {
        code(events, cx.source, cx.llm)
    }
}
