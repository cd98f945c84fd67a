"""The engine: commands -> events, leasing, expiry, retry decisions, schedules, keys."""

from .engine import Batch, CycleResult, Engine, Finished, Leased, Submitted, SubmitRequest

__all__ = ["Batch", "CycleResult", "Engine", "Finished", "Leased", "SubmitRequest", "Submitted"]
