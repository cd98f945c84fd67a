"""The envelope and its JSON Schema: the Struct, ``ENVELOPE_SCHEMA`` and the shipped file
agree, and valid envelopes pass (and broken ones fail) both msgspec decoding and the
schema.

``jsonschema`` is not a dependency, so the schema is checked with the small validator
below, which covers exactly the keywords the schema uses (a test fails if the schema
starts using another one)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import msgspec
import pytest

import mainspring.bus as mb
from mainspring.bus import ENVELOPE_SCHEMA, SCHEMA_PATH, Bus, BusError, Envelope
from mainspring.bus._envelope import build_schema

SUPPORTED = {
    "$schema",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "anyOf",
    "minLength",
    "minimum",
    "exclusiveMinimum",
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Why ``value`` does not satisfy ``schema`` (empty when it does), for the subset of
    JSON Schema in ``SUPPORTED``."""
    errors: list[str] = []
    if "anyOf" in schema and all(schema_errors(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches no alternative")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return [*errors, f"{path}: {value!r} is not {kind}"]
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: not above {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected {k}")
    return errors


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    raise AssertionError(f"type {kind} is not supported by this validator")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def keywords(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for k, v in schema.items():
            found.add(k)
            if k == "properties":
                for sub in v.values():
                    found |= keywords(sub)
            elif k == "anyOf":
                for sub in v:
                    found |= keywords(sub)
    return found


def decodes(doc: Any) -> bool:
    try:
        msgspec.json.decode(json.dumps(doc), type=Envelope)
    except msgspec.ValidationError:
        return False
    return True


def as_json(env: Envelope) -> Any:
    return json.loads(msgspec.json.encode(env))


# ---------------------------------------------------------------- the schema itself


def test_the_validator_covers_every_keyword_the_schema_uses() -> None:
    assert keywords(ENVELOPE_SCHEMA) <= SUPPORTED


def test_the_schema_is_derived_from_the_struct() -> None:
    assert build_schema() == ENVELOPE_SCHEMA
    assert ENVELOPE_SCHEMA["type"] == "object"
    assert ENVELOPE_SCHEMA["additionalProperties"] is False
    fields = [
        "id",
        "kind",
        "topic",
        "sequence",
        "correlation_id",
        "timestamp",
        "payload",
        "error",
    ]
    assert list(Envelope.__struct_fields__) == fields
    assert ENVELOPE_SCHEMA["required"] == fields
    assert list(ENVELOPE_SCHEMA["properties"]) == fields
    assert ENVELOPE_SCHEMA["properties"]["kind"] == {"enum": ["command", "response", "event"]}
    assert "$ref" not in json.dumps(ENVELOPE_SCHEMA)  # self-contained


def test_every_field_is_required_by_msgspec_too() -> None:
    assert Envelope.__struct_defaults__ == ()


def test_the_shipped_file_is_the_schema() -> None:
    shipped = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert shipped == ENVELOPE_SCHEMA, (
        "envelope.schema.json is stale: regenerate it with "
        "python -c 'from mainspring.bus._envelope import write_schema; write_schema()'"
    )


def test_the_schema_is_exported_as_a_dict() -> None:
    assert isinstance(mb.ENVELOPE_SCHEMA, dict)
    json.dumps(mb.ENVELOPE_SCHEMA)  # plain JSON


# ---------------------------------------------------------------- parity


def built_envelopes() -> list[Envelope]:
    """One envelope of every kind the bus builds, errors included."""
    b = Bus(max_payload_bytes=64)
    events: list[Envelope] = []
    b.subscribe("#", events.append)

    @b.command("ok")
    def ok(payload: Any) -> Any:
        b.publish("inside.evt", {"nested": [1, 2.5, None, True, "s"]})
        return payload

    @b.command("fail")
    def fail(payload: Any) -> None:
        raise ValueError("bad")

    @b.command("big")
    def big(payload: Any) -> str:
        return "x" * 100

    out = [b.request("ok", {"a": 1}), b.request("ok", None), b.publish("t.x", [1, "two"])]
    for method in ("fail", "big"):
        with pytest.raises(BusError) as info:
            b.request(method, None)
        assert info.value.envelope is not None
        out.append(info.value.envelope)
    out.append(mb.validate_envelope(dict(as_json(out[0]), kind="command")))
    return out + events


def test_every_envelope_the_bus_builds_passes_both() -> None:
    envs = built_envelopes()
    assert {e.kind for e in envs} == {"command", "response", "event"}
    assert any(e.error is not None for e in envs)
    for env in envs:
        doc = as_json(env)
        assert schema_errors(doc, ENVELOPE_SCHEMA) == [], doc
        assert decodes(doc), doc


VALID = {
    "id": "e-1",
    "kind": "event",
    "topic": "orders.created",
    "sequence": 1,
    "correlation_id": "c-1",
    "timestamp": 1_800_000_000.5,
    "payload": {"order": 42},
    "error": None,
}


def variants() -> list[tuple[str, Any]]:
    """Known-bad envelopes, each with a name."""
    out: list[tuple[str, Any]] = []
    for field in VALID:
        broken = dict(VALID)
        del broken[field]
        out.append((f"missing {field}", broken))
    changes: list[tuple[str, str, Any]] = [
        ("id", "empty id", ""),
        ("id", "null id", None),
        ("id", "numeric id", 7),
        ("kind", "unknown kind", "notification"),
        ("kind", "null kind", None),
        ("topic", "empty topic", ""),
        ("topic", "null topic", None),
        ("sequence", "zero sequence", 0),
        ("sequence", "negative sequence", -3),
        ("sequence", "string sequence", "1"),
        ("sequence", "boolean sequence", True),
        ("correlation_id", "empty correlation", ""),
        ("correlation_id", "numeric correlation", 5),
        ("timestamp", "zero timestamp", 0),
        ("timestamp", "negative timestamp", -1.5),
        ("timestamp", "string timestamp", "now"),
        ("timestamp", "boolean timestamp", True),
        ("error", "string error", "boom"),
        ("error", "error without message", {"code": "TIMEOUT"}),
        ("error", "error without code", {"message": "m"}),
        ("error", "unknown error code", {"code": "OOPS", "message": "m"}),
        ("error", "numeric error message", {"code": "TIMEOUT", "message": 3}),
    ]
    for field, name, value in changes:
        out.append((name, dict(VALID, **{field: value})))
    out.append(("extra field", dict(VALID, method="x")))
    out.append(("not an object", [VALID]))
    out.append(("null", None))
    return out


@pytest.mark.parametrize(("name", "doc"), variants(), ids=[n for n, _ in variants()])
def test_broken_envelopes_fail_both(name: str, doc: Any) -> None:
    assert schema_errors(doc, ENVELOPE_SCHEMA) != [], name
    assert not decodes(doc), name
    with pytest.raises(BusError) as info:
        mb.validate_envelope(json.dumps(doc))
    assert info.value.code == mb.VALIDATION_ERROR


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"sequence": None, "kind": "command"},
        {"correlation_id": None},
        {"payload": None},
        {"payload": [1, "x", {"deep": [None]}]},
        {"timestamp": 5},
        {"kind": "response", "sequence": None, "error": {"code": "TIMEOUT", "message": "m"}},
    ],
)
def test_valid_variants_pass_both(change: dict[str, Any]) -> None:
    doc = copy.deepcopy(dict(VALID, **change))
    assert schema_errors(doc, ENVELOPE_SCHEMA) == []
    assert decodes(doc)
    assert mb.validate_envelope(doc).kind == doc["kind"]


def test_validate_envelope_checks_an_envelope_built_by_hand() -> None:
    good = Envelope("i", "event", "t", 1, None, 1.0, {"a": 1}, None)
    assert mb.validate_envelope(good) == good
    for bad in (
        Envelope("i", "event", "t", 0, None, 1.0, None, None),  # sequence 0
        Envelope("i", "event", "t", 1, None, 1.0, object(), None),  # payload not JSON
        Envelope("", "event", "t", 1, None, 1.0, None, None),  # empty id
    ):
        with pytest.raises(BusError) as info:
            mb.validate_envelope(bad)
        assert info.value.code == mb.VALIDATION_ERROR


def test_envelopes_are_immutable() -> None:
    env = Bus().publish("t", {"a": 1})
    with pytest.raises(AttributeError):
        env.sequence = 5  # type: ignore[misc]
