"""Sorting and pagination shared by :class:`FilterSpec` and the repositories.

Sort items are attribute names, ``"title"`` ascending and ``"-title"``
descending; the model's primary key (``id``) is appended as the last key
unless already present, so every order is total and pages never overlap.
Nullable columns sort NULLS LAST in both directions, on PostgreSQL and SQLite
alike.

Offset pages (:class:`Page`) are ``LIMIT``/``OFFSET`` with an optional
``count(*)``. Keyset pages (:class:`CursorPage`) continue after the last row
of the previous page: the cursor is the URL-safe base64 of
``{"s": [sort items], "v": [that row's sort values]}`` and, when a secret is
given, ``.`` and an HMAC-SHA256 tag. A cursor that does not decode, does not
match the sort, carries values of the wrong type or a wrong tag raises
:class:`~dtpyfw.core.errors.FilterError`; its values are bound parameters like
any filter value.
"""

from __future__ import annotations

__all__ = ["CursorPage", "Keyset", "Page", "SortKey", "check_window", "parse_sort"]

import base64
import binascii
import enum
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, inspect, literal, or_, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from dtpyfw.core.errors import FilterError
from dtpyfw.db._coerce import coerce, shown

T = TypeVar("T")
SelectT = TypeVar("SelectT", bound="Select[Any]")

_MAX_CURSOR = 2048
_TAG_BYTES = 16


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One offset page; ``total`` is the count of all matching rows, when asked for."""

    items: list[T]
    limit: int
    offset: int
    total: int | None = None


@dataclass(frozen=True, slots=True)
class CursorPage(Generic[T]):
    """One keyset page; pass ``next_cursor`` back for the next one (None: this is the last)."""

    items: list[T]
    limit: int
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY item resolved against the model."""

    name: str
    descending: bool
    column: InstrumentedAttribute[Any]
    nullable: bool

    @property
    def token(self) -> str:
        """``"name"`` or ``"-name"``, as a user writes it."""
        return f"-{self.name}" if self.descending else self.name

    def order(self) -> ColumnElement[Any]:
        """The ORDER BY element (NULLS LAST for nullable columns)."""
        expression = self.column.desc() if self.descending else self.column.asc()
        return expression.nulls_last() if self.nullable else expression


def parse_sort(
    model: type[Any],
    sort: str | Sequence[str] | None,
    *,
    allowed: Callable[[str], bool],
    allowed_names: Callable[[], str],
    default: Sequence[str] = (),
) -> tuple[SortKey, ...]:
    """Sort items (a comma-separated string or a sequence) resolved, with the pk appended.

    ``allowed(name)`` says whether ``name`` may be sorted by; ``allowed_names()``
    lists them for the error message. The primary key is always allowed.
    """
    items = _sort_items(sort) or list(default)
    mapper = inspect(model)
    primary = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    keys: list[SortKey] = []
    seen: set[str] = set()
    for item in items:
        descending = item.startswith("-")
        name = item[1:] if descending or item.startswith("+") else item
        if name in seen:
            raise FilterError(f"sort {item!r}: {name!r} is sorted by twice")
        if name not in primary and not allowed(name):
            raise FilterError(
                f"sort {item!r}: cannot sort by {name!r}; sortable: {allowed_names()} "
                "(prefix '-' for descending)"
            )
        seen.add(name)
        keys.append(_key(model, name, descending))
    for name in primary:
        if name not in seen:
            keys.append(_key(model, name, False))
    return tuple(keys)


