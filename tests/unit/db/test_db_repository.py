"""Repository and AsyncRepository on SQLite: reads, writes, locking, soft delete and pages."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.core.errors import DatabaseError, FilterError
from dtpyfw.db import (
    AsyncDatabase,
    AsyncRepository,
    Database,
    DatabaseSettings,
    FilterSpec,
    ModelBase,
    Repository,
    SoftDeleteMixin,
    StaleVersionError,
    VersionedMixin,
    acreate_all,
    create_all,
    create_async_engine,
    create_sync_engine,
    uuid7,
)


class Ticket(SoftDeleteMixin, VersionedMixin, ModelBase):
    """A versioned, soft-deletable row with a unique code and a nullable date."""

    __tablename__ = "unit_db_repo_tickets"
    code: Mapped[str] = mapped_column(String(40), unique=True)
    priority: Mapped[int] = mapped_column(default=0)
    due: Mapped[date | None]
    owner: Mapped[str | None]


class Label(ModelBase):
    """A plain row: no version, no soft delete."""

    __tablename__ = "unit_db_repo_labels"
    name: Mapped[str] = mapped_column(unique=True)


SPEC = FilterSpec(
    Ticket,
    fields={"priority": {"gte"}},
    sortable={"priority", "due", "code", "created_at"},
    default_sort=("code",),
)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A sync Database on a SQLite file with the tables created."""
    engine = create_sync_engine(DatabaseSettings(name=str(tmp_path / "repo.sqlite3")))
    database = Database(engine)
    create_all(database)
    yield database
    engine.dispose()


@pytest.fixture
async def adatabase(tmp_path: Path) -> AsyncIterator[AsyncDatabase]:
    """An async Database on a SQLite file with the tables created."""
    engine = create_async_engine(DatabaseSettings(name=str(tmp_path / "arepo.sqlite3")))
    database = AsyncDatabase(engine)
    await acreate_all(database)
    yield database
    await engine.dispose()


def _seed(database: Database, count: int = 12) -> list[Ticket]:
    """Tickets t00..t11 with priorities 0-2 and every third due date missing."""
    with database.session() as session:
        tickets = Repository(Ticket, session)
        return [
            tickets.create(
                code=f"t{n:02d}",
                priority=n % 3,
                due=None if n % 3 == 0 else date(2024, 1, 1 + n % 5),
            )
            for n in range(count)
        ]


def _codes(rows: list[Ticket]) -> list[str]:
    return [row.code for row in rows]


# -- reads ------------------------------------------------------------------------------------
def test_create_flushes_and_get_reads_back(database: Database) -> None:
    """create() fills id, version and timestamps; get() finds the row by id or its string."""
    with database.session() as session:
        tickets = Repository(Ticket, session)
        ticket = tickets.create({"code": "a"}, priority=2)
        assert ticket.id.version == 7
        assert ticket.version == 1
        assert ticket.created_at is not None
    with database.session() as session:
        tickets = Repository(Ticket, session)
        assert tickets.get(ticket.id) is not None
        found = tickets.get(str(ticket.id))
        assert found is not None
        assert (found.code, found.priority) == ("a", 2)
        assert tickets.get(uuid7()) is None


def test_a_malformed_id_is_a_filter_error(database: Database) -> None:
    """An id that is not a UUID raises FilterError (a 400), not a driver error."""
    with database.session() as session, pytest.raises(FilterError, match="Ticket id"):
        Repository(Ticket, session).get("42; DROP TABLE unit_db_repo_tickets")


def test_get_many_keeps_the_order_given(database: Database) -> None:
    """get_many returns rows in the order of the ids, skipping missing ones and repeats."""
    made = _seed(database, 5)
    wanted = [made[3].id, uuid7(), str(made[0].id), made[3].id, made[1].id]
    with database.session() as session:
        rows = Repository(Ticket, session).get_many(wanted)
    assert _codes(rows) == ["t03", "t00", "t01"]


def test_get_many_splits_long_id_lists(database: Database) -> None:
    """More ids than one IN list holds are fetched in chunks."""
    made = _seed(database, 3)
    wanted = [uuid.uuid4() for _ in range(2500)] + [made[2].id, made[0].id]
    with database.session() as session:
        assert _codes(Repository(Ticket, session).get_many(wanted)) == ["t02", "t00"]


def test_exists_and_count_take_expressions_and_equalities(database: Database) -> None:
    """exists/count combine column expressions with keyword equalities."""
    _seed(database)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        assert tickets.count() == 12
        assert tickets.count(priority=1) == 4
        assert tickets.count(Ticket.priority >= 1, Ticket.due.is_not(None)) == 8
        assert tickets.exists(code="t05")
        assert not tickets.exists(Ticket.priority > 2)
        with pytest.raises(ValueError, match="cannot filter by 'nope'"):
            tickets.count(nope=1)


