//! inflight's operators: the building blocks a pipeline chains on timely streams — event-time
//! windows into OHLCV bars, indicators (EMA, RSI, MACD), per-key state kept in time order, rules
//! that turn inputs into [`Decision`]s — and the `Decision` type every pipeline emits.

pub mod batch;
pub mod decision;
pub mod enrich;
pub mod exact_sum;
pub mod exchange;
pub mod fixed;
pub mod indicators;
pub mod keyed;
pub mod llm;
pub mod rules;
pub mod window;

pub use batch::MapBatchesExt;
pub use decision::{Action, DecidedBy, Decision, Evidence, EvidenceWriter};
pub use enrich::{LookupExt, Table, change_log, multi_table, saved_upsert_table, upsert_table};
pub use exact_sum::ExactSum;
pub use fixed::Fixed;
pub use keyed::{KeyByExt, Keyed, KeyedStateExt, KeyedStream, Order, Slot, Slots};
pub use llm::{LlmConfig, LlmExt, LlmService, LlmVerdict, ReplyCheck};
pub use rules::{DecideExt, Emit, Rules, Verdict};
pub use window::{Bar, BarContext, Tick, WindowExt};
