//! A user's own pipeline, written only against inflight's public API: card velocity checks.
//!
//! Payments keyed by card, joined as of each payment's time with a merchant table given at start
//! (`--merchants`) and changed live by upserts from a second input (`--updates`). Per payment, its
//! window is the card's payments in `(t − 10 min, t]` that come before it (in time, then input
//! order) plus itself:
//! - `BLOCK` (0.9) if count ≥ 5, or the merchant's risk is high and the total ≥ 1000;
//! - else `REVIEW` (0.6) if count ≥ 3, or the risk is high, or a payment in the window has
//!   another country than this one;
//! - else `ALLOW` (0.95).
//!
//! REVIEW goes to the LLM stage when `--llm` is given.
//!
//! ```sh
//! cargo run --release --example card_velocity -- run --input payments.jsonl \
//!     --merchants merchants.jsonl --updates merchant-updates.jsonl --output out.jsonl
//! ```

use inflight::app::{App, BuildCx, Pipeline, SideInput};
use inflight::engine::time::rfc3339;
use inflight::engine::{Event, Key, Millis, ParseError, Position, Sourced, Stream};
use inflight::operators::{
    Action, Decision, ExactSum, KeyByExt, Keyed, KeyedStateExt, LlmConfig, LlmExt, LookupExt, saved_upsert_table,
};
use inflight::timely::dataflow::operators::vec::Map;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;

const ALLOW: Action = Action::new("ALLOW");
const REVIEW: Action = Action::new("REVIEW");
const BLOCK: Action = Action::new("BLOCK");
const WINDOW_MS: Millis = 10 * 60_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payment {
    card_id: Key,
    merchant_id: Key,
    amount: f64,
    currency: String,
    #[serde(with = "rfc3339")]
    timestamp: Millis,
    country: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Risk {
    #[default]
    Low,
    Medium,
    High,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Merchant {
    merchant_id: Key,
    category: String,
    risk: Risk,
}

/// One record of either input: a payment, or a merchant upsert.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum CardInput {
    Payment(Payment),
    Merchant { time: Millis, merchant: Merchant },
}

/// Tells the two record kinds apart: updates carry `op`.
#[derive(Deserialize)]
struct Probe {
    op: Option<String>,
}

#[derive(Deserialize)]
struct Update {
    #[serde(with = "rfc3339")]
    timestamp: Millis,
    merchant: Merchant,
}

impl Event for CardInput {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let malformed = |e: serde_json::Error| ParseError::malformed(e.to_string());
        match serde_json::from_slice::<Probe>(line).map_err(malformed)?.op.as_deref() {
            Some("upsert") => {
                let u: Update = serde_json::from_slice(line).map_err(malformed)?;
                Ok(CardInput::Merchant { time: u.timestamp, merchant: u.merchant })
            }
            Some(op) => Err(ParseError::invalid(format!("op {op:?} is not supported (only \"upsert\")"))),
            None => {
                let p: Payment = serde_json::from_slice(line).map_err(malformed)?;
                if p.card_id.is_empty() || !p.amount.is_finite() || p.amount < 0.0 {
                    return Err(ParseError::invalid("card_id must not be empty and amount must be ≥ 0"));
                }
                Ok(CardInput::Payment(p))
            }
        }
    }

    fn event_time(&self) -> Millis {
        match self {
            CardInput::Payment(p) => p.timestamp,
            CardInput::Merchant { time, .. } => *time,
        }
    }
}

/// A payment with its merchant's risk as of its time, on its way to the card's state.
#[derive(Clone, Serialize, Deserialize)]
struct Risked {
    payment: Sourced<Payment>,
    risk: Risk,
}

impl Keyed for Risked {
    fn key(&self) -> &Key {
        &self.payment.event.card_id
    }
}

/// A payment of the card's window.
#[derive(Serialize, Deserialize)]
struct Seen {
    time: Millis,
    pos: Position,
    amount: f64,
    country: String,
}

/// A card's payments of the last 10 minutes of its event time, in (time, input order).
#[derive(Default, Serialize, Deserialize)]
struct Card {
    recent: VecDeque<Seen>,
}

#[derive(Serialize)]
struct Evidence<'a> {
    count: usize,
    total: f64,
    risk: Risk,
    merchant_id: &'a str,
    amount: f64,
    currency: &'a str,
    other_country: bool,
}

#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CardConfig {
    llm: LlmConfig,
}

#[derive(clap::Args, Clone, Debug, Default)]
struct CardFlags {
    /// The merchant table at start, JSONL (without it every merchant counts as low risk).
    #[arg(long)]
    merchants: Option<PathBuf>,
    /// A second input of live merchant upserts, a file or `-`.
    #[arg(long, conflicts_with = "updates_topic")]
    updates: Option<String>,
    /// Read merchant upserts from this Kafka topic.
    #[arg(long)]
    updates_topic: Option<String>,
}

const SYSTEM_PROMPT: &str = "You review card payments flagged by velocity rules. You get one payment, \
the card's payments of the last 10 minutes and the merchant's risk. Decide {{ actions }}. Answer only \
with a JSON object {\"action\", \"reason\", \"confidence\"}: confidence in [0, 1], reason one short sentence.";

const USER_PROMPT: &str = "Card {{ key }}, payment at {{ event_time }}.
Rules: {{ rule.action }} (confidence {{ rule.confidence }}): {{ rule.reason }}
Evidence: {{ evidence }}";

struct CardVelocity;

