"""Order execution (HIGH RISK area: changes here need careful review)."""

from bot.execution.executor import Fill, OrderExecutor

__all__ = ["Fill", "OrderExecutor"]
