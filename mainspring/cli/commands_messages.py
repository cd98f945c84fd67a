"""The commands of durable messages (docs/messages.md): ``publish`` (writes a message),
``messages`` and ``receipts`` (only read), and what ``run`` shows of a delivery run.

``publish`` checks everything it is given (the topic, the JSON of the payload, its size,
the ids) before it opens the store, so bad input exits 2 and neither writes nor creates
anything. ``messages`` and ``receipts`` open the store with ``create=False``, as every
command that only reads does.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from .._messages import Message, Receipt, check_topic
from ..app import App, RunInfo
from ..core.clock import to_datetime
from . import _render as out
from ._app import open_app
from ._errors import handle_errors
from ._options import JsonOpt, StoreOpt, globals_of, parse_payload

TopicArg = Annotated[
    str,
    typer.Argument(
        metavar="TOPIC",
        help="The topic: dotted segments of letters, digits, '_', '-' or ':', e.g. orders.created.",
    ),
]


@handle_errors
def publish(
    ctx: typer.Context,
    topic: TopicArg,
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            metavar="JSON|@FILE",
            help="The message's payload, any JSON value (at most 1 MiB encoded), or @FILE to read it from a file (@-: standard input); default null.",
        ),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option(
            "--event-id",
            metavar="ID",
            help="Your own durable id for the message: publishing it again with an equal payload prints the first message and writes nothing; another payload exits 1. Default: a fresh evt:<uuid7>:<topic>.",
        ),
    ] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option(
            "--correlation-id",
            metavar="ID",
            help="Correlation id of the message and of its deliveries; default: a fresh one.",
        ),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish a durable message to TOPIC: one delivery run for every subscriber of it.

    Durable when it returns. Prints the topic, the message's sequence in it and its event id (--json: the message). A bad topic, a payload that is not JSON or is over 1 MiB, or an empty id exits 2 and writes nothing; an --event-id published before with another payload exits 1."""
    g = globals_of(ctx, store, json_out)
    value = parse_payload(payload)
    # (the App checks topic, ids and payload before it opens the store: bad input creates
    # no store)
    with contextlib.closing(App(g.store)) as app:
        msg = app.publish(topic, value, event_id=event_id, correlation_id=correlation_id)
    if g.json:
        out.emit_json(out.plain(msg))
    else:
        out.console().print(out.published_line(msg), soft_wrap=True, markup=False)


@handle_errors
def messages(
    ctx: typer.Context,
    topic: TopicArg,
    since: Annotated[
        int,
        typer.Option(
            "--since", metavar="N", min=0, help="Only messages whose sequence is greater than N."
        ),
    ] = 0,
    limit: Annotated[
        int,
        typer.Option("--limit", metavar="N", min=1, help="At most N messages (in sequence order)."),
    ] = 100,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the messages of TOPIC in sequence order (--json: an array of messages).

    The table shows each message's sequence, publish time, event id, correlation id, the run that published it (if a handler did) and its payload."""
    g = globals_of(ctx, store, json_out)
    check_topic(topic)  # a bad topic is a usage error before the store is looked at
    with open_app(g, create=False) as app:
        found = app.messages(topic, since=since, limit=limit)
    if g.json:
        out.emit_json([out.plain(m) for m in found])
    elif not found:
        after = f" after #{since}" if since else ""
        out.console().print(f"no messages in {topic}{after}", markup=False)
    else:
        out.console().print(out.messages_table(found))


@handle_errors
def receipts(
    ctx: typer.Context,
    subscriber: Annotated[
        str | None,
        typer.Option("--subscriber", metavar="S", help="Only the receipts of this subscriber."),
    ] = None,
    event_id: Annotated[
        str | None,
        typer.Option("--event-id", metavar="E", help="Only the receipts of this message."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, help="At most N receipts.")
    ] = 100,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List receipts: how each subscriber's handling of each message ended (--json: an array).

    One receipt per (subscriber, event id), written when the delivery ends: status delivered, failed or skipped (canceled), the run and attempt, the output or the failure and retry class."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        found = app.receipts(subscriber=subscriber, event_id=event_id, limit=limit)
    if g.json:
        out.emit_json([out.plain(r) for r in found])
    elif not found:
        out.console().print("no receipts")
    else:
        out.console().print(out.receipts_table(found))


def delivery_of(app: App, info: RunInfo) -> tuple[Message | None, Receipt | None]:
    """The message a delivery run handles and its subscriber's receipt of it (None while
    the delivery has not ended); (None, None) for a run that is not a delivery.

    A delivery is a run of a subscriber (a task whose recorded definition has a topic);
    its first argument is the message."""
    # (no public query says whether a task is a subscriber: the recorded definition says)
    definition = app.engine.definition(info.task_name) or {}
    if not definition.get("topic"):
        return None, None
    args = app.get_task(info.task_id).args
    doc = args[0] if args else None
    if not isinstance(doc, dict) or not isinstance(doc.get("event_id"), str):
        return None, None
    msg = Message(
        event_id=doc["event_id"],
        topic=str(doc.get("topic", "")),
        sequence=doc.get("sequence"),
        correlation_id=doc.get("correlation_id"),
        causation_id=doc.get("causation_id"),
        published_at=to_datetime(doc.get("published_at")),
        payload=doc.get("payload"),
    )
    found = app.receipts(subscriber=info.task_name, event_id=msg.event_id, limit=1)
    return msg, (found[0] if found else None)


def show_delivery(msg: Message, receipt: Receipt | None) -> None:
    """The message and receipt sections of ``mainspring run`` (human output)."""
    con = out.console()
    con.print(out.message_details(msg))
    con.print()
    con.print(out.receipt_details(receipt))
    con.print()
