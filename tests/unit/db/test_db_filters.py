"""FilterSpec on SQLite: every portable operator, coercion, sorting, and what is refused."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, String, Text, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.core.errors import FilterError
from dtpyfw.db import (
    Database,
    DatabaseSettings,
    FilterSpec,
    ModelBase,
    SoftDeleteMixin,
    create_all,
    create_sync_engine,
)

INJECTIONS = [
    "'; DROP TABLE unit_db_filter_articles; --",
    "x' OR '1'='1",
    '" OR 1=1 --',
    "1; DELETE FROM unit_db_filter_articles",
]


class Status(enum.Enum):
    """Publication state, stored as an SQL enum."""

    DRAFT = "draft"
    PUBLISHED = "published"


class Article(SoftDeleteMixin, ModelBase):
    """A row with a column of every type the filters convert to."""

    __tablename__ = "unit_db_filter_articles"
    title: Mapped[str] = mapped_column(String(200))
    size: Mapped[int]
    rating: Mapped[float | None]
    status: Mapped[Status] = mapped_column(default=Status.DRAFT)
    published: Mapped[date | None]
    featured: Mapped[bool] = mapped_column(default=False)
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


SPEC = FilterSpec(
    Article,
    fields={
        "title": {"eq", "ilike", "in", "like", "contains", "icontains"},
        "size": {"eq", "ne", "gte", "lte", "gt", "lt", "range", "in"},
        "deleted_at": {"isnull"},
        "data": {"json"},
        "body": {"search"},
        "status": {"eq", "in"},
        "published": {"range", "isnull"},
        "featured": {"eq"},
        "rating": {"gt"},
    },
    sortable={"created_at", "title", "size", "rating"},
    default_sort=("-size",),
)

ALL_BY_SIZE_DESC = ["back\\slash", "deltaXx", "delta_x", "Gamma 100%", "beta", "Alpha"]
ROWS: list[dict[str, Any]] = [
    {"title": "Alpha", "size": 1, "rating": 4.5, "published": date(2024, 1, 10)},
    {"title": "beta", "size": 2, "rating": None, "status": Status.PUBLISHED},
    {"title": "Gamma 100%", "size": 3, "rating": 3.0, "published": date(2024, 6, 1)},
    {"title": "delta_x", "size": 4, "rating": 1.0, "featured": True},
    {"title": "deltaXx", "size": 5, "rating": None, "status": Status.PUBLISHED},
    {"title": "back\\slash", "size": 6, "rating": 2.0, "published": date(2025, 1, 1)},
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One SQLite database with the sample articles, shared by this module's read-only tests."""
    path: Path = tmp_path_factory.mktemp("filters") / "filters.sqlite3"
    engine = create_sync_engine(DatabaseSettings(name=str(path)))
    database = Database(engine)
    create_all(database)
    with database.session() as session:
        session.add_all(Article(**row) for row in ROWS)
    yield database
    engine.dispose()


def _titles(rows: Sequence[Article]) -> list[str]:
    return [row.title for row in rows]


