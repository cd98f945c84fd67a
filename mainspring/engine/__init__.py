"""The engine: commands -> events, leasing, expiry, retry decisions, schedules, keys."""

from .batch import Batch
from .engine import Engine
from .messages import CycleResult, Finished, Leased, SubmitRequest, Submitted, TaskView
from .registry import Registration

__all__ = [
    "Batch",
    "CycleResult",
    "Engine",
    "Finished",
    "Leased",
    "Registration",
    "SubmitRequest",
    "Submitted",
    "TaskView",
]
