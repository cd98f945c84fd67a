"""The engine: commands -> events, leasing, expiry, retry decisions, schedules, keys."""

from .engine import Batch, CycleResult, Engine, Finished, Leased, SubmitRequest, Submitted

__all__ = ["Batch", "CycleResult", "Engine", "Finished", "Leased", "SubmitRequest", "Submitted"]
