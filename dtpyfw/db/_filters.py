"""Dynamic filters: a declared whitelist turns query parameters into WHERE and ORDER BY.

::

    spec = FilterSpec(
        Note,
        fields={"title": {"eq", "ilike", "in"}, "size": {"gte", "lte", "range"}},
        sortable={"created_at", "title", "size"},
        default_sort=("-created_at",),
    )
    stmt = spec.apply(select(Note), {"title__ilike": "%draft%", "size__gte": "10"}, ["-size"])

A filter key is ``"<field>__<op>"``; a bare ``"<field>"`` means ``eq``. Values
may be the raw strings of a query string: they are converted to the column's
Python type, and every value reaches the database as a bound parameter. Sort
items are ``"title"`` or ``"-title"`` (a list, or one comma-separated string);
``id`` is appended as a tie-breaker. Anything not declared, or a value that
does not convert, raises :class:`~dtpyfw.core.errors.FilterError` (HTTP 400)
saying what was wrong and what is allowed.

Operators (see ``docs/db.md`` for the value forms):

=========== ===========================================================
eq, ne      equal / not equal (``ne`` leaves out NULLs, as SQL does)
lt, lte,    ordering comparisons
gt, gte
in          one of: a list, or a comma-separated string (at most 1000)
range       ``"a,b"`` or a 2-sequence, both ends inclusive; an empty end
            is open (``"10,"`` means >= 10)
isnull      ``true`` / ``false`` (also 1/0, yes/no, on/off)
like, ilike a LIKE pattern: the user's ``%`` and ``_`` ARE wildcards (they
            are not escaped); ``\\`` escapes them, on PostgreSQL and SQLite
contains,   substring match; ``%`` and ``_`` are matched literally
icontains
json        PostgreSQL ``jsonb_path_exists``: ``{"path": "a.b", "value": v,
            "op": "eq"}`` (a mapping or its JSON text); keys are quoted, the
            value is a jsonpath variable; arrays on the path are searched
search      PostgreSQL full-text search: ``to_tsvector(config, column) @@
            websearch_to_tsquery(config, value)``
=========== ===========================================================
"""

from __future__ import annotations

__all__ = ["OPERATORS", "FilterSpec"]

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, ColumnElement, Enum, String, cast, func, inspect, literal
from sqlalchemy import literal_column as sql_literal_column
from sqlalchemy.orm import InstrumentedAttribute

from dtpyfw.core.errors import FilterError
from dtpyfw.db._coerce import coerce, coerce_bool, python_type, shown
from dtpyfw.db._pagination import SelectT, SortKey, parse_sort

#: Every operator a field may allow.
OPERATORS = frozenset(
    {
        "contains",
        "eq",
        "gt",
        "gte",
        "icontains",
        "ilike",
        "in",
        "isnull",
        "json",
        "like",
        "lt",
        "lte",
        "ne",
        "range",
        "search",
    }
)
_TEXT_OPS = frozenset({"contains", "icontains", "ilike", "like", "search"})
_JSON_COLUMN_OPS = frozenset({"isnull", "json"})
_MAX_IN = 1000
_MAX_JSON_DEPTH = 16
_JSON_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SEARCH_CONFIG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    attribute: InstrumentedAttribute[Any]
    ops: frozenset[str]


