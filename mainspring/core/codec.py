"""JSON encoding of user payloads and stored records (msgspec)."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from .errors import SerializationError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def to_plain(value: Any, what: str) -> Any:
    """Round-trip ``value`` through JSON so what is stored is exactly what replay sees.

    Raises SerializationError (and changes nothing) when msgspec cannot encode it.
    """
    try:
        encoded = _encoder.encode(value)
    except RecursionError:
        raise SerializationError(
            f"{what} is circular (it contains itself) or nested too deeply to store as JSON"
        ) from None
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(
            f"{what} must be JSON-serializable (str, int, float, bool, None, list, dict, "
            f"or what msgspec can encode): {exc}. Convert it to plain data first."
        ) from None
    if b"null" in encoded and _non_finite(value):
        raise SerializationError(
            f"{what} holds a NaN or infinite float, which JSON cannot hold (it would be stored "
            "as null): convert it first (to None, a string, or a bound)"
        )
    try:
        return _decoder.decode(encoded)
    except RecursionError:
        raise SerializationError(f"{what} is nested too deeply to store as JSON") from None


def _non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or infinite float (msgspec writes those as null),
    looking through dicts, lists, tuples and sets."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_non_finite(v) for v in value)
    return False
