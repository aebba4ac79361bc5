//! A user's own pipeline, written only against inflight's public API: session VWAP bands.
//!
//! Market ticks in the specification's format → 1 s event-time bars per asset → the session VWAP
//! and its ±2σ band as of each bar's end, over the asset's ticks since 00:00 UTC of that day:
//! `vwap = Σ p·v / Σ v`, `σ = sqrt(Σ v·(p − vwap)² / Σ v)`. The bar's close is `ABOVE` the band,
//! `BELOW` it or `INSIDE`; a decision leaves when an asset's state changes, and on the first bar
//! of each session.
//!
//! ```sh
//! cargo run --release --example vwap_bands -- run --input ticks.jsonl --output out.jsonl
//! ```
//! Every runner flag works as for the bundled pipelines (`-w`, Kafka, checkpoints, `--serve`, …).

use inflight::app::{App, BuildCx, NoFlags, Pipeline};
use inflight::engine::{Millis, Sourced, Stream};
use inflight::operators::{Action, BarContext, Decision, ExactSum, KeyedStateExt, WindowExt};
use inflight::pipelines::trading::MarketTick;
use inflight::timely::dataflow::operators::vec::Map;
use serde::{Deserialize, Serialize};

const ALERT_ABOVE: Action = Action::new("ALERT_ABOVE");
const ALERT_BELOW: Action = Action::new("ALERT_BELOW");
const INSIDE: Action = Action::new("INSIDE");
const DAY_MS: Millis = 86_400_000;

/// Σ p·v, Σ p²·v and Σ v of a bar's ticks, summed exactly: a bar is the same whatever order its
/// ticks arrive in, so the output is the same at any parallelism.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Sums {
    pv: ExactSum,
    p2v: ExactSum,
    v: ExactSum,
}

impl Sums {
    fn of(price: f64, volume: f64) -> Sums {
        let mut s = Sums::default();
        s.pv.add(price * volume);
        s.p2v.add(price * price * volume);
        s.v.add(volume);
        s
    }
}

impl BarContext for Sums {
    fn fold(&mut self, tick: Sums, _latest: bool) {
        for (to, from) in [(&mut self.pv, tick.pv), (&mut self.p2v, tick.p2v), (&mut self.v, tick.v)] {
            to.add(from.value());
        }
    }
}

/// One asset's session so far. Bars reach it in time order, so plain `+=` is deterministic.
#[derive(Default, Serialize, Deserialize)]
struct Session {
    day: Option<Millis>,
    pv: f64,
    p2v: f64,
    v: f64,
    last: Option<Action>,
}

#[derive(Serialize)]
struct Evidence {
    vwap: f64,
    upper: f64,
    lower: f64,
    close: f64,
    sigma: f64,
    session_volume: f64,
}

struct VwapBands;

impl Pipeline for VwapBands {
    const NAME: &'static str = "vwap_bands";
    const ABOUT: &'static str = "Session VWAP ± 2σ bands per asset: ALERT_ABOVE / ALERT_BELOW / INSIDE";
    const ACTIONS: &'static [Action] = &[ALERT_ABOVE, ALERT_BELOW, INSIDE];
    type Event = MarketTick;
    type Config = ();
    type Flags = NoFlags;
    type Shared = ();

    fn prepare(_: &(), _: &NoFlags, _: usize) -> anyhow::Result<()> {
        Ok(())
    }

    fn build<'s>(cx: BuildCx<'_, 's, Self>, ticks: Stream<'s, Sourced<MarketTick>>) -> Stream<'s, Decision> {
        let source = cx.source.clone();
        ticks
            .map(|s: Sourced<MarketTick>| {
                let sums = Sums::of(s.event.price, s.event.volume);
                MarketTick::into_tick(s, sums)
            })
            .bars(1_000, cx.state("bars", 1))
            .keyed_state(cx.state("session", 1), move |session: &mut Session, bar, out| {
                let day = bar.start.div_euclid(DAY_MS);
                if session.day != Some(day) {
                    *session = Session { day: Some(day), ..Session::default() };
                }
                session.pv += bar.context.pv.value();
                session.p2v += bar.context.p2v.value();
                session.v += bar.context.v.value();
                if session.v <= 0.0 {
                    return; // no volume yet: no VWAP
                }
                let vwap = session.pv / session.v;
                // Σ v·(p − vwap)² / Σ v = Σ p²·v / Σ v − vwap²; rounding can leave it a hair below 0.
                let sigma = (session.p2v / session.v - vwap * vwap).max(0.0).sqrt();
                let (upper, lower) = (vwap + 2.0 * sigma, vwap - 2.0 * sigma);
                let action = match bar.close {
                    c if c > upper => ALERT_ABOVE,
                    c if c < lower => ALERT_BELOW,
                    _ => INSIDE,
                };
                if session.last.replace(action) == Some(action) {
                    return;
                }
                let evidence = Evidence { vwap, upper, lower, close: bar.close, sigma, session_volume: session.v };
                let reason =
                    format!("close {} against the band [{lower:.4}, {upper:.4}] around VWAP {vwap:.4}", bar.close);
                out.push(
                    Decision::new(Self::NAME, &bar.key, bar.end, action, 1.0)
                        .reason(reason)
                        .evidence(&evidence)
                        .source(&source, bar.last.1, bar.ingest_ns),
                );
            })
            .into_stream()
    }
}

fn main() {
    App::new("vwap_bands").about("Session VWAP bands on market ticks").pipeline::<VwapBands>().main()
}
