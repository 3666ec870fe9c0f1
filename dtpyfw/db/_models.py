"""The declarative base for service models, and two optional mixins.

Models are declared the normal SQLAlchemy 2 way::

    class Note(ModelBase):
        __tablename__ = "notes"
        title: Mapped[str]

Every model gets ``id`` (a UUIDv7 made by the client, so rows sort by creation
and ids are known before the INSERT), and ``created_at`` / ``updated_at`` set
by the server. ``ModelBase.metadata`` names constraints and indexes by a
fixed convention (``uq_notes_title``, ``fk_notes_owner_id_users``, ...), so
Alembic migrations get stable names.

Unlike PostgreSQL, SQLite keeps no time zone: there, server-set timestamps
read back naive (in UTC). They are written with microseconds in the text format
SQLAlchemy itself uses for SQLite (:class:`ServerNow`), so they sort and compare
correctly with datetimes bound by filters and keyset cursors.
"""

from __future__ import annotations

__all__ = ["ModelBase", "ServerNow", "SoftDeleteMixin", "VersionedMixin"]

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, MetaData
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from dtpyfw.db._uuid import uuid7

_NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ServerNow(FunctionElement[datetime]):
    """The database's current time, as a server default or in an UPDATE.

    ``now()`` on PostgreSQL (the transaction's start). On SQLite, UTC with
    microseconds in SQLAlchemy's storage format (``YYYY-MM-DD HH:MM:SS.ffffff``):
    ``CURRENT_TIMESTAMP`` would store whole seconds in a format that does not
    compare equal to the same instant bound as a parameter.
    """

    type = DateTime(timezone=True)
    inherit_cache = True
    name = "server_now"


@compiles(ServerNow)
def _server_now(element: ServerNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(ServerNow, "postgresql")
def _server_now_postgresql(element: ServerNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(ServerNow, "sqlite")
def _server_now_sqlite(element: ServerNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "(strftime('%Y-%m-%d %H:%M:%f000', 'now'))"  # %f is SS.mmm; 000 pads to micros


class ModelBase(DeclarativeBase):
    """Base of every model: a UUIDv7 ``id`` and server-set ``created_at`` / ``updated_at``.

    ``eager_defaults`` makes every INSERT and UPDATE read the server-set values
    back in the same statement (RETURNING), so ``updated_at`` is current after a
    flush and reading it never needs IO (which an async session cannot do
    implicitly). A model that declares its own ``__mapper_args__`` should keep
    ``"eager_defaults": True`` in it.
    """

    metadata = MetaData(naming_convention=_NAMING_CONVENTION)
    # A plain ``Mapped[datetime]`` on any model is time-zone aware too.
    type_annotation_map = {datetime: DateTime(timezone=True)}  # noqa: RUF012 - SQLAlchemy's API

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7, sort_order=-1)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=ServerNow(), sort_order=1
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=ServerNow(), onupdate=ServerNow(), sort_order=1
    )

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - declared_attr passes the class
        return {"eager_defaults": True}


class SoftDeleteMixin:
    """Adds ``deleted_at``: ``soft_delete()`` marks a row, ``not_deleted()`` filters them out."""

    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, sort_order=1
    )

    def soft_delete(self) -> None:
        """Mark this row deleted now; it is written with the session's next flush."""
        self.deleted_at = datetime.now(UTC)

    @classmethod
    def not_deleted(cls) -> ColumnElement[bool]:
        """A WHERE clause for rows not soft-deleted: ``select(Note).where(Note.not_deleted())``."""
        return cls.deleted_at.is_(None)


class VersionedMixin:
    """Adds ``version`` for optimistic locking: a concurrent update fails instead of being lost.

    SQLAlchemy sets it to 1 on INSERT, increments it on every UPDATE and adds it
    to the UPDATE's WHERE clause; a row changed meanwhile makes the session raise
    :class:`~dtpyfw.db.StaleVersionError` (a
    :class:`~dtpyfw.core.errors.DatabaseError`, from ``StaleDataError``).
    """

    version: Mapped[int] = mapped_column(nullable=False, sort_order=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - declared_attr passes the class
        return {"eager_defaults": True, "version_id_col": cls.version}
