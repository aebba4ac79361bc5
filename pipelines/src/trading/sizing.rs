//! Position sizing by risk (the `[sizing]` table, off unless present): a BUY or SELL trades
//! `risk_per_trade / (atr_multiple × ATR)` units, rounded down to whole lots and capped so the
//! asset's position stays within `[0, max_position]` (`[-max_position, max_position]` with
//! `allow_short`). A trade that cannot be sized (no ATR yet, nothing left under the cap, nothing
//! to sell, or a size below one lot) becomes HOLD and says why.

use inflight_operators::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[sizing]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sizing {
    /// What one trade may lose, in the quote currency, if the price moves `atr_multiple` ATRs.
    pub risk_per_trade: f64,
    /// The stop distance in ATRs [default: 2].
    #[serde(default = "default_atr_multiple")]
    pub atr_multiple: f64,
    /// Sizes are whole multiples of this many units [default: 0.001].
    #[serde(default = "default_lot")]
    pub lot: f64,
    /// The largest position, in units.
    pub max_position: f64,
    /// Whether a SELL may take the position below 0 (down to `-max_position`) [default: false].
    #[serde(default)]
    pub allow_short: bool,
    /// Per-asset overrides, by asset (`[sizing.assets."BTC/USD"]`).
    #[serde(default)]
    pub assets: BTreeMap<String, SizingOverride>,
}

/// An asset's own sizing values; the ones it leaves out are `[sizing]`'s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingOverride {
    /// See [`Sizing::risk_per_trade`].
    pub risk_per_trade: Option<f64>,
    /// See [`Sizing::atr_multiple`].
    pub atr_multiple: Option<f64>,
    /// See [`Sizing::lot`].
    pub lot: Option<f64>,
    /// See [`Sizing::max_position`].
    pub max_position: Option<f64>,
}

fn default_atr_multiple() -> f64 {
    2.0
}

fn default_lot() -> f64 {
    0.001
}

/// One asset's values, overrides applied.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Params {
    risk_per_trade: f64,
    atr_multiple: f64,
    lot: f64,
    max_position: f64,
}

/// What sizing made of a BUY or SELL.
#[derive(Clone, Debug, PartialEq)]
pub enum Sized {
    /// Trade `size` units; the position becomes `after`.
    Trade {
        /// Units to buy or sell (a whole number of lots).
        size: f64,
        /// The position once traded.
        after: f64,
        /// How the size came about, for the reason.
        how: String,
    },
    /// Not tradable: HOLD, for this reason.
    Held(String),
}

/// Rounded to 1e-9 units, so that sums of lots (0.1 + 0.2) read as written.
fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

