"""Verify: replay the log from the latest snapshot (from empty without one) and compare
the result with the stored state."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core.errors import StoreError
from ..core.model import Event
from ..core.reducer import State, replay
from ..store.base import Store
from ..store.snapshots import decode_parts


def verify(store: Store, progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Every difference between the replayed log and the stored projection (none: ok).

    ``progress(done, total)`` is called as the replay goes (events replayed of those in
    the log after the snapshot), every few thousand events and at the end."""
    with store.read(snapshot=True) as tx:
        stored = tx.snapshot()
        base, first = tx.snapshot_seq(), tx.first_seq()
        if first > base + 1:
            return [
                f"the log starts at seq {first} but the latest snapshot is at seq {base}: "
                f"events {base + 1}..{first - 1} are missing"
            ]
        try:
            start = decode_parts(base, tx.snapshot_parts(base)) if base else State()
        except StoreError as exc:
            return [str(exc)]
        events: Iterable[Event] = tx.iter_all_events(since=base)
        if progress is not None:
            events = _reporting(events, stored.last_seq - base, progress)
        try:
            replayed = replay(events, start)
        except Exception as exc:
            return [f"the log does not replay: {exc}"]
    problems = _compare("run", stored.runs, replayed.runs)
    problems += _compare("task", stored.tasks, replayed.tasks)
    problems += _compare("task definition", stored.definitions, replayed.definitions)
    for kind in sorted(set(stored.records) | set(replayed.records)):
        problems += _compare(kind, stored.records.get(kind, {}), replayed.records.get(kind, {}))
    if stored.paused != replayed.paused:
        problems.append(f"engine paused: stored {stored.paused}, log says {replayed.paused}")
    return problems


def _compare(what: str, stored: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """The records that differ, naming each differing field."""
    problems: list[str] = []
    for key in sorted(set(stored) | set(replayed)):
        a, r = stored.get(key), replayed.get(key)
        if a is None:
            problems.append(f"{what} {key}: in the log but missing from the stored state")
        elif r is None:
            problems.append(f"{what} {key}: in the stored state but never created in the log")
        elif a != r:
            fa, fr = _fields(a), _fields(r)
            diffs = [
                f"{f}: stored {fa.get(f)!r}, log says {fr.get(f)!r}"
                for f in dict.fromkeys([*fa, *fr])
                if fa.get(f) != fr.get(f)
            ]
            problems.append(f"{what} {key}: " + "; ".join(diffs))
    return problems


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields by name (a definition is a JSON object already)."""
    if isinstance(record, dict):
        return record
    return {f: getattr(record, f) for f in record.__struct_fields__}


def _reporting(
    events: Iterable[Event], total: int, progress: Callable[[int, int], None]
) -> Iterator[Event]:
    done = 0
    for done, ev in enumerate(events, 1):
        if done % 5000 == 0:
            progress(done, total)
        yield ev
    progress(done, total)