impl Pipeline for CardVelocity {
    const NAME: &'static str = "card_velocity";
    const ABOUT: &'static str = "Card velocity per payment: ALLOW / REVIEW / BLOCK";
    const ACTIONS: &'static [Action] = &[ALLOW, REVIEW, BLOCK];
    type Event = CardInput;
    type Config = CardConfig;
    type Flags = CardFlags;
    type Shared = Vec<(Key, Merchant)>;

    /// Payments wait in the lookup until the merchant updates have passed their time: bound how
    /// far one worker's file chunk may run ahead of the others' (as the flight pipeline does).
    fn file_max_lag() -> Millis {
        5_000
    }

    fn llm_settings(config: &mut CardConfig) -> Option<&mut LlmConfig> {
        Some(&mut config.llm)
    }

    fn llm_config(config: &CardConfig) -> Option<LlmConfig> {
        Some(config.llm.clone().with_pipeline_defaults(SYSTEM_PROMPT, USER_PROMPT, Self::ACTIONS))
    }

    fn side_inputs(flags: &CardFlags) -> Vec<SideInput> {
        match (&flags.updates, &flags.updates_topic) {
            (Some(path), _) => vec![SideInput::File(path.clone())],
            (None, Some(topic)) => vec![SideInput::Topic(topic.clone())],
            (None, None) => Vec::new(),
        }
    }

    fn prepare(_: &CardConfig, flags: &CardFlags, _process: usize) -> anyhow::Result<Self::Shared> {
        let Some(path) = &flags.merchants else { return Ok(Vec::new()) };
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let m: Merchant =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
            rows.push((m.merchant_id.clone(), m));
        }
        Ok(rows)
    }

    fn build<'s>(cx: BuildCx<'_, 's, Self>, events: Stream<'s, Sourced<CardInput>>) -> Stream<'s, Decision> {
        let source = cx.source.clone();
        let updates = events.clone().flat_map(|s: Sourced<CardInput>| match s.event {
            CardInput::Merchant { time, merchant } => Some((merchant.merchant_id.clone(), Some(merchant), time)),
            CardInput::Payment(_) => None,
        });
        let merchants = saved_upsert_table(updates, &cx.shared[..], cx.state("merchants", 1), "Merchants");
        let payments = events.flat_map(|s: Sourced<CardInput>| match s.event {
            CardInput::Payment(p) => {
                Some((p.merchant_id.clone(), Sourced { event: p, pos: s.pos, ingest_ns: s.ingest_ns }))
            }
            CardInput::Merchant { .. } => None,
        });
        let decisions = payments
            .lookup(
                &merchants,
                cx.state("merchant-of-payment", 1),
                |p: &Sourced<Payment>| p.event.timestamp,
                |payment, found: &[&Merchant], out| {
                    out.push(Risked { payment, risk: found.first().map_or(Risk::Low, |m| m.risk) })
                },
            )
            .key_by()
            .keyed_state_ordered(
                cx.state("cards", 1),
                |a: &Risked, b: &Risked| {
                    (a.payment.event.timestamp, a.payment.pos).cmp(&(b.payment.event.timestamp, b.payment.pos))
                },
                move |card: &mut Card, r: Risked, out| {
                    let (p, t, pos) = (&r.payment.event, r.payment.event.timestamp, r.payment.pos);
                    // Where it goes in (time, input order): a late payment sees only those before it.
                    let at = card.recent.partition_point(|s| (s.time, s.pos) < (t, pos));
                    let window = card.recent.range(..at).filter(|s| s.time + WINDOW_MS > t);
                    let (mut count, mut total, mut other_country) = (1, ExactSum::default(), false);
                    total.add(p.amount);
                    for s in window {
                        count += 1;
                        total.add(s.amount);
                        other_country |= s.country != p.country;
                    }
                    let total = total.value();
                    let (action, confidence, reason) = if count >= 5 {
                        (BLOCK, 0.9, format!("{count} payments in 10 minutes"))
                    } else if r.risk == Risk::High && total >= 1000.0 {
                        (BLOCK, 0.9, format!("{total:.2} in 10 minutes at a high-risk merchant"))
                    } else if count >= 3 {
                        (REVIEW, 0.6, format!("{count} payments in 10 minutes"))
                    } else if r.risk == Risk::High {
                        (REVIEW, 0.6, "a high-risk merchant".to_owned())
                    } else if other_country {
                        (REVIEW, 0.6, format!("another country than {} within 10 minutes", p.country))
                    } else {
                        (ALLOW, 0.95, format!("{count} payment(s), {total:.2} in 10 minutes"))
                    };
                    let evidence = Evidence {
                        count,
                        total,
                        risk: r.risk,
                        merchant_id: &p.merchant_id,
                        amount: p.amount,
                        currency: &p.currency,
                        other_country,
                    };
                    out.push(
                        Decision::new(Self::NAME, &p.card_id, t, action, confidence)
                            // One card may pay twice in a millisecond: the position keeps ids unique.
                            .id(format!("{}/{}/{t}/{}:{}", Self::NAME, p.card_id, pos.partition, pos.offset))
                            .reason(reason)
                            .evidence(&evidence)
                            .source(&source, pos, r.payment.ingest_ns),
                    );
                    let seen = Seen { time: t, pos, amount: p.amount, country: p.country.clone() };
                    card.recent.insert(at, seen);
                    let newest = card.recent.back().map_or(t, |s| s.time);
                    while card.recent.front().is_some_and(|s| s.time + WINDOW_MS <= newest) {
                        card.recent.pop_front();
                    }
                },
            )
            .into_stream();
        match cx.llm {
            Some(service) => decisions.llm_decide(service),
            None => decisions,
        }
    }
}

fn main() {
    App::new("card_velocity").about("Card velocity checks on payments").pipeline::<CardVelocity>().main()
}