# -- writes -----------------------------------------------------------------------------------
def test_update_is_partial_and_increments_the_version(database: Database) -> None:
    """update() changes only the given columns, in one statement, and bumps version."""
    (ticket,) = _seed(database, 1)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        loaded = tickets.get(ticket.id)
        updated = tickets.update(ticket.id, {"priority": 9}, owner="ann")
        assert updated is loaded  # the object in the session is refreshed, not duplicated
        assert updated is not None
        assert (updated.priority, updated.owner, updated.version) == (9, "ann", 2)
        assert updated.code == "t00"
        assert updated.due == ticket.due


def test_update_with_a_stale_version_raises(database: Database) -> None:
    """expected_version must match: a stale one raises StaleVersionError (409), changing nothing."""
    (ticket,) = _seed(database, 1)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        assert tickets.update(ticket.id, {"priority": 5}, expected_version=1) is not None
        with pytest.raises(StaleVersionError, match="at version 2, not 1") as info:
            tickets.update(ticket.id, {"priority": 6}, expected_version=1)
        assert info.value.http_status == 409
        assert isinstance(info.value, DatabaseError)
        with pytest.raises(StaleVersionError):
            tickets.update(ticket.id, {}, expected_version=1)
    with database.session() as session:
        stored = Repository(Ticket, session).get(ticket.id)
        assert stored is not None
        assert (stored.priority, stored.version) == (5, 2)


def test_update_of_a_missing_row_returns_none(database: Database) -> None:
    """Updating an id that does not exist (or is soft-deleted) returns None."""
    (ticket,) = _seed(database, 1)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        assert tickets.update(uuid7(), {"priority": 1}) is None
        assert tickets.update(uuid7(), {"priority": 1}, expected_version=1) is None
        tickets.delete(ticket.id)
        assert tickets.update(ticket.id, {"priority": 1}) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nope": 1}, "cannot update 'nope'"),
        ({"id": uuid7()}, "'id'"),
        ({"version": 7}, "'version'"),
    ],
)
def test_update_refuses_unknown_and_protected_columns(
    database: Database, values: dict[str, Any], message: str
) -> None:
    """Columns the model lacks, the primary key and version cannot be updated."""
    (ticket,) = _seed(database, 1)
    with database.session() as session, pytest.raises(ValueError, match=message):
        Repository(Ticket, session).update(ticket.id, values)


def test_expected_version_needs_a_versioned_model(database: Database) -> None:
    """expected_version on a model without VersionedMixin is a ValueError."""
    with database.session() as session:
        labels = Repository(Label, session)
        label = labels.create(name="x")
        with pytest.raises(ValueError, match="no version column"):
            labels.update(label.id, {"name": "y"}, expected_version=1)


def test_soft_delete_hides_the_row_until_asked_for(database: Database) -> None:
    """delete() on a SoftDeleteMixin model stamps deleted_at; reads skip it unless asked."""
    made = _seed(database, 3)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        assert tickets.delete(made[1].id) is True
        assert tickets.delete(made[1].id) is False
        assert tickets.get(made[1].id) is None
        hidden = tickets.get(made[1].id, include_deleted=True)
        assert hidden is not None
        assert hidden.deleted_at is not None
        assert hidden.version == 2
        assert tickets.count() == 2
        assert tickets.count(include_deleted=True) == 3
        assert _codes(tickets.page(limit=10).items) == ["t00", "t02"]
        assert _codes(tickets.get_many([m.id for m in made])) == ["t00", "t02"]


def test_hard_delete_removes_the_row(database: Database) -> None:
    """delete(hard=True) removes even a soft-deletable row; plain models are always removed."""
    (ticket,) = _seed(database, 1)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        assert tickets.delete(ticket.id, hard=True) is True
        assert tickets.get(ticket.id, include_deleted=True) is None
        labels = Repository(Label, session)
        label = labels.create(name="x")
        assert labels.delete(label.id) is True
        assert labels.count() == 0
        assert labels.delete(label.id) is False


def test_delete_with_a_stale_version_raises(database: Database) -> None:
    """delete(expected_version=...) refuses a row that moved on."""
    (ticket,) = _seed(database, 1)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        tickets.update(ticket.id, {"priority": 1})
        with pytest.raises(StaleVersionError):
            tickets.delete(ticket.id, expected_version=1)
        assert tickets.delete(ticket.id, expected_version=2) is True