def run(
    database: Database, filters: Mapping[str, Any], sort: str | Sequence[str] | None = None
) -> list[str]:
    """Apply the spec and return the matching titles."""
    with database.session() as session:
        return _titles(session.scalars(SPEC.apply(select(Article), filters, sort)).all())


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"size": "3"}, ["Gamma 100%"]),
        ({"size__eq": 3}, ["Gamma 100%"]),
        ({"size__ne": "3"}, ["back\\slash", "deltaXx", "delta_x", "beta", "Alpha"]),
        ({"size__gte": "5"}, ["back\\slash", "deltaXx"]),
        ({"size__gt": "5"}, ["back\\slash"]),
        ({"size__lte": "2"}, ["beta", "Alpha"]),
        ({"size__lt": " 2 "}, ["Alpha"]),
        ({"size__in": "1, 3,5"}, ["deltaXx", "Gamma 100%", "Alpha"]),
        ({"size__in": ["1", 2]}, ["beta", "Alpha"]),
        ({"size__range": "2,4"}, ["delta_x", "Gamma 100%", "beta"]),
        ({"size__range": [5, None]}, ["back\\slash", "deltaXx"]),
        ({"size__range": ",1"}, ["Alpha"]),
        ({"status": "published"}, ["deltaXx", "beta"]),
        ({"status__in": "PUBLISHED,draft"}, ALL_BY_SIZE_DESC),
        ({"featured": "true"}, ["delta_x"]),
        ({"featured": "0", "size__gte": 5}, ["back\\slash", "deltaXx"]),
        ({"published__range": "2024-01-01,2024-12-31"}, ["Gamma 100%", "Alpha"]),
        ({"published__isnull": "yes"}, ["deltaXx", "delta_x", "beta"]),
        ({"published__isnull": False}, ["back\\slash", "Gamma 100%", "Alpha"]),
        ({"rating__gt": "2.5"}, ["Gamma 100%", "Alpha"]),
        ({"deleted_at__isnull": "true", "title": "beta"}, ["beta"]),
        ({"title": ["beta"]}, ["beta"]),
    ],
)
def test_operators_convert_query_string_values(
    database: Database, filters: dict[str, Any], expected: list[str]
) -> None:
    """Each operator filters with values given as raw strings, lists or native values."""
    assert run(database, filters) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"title__like": "delta%"}, ["deltaXx", "delta_x"]),
        ({"title__like": "delta_x"}, ["deltaXx", "delta_x"]),  # the user's _ is a wildcard
        ({"title__like": "delta\\_x"}, ["delta_x"]),  # ... unless escaped with a backslash
        ({"title__like": "%100\\%"}, ["Gamma 100%"]),
        ({"title__like": "%\\\\%"}, ["back\\slash"]),
        ({"title__like": "alpha"}, []),  # like is case-sensitive, ilike is not
        ({"title__ilike": "ALPHA"}, ["Alpha"]),
        ({"title__ilike": "%TA%"}, ["deltaXx", "delta_x", "beta"]),
        ({"title__contains": "_"}, ["delta_x"]),  # contains matches % and _ literally
        ({"title__contains": "%"}, ["Gamma 100%"]),
        ({"title__icontains": "GAMMA"}, ["Gamma 100%"]),
    ],
)
def test_like_patterns_keep_user_wildcards_and_contains_escapes_them(
    database: Database, filters: dict[str, Any], expected: list[str]
) -> None:
    """like/ilike treat % and _ as wildcards (backslash escapes); contains matches literally."""
    with database.session() as session:
        # SQLite's LIKE ignores ASCII case by default; make like case-sensitive as on PostgreSQL.
        session.execute(text("PRAGMA case_sensitive_like = ON"))
        rows = session.scalars(SPEC.apply(select(Article), filters)).all()
        session.execute(text("PRAGMA case_sensitive_like = OFF"))
    assert _titles(rows) == expected


def test_a_pattern_ending_in_the_escape_character_is_refused(database: Database) -> None:
    """A like pattern ending with a lone backslash is a FilterError, not a driver error."""
    with pytest.raises(FilterError, match="escape character"):
        run(database, {"title__like": "abc\\"})


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            {"secret": "1"},
            r"unknown filter 'secret': 'secret' is not filterable; filterable fields: body, data",
        ),
        ({"secret__eq": "1"}, r"'secret' is not filterable"),
        (
            {"title__gte": "a"},
            r"operator 'gte' is not allowed on 'title'; "
            r"allowed: contains, eq, icontains, ilike, in, like",
        ),
        ({"title__regex": "a"}, r"operator 'regex' is not allowed on 'title'"),
        (
            {"deleted_at": "2024-01-01"},
            r"operator 'eq' is not allowed on 'deleted_at'; allowed: isnull",
        ),
        ({"__eq": "1"}, r"unknown filter '__eq'"),
        ({"size": "three"}, r"filter 'size': 'three' is not a valid integer"),
        ({"size": "1.5"}, r"not a valid integer"),
        ({"size": True}, r"not a valid integer"),
        ({"size": str(2**70)}, r"not a valid integer"),
        ({"rating__gt": "nan"}, r"not a valid number"),
        ({"status": "archived"}, r"not a valid Status \(one of draft, published\)"),
        ({"featured": "maybe"}, r"not a boolean"),
        ({"published__range": "2024-13-01,"}, r"not a valid ISO 8601 date"),
        ({"size__range": "1,2,3"}, r"a range is 'low,high'"),
        ({"size__range": ","}, r"at least one end"),
        ({"size__range": "5,1"}, r"low end 5 is above the high end 1"),
        ({"size__in": []}, r"at least one value"),
        ({"size__in": ",".join(["1"] * 1001)}, r"at most 1000 values"),
        ({"size": ["1", "2"]}, r"expects one value, got 2"),
        ({"size": None}, r"needs a value \(use 'size__isnull'"),
        ({"deleted_at__isnull": "perhaps"}, r"not a boolean"),
        ({1: "x"}, r"filter keys are strings"),
    ],
)
def test_undeclared_or_unconvertible_input_is_a_filter_error(
    database: Database, filters: dict[Any, Any], message: str
) -> None:
    """Unknown fields, forbidden operators and bad values raise FilterError naming the allowed."""
    with pytest.raises(FilterError, match=message):
        run(database, filters)