class FilterSpec:
    """What users may filter and sort ``model`` by; everything else is a FilterError.

    ``fields`` maps attribute names to the operators allowed on them;
    ``sortable`` names the attributes users may sort by; ``default_sort``
    applies when a request gives no sort. ``search_config`` is the PostgreSQL
    text-search configuration of ``search`` filters (match it in your
    expression index: ``to_tsvector('simple', body)``).

    A spec that names a column the model lacks, or an operator that does not
    suit the column's type, raises ValueError when it is built.
    """

    __slots__ = ("_default_sort", "_fields", "_search_config", "_sortable", "model")

    def __init__(
        self,
        model: type[Any],
        fields: Mapping[str, Iterable[str]] | None = None,
        sortable: Iterable[str] = (),
        default_sort: Sequence[str] = (),
        *,
        search_config: str = "simple",
    ) -> None:
        self.model = model
        columns = {attr.key for attr in inspect(model).column_attrs}
        self._fields: dict[str, _Field] = {}
        for name, ops in (fields or {}).items():
            self._fields[name] = _declared_field(model, name, ops, columns)
        self._sortable = frozenset(sortable)
        unknown = sorted(self._sortable - columns)
        if unknown:
            raise ValueError(f"{model.__name__}: sortable names no column: {', '.join(unknown)}")
        if not _SEARCH_CONFIG.fullmatch(search_config):
            raise ValueError(f"search_config {search_config!r} is not a configuration name")
        self._search_config = search_config
        try:
            self._default_sort = tuple(self._sort(list(default_sort) or None, default=()))
        except FilterError as exc:
            raise ValueError(f"default_sort: {exc}") from None

    def __repr__(self) -> str:
        return f"FilterSpec({self.model.__name__}, fields={sorted(self._fields)})"

    def apply(
        self, stmt: SelectT, filters: Mapping[str, Any], sort: str | Sequence[str] | None = None
    ) -> SelectT:
        """``stmt`` with the filters' WHERE clauses and the ORDER BY of ``sort``.

        ``sort`` None (or empty) means ``default_sort``; the primary key always
        ends the order. The ORDER BY is appended to any ``stmt`` already has.
        """
        conditions = self.where(filters)
        if conditions:
            stmt = stmt.where(*conditions)
        return stmt.order_by(*self.order_by(sort))

    def where(self, filters: Mapping[str, Any]) -> list[ColumnElement[bool]]:
        """The WHERE clauses of ``filters`` (to combine with your own)."""
        if not isinstance(filters, Mapping):
            raise FilterError(f"filters must be a mapping of 'field__op' to value, not {filters!r}")
        return [self._condition(key, value) for key, value in filters.items()]

    def order_by(self, sort: str | Sequence[str] | None = None) -> list[ColumnElement[Any]]:
        """The ORDER BY elements of ``sort`` (or the default), primary key last."""
        return [key.order() for key in self._sort(sort)]

    def sort_keys(self, sort: str | Sequence[str] | None = None) -> tuple[str, ...]:
        """``sort`` checked and completed, e.g. ``("-created_at", "id")``.

        Hand it to ``Repository.keyset_page(sort=...)`` so a user's sort is
        checked against this spec before it orders a keyset page.
        """
        return tuple(key.token for key in self._sort(sort))

    def fields_help(self) -> dict[str, Any]:
        """What is allowed, JSON-ready, e.g. for API documentation."""
        return {
            "filters": {
                name: {
                    "type": _type_label(field.attribute),
                    "operators": sorted(field.ops),
                    "keys": sorted(name if op == "eq" else f"{name}__{op}" for op in field.ops),
                }
                for name, field in sorted(self._fields.items())
            },
            "sortable": sorted(self._sortable),
            "default_sort": [key.token for key in self._default_sort],
        }

    # -- private ------------------------------------------------------------------------
    def _sort(
        self, sort: str | Sequence[str] | None, default: Sequence[str] | None = None
    ) -> tuple[SortKey, ...]:
        defaults = [k.token for k in self._default_sort] if default is None else default
        return parse_sort(
            self.model,
            sort,
            allowed=self._sortable.__contains__,
            allowed_names=lambda: ", ".join(sorted(self._sortable)) or "(none)",
            default=defaults,
        )

    def _condition(self, key: Any, value: Any) -> ColumnElement[bool]:
        field, op = self._resolve(key)
        where = f"filter {key!r}"
        column = field.attribute
        if op == "in":
            return column.in_(self._many(value, field, where))
        if op == "range":
            return self._range(value, field, where)
        value = _single(value, where)
        if op == "isnull":
            return column.is_(None) if coerce_bool(value, where) else column.is_not(None)
        if op == "json":
            return _json_path(column, value, where)
        if op == "search":
            return self._search(column, value, where)
        converted = coerce(value, column, where)
        if converted is None:
            raise FilterError(f"{where}: needs a value (use '{field.name}__isnull' for NULL)")
        return _compare(column, op, converted, where)

    def _resolve(self, key: Any) -> tuple[_Field, str]:
        if not isinstance(key, str):
            raise FilterError(f"filter keys are strings such as 'title__eq', not {shown(key)}")
        field = self._fields.get(key)
        name, op = (key, "eq") if field is not None else key.rpartition("__")[::2]
        if field is None:
            field = self._fields.get(name)
        if field is None or not name:
            known = ", ".join(sorted(self._fields)) or "(none)"
            raise FilterError(
                f"unknown filter {key!r}: {name or key!r} is not filterable; "
                f"filterable fields: {known} (keys are 'field' or 'field__op')"
            )
        if op not in field.ops:
            allowed = ", ".join(sorted(field.ops))
            raise FilterError(
                f"filter {key!r}: operator {op!r} is not allowed on {name!r}; allowed: {allowed}"
            )
        return field, op

    def _many(self, value: Any, field: _Field, where: str) -> list[Any]:
        if isinstance(value, str):
            items: list[Any] = [item.strip() for item in value.split(",")]
        elif isinstance(value, Sequence | set | frozenset):
            items = list(value)
        else:
            items = [value]
        if not items:
            raise FilterError(f"{where}: needs at least one value")
        if len(items) > _MAX_IN:
            raise FilterError(f"{where}: at most {_MAX_IN} values, got {len(items)}")
        converted = [coerce(item, field.attribute, where) for item in items]
        if any(item is None for item in converted):
            raise FilterError(f"{where}: null is not a value (use '{field.name}__isnull')")
        return converted

    def _range(self, value: Any, field: _Field, where: str) -> ColumnElement[bool]:
        if isinstance(value, str):
            ends: list[Any] = [end.strip() for end in value.split(",")]
        elif isinstance(value, Sequence):
            ends = list(value)
        else:
            ends = []
        if len(ends) != 2:
            raise FilterError(f"{where}: a range is 'low,high' or [low, high], not {shown(value)}")
        low, high = (
            None if end is None or end == "" else coerce(end, field.attribute, where)
            for end in ends
        )
        column: Any = field.attribute
        if low is None and high is None:
            raise FilterError(f"{where}: a range needs at least one end")
        if low is None:
            condition: ColumnElement[bool] = column <= high
        elif high is None:
            condition = column >= low
        elif low > high:
            raise FilterError(f"{where}: the low end {low!r} is above the high end {high!r}")
        else:
            condition = column.between(low, high)
        return condition

    def _search(self, column: Any, value: Any, where: str) -> ColumnElement[bool]:
        if not isinstance(value, str) or not value.strip():
            raise FilterError(f"{where}: search needs some words, not {shown(value)}")
        # A literal, not a parameter, so an expression index on to_tsvector(config, column)
        # matches; the name was checked against _SEARCH_CONFIG when the spec was built.
        config: ColumnElement[Any] = sql_literal_column(f"'{self._search_config}'::regconfig")
        document = func.to_tsvector(config, column)
        return document.bool_op("@@")(func.websearch_to_tsquery(config, literal(value)))


