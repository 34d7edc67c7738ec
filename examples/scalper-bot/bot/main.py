"""CLI: ``python3 -m bot.main --dry-run [--prices PATH] [--trades-out PATH]``."""

from __future__ import annotations

import argparse
import csv
import sys

from bot.backtest import run_backtest
from bot.config import load_config
from bot.data import DEFAULT_PRICES, load_candles

TRADE_FIELDS = ["opened_at", "closed_at", "side", "entry", "exit", "qty", "pnl", "reason"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bot.main", description=__doc__)
    p.add_argument("--dry-run", action="store_true", help="simulate fills (required)")
    p.add_argument("--prices", default=str(DEFAULT_PRICES), help="OHLCV CSV path")
    p.add_argument("--trades-out", default=None, help="optional CSV path for trades")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.dry_run:
        print("error: live trading is disabled; re-run with --dry-run", file=sys.stderr)
        return 2

    cfg = load_config()
    candles = load_candles(args.prices)
    trades, final_equity = run_backtest(candles, cfg)
    net_pnl = final_equity - cfg.initial_equity
    wins = sum(1 for t in trades if t["pnl"] > 0)

    if args.trades_out:
        with open(args.trades_out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=TRADE_FIELDS)
            writer.writeheader()
            writer.writerows(trades)

    print(
        f"[dry-run] {cfg.symbol}: backtested {len(candles)} candles with "
        f"EMA({cfg.fast_period}/{cfg.slow_period}); {len(trades)} trades "
        f"({wins} wins, {len(trades) - wins} losses), net pnl {net_pnl:+.2f} USD, "
        f"final equity {final_equity:.2f} USD."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
