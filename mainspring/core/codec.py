"""JSON encoding of user payloads and stored records (msgspec)."""

from __future__ import annotations

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
        return _decoder.decode(_encoder.encode(value))
    except RecursionError:
        raise SerializationError(
            f"{what} is circular (it contains itself) or nested too deeply to store as JSON"
        ) from None
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(
            f"{what} must be JSON-serializable (str, int, float, bool, None, list, dict, "
            f"or what msgspec can encode): {exc}. Convert it to plain data before submitting."
        ) from None