def _declared_field(model: type[Any], name: str, ops: Iterable[str], columns: set[str]) -> _Field:
    label = f"{model.__name__}.{name}"
    if name not in columns:
        raise ValueError(f"{label}: no such column; columns: {', '.join(sorted(columns))}")
    if isinstance(ops, str):
        raise ValueError(f"{label}: operators are a set such as {{'eq', 'in'}}, not {ops!r}")
    allowed = frozenset(ops)
    unknown = sorted(allowed - OPERATORS)
    if unknown or not allowed:
        raise ValueError(
            f"{label}: unknown operators {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(sorted(OPERATORS))}"
        )
    attribute: InstrumentedAttribute[Any] = getattr(model, name)
    column_type = attribute.property.columns[0].type
    is_json = isinstance(column_type, JSON)
    is_text = isinstance(column_type, String) and not isinstance(column_type, Enum)
    if is_json and allowed - _JSON_COLUMN_OPS:
        raise ValueError(f"{label}: a JSON column allows only json and isnull")
    if "json" in allowed and not is_json:
        raise ValueError(f"{label}: the json operator needs a JSON column")
    if allowed & _TEXT_OPS and not is_text:
        bad = ", ".join(sorted(allowed & _TEXT_OPS))
        raise ValueError(f"{label}: {bad} need a string column")
    return _Field(name, attribute, allowed)


