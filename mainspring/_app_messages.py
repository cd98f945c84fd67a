"""The App's durable messages: publishing, subscribing, the messages and receipts of the
store, and ``@app.transaction`` (docs/messages.md). A part of ``ms.App``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, Unpack, cast

import msgspec

from . import workflow
from ._messages import (
    Message,
    Receipt,
    check_pattern,
    check_topic,
    message_of,
    mint_event_id,
    plain_payload,
    receipt_of,
)
from ._task_options import (
    TaskOptionArgs,
    caller_connection,
    check_limit,
    default_name,
    failure_overrides,
    options,
    task_name,
)
from ._tasks import TaskFunction
from ._transactions import TransactionFunction
from .core.errors import InvalidArgument, refusing_bad_calls
from .core.ids import uuid7
from .engine.topics import PublishRequest
from .worker.context import current as context_now

if TYPE_CHECKING:
    from ._task_options import FailureOverrides
    from .app import App
    from .core.clock import Clock
    from .core.model import TaskOptions
    from .engine import Engine

P = ParamSpec("P")
R = TypeVar("R")


@refusing_bad_calls
class Messaging:
    """``app.publish``, ``publish_many``, ``subscriber``, ``messages``, ``receipts``,
    ``transaction``."""

    if TYPE_CHECKING:  # (what App provides)

        @property
        def engine(self) -> Engine: ...

        max_payload_bytes: int
        clock: Clock
        declared: dict[str, TaskFunction[Any, Any]]

        def _declare(
            self,
            fn: Any,
            name: str | None,
            opts: TaskOptions,
            concurrency_key: Any,
            overrides: FailureOverrides,
            what: str,
        ) -> Any: ...

    def transaction(
        self, name: str | None = None
    ) -> Callable[[Callable[Concatenate[Any, P], R]], TransactionFunction[P, R]]:
        """Declare a function whose writes commit exactly once per run: its first
        parameter is the store's DB-API connection, which callers omit
        (``TransactionFunction``)."""
        if name is not None:
            task_name(name)

        def register(f: Callable[Concatenate[Any, P], R]) -> TransactionFunction[P, R]:
            if not callable(f):
                raise InvalidArgument("@app.transaction() decorates a function")
            return TransactionFunction(
                cast("App", self), f, name if name is not None else default_name(f)
            )

        return register

    def publish(
        self,
        topic: str,
        payload: Any = None,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        connection: Any = None,
    ) -> Message:
        """Publish a durable message: numbered in its topic, one delivery created for every
        subscriber of the topic, durable on return. Inside a handler it is written when
        the attempt commits successfully (in a workflow body it is a step of its own).

        ``event_id``: the caller's own durable id; publishing it again with an equal
        payload returns the first message and writes nothing (another payload:
        IdempotencyConflict). A payload over ``max_payload_bytes`` raises Backpressure.
        ``connection``: the caller's DB-API connection to the store's own database: the
        message is written inside the caller's open transaction on it, and exists only if
        that commits (docs/transactions.md); outside handlers only."""
        caller_connection(connection, context_now() is not None, "a publish")
        req = self._publish_request(topic, payload, event_id, correlation_id)
        ctx = context_now()
        if ctx is None:
            return message_of(self.engine.publish(req, connection=connection))
        wf = workflow.current()
        if wf is not None:
            return message_of(workflow.publish_step(wf, req))
        ctx.launches.append(req)  # written when the attempt (or the step) commits
        return Message(
            event_id=req.event_id,
            topic=topic,
            sequence=None,
            correlation_id=req.correlation_id,
            causation_id=ctx.run_id,
            published_at=None,
            payload=req.payload,
        )

    def publish_many(
        self, topic: str, payloads: Sequence[Any], *, connection: Any = None
    ) -> list[Message]:
        """Publish several messages to ``topic`` in one transaction (numbered in the order
        given); outside a handler only (a handler's publishes are written together with
        its attempt already). ``connection``: as for ``publish``."""
        if context_now() is not None:
            raise InvalidArgument(
                "app.publish_many is for code outside handlers; inside one, call app.publish "
                "for each message (they are written together when the attempt commits)"
            )
        if not isinstance(payloads, Sequence) or isinstance(payloads, str | bytes):
            raise InvalidArgument(f"payloads must be a list of payloads, got {payloads!r}")
        reqs = [self._publish_request(topic, p, None, None) for p in payloads]
        return [message_of(m) for m in self.engine.publish_many(reqs, connection=connection)]

    def _publish_request(
        self, topic: str, payload: Any, event_id: str | None, correlation_id: str | None
    ) -> PublishRequest:
        """A checked publish: its event id minted (inside a handler, from its attempt) and
        its correlation (inherited from the running handler, else a fresh one)."""
        check_topic(topic)
        for what, value in (("event_id", event_id), ("correlation_id", correlation_id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidArgument(f"{what} must be a non-empty string, got {value!r}")
        plain = plain_payload(payload, self.max_payload_bytes, f"the payload to {topic!r}")
        ctx = context_now()
        if ctx is None:
            return PublishRequest(
                topic,
                plain,
                event_id or mint_event_id(topic),
                correlation_id or uuid7(),
                given_id=event_id is not None,
            )
        req = PublishRequest(
            topic,
            plain,
            event_id or mint_event_id(topic, ctx.attempt_id, ctx.publishes),
            correlation_id or ctx.correlation_id,
            given_id=event_id is not None,
            causation_id=ctx.run_id,
        )
        ctx.publishes += 1
        return req

    def subscriber(
        self,
        pattern: str,
        *,
        name: str | None = None,
        ordered: bool = False,
        **task_options: Unpack[TaskOptionArgs],
    ) -> Callable[[Callable[[Message], Any]], TaskFunction[[Message], Any]]:
        """Declare a subscriber of the topics ``pattern`` matches (``*``: one segment,
        ``#``: the rest): a task whose runs are deliveries, each handling one
        ``ms.Message``. ``ordered=True``: one message at a time, in sequence order (a
        ``concurrency_key``, a ``concurrency_limit`` other than 1 or ``key_policy="release"``
        would break it: ``InvalidArgument``). Takes the options of ``@app.task``."""
        check_pattern(pattern)
        if not isinstance(ordered, bool):
            raise InvalidArgument(f"ordered must be True or False, got {ordered!r}")
        given: dict[str, Any] = dict(task_options)
        if ordered:
            # its one key, held through retries, is what keeps the order
            clash = {
                k: given[k]
                for k, ok in (
                    ("concurrency_key", None),
                    ("concurrency_limit", 1),
                    ("key_policy", "hold"),
                )
                if k in given and given[k] != ok
            }
            if clash:
                raise InvalidArgument(
                    f"ordered=True delivers one message at a time under one key held through "
                    f"retries: it takes no {', '.join(f'{k}={v!r}' for k, v in clash.items())}"
                )
        overrides = failure_overrides(given.pop("retry_on", ()), given.pop("never_retry", ()))
        opts = msgspec.structs.replace(options(**given), topic=pattern, ordered=ordered)
        declare: (
            Callable[[Callable[[Message], Any]], TaskFunction[[Message], Any]]
            | TaskFunction[[Message], Any]
        ) = self._declare(None, name, opts, None, overrides, "@app.subscriber")
        assert not isinstance(declare, TaskFunction)
        return declare

    def messages(self, topic: str, since: int = 0, limit: int = 100) -> list[Message]:
        """The messages of ``topic`` with a sequence greater than ``since``, in order."""
        check_topic(topic)
        check_limit(since, "since")
        check_limit(limit)
        return [message_of(m) for m in self.engine.messages(topic, since, limit)]

    def receipts(
        self, subscriber: str | None = None, event_id: str | None = None, limit: int = 100
    ) -> list[Receipt]:
        """Receipts (how deliveries ended), of one subscriber and/or one message, the
        first recorded first."""
        check_limit(limit)
        return [receipt_of(r) for r in self.engine.receipts(subscriber, event_id, limit)]