impl Sizing {
    /// Checks the values (and every asset's): all positive and finite.
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, asset: Option<&str>, x: f64| {
            if x.is_finite() && x > 0.0 {
                return Ok(());
            }
            let at = asset.map(|a| format!(" for {a:?}")).unwrap_or_default();
            Err(format!("sizing: {name}{at} must be a positive number, got {x}"))
        };
        for (asset, p) in
            std::iter::once((None, self.params(""))).chain(self.assets.keys().map(|a| (Some(a), self.params(a))))
        {
            let asset = asset.map(String::as_str);
            check("risk_per_trade", asset, p.risk_per_trade)?;
            check("atr_multiple", asset, p.atr_multiple)?;
            check("lot", asset, p.lot)?;
            check("max_position", asset, p.max_position)?;
        }
        Ok(())
    }

    fn params(&self, asset: &str) -> Params {
        let o = self.assets.get(asset);
        let pick = |f: fn(&SizingOverride) -> Option<f64>, base: f64| o.and_then(f).unwrap_or(base);
        Params {
            risk_per_trade: pick(|o| o.risk_per_trade, self.risk_per_trade),
            atr_multiple: pick(|o| o.atr_multiple, self.atr_multiple),
            lot: pick(|o| o.lot, self.lot),
            max_position: pick(|o| o.max_position, self.max_position),
        }
    }

    /// Sizes a BUY or SELL of `asset` at `position`, with the bar's ATR (None while it warms up).
    pub fn size(&self, asset: &str, action: Action, atr: Option<f64>, position: f64) -> Sized {
        let p = self.params(asset);
        let buy = action.is(Action::BUY);
        let Some(atr) = atr.filter(|a| a.is_finite() && *a > 0.0) else {
            return Sized::Held("ATR(14) has no value yet, so the trade cannot be sized".into());
        };
        let raw = p.risk_per_trade / (p.atr_multiple * atr);
        // What the cap leaves: up to max_position when buying, down to 0 (or -max_position) when selling.
        let floor = if self.allow_short { -p.max_position } else { 0.0 };
        let room = if buy { p.max_position - position } else { position - floor };
        if room <= 0.0 {
            return Sized::Held(if buy {
                format!("the position {position} is at max_position {}", p.max_position)
            } else if self.allow_short {
                format!("the position {position} is at -max_position {}", p.max_position)
            } else {
                "there is no position to sell".into()
            });
        }
        // A whole number of lots, rounded down (a hair of slack for 0.3 / 0.1 = 2.999…).
        let lots = (raw.min(room) / p.lot + 1e-9).floor();
        if lots < 1.0 {
            let why = if raw < p.lot { "the risk-based size" } else { "what the cap leaves" };
            return Sized::Held(format!("{why} ({}) is below one lot of {}", round9(raw.min(room)), p.lot));
        }
        let size = round9(lots * p.lot);
        let after = round9(if buy { position + size } else { position - size });
        let capped = if raw > room { ", capped by max_position" } else { "" };
        let how = format!(
            "size {size} = risk {} / ({} x ATR {}) in lots of {}{capped}",
            p.risk_per_trade,
            p.atr_multiple,
            inflight_operators::Fixed(atr, 4),
            p.lot
        );
        Sized::Trade { size, after, how }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sizing() -> Sizing {
        Sizing {
            risk_per_trade: 100.0,
            atr_multiple: 2.0,
            lot: 0.1,
            max_position: 1.0,
            allow_short: false,
            assets: BTreeMap::new(),
        }
    }

    fn trade(s: &Sized) -> (f64, f64) {
        match s {
            Sized::Trade { size, after, .. } => (*size, *after),
            Sized::Held(why) => panic!("held: {why}"),
        }
    }

    fn held(s: &Sized) -> &str {
        match s {
            Sized::Held(why) => why,
            Sized::Trade { .. } => panic!("traded: {s:?}"),
        }
    }

    #[test]
    fn the_size_is_risk_over_atr_stop_in_whole_lots() {
        // 100 / (2 × 200) = 0.25 units → 2 lots of 0.1.
        assert_eq!(trade(&sizing().size("X", Action::BUY, Some(200.0), 0.0)), (0.2, 0.2));
        // 0.3 / 0.1 is 2.9999999999999996 in floating point: still 3 lots.
        assert_eq!(trade(&sizing().size("X", Action::BUY, Some(100.0 / 0.6), 0.0)), (0.3, 0.3));
        // Sums of lots read as written.
        assert_eq!(trade(&sizing().size("X", Action::BUY, Some(250.0), 0.1)), (0.2, 0.3));
    }

    #[test]
    fn the_position_stays_within_the_cap() {
        // Wants 5 units (ATR 10), 0.3 left under the cap of 1.
        assert_eq!(trade(&sizing().size("X", Action::BUY, Some(10.0), 0.7)), (0.3, 1.0));
        assert!(held(&sizing().size("X", Action::BUY, Some(10.0), 1.0)).contains("at max_position 1"));
        // Sells at most what is held, and nothing at zero.
        assert_eq!(trade(&sizing().size("X", Action::SELL, Some(10.0), 0.4)), (0.4, 0.0));
        assert_eq!(held(&sizing().size("X", Action::SELL, Some(10.0), 0.0)), "there is no position to sell");
        // With shorting down to -max_position.
        let short = Sizing { allow_short: true, ..sizing() };
        assert_eq!(trade(&short.size("X", Action::SELL, Some(10.0), 0.0)), (1.0, -1.0));
        assert!(held(&short.size("X", Action::SELL, Some(10.0), -1.0)).contains("at -max_position 1"));
    }

    #[test]
    fn no_atr_or_a_size_below_one_lot_holds() {
        assert!(held(&sizing().size("X", Action::BUY, None, 0.0)).contains("ATR(14) has no value yet"));
        assert!(held(&sizing().size("X", Action::BUY, Some(0.0), 0.0)).contains("ATR(14) has no value yet"));
        // 100 / (2 × 1000) = 0.05 < one lot of 0.1.
        assert!(held(&sizing().size("X", Action::BUY, Some(1000.0), 0.0)).contains("below one lot of 0.1"));
        // The cap leaves 0.05.
        assert!(held(&sizing().size("X", Action::BUY, Some(10.0), 0.95)).contains("what the cap leaves"));
    }

    #[test]
    fn an_asset_may_override_any_value_and_bad_values_are_refused() {
        let mut s = sizing();
        s.assets.insert(
            "BTC/USD".into(),
            SizingOverride { lot: Some(0.01), max_position: Some(5.0), ..Default::default() },
        );
        // 100 / (2 × 200) = 0.25 → 25 lots of 0.01 for BTC, 2 lots of 0.1 for the others.
        assert_eq!(trade(&s.size("BTC/USD", Action::BUY, Some(200.0), 0.0)), (0.25, 0.25));
        assert_eq!(trade(&s.size("ETH/USD", Action::BUY, Some(200.0), 0.0)), (0.2, 0.2));
        assert_eq!(s.validate(), Ok(()));
        s.assets.insert("ETH/USD".into(), SizingOverride { lot: Some(0.0), ..Default::default() });
        assert_eq!(s.validate().unwrap_err(), "sizing: lot for \"ETH/USD\" must be a positive number, got 0");
        assert!(Sizing { risk_per_trade: f64::NAN, ..sizing() }.validate().unwrap_err().contains("risk_per_trade"));
    }
}
