#!/usr/bin/env python3
"""Reference values from TA-Lib itself, for inflight's indicator tests.

TA-Lib (the C library, through PyPI's `ta-lib` wheels, which bundle it) is the judge of inflight's
RSI, MACD and EMA. This script writes two fixtures that the Rust tests read; the tests never compare
inflight with its own output.

  tests/fixtures/talib_series.json      close series (random walks, flat runs, large prices) with
                                        TA_RSI, TA_MACD and TA_EMA outputs for several periods
  tests/fixtures/market-small.talib.json  per-asset 1 s bar closes of tests/fixtures/market-small.jsonl
                                        (bars computed here, independently of inflight) with
                                        TA_RSI(14) and TA_MACD(12,26,9) on them
  tests/fixtures/talib_bars.json        high/low/close series (random bars, flat runs, large prices)
                                        with TA_SMA, TA_BBANDS, TA_ATR and TA_STOCH outputs

Regenerate (needs Python 3.11 and network access to PyPI once):

    python3 -m pip install ta-lib==0.8.2 numpy   # (in a venv)
    python3 scripts/talib_fixture.py

The product and the test run never need Python; the JSON files are committed.
"""
import json
import math
import pathlib
import random
from datetime import datetime

import numpy as np
import talib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def clean(values):
    return [None if math.isnan(v) else float(v) for v in values]


def series():
    rng = random.Random(7)
    walk = [100.0]
    for _ in range(299):
        walk.append(walk[-1] * (1 + rng.uniform(-0.02, 0.02)))
    flat = [50.0] * 20 + [50.0 + i * 0.5 for i in range(20)] + [60.0] * 20 + [60.0 - i for i in range(20)]
    big = [42150.75]
    for _ in range(199):
        big.append(round(big[-1] + rng.uniform(-40, 40), 2))
    return {"random_walk": walk, "flat_runs": flat, "large_prices": big}


def indicator_fixture():
    out = []
    for name, closes in series().items():
        arr = np.array(closes, dtype=float)
        entry = {"name": name, "closes": closes, "rsi": {}, "ema": {}, "macd": {}}
        for period in (14, 5):
            entry["rsi"][str(period)] = clean(talib.RSI(arr, timeperiod=period))
        for period in (10, 26):
            entry["ema"][str(period)] = clean(talib.EMA(arr, timeperiod=period))
        for fast, slow, signal in ((12, 26, 9), (5, 13, 4)):
            macd, sig, hist = talib.MACD(arr, fastperiod=fast, slowperiod=slow, signalperiod=signal)
            entry["macd"][f"{fast},{slow},{signal}"] = {
                "value": clean(macd), "signal": clean(sig), "histogram": clean(hist),
            }
        out.append(entry)
    (FIXTURES / "talib_series.json").write_text(json.dumps({"talib": talib.__ta_version__.decode() if isinstance(talib.__ta_version__, bytes) else str(talib.__ta_version__), "series": out}, indent=1))


def to_ms(text):
    return int(round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000))


def bars_fixture():
    """1 s bars per asset; the close is the tick with the greatest (time, line), high and low the
    greatest and least price."""
    closes, highs, lows = {}, {}, {}
    for line_no, line in enumerate((FIXTURES / "market-small.jsonl").read_text().splitlines(), start=1):
        event = json.loads(line)
        t = to_ms(event["timestamp"])
        end = (t // 1000 + 1) * 1000
        price = float(event["price"])
        slot = closes.setdefault(event["asset"], {})
        prev = slot.get(end)
        if prev is None or (t, line_no) > prev[0]:
            slot[end] = ((t, line_no), price)
        key = (event["asset"], end)
        highs[key] = max(highs.get(key, price), price)
        lows[key] = min(lows.get(key, price), price)
    out = {}
    for asset, bars in sorted(closes.items()):
        ends = sorted(bars)
        arr = np.array([bars[e][1] for e in ends], dtype=float)
        high = np.array([highs[(asset, e)] for e in ends], dtype=float)
        low = np.array([lows[(asset, e)] for e in ends], dtype=float)
        rsi = talib.RSI(arr, timeperiod=14)
        macd, sig, hist = talib.MACD(arr, fastperiod=12, slowperiod=26, signalperiod=9)
        upper, middle, lower = talib.BBANDS(arr, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
        atr = talib.ATR(high, low, arr, timeperiod=14)
        k, d = talib.STOCH(high, low, arr, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3,
                           slowd_matype=0)
        rows = []
        for i, end in enumerate(ends):
            if math.isnan(rsi[i]) or math.isnan(macd[i]):
                continue
            rows.append({"end": end, "close": arr[i], "rsi": rsi[i], "macd": macd[i], "signal": sig[i],
                         "histogram": hist[i], "bb_upper": upper[i], "bb_middle": middle[i], "bb_lower": lower[i],
                         "atr": atr[i], "stoch_k": k[i], "stoch_d": d[i]})
        out[asset] = {"bars": len(ends), "scored": rows}
    (FIXTURES / "market-small.talib.json").write_text(json.dumps(out, indent=1))


def hlc_series():
    """High, low, close series: a random walk of bars, flat runs (an empty range), large prices."""
    rng = random.Random(11)
    out = {}
    for name, start, step, count in (("random_bars", 100.0, 0.02, 300), ("large_prices", 42150.75, 0.001, 200)):
        close, rows = start, []
        for _ in range(count):
            close = round(close * (1 + rng.uniform(-step, step)), 2)
            high = round(close * (1 + rng.uniform(0, step)), 2)
            low = round(close * (1 - rng.uniform(0, step)), 2)
            rows.append((high, low, close))
        out[name] = rows
    flat = [(50.0, 50.0, 50.0)] * 25 + [(51.0 + i, 49.0 + i, 50.0 + i) for i in range(25)] + [(70.0, 70.0, 70.0)] * 25
    out["flat_runs"] = flat
    return out


def bars_indicator_fixture():
    out = []
    for name, rows in hlc_series().items():
        high, low, close = (np.array([r[i] for r in rows], dtype=float) for i in range(3))
        upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
        k, d = talib.STOCH(high, low, close, fastk_period=14, slowk_period=3, slowk_matype=0,
                           slowd_period=3, slowd_matype=0)
        out.append({
            "name": name,
            "high": high.tolist(), "low": low.tolist(), "close": close.tolist(),
            "sma": {str(p): clean(talib.SMA(close, timeperiod=p)) for p in (3, 20)},
            "bbands": {"upper": clean(upper), "middle": clean(middle), "lower": clean(lower)},
            "atr": {str(p): clean(talib.ATR(high, low, close, timeperiod=p)) for p in (14, 5)},
            "stoch": {"k": clean(k), "d": clean(d)},
        })
    (FIXTURES / "talib_bars.json").write_text(json.dumps({"series": out}, indent=1))


if __name__ == "__main__":
    indicator_fixture()
    bars_fixture()
    bars_indicator_fixture()
    print("wrote", FIXTURES / "talib_series.json", FIXTURES / "market-small.talib.json", "and", FIXTURES / "talib_bars.json")
