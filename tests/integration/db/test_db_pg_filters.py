"""FilterSpec on PostgreSQL: the contract's operators, JSON paths, full-text search, injection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import String, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.core.errors import FilterError
from dtpyfw.db import (
    Database,
    DatabaseSettings,
    FilterSpec,
    ModelBase,
    SoftDeleteMixin,
    create_sync_engine,
)
from dtpyfw.testing._backends import _fresh_database
from dtpyfw.testing._launchers import ServiceHandle

INJECTIONS = [
    "'; DROP TABLE it_db_filter_docs; --",
    "x' OR '1'='1",
    "%' OR 1=1 --",
    '$.tags ? (@ == "x") || true',
    "') OR ('a'='a",
]


class FilterDoc(SoftDeleteMixin, ModelBase):
    """The issue's example model: title, size, soft delete, a JSONB document and a body."""

    __tablename__ = "it_db_filter_docs"
    title: Mapped[str] = mapped_column(String(200))
    size: Mapped[int]
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    body: Mapped[str] = mapped_column(Text, default="")


# The contract the API layer builds on, verbatim.
SPEC = FilterSpec(
    FilterDoc,
    fields={
        "title": {"eq", "ilike", "in"},
        "size": {"eq", "gte", "lte", "gt", "lt", "range"},
        "deleted_at": {"isnull"},
        "data": {"json"},
        "body": {"search"},
    },
    sortable={"created_at", "title", "size"},
    default_sort=("-created_at",),
)
WIDE = FilterSpec(
    FilterDoc,
    fields={"title": {"like", "contains", "icontains"}, "created_at": {"range", "gte"}},
    sortable={"title"},
)

DOCS: list[dict[str, Any]] = [
    {
        "title": "Alpha",
        "size": 10,
        "data": {"tags": ["x", "y"], "owner": {"name": "ann", "age": 31}, "n": 5},
        "body": "The quick brown fox jumps over the lazy dog",
    },
    {
        "title": "beta",
        "size": 20,
        "data": {"tags": ["y"], "owner": {"name": "bob", "age": 45}, "n": "5"},
        "body": "A lazy afternoon with coffee",
    },
    {
        "title": "Gamma_1",
        "size": 30,
        "data": {"tags": [], 'we"ird': True, "owner": None},
        "body": "Foxes are quick and clever",
    },
    {"title": "delta", "size": 40, "data": {"tags": ["x"], "n": 7.5}, "body": "nothing here"},
]


@pytest.fixture(scope="module")
def database(postgres_service: ServiceHandle) -> Iterator[Database]:
    """One PostgreSQL database for this module with the sample documents (read-only tests)."""
    with _fresh_database(postgres_service.url) as dsn:
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_sync_engine(DatabaseSettings(url=url))
        database = Database(engine)
        with engine.begin() as connection:
            ModelBase.metadata.create_all(connection, tables=[FilterDoc.__table__])
        for doc in DOCS:  # one transaction each, so created_at (now()) differs
            with database.session() as session:
                session.add(FilterDoc(**doc))
        with database.session() as session:
            deleted = FilterDoc(title="gone", size=50, deleted_at=datetime(2024, 1, 1, tzinfo=UTC))
            session.add(deleted)
        yield database
        engine.dispose()


def run(
    database: Database,
    filters: Mapping[str, Any],
    sort: str | Sequence[str] | None = "title",
    spec: FilterSpec = SPEC,
) -> list[str]:
    """Titles the spec selects, in the spec's order (by title unless asked otherwise)."""
    with database.session() as session:
        return list(session.scalars(spec.apply(select(FilterDoc.title), filters, sort)).all())


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"title": "beta"}, ["beta"]),
        ({"title__ilike": "%A"}, ["Alpha", "beta", "delta"]),
        ({"title__ilike": "gamma\\_%"}, ["Gamma_1"]),
        ({"title__in": "Alpha,delta,zeta"}, ["Alpha", "delta"]),
        ({"title__in": ["Alpha", "beta"]}, ["Alpha", "beta"]),
        ({"size__gte": "20", "size__lt": "40"}, ["Gamma_1", "beta"]),
        ({"size__gt": 30}, ["delta", "gone"]),
        ({"size__lte": "10"}, ["Alpha"]),
        ({"size__range": "15,35"}, ["Gamma_1", "beta"]),
        ({"size__range": ["40", ""]}, ["delta", "gone"]),
        ({"size": "20"}, ["beta"]),
        ({"deleted_at__isnull": "false"}, ["gone"]),
        ({"deleted_at__isnull": "true", "size__gte": 30}, ["Gamma_1", "delta"]),
    ],
)
def test_contract_operators_on_postgresql(
    database: Database, filters: dict[str, Any], expected: list[str]
) -> None:
    """eq, ilike, in, gte/gt/lte/lt, range and isnull filter with query-string values."""
    assert run(database, filters) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"path": "tags", "value": "x"}, ["Alpha", "delta"]),
        ('{"path": "tags", "value": "y"}', ["Alpha", "beta"]),
        ({"path": "owner.name", "value": "bob"}, ["beta"]),
        ({"path": "owner.age", "op": "gte", "value": 40}, ["beta"]),
        ({"path": "owner.age", "op": "lt", "value": 40}, ["Alpha"]),
        ({"path": "n", "value": 5}, ["Alpha"]),  # the number 5, not the string "5"
        ({"path": "n", "value": "5"}, ["beta"]),
        ({"path": "n", "op": "gt", "value": 6}, ["delta"]),
        ({"path": "n", "op": "ne", "value": 5}, ["delta"]),
        ({"path": "owner", "value": None}, ["Gamma_1"]),
        ({"path": "owner"}, ["Alpha", "Gamma_1", "beta"]),  # the key exists
        ({"path": 'we"ird', "value": True}, ["Gamma_1"]),
        ({"path": "missing.deeper"}, []),
    ],
)
def test_json_path_filters(database: Database, value: Any, expected: list[str]) -> None:
    """data__json matches a value at a dotted path (array elements included) or a key's presence."""
    assert run(database, {"data__json": value}) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("quick fox", ["Alpha"]),
        ("lazy", ["Alpha", "beta"]),
        ("lazy -fox", ["beta"]),
        ('"brown fox"', ["Alpha"]),
        ("coffee or clever", ["Gamma_1", "beta"]),
        ("FOXES", ["Gamma_1"]),
    ],
)
def test_full_text_search_takes_web_search_syntax(
    database: Database, query: str, expected: list[str]
) -> None:
    """body__search is to_tsvector @@ websearch_to_tsquery: words, -exclusion, "phrases", or."""
    assert run(database, {"body__search": query}) == expected