def test_filter_error_is_a_400_database_error() -> None:
    """FilterError is a DatabaseError that the API layer answers with 400."""
    with pytest.raises(FilterError) as info:
        SPEC.where({"nope": 1})
    assert info.value.http_status == 400


@pytest.mark.parametrize("attack", INJECTIONS)
def test_injection_strings_are_bound_values(database: Database, attack: str) -> None:
    """SQL in values matches nothing, never reaches the SQL text, and leaves the table intact."""
    filters = {"title": attack, "title__ilike": attack, "title__in": [attack, "x"]}
    stmt = SPEC.apply(select(Article), filters)
    assert attack not in str(stmt.compile(compile_kwargs={}))
    assert run(database, filters) == []
    assert len(run(database, {})) == len(ROWS)


@pytest.mark.parametrize(
    ("filters", "sort"),
    [
        ({"title; DROP TABLE unit_db_filter_articles": "1"}, None),
        ({"title__eq; --": "1"}, None),
        ({}, "title; DROP TABLE unit_db_filter_articles"),
        ({}, ["-size", "(SELECT 1)"]),
    ],
)
def test_injection_through_names_is_refused(
    database: Database, filters: dict[str, Any], sort: Any
) -> None:
    """Keys and sort items are looked up in the whitelist, so SQL there is a FilterError."""
    with pytest.raises(FilterError):
        run(database, filters, sort)
    assert len(run(database, {})) == len(ROWS)


def test_default_sort_applies_and_id_breaks_ties(database: Database) -> None:
    """Without a sort the default applies; the primary key always ends the ORDER BY."""
    assert SPEC.sort_keys() == ("-size", "id")
    assert SPEC.sort_keys([]) == ("-size", "id")
    assert SPEC.sort_keys("title, -size") == ("title", "-size", "id")
    assert SPEC.sort_keys(["-id"]) == ("-id",)
    assert run(database, {}, "title")[:2] == ["Alpha", "Gamma 100%"]


def test_nullable_columns_sort_nulls_last_both_ways(database: Database) -> None:
    """rating has NULLs: they come last ascending and descending alike."""
    ascending = run(database, {}, "rating")
    descending = run(database, {}, "-rating")
    assert ascending[-2:] == ["beta", "deltaXx"]
    assert descending[-2:] == ["beta", "deltaXx"]
    assert ascending[:4] == ["delta_x", "back\\slash", "Gamma 100%", "Alpha"]
    assert descending[:4] == ["Alpha", "Gamma 100%", "back\\slash", "delta_x"]


@pytest.mark.parametrize(
    ("sort", "message"),
    [
        ("body", r"cannot sort by 'body'; sortable: created_at, rating, size, title"),
        ("-nope", r"cannot sort by 'nope'"),
        ("title,-title", r"'title' is sorted by twice"),
        ([1], r"sort items are strings"),
    ],
)
def test_unknown_sort_keys_are_filter_errors(sort: Any, message: str) -> None:
    """A sort item that is not declared sortable raises FilterError listing the sortable ones."""
    with pytest.raises(FilterError, match=message):
        SPEC.order_by(sort)