def _single(value: Any, where: str) -> Any:
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise FilterError(f"{where}: expects one value, got {len(value)}")
        return value[0]
    return value


def _compare(column: Any, op: str, value: Any, where: str) -> ColumnElement[bool]:
    condition: ColumnElement[bool]
    if op in ("like", "ilike"):
        if (len(value) - len(value.rstrip("\\"))) % 2 == 1:
            raise FilterError(f"{where}: a pattern cannot end with the escape character '\\'")
        method = column.like if op == "like" else column.ilike
        condition = method(value, escape="\\")
    elif op == "contains":
        condition = column.contains(value, autoescape=True)
    elif op == "icontains":
        condition = column.icontains(value, autoescape=True)
    else:
        comparisons = {
            "eq": column.__eq__,
            "ne": column.__ne__,
            "lt": column.__lt__,
            "lte": column.__le__,
            "gt": column.__gt__,
            "gte": column.__ge__,
        }
        condition = comparisons[op](value)
    return condition


def _json_path(column: Any, value: Any, where: str) -> ColumnElement[bool]:
    from sqlalchemy.dialects.postgresql import JSONB, JSONPATH

    spec = _json_spec(value, where)
    path = "$" + "".join(f'."{_jsonpath_key(key, where)}"' for key in spec["keys"])
    document = column if isinstance(column.type, JSONB) else cast(column, JSONB)
    if "value" not in spec:
        return func.jsonb_path_exists(document, cast(literal(path), JSONPATH), type_=Boolean)
    path += f" ? (@ {_JSON_COMPARE[spec['op']]} $value)"
    variables = literal({"value": spec["value"]}, JSONB)
    return func.jsonb_path_exists(document, cast(literal(path), JSONPATH), variables, type_=Boolean)


def _json_spec(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    usage = '{"path": "a.b", "value": ..., "op": "eq"} ("value" and "op" optional)'
    if not isinstance(value, Mapping) or "path" not in value:
        raise FilterError(f"{where}: expects {usage}")
    extra = sorted(set(value) - {"path", "value", "op"})
    if extra:
        raise FilterError(f"{where}: unknown keys {', '.join(map(repr, extra))}; expects {usage}")
    path = value["path"]
    if not isinstance(path, str) or not path:
        raise FilterError(f"{where}: path is a dotted string such as 'address.city'")
    keys = path.split(".")
    if len(keys) > _MAX_JSON_DEPTH or any(not key for key in keys):
        raise FilterError(f"{where}: path {shown(path)} is not a dotted key path")
    spec: dict[str, Any] = {"keys": keys}
    op = value.get("op", "eq")
    if op not in _JSON_COMPARE:
        raise FilterError(
            f"{where}: op {shown(op)} is not one of {', '.join(sorted(_JSON_COMPARE))}"
        )
    if "value" in value:
        scalar = value["value"]
        if scalar is not None and not isinstance(scalar, str | int | float | bool):
            raise FilterError(f"{where}: value must be a JSON string, number, boolean or null")
        spec.update(value=scalar, op=op)
    elif "op" in value:
        raise FilterError(f"{where}: op needs a value")
    return spec


def _jsonpath_key(key: str, where: str) -> str:
    if any(ord(char) < 0x20 for char in key):
        raise FilterError(f"{where}: path keys cannot hold control characters")
    return key.replace("\\", "\\\\").replace('"', '\\"')


def _type_label(attribute: InstrumentedAttribute[Any]) -> str:
    column_type = attribute.property.columns[0].type
    if isinstance(column_type, JSON):
        return "json"
    target = python_type(attribute)
    return target.__name__ if target is not None else type(column_type).__name__.lower()
