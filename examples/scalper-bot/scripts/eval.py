"""Evaluate models/model.pkl on the last 30% of the price history (out of sample).
Writes models/candidate.json: sharpe (per trade, annualisation-free), net_pnl, trades,
win_rate. Deterministic; standard library only.

    python3 scripts/eval.py
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.backtest import run_backtest  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.data import load_candles  # noqa: E402


def main() -> int:
    with open(ROOT / "models" / "model.pkl", "rb") as fh:
        model = pickle.load(fh)
    candles = load_candles(ROOT / "data" / "prices.csv")
    test = candles[int(len(candles) * 0.7) :]
    cfg = replace(Config(), fast_period=model["fast_period"], slow_period=model["slow_period"])
    result = run_backtest(test, cfg)
    pnls = [t["pnl"] for t in result.trades]
    mean = sum(pnls) / len(pnls) if pnls else 0.0
    sd = math.sqrt(sum((p - mean) ** 2 for p in pnls) / (len(pnls) - 1)) if len(pnls) > 1 else 0.0
    metrics = {
        "sharpe": round(mean / sd * math.sqrt(len(pnls)), 4) if sd > 0 else 0.0,
        "net_pnl": round(sum(pnls), 2),
        "trades": len(pnls),
        "win_rate": round(sum(1 for p in pnls if p > 0) / len(pnls), 4) if pnls else 0.0,
        "fast_period": model["fast_period"],
        "slow_period": model["slow_period"],
    }
    (ROOT / "models" / "candidate.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