def check_window(limit: Any, offset: Any = 0) -> tuple[int, int]:
    """``limit`` >= 1 and ``offset`` >= 0 as ints, or FilterError."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise FilterError(f"limit must be a positive integer, not {shown(limit)}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise FilterError(f"offset must be an integer >= 0, not {shown(offset)}")
    return limit, offset


class Keyset:
    """Keyset pagination over ``keys``: the statement for a page and the page's cursor."""

    __slots__ = ("_keys", "_secret")

    def __init__(self, keys: Sequence[SortKey], secret: str | bytes | None = None) -> None:
        self._keys = tuple(keys)
        self._secret = secret.encode() if isinstance(secret, str) else secret

    @property
    def tokens(self) -> list[str]:
        """The sort items this keyset orders by, tie-breaker included."""
        return [key.token for key in self._keys]

    def statement(self, stmt: SelectT, cursor: str | None, limit: int) -> SelectT:
        """``stmt`` ordered by the keys, after ``cursor``, fetching one row beyond ``limit``."""
        stmt = stmt.order_by(None).order_by(*(key.order() for key in self._keys))
        if cursor is not None:
            stmt = stmt.where(self._after(self.decode(cursor)))
        return stmt.limit(limit + 1)

    def page(self, rows: Sequence[T], limit: int) -> CursorPage[T]:
        """The page of the first ``limit`` rows; a cursor when the statement found more."""
        items = list(rows[:limit])
        more = len(rows) > limit
        return CursorPage(items, limit, self.encode(items[-1]) if more and items else None)

    def encode(self, row: Any) -> str:
        """The cursor that continues after ``row``."""
        values = [_jsonable(getattr(row, key.name)) for key in self._keys]
        raw = json.dumps({"s": self.tokens, "v": values}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()
        if self._secret is None:
            return body
        return f"{body}.{self._tag(body)}"

    def decode(self, cursor: str) -> list[Any]:
        """The sort values a cursor carries, checked and coerced, or FilterError."""
        if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR:
            raise FilterError("cursor is not valid: not a cursor this service issued")
        body, dot, tag = cursor.partition(".")
        if self._secret is not None:
            if not dot or not hmac.compare_digest(tag, self._tag(body)):
                raise FilterError("cursor is not valid: its signature does not match")
        elif dot:
            raise FilterError("cursor is not valid: not a cursor this service issued")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
            data = json.loads(raw)
        except (binascii.Error, ValueError):
            raise FilterError("cursor is not valid: not a cursor this service issued") from None
        if not isinstance(data, dict) or set(data) != {"s", "v"}:
            raise FilterError("cursor is not valid: not a cursor this service issued")
        if data["s"] != self.tokens:
            raise FilterError(
                f"cursor was issued for sort {_joined(data['s'])}; it cannot continue sort "
                f"{_joined(self.tokens)} (start again without a cursor)"
            )
        values = data["v"]
        if not isinstance(values, list) or len(values) != len(self._keys):
            raise FilterError("cursor is not valid: not a cursor this service issued")
        decoded = []
        for key, value in zip(self._keys, values, strict=True):
            if value is None and not key.nullable:
                raise FilterError(f"cursor is not valid: {key.name!r} cannot be null")
            decoded.append(coerce(value, key.column, f"cursor value for {key.name!r}"))
        return decoded

    def _after(self, values: list[Any]) -> ColumnElement[bool]:
        keys = self._keys
        if not any(key.nullable for key in keys) and len({key.descending for key in keys}) == 1:
            # One direction, no NULLs: a row-value comparison, which indexes serve best.
            left = tuple_(*(key.column for key in keys))
            right = tuple_(
                *(literal(v, key.column.type) for key, v in zip(keys, values, strict=True))
            )
            return left < right if keys[0].descending else left > right
        branches = []
        for position, (key, value) in enumerate(zip(keys, values, strict=True)):
            equal_before = [_equal(k, v) for k, v in zip(keys, values[:position], strict=False)]
            branches.append(and_(*equal_before, _beyond(key, value)))
        return or_(*branches)

    def _tag(self, body: str) -> str:
        assert self._secret is not None
        digest = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _sort_items(sort: str | Sequence[str] | None) -> list[str]:
    if sort is None:
        return []
    if isinstance(sort, str):
        sort = sort.split(",")
    items = []
    for item in sort:
        if not isinstance(item, str):
            raise FilterError(f"sort items are strings such as 'title' or '-title', not {item!r}")
        stripped = item.strip()
        if stripped:
            items.append(stripped)
    return items


def _key(model: type[Any], name: str, descending: bool) -> SortKey:
    attribute = getattr(model, name)
    column = attribute.property.columns[0]
    return SortKey(name, descending, attribute, bool(column.nullable))


def _beyond(key: SortKey, value: Any) -> ColumnElement[bool]:
    """Rows that come strictly after ``value`` on this key alone (NULLs come last)."""
    if value is None:
        return false()  # nothing sorts after NULL
    after = key.column < value if key.descending else key.column > value
    return or_(after, key.column.is_(None)) if key.nullable else after


def _equal(key: SortKey, value: Any) -> ColumnElement[bool]:
    return key.column.is_(None) if value is None else key.column == value


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} in a cursor; sort by another column")


def _joined(tokens: Any) -> str:
    return ",".join(map(str, tokens)) if isinstance(tokens, list) else shown(tokens)
