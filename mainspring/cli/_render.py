"""Output of the command line: JSON documents and rich tables.

JSON (README.md, "Command line"): records are the msgspec structs of the API turned into
plain data, times are ISO 8601 strings with an explicit offset (``+00:00``), states and
attempt results are their string values. Human output goes through rich; anything that
came from the store is rendered as plain ``Text`` so square brackets in user data are never
read as rich markup.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .._messages import Message, Receipt
from .._records import plain as plain  # (re-exported: the commands render with out.plain)
from ..app import Explanation, LogEvent, QueueInfo, RunInfo, StepInfo, TaskInfo, WorkerInfo
from ..core.clock import to_datetime
from ..core.model import WaitRecord
from ..worker import AttemptDone

STATE_STYLES = {
    "scheduled": "cyan",
    "ready": "blue",
    "leased": "magenta",
    "running": "bold magenta",
    "retry_wait": "yellow",
    "suspended": "yellow",
    "completed": "green",
    "failed": "bold red",
    "canceled": "dim",
}
RECEIPT_STYLES = {"delivered": "green", "failed": "bold red", "skipped": "dim"}
RESULT_STYLES = {
    "success": "green",
    "retryable": "yellow",
    "terminal": "bold red",
    "timeout": "red",
    "suspended": "yellow",
    "lost": "bold red",
}


# -- JSON ------------------------------------------------------------------------------------
def run_json(run: RunInfo, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = plain(run)
    doc.update(plain(extra))
    return doc


def event_json(event: LogEvent) -> dict[str, Any]:
    doc: dict[str, Any] = plain(event)
    return doc


def wait_json(wait: WaitRecord) -> dict[str, Any]:
    """A workflow's sleep or wait as ``mainspring run --json`` lists it."""
    doc: dict[str, Any] = plain(
        {
            "number": wait.number,
            "kind": wait.kind,
            "name": wait.name,
            "children": list(wait.children),
            "until": to_datetime(wait.until),
            "state": wait.state,
            "timed_out": wait.timed_out,
            "payload": wait.payload,
            "started_at": to_datetime(wait.started_at),
            "finished_at": to_datetime(wait.finished_at),
        }
    )
    return doc


def attempt_json(done: AttemptDone) -> dict[str, Any]:
    """A finished attempt as ``mainspring worker --json`` prints it."""
    return {
        "task_name": done.task_name,
        "run_id": done.run_id,
        "attempt": done.attempt,
        "result": str(done.result),
        "duration": round(done.duration, 6),
        "error": done.error,
    }


def dumps(value: Any) -> str:
    """One line of compact JSON."""
    return msgspec.json.encode(value).decode()


def emit_json(value: Any) -> None:
    sys.stdout.write(dumps(value) + "\n")
    sys.stdout.flush()


# -- human output ----------------------------------------------------------------------------
def console(stderr: bool = False) -> Console:
    """A console bound to the current stdout/stderr, wide enough not to fold ids in pipes."""
    c = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not c.is_terminal:
        c.width = max(c.width, 160)
    return c