def test_get_or_create_creates_once(database: Database) -> None:
    """The first call creates with the defaults; the next finds the same row untouched."""
    with database.session() as session:
        tickets = Repository(Ticket, session)
        first, created = tickets.get_or_create({"priority": 4}, code="k")
        again, created_again = tickets.get_or_create({"priority": 8}, code="k")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert (again.priority, again.version) == (4, 1)


def test_get_or_create_finds_soft_deleted_rows(database: Database) -> None:
    """A soft-deleted row still holds its unique key, so it is returned, not duplicated."""
    (ticket,) = _seed(database, 1)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        tickets.delete(ticket.id)
        found, created = tickets.get_or_create(code="t00")
    assert not created
    assert found.id == ticket.id
    assert found.deleted_at is not None


def test_get_or_create_needs_a_unique_key(database: Database) -> None:
    """Keys without a unique constraint fail loudly; no keys is a ValueError."""
    with database.session() as session:
        tickets = Repository(Ticket, session)
        with pytest.raises(ValueError, match="needs the unique key"):
            tickets.get_or_create({"code": "x"})
        with pytest.raises(DatabaseError, match="ON CONFLICT clause does not match"):
            tickets.get_or_create(priority=42)


# -- pages ------------------------------------------------------------------------------------
def test_offset_pages_with_and_without_total(database: Database) -> None:
    """page() returns limit rows from offset, in primary-key order, with total when asked."""
    made = _seed(database)
    with database.session() as session:
        tickets = Repository(Ticket, session)
        page = tickets.page(limit=5, offset=10, with_total=True)
        assert _codes(page.items) == ["t10", "t11"]
        assert (page.limit, page.offset, page.total) == (5, 10, 12)
        assert tickets.page(limit=5).total is None
        assert tickets.page(limit=50, with_total=True).total == 12
        stmt = SPEC.apply(select(Ticket), {"priority__gte": "1"}, "-priority")
        filtered = tickets.page(stmt, limit=3, offset=1, with_total=True)
    assert _codes(filtered.items) == ["t05", "t08", "t11"]
    assert filtered.total == 8
    assert made[0].code == "t00"


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (-1, 0), (True, 0), ("5", 0), (5, -1)])
def test_bad_page_windows_are_filter_errors(database: Database, limit: Any, offset: Any) -> None:
    """limit must be >= 1 and offset >= 0, as integers."""
    with database.session() as session, pytest.raises(FilterError, match=r"limit|offset"):
        Repository(Ticket, session).page(limit=limit, offset=offset)


@pytest.mark.parametrize(
    "sort",
    [None, "priority", "-priority", "due", "-due", "-due,code", "priority,-created_at", "-code"],
)
def test_keyset_pages_cover_every_row_once_in_order(database: Database, sort: str | None) -> None:
    """Walking the cursors yields exactly the rows of the full ordered query, NULLs included."""
    _seed(database, 14)
    keys = SPEC.sort_keys(sort) if sort else None
    with database.session() as session:
        tickets = Repository(Ticket, session)
        expected = _codes(list(session.scalars(SPEC.apply(select(Ticket), {}, sort or "id"))))
        seen: list[str] = []
        cursor = None
        for _ in range(20):
            page = tickets.keyset_page(sort=keys, limit=4, cursor=cursor)
            assert len(page.items) <= 4
            seen.extend(_codes(page.items))
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected


def test_keyset_cursor_is_urlsafe_base64_json(database: Database) -> None:
    """The cursor decodes to the sort items and the last row's sort values."""
    made = _seed(database, 3)
    with database.session() as session:
        page = Repository(Ticket, session).keyset_page(sort="-code", limit=2)
    assert page.next_cursor is not None
    padded = page.next_cursor + "=" * (-len(page.next_cursor) % 4)
    payload = json.loads(base64.urlsafe_b64decode(padded))
    assert payload == {"s": ["-code", "id"], "v": ["t01", str(made[1].id)]}


def _forge(values: list[Any], sort: list[str]) -> str:
    raw = json.dumps({"s": sort, "v": values}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        ("garbage!", "not a cursor this service issued"),
        ("", "not a cursor"),
        ("x" * 5000, "not a cursor"),
        (_forge(["t01", "x"], ["code", "id"]), "cursor was issued for sort code,id"),
        (_forge(["t01"], ["-code", "id"]), "not a cursor"),
        (_forge(["t01", "not-a-uuid"], ["-code", "id"]), "cursor value for 'id'"),
        (_forge([None, str(uuid.uuid4())], ["-code", "id"]), "'code' cannot be null"),
        (_forge([["list"], str(uuid.uuid4())], ["-code", "id"]), "cursor value for 'code'"),
        (base64.urlsafe_b64encode(b"[1, 2]").decode(), "not a cursor"),
        (_forge(["t01", str(uuid.uuid4())], ["-code", "id"]) + ".c2ln", "not a cursor"),
    ],
)
def test_tampered_cursors_are_filter_errors(database: Database, cursor: str, message: str) -> None:
    """Garbage, a cursor for another sort, or wrong value types raise FilterError."""
    _seed(database, 3)
    with database.session() as session, pytest.raises(FilterError, match=message):
        Repository(Ticket, session).keyset_page(sort="-code", limit=2, cursor=cursor)


