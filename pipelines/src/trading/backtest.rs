//! A backtest of trading decisions against the ticks they were made on: each BUY or SELL is filled
//! at the price of its asset's first tick at or after the decision's `event_time` (the bar's end;
//! ties by input order), a fee in basis points is charged on the traded value, and the equity
//! (cash plus positions marked at each asset's latest price) is followed tick by tick for the
//! drawdown. Positions never go short: a SELL sells at most what is held.
//!
//! The accounting is average cost: a BUY adds to the position at its price, a SELL realizes
//! `quantity × (price − average cost)`. Unrealized P&L marks what is held at the asset's last tick.

use super::event::MarketEvent;
use inflight_engine::Event;
use serde::Serialize;
use std::collections::BTreeMap;

/// One tick as the backtest needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Price {
    /// Asset.
    pub asset: String,
    /// Event time, ms since the epoch.
    pub time: u64,
    /// Price.
    pub price: f64,
}

/// One BUY or SELL to fill.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    /// Asset.
    pub asset: String,
    /// The decision's event time, ms since the epoch.
    pub time: u64,
    /// True for BUY, false for SELL.
    pub buy: bool,
    /// Units to trade (a SELL is capped at the position).
    pub quantity: f64,
}

/// Settings of a backtest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// Fee on the traded value, in basis points.
    pub fee_bps: f64,
}

/// What happened to one asset.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AssetResult {
    /// Filled BUYs and SELLs.
    pub trades: u64,
    /// Realized + unrealized − fees.
    pub pnl: f64,
    /// From SELLs, against the average cost.
    pub realized: f64,
    /// What is held, marked at the last tick, against its average cost.
    pub unrealized: f64,
    /// Fees paid.
    pub fees: f64,
    /// Units held at the end.
    pub position: f64,
    /// SELL fills that realized a gain.
    pub wins: u64,
    /// SELL fills.
    pub closes: u64,
    /// Orders with no tick at or after their time, or SELLs with nothing to sell.
    pub unfilled: u64,
    #[serde(skip)]
    cost: f64,
    #[serde(skip)]
    last: f64,
}

/// The whole backtest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Total {
    /// Filled BUYs and SELLs.
    pub trades: u64,
    /// Realized + unrealized − fees over all assets.
    pub pnl: f64,
    /// Realized P&L.
    pub realized: f64,
    /// Unrealized P&L.
    pub unrealized: f64,
    /// Fees paid.
    pub fees: f64,
    /// The largest fall of the total equity from an earlier peak (a positive number).
    pub max_drawdown: f64,
    /// Winning SELL fills over all SELL fills (0 with none).
    pub hit_rate: f64,
    /// Orders not filled.
    pub unfilled: u64,
}

/// The report: totals and per asset, as `--report` writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Over all assets.
    pub total: Total,
    /// Per asset, by name.
    pub assets: BTreeMap<String, AssetResult>,
    /// The total equity after each tick that changed it: (time, equity).
    #[serde(skip)]
    pub equity: Vec<(u64, f64)>,
}

/// Runs the backtest: `prices` in input order, `orders` in any order.
pub fn backtest(prices: &[Price], orders: &[Order], costs: Costs) -> Report {
    // Ticks in time order, ties by input order.
    let mut ticks: Vec<usize> = (0..prices.len()).collect();
    ticks.sort_by_key(|i| (prices[*i].time, *i));
    // Orders per asset in time order (ties by input order); each waits for its asset's first tick
    // at or after its time.
    let mut pending: BTreeMap<&str, std::collections::VecDeque<&Order>> = BTreeMap::new();
    let mut sorted: Vec<&Order> = orders.iter().collect();
    sorted.sort_by_key(|o| o.time);
    for o in sorted {
        pending.entry(o.asset.as_str()).or_default().push_back(o);
    }
    let mut report = Report::default();
    let (mut cash, mut marked) = (0.0, 0.0);
    let mut peak = 0.0f64;
    for i in ticks {
        let tick = &prices[i];
        let asset = report.assets.entry(tick.asset.clone()).or_default();
        // Equity moves by the position times the price change.
        marked += asset.position * (tick.price - asset.last);
        asset.last = tick.price;
        if let Some(queue) = pending.get_mut(tick.asset.as_str()) {
            while queue.front().is_some_and(|o| o.time <= tick.time) {
                let Some(order) = queue.pop_front() else { break };
                let (paid, bought) = fill(asset, order, tick.price, costs);
                (cash, marked) = (cash + paid, marked + bought);
            }
        }
        let equity = cash + marked;
        peak = peak.max(equity);
        report.total.max_drawdown = report.total.max_drawdown.max(peak - equity);
        if report.equity.last().is_none_or(|(_, e)| *e != equity) {
            report.equity.push((tick.time, equity));
        }
    }
    for (asset, queue) in pending {
        let left = queue.len() as u64;
        if left > 0 {
            report.assets.entry(asset.to_owned()).or_default().unfilled += left;
        }
    }
    let t = &mut report.total;
    for a in report.assets.values_mut() {
        a.unrealized = a.position * a.last - a.cost;
        a.pnl = a.realized + a.unrealized - a.fees;
        t.trades += a.trades;
        t.realized += a.realized;
        t.unrealized += a.unrealized;
        t.fees += a.fees;
        t.unfilled += a.unfilled;
    }
    t.pnl = t.realized + t.unrealized - t.fees;
    let (wins, closes) = report.assets.values().fold((0, 0), |(w, c), a| (w + a.wins, c + a.closes));
    t.hit_rate = if closes > 0 { wins as f64 / closes as f64 } else { 0.0 };
    report
}

