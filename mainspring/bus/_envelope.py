"""The envelope every bus message travels in, and its JSON Schema.

One ``msgspec.Struct`` is the single definition: ``ENVELOPE_SCHEMA`` is derived from it and
``envelope.schema.json`` (shipped beside this module) is that schema written out, so the
Python type, the schema and the file cannot drift apart unnoticed (tests/bus checks all
three agree). Regenerate the file with
``python -c "from mainspring.bus._envelope import write_schema; write_schema()"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypedDict

import msgspec

from ._errors import ERROR_CODES, VALIDATION_ERROR, BusError, ErrorCode

Kind = Literal["command", "response", "event"]

#: Where the schema file ships (package data of ``mainspring.bus``).
SCHEMA_PATH: Final = Path(__file__).with_name("envelope.schema.json")


class ErrorInfo(TypedDict):
    """The ``error`` of a failed response: its code and a message saying what to do."""

    code: ErrorCode
    message: str


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One message on the bus: a command, the response to one, or an event.

    Every field is required; ``sequence`` is an event's number within its topic (from 1,
    None for commands and responses) and ``error`` a failed response's ``{"code",
    "message"}`` (else None). ``topic`` is the method for commands and responses;
    ``timestamp`` is Unix seconds. Treat ``payload`` as read-only: every subscriber of an
    event is handed the same envelope.
    """

    id: Annotated[str, msgspec.Meta(min_length=1)]
    kind: Kind
    topic: Annotated[str, msgspec.Meta(min_length=1)]
    sequence: Annotated[int, msgspec.Meta(ge=1)] | None
    correlation_id: Annotated[str, msgspec.Meta(min_length=1)] | None
    timestamp: Annotated[float, msgspec.Meta(gt=0)]
    payload: Any
    error: ErrorInfo | None


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``Envelope``, as one self-contained object.

    Derived from the Struct; the ``$defs`` msgspec emits are inlined, every field is
    listed as required and ``kind`` is an enum in the contract's order."""
    raw = msgspec.json.schema(Envelope)
    defs = raw.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    body = inline(raw)
    body.pop("$defs", None)
    fields = list(Envelope.__struct_fields__)
    body["required"] = fields  # all of them, nullable or not
    props = body["properties"]
    props["kind"] = {"enum": ["command", "response", "event"]}
    props["error"]["anyOf"][0]["properties"]["code"] = {"enum": list(ERROR_CODES)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mainspring bus envelope",
        "description": (
            "A command, response or event on mainspring's in-process bus "
            "(CONTRACT.md section 10). Every field is required; nullable ones may be null."
        ),
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }


#: The JSON Schema of ``Envelope`` (a dict). Every envelope the bus builds validates
#: against it.
ENVELOPE_SCHEMA: Final[dict[str, Any]] = build_schema()

_decoder: Final = msgspec.json.Decoder(Envelope)
_encode: Final = msgspec.json.Encoder().encode


def validate_envelope(value: Envelope | bytes | str | dict[str, Any]) -> Envelope:
    """``value`` checked against the envelope's type (and so its schema): JSON text or
    bytes, a dict of its fields, or an ``Envelope`` (whose payload must encode as JSON).
    Returns the Envelope; raises ``BusError`` ``VALIDATION_ERROR`` saying what is wrong."""
    try:
        if isinstance(value, bytes | str):
            return _decoder.decode(value)
        # one round trip through JSON checks types, constraints and encodability at once
        return _decoder.decode(_encode(value))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BusError(VALIDATION_ERROR, f"not a valid envelope: {exc}") from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise BusError(VALIDATION_ERROR, f"envelope is not JSON-encodable: {exc}") from None


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Write ``ENVELOPE_SCHEMA`` to ``path`` (the shipped file by default)."""
    path.write_text(json.dumps(ENVELOPE_SCHEMA, indent=2) + "\n", encoding="utf-8")
