"""Opaque cursors for ``GET /runs`` (keyset pagination).

A cursor names the last run of a page and the filters it was taken with, signed with a
key derived from the store's id: a cursor from another store, another filter, another
endpoint, or made up, is refused (400) rather than silently giving another listing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import msgspec

from ._errors import ApiError


class _Cursor(msgspec.Struct, array_like=True, frozen=True):
    v: int
    filters: list[str | None]
    after: str


def _key(store_id: str) -> bytes:
    return hashlib.sha256(b"mainspring runs cursor\0" + store_id.encode()).digest()


def encode(store_id: str, filters: list[str | None], after: str) -> str:
    """The cursor for the page after run ``after`` of a listing with ``filters``."""
    body = msgspec.json.encode(_Cursor(1, filters, after))
    mac = hmac.new(_key(store_id), body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def decode(store_id: str, filters: list[str | None], cursor: str) -> str:
    """The run id a cursor names; ApiError 400 if it was not made here for ``filters``."""
    bad = ApiError(
        400, "invalid_cursor", "cursor is not one this listing gave (pass next_cursor as is)"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    mac, body = raw[:12], raw[12:]
    if len(mac) < 12 or not hmac.compare_digest(
        mac, hmac.new(_key(store_id), body, hashlib.sha256).digest()[:12]
    ):
        raise bad
    try:
        found = msgspec.json.decode(body, type=_Cursor)
    except msgspec.DecodeError:
        raise bad from None
    if found.v != 1 or found.filters != filters:
        raise ApiError(
            400,
            "invalid_cursor",
            "cursor belongs to a listing with other filters (state, task, queue)",
        )
    return found.after
