"""Checking what a task is declared and submitted with: its options (``@app.task``), its
name, and a submission's overrides (``with_options``), each refused with the named error
before anything is written."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

import msgspec

from .core.clock import from_datetime, representable, seconds
from .core.errors import InvalidArgument, InvalidSchedule, refuses_bad_calls
from .core.model import Backoff, Policy, RateLimit, TaskOptions
from .core.states import RunState

KeyPolicy = Literal["hold", "release"]
Misfire = Literal["catch_up", "skip", "coalesce"]
KEY_POLICIES = ("hold", "release")

#: The per-submission options of ``with_options`` (and of ``App.submit`` by name).
OVERRIDES = (
    "idempotency_key",
    "execution_id",
    "correlation_id",
    "delay",
    "run_at",
    "priority",
    "concurrency_key",
    "queue",
    "deadline",
    "debounce",
    "debounce_key",
    "debounce_max",
    "connection",
)


#: A task's ``retry_on`` and ``never_retry``: exception types whose failures retry, or
#: never do, whatever the classifier says (process-local: types are not stored).
FailureOverrides = tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]


def failure_overrides(retry_on: Any, never_retry: Any) -> FailureOverrides:
    """``retry_on`` / ``never_retry``, checked: tuples of exception types."""
    out = []
    for what, value in (("retry_on", retry_on), ("never_retry", never_retry)):
        if not isinstance(value, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in value
        ):
            raise InvalidArgument(f"{what} must be a tuple of exception types, got {value!r}")
        out.append(value)
    return out[0], out[1]


class TaskOptionArgs(TypedDict, total=False):
    """The options of ``@app.task`` (also taken by ``@app.workflow``)."""

    max_attempts: int
    backoff: Backoff | None
    timeout: float | timedelta | None
    concurrency_key: str | Callable[..., str] | None
    concurrency_limit: int
    key_policy: KeyPolicy
    priority: int
    queue: str
    max_lost: int
    rate_limit: str | RateLimit | None
    retry_on: tuple[type[BaseException], ...]
    never_retry: tuple[type[BaseException], ...]


def default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def int_option(value: Any, what: str, minimum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (minimum is not None and value < minimum)
    ):
        at_least = f" >= {minimum}" if minimum is not None else ""
        raise InvalidArgument(f"{what} must be an int{at_least}, got {value!r}")
    return value


#: Priorities both stores hold (PostgreSQL's ``integer``).
PRIORITY_RANGE = (-(2**31), 2**31 - 1)


def priority_option(value: Any) -> int:
    low, high = PRIORITY_RANGE
    if int_option(value, "priority") < low or value > high:
        raise InvalidArgument(f"priority must be between {low} and {high}, got {value!r}")
    return int(value)


_RATE = re.compile(r"\s*(\d+)\s*/\s*(s|m|h)\s*")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def rate_limit_of(value: Any) -> RateLimit | None:
    """A task's ``rate_limit``: ``"100/s"`` (or ``/m``, ``/h``) or an ``ms.RateLimit``,
    checked (``InvalidArgument`` for a malformed one)."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _RATE.fullmatch(value)
        if m is None:
            raise InvalidArgument(
                f"rate_limit {value!r} is not a rate: use 'N/s', 'N/m' or 'N/h' (e.g. '100/s'), "
                "or ms.RateLimit(count, per=seconds, key=None)"
            )
        value = RateLimit(int(m.group(1)), _PER[m.group(2)])
    if not isinstance(value, RateLimit):
        raise InvalidArgument(f"rate_limit must be 'N/s' or an ms.RateLimit, got {value!r}")
    int_option(value.count, "the rate limit's count", 1)
    per = seconds(value.per, "the rate limit's window (per)", positive=True)
    if per is None:
        raise InvalidArgument("the rate limit's window (per) must be given, in seconds")
    key = value.key
    if key is not None and not (isinstance(key, str) or callable(key)):
        raise InvalidArgument(f"the rate limit's key must be a string or a callable, got {key!r}")
    return RateLimit(value.count, per, key)


@refuses_bad_calls
def options(
    *,
    max_attempts: int = 1,
    backoff: Backoff | None = None,
    timeout: float | timedelta | None = None,
    concurrency_key: str | Callable[..., str] | None = None,
    concurrency_limit: int = 1,
    key_policy: KeyPolicy = "hold",
    priority: int = 0,
    queue: str = "default",
    max_lost: int = 5,
    rate_limit: str | RateLimit | None = None,
) -> TaskOptions:
    """A task's options, checked (``InvalidArgument`` names the first bad one)."""
    int_option(max_attempts, "max_attempts", 1)
    int_option(max_lost, "max_lost", 1)
    int_option(concurrency_limit, "concurrency_limit", 1)
    priority_option(priority)
    if key_policy not in KEY_POLICIES:
        raise InvalidArgument(f"key_policy must be 'hold' or 'release', got {key_policy!r}")
    queue_name(queue)
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidArgument(
            "backoff must be ms.Backoff.fixed(...) or ms.Backoff.exponential(...)"
        )
    if backoff is not None:  # (one built directly: checked as its constructors check)
        if backoff.kind not in ("fixed", "exponential"):
            raise InvalidSchedule(
                f"Backoff kind must be 'fixed' or 'exponential', got {backoff.kind!r}"
            )
        Backoff.exponential(backoff.initial, backoff.factor, backoff.maximum, backoff.jitter)
    if concurrency_key is not None and not (
        isinstance(concurrency_key, str) or callable(concurrency_key)
    ):
        raise InvalidArgument(
            f"concurrency_key must be a string, a template or a callable, got {concurrency_key!r}"
        )
    t = seconds(timeout, "timeout", positive=True)
    return TaskOptions(
        max_attempts=max_attempts,
        backoff=backoff if backoff is not None else Backoff(),
        timeout=t,
        concurrency_key=concurrency_key if isinstance(concurrency_key, str) else None,
        concurrency_limit=concurrency_limit,
        key_policy=key_policy,
        priority=priority,
        queue=queue,
        max_lost=max_lost,
        rate_limit=rate_limit_of(rate_limit),
    )


