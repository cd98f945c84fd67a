"""Compaction's snapshots: the whole state at one ``seq``, as parts a store keeps in a table.

A snapshot is what ``ReadTx.snapshot`` reads (every task, run, definition and record of
every kind, and the engine flag), cut into parts of at most ``PART_SIZE`` items of one
kind. Each part is the JSON of ``[kind, items]`` (the documents the tables already hold),
compressed with zlib: its checksum turns a damaged part into an error instead of a wrong
state. Parts are written one write transaction each, so that writing a large snapshot
never holds the store's write lock for long; a snapshot counts only once its seq is in
``ms_meta`` (key ``snapshot``), so the parts of one a crash cut short are never read.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from ..core.errors import StoreError
from ..core.model import Run, Task
from ..core.reducer import State
from .kinds import BY_NAME

#: items (runs, tasks, records...) per part
PART_SIZE = 5000
#: zlib's fastest level: a snapshot is written while workers run
_LEVEL = 1

_RUNS, _TASKS, _DEFINITIONS, _ENGINE = "@runs", "@tasks", "@definitions", "@engine"
_encoder = msgspec.json.Encoder()
_header = msgspec.json.Decoder(tuple[str, msgspec.Raw])
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    _RUNS: msgspec.json.Decoder(list[Run]),
    _TASKS: msgspec.json.Decoder(list[Task]),
    _DEFINITIONS: msgspec.json.Decoder(list[tuple[str, dict[str, Any]]]),
    _ENGINE: msgspec.json.Decoder(list[bool]),
    **{name: msgspec.json.Decoder(list[k.record]) for name, k in BY_NAME.items()},  # type: ignore[name-defined]
}


def encode_parts(state: State) -> Iterator[bytes]:
    """The parts of a snapshot of ``state``: each kind's items in key order, so that one
    state is always cut into the same parts (compaction relies on it)."""
    return encode_stream(
        (state.runs[k] for k in sorted(state.runs)),
        (state.tasks[k] for k in sorted(state.tasks)),
        state,
    )


def encode_stream(runs: Iterable[Run], tasks: Iterable[Task], rest: State) -> Iterator[bytes]:
    """The parts of a snapshot whose runs and tasks come one at a time, in key order
    (``ReadTx.encode_snapshot`` reads them a page of rows at a time, so that the whole
    state is never in memory at once), and the rest from ``rest``: the same parts as
    ``encode_parts`` of the whole state."""
    yield from _chunks(_RUNS, runs)
    yield from _chunks(_TASKS, tasks)
    yield from _chunks(_DEFINITIONS, sorted(rest.definitions.items()))
    for kind in sorted(rest.records):
        records = rest.records[kind]
        yield from _chunks(kind, [records[k] for k in sorted(records)])
    yield _part(_ENGINE, [rest.paused])


def decode_parts(seq: int, parts: Iterable[bytes]) -> State:
    """The state a snapshot taken at ``seq`` holds."""
    st = State()
    st.last_seq = seq
    for i, body in enumerate(parts):
        try:
            kind, raw = _header.decode(zlib.decompress(body))
            items = _decoders[kind].decode(raw)
        except (zlib.error, msgspec.DecodeError, KeyError) as exc:
            raise StoreError(f"the snapshot at seq {seq} is damaged (part {i}): {exc}") from None
        if kind == _RUNS:
            st.runs.update((r.run_id, r) for r in items)
        elif kind == _TASKS:
            st.tasks.update((t.task_id, t) for t in items)
        elif kind == _DEFINITIONS:
            st.definitions.update(items)
        elif kind == _ENGINE:
            st.paused = bool(items[0])
        else:
            key = BY_NAME[kind].key
            st.kind(kind).update((getattr(r, key), r) for r in items)
    return st


def _chunks(kind: str, items: Iterable[Any]) -> Iterator[bytes]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= PART_SIZE:
            yield _part(kind, chunk)
            chunk = []
    if chunk:
        yield _part(kind, chunk)


def _part(kind: str, items: list[Any]) -> bytes:
    return zlib.compress(_encoder.encode((kind, items)), _LEVEL)
