"""Regenerate data/prices.csv deterministically: python3 scripts/generate_prices.py"""

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "prices.csv"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)


def main(rows: int = 300) -> None:
    seed = 12345
    lines = ["timestamp,open,high,low,close,volume"]
    prev = 61000.0
    for i in range(rows):
        seed = (1103515245 * seed + 12345) % 2**31  # LCG -> reproducible noise
        noise = (seed / 2**31 - 0.5) * 110
        close = 61000 + 700 * math.sin(i / 24) + 300 * math.sin(i / 5.5) + noise
        wick = 8 + abs(noise) * 0.5
        high = max(prev, close) + wick
        low = min(prev, close) - wick
        volume = 2 + (seed % 1000) / 100
        ts = (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{ts},{prev:.2f},{high:.2f},{low:.2f},{close:.2f},{volume:.3f}")
        prev = close
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