def test_like_is_case_sensitive_and_keeps_wildcards(database: Database) -> None:
    """like is case-sensitive on PostgreSQL; the user's % and _ stay wildcards; contains escapes."""
    assert run(database, {"title__like": "alpha"}, spec=WIDE) == []
    assert run(database, {"title__like": "_lpha"}, spec=WIDE) == ["Alpha"]
    assert run(database, {"title__contains": "_"}, spec=WIDE) == ["Gamma_1"]
    assert run(database, {"title__icontains": "ALP"}, spec=WIDE) == ["Alpha"]


def test_timestamps_filter_with_iso_strings_and_offsets(database: Database) -> None:
    """A created_at range accepts ISO 8601 with offsets; a naive time means UTC."""
    with database.session() as session:
        first = session.scalars(select(FilterDoc.created_at).limit(1)).one()
    assert first.tzinfo is not None
    shifted = first.astimezone().isoformat()
    assert len(run(database, {"created_at__gte": shifted}, spec=WIDE)) == 5
    naive = first.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert len(run(database, {"created_at__range": f"{naive},"}, spec=WIDE)) == 5
    assert run(database, {"created_at__gte": "2999-01-01T00:00:00+02:00"}, spec=WIDE) == []


def test_sort_and_default_sort_on_postgresql(database: Database) -> None:
    """-size sorts descending; the default sort is -created_at with id as tie-breaker."""
    assert run(database, {"size__lte": 30}, "-size") == ["Gamma_1", "beta", "Alpha"]
    assert run(database, {"deleted_at__isnull": "true"}, None) == [
        "delta",
        "Gamma_1",
        "beta",
        "Alpha",
    ]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_injection_attempts_match_nothing_on_postgresql(database: Database, attack: str) -> None:
    """SQL or jsonpath in values is data: no match, no error, the table intact."""
    for filters in (
        {"title": attack},
        {"title__ilike": attack},
        {"title__in": [attack]},
        {"data__json": {"path": attack, "value": attack}},
        {"body__search": attack},
    ):
        assert run(database, filters) == [], filters
    with database.session() as session:
        assert session.execute(text("SELECT count(*) FROM it_db_filter_docs")).scalar_one() == 5


@pytest.mark.parametrize(
    ("filters", "sort", "message"),
    [
        ({"password": "x"}, None, r"'password' is not filterable; filterable fields: body, data"),
        ({"title__like": "x"}, None, r"operator 'like' is not allowed on 'title'; allowed: eq, il"),
        ({"size": "ten"}, None, r"'ten' is not a valid integer"),
        ({"data": "x"}, None, r"operator 'eq' is not allowed on 'data'; allowed: json"),
        ({"data__json": "$.tags[*] ? (@ == 1)"}, None, r'expects \{"path"'),
        ({}, "body", r"cannot sort by 'body'; sortable: created_at, size, title"),
        ({}, "-title;DROP TABLE it_db_filter_docs", r"cannot sort by"),
    ],
)
def test_undeclared_input_is_refused_on_postgresql(
    database: Database, filters: dict[str, Any], sort: str | None, message: str
) -> None:
    """Unknown fields, operators, sort keys and bad values raise FilterError before any SQL."""
    with pytest.raises(FilterError, match=message):
        run(database, filters, sort)