def test_apply_keeps_the_statement_and_adds_to_it(database: Database) -> None:
    """apply() adds WHERE clauses to the statement's own and appends its ORDER BY."""
    stmt = select(Article).where(Article.size > 1)
    with database.session() as session:
        rows = session.scalars(SPEC.apply(stmt, {"size__lt": "4"}, "size")).all()
    assert _titles(rows) == ["beta", "Gamma 100%"]


def test_json_and_search_compile_to_postgresql_functions() -> None:
    """json is jsonb_path_exists with a bound path and variables; search is websearch FTS."""
    stmt = SPEC.apply(
        select(Article),
        {"data__json": '{"path": "a.b\\"c", "value": "x"}', "body__search": "fox -dog"},
    )
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert "jsonb_path_exists(CAST(unit_db_filter_articles.data AS JSONB), CAST(" in sql
    assert "AS JSONPATH)" in sql
    assert "to_tsvector('simple'::regconfig, unit_db_filter_articles.body) @@ " in sql
    assert "websearch_to_tsquery('simple'::regconfig, %(param_" in sql
    params = stmt.compile(dialect=postgresql.dialect()).params
    assert '$."a"."b\\"c" ? (@ == $value)' in params.values()
    assert "fox -dog" in params.values()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("$.tags[*]", r'expects \{"path": "a.b"'),
        ({"path": "a", "value": [1]}, r"value must be a JSON string, number, boolean or null"),
        ({"path": "a..b"}, r"is not a dotted key path"),
        ({"path": "a", "op": "like", "value": 1}, r"op 'like' is not one of eq, gt"),
        ({"path": "a", "op": "gt"}, r"op needs a value"),
        ({"path": "a", "extra": 1}, r"unknown keys 'extra'"),
        ({"path": "a\nb"}, r"control characters"),
        ({"path": ".".join("k" * 17)}, r"not a dotted key path"),
    ],
)
def test_bad_json_filters_are_filter_errors(value: Any, message: str) -> None:
    """The json filter's structured form is checked before any SQL is built."""
    with pytest.raises(FilterError, match=message):
        SPEC.where({"data__json": value})


def test_blank_search_is_a_filter_error() -> None:
    """A search with no words is refused."""
    with pytest.raises(FilterError, match="search needs some words"):
        SPEC.where({"body__search": "  "})


def test_fields_help_describes_what_is_allowed() -> None:
    """fields_help() lists each field's type, operators and keys, the sortable ones, the default."""
    described = SPEC.fields_help()
    assert described["filters"]["size"]["type"] == "int"
    assert described["filters"]["title"]["keys"] == [
        "title",
        "title__contains",
        "title__icontains",
        "title__ilike",
        "title__in",
        "title__like",
    ]
    assert described["filters"]["data"] == {
        "type": "json",
        "operators": ["json"],
        "keys": ["data__json"],
    }
    assert described["sortable"] == ["created_at", "rating", "size", "title"]
    assert described["default_sort"] == ["-size", "id"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": {"nope": {"eq"}}}, r"Article.nope: no such column"),
        ({"fields": {"title": {"equals"}}}, r"unknown operators equals"),
        ({"fields": {"title": "eq"}}, r"operators are a set"),
        ({"fields": {"title": set()}}, r"unknown operators \(none given\)"),
        ({"fields": {"size": {"ilike"}}}, r"ilike need a string column"),
        ({"fields": {"status": {"search"}}}, r"search need a string column"),
        ({"fields": {"title": {"json"}}}, r"json operator needs a JSON column"),
        ({"fields": {"data": {"eq"}}}, r"a JSON column allows only json and isnull"),
        ({"sortable": {"nope"}}, r"sortable names no column: nope"),
        ({"sortable": {"size"}, "default_sort": ("title",)}, r"default_sort: .*cannot sort by"),
        ({"search_config": "english'; --"}, r"not a configuration name"),
    ],
)
def test_a_wrong_spec_fails_when_built(kwargs: dict[str, Any], message: str) -> None:
    """Declaring a missing column or an operator that does not suit the column is a ValueError."""
    with pytest.raises(ValueError, match=message):
        FilterSpec(Article, **kwargs)
