"""The five-field cron parser: syntax, errors, next firing time, timezones and DST."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dtpyfw.worker import CronExpression, InvalidSchedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo | None = None) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz or UTC)


@pytest.mark.parametrize(
    ("expression", "minutes", "hours", "days", "months", "weekdays"),
    [
        ("* * * * *", range(60), range(24), range(1, 32), range(1, 13), range(7)),
        ("5 4 * * *", [5], [4], range(1, 32), range(1, 13), range(7)),
        (
            "0,15,30,45 9-17 * * MON-FRI",
            [0, 15, 30, 45],
            range(9, 18),
            range(1, 32),
            range(1, 13),
            range(1, 6),
        ),
        ("*/20 */6 1,15 JAN,jul 0", [0, 20, 40], [0, 6, 12, 18], [1, 15], [1, 7], [0]),
        (
            "10-30/10 1-23/11 */10 2-12/5 7",
            [10, 20, 30],
            [1, 12, 23],
            [1, 11, 21, 31],
            [2, 7, 12],
            [0],
        ),
        ("50/5 22/1 30/1 11/1 5/1", [50, 55], [22, 23], [30, 31], [11, 12], [5, 6, 0]),
        ("@hourly", [0], range(24), range(1, 32), range(1, 13), range(7)),
        ("@daily", [0], [0], range(1, 32), range(1, 13), range(7)),
        ("@weekly", [0], [0], range(1, 32), range(1, 13), [0]),
        ("@monthly", [0], [0], [1], range(1, 13), range(7)),
        ("@yearly", [0], [0], [1], [1], range(7)),
    ],
)
def test_fields_parse_to_their_values(  # noqa: PLR0917 - one argument per cron field
    expression: str,
    minutes: range | list[int],
    hours: range | list[int],
    days: range | list[int],
    months: range | list[int],
    weekdays: range | list[int],
) -> None:
    """Stars, numbers, names, lists, ranges, steps and macros give the right value sets."""
    cron = CronExpression(expression)
    assert cron.minutes == tuple(minutes)
    assert cron.hours == tuple(hours)
    assert cron.days == frozenset(days)
    assert cron.months == frozenset(months)
    assert cron.weekdays == frozenset(weekdays)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("60 * * * *", "minute field '60': 60 is outside 0-59"),
        ("* 24 * * *", "hour field '24': 24 is outside 0-23"),
        ("* * 0 * *", "day of month field '0': 0 is outside 1-31"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day of week field '8'"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("x * * * *", "'x' is not a number"),
        ("* * * FOO *", "'FOO' is not a number or a name"),
        ("0 0 30 2 *", "no month has any of those days"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    """Each mistake raises InvalidSchedule (a ValueError) saying which field and why."""
    with pytest.raises(InvalidSchedule, match=message) as caught:
        CronExpression(expression)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2024-01-01T10:07:30", "2024-01-01T10:15:00"),
        ("*/15 * * * *", "2024-01-01T10:15:00", "2024-01-01T10:30:00"),
        ("0 9 * * MON-FRI", "2024-01-05T09:00:00", "2024-01-08T09:00:00"),  # Fri -> Mon
        ("30 23 31 * *", "2024-02-01T00:00:00", "2024-03-31T23:30:00"),  # skips short months
        ("0 0 29 2 *", "2024-03-01T00:00:00", "2028-02-29T00:00:00"),  # next leap day
        ("0 12 1 * MON", "2024-04-02T00:00:00", "2024-04-08T12:00:00"),  # dom OR dow
        ("0 12 */1 * MON", "2024-04-02T00:00:00", "2024-04-08T12:00:00"),  # '*' dom: AND
        ("59 23 31 12 *", "2024-12-31T23:59:00", "2025-12-31T23:59:00"),
    ],
)
def test_next_after_in_utc(expression: str, after: str, expected: str) -> None:
    """next_after gives the first matching minute strictly after the moment."""
    assert CronExpression(expression).next_after(at(after)) == at(expected)


def test_next_after_uses_the_wall_clock_of_the_timezone() -> None:
    """9:00 in Berlin is 8:00 UTC in winter and 7:00 UTC in summer."""
    cron = CronExpression("0 9 * * *")
    winter = cron.next_after(at("2024-01-10T12:00:00"), BERLIN)
    summer = cron.next_after(at("2024-07-10T12:00:00"), BERLIN)
    assert winter.astimezone(UTC) == at("2024-01-11T08:00:00")
    assert summer.astimezone(UTC) == at("2024-07-11T07:00:00")


def test_time_skipped_by_spring_forward_does_not_fire() -> None:
    """02:30 does not exist in Berlin on 31 March 2024: the next run is the day after."""
    cron = CronExpression("30 2 * * *")
    found = cron.next_after(at("2024-03-30T12:00:00"), BERLIN)
    assert found.astimezone(UTC) == at("2024-04-01T00:30:00")


def test_time_repeated_by_fall_back_fires_once() -> None:
    """02:30 happens twice in Berlin on 27 October 2024; it fires at the first only."""
    cron = CronExpression("30 2 * * *")
    first = cron.next_after(at("2024-10-26T12:00:00"), BERLIN)
    assert first.astimezone(UTC) == at("2024-10-27T00:30:00")
    second = cron.next_after(first, BERLIN)
    assert second.astimezone(UTC) == at("2024-10-28T01:30:00")


def test_naive_moments_are_refused() -> None:
    """next_after needs an aware datetime: a naive one is ambiguous."""
    with pytest.raises(ValueError, match="aware"):
        CronExpression("* * * * *").next_after(datetime(2024, 1, 1))


def test_equal_expressions_compare_equal() -> None:
    """Spellings of the same schedule are equal and hash alike."""
    assert CronExpression("0 0 * * 7") == CronExpression("0 0 * * SUN")
    assert hash(CronExpression("@daily")) == hash(CronExpression("0 0 * * *"))
    assert CronExpression("0 0 * * *") != CronExpression("0 1 * * *")


def _brute_force(cron: CronExpression, after: datetime) -> datetime:
    """Walk minute by minute, skipping whole days on which the expression names no time."""
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not cron.matches(moment):
        first_of_day = moment.replace(hour=cron.hours[0], minute=cron.minutes[0])
        if not cron.matches(first_of_day):
            moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
        else:
            moment += timedelta(minutes=1)
    return moment


def _random_field(rng: random.Random, low: int, high: int) -> str:
    kind = rng.choice(["star", "value", "range", "step", "list"])
    if kind == "star":
        return "*"
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    if kind == "value":
        return str(a)
    if kind == "range":
        return f"{a}-{b}"
    if kind == "step":
        return f"{rng.choice(['*', f'{a}-{b}', str(a)])}/{rng.randint(1, 7)}"
    return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), 3)))


def test_next_after_agrees_with_a_minute_by_minute_search() -> None:
    """For 150 random expressions, next_after equals walking minute by minute."""
    rng = random.Random(20240601)  # noqa: S311 - reproducible test data, not secrecy
    checked = 0
    while checked < 150:
        fields = [
            _random_field(rng, 0, 59),
            _random_field(rng, 0, 23),
            rng.choice(["*", _random_field(rng, 1, 28)]),
            rng.choice(["*", _random_field(rng, 1, 12)]),
            rng.choice(["*", _random_field(rng, 0, 6)]),
        ]
        cron = CronExpression(" ".join(fields))
        after = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 500_000))
        assert cron.next_after(after) == _brute_force(cron, after), cron
        checked += 1
