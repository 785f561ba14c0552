"""Durations written the way operators write them: 90d, 24h, 30m, 45s."""

from __future__ import annotations

import re
from datetime import timedelta

from auth.errors import InvalidArgument

_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Parse `90d`, `24h`, `30m`, `45s`, `2w` (or `0`) into a timedelta."""
    if text.strip() == "0":
        return timedelta(0)
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidArgument("a duration is a number followed by s, m, h, d or w (e.g. 90d)")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{_UNITS[unit]: amount})
