"""Durable topics: publishing (a message numbered in its topic, and one delivery run per
subscriber in the same transaction), receipts (how each delivery ended, written in the
transaction that ends it), and their queries (docs/messages.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..core import events as E
from ..core.errors import IdempotencyConflict
from ..core.model import (
    MessageRecord,
    Policy,
    ReceiptRecord,
    Run,
    SubscriberRecord,
    TaskOptions,
    TopicRecord,
    ordered_key,
    receipt_key,
)
from ..core.reducer import MESSAGES, RECEIPTS, SUBSCRIBERS, TOPICS
from ..core.states import RunState
from ..core.topics import matches, parse_pattern
from ..store.base import WriteTx
from .batch import Batch
from .calls import CallCommands
from .messages import SubmitRequest
from .submission import Seen, submit_one

#: Receipt status by how a delivery run ended.
_STATUS = {
    RunState.COMPLETED: "delivered",
    RunState.FAILED: "failed",
    RunState.CANCELED: "skipped",
}


@dataclass
class PublishRequest:
    """A message to publish, as the facade checked it (``event_id`` minted or given)."""

    topic: str
    payload: Any
    event_id: str
    correlation_id: str | None
    given_id: bool = False  # the caller's own event id: publishing it again is a replay
    causation_id: str | None = None  # the publishing run


def message_doc(msg: MessageRecord) -> dict[str, Any]:
    """The message as a delivery run's argument (``ms.Message`` fields, plain)."""
    return msgspec.to_builtins(msg)  # type: ignore[no-any-return]


