"""A five-field cron expression and the next time it fires, in any timezone.

``minute hour day-of-month month day-of-week``, each field one of:

- ``*`` (every value), a number, or a name (``JAN``-``DEC``, ``SUN``-``SAT``);
- a range ``a-b``; a step ``*/n``, ``a-b/n`` or ``a/n`` (from ``a`` to the field's end);
- a comma-separated list of any of those.

Day of week runs 0-6 from Sunday; 7 is Sunday too. As in Vixie cron, when
both day fields are restricted (neither starts with ``*``) a day matches if
*either* does: ``0 9 1 * MON`` fires on the 1st and on every Monday. The
macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
(``@midnight``) and ``@hourly`` stand for their usual expressions.

Times are wall-clock times in the schedule's timezone. On a daylight-saving
change, a wall time that does not exist that day (the hour skipped in spring)
does not fire, and one that happens twice (the hour repeated in autumn) fires
once, at its first occurrence.
"""

from __future__ import annotations

__all__ = ["CronExpression"]

import calendar
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from dtpyfw.worker._errors import InvalidSchedule

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: number for number, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
# (name, lowest, highest, names); day of week accepts 7 and folds it to 0 afterwards.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {k.upper(): v for k, v in _MONTHS.items()}),
    ("day of week", 0, 7, _WEEKDAYS),
)
# Enough days to reach any date a valid expression names (29 February of a leap
# year whose weekday also matches needs at most 28 years; the rest far less).
_SEARCH_DAYS = 366 * 29


class CronExpression:
    """A parsed cron expression; :meth:`next_after` gives its next firing time.

    Raises :class:`InvalidSchedule` (a ``ValueError``) naming the bad field.
    """

    __slots__ = (
        "_dom_star",
        "_dow_star",
        "days",
        "expression",
        "hours",
        "minutes",
        "months",
        "weekdays",
    )

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        text = _MACROS.get(self.expression.lower(), self.expression)
        parts = text.split()
        if len(parts) != 5:
            raise InvalidSchedule(
                f"cron {expression!r}: expected 5 fields (minute hour day-of-month month "
                f"day-of-week), got {len(parts)}"
            )
        values = [
            _parse_field(expression, part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)
        ]
        self.minutes: tuple[int, ...] = values[0]
        self.hours: tuple[int, ...] = values[1]
        self.days: frozenset[int] = frozenset(values[2])
        self.months: frozenset[int] = frozenset(values[3])
        self.weekdays: frozenset[int] = frozenset(day % 7 for day in values[4])
        self._dom_star = parts[2].startswith("*")
        self._dow_star = parts[4].startswith("*")
        if self._dow_star and not self._dom_star and not self._some_month_has_a_day():
            raise InvalidSchedule(f"cron {expression!r}: no month has any of those days")

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronExpression) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def matches(self, moment: datetime) -> bool:
        """Whether the wall-clock minute of ``moment`` is one the expression names."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment.date())
        )

    def next_after(self, after: datetime, tz: tzinfo = UTC) -> datetime:
        """The first firing strictly after ``after`` (aware), as an aware time in ``tz``."""
        if after.tzinfo is None:
            raise ValueError("next_after() needs an aware datetime")
        local = after.astimezone(tz).replace(tzinfo=None)
        start = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        last = day + timedelta(days=_SEARCH_DAYS)
        while day <= last:
            if day.month not in self.months:
                day = _first_of_next_month(day)
                continue
            if self._day_matches(day):
                found = self._first_time_on(day, start, after, tz)
                if found is not None:
                    return found
            day += timedelta(days=1)
        raise InvalidSchedule(f"cron {self.expression!r} never fires")  # pragma: no cover

    def _first_time_on(
        self, day: date, start: datetime, after: datetime, tz: tzinfo
    ) -> datetime | None:
        first_day = day == start.date()
        for hour in self.hours:
            if first_day and hour < start.hour:
                continue
            for minute in self.minutes:
                if first_day and hour == start.hour and minute < start.minute:
                    continue
                candidate = _existing(datetime.combine(day, time(hour, minute)), tz)
                if candidate is not None and candidate > after:
                    return candidate
        return None

    def _day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self._dom_star or self._dow_star:
            return in_month and in_week
        return in_month or in_week

    def _some_month_has_a_day(self) -> bool:
        longest = {month: calendar.monthrange(2024, month)[1] for month in range(1, 13)}
        return any(day <= longest[month] for month in self.months for day in self.days)

    def _key(self) -> tuple[object, ...]:
        return (
            self.minutes,
            self.hours,
            self.days,
            self.months,
            self.weekdays,
            self._dom_star,
            self._dow_star,
        )


def _parse_field(  # noqa: PLR0917 - one call site, unpacking a _FIELDS row
    expression: str, text: str, name: str, low: int, high: int, names: dict[str, int]
) -> tuple[int, ...]:
    def fail(why: str) -> InvalidSchedule:
        return InvalidSchedule(f"cron {expression!r}: {name} field {text!r}: {why}")

    def number(token: str) -> int:
        value = names.get(token.upper())
        if value is None:
            if not token.isdigit():
                raise fail(f"{token!r} is not a number" + (" or a name" if names else ""))
            value = int(token)
        if not low <= value <= high:
            raise fail(f"{value} is outside {low}-{high}")
        return value

    chosen: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail("empty list item")
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise fail(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            start_text, _, end_text = body.partition("-")
            first, last = number(start_text), number(end_text)
            if first > last:
                raise fail(f"range {body!r} runs backwards")
        else:
            first = number(body)
            last = high if step_text else first
        chosen.update(range(first, last + 1, step))
    return tuple(sorted(chosen))


def _existing(naive: datetime, tz: tzinfo) -> datetime | None:
    """``naive`` in ``tz`` (first occurrence), or None if the wall time is skipped there."""
    aware = naive.replace(tzinfo=tz)
    if tz is UTC:
        return aware
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return aware


def _first_of_next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)