/// Fills `order` at `price`; returns the changes of cash and of the positions' marked value.
fn fill(asset: &mut AssetResult, order: &Order, price: f64, costs: Costs) -> (f64, f64) {
    let quantity = if order.buy { order.quantity } else { order.quantity.min(asset.position) };
    if quantity <= 0.0 {
        asset.unfilled += 1;
        return (0.0, 0.0);
    }
    let value = quantity * price;
    let fee = value * costs.fee_bps / 10_000.0;
    asset.trades += 1;
    asset.fees += fee;
    if order.buy {
        // To 1e-9 units, as the pipeline's sizing keeps positions: sums of lots read as written.
        asset.position = ((asset.position + quantity) * 1e9).round() / 1e9;
        asset.cost += value;
        (-value - fee, value)
    } else {
        let average = asset.cost / asset.position;
        let gain = quantity * (price - average);
        asset.realized += gain;
        asset.closes += 1;
        asset.wins += u64::from(gain > 0.0);
        asset.cost -= quantity * average;
        asset.position = ((asset.position - quantity) * 1e9).round() / 1e9;
        if asset.position <= 1e-12 {
            (asset.position, asset.cost) = (0.0, 0.0);
        }
        (value - fee, -value)
    }
}

/// Reads ticks from market-event JSON lines (lines that are not valid events are skipped and
/// counted: the run dead-lettered them too).
pub fn read_prices(text: &str) -> (Vec<Price>, usize) {
    let mut skipped = 0;
    let prices = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match MarketEvent::parse(l.as_bytes()) {
            Ok(e) => Some(Price { asset: e.asset.to_string(), time: e.timestamp, price: e.price }),
            Err(_) => {
                skipped += 1;
                None
            }
        })
        .collect();
    (prices, skipped)
}

/// Reads the BUY and SELL decisions of a decisions file (JSON lines as `run trading` writes them;
/// other actions are skipped). Each trades its `suggested_size` where it has one, else `size`
/// units. A line that is not a decision is an error naming its line.
pub fn read_orders(text: &str, size: f64) -> Result<Vec<Order>, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        key: String,
        action: String,
        event_time: String,
        #[serde(default)]
        suggested_size: Option<f64>,
    }
    let mut orders = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |e: String| format!("line {}: {e}", n + 1);
        let d: Line = serde_json::from_str(line).map_err(|e| at(format!("not a decision: {e}")))?;
        let buy = match d.action.as_str() {
            "BUY" => true,
            "SELL" => false,
            _ => continue,
        };
        let time = inflight_engine::time::parse_rfc3339(&d.event_time).map_err(|e| at(format!("event_time: {e}")))?;
        let quantity = d.suggested_size.unwrap_or(size);
        if !(quantity.is_finite() && quantity > 0.0) {
            return Err(at(format!("suggested_size {quantity} is not a positive number")));
        }
        orders.push(Order { asset: d.key, time, buy, quantity });
    }
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(asset: &str, time: u64, price: f64) -> Price {
        Price { asset: asset.into(), time, price }
    }

    fn o(asset: &str, time: u64, buy: bool, quantity: f64) -> Order {
        Order { asset: asset.into(), time, buy, quantity }
    }

    /// Three trades by hand: buy 2 at 100, buy 1 at 130 (average 110), sell 2 at 120
    /// (realized 2 × 10 = 20), 1 left, marked at the last tick 90 (unrealized −20).
    /// Fees at 10 bps: 0.2 + 0.13 + 0.24 = 0.57.
    #[test]
    fn a_hand_computed_case() {
        let prices =
            [p("X", 0, 99.0), p("X", 1000, 100.0), p("X", 2000, 130.0), p("X", 3000, 120.0), p("X", 4000, 90.0)];
        let orders = [o("X", 1000, true, 2.0), o("X", 1500, true, 1.0), o("X", 3000, false, 2.0)];
        let r = backtest(&prices, &orders, Costs { fee_bps: 10.0 });
        let x = &r.assets["X"];
        assert_eq!((x.trades, x.position, x.closes, x.wins), (3, 1.0, 1, 1));
        assert!((x.realized - 20.0).abs() < 1e-9 && (x.unrealized + 20.0).abs() < 1e-9);
        assert!((x.fees - 0.57).abs() < 1e-9, "{}", x.fees);
        assert!((r.total.pnl - (20.0 - 20.0 - 0.57)).abs() < 1e-9);
        // Equity: −0.2 after the first buy; 59.67 after the second (2 × +30, fee 0.13), the peak;
        // 29.43 after the sale at 120; −0.57 at the last tick, 60.24 below the peak.
        let last = r.equity.last().unwrap().1;
        assert!((last - r.total.pnl).abs() < 1e-9, "the final equity is the P&L: {last}");
        assert!((r.total.max_drawdown - (59.67 - last)).abs() < 1e-9, "{:?}", r.equity);
        assert_eq!(r.total.hit_rate, 1.0);
    }

    #[test]
    fn fills_wait_for_the_first_tick_at_or_after_the_decision_and_never_short() {
        let prices = [p("X", 2000, 10.0), p("X", 1000, 5.0), p("Y", 1000, 7.0)];
        // A SELL with nothing held, a BUY at 1500 filled at the 2000 tick, one with no later tick.
        let orders = [o("X", 500, false, 1.0), o("X", 1500, true, 1.0), o("X", 2500, true, 1.0)];
        let r = backtest(&prices, &orders, Costs { fee_bps: 0.0 });
        let x = &r.assets["X"];
        assert_eq!((x.trades, x.unfilled, x.position), (1, 2, 1.0));
        assert_eq!(x.cost, 10.0);
        assert_eq!(r.total.unfilled, 2);
        assert_eq!(r.assets["Y"].trades, 0);
    }
}