class TopicCommands(CallCommands):
    def publish(self, req: PublishRequest, *, connection: Any = None) -> MessageRecord:
        """Publish one message (and create its deliveries) in one transaction."""
        return self.publish_many([req], connection=connection)[0]

    def publish_many(
        self, reqs: Sequence[PublishRequest], *, connection: Any = None
    ) -> list[MessageRecord]:
        """Publish messages (and create their deliveries) in one transaction, in order;
        with ``connection``, inside the caller's open transaction on it."""

        def body(tx: WriteTx, b: Batch) -> list[MessageRecord]:
            seen: Seen = {}
            tx.load_records(MESSAGES, [r.event_id for r in reqs], b.state)  # (one read)
            subscribers = self._subscribers(tx)
            return [self.publish_in(tx, b, req, seen, subscribers=subscribers) for req in reqs]

        return self.transact(body, connection=connection)[0]

    @staticmethod
    def _subscribers(tx: WriteTx) -> list[tuple[str, tuple[str, ...], TaskOptions]]:
        """The subscribers declared in the store: name, topic pattern, options."""
        out = []
        for name, definition in sorted(tx.definitions().items()):
            pattern = definition.get("topic")
            parts = parse_pattern(pattern) if isinstance(pattern, str) else None
            if parts is None:
                continue
            fields = {k: v for k, v in definition.items() if k in TaskOptions.__struct_fields__}
            out.append((name, parts, msgspec.convert(fields, TaskOptions)))
        return out

    def publish_in(
        self,
        tx: WriteTx,
        b: Batch,
        req: PublishRequest,
        seen: Seen,
        run: Run | None = None,
        subscribers: list[tuple[str, tuple[str, ...], TaskOptions]] | None = None,
    ) -> MessageRecord:
        """Decide a publish inside a command's transaction (``run``: the publishing run;
        ``subscribers``: ``_subscribers``, when the caller read them already)."""
        tx.load_records(MESSAGES, [req.event_id], b.state)
        old: MessageRecord | None = b.state.kind(MESSAGES).get(req.event_id)
        if old is not None:
            if not req.given_id or old.topic != req.topic or old.payload != req.payload:
                raise IdempotencyConflict(
                    f"event id {req.event_id!r} was already published with another "
                    f"{'topic' if old.topic != req.topic else 'payload'} (topic "
                    f"{old.topic!r}, sequence {old.sequence}); a new message needs a new id"
                )
            return old  # the same message again: nothing is written
        tx.load_records(TOPICS, [req.topic], b.state)
        topic: TopicRecord | None = b.state.kind(TOPICS).get(req.topic)
        if topic is not None:
            # a topic's messages are stamped in sequence order (a publisher that waited for
            # the topic's lock may have read the clock before the one it waited for)
            b.now = max(b.now, topic.last_at + 2e-6)  # (distinct to the microsecond)
        msg = MessageRecord(
            event_id=req.event_id,
            topic=req.topic,
            sequence=(0 if topic is None else topic.last_sequence) + 1,
            payload=req.payload,
            correlation_id=req.correlation_id,
            causation_id=req.causation_id,
            published_at=b.now,
        )
        b.emit(E.message_published(b.now, msg, run))
        doc = message_doc(msg)
        topic_parts = tuple(msg.topic.split("."))
        for name, parts, options in (
            subscribers if subscribers is not None else self._subscribers(tx)
        ):
            if not matches(parts, topic_parts):
                continue
            submit_one(
                tx,
                b,
                SubmitRequest(
                    name=name,
                    args=[doc],
                    kwargs={},
                    options=options,
                    policy=Policy(kind="once"),
                    idempotency_key=msg.event_id,
                    correlation_id=msg.correlation_id,
                    # one at a time, in sequence order (ties in the ready queue go to the
                    # earlier scheduled_at: the publish time, increasing with the sequence)
                    concurrency_key=ordered_key(name) if options.ordered else None,
                ),
                seen,
                # a new message has no delivery yet: no lookup by its key (the store's
                # unique key on it still refuses a second)
                fresh=True,
            )
        b.wake = True
        return msg

    def launch(self, tx: WriteTx, b: Batch, launches: Sequence[Any], run: Run) -> None:
        """Write what ``run``'s attempt (or workflow step) launched, now that it commits
        successfully: its submissions and its messages, in the order made."""
        seen: Seen = {}
        for item in launches:
            if isinstance(item, PublishRequest):
                self.publish_in(tx, b, item, seen, run)
            else:
                submit_one(tx, b, item, seen)
        b.wake = True

    # -- receipts -----------------------------------------------------------------------------
    def _receipt(self, tx: WriteTx, b: Batch, run: Run) -> None:
        """Write the receipt of a delivery run that ended (create-only: a receipt of its
        message for its subscriber that exists already stays the only one)."""
        assert run.delivery is not None
        key = receipt_key(run.task_name, run.delivery)
        tx.load_records(RECEIPTS, [key], b.state)
        if key in b.state.kind(RECEIPTS):
            return
        tx.load_records(SUBSCRIBERS, [run.task_name], b.state)
        sub: SubscriberRecord | None = b.state.kind(SUBSCRIBERS).get(run.task_name)
        tx.load_tasks([run.task_id], b.state)
        message = b.state.tasks[run.task_id].args[0]
        last = run.attempts[-1] if run.attempts else None
        receipt = ReceiptRecord(
            receipt_id=key,
            subscriber=run.task_name,
            event_id=run.delivery,
            topic=message.get("topic", ""),
            sequence=(0 if sub is None else sub.receipts) + 1,
            status=_STATUS[RunState(run.state)],
            run_id=run.run_id,
            attempt=0 if last is None else last.number,
            output=run.output if run.state == RunState.COMPLETED else None,
            failure_class=None if last is None else last.failure_class,
            retry_class=None if last is None else last.retry_class,
        )
        b.emit(E.receipt_recorded(run, b.now, receipt))

    # -- queries ------------------------------------------------------------------------------
    def messages(self, topic: str, since: int = 0, limit: int = 100) -> list[MessageRecord]:
        with self.store.read() as tx:
            return list(
                tx.records(MESSAGES, where=("topic", topic), after=("sequence", since), limit=limit)
            )

    def receipts(
        self, subscriber: str | None = None, event_id: str | None = None, limit: int = 100
    ) -> list[ReceiptRecord]:
        with self.store.read() as tx:
            if subscriber is not None and event_id is not None:
                one = tx.records(RECEIPTS, where=("receipt_id", receipt_key(subscriber, event_id)))
                return list(one)
            where = (
                ("subscriber", subscriber)
                if subscriber is not None
                else ("event_id", event_id)
                if event_id is not None
                else None
            )
            out: list[ReceiptRecord] = tx.records(
                RECEIPTS, where=where, order="recorded_at", limit=limit
            )
        # (receipts of one commit share their time: a subscriber's in its own count's order)
        out.sort(key=lambda r: (r.recorded_at, r.subscriber, r.sequence))
        return out
