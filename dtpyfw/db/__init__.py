"""Relational databases with SQLAlchemy 2: engines, sessions, models and a container.

Build :class:`DatabaseSettings` (SQLite by default, PostgreSQL via psycopg 3),
then resolve ``session`` / ``async_session`` from :class:`DatabaseContainer`
inside a request scope, or use :class:`Database` / :class:`AsyncDatabase`
directly::

    with database.session() as session:   # commit on success, rollback on error
        session.add(Note(title="hello"))

Importing this package needs no optional extra. The model classes
(:class:`ModelBase` and the mixins) need SQLAlchemy when first used: install
``dtpyfw[db]`` (SQLite) or ``dtpyfw[postgres]``.
"""

import typing as _typing

from dtpyfw.db._container import DatabaseContainer
from dtpyfw.db._database import AsyncDatabase, Database, acreate_all, create_all
from dtpyfw.db._engine import create_async_engine, create_sync_engine
from dtpyfw.db._settings import DatabaseReplicaSettings, DatabaseSettings
from dtpyfw.db._uuid import uuid7

if _typing.TYPE_CHECKING:
    from dtpyfw.db._models import ModelBase, SoftDeleteMixin, VersionedMixin

__all__ = [
    "AsyncDatabase",
    "Database",
    "DatabaseContainer",
    "DatabaseReplicaSettings",
    "DatabaseSettings",
    "ModelBase",
    "SoftDeleteMixin",
    "VersionedMixin",
    "acreate_all",
    "create_all",
    "create_async_engine",
    "create_sync_engine",
    "uuid7",
]

# Defined at import of SQLAlchemy's declarative machinery, so loaded on first access.
_LAZY_MODELS = frozenset({"ModelBase", "SoftDeleteMixin", "VersionedMixin"})


def __getattr__(name: str) -> object:
    if name in _LAZY_MODELS:
        from dtpyfw.core._extras import require

        require("sqlalchemy", "db")
        from dtpyfw.db import _models

        value = getattr(_models, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_MODELS)
