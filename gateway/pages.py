"""Pages of admin lists, as the admin API and `predgate ... list` cut them: at most `limit`
items, and an opaque cursor naming the last one shown when more follow.

A cursor is the list's kind and the public id of the last item shown (a tenant's name, a key
or client id, `NAME@VERSION`), base64url-encoded: opaque to callers, so its content may change,
and bound to its list, so a key cursor given to the tenant list is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
T = TypeVar("T")


class InvalidCursor(ValueError):
    """A cursor this list did not hand out."""


def encode_cursor(kind: str, last: str) -> str:
    """The cursor after the item whose public id is `last`."""
    raw = json.dumps([kind, last], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> str:
    """The public id a cursor of this list names; InvalidCursor otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor("not a cursor of this list") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] != kind
        or not isinstance(value[1], str)
        or not value[1]
    ):
        raise InvalidCursor("not a cursor of this list")
    return value[1]


@dataclass(frozen=True)
class Page(Generic[T]):
    """Up to `limit` items, and the cursor of the next page (None: this is the last)."""

    items: list[T]
    next_cursor: str | None


def cut_page(kind: str, found: Sequence[T], limit: int, public_id: Callable[[T], str]) -> Page[T]:
    """A page from up to `limit + 1` items fetched: the extra one only says that more follow."""
    if len(found) <= limit:
        return Page(list(found), None)
    shown = list(found[:limit])
    return Page(shown, encode_cursor(kind, public_id(shown[-1])))


def model_position(ref: str) -> tuple[str, int]:
    """`NAME@VERSION` of a model cursor as (name, version); InvalidCursor otherwise."""
    name, _at, version = ref.rpartition("@")
    if not name or not version.isdigit():
        raise InvalidCursor("not a cursor of this list")
    return name, int(version)