def when(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def result_text(result: str | None) -> Text:
    if result is None:
        return Text("open", style="magenta")
    return Text(result, style=RESULT_STYLES.get(result, ""))


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else dumps(plain(value))
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_table(runs: list[RunInfo]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("run id", no_wrap=True, min_width=36)
    table.add_column("task", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("scheduled (UTC)", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("key", overflow="fold")
    table.add_column("output / error", overflow="fold")
    for r in runs:
        if r.error is not None:
            outcome = Text(short(r.error), style="red")
        elif r.state == "completed":
            outcome = Text(short(r.output))
        else:
            outcome = Text("")
        table.add_row(
            Text(r.run_id),
            Text(r.task_name),
            state_text(r.state),
            when(r.scheduled_at),
            str(len(r.attempts)),
            Text(r.concurrency_key or ""),
            outcome,
        )
    return table


def run_details(run: RunInfo, children: list[str] | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows: list[tuple[str, Text | str]] = [
        ("run", Text(run.run_id)),
        ("task", Text(f"{run.task_name}  ({run.task_id})")),
        ("state", state_text(run.state)),
        ("scheduled", when(run.scheduled_at)),
        ("queue / priority", Text(f"{run.queue} / {run.priority}")),
    ]
    for label, value in (
        ("concurrency key", run.concurrency_key),
        ("idempotency key", run.idempotency_key),
        ("execution id", run.execution_id),
        ("correlation id", run.correlation_id),
        ("parent run", run.parent_run_id),
        ("caused by", run.caused_by),
        ("rerun of", run.rerun_of),
    ):
        if value is not None:
            rows.append((label, Text(value)))
    if children:
        rows.append(("children", Text("\n".join(children))))
    if run.state == "completed":
        rows.append(("output", Text(short(run.output, 400))))
    if run.error is not None:
        rows.append(("error", Text(run.error, style="red")))
    if run.failure_class is not None:
        rows.append(("failure / retry class", classes_text(run.failure_class, run.retry_class)))
    for label, cell in rows:
        grid.add_row(label, cell)
    return grid


def attempts_table(run: RunInfo) -> Table:
    table = Table(title="attempts", title_justify="left", show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("result", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("finished (UTC)", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=24)
    table.add_column("failure / retry class", overflow="fold", min_width=16)
    table.add_column("attempt id", no_wrap=True)
    for a in run.attempts:
        table.add_row(
            str(a.number),
            result_text(a.result),
            when(a.started_at),
            when(a.finished_at),
            Text(a.error or "", style="red"),
            classes_text(a.failure_class, a.retry_class),
            Text(a.attempt_id),
        )
    return table


def steps_table(steps: list[StepInfo]) -> Table:
    """A workflow's steps in step-number order, with each one's output or error."""
    table = Table(title="steps", title_justify="left", show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("name", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("finished (UTC)", no_wrap=True)
    table.add_column("output / error", overflow="fold")
    for st in steps:
        if st.error is not None:
            outcome = Text(short(st.error), style="red")
        else:
            outcome = Text(short(st.output))
        table.add_row(
            str(st.number),
            Text(st.name),
            state_text(st.state),
            str(st.attempts),
            when(st.finished_at),
            outcome,
        )
    return table


WAIT_STYLES = {"waiting": "yellow", "completed": "green"}


def _waited_for(wait: WaitRecord) -> Text:
    if wait.kind == "signal":
        return Text(repr(wait.name))
    if wait.kind == "child":
        return Text("\n".join(wait.children))
    return Text("")


def waits_table(waits: list[WaitRecord]) -> Table:
    """A workflow's durable sleeps and waits in call order: what each waited for, until
    when, and how it ended (a signal's payload, or a timeout)."""
    table = Table(title="waits", title_justify="left", show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("kind", no_wrap=True)
    table.add_column("for", overflow="fold")
    table.add_column("until (UTC)", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("timed out", no_wrap=True)
    table.add_column("received", overflow="fold")
    for w in waits:
        received = w.signal_id is not None
        table.add_row(
            str(w.number),
            w.kind,
            _waited_for(w),
            when(to_datetime(w.until)),
            Text(w.state, style=WAIT_STYLES.get(w.state, "")),
            Text("yes", style="yellow") if w.timed_out else "no",
            Text(short(w.payload) if received else ""),
        )
    return table


def event_summary(event: LogEvent) -> str:
    data = dict(event.data)
    if event.type == "run.state_changed":
        text = f"{data.get('from')} -> {data.get('to')}"
        if data.get("reason"):
            text += f" ({data['reason']})"
        return text
    if event.type == "attempt.finished":
        data.pop("traceback", None)
        text = str(data.get("result"))
        if data.get("error"):
            text += f": {data['error']}"
        return text
    return short(data, 100) if data else ""


def history_table(events: list[LogEvent]) -> Table:
    table = Table(title="history", title_justify="left", show_edge=False, header_style="bold")
    table.add_column("seq", justify="right")
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("details", overflow="fold")
    for e in events:
        table.add_row(str(e.seq), when(e.at), e.type, Text(event_summary(e)))
    return table


def event_line(event: LogEvent) -> Text:
    line = Text()
    line.append(f"{event.seq:>7}  ", style="dim")
    line.append(when(event.at) + "  ")
    line.append(f"{event.type:<20}", style="bold")
    for label, value in (
        ("task", event.task_id),
        ("run", event.run_id),
        ("attempt", event.attempt_id),
        ("execution", event.execution_id),
        ("correlation", event.correlation_id),
    ):
        if value is not None:
            line.append(f" {label}=", style="dim")
            line.append(value)
    if event.data:
        data = dict(event.data)
        data.pop("traceback", None)
        line.append(" " + dumps(plain(data)))
    return line


def stats_table(counts: dict[str, int], paused: bool | None) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("state")
    table.add_column("runs", justify="right")
    for state, n in counts.items():
        table.add_row(state_text(state), str(n))
    table.add_section()
    table.add_row(Text("total", style="bold"), str(sum(counts.values())))
    if paused is not None:
        table.caption = "engine paused: nothing is leased" if paused else "engine running"
    return table


def policy_text(policy: dict[str, Any]) -> str:
    """A task's policy in a few words: ``once``, ``repeat 6 x every 1800s``, ``cron ...``."""
    kind = policy.get("kind", "?")
    if kind == "repeat":
        text = f"repeat {policy.get('count')} x every {policy.get('every'):g}s"
    elif kind == "cron":
        text = f"cron {policy.get('cron')} ({policy.get('tz')}, {policy.get('misfire')})"
        if policy.get("max_occurrences") is not None:
            text += f", at most {policy['max_occurrences']}"
    else:
        text = str(kind)
    start = policy.get("start_at")
    if isinstance(start, datetime):
        text += f" from {when(start)}"
    return text


def counts_text(counts: dict[str, int]) -> Text:
    """Run counts per state, in the order of the state machine: ``ready 1, completed 3``."""
    text = Text()
    order = [*STATE_STYLES, *sorted(set(counts) - set(STATE_STYLES))]
    for state in order:
        n = counts.get(state)
        if not n:
            continue
        if text:
            text.append(", ")
        text.append(state, style=STATE_STYLES.get(state, ""))
        text.append(f" {n}")
    return text


def tasks_table(tasks: list[TaskInfo]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("task id", no_wrap=True, min_width=36)
    table.add_column("name", overflow="fold")
    table.add_column("policy", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("next (UTC)", no_wrap=True)
    table.add_column("runs", overflow="fold")
    for t in tasks:
        table.add_row(
            Text(t.task_id),
            Text(t.name),
            Text(policy_text(t.policy)),
            Text(t.state, style="dim" if t.state == "canceled" else "green"),
            when(t.next_at),
            counts_text(t.run_counts),
        )
    return table


def workers_table(workers: list[WorkerInfo]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("worker id", no_wrap=True, min_width=36)
    table.add_column("host / pid", overflow="fold")
    table.add_column("queues", overflow="fold")
    table.add_column("tasks", overflow="fold")
    table.add_column("running", justify="right")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("last seen (UTC)", no_wrap=True)
    for w in workers:
        table.add_row(
            Text(w.worker_id),
            Text(f"{w.host} / {w.pid}"),
            Text("all" if w.queues is None else ", ".join(w.queues)),
            Text(", ".join(w.tasks)),
            f"{len(w.running)} / {w.concurrency}",
            when(w.started_at),
            when(w.last_seen_at),
        )
    return table


def queues_table(queues: list[QueueInfo]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("queue", no_wrap=True)
    table.add_column("paused")
    for state in ("ready", "running", "retry_wait", "scheduled", "suspended", "failed"):
        table.add_column(state.replace("_", " "), justify="right")
    table.add_column("oldest ready", justify="right")
    for q in queues:
        table.add_row(
            Text(q.name),
            "paused" if q.paused else "",
            *(
                str(q.counts.get(s, 0))
                for s in ("ready", "running", "retry_wait", "scheduled", "suspended", "failed")
            ),
            "" if q.oldest_ready_seconds is None else f"{q.oldest_ready_seconds:.1f} s",
        )
    return table


def why_text(explanation: Explanation) -> Text:
    """``app.why`` as sentences: the run's state, then each reason, most decisive first."""
    text = Text()
    text.append(f"run {explanation.run_id} is ")
    text.append_text(state_text(explanation.state))
    if not explanation.reasons:
        text.append("\n  (nothing more to say)")
    for reason in explanation.reasons:
        text.append("\n  - ")
        text.append(reason.text)
        text.append(f" [{reason.code}]", style="dim")
    return text


def attempt_line(done: AttemptDone) -> str:
    """A finished attempt as ``mainspring worker`` prints it: task, run id, result,
    duration, then the attempt number and the error, if any."""
    line = (
        f"{done.task_name}  {done.run_id}  {done.result}  {done.duration:.3f}s  "
        f"attempt {done.attempt}"
    )
    if done.error:
        line += f"  {' '.join(done.error.split())}"
    return line


@contextmanager
def progress(what: str, unit: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for long work, when stderr is a terminal (else None):
    the callable takes (done, total)."""
    if not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=max(total, done))

    with bar:
        yield update


def classes_text(failure_class: str | None, retry_class: str | None) -> Text:
    """A failure's classes as ``transport_error / safe_retry`` (empty when there is none)."""
    if failure_class is None:
        return Text("")
    return Text(f"{failure_class} / {retry_class or '?'}", style="yellow")


# -- messages (docs/messages.md) ---------------------------------------------------------------
def published_line(msg: Message) -> str:
    """What ``mainspring publish`` prints: the topic, the sequence and the event id."""
    return (
        f"published {msg.topic} #{msg.sequence}  event id {msg.event_id}  "
        f"correlation id {msg.correlation_id}"
    )


def _details(title: str, rows: list[tuple[str, Text | str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.title = title
    grid.title_justify = "left"
    grid.title_style = "bold"
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, cell in rows:
        grid.add_row(label, cell)
    return grid


def message_details(msg: Message) -> Table:
    """The message a delivery run handles, as ``mainspring run`` shows it."""
    rows: list[tuple[str, Text | str]] = [
        ("topic", Text(msg.topic)),
        ("sequence", str(msg.sequence)),
        ("event id", Text(msg.event_id)),
        ("correlation id", Text(msg.correlation_id or "")),
    ]
    if msg.causation_id is not None:
        rows.append(("caused by", Text(msg.causation_id)))
    rows.append(("published", when(msg.published_at)))
    rows.append(("payload", Text(short(msg.payload, 400))))
    return _details("message", rows)


def receipt_details(receipt: Receipt | None) -> Table:
    """How a delivery ended for its subscriber (its receipt), or that it has not yet."""
    if receipt is None:
        return _details("receipt", [("status", Text("none yet (the delivery has not ended)"))])
    rows: list[tuple[str, Text | str]] = [
        ("status", Text(receipt.status, style=RECEIPT_STYLES.get(receipt.status, ""))),
        ("receipt", f"#{receipt.sequence} of {receipt.subscriber}"),
        ("run / attempt", Text(f"{receipt.run_id} / {receipt.attempt}")),
        ("recorded", when(receipt.recorded_at)),
    ]
    if receipt.status == "delivered":
        rows.append(("output", Text(short(receipt.output, 400))))
    if receipt.failure_class is not None:
        rows.append(
            ("failure / retry class", classes_text(receipt.failure_class, receipt.retry_class))
        )
    return _details("receipt", rows)


def messages_table(messages: list[Message]) -> Table:
    """A topic's messages in sequence order."""
    table = Table(show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("published (UTC)", no_wrap=True)
    table.add_column("event id", no_wrap=True)
    table.add_column("correlation id", overflow="fold", min_width=12)
    table.add_column("caused by", no_wrap=True)
    table.add_column("payload", overflow="fold", min_width=16)
    for m in messages:
        table.add_row(
            str(m.sequence),
            when(m.published_at),
            Text(m.event_id),
            Text(m.correlation_id or ""),
            Text(m.causation_id or ""),
            Text(short(m.payload)),
        )
    return table


def receipts_table(receipts: list[Receipt]) -> Table:
    """Receipts: how each subscriber's handling of each message ended (the topic and the
    time are in ``--json``, and in ``mainspring run`` of the delivery)."""
    table = Table(show_edge=False, header_style="bold")
    table.add_column("subscriber", overflow="fold", min_width=10)
    table.add_column("#", justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("event id", no_wrap=True)
    table.add_column("run id", no_wrap=True, min_width=36)
    table.add_column("attempt", justify="right")
    table.add_column("output / class", overflow="fold", min_width=16)
    for r in receipts:
        if r.failure_class is not None:
            outcome = classes_text(r.failure_class, r.retry_class)
        else:
            outcome = Text(short(r.output) if r.status == "delivered" else "")
        table.add_row(
            Text(r.subscriber),
            str(r.sequence),
            Text(r.status, style=RECEIPT_STYLES.get(r.status, "")),
            Text(r.event_id),
            Text(r.run_id),
            str(r.attempt),
            outcome,
        )
    return table
