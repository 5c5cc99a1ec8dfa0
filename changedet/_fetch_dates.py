"""Dates of a scene search: one day or an inclusive range of days (UTC)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import InvalidParameterError

__all__ = ["DateRange", "parse_dates"]


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of days (UTC).

    Examples
    --------
    >>> r = parse_dates("2024-05-01/2024-07-31")
    >>> str(r), r.to_stac()
    ('2024-05-01/2024-07-31', '2024-05-01T00:00:00Z/2024-07-31T23:59:59Z')
    """

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidParameterError(
                f"DateRange end {self.end} is before start {self.start}; give start <= end, e.g. 2024-05-01/2024-07-31"
            )

    def __str__(self) -> str:
        """``YYYY-MM-DD`` for one day, ``YYYY-MM-DD/YYYY-MM-DD`` for a range."""
        return self.start.isoformat() if self.start == self.end else f"{self.start.isoformat()}/{self.end.isoformat()}"

    def to_stac(self) -> str:
        """The range as a STAC search ``datetime`` interval, whole days UTC.

        Returns
        -------
        str
            ``YYYY-MM-DDT00:00:00Z/YYYY-MM-DDT23:59:59Z``, start to end.

        Examples
        --------
        >>> parse_dates("2024-06-01/2024-06-30").to_stac()
        '2024-06-01T00:00:00Z/2024-06-30T23:59:59Z'
        """
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"

    @property
    def middle(self) -> dt.date:
        """The day in the middle of the range."""
        return self.start + (self.end - self.start) / 2


def parse_dates(text: str | DateRange | dt.date | Sequence[Any]) -> DateRange:
    """Parse ``YYYY-MM-DD`` (one day) or ``YYYY-MM-DD/YYYY-MM-DD`` (inclusive range).

    Also accepts a ``date`` or a ``(start, end)`` pair.

    Parameters
    ----------
    text : str, DateRange, date or (start, end)
        The dates, e.g. ``"2024-05-01/2024-07-31"``.

    Returns
    -------
    DateRange

    Raises
    ------
    InvalidParameterError
        A date that is not ``YYYY-MM-DD``, or a range that ends before it starts.

    Examples
    --------
    >>> parse_dates("2024-06-12")
    DateRange(start=datetime.date(2024, 6, 12), end=datetime.date(2024, 6, 12))
    >>> str(parse_dates("2025-05-01/2025-07-31"))
    '2025-05-01/2025-07-31'
    >>> parse_dates("2024-07-31/2024-05-01")
    Traceback (most recent call last):
    ...
    changedet.errors.InvalidParameterError: date range '2024-07-31/2024-05-01' ends before it starts; give START/END with START <= END, e.g. 2024-05-01/2024-07-31
    """
    if isinstance(text, DateRange):
        return text
    if isinstance(text, dt.datetime):
        return DateRange(text.date(), text.date())
    if isinstance(text, dt.date):
        return DateRange(text, text)
    if isinstance(text, (tuple, list)) and len(text) == 2:
        a, b = (parse_dates(v) for v in text)
        return _checked_range(a.start, b.end, f"{a.start}/{b.end}")
    if not isinstance(text, str):
        raise InvalidParameterError(
            f"dates must be 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', got {type(text).__name__} {text!r}; "
            "e.g. 2024-05-01/2024-07-31"
        )
    parts = text.strip().split("/")
    if len(parts) not in (1, 2):
        raise InvalidParameterError(
            f"dates must be 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', got {text!r}; e.g. 2024-05-01/2024-07-31"
        )
    days = []
    for p in parts:
        p = p.strip()
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", p):
                raise ValueError(p)
            days.append(dt.date.fromisoformat(p))
        except ValueError:
            raise InvalidParameterError(
                f"date {p!r} in {text!r} is not a calendar date YYYY-MM-DD; "
                "give 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD', e.g. 2024-05-01/2024-07-31"
            ) from None
    return _checked_range(days[0], days[-1], text)


def _checked_range(start: dt.date, end: dt.date, text: str) -> DateRange:
    if end < start:
        raise InvalidParameterError(
            f"date range {text!r} ends before it starts; give START/END with START <= END, e.g. 2024-05-01/2024-07-31"
        )
    return DateRange(start, end)



# Shown under the public module that users import.
DateRange.__module__ = "changedet.sources"