def durable(opts: TaskOptions) -> TaskOptions:
    """``opts`` as stored: a rate limit keyed by a callable keeps no key (the declaring
    App computes it per submission)."""
    limit = opts.rate_limit
    if limit is None or not callable(limit.key):
        return opts
    return msgspec.structs.replace(opts, rate_limit=RateLimit(limit.count, limit.per, None))


def queue_name(queue: Any) -> str:
    return _a_name("queue", queue)


def task_name(name: Any) -> str:
    return _a_name("a task name", name)


def _a_name(what: str, value: Any) -> str:
    """A name to declare: a str that is not blank."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{what} must be a non-empty string, got {value!r}")
    return value


def start_of(policy: Policy, delay: Any, run_at: Any, now: Callable[[], float]) -> Policy:
    """``policy`` starting after ``delay`` or at ``run_at`` (at most one of them)."""
    d = seconds(delay, "delay")
    if run_at is not None and d is not None:
        raise InvalidSchedule("give either delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime) or run_at.tzinfo is None:
            raise InvalidSchedule(f"run_at must be a timezone-aware datetime, got {run_at!r}")
        at = representable(from_datetime(run_at), f"run_at {run_at.isoformat()}")
        return msgspec.structs.replace(policy, start_at=at)
    if d is not None:
        at = representable(now() + d, f"delay={delay!r} from now")
        return msgspec.structs.replace(policy, start_at=at)
    return policy


def debounce_of(policy: Policy, ov: dict[str, Any]) -> tuple[float, str, float | None] | None:
    """``debounce`` / ``debounce_key`` / ``debounce_max``, checked: (seconds, key, max)."""
    delay = seconds(ov.get("debounce"), "debounce", positive=True)
    key, most = ov.get("debounce_key"), seconds(ov.get("debounce_max"), "debounce_max")
    if delay is None:
        if key is not None or most is not None:
            raise InvalidArgument("debounce_key and debounce_max need debounce=seconds")
        return None
    if not isinstance(key, str) or not key:
        raise InvalidArgument(
            "debounce needs debounce_key: the submissions with the same key collapse into one run"
        )
    if most is not None and most < delay:
        raise InvalidArgument(f"debounce_max ({most} s) must be at least debounce ({delay} s)")
    if policy.kind != "once" or ov.get("delay") is not None or ov.get("run_at") is not None:
        raise InvalidArgument("debounce applies to a once submission without delay or run_at")
    return delay, key, most


def deadline_of(deadline: Any, now: Callable[[], float]) -> float | None:
    """A submission's deadline as a time: seconds or a timedelta from now, or an aware
    datetime."""
    if deadline is None:
        return None
    if isinstance(deadline, datetime):
        if deadline.tzinfo is None:
            raise InvalidArgument(f"deadline must be a timezone-aware datetime, got {deadline!r}")
        return representable(from_datetime(deadline), f"deadline {deadline.isoformat()}")
    d = seconds(deadline, "deadline (from now)", positive=True)
    assert d is not None
    return representable(now() + d, f"deadline={deadline!r} from now")


def caller_connection(connection: Any, in_handler: bool, what: str) -> Any:
    """``connection=``: the caller's own DB-API connection to write in (the store checks
    it), from code outside handlers only."""
    if connection is not None and in_handler:
        raise InvalidArgument(
            f"connection= is for code outside handlers; inside a handler or workflow, {what} "
            "is written with the attempt (or step) that made it: leave connection= out"
        )
    return connection


def check_overrides(ov: dict[str, Any]) -> None:
    """Refuse a submission's bad overrides before anything is read or opened (a submit by
    name looks its task up in the store first, which opens it: the CLI created a store
    for a submit it then refused)."""
    for what in ("idempotency_key", "execution_id", "correlation_id"):
        label(what, ov.get(what))
    start_of(Policy(kind="once"), ov.get("delay"), ov.get("run_at"), time.time)
    deadline_of(ov.get("deadline"), time.time)
    debounce_of(Policy(kind="once"), ov)
    if ov.get("priority") is not None:
        priority_option(ov["priority"])
    if ov.get("queue") is not None:
        queue_name(ov["queue"])
    key = ov.get("concurrency_key")
    if key is not None and not isinstance(key, str):
        raise InvalidArgument(f"concurrency_key must be a string, got {key!r}")


def label(what: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidArgument(f"{what} must be a non-empty string, got {value!r}")
    return value


def an_id(what: str, value: Any, optional: bool = False) -> Any:
    """``value`` as an id or name to look up: a str (or None, if ``optional``)."""
    if not isinstance(value, str) and not (optional and value is None):
        raise InvalidArgument(f"{what} must be a str, got {value!r}")
    return value


def arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """A submit's positional and keyword arguments: a list or tuple, and a dict (or None)
    with str keys."""
    if not isinstance(args, list | tuple):
        raise InvalidArgument(f"args must be a list or tuple, got {args!r}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidArgument(f"kwargs must be a dict with str keys, got {kwargs!r}")
    return list(args), kwargs


def run_state_of(state: Any) -> RunState:
    try:
        return RunState(state)
    except ValueError:
        raise InvalidArgument(
            f"state must be one of {', '.join(RunState)}, got {state!r}"
        ) from None


def check_limit(limit: Any, what: str = "limit") -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgument(f"{what} must be an int >= 0, got {limit!r}")
