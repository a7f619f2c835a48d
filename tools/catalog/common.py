"""Small argument checks shared by the catalog's domains; each raises ValueError with a helpful message."""

from __future__ import annotations

import datetime as dt


def parse_date(value: str) -> dt.date:
    """An ISO date (``2025-06-18``); the error names the expected format so a model can fix its call."""
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"invalid date {value!r}: use the format YYYY-MM-DD") from None


def parse_time(value: str) -> tuple[int, int]:
    """A 24-hour clock time ``HH:MM``."""
    try:
        hour, minute = (int(x) for x in str(value).strip().split(":"))
    except ValueError:
        raise ValueError(f"invalid time {value!r}: use the 24-hour format HH:MM") from None
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"invalid time {value!r}: hour 0-23, minute 0-59")
    return hour, minute


def positive(name: str, value: float) -> float:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def r2(x: float) -> float:
    return round(float(x), 2)
