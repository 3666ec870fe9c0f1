"""Task priorities: a number from 0 (lowest) to 9 (highest), with three names."""

from __future__ import annotations

__all__ = ["PRIORITY_LEVELS", "Priority", "PriorityLike", "parse_priority"]

from enum import IntEnum

from dtpyfw.worker._errors import InvalidTaskArguments


class Priority(IntEnum):
    """The named priorities; any integer from 0 to 9 is a priority too (9 runs first)."""

    LOW = 0
    NORMAL = 5
    HIGH = 9


#: What ``priority=`` accepts: 0-9, a :class:`Priority`, or ``"low"`` / ``"normal"`` / ``"high"``.
PriorityLike = int | str
#: Every priority level, highest first: the order a worker drains them in.
PRIORITY_LEVELS: tuple[int, ...] = tuple(range(9, -1, -1))


def parse_priority(value: object) -> int:
    """The priority number for ``value``; anything else raises InvalidTaskArguments."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 9:
            return int(value)
    elif isinstance(value, str):
        text = value.strip()
        named = Priority.__members__.get(text.upper())
        if named is not None:
            return int(named)
        if text.isdigit() and 0 <= int(text) <= 9:
            return int(text)
    raise InvalidTaskArguments(
        f"priority must be a number from 0 (low) to 9 (high) or one of "
        f"'low', 'normal', 'high', not {value!r}"
    )
