"""Turn user input (query-string text or JSON values) into a column's Python type.

Filters and keyset cursors share these rules, so a value that filters a column
also round-trips through a cursor. Anything that does not fit raises
:class:`~dtpyfw.core.errors.FilterError` naming where the value came from.
"""

from __future__ import annotations

__all__ = ["coerce", "coerce_bool", "python_type", "shown"]

import enum
import math
import re
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import DateTime

from dtpyfw.core.errors import FilterError

_INTEGER = re.compile(r"[+-]?\d{1,30}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_SHOWN = 40  # characters of a rejected value quoted back in a message


def python_type(column: Any) -> type[Any] | None:
    """The Python type the column holds, or None when SQLAlchemy does not say."""
    try:
        found: type[Any] = column.type.python_type
        return found
    except NotImplementedError:
        return None


def coerce(value: Any, column: Any, where: str) -> Any:
    """``value`` as the Python type of ``column`` (a column or mapped attribute).

    FilterError, mentioning ``where``, when it does not convert.
    """
    target = python_type(column)
    if value is None or target is None:
        return value
    try:
        converted = _convert(value, target)
    except (ValueError, TypeError, ArithmeticError):
        converted = _INVALID
    if converted is _INVALID:
        raise FilterError(f"{where}: {shown(value)} is not a valid {_type_name(target)}")
    if isinstance(converted, datetime) and converted.tzinfo is None:
        column_type = column.type
        if isinstance(column_type, DateTime) and column_type.timezone:
            converted = converted.replace(tzinfo=UTC)  # a naive time means UTC
    return converted


def coerce_bool(value: Any, where: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case), or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FilterError(f"{where}: {shown(value)} is not a boolean (use true or false)")


def shown(value: Any) -> str:
    """A short repr of user input for an error message."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


_INVALID: Any = object()


def _convert(value: Any, target: type[Any]) -> Any:  # noqa: PLR0911, PLR0912 - one branch per type
    if target is bool:
        return coerce_bool(value, "") if isinstance(value, bool | str) else _INVALID
    if isinstance(value, bool):
        return _INVALID  # True is an int in Python, never a number here
    if issubclass(target, enum.Enum):
        return _enum(value, target)
    if target is int:
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            value = int(value)
        # Beyond 64 bits no integer column can hold it: a 400, not a driver error.
        return value if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX else _INVALID
    if target is float:
        number = float(value) if isinstance(value, int | float | str) else _INVALID
        return number if number is not _INVALID and math.isfinite(number) else _INVALID
    if target is Decimal:
        if not isinstance(value, int | float | str | Decimal):
            return _INVALID
        try:
            decimal = Decimal(str(value).strip())
        except InvalidOperation:
            return _INVALID
        return decimal if decimal.is_finite() else _INVALID
    if target is str:
        return value if isinstance(value, str) else _INVALID
    if target is uuid.UUID:
        if isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(value.strip()) if isinstance(value, str) else _INVALID
    if target is datetime:
        if isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value.strip()) if isinstance(value, str) else _INVALID
    if target is date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return date.fromisoformat(value.strip()) if isinstance(value, str) else _INVALID
    if target is time:
        if isinstance(value, time):
            return value
        return time.fromisoformat(value.strip()) if isinstance(value, str) else _INVALID
    return value if isinstance(value, target) else _INVALID


def _enum(value: Any, target: type[enum.Enum]) -> Any:
    if isinstance(value, target):
        return value
    for member in target:
        if value in (member.value, member.name):
            return member
    return _INVALID


def _type_name(target: type[Any]) -> str:
    if issubclass(target, enum.Enum):
        return f"{target.__name__} (one of {', '.join(str(m.value) for m in target)})"
    names = {
        bool: "boolean (true or false)",
        int: "integer",
        float: "number",
        Decimal: "decimal number",
        str: "string",
        uuid.UUID: "UUID",
        datetime: "ISO 8601 date-time",
        date: "ISO 8601 date (YYYY-MM-DD)",
        time: "ISO 8601 time",
    }
    return names.get(target, target.__name__)