def test_signed_cursors_refuse_a_changed_or_foreign_cursor(database: Database) -> None:
    """With cursor_secret, cursors carry an HMAC tag; edits and other secrets are refused."""
    _seed(database, 5)
    with database.session() as session:
        signed = Repository(Ticket, session, cursor_secret="s3cret")
        page = signed.keyset_page(sort="code", limit=2)
        assert page.next_cursor is not None
        body, _, tag = page.next_cursor.partition(".")
        assert tag
        follow = signed.keyset_page(sort="code", limit=2, cursor=page.next_cursor)
        assert _codes(follow.items) == ["t02", "t03"]
        forged = _forge(["t00", str(uuid.uuid4())], ["code", "id"])
        for cursor in (body, f"{forged}.{tag}"):
            with pytest.raises(FilterError, match="signature does not match"):
                signed.keyset_page(sort="code", limit=2, cursor=cursor)
        other = Repository(Ticket, session, cursor_secret=b"other")
        with pytest.raises(FilterError, match="signature"):
            other.keyset_page(sort="code", limit=2, cursor=page.next_cursor)


def test_keyset_sort_must_name_columns(database: Database) -> None:
    """A keyset sort over something that is not a column is a FilterError."""
    with database.session() as session, pytest.raises(FilterError, match="cannot sort by"):
        Repository(Ticket, session).keyset_page(sort="nope", limit=2)


def test_repository_needs_a_single_column_primary_key() -> None:
    """A model with a composite key cannot have a repository."""

    class Pair(ModelBase):
        """Two-column primary key."""

        __tablename__ = "unit_db_repo_pairs"
        other: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(ValueError, match="single-column primary key"):
        Repository(Pair, None)  # type: ignore[arg-type]
    ModelBase.metadata.remove(Pair.__table__)


# -- async twin -------------------------------------------------------------------------------
async def test_async_repository_reads_and_writes(adatabase: AsyncDatabase) -> None:
    """The async twin creates, reads, counts, updates with locking and soft-deletes."""
    async with adatabase.session() as session:
        tickets = AsyncRepository(Ticket, session)
        made = [await tickets.create(code=f"a{n}", priority=n) for n in range(4)]
        assert (await tickets.get(str(made[0].id))) is made[0]
        assert _codes(await tickets.get_many([made[2].id, made[1].id])) == ["a2", "a1"]
        assert await tickets.count(Ticket.priority >= 2) == 2
        assert await tickets.exists(code="a3")
        updated = await tickets.update(made[0].id, {"owner": "bo"}, expected_version=1)
        assert updated is not None
        assert (updated.owner, updated.version, updated.updated_at is not None) == ("bo", 2, True)
        with pytest.raises(StaleVersionError):
            await tickets.update(made[0].id, {"owner": "cy"}, expected_version=1)
        assert await tickets.delete(made[3].id)
        assert await tickets.get(made[3].id) is None
        assert await tickets.delete(made[2].id, hard=True)
        assert await tickets.count(include_deleted=True) == 3


async def test_async_get_or_create_and_pages(adatabase: AsyncDatabase) -> None:
    """The async twin's get_or_create, offset pages and keyset pages."""
    async with adatabase.session() as session:
        tickets = AsyncRepository(Ticket, session)
        _, created = await tickets.get_or_create({"priority": 1}, code="k")
        _, created_again = await tickets.get_or_create(code="k")
        assert (created, created_again) == (True, False)
        for n in range(6):
            await tickets.create(code=f"p{n}", priority=n % 2)
        page = await tickets.page(limit=3, offset=6, with_total=True)
        assert (len(page.items), page.total) == (1, 7)
        seen: list[str] = []
        cursor = None
        while True:
            keyset = await tickets.keyset_page(sort=["-priority", "code"], limit=3, cursor=cursor)
            seen.extend(_codes(keyset.items))
            cursor = keyset.next_cursor
            if cursor is None:
                break
    assert seen == ["k", "p1", "p3", "p5", "p0", "p2", "p4"]
