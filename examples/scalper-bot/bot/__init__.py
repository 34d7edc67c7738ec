"""Example EMA-crossover scalping bot. Dry-run / backtest only."""

__version__ = "0.1.0"
