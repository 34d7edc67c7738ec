"""Train the strategy's parameters: a grid search of EMA periods on the first 70% of the
price history. Writes models/model.pkl. Deterministic; standard library only.

    python3 scripts/train.py
"""

from __future__ import annotations

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
    candles = load_candles(ROOT / "data" / "prices.csv")
    train = candles[: int(len(candles) * 0.7)]
    best = None
    for fast in range(3, 10):
        for slow in range(fast + 5, 31, 5):
            cfg = replace(Config(), fast_period=fast, slow_period=slow)
            result = run_backtest(train, cfg)
            score = result.final_equity
            if best is None or score > best[0]:
                best = (score, fast, slow)
    assert best is not None
    model = {"fast_period": best[1], "slow_period": best[2], "train_equity": round(best[0], 2)}
    out = ROOT / "models" / "model.pkl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "wb") as fh:
        pickle.dump(model, fh)
    print(f"trained: fast={best[1]} slow={best[2]} equity on the training part {best[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
