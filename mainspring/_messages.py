"""Durable messages in the facade: ``ms.Message`` and ``ms.Receipt``, checking topics,
patterns and payloads, minting event ids, and the handler a worker runs for a subscriber
(docs/messages.md)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from .bus._errors import Backpressure
from .core.clock import to_datetime
from .core.codec import to_plain
from .core.errors import InvalidArgument
from .core.failures import PreconditionFailed
from .core.ids import uuid7
from .core.model import MessageRecord, ReceiptRecord
from .core.topics import is_name, parse_pattern
from .worker.context import current as context_now

if TYPE_CHECKING:
    from .app import App


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A durable message: what ``app.publish`` returns and a subscriber receives.

    ``sequence`` numbers it in its topic from 1; ``causation_id`` is the run that
    published it (None outside a handler). A message published inside a handler is
    written when that attempt commits: until then its ``sequence`` and ``published_at``
    are None."""

    event_id: str
    topic: str
    sequence: int | None
    correlation_id: str | None
    causation_id: str | None
    published_at: datetime | None
    payload: Any


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """How one subscriber's handling of one message ended (one per subscriber and
    event id): ``status`` ``delivered``, ``failed`` or ``skipped`` (canceled);
    ``sequence`` counts the subscriber's receipts from 1."""

    receipt_id: str
    subscriber: str
    event_id: str
    topic: str
    sequence: int
    status: str
    run_id: str
    attempt: int
    output: Any
    failure_class: str | None
    retry_class: str | None
    recorded_at: datetime


def message_of(m: MessageRecord) -> Message:
    return Message(
        event_id=m.event_id,
        topic=m.topic,
        sequence=m.sequence,
        correlation_id=m.correlation_id,
        causation_id=m.causation_id,
        published_at=to_datetime(m.published_at),
        payload=m.payload,
    )


def receipt_of(r: ReceiptRecord) -> Receipt:
    published = to_datetime(r.recorded_at)
    assert published is not None
    return Receipt(
        receipt_id=r.receipt_id,
        subscriber=r.subscriber,
        event_id=r.event_id,
        topic=r.topic,
        sequence=r.sequence,
        status=r.status,
        run_id=r.run_id,
        attempt=r.attempt,
        output=r.output,
        failure_class=r.failure_class,
        retry_class=r.retry_class,
        recorded_at=published,
    )


def check_topic(topic: Any) -> str:
    """A topic to publish to: dotted segments of letters, digits, ``_``, ``-``, ``:``."""
    if not is_name(topic):
        raise InvalidArgument(
            f"topic {topic!r} is not a valid topic: use dotted segments of letters, digits, "
            "'_', '-' or ':' (no wildcards), e.g. 'orders.created'"
        )
    return topic


def check_pattern(pattern: Any) -> str:
    """A subscription pattern: a topic whose segments may be ``*`` (one) or, last, ``#``."""
    if not isinstance(pattern, str) or parse_pattern(pattern) is None:
        raise InvalidArgument(
            f"topic pattern {pattern!r} is not valid: dotted segments, each a name, '*' "
            "(exactly one segment) or, last, '#' (the rest), e.g. 'orders.*' or 'audit.#'"
        )
    return pattern


def plain_payload(payload: Any, limit: int, what: str) -> Any:
    """``payload`` as plain JSON data, at most ``limit`` bytes encoded (else Backpressure)."""
    plain = to_plain(payload, what)
    size = len(msgspec.json.encode(plain))
    if size > limit:
        raise Backpressure(
            f"{what} is {size} bytes of JSON, over the limit of {limit} (max_payload_bytes): "
            "publish a reference to the data instead, or raise the limit"
        )
    return plain


def mint_event_id(topic: str, attempt_id: str | None = None, n: int = 0) -> str:
    """A message's durable id: ``evt:<uuid7>:<topic>``, or inside a handler attempt
    ``evt:<attempt_id>:<n>:<topic>`` (so a retried attempt mints fresh ids)."""
    if attempt_id is None:
        return f"evt:{uuid7()}:{topic}"
    return f"evt:{attempt_id}:{n}:{topic}"


def subscriber_handler(app: App, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subscriber for workers: it receives its delivery's ``ms.Message``; a message
    this subscriber already has a receipt for is not handled again (a rerun of a
    delivery): it ends as the first handling did."""

    def again(doc: dict[str, Any]) -> tuple[bool, Any]:
        ctx = context_now()
        if ctx is not None and ctx.idempotency_key == doc["event_id"]:
            # the message's own delivery run (keyed by its event id, so the only one): its
            # receipt is written when it ends, so none exists yet; only another run of the
            # same message (a rerun) needs to look
            return False, None
        done = app.engine.receipts(name, doc["event_id"])
        if not done:
            return False, None
        if done[0].status == "delivered":
            return True, done[0].output
        raise PreconditionFailed(
            "receipt-exists",
            f"{name} already handled {doc['event_id']} ({done[0].status}, run {done[0].run_id})",
        )

    def message(doc: dict[str, Any]) -> Message:
        return Message(
            **{**doc, "published_at": to_datetime(doc.get("published_at"))},
        )

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(doc: dict[str, Any]) -> Any:
            handled, output = again(doc)
            if handled:
                return output
            return await fn(message(doc))

        return run_async

    @functools.wraps(fn)
    def run(doc: dict[str, Any]) -> Any:
        handled, output = again(doc)
        if handled:
            return output
        return fn(message(doc))

    return run
