"""ModelBase, SoftDeleteMixin and VersionedMixin on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    UniqueConstraint,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from dtpyfw.core.errors import DatabaseError
from dtpyfw.db import (
    Database,
    DatabaseSettings,
    ModelBase,
    SoftDeleteMixin,
    VersionedMixin,
    create_all,
    create_sync_engine,
)


class Owner(ModelBase):
    """A referenced table."""

    __tablename__ = "unit_db_owners"
    email: Mapped[str] = mapped_column(unique=True)


class Item(ModelBase):
    """A table with every kind of named constraint and index."""

    __tablename__ = "unit_db_items"
    __table_args__ = (
        UniqueConstraint("owner_id", "sku"),
        CheckConstraint("quantity >= 0", name="quantity_positive"),
        Index(None, "sku", "quantity"),
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("unit_db_owners.id"))
    sku: Mapped[str] = mapped_column(index=True)
    quantity: Mapped[int]
    due: Mapped[datetime | None]


class Memo(SoftDeleteMixin, VersionedMixin, ModelBase):
    """A model using both mixins."""

    __tablename__ = "unit_db_memos"
    body: Mapped[str]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A sync Database on a SQLite file with the model tables created."""
    engine = create_sync_engine(DatabaseSettings(name=str(tmp_path / "models.sqlite3")))
    database = Database(engine)
    create_all(database)
    yield database
    engine.dispose()


def test_naming_convention_names_every_constraint(database: Database) -> None:
    """Primary key, unique, foreign key, check and index names follow the convention."""
    schema = inspect(database.engine)
    table = "unit_db_items"
    assert schema.get_pk_constraint(table)["name"] == "pk_unit_db_items"
    assert [fk["name"] for fk in schema.get_foreign_keys(table)] == [
        "fk_unit_db_items_owner_id_unit_db_owners"
    ]
    assert [uq["name"] for uq in schema.get_unique_constraints(table)] == [
        "uq_unit_db_items_owner_id_sku"
    ]
    assert [ck["name"] for ck in schema.get_check_constraints(table)] == [
        "ck_unit_db_items_quantity_positive"
    ]
    assert sorted(str(ix["name"]) for ix in schema.get_indexes(table)) == [
        "ix_unit_db_items_sku",
        "ix_unit_db_items_sku_quantity",
    ]
    assert [uq["name"] for uq in schema.get_unique_constraints("unit_db_owners")] == [
        "uq_unit_db_owners_email"
    ]


def test_declared_columns_come_between_id_and_timestamps() -> None:
    """id is the first column; created_at, updated_at and mixin columns come last."""
    assert Item.__table__.c.keys() == [
        "id",
        "owner_id",
        "sku",
        "quantity",
        "due",
        "created_at",
        "updated_at",
    ]


def test_every_datetime_column_is_timezone_aware() -> None:
    """created_at, updated_at, deleted_at and a plain Mapped[datetime] use timezone=True."""
    columns = [
        Memo.__table__.c.created_at,
        Memo.__table__.c.updated_at,
        Memo.__table__.c.deleted_at,
        Item.__table__.c.due,
    ]
    for column in columns:
        assert isinstance(column.type, DateTime)
        assert column.type.timezone is True, column.name


def test_ids_are_uuid7_assigned_by_the_client(database: Database) -> None:
    """ids are version 7 UUIDs, assigned at flush, increasing in creation order."""
    with database.session() as session:
        owners = [Owner(email=f"{n}@example.com") for n in range(3)]
        session.add_all(owners)
        session.flush()
        ids = [owner.id for owner in owners]
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert ids == sorted(ids)


def test_timestamps_are_set_by_the_server(database: Database) -> None:
    """created_at and updated_at are filled on INSERT, and UPDATE refreshes updated_at."""
    statements: list[str] = []
    with database.session() as session:
        owner = Owner(email="a@example.com")
        session.add(owner)
        session.flush()
        assert isinstance(owner.created_at, datetime)
        assert isinstance(owner.updated_at, datetime)
        event.listen(
            database.engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: statements.append(statement),
        )
        owner.email = "b@example.com"
    updates = [s for s in statements if s.startswith("UPDATE unit_db_owners")]
    assert len(updates) == 1
    assert "updated_at=(strftime(" in updates[0]
    assert updates[0].endswith("RETURNING updated_at")  # eager_defaults: read back at once


def test_sqlite_server_timestamps_compare_with_bound_datetimes(database: Database) -> None:
    """On SQLite a server-set timestamp has microseconds and equals itself as a parameter."""
    with database.session() as session:
        owner = Owner(email="a@example.com")
        session.add(owner)
    stored = owner.created_at
    assert stored.tzinfo is None  # SQLite keeps no zone: UTC, read back naive
    assert abs((stored.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()) < 60
    with database.session() as session:
        found = session.scalars(select(Owner.email).where(Owner.created_at == stored)).all()
        later = session.scalars(select(Owner.email).where(Owner.created_at > stored)).all()
    assert (found, later) == (["a@example.com"], [])


def test_soft_delete_marks_rows_and_not_deleted_filters_them(database: Database) -> None:
    """soft_delete() stamps deleted_at in UTC; not_deleted() hides those rows; they stay stored."""
    with database.session() as session:
        kept, gone = Memo(body="kept"), Memo(body="gone")
        session.add_all([kept, gone])
        session.flush()
        before = datetime.now(UTC)
        gone.soft_delete()
        assert gone.deleted_at is not None
        assert gone.deleted_at.tzinfo is UTC
        assert gone.deleted_at >= before
    with database.session() as session:
        visible = session.scalars(select(Memo.body).where(Memo.not_deleted())).all()
        stored = session.scalars(select(Memo.body).order_by(Memo.body)).all()
    assert visible == ["kept"]
    assert stored == ["gone", "kept"]


def test_version_starts_at_one_and_counts_updates(database: Database) -> None:
    """version is 1 after INSERT and increases with each UPDATE."""
    with database.session() as session:
        memo = Memo(body="v1")
        session.add(memo)
    assert memo.version == 1
    with database.session() as session:
        memo = session.scalars(select(Memo)).one()
        memo.body = "v2"
    assert memo.version == 2


def test_concurrent_update_of_a_versioned_row_fails(database: Database) -> None:
    """An UPDATE of a row changed meanwhile raises DatabaseError from StaleDataError."""
    with database.session() as session:
        session.add(Memo(body="v1"))

    def update_after_someone_else() -> None:
        with database.session() as session:
            memo = session.scalars(select(Memo)).one()
            with database.session() as other:
                other.execute(update(Memo).values(body="other", version=Memo.version + 1))
            memo.body = "mine"

    with pytest.raises(DatabaseError) as info:
        update_after_someone_else()
    assert isinstance(info.value.__cause__, StaleDataError)
    with database.session() as session:
        assert session.execute(text("SELECT body FROM unit_db_memos")).scalar_one() == "other"
