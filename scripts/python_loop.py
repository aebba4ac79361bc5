#!/usr/bin/env python3
"""The trading job as a plain Python loop: the baseline `scripts/compare.sh` measures inflight against.

Reads JSONL market ticks (in time order), builds 1 s OHLCV bars per asset, updates TA-Lib's
RSI(14) and MACD(12,26,9) incrementally on bar closes (the same seeding as TA_RSI / TA_MACD),
applies the specification's rules and writes a JSON decision whenever an asset's action changes.
Only the standard library; not used by the build or the tests.

    python3 scripts/python_loop.py ticks.jsonl > decisions.jsonl   # events/s on stderr
"""

import json
import sys
import time
from datetime import datetime

WINDOW_MS = 1000


class Rsi:
    def __init__(self, n=14):
        self.n, self.prev, self.changes, self.gain, self.loss = n, None, 0, 0.0, 0.0

    def update(self, close):
        prev, self.prev = self.prev, close
        if prev is None:
            return None
        change, n = close - prev, float(self.n)
        if self.changes < self.n:
            if change < 0:
                self.loss -= change
            else:
                self.gain += change
            self.changes += 1
            if self.changes < self.n:
                return None
            self.loss /= n
            self.gain /= n
        else:
            self.loss *= n - 1
            self.gain *= n - 1
            if change < 0:
                self.loss -= change
            else:
                self.gain += change
            self.loss /= n
            self.gain /= n
        total = self.gain + self.loss
        return 0.0 if abs(total) < 1e-14 else 100.0 * (self.gain / total)


class Ema:
    def __init__(self, n, seed=None):
        self.n, self.k, self.seen, self.sum, self.value = n, 2.0 / (n + 1), 0, 0.0, seed

    def update(self, x):
        if self.value is not None:
            self.value = ((x - self.value) * self.k) + self.value
        else:
            self.sum += x
            self.seen += 1
            if self.seen == self.n:
                self.value = self.sum / self.n
        return self.value


class Macd:
    """TA_MACD: both EMAs start on the 26th close (the fast one seeded with the last 12 closes)."""

    def __init__(self, fast=12, slow=26, signal=9):
        self.fast, self.slow, self.closes, self.emas, self.signal = fast, slow, [], None, Ema(signal)

    def update(self, close):
        if self.emas is None:
            self.closes.append(close)
            if len(self.closes) < self.slow:
                return None
            fast_seed = sum(self.closes[-self.fast:]) / self.fast
            slow_seed = sum(self.closes) / self.slow
            self.emas = (Ema(self.fast, fast_seed), Ema(self.slow, slow_seed))
            self.closes = None
            value = fast_seed - slow_seed
        else:
            value = self.emas[0].update(close) - self.emas[1].update(close)
        signal = self.signal.update(value)
        if signal is None:
            return None
        return value, signal, value - signal


def millis(ts):
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def main():
    path = sys.argv[1]
    out = sys.stdout
    state = {}  # asset -> [rsi, macd, last action]
    open_bars = {}  # asset -> [start, open, high, low, close, volume, ticks, trend]
    current = None
    events = decisions = 0
    started = time.perf_counter()

    def close_all():
        nonlocal decisions
        for asset, bar in open_bars.items():
            rsi, macd, last = state.setdefault(asset, [Rsi(), Macd(), None])
            r, m = rsi.update(bar[4]), macd.update(bar[4])
            if r is None or m is None:
                continue
            if r > 70:
                action, conf = "SELL", 0.85
            elif m[2] > 10 and bar[7] == "bullish":
                action, conf = "BUY", 0.92
            else:
                action, conf = "HOLD", 0.65
            if action != last:
                state[asset][2] = action
                decisions += 1
                out.write(json.dumps({"key": asset, "action": action, "confidence": conf,
                                      "event_time": bar[0] + WINDOW_MS, "rsi": r,
                                      "macd": {"value": m[0], "signal": m[1], "histogram": m[2]}}) + "\n")
        open_bars.clear()

    with open(path, "rb") as f:
        for line in f:
            try:
                e = json.loads(line)
                t = millis(e["timestamp"])
                price, volume, asset = float(e["price"]), float(e["volume"]), e["asset"]
            except (ValueError, KeyError, TypeError):
                continue
            events += 1
            start = t - t % WINDOW_MS
            if current is not None and start > current:
                close_all()
            current = start if current is None else max(current, start)
            trend = (e.get("market_context") or {}).get("trend")
            bar = open_bars.get(asset)
            if bar is None:
                open_bars[asset] = [start, price, price, price, price, volume, 1, trend]
            else:
                bar[2] = max(bar[2], price)
                bar[3] = min(bar[3], price)
                bar[4] = price
                bar[5] += volume
                bar[6] += 1
                bar[7] = trend
    close_all()
    took = time.perf_counter() - started
    print(f"python loop: {events} events, {decisions} decisions, {took:.3f} s, {events / took:.0f} events/s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
